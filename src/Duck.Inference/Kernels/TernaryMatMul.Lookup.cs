// The batched path of the ternary product without multiplies: for every group of three columns, a token's 27
// possible partial sums (QuantizedActivations.ThreadTables) form one 512-bit table of int16, and vpermw looks up
// 32 rows' sums in it at once, indexed by the rows' base-3 weight triples (PackedTernary.Triples). One vpermw and one vpaddw
// cover 96 multiply-adds, where vpmaddubsw and its add cover 64; both issue about once per cycle on Zen 4, whose
// multiply pipes bound the multiply kernels. Exact: the int32 dot equals the multiply kernels', so y is bit-identical.
// Not for single tokens (the tables cost as much as the products then; the multiply kernels serve them).
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Duck.Inference.Kernels;

public static unsafe partial class TernaryMatMul
{
    /// <summary>Smallest batch the lookup path takes: below it the tables would cost more than the lookups save.</summary>
    public const int LookupMinTokens = 8;

    /// <summary>Rows per lookup call: a quad of 32-row tiles whose 16 int16 accumulators (4 tiles × 4 tokens) fill half the registers.</summary>
    const int QuadRows = 4 * PackedTernary.TileRows;

    /// <summary>Lookup words summed in int16 before widening: 28 words × 3 groups × 3·128 stays below 32768.</summary>
    const int Int16Words = 28;

    /// <summary>
    /// The multiple of rows callers should split a product into for <paramref name="path"/> with this many tokens: a
    /// lookup range must start on a quad of tiles.
    /// </summary>
    public static int RowGranule(KernelPath path, int tokens) =>
        path == KernelPath.Avx512Lookup && tokens >= LookupMinTokens && IsSupported(path) ? QuadRows : 4;

    static bool UsesLookup(PackedTernary w, QuantizedActivations x, int rowStart, int tokenStart) =>
        x.Rows >= LookupMinTokens && x.TableGroups == 3 * w.Words && rowStart % QuadRows == 0 && tokenStart % 4 == 0;

    /// <summary>
    /// The tokens a lookup call over one row chunk should take, so a product with few quads of rows (o and down:
    /// 6 for <c>small</c>) still makes enough items for <paramref name="threads"/> to end together; all of them otherwise.
    /// </summary>
    public static int TokensPerItem(KernelPath path, int tokens, int rows, int threads)
    {
        if (RowGranule(path, tokens) != QuadRows) return tokens;
        int quads = (rows + QuadRows - 1) / QuadRows, blocks = (tokens + 3) / 4;
        int parts = Math.Clamp((8 * threads + quads - 1) / quads, 1, blocks);
        return (blocks + parts - 1) / parts * 4;
    }

    static void Lookup(in Args a, QuantizedActivations x, int firstBlock, int rowStart, int rowEnd)
    {
        ushort* triples = a.W.Triples;
        int words = a.W.Words, blocks = (a.Tokens + 3) / 4;
        int* acc = stackalloc int[16 * PackedTernary.TileRows];
        short* tables = x.ThreadTables();
        // This thread's unfinished range of the plan, carried from its previous call.
        var plan = x.Prefetch;
        byte* pf = null, pfEnd = null;
        if (plan is not null && threadPlan == plan && threadPlanVersion == plan.Version)
        {
            pf = (byte*)threadPrefetch;
            pfEnd = (byte*)threadPrefetchEnd;
        }
        // Four blocks of four tokens at a time: their tables (16 × 64 B per group) stay in L2 while the quads pass.
        for (int b0 = 0; b0 < blocks; b0 += 4)
            for (int row = rowStart; row < rowEnd; row += QuadRows)
                for (int b = b0; b < Math.Min(blocks, b0 + 4); b++)
                {
                    ushort* w0 = triples + (long)row * words;
                    // The next quad of this range streams into L2 meanwhile, one of its four tiles per block (a tile is
                    // `words` lines): the weights come from memory, as the next layers' caches and tables push them out.
                    byte* next = row + QuadRows < rowEnd ? (byte*)(w0 + (long)QuadRows * words) + (long)(b - b0) * words * 64 : null;
                    short* tab = tables + (long)(firstBlock + b) * x.TableGroups * 128;
                    switch (Math.Min(4, a.Tokens - 4 * b)) // a batch's last block may hold fewer tokens: no lookups for the others
                    {
                        case 4: Tiles4Tokens<Four>(a, w0, words, tab, acc, row, rowEnd, 4 * b, plan, ref pf, ref pfEnd, next); break;
                        case 3: Tiles4Tokens<Three>(a, w0, words, tab, acc, row, rowEnd, 4 * b, plan, ref pf, ref pfEnd, next); break;
                        case 2: Tiles4Tokens<Two>(a, w0, words, tab, acc, row, rowEnd, 4 * b, plan, ref pf, ref pfEnd, next); break;
                        default: Tiles4Tokens<One>(a, w0, words, tab, acc, row, rowEnd, 4 * b, plan, ref pf, ref pfEnd, next); break;
                    }
                }
        if (plan is not null) (threadPlan, threadPlanVersion, threadPrefetch, threadPrefetchEnd) = (plan, plan.Version, (nint)pf, (nint)pfEnd);
    }

