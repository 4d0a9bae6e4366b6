// The forward pass over a batch of token rows, each with its own KV cache and position: a prompt prefill (one
// cache, consecutive positions) and a batched decode (one row per session) are the same code. Shapes use the
// legend R = rows in the batch, D = ModelDim, F = FfnDim, H = NumHeads, hd = HeadDim, V = VocabSize.
// Not the sampler and not session bookkeeping (InferenceSession).
using Duck.Inference.Kernels;

namespace Duck.Inference.Engine;

/// <summary>Activation buffers of one forward call, reused between calls.</summary>
public sealed class ForwardScratch
{
    public float[] X = [], Xn = [], Q = [], K = [], V = [], Att = [], Out = [], Gate = [], Up = [];
    public readonly QuantizedActivations Quantized = new();
    /// <summary>The next attention's KV caches, which the lookup kernel asks for while it runs (PrefetchPlan).</summary>
    public readonly PrefetchPlan Prefetch = new();

    public void Ensure(int rows, int modelDim, int ffnDim)
    {
        if (X.Length >= rows * modelDim && Gate.Length >= rows * ffnDim) return;
        int d = rows * modelDim, f = rows * ffnDim;
        X = new float[d]; Xn = new float[d]; Q = new float[d]; K = new float[d]; V = new float[d];
        Att = new float[d]; Out = new float[d]; Gate = new float[f]; Up = new float[f];
    }
}

public sealed partial class InferenceModel
{
    /// <summary>
    /// Runs R token rows through the model. Row r is token <paramref name="tokens"/>[r] at position
    /// <paramref name="positions"/>[r] of cache <paramref name="caches"/>[r]; its K/V are stored there before
    /// attention, so rows of one cache attend to earlier rows of the same batch. Writes logits [R or 1, V] for every
    /// row, or only the last row when <paramref name="allLogits"/> is false.
    /// </summary>
    public void Forward(ReadOnlySpan<int> tokens, KvCache[] caches, int[] positions, bool allLogits, float[] logits, ForwardScratch s)
    {
        int R = tokens.Length;
        if (allLogits)
        {
            var rows = new int[R];
            for (int r = 0; r < R; r++) rows[r] = r;
            Forward(tokens, caches, positions, rows, logits, s);
        }
        else Forward(tokens, caches, positions, [R - 1], logits, s);
    }

