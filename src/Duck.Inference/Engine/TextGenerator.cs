// Streams a reply: prefills the new prompt tokens into a session, then samples and decodes token by token,
// turning token bytes into text with a stateful UTF-8 decoder (a character split across tokens comes out whole)
// and holding back text that might be the start of a stop sequence. Not the chat template (ChatTemplate).
using System.Diagnostics;
using System.Text;
using Duck.Core.Text;

namespace Duck.Inference.Engine;

/// <summary>Why generation ended.</summary>
public enum StopReason { MaxTokens, EndOfText, StopSequence, ContextFull, Cancelled }

/// <summary>Counters of one generation, complete once the stream has ended.</summary>
public sealed class GenerationStats
{
    public int PromptTokens { get; internal set; }
    public int GeneratedTokens { get; internal set; }
    public double PrefillMs { get; internal set; }
    public double TimeToFirstTokenMs { get; internal set; }
    public double TotalMs { get; internal set; }
    public StopReason StopReason { get; internal set; }
    /// <summary>Generated tokens per second after the first token (decode speed).</summary>
    public double DecodeTokensPerSecond => GeneratedTokens > 1 && TotalMs > TimeToFirstTokenMs
        ? (GeneratedTokens - 1) / ((TotalMs - TimeToFirstTokenMs) / 1000.0) : 0;
}

/// <summary>Text generation over a session.</summary>
public static class TextGenerator
{
    /// <summary>
    /// Appends <paramref name="promptTokens"/> to the session and yields the reply's text pieces as they are produced.
    /// Sampled tokens are appended to the session as decoding proceeds, except the final one (end of text, the token
    /// completing a stop sequence, or the last of MaxTokens). <paramref name="stats"/> is filled as it goes.
    /// </summary>
    public static IEnumerable<string> Generate(InferenceSession session, IReadOnlyList<int> promptTokens, SamplingOptions options,
        GenerationStats stats, CancellationToken ct = default)
    {
        options.Validate();
        if (session.Length + promptTokens.Count > session.ContextLength)
            throw new ArgumentException($"the prompt ({promptTokens.Count} tokens, {session.Length} already in the session) does not fit in the context window of {session.ContextLength} tokens");
        return Run(session, promptTokens, options, stats, ct);
    }

    static IEnumerable<string> Run(InferenceSession session, IReadOnlyList<int> promptTokens, SamplingOptions options, GenerationStats stats, CancellationToken ct)
    {
        var clock = Stopwatch.StartNew();
        stats.PromptTokens = promptTokens.Count;
        if (promptTokens.Count > 0) session.Append(promptTokens.ToArray());
        else if (session.Length == 0) throw new ArgumentException("cannot generate from an empty session without prompt tokens");
        stats.PrefillMs = clock.Elapsed.TotalMilliseconds;
        var sampler = new Sampler(options);
        var decoder = new TokenTextDecoder();
        var pending = new StringBuilder();
        stats.StopReason = StopReason.MaxTokens;
        for (int n = 0; n < options.MaxTokens; n++)
        {
            if (ct.IsCancellationRequested) { stats.StopReason = StopReason.Cancelled; break; }
            int token = sampler.Sample(session.LastLogits, session.Tokens);
            if (n == 0) stats.TimeToFirstTokenMs = clock.Elapsed.TotalMilliseconds;
            stats.GeneratedTokens++;
            if (token == options.EndOfTextToken) { stats.StopReason = StopReason.EndOfText; break; }
            pending.Append(decoder.Append(token));
            var (emit, stopped) = SplitAtStop(pending, options.StopSequences);
            if (emit.Length > 0) yield return emit;
            if (stopped) { stats.StopReason = StopReason.StopSequence; break; }
            if (n + 1 < options.MaxTokens)
            {
                if (session.Length >= session.ContextLength) { stats.StopReason = StopReason.ContextFull; break; }
                session.Append([token]);
            }
        }
        if (stats.StopReason != StopReason.StopSequence)
        {
            pending.Append(decoder.Flush());
            if (pending.Length > 0) yield return pending.ToString();
        }
        stats.TotalMs = clock.Elapsed.TotalMilliseconds;
    }

    /// <summary>
    /// Takes the text that is safe to emit from <paramref name="pending"/>: everything before a stop sequence
    /// (then stopped = true), or everything except a tail that could still grow into one.
    /// </summary>
    internal static (string Emit, bool Stopped) SplitAtStop(StringBuilder pending, IReadOnlyList<string> stops)
    {
        string text = pending.ToString();
        int cut = -1;
        foreach (var s in stops)
        {
            int i = text.IndexOf(s, StringComparison.Ordinal);
            if (i >= 0 && (cut < 0 || i < cut)) cut = i;
        }
        if (cut >= 0)
        {
            pending.Clear();
            return (text[..cut], true);
        }
        int hold = 0;
        foreach (var s in stops)
            for (int len = Math.Min(s.Length - 1, text.Length); len > hold; len--)
                if (text.AsSpan(text.Length - len).SequenceEqual(s.AsSpan(0, len))) { hold = len; break; }
        pending.Clear();
        pending.Append(text, text.Length - hold, hold);
        return (text[..^hold], false);
    }
}

/// <summary>Token ids → text, one token at a time; a UTF-8 character split across tokens is emitted once complete.</summary>
public sealed class TokenTextDecoder
{
    readonly Decoder decoder = new UTF8Encoding(false).GetDecoder();
    readonly char[] chars = new char[1024];

    /// <summary>The text completed by this token (possibly empty while a character is incomplete).</summary>
    public string Append(int token)
    {
        var bytes = Gpt2Vocabulary.Shared.TokenBytes(token);
        int n = decoder.GetChars(bytes, chars, flush: false);
        return new string(chars, 0, n);
    }

    /// <summary>Ends the stream: an incomplete character becomes U+FFFD.</summary>
    public string Flush() => new(chars, 0, decoder.GetChars([], chars, flush: true));
}
