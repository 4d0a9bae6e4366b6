// Scores a model on held-out persona conversations with the engine: the per-token loss on the replies only (the
// tokens fine-tuning trains), and whether generated replies end their turn with the end-of-turn token. Printing and
// the before/after comparison are the CLI's (duck eval persona).
using Duck.Core.Persona;
using Duck.Core.Text;

namespace Duck.Inference.Engine;

public sealed record ReplyLoss(double Loss, long Tokens);

public sealed record GeneratedReply(string Prompt, string Reply, bool EndedCleanly, int Tokens);

public static class PersonaEvaluation
{
    /// <summary>Mean cross-entropy (nats per token) of the reply tokens of <paramref name="conversations"/>, each
    /// read from its start (long ones split at user turns to fit the context, as fine-tuning does).</summary>
    public static ReplyLoss ReplyLoss(InferenceModel model, IEnumerable<Conversation> conversations)
    {
        int v = model.Config.VocabSize;
        var session = new InferenceSession(model);
        double sum = 0;
        long count = 0;
        foreach (var sample in SftSamples.Build(conversations, model.Config.ContextLength))
        {
            session.Reset();
            var logits = session.AppendAllLogits(sample.Tokens.AsSpan(0, sample.Tokens.Length - 1));
            for (int i = 0; i + 1 < sample.Tokens.Length; i++)
            {
                if (!sample.Trained[i + 1]) continue;
                var row = logits.AsSpan(i * v, v);
                float max = float.NegativeInfinity;
                foreach (float x in row) max = Math.Max(max, x);
                double z = 0;
                foreach (float x in row) z += Math.Exp(x - max);
                sum += max + Math.Log(z) - row[sample.Tokens[i + 1]];
                count++;
            }
        }
        if (count == 0) throw new ArgumentException("the conversations hold no reply tokens to score");
        return new ReplyLoss(sum / count, count);
    }

    /// <summary>The model's reply to the last user turn of each conversation (the rest of it is the history; when that
    /// does not fit the context with room for the reply, only the system message and the last user turn are kept).</summary>
    public static IEnumerable<GeneratedReply> Replies(InferenceModel model, IEnumerable<Conversation> conversations, SamplingOptions options, CancellationToken ct = default)
    {
        var session = new InferenceSession(model);
        options = options with { StopSequences = options.StopSequences.Concat(ChatFormat.StopSequences).Distinct().ToArray() };
        foreach (var conversation in conversations)
        {
            var messages = conversation.Messages;
            int lastUser = messages.Count - 1;
            while (lastUser >= 0 && messages[lastUser].Role != ChatRole.User) lastUser--;
            if (lastUser < 0) throw new ArgumentException("a conversation has no user turn to reply to");
            var history = messages.Take(lastUser + 1).ToList();
            int room = Math.Min(options.MaxTokens, model.Config.ContextLength / 2);
            int[] prompt = ChatFormat.PromptForReply(history);
            if (prompt.Length > model.Config.ContextLength - room)
            {
                var shortHistory = messages[0].Role == ChatRole.System ? new List<ChatMessage> { messages[0], messages[lastUser] } : [messages[lastUser]];
                prompt = ChatFormat.PromptForReply(shortHistory);
            }
            if (prompt.Length > model.Config.ContextLength - room) prompt = prompt[^(model.Config.ContextLength - room)..];
            session.Reset();
            var stats = new GenerationStats();
            string reply = string.Concat(TextGenerator.Generate(session, prompt, options with { MaxTokens = room }, stats, ct)).Trim();
            yield return new GeneratedReply(messages[lastUser].Content, reply, stats.StopReason == StopReason.EndOfText, stats.GeneratedTokens);
        }
    }
}