    /// <summary>
    /// The general form: logits [logitRows.Length, V] only for the rows listed (ascending), so a pass that mixes
    /// prompt chunks with decode rows computes the head (a third of a small model's weights), and the last block past
    /// its keys and values, only where a token is sampled next.
    /// </summary>
    public void Forward(ReadOnlySpan<int> tokens, KvCache[] caches, int[] positions, int[] logitRows, float[] logits, ForwardScratch s)
    {
        var c = Config;
        int R = tokens.Length, D = c.ModelDim, F = c.FfnDim, H = c.NumHeads, hd = c.HeadDim;
        if (caches.Length < R || positions.Length < R) throw new ArgumentException("one cache and position per row is required");
        for (int i = 0; i < logitRows.Length; i++)
            if ((uint)logitRows[i] >= (uint)R || (i > 0 && logitRows[i] <= logitRows[i - 1]))
                throw new ArgumentException("logit rows must be ascending rows of the batch");
        if (logits.Length < (long)logitRows.Length * c.VocabSize) throw new ArgumentException($"logits buffer holds {logits.Length}, needs {logitRows.Length * c.VocabSize}");
        s.Ensure(R, D, F);
        for (int r = 0; r < R; r++)
        {
            if (positions[r] < 0 || positions[r] >= c.ContextLength)
                throw new ArgumentException($"position {positions[r]} is outside the context window of {c.ContextLength}");
            caches[r].EnsureCapacity(positions[r] + 1);
            Embedding.GetRow(tokens[r], s.X.AsSpan(r * D, D));
        }
        var qa = s.Quantized;
        qa.LookupTables = KernelPath == KernelPath.Avx512Lookup;
        var layout = LayOutAttention(R, caches);
        bool prefetch = qa.LookupTables && R >= TernaryMatMul.LookupMinTokens;
        qa.Prefetch = prefetch ? s.Prefetch : null;
        if (prefetch) PlanPrefetch(0, layout, caches, positions, s.Prefetch);
        for (int l = 0; l < Blocks.Count; l++)
        {
            var B = Blocks[l];
            // The previous block's FFN output joins the residual stream row by row, inside this norm's parallel loop.
            NormAndQuantize(s.X, B.AttnNorm, s.Xn, R, D, qa, residual: l > 0 ? s.Out : null);   // [R, D]
            if (B.Q is TernaryLinear tq && B.K is TernaryLinear tk && B.V is TernaryLinear tv)
                TernaryLinear.ForwardShared([tq, tk, tv], [s.Q, s.K, s.V], qa, R, Pool, KernelPath);
            else
            {
                B.Q.Forward(s.Xn, qa, R, s.Q, Pool, KernelPath);
                B.K.Forward(s.Xn, qa, R, s.K, Pool, KernelPath);
                B.V.Forward(s.Xn, qa, R, s.V, Pool, KernelPath);
            }
            if (l == Blocks.Count - 1 && logitRows.Length < R)
            {
                // Rows that sample nothing are done once their keys and values are stored: the rest of the last block
                // (its attention, O and FFN: about 6 % of a prompt token's work in `small`) runs only for the rows that
                // sample. Measured: a 22-token prefill 9.57 -> 9.16 ms.
                (R, caches, positions) = KeepLogitRows(l, R, logitRows, caches, positions, s);
                logitRows = [.. Enumerable.Range(0, R)];
                if (R == 0) break;
                layout = LayOutAttention(R, caches);
            }
            Attention(l, R, layout, caches, positions, s, B.AttnSubNorm, qa); // [R, D], normalized and quantized
            if (prefetch) PlanPrefetch(l + 1, layout, caches, positions, s.Prefetch);
            B.O.Forward(s.Att, qa, R, s.Out, Pool, KernelPath);

            NormAndQuantize(s.X, B.FfnNorm, s.Xn, R, D, qa, residual: s.Out);  // X += O(att), then its norm
            if (B.Gate is TernaryLinear tg && B.Up is TernaryLinear tu)         // [R, F] each
                TernaryLinear.ForwardShared([tg, tu], [s.Gate, s.Up], qa, R, Pool, KernelPath);
            else
            {
                B.Gate.Forward(s.Xn, qa, R, s.Gate, Pool, KernelPath);
                B.Up.Forward(s.Xn, qa, R, s.Up, Pool, KernelPath);
            }
            NormAndQuantize(s.Gate, B.FfnSubNorm, s.Gate, R, F, qa, up: s.Up); // SiLU(gate)·up, then its norm
            B.Down.Forward(s.Gate, qa, R, s.Out, Pool, KernelPath);          // [R, D]
        }
        if (Blocks.Count > 0) VectorMath.Add(s.X.AsSpan(0, R * D), s.Out.AsSpan(0, R * D)); // the last block's FFN output
        int L = logitRows.Length;
        for (int i = 0; i < L; i++)
            VectorMath.RmsNorm(s.X.AsSpan(logitRows[i] * D, D), FinalNorm, c.NormEps, s.Xn.AsSpan(i * D, D));
        qa.Quantize(s.Xn, L, D);
        Head.Forward(s.Xn, qa, L, logits, Pool, KernelPath);                 // [L, V]
    }

