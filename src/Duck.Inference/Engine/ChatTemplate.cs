// The chat prompt format as the engine uses it: a thin facade over Duck.Core's ChatFormat (the one template shared
// with training), kept so `duck chat` and `duck test` need not change. Also ChatConversation, which keeps the
// history inside the context window over one InferenceSession. Not the sampler or the generator.
using Duck.Core.Text;

namespace Duck.Inference.Engine;

/// <summary>The transcript format of a conversation (see <see cref="ChatFormat"/>).</summary>
public static class ChatTemplate
{
    /// <summary>The prompt text of a user turn, ending with the assistant marker where the model's reply begins.
    /// Throws ArgumentException when the message is empty or holds a marker or &lt;|endoftext|&gt;.</summary>
    public static string UserTurn(string message) => ChatFormat.RenderPrompt([ChatMessage.User(message)]);

    /// <summary>The text that closes a reply in the transcript (it follows the reply's own text): the end-of-turn token.</summary>
    public static string ReplyEnd => ChatFormat.EndOfTurnText;

    /// <summary>Where a reply ends besides the end-of-turn token: if the model starts writing another turn's marker.</summary>
    public static IReadOnlyList<string> StopSequences => ChatFormat.StopSequences;
}

/// <summary>A multi-turn chat over one session; each turn prefills only its new tokens unless old turns must be dropped.</summary>
public sealed class ChatConversation(InferenceModel model)
{
    readonly InferenceSession session = new(model);
    readonly List<int[]> turns = new(); // token ids of each finished exchange (user turn + reply + end of turn)

    public InferenceSession Session => session;

    /// <summary>Streams the reply to <paramref name="message"/>; the finished exchange joins the history.</summary>
    public IEnumerable<string> Reply(string message, SamplingOptions options, GenerationStats stats, CancellationToken ct = default)
    {
        var tokenizer = Gpt2Tokenizer.Shared;
        int[] prompt = tokenizer.Encode(ChatTemplate.UserTurn(message));
        int budget = session.ContextLength - Math.Min(options.MaxTokens, session.ContextLength / 2);
        if (prompt.Length > budget)
            throw new ArgumentException($"the message is {prompt.Length} tokens; at most {budget} fit in the context window of {session.ContextLength} while leaving room for the reply");
        if (session.Length + prompt.Length > budget) DropOldTurns(budget - prompt.Length);
        int start = session.Length;
        options = options with { StopSequences = options.StopSequences.Concat(ChatTemplate.StopSequences).Distinct().ToArray() };
        options = options with { MaxTokens = Math.Min(options.MaxTokens, session.ContextLength - start - prompt.Length) };
        var reply = new System.Text.StringBuilder();
        foreach (var piece in TextGenerator.Generate(session, prompt, options, stats, ct))
        {
            reply.Append(piece);
            yield return piece;
        }
        // Rewrite the exchange canonically (prompt, trimmed reply, end of turn) so the next turn sees a clean transcript.
        session.Truncate(start);
        int[] exchange = [.. prompt, .. tokenizer.Encode(reply.ToString().Trim()), ChatFormat.EndOfTurnToken];
        if (session.Length + exchange.Length > session.ContextLength) DropOldTurns(session.ContextLength - exchange.Length);
        session.Append(exchange);
        turns.Add(exchange);
    }

    void DropOldTurns(int maxTokens)
    {
        while (turns.Count > 0 && turns.Sum(t => t.Length) > Math.Max(0, maxTokens)) turns.RemoveAt(0);
        session.Reset();
        foreach (var t in turns) session.Append(t);
    }
}