    /// <summary>
    /// Outputs of more floats than this (512 KB) are taken to be out of cache when written: the head's logits of a batch
    /// (3.2 MB for 16 tokens), a long prompt's wide products.
    /// </summary>
    const long OutputInCache = 128 * 1024;

    [ThreadStatic] static PrefetchPlan? threadPlan;
    [ThreadStatic] static int threadPlanVersion;
    [ThreadStatic] static nint threadPrefetch, threadPrefetchEnd;

    /// <summary>Tokens of a block that <see cref="Tiles4Tokens{TN}"/> looks up (a constant per instantiation).</summary>
    interface ITokens { static abstract int N { get; } }
    struct One : ITokens { public static int N => 1; }
    struct Two : ITokens { public static int N => 2; }
    struct Three : ITokens { public static int N => 3; }
    struct Four : ITokens { public static int N => 4; }

    /// <summary>
    /// Rows row..row+127 × tokens t..t+N-1 (N ≤ 4): up to 16 int16 accumulators, each table load feeding four vpermw
    /// (one per tile), widened into <paramref name="acc"/> every <see cref="Int16Words"/> words; stores rows below
    /// rowEnd of tokens that exist.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void Tiles4Tokens<TN>(in Args a, ushort* w0, int words, short* tab, int* acc, int row, int rowEnd, int t,
        PrefetchPlan? plan, ref byte* prefetch, ref byte* prefetchEnd, byte* nextWeights) where TN : struct, ITokens
    {
        byte* pf = prefetch, pfEnd = prefetchEnd;
        int tileStride = words * PackedTernary.TileRows;
        short* p0 = (short*)w0, p1 = p0 + tileStride, p2 = p1 + tileStride, p3 = p2 + tileStride;
        new Span<int>(acc, TN.N * 4 * PackedTernary.TileRows).Clear();
        // Out-of-cache outputs: the lines this call stores at its end (N tokens' 128 floats, 9 lines each as the rows
        // are not line-aligned) are asked for during its first words. Otherwise the stores wait on memory in a burst at
        // the end, and the next call stalls behind them: measured, the head ran 12-15 % faster alone, a pass 1.5-2 %.
        byte* y0 = (long)a.W.Rows * a.Tokens > OutputInCache && row + QuadRows <= rowEnd ? (byte*)(a.Y + (long)t * a.W.Rows + row) : null;
        long yStride = (long)a.W.Rows * sizeof(float);
        for (int s = 0; s < words; s += Int16Words)
        {
            int e = Math.Min(words, s + Int16Words);
            if (pf >= pfEnd && plan is not null && !plan.TryClaim(out pf, out pfEnd)) plan = null;
            Vector512<short> a0 = default, a1 = default, a2 = default, a3 = default, b0 = default, b1 = default, b2 = default, b3 = default;
            Vector512<short> c0 = default, c1 = default, c2 = default, c3 = default, d0 = default, d1 = default, d2 = default, d3 = default;
            for (int wd = s; wd < e; wd++)
            {
                int o = wd * PackedTernary.TileRows;
                if (pf < pfEnd) { Sse.Prefetch0(pf); pf += 64; } // one line of the plan per word, about 16 GB/s
                if (nextWeights != null) Sse.Prefetch1(nextWeights + wd * 64); // stays within the range's quads
                if (y0 != null && wd < 9)
                {
                    Sse.Prefetch0(y0 + wd * 64);
                    if (TN.N > 1) Sse.Prefetch0(y0 + yStride + wd * 64);
                    if (TN.N > 2) Sse.Prefetch0(y0 + 2 * yStride + wd * 64);
                    if (TN.N > 3) Sse.Prefetch0(y0 + 3 * yStride + wd * 64);
                }
                var i0 = Vector512.Load(p0 + o); var i1 = Vector512.Load(p1 + o);
                var i2 = Vector512.Load(p2 + o); var i3 = Vector512.Load(p3 + o);
                short* tg = tab + wd * 3 * 128;
                // vpermw reads the low 5 bits of each index lane, so the second and third groups are plain shifts.
                Group(i0, i1, i2, i3, tg);
                Group(i0 >>> 5, i1 >>> 5, i2 >>> 5, i3 >>> 5, tg + 128);
                Group(i0 >>> 10, i1 >>> 10, i2 >>> 10, i3 >>> 10, tg + 256);
            }
            Widen(acc, a0, b0, c0, d0);
            if (TN.N > 1) Widen(acc + 128, a1, b1, c1, d1);
            if (TN.N > 2) Widen(acc + 256, a2, b2, c2, d2);
            if (TN.N > 3) Widen(acc + 384, a3, b3, c3, d3);

            [MethodImpl(MethodImplOptions.AggressiveInlining)]
            void Group(Vector512<short> i0, Vector512<short> i1, Vector512<short> i2, Vector512<short> i3, short* tg)
            {
                var v = Vector512.Load(tg);
                a0 += Avx512BW.PermuteVar32x16(v, i0); b0 += Avx512BW.PermuteVar32x16(v, i1); c0 += Avx512BW.PermuteVar32x16(v, i2); d0 += Avx512BW.PermuteVar32x16(v, i3);
                if (TN.N > 1)
                {
                    v = Vector512.Load(tg + 32);
                    a1 += Avx512BW.PermuteVar32x16(v, i0); b1 += Avx512BW.PermuteVar32x16(v, i1); c1 += Avx512BW.PermuteVar32x16(v, i2); d1 += Avx512BW.PermuteVar32x16(v, i3);
                }
                if (TN.N > 2)
                {
                    v = Vector512.Load(tg + 64);
                    a2 += Avx512BW.PermuteVar32x16(v, i0); b2 += Avx512BW.PermuteVar32x16(v, i1); c2 += Avx512BW.PermuteVar32x16(v, i2); d2 += Avx512BW.PermuteVar32x16(v, i3);
                }
                if (TN.N > 3)
                {
                    v = Vector512.Load(tg + 96);
                    a3 += Avx512BW.PermuteVar32x16(v, i0); b3 += Avx512BW.PermuteVar32x16(v, i1); c3 += Avx512BW.PermuteVar32x16(v, i2); d3 += Avx512BW.PermuteVar32x16(v, i3);
                }
            }
        }
        prefetch = pf;
        prefetchEnd = pfEnd;
        // acc is [token][tile][32]: store y[t, rows] = dot · factor[t], as the other paths do (int dot, then one float multiply).
        for (int k = 0; k < TN.N && t + k < a.Tokens; k++)
        {
            float f = a.Factor[t + k];
            float* yr = a.Y + (long)(t + k) * a.W.Rows;
            for (int tile = 0; tile < 4; tile++)
            {
                int r = row + tile * PackedTernary.TileRows;
                int* src = acc + (k * 4 + tile) * PackedTernary.TileRows;
                if (r + PackedTernary.TileRows <= rowEnd)
                {
                    (Vector512.ConvertToSingle(Vector512.Load(src)) * f).Store(yr + r);
                    (Vector512.ConvertToSingle(Vector512.Load(src + 16)) * f).Store(yr + r + 16);
                }
                else
                    for (int l = 0; r + l < rowEnd; l++) yr[r + l] = src[l] * f;
            }
        }
    }

    /// <summary>Adds one token's four tiles of int16 sums into its int32 accumulators [tile][32].</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static void Widen(int* acc, Vector512<short> t0, Vector512<short> t1, Vector512<short> t2, Vector512<short> t3)
    {
        Add(acc, t0); Add(acc + 32, t1); Add(acc + 64, t2); Add(acc + 96, t3);

        static void Add(int* p, Vector512<short> v)
        {
            (Vector512.Load(p) + Avx512BW.ConvertToVector512Int32(v.GetLower())).Store(p);
            (Vector512.Load(p + 16) + Avx512BW.ConvertToVector512Int32(v.GetUpper())).Store(p + 16);
        }
    }
}