    /// <summary>
    /// Stores layer <paramref name="layer"/>'s keys and values of the rows not in <paramref name="logitRows"/>, then
    /// moves the listed rows' residual stream, query, key and value to rows 0..L-1 (ascending, so in place) and
    /// returns their count, caches and positions: the listed rows attend and store their own keys as before.
    /// </summary>
    (int Rows, KvCache[] Caches, int[] Positions) KeepLogitRows(int layer, int R, int[] logitRows, KvCache[] caches, int[] positions, ForwardScratch s)
    {
        int L = logitRows.Length, D = Config.ModelDim;
        var keep = new bool[R];
        foreach (int r in logitRows) keep[r] = true;
        ForRows(R, (r0, r1) => { for (int r = r0; r < r1; r++) if (!keep[r]) RopeAndStore(layer, r, caches, positions, s); });
        var kept = new KvCache[L];
        var at = new int[L];
        float[][] buffers = [s.X, s.Q, s.K, s.V];
        for (int i = 0; i < L; i++)
        {
            int r = logitRows[i];
            (kept[i], at[i]) = (caches[r], positions[r]);
            if (r == i) continue;
            foreach (var buffer in buffers) buffer.AsSpan(r * D, D).CopyTo(buffer.AsSpan(i * D, D));
        }
        return (L, kept, at);
    }

    /// <summary>
    /// The int8 caches that layer <paramref name="layer"/>'s attention will read, as far as its rows reach, into
    /// <paramref name="plan"/> (cleared, and left empty past the last layer).
    /// </summary>
    void PlanPrefetch(int layer, AttentionLayout layout, KvCache[] caches, int[] positions, PrefetchPlan plan)
    {
        plan.Clear();
        if (layer >= Blocks.Count) return;
        foreach (var (start, end) in layout.Runs) // in row order: a batch's decode rows come first
        {
            var c = caches[start];
            if (c.Type != KvCacheType.Int8) continue;
            int count = positions[end - 1] + 1; // a run's last row reaches furthest
            plan.Add(c.K8[layer], count * c.Stride);
            plan.Add(c.V8[layer], count * c.Stride);
            plan.Add(c.KScale[layer], c.KScale[layer].Length);
            plan.Add(c.VScale[layer], c.VScale[layer].Length);
            plan.Add(c.KSum[layer], c.KSum[layer].Length);
        }
    }

    /// <summary>
    /// y = RMSNorm(x)·w per row, then int8 quantization of y, split by rows across the pool for a prefill. Each row
    /// first takes <paramref name="residual"/> into x (x += residual) or, with <paramref name="up"/>, becomes
    /// SiLU(x)·up, so those element-wise steps ride in the same parallel loop instead of one of their own.
    /// </summary>
    void NormAndQuantize(float[] x, float[] w, float[] y, int rows, int dim, QuantizedActivations qa, float[]? residual = null, float[]? up = null)
    {
        qa.Prepare(rows, dim);
        float eps = Config.NormEps;
        ForRows(rows, (r0, r1) =>
        {
            for (int r = r0; r < r1; r++)
            {
                var xr = x.AsSpan(r * dim, dim);
                if (residual is not null) VectorMath.Add(xr, residual.AsSpan(r * dim, dim));
                if (up is not null) VectorMath.SiluGate(xr, up.AsSpan(r * dim, dim));
                VectorMath.RmsNorm(xr, w, eps, y.AsSpan(r * dim, dim));
            }
            qa.QuantizeRows(y, dim, r0, r1);
        });
    }

    /// <summary>
    /// Runs body over row ranges: inline for up to 3 rows, in chunks across the pool for more (measured: splitting 8 or
    /// 15 decode rows' norms made their pass about 3 % faster; 2 or 3 rows gained nothing).
    /// </summary>
    void ForRows(int rows, Action<int, int> body)
    {
        if (rows < 4) { body(0, rows); return; }
        int chunks = Pool.ThreadCount * 2, per = (rows + chunks - 1) / chunks;
        Pool.For(chunks, c => { int r0 = c * per, r1 = Math.Min(rows, r0 + per); if (r0 < r1) body(r0, r1); });
    }

