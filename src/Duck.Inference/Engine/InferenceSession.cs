// One conversation's state over a shared InferenceModel: the token history and its KV cache. Appending tokens
// prefills only those tokens (in batches), so a follow-up turn costs only its new tokens. Not thread-safe: one
// caller at a time per session; many sessions may share one model.
namespace Duck.Inference.Engine;

/// <summary>A sequence being extended token by token.</summary>
public sealed class InferenceSession
{
    /// <summary>Longest batch of one prefill pass; longer prompts run in several passes with identical results.</summary>
    public const int MaxPrefillBatch = 256;

    readonly List<int> tokens = new();
    readonly ForwardScratch scratch = new();
    readonly float[] lastLogits;
    // True after a batched pass handed this session's logits to the batcher's sampler without keeping them.
    bool logitsTaken;
    KvCache cache;

    /// <summary>Activation buffers lent by a caller that runs many sessions on one thread (the continuous batcher),
    /// so each session does not keep buffers of its own; null uses the session's own.</summary>
    internal ForwardScratch? BorrowedScratch { get; set; }
    ForwardScratch Scratch => BorrowedScratch ?? scratch;

    public InferenceModel Model { get; }
    /// <summary>Tokens held in the KV cache.</summary>
    public IReadOnlyList<int> Tokens => tokens;
    public int Length => tokens.Count;
    public int ContextLength => Model.Config.ContextLength;
    /// <summary>The KV cache itself (tests read its entries).</summary>
    internal KvCache Cache => cache;
    /// <summary>Bytes held by this session's KV cache (it grows with the tokens, up to the context window).</summary>
    public long CacheBytes => cache.SizeBytes;
    /// <summary>
    /// Logits after the last appended token (empty before the first append). Throws
    /// <see cref="InvalidOperationException"/> after a continuous batcher's pass, which samples from the pass's own
    /// buffer and does not keep them.
    /// </summary>
    public ReadOnlySpan<float> LastLogits => tokens.Count == 0 ? []
        : logitsTaken ? throw new InvalidOperationException("this session's last logits went to the continuous batcher's sampler and were not kept")
        : lastLogits;

    public InferenceSession(InferenceModel model)
    {
        Model = model;
        lastLogits = new float[model.Config.VocabSize];
        cache = NewCache();
    }

    KvCache NewCache() => new(Model.Config.NumLayers, Model.Config.NumHeads, Model.Config.HeadDim, Model.Config.ContextLength, Model.KvCacheType);

    /// <summary>Runs the tokens through the model after the current history; returns the logits after the last one.</summary>
    public ReadOnlySpan<float> Append(ReadOnlySpan<int> newTokens)
    {
        if (newTokens.Length == 0) return LastLogits;
        Prefill(newTokens, null);
        return lastLogits;
    }

    /// <summary>Like <see cref="Append"/> but returns logits for every new token, [newTokens, V] (for tests and scoring).</summary>
    public float[] AppendAllLogits(ReadOnlySpan<int> newTokens)
    {
        var all = new float[(long)newTokens.Length * Model.Config.VocabSize];
        Prefill(newTokens, all);
        return all;
    }

    void Prefill(ReadOnlySpan<int> newTokens, float[]? all)
    {
        int v = Model.Config.VocabSize;
        if (tokens.Count + newTokens.Length > ContextLength)
            throw new ArgumentException($"{tokens.Count} tokens in the session plus {newTokens.Length} new ones exceed the context window of {ContextLength}");
        foreach (int t in newTokens)
            if ((uint)t >= (uint)v) throw new ArgumentException($"token id {t} is outside the vocabulary [0, {v})");
        logitsTaken = false;
        for (int start = 0; start < newTokens.Length; start += MaxPrefillBatch)
        {
            var chunk = newTokens.Slice(start, Math.Min(MaxPrefillBatch, newTokens.Length - start));
            var caches = new KvCache[chunk.Length];
            var positions = new int[chunk.Length];
            for (int i = 0; i < chunk.Length; i++) { caches[i] = cache; positions[i] = tokens.Count + i; }
            float[] logits = all is null ? lastLogits : new float[(long)chunk.Length * v];
            Model.Forward(chunk, caches, positions, allLogits: all is not null, logits, Scratch);
            if (all is not null)
            {
                logits.CopyTo(all, (long)start * v);
                logits.AsSpan((chunk.Length - 1) * v, v).CopyTo(lastLogits);
            }
            foreach (int t in chunk) tokens.Add(t);
        }
    }

    /// <summary>Forgets everything after the first <paramref name="length"/> tokens (their cache entries are simply overwritten later).</summary>
    public void Truncate(int length)
    {
        if (length < 0 || length > tokens.Count) throw new ArgumentOutOfRangeException(nameof(length), length, $"must be in [0, {tokens.Count}]");
        if (length == tokens.Count) return;
        tokens.RemoveRange(length, tokens.Count - length);
        if (length == 0) return;
        // The logits of the new last token are not stored: recompute them from the cache by replaying that token.
        int last = tokens[^1];
        tokens.RemoveAt(tokens.Count - 1);
        Append([last]);
    }

    /// <summary>
    /// Forgets everything after the first <paramref name="length"/> tokens without recomputing the logits: for a
    /// caller that appends at least one token next (LastLogits are stale until then).
    /// </summary>
    internal void TruncateWithoutReplay(int length)
    {
        if (length < 0 || length > tokens.Count) throw new ArgumentOutOfRangeException(nameof(length), length, $"must be in [0, {tokens.Count}]");
        tokens.RemoveRange(length, tokens.Count - length);
    }

