// Chat conversations as fine-tuning examples: the tokens of the rendered conversation (ChatFormat, the one template)
// and which of them are trained on (the replies and their end-of-turn token). Shared by the trainer's fine-tuning
// batches (Duck.Model) and the persona evaluation (Duck.Inference).
using Duck.Core.Text;

namespace Duck.Core.Persona;

/// <summary>One training example: the token ids of a rendered conversation and, per token, whether it is trained on.</summary>
public sealed record SftSample(int[] Tokens, bool[] Trained);

public static class SftSamples
{
    /// <summary>The target value the loss ignores (cross-entropy's ignore_index).</summary>
    public const long IgnoreTarget = -100;

    /// <summary>Examples of at most <paramref name="maxTokens"/> tokens. A conversation that fits is one example; a
    /// longer one gives one example per user turn, each starting there (after the system message, if any) and cut
    /// to the limit, the way a chat with a full context window drops its oldest turns.</summary>
    public static List<SftSample> Build(IEnumerable<Conversation> conversations, int maxTokens)
    {
        var samples = new List<SftSample>();
        foreach (var conversation in conversations)
        {
            var (tokens, trained) = ChatFormat.Encode(conversation);
            if (tokens.Length <= maxTokens) { samples.Add(new SftSample(tokens, trained)); continue; }
            var messages = conversation.Messages;
            var system = messages[0].Role == ChatRole.System ? new[] { messages[0] } : [];
            for (int k = system.Length; k < messages.Count; k++)
            {
                if (messages[k].Role != ChatRole.User) continue;
                var (t, m) = ChatFormat.Encode(new Conversation(system.Concat(messages.Skip(k))));
                int n = Math.Min(t.Length, maxTokens);
                if (Array.IndexOf(m, true, 1, n - 1) < 0) continue; // nothing of a reply fits: no signal
                samples.Add(new SftSample(t[..n], m[..n]));
            }
        }
        return samples;
    }

    /// <summary>Fills one row: inputs are the window's first T tokens, targets the next token where it is trained, else IgnoreTarget.</summary>
    public static void WriteRow(ReadOnlySpan<int> window, ReadOnlySpan<bool> trained, Span<long> inputs, Span<long> targets)
    {
        int t = inputs.Length;
        for (int i = 0; i < t; i++)
        {
            inputs[i] = i < window.Length ? window[i] : ChatFormat.EndOfTurnToken;
            targets[i] = i + 1 < window.Length && trained[i + 1] ? window[i + 1] : IgnoreTarget;
        }
    }
}