    /// <summary>How a pass's attention splits its rows: the same for every layer, so it is found once per pass.</summary>
    /// <param name="Runs">Runs of consecutive rows over one cache (a prompt chunk, or a lone decode row), in row order.</param>
    /// <param name="Splits">Items per row when rows are items of their own: ranges of a row's heads.</param>
    /// <param name="Claims">When each run is one item (see <see cref="Attention"/>), the runs longest first, so the
    /// threads end together; otherwise null.</param>
    sealed record AttentionLayout(List<(int Start, int End)> Runs, int Splits, List<(int Start, int End)>? Claims);

    AttentionLayout LayOutAttention(int R, KvCache[] caches)
    {
        var runs = new List<(int Start, int End)>();
        for (int r0 = 0, r1; r0 < R; r0 = r1)
        {
            for (r1 = r0 + 1; r1 < R && caches[r1] == caches[r0]; r1++) { }
            runs.Add((r0, r1));
        }
        bool headMajor = false;
        for (int r = 0; r < R; r++) headMajor |= !caches[r].PositionMajor;
        int splits = headMajor ? Config.NumHeads : Math.Min(Config.NumHeads, (Pool.ThreadCount + R - 1) / R);
        int longest = 0;
        foreach (var (start, end) in runs) longest = Math.Max(longest, end - start);
        List<(int Start, int End)>? claims = null;
        if (splits == 1 && longest * Pool.ThreadCount <= R && runs.Select(run => caches[run.Start]).Distinct().Count() == runs.Count)
        {
            claims = [.. runs];
            claims.Sort((a, b) => a.End - a.Start != b.End - b.Start ? (b.End - b.Start).CompareTo(a.End - a.Start) : a.Start.CompareTo(b.Start));
        }
        return new AttentionLayout(runs, splits, claims);
    }

    /// <summary>
    /// Rotary embedding, the cache store and attention of every row, then its sub-norm and int8 quantization (the O
    /// projection's input). Once there are as many rows as threads, a row takes all its heads in one item (one
    /// front-to-back read of its position-major cache): the items are runs of consecutive rows over one cache (a
    /// prompt chunk, or a lone decode row), each on one thread, which stores a row's key and value just before it
    /// attends and normalizes the row right after, so neither step needs a loop (and a barrier) of its own; a prompt
    /// chunk's rows still see their own earlier tokens. With fewer rows, a run longer than a thread's share (a prompt
    /// chunk alone: measured 9.3 against 7.3-8.2 ms for 22 rows at position 180 when its rows were items of their own),
    /// or a cache shared by two runs, every row's keys and values are stored first and each row, or range of a row's
    /// heads, is an item (measured: one item per thread beats smaller ones for a lone row); over bf16 caches, one head
    /// per item, as their head-major layout suits.
    /// </summary>
    void Attention(int layer, int R, AttentionLayout layout, KvCache[] caches, int[] positions, ForwardScratch s, float[] subNorm, QuantizedActivations qa)
    {
        int H = Config.NumHeads, splits = layout.Splits;
        if (layout.Claims is { } runs)
        {
            int D = Config.ModelDim;
            float eps = Config.NormEps;
            qa.Prepare(R, D);
            // Each thread claims its next run before it attends the current one, so the current run's last weighted sums
            // (computed from L2) can ask for the next run's keys: memory streams meanwhile.
            int next = 0;
            Pool.For(Pool.ThreadCount, _ =>
            {
                int k = Interlocked.Increment(ref next) - 1;
                while (k < runs.Count)
                {
                    int n = Interlocked.Increment(ref next) - 1;
                    var (start, end) = runs[k];
                    for (int r = start; r < end; r++)
                    {
                        RopeAndStore(layer, r, caches, positions, s);
                        AttendHeads(layer, r, 0, H, caches, positions, s, r + 1 < end ? -1 : n < runs.Count ? runs[n].Start : -1);
                        var att = s.Att.AsSpan(r * D, D);
                        VectorMath.RmsNorm(att, subNorm, eps, att);
                        qa.QuantizeRows(s.Att, D, r, r + 1);
                    }
                    k = n;
                }
            });
            return;
        }
        ForRows(R, (r0, r1) => { for (int r = r0; r < r1; r++) RopeAndStore(layer, r, caches, positions, s); });
        Pool.For(R * splits, item =>
        {
            int r = item / splits, k = item % splits, h0 = k * H / splits;
            AttendHeads(layer, r, h0, (k + 1) * H / splits - h0, caches, positions, s, -1);
        });
        NormAndQuantize(s.Att, subNorm, s.Att, R, Config.ModelDim, qa);
    }