    /// <summary>
    /// Forgets tokens [start, start + count) and moves the later ones down in the KV cache (KvCache.Shift), without
    /// recomputing the logits: for a caller that appends at least one token next. A conversation whose window
    /// moves past its oldest exchanges keeps the cache of everything after them this way instead of prefilling it again.
    /// </summary>
    internal void RemoveWithoutReplay(int start, int count)
    {
        if (start < 0 || count < 1 || start + count > tokens.Count)
            throw new ArgumentOutOfRangeException(nameof(count), count, $"tokens [{start}, {start + count}) are not all in the session's {tokens.Count}");
        int half = Model.Config.HeadDim / 2;
        if (start + count < tokens.Count)
            cache.Shift(start, count, tokens.Count, Model.RopeCos.AsSpan(count * half, half), Model.RopeSin.AsSpan(count * half, half), Model.Pool);
        tokens.RemoveRange(start, count);
    }

    /// <summary>Empties the session.</summary>
    public void Reset()
    {
        tokens.Clear();
        Array.Clear(lastLogits);
        logitsTaken = false;
    }

    /// <summary>
    /// Batched decode: appends one token to each session in a single forward pass (the linear layers run as one
    /// matrix-matrix product). Sessions must be distinct and share this model; returns each session's new logits.
    /// </summary>
    public static void DecodeBatch(IReadOnlyList<InferenceSession> sessions, ReadOnlySpan<int> nextTokens)
    {
        if (sessions.Count != nextTokens.Length) throw new ArgumentException($"{sessions.Count} sessions but {nextTokens.Length} tokens");
        var segments = new int[sessions.Count][];
        for (int i = 0; i < segments.Length; i++) segments[i] = [nextTokens[i]];
        AppendBatch(sessions, segments);
    }

    /// <summary>
    /// Appends <paramref name="newTokens"/>[i] (one or more tokens) to session i, all sessions in one forward pass:
    /// decode steps of some sessions and prompt chunks of others share the weight passes. Each session's
    /// LastLogits become the logits after its last new token (the head runs only for those rows). Sessions must be
    /// distinct and share one model; the whole batch is at most <see cref="MaxPrefillBatch"/> rows.
    /// </summary>
    public static void AppendBatch(IReadOnlyList<InferenceSession> sessions, IReadOnlyList<int[]> newTokens) => AppendBatch(sessions, newTokens, null);

    /// <summary>Takes session <paramref name="index"/>'s logits of a batched pass while the pass's buffer holds them.</summary>
    internal delegate void LogitsReady(int index, ReadOnlySpan<float> logits);

    /// <summary>
    /// <see cref="AppendBatch(IReadOnlyList{InferenceSession}, IReadOnlyList{int[]})"/>, but with
    /// <paramref name="takeLogits"/> every session's logits go to takeLogits(i, logits) straight from the pass's buffer,
    /// in one parallel loop on the model's threads, and are not copied into LastLogits (which then throws until the next
    /// append). The continuous batcher samples this way: a copy per session of 201 KB, to memory long since evicted,
    /// cost 1-2 % of a serving silo's time and was never read.
    /// </summary>
    internal static void AppendBatch(IReadOnlyList<InferenceSession> sessions, IReadOnlyList<int[]> newTokens, LogitsReady? takeLogits)
    {
        if (sessions.Count != newTokens.Count) throw new ArgumentException($"{sessions.Count} sessions but {newTokens.Count} token lists");
        if (sessions.Count == 0) return;
        var model = sessions[0].Model;
        int v = model.Config.VocabSize, n = sessions.Count, rows = 0;
        if (sessions.Distinct().Count() != n) throw new ArgumentException("a session appears twice in one batch");
        for (int i = 0; i < n; i++)
        {
            var s = sessions[i];
            if (s.Model != model) throw new ArgumentException("all sessions of a batch must share one model");
            if (newTokens[i].Length == 0) throw new ArgumentException($"session {i} has no new tokens");
            if (s.Length + newTokens[i].Length > s.ContextLength)
                throw new ArgumentException($"session {i} holds {s.Length} tokens; {newTokens[i].Length} more exceed the context window of {s.ContextLength}");
            foreach (int t in newTokens[i])
                if ((uint)t >= (uint)v) throw new ArgumentException($"token id {t} is outside the vocabulary [0, {v})");
            rows += newTokens[i].Length;
        }
        if (rows > MaxPrefillBatch) throw new ArgumentException($"{rows} rows in one batch; at most {MaxPrefillBatch}");
        var tokens = new int[rows];
        var caches = new KvCache[rows];
        var positions = new int[rows];
        var logitRows = new int[n];
        int row = 0;
        for (int i = 0; i < n; i++)
        {
            var s = sessions[i];
            for (int k = 0; k < newTokens[i].Length; k++, row++)
            {
                tokens[row] = newTokens[i][k];
                caches[row] = s.cache;
                positions[row] = s.Length + k;
            }
            logitRows[i] = row - 1;
        }
        // Pooled: a fresh [n, V] array per step would be large-object garbage at every token of a serving silo.
        var logits = System.Buffers.ArrayPool<float>.Shared.Rent(n * v);
        try
        {
            model.Forward(tokens, caches, positions, logitRows, logits, sessions[0].Scratch);
            for (int i = 0; i < n; i++)
            {
                sessions[i].tokens.AddRange(newTokens[i]);
                sessions[i].logitsTaken = takeLogits is not null;
            }
            if (takeLogits is null) model.Pool.For(n, i => logits.AsSpan(i * v, v).CopyTo(sessions[i].lastLogits));
            else model.Pool.For(n, i => takeLogits(i, logits.AsSpan(i * v, v)));
        }
        finally { System.Buffers.ArrayPool<float>.Shared.Return(logits); }
    }
}