    /// <summary>Turns row <paramref name="r"/>'s query and key by its position and stores its key and value in its cache.</summary>
    void RopeAndStore(int layer, int r, KvCache[] caches, int[] positions, ForwardScratch s)
    {
        int H = Config.NumHeads, D = Config.ModelDim, hd = Config.HeadDim, half = hd / 2, p = positions[r];
        var cos = RopeCos.AsSpan(p * half, half);
        var sin = RopeSin.AsSpan(p * half, half);
        for (int h = 0; h < H; h++)
        {
            int o = r * D + h * hd;
            VectorMath.Rope(s.Q.AsSpan(o, hd), 1, hd, cos, sin);
            VectorMath.Rope(s.K.AsSpan(o, hd), 1, hd, cos, sin);
            caches[r].Store(layer, h, p, s.K.AsSpan(o, hd), s.V.AsSpan(o, hd));
        }
    }

    /// <summary>
    /// Heads [h0, h0 + heads) of one row: softmax(q·K / sqrt(hd)) · V over cached positions 0..p. Over an int8 cache,
    /// the keys of row <paramref name="prefetchRow"/> (this thread's next, or -1) are asked for into L2 meanwhile.
    /// </summary>
    unsafe void AttendHeads(int layer, int r, int h0, int heads, KvCache[] caches, int[] positions, ForwardScratch s, int prefetchRow)
    {
        int D = Config.ModelDim, hd = Config.HeadDim, count = positions[r] + 1;
        float[] scores = System.Buffers.ArrayPool<float>.Shared.Rent(heads * count);
        var cache = caches[r];
        int stride = cache.Stride;
        float scale = 1f / MathF.Sqrt(hd);
        fixed (float* q = s.Q, att = s.Att, sc = scores)
        {
            float* qh = q + r * D + h0 * hd, oh = att + r * D + h0 * hd;
            if (cache.Type == KvCacheType.Int8) // position-major: head h0 + i of a position is i · hd after head h0
                fixed (sbyte* keys = cache.K8[layer], values = cache.V8[layer])
                fixed (float* ks = cache.KScale[layer], vs = cache.VScale[layer])
                fixed (int* sums = cache.KSum[layer])
                {
                    int offset = cache.Offset(h0, 0), si = cache.ScaleIndex(h0, 0);
                    var nextCache = prefetchRow >= 0 && caches[prefetchRow].Type == KvCacheType.Int8 ? caches[prefetchRow] : null;
                    fixed (sbyte* nextKeys = nextCache is null ? null : nextCache.K8[layer])
                        AttentionKernels.AttendInt8(qh, keys + offset, ks + si, sums + si, values + offset, vs + si, count, hd, heads, stride, cache.Capacity, scale, sc, oh,
                            nextKeys, nextCache is null ? 0 : (long)(positions[prefetchRow] + 1) * nextCache.Stride);
                }
            else
                fixed (ushort* keys = cache.K[layer], values = cache.V[layer])
                    for (int i = 0; i < heads; i++)
                    {
                        int o = cache.Offset(h0 + i, 0);
                        AttentionKernels.Attend(qh + i * hd, keys + o, values + o, count, hd, stride, scale, sc, oh + i * hd);
                    }
        }
        System.Buffers.ArrayPool<float>.Shared.Return(scores);
    }
}
