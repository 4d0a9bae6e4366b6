// Ternary × int8 matrix products: y[t, i] = (Σ_j t_ij · xq_tj) · gamma / s_t for a range of output rows i and
// every token t. One scalar oracle and three multiply paths (AVX2 vpmaddubsw, AVX-VNNI vpdpbusd, AVX-512BW), each
// tiled over rows and tokens so one unpack of the 2-bit codes feeds several products. The kernels multiply codes
// (t+1 ∈ {0,1,2}, unsigned) by int8 activations and subtract the row's activation sum. A fourth path for batches,
// table lookups with vpermw, lives in TernaryMatMul.Lookup.cs. Not thread-aware: callers split rows.
// The engine's per-token methods here and in the other kernels, KvCache, EmbeddingTable and Sampler are marked
// AggressiveOptimization: tiered compilation would run them unoptimized for the first second or so of a process,
// which made a fresh silo's first replies several times slower (time to first token p99 2.5-2.9 s against 0.4 s).
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Duck.Inference.Kernels;

/// <summary>
/// Which implementation a kernel uses; tests force each one, production takes <see cref="TernaryMatMul.Best"/> (or
/// <see cref="TernaryMatMul.BestBatched"/> when serving many sessions).
/// </summary>
public enum KernelPath { Scalar, Avx2, AvxVnni, Avx512, Avx512Lookup }

/// <summary>Ternary matrix × int8 activations.</summary>
public static unsafe partial class TernaryMatMul
{
    /// <summary>The fastest path this CPU (and the DOTNET_Enable* settings) supports.</summary>
    public static KernelPath Best { get; } =
        IsSupported(KernelPath.Avx512) ? KernelPath.Avx512
        : IsSupported(KernelPath.AvxVnni) ? KernelPath.AvxVnni
        : IsSupported(KernelPath.Avx2) ? KernelPath.Avx2 : KernelPath.Scalar;

    /// <summary>
    /// The fastest path for many concurrent sequences: <see cref="KernelPath.Avx512Lookup"/> where supported, else
    /// <see cref="Best"/>. Serving silos take it; it costs a second weight layout (27.6 MB for <c>small</c>), which a
    /// single conversation, with only its prompts batched, does not earn back.
    /// </summary>
    public static KernelPath BestBatched { get; } = IsSupported(KernelPath.Avx512Lookup) ? KernelPath.Avx512Lookup : Best;

    /// <summary>True when the hardware and runtime allow the path.</summary>
    public static bool IsSupported(KernelPath path) => path switch
    {
        KernelPath.Scalar => true,
        KernelPath.Avx2 => Avx2.IsSupported,
        KernelPath.AvxVnni => Avx2.IsSupported && AvxVnni.IsSupported,
        KernelPath.Avx512 or KernelPath.Avx512Lookup => Avx2.IsSupported && Avx512BW.IsSupported,
        _ => false,
    };

    /// <summary>
    /// Computes rows [rowStart, rowEnd) of y = x Wᵀ for tokens [tokenStart, tokenEnd) (all <c>x.Rows</c> by default); y
    /// is [tokens, w.Rows] row-major. Effectively y[t, i] = (Σ_j (code_ij − 1) · xq[t, j]) · w.Scale / x.Scales[t].
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Multiply(PackedTernary w, QuantizedActivations x, Span<float> y, int rowStart, int rowEnd, KernelPath path, int tokenStart = 0, int tokenEnd = -1)
    {
        if (x.PaddedCols != w.PaddedCols)
            throw new ArgumentException($"activations have {x.PaddedCols} padded columns, weights {w.PaddedCols}");
        if (y.Length < x.Rows * w.Rows) throw new ArgumentException($"output holds {y.Length} values, needs {x.Rows * w.Rows}");
        if (!IsSupported(path)) throw new PlatformNotSupportedException($"kernel path {path} is not supported on this machine");
        if (tokenEnd < 0) tokenEnd = x.Rows;
        if (tokenStart < 0 || tokenEnd > x.Rows || tokenStart > tokenEnd)
            throw new ArgumentException($"token range [{tokenStart}, {tokenEnd}) is not within the {x.Rows} tokens");
        int tokens = tokenEnd - tokenStart;
        // One division per token, not one per output: y = (dot − sum) · factor[t].
        float* factor = stackalloc float[tokens];
        for (int t = 0; t < tokens; t++) factor[t] = w.Scale / x.Scales[tokenStart + t];
        fixed (sbyte* xp = x.Values)
        fixed (float* yp = y)
        fixed (int* sums = x.Sums)
        {
            // The kernels see only the range: its first token is their token 0.
            var a = new Args(w, xp + (long)tokenStart * x.PaddedCols, factor, sums + tokenStart, tokens, yp + (long)tokenStart * w.Rows);
            switch (path)
            {
                case KernelPath.Scalar: Scalar(a, rowStart, rowEnd); break;
                case KernelPath.Avx2: Tiled256<Avx2Dot>(a, rowStart, rowEnd); break;
                case KernelPath.AvxVnni: Tiled256<VnniDot>(a, rowStart, rowEnd); break;
                case KernelPath.Avx512: Tiled512(a, rowStart, rowEnd); break;
                case KernelPath.Avx512Lookup:
                    if (UsesLookup(w, x, rowStart, tokenStart)) Lookup(a, x, tokenStart / 4, rowStart, rowEnd);
                    else Tiled512(a, rowStart, rowEnd);
                    break;
            }
        }
    }

    readonly struct Args(PackedTernary w, sbyte* x, float* factor, int* sums, int tokens, float* y)
    {
        public readonly PackedTernary W = w;
        public readonly sbyte* X = x;
        public readonly float* Factor = factor;
        public readonly int* Sums = sums;
        public readonly int Tokens = tokens;
        public readonly float* Y = y;
        public readonly int Kp = w.PaddedCols;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public void Store(int row, int token, int codeDot) =>
            Y[(long)token * W.Rows + row] = (codeDot - Sums[token]) * Factor[token];
    }

    /// <summary>The oracle: one multiply-add per weight, ternary values decoded one by one.</summary>
    static void Scalar(in Args a, int rowStart, int rowEnd)
    {
        for (int i = rowStart; i < rowEnd; i++)
            for (int t = 0; t < a.Tokens; t++)
            {
                sbyte* xr = a.X + (long)t * a.Kp;
                int dot = 0;
                for (int j = 0; j < a.W.PaddedCols; j++) dot += a.W.Get(i, j) * xr[j];
                a.Y[(long)t * a.W.Rows + i] = dot * a.Factor[t];
            }
    }

    interface IDot256
    {
        static abstract Vector256<int> Dot(Vector256<int> acc, Vector256<byte> w, Vector256<sbyte> x);
    }

    struct VnniDot : IDot256
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<int> Dot(Vector256<int> acc, Vector256<byte> w, Vector256<sbyte> x) =>
            AvxVnni.MultiplyWideningAndAdd(acc, w, x);
    }

    struct Avx2Dot : IDot256
    {
        // |pair sum| <= 2·2·128 = 512, so vpmaddubsw never saturates.
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<int> Dot(Vector256<int> acc, Vector256<byte> w, Vector256<sbyte> x) =>
            Avx2.Add(acc, Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(w, x), Vector256<short>.One));
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector256<byte> Codes(Vector256<byte> raw, int shift) =>
        (raw.AsUInt16() >>> shift).AsByte() & Vector256.Create((byte)3);

    /// <summary>Tokens per cache block: their int8 rows (32 × PaddedCols bytes) stay in L1/L2 while every row of the range passes.</summary>
    const int TokenBlock = 32;

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void Tiled256<TDot>(in Args a, int rowStart, int rowEnd) where TDot : struct, IDot256
    {
        if (a.Tokens < 4)
        {
            int i = rowStart;
            for (; i + 4 <= rowEnd; i += 4)
                for (int t = 0; t < a.Tokens; t++) Rows4Token1<TDot>(a, i, t);
            for (; i < rowEnd; i++)
                for (int t = 0; t < a.Tokens; t++) Row1Token1<TDot>(a, i, t);
            return;
        }
        for (int t0 = 0; t0 < a.Tokens; t0 += TokenBlock)
        {
            int t1 = Math.Min(a.Tokens, t0 + TokenBlock);
            int i = rowStart;
            for (; i + 2 <= rowEnd; i += 2)
            {
                int t = t0;
                for (; t + 4 <= t1; t += 4) Rows2Tokens4<TDot>(a, i, t);
                for (; t < t1; t++) { Row1Token1<TDot>(a, i, t); Row1Token1<TDot>(a, i + 1, t); }
            }
            for (; i < rowEnd; i++)
                for (int t = t0; t < t1; t++) Row1Token1<TDot>(a, i, t);
        }
    }

    /// <summary>
    /// 2 rows × 4 tokens: 8 accumulators, 2 code vectors and one activation vector fit the 16 VEX registers. The four
    /// shifts are unrolled so each vpdpbusd costs about two instructions in all.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void Rows2Tokens4<TDot>(in Args a, int i, int t) where TDot : struct, IDot256
    {
        int rb = a.W.RowBytes, kp = a.Kp;
        byte* w0 = a.W.RowPointer(i), w1 = w0 + rb;
        sbyte* x = a.X + (long)t * kp;
        var mask = Vector256.Create((byte)3);
        Vector256<int> c00 = default, c01 = default, c02 = default, c03 = default;
        Vector256<int> c10 = default, c11 = default, c12 = default, c13 = default;
        for (int g = 0; g < rb; g += 32, x += (g & 63) == 0 ? 224 : 32)
        {
            var r0 = Vector256.Load(w0 + g).AsUInt16();
            var r1 = Vector256.Load(w1 + g).AsUInt16();
            Step(r0.AsByte() & mask, r1.AsByte() & mask, x);
            Step((r0 >>> 2).AsByte() & mask, (r1 >>> 2).AsByte() & mask, x + 64);
            Step((r0 >>> 4).AsByte() & mask, (r1 >>> 4).AsByte() & mask, x + 128);
            Step((r0 >>> 6).AsByte() & mask, (r1 >>> 6).AsByte() & mask, x + 192);
        }
        a.Store(i, t, Vector256.Sum(c00)); a.Store(i, t + 1, Vector256.Sum(c01)); a.Store(i, t + 2, Vector256.Sum(c02)); a.Store(i, t + 3, Vector256.Sum(c03));
        a.Store(i + 1, t, Vector256.Sum(c10)); a.Store(i + 1, t + 1, Vector256.Sum(c11)); a.Store(i + 1, t + 2, Vector256.Sum(c12)); a.Store(i + 1, t + 3, Vector256.Sum(c13));

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        void Step(Vector256<byte> q0, Vector256<byte> q1, sbyte* xc)
        {
            var v = Vector256.Load(xc); c00 = TDot.Dot(c00, q0, v); c10 = TDot.Dot(c10, q1, v);
            v = Vector256.Load(xc + kp); c01 = TDot.Dot(c01, q0, v); c11 = TDot.Dot(c11, q1, v);
            v = Vector256.Load(xc + 2 * kp); c02 = TDot.Dot(c02, q0, v); c12 = TDot.Dot(c12, q1, v);
            v = Vector256.Load(xc + 3 * kp); c03 = TDot.Dot(c03, q0, v); c13 = TDot.Dot(c13, q1, v);
        }
    }

    /// <summary>
    /// 4 rows × 1 token (decode): a 64-byte group per iteration, shifts as immediates, and two accumulators per row
    /// (even and odd shifts) so the vpdpbusd latency chains overlap.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void Rows4Token1<TDot>(in Args a, int i, int t) where TDot : struct, IDot256
    {
        int rb = a.W.RowBytes;
        byte* w0 = a.W.RowPointer(i), w1 = w0 + rb, w2 = w1 + rb, w3 = w2 + rb;
        sbyte* x = a.X + (long)t * a.Kp;
        Vector256<int> c0 = default, c1 = default, c2 = default, c3 = default;
        Vector256<int> d0 = default, d1 = default, d2 = default, d3 = default;
        var mask = Vector256.Create((byte)3);
        for (int g = 0; g < rb; g += 32, x += (g & 63) == 0 ? 224 : 32)
        {
            var r0 = Vector256.Load(w0 + g).AsUInt16(); var r1 = Vector256.Load(w1 + g).AsUInt16();
            var r2 = Vector256.Load(w2 + g).AsUInt16(); var r3 = Vector256.Load(w3 + g).AsUInt16();
            var v = Vector256.Load(x);
            c0 = TDot.Dot(c0, r0.AsByte() & mask, v); c1 = TDot.Dot(c1, r1.AsByte() & mask, v);
            c2 = TDot.Dot(c2, r2.AsByte() & mask, v); c3 = TDot.Dot(c3, r3.AsByte() & mask, v);
            v = Vector256.Load(x + 64);
            d0 = TDot.Dot(d0, (r0 >>> 2).AsByte() & mask, v); d1 = TDot.Dot(d1, (r1 >>> 2).AsByte() & mask, v);
            d2 = TDot.Dot(d2, (r2 >>> 2).AsByte() & mask, v); d3 = TDot.Dot(d3, (r3 >>> 2).AsByte() & mask, v);
            v = Vector256.Load(x + 128);
            c0 = TDot.Dot(c0, (r0 >>> 4).AsByte() & mask, v); c1 = TDot.Dot(c1, (r1 >>> 4).AsByte() & mask, v);
            c2 = TDot.Dot(c2, (r2 >>> 4).AsByte() & mask, v); c3 = TDot.Dot(c3, (r3 >>> 4).AsByte() & mask, v);
            v = Vector256.Load(x + 192);
            d0 = TDot.Dot(d0, (r0 >>> 6).AsByte() & mask, v); d1 = TDot.Dot(d1, (r1 >>> 6).AsByte() & mask, v);
            d2 = TDot.Dot(d2, (r2 >>> 6).AsByte() & mask, v); d3 = TDot.Dot(d3, (r3 >>> 6).AsByte() & mask, v);
        }
        a.Store(i, t, Vector256.Sum(c0 + d0)); a.Store(i + 1, t, Vector256.Sum(c1 + d1));
        a.Store(i + 2, t, Vector256.Sum(c2 + d2)); a.Store(i + 3, t, Vector256.Sum(c3 + d3));
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void Row1Token1<TDot>(in Args a, int i, int t) where TDot : struct, IDot256
    {
        byte* w0 = a.W.RowPointer(i);
        sbyte* x0 = a.X + (long)t * a.Kp;
        Vector256<int> c0 = default;
        for (int g = 0; g < a.W.RowBytes; g += 32)
        {
            int colBase = (g >> 6) * 256 + (g & 63);
            var r0 = Vector256.Load(w0 + g);
            for (int l = 0; l < 4; l++) c0 = TDot.Dot(c0, Codes(r0, 2 * l), Vector256.Load(x0 + colBase + l * 64));
        }
        a.Store(i, t, Vector256.Sum(c0));
    }

    // ---- AVX-512BW: a 64-byte load holds a whole 256-column block. vpmaddubsw products (|pair| <= 512) are summed
    // in int16 for up to 8 blocks (<= 8·4·512 = 16384, no overflow), then widened once with vpmaddwd. ----

    const int Int16Blocks = 8;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector512<short> Mul(Vector512<byte> w, Vector512<sbyte> x) => Avx512BW.MultiplyAddAdjacent(w, x);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector512<int> Widen(Vector512<int> acc, Vector512<short> sum16) =>
        acc + Avx512BW.MultiplyAddAdjacent(sum16, Vector512<short>.One);

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void Tiled512(in Args a, int rowStart, int rowEnd)
    {
        for (int t0 = 0; t0 < a.Tokens; t0 += TokenBlock)
        {
            int t1 = Math.Min(a.Tokens, t0 + TokenBlock);
            int i = rowStart;
            bool oneGroup = a.W.RowBytes <= 64 * Int16Blocks; // K <= 2048: int16 sums never need widening midway
            for (; i + 4 <= rowEnd; i += 4)
            {
                int t = t0;
                if (oneGroup)
                    for (; t + 4 <= t1; t += 4) Rows4Tokens4x512(a, i, t);
                for (; t + 2 <= t1; t += 2) Rows4Tokens2x512(a, i, t);
                for (; t < t1; t++) Rows4Token1x512(a, i, t);
            }
            for (; i < rowEnd; i++)
                for (int t = t0; t < t1; t++) Row1Token1<Avx2Dot>(a, i, t);
        }
    }

    /// <summary>
    /// 4 rows × 4 tokens for rows of at most <see cref="Int16Blocks"/> blocks (K <= 2048): 16 int16 accumulators,
    /// widened once at the end, so each unpacked code vector feeds four products and no int32 accumulators are live.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void Rows4Tokens4x512(in Args a, int i, int t)
    {
        int rb = a.W.RowBytes, kp = a.Kp;
        byte* w0 = a.W.RowPointer(i), w1 = w0 + rb, w2 = w1 + rb, w3 = w2 + rb;
        sbyte* x0 = a.X + (long)t * kp;
        var mask = Vector512.Create((byte)3);
        Vector512<short> s00 = default, s01 = default, s02 = default, s03 = default;
        Vector512<short> s10 = default, s11 = default, s12 = default, s13 = default;
        Vector512<short> s20 = default, s21 = default, s22 = default, s23 = default;
        Vector512<short> s30 = default, s31 = default, s32 = default, s33 = default;
        for (int g = 0; g < rb; g += 64)
        {
            var r0 = Vector512.Load(w0 + g).AsUInt16(); var r1 = Vector512.Load(w1 + g).AsUInt16();
            var r2 = Vector512.Load(w2 + g).AsUInt16(); var r3 = Vector512.Load(w3 + g).AsUInt16();
            sbyte* x = x0 + g * 4;
            Step(r0.AsByte() & mask, r1.AsByte() & mask, r2.AsByte() & mask, r3.AsByte() & mask, x);
            Step((r0 >>> 2).AsByte() & mask, (r1 >>> 2).AsByte() & mask, (r2 >>> 2).AsByte() & mask, (r3 >>> 2).AsByte() & mask, x + 64);
            Step((r0 >>> 4).AsByte() & mask, (r1 >>> 4).AsByte() & mask, (r2 >>> 4).AsByte() & mask, (r3 >>> 4).AsByte() & mask, x + 128);
            Step((r0 >>> 6).AsByte() & mask, (r1 >>> 6).AsByte() & mask, (r2 >>> 6).AsByte() & mask, (r3 >>> 6).AsByte() & mask, x + 192);
        }
        Store4(a, i, t, s00, s10, s20, s30);
        Store4(a, i, t + 1, s01, s11, s21, s31);
        Store4(a, i, t + 2, s02, s12, s22, s32);
        Store4(a, i, t + 3, s03, s13, s23, s33);

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        void Step(Vector512<byte> q0, Vector512<byte> q1, Vector512<byte> q2, Vector512<byte> q3, sbyte* p)
        {
            var v = Vector512.Load(p); s00 += Mul(q0, v); s10 += Mul(q1, v); s20 += Mul(q2, v); s30 += Mul(q3, v);
            v = Vector512.Load(p + kp); s01 += Mul(q0, v); s11 += Mul(q1, v); s21 += Mul(q2, v); s31 += Mul(q3, v);
            v = Vector512.Load(p + 2 * kp); s02 += Mul(q0, v); s12 += Mul(q1, v); s22 += Mul(q2, v); s32 += Mul(q3, v);
            v = Vector512.Load(p + 3 * kp); s03 += Mul(q0, v); s13 += Mul(q1, v); s23 += Mul(q2, v); s33 += Mul(q3, v);
        }
    }

    /// <summary>Widens four rows' int16 sums and stores them into rows i..i+3 of token t (<see cref="StoreRows4"/>).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static void Store4(in Args a, int i, int t, Vector512<short> r0, Vector512<short> r1, Vector512<short> r2, Vector512<short> r3)
    {
        StoreRows4(a, i, t, Fold(r0), Fold(r1), Fold(r2), Fold(r3));

        static Vector256<int> Fold(Vector512<short> x)
        {
            var w = Widen(default, x);
            return w.GetLower() + w.GetUpper();
        }
    }

    /// <summary>
    /// Reduces four rows' partial sums together (vphaddd) and, as rows i..i+3 of token t are adjacent in y, stores
    /// (dot − sum) · factor for all four in one vector, as <see cref="Args.Store"/> does for one.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static void StoreRows4(in Args a, int i, int t, Vector256<int> r0, Vector256<int> r1, Vector256<int> r2, Vector256<int> r3)
    {
        var abcd = Avx2.HorizontalAdd(Avx2.HorizontalAdd(r0, r1), Avx2.HorizontalAdd(r2, r3)); // [a b c d | a b c d] partial sums
        var sums = abcd.GetLower() + abcd.GetUpper();
        var y = Vector128.ConvertToSingle(sums - Vector128.Create(a.Sums[t])) * Vector128.Create(a.Factor[t]);
        y.Store(a.Y + (long)t * a.W.Rows + i);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void Rows4Tokens2x512(in Args a, int i, int t)
    {
        int rb = a.W.RowBytes;
        byte* w0 = a.W.RowPointer(i), w1 = w0 + rb, w2 = w1 + rb, w3 = w2 + rb;
        sbyte* x0 = a.X + (long)t * a.Kp, x1 = x0 + a.Kp;
        var mask = Vector512.Create((byte)3);
        Vector512<int> c00 = default, c01 = default, c10 = default, c11 = default;
        Vector512<int> c20 = default, c21 = default, c30 = default, c31 = default;
        for (int g0 = 0; g0 < rb; g0 += 64 * Int16Blocks)
        {
            Vector512<short> s00 = default, s01 = default, s10 = default, s11 = default;
            Vector512<short> s20 = default, s21 = default, s30 = default, s31 = default;
            int gEnd = Math.Min(rb, g0 + 64 * Int16Blocks);
            for (int g = g0; g < gEnd; g += 64)
            {
                var r0 = Vector512.Load(w0 + g).AsUInt16(); var r1 = Vector512.Load(w1 + g).AsUInt16();
                var r2 = Vector512.Load(w2 + g).AsUInt16(); var r3 = Vector512.Load(w3 + g).AsUInt16();
                sbyte* xa = x0 + g * 4, xb = x1 + g * 4;
                Step(r0.AsByte() & mask, r1.AsByte() & mask, r2.AsByte() & mask, r3.AsByte() & mask, xa, xb);
                Step((r0 >>> 2).AsByte() & mask, (r1 >>> 2).AsByte() & mask, (r2 >>> 2).AsByte() & mask, (r3 >>> 2).AsByte() & mask, xa + 64, xb + 64);
                Step((r0 >>> 4).AsByte() & mask, (r1 >>> 4).AsByte() & mask, (r2 >>> 4).AsByte() & mask, (r3 >>> 4).AsByte() & mask, xa + 128, xb + 128);
                Step((r0 >>> 6).AsByte() & mask, (r1 >>> 6).AsByte() & mask, (r2 >>> 6).AsByte() & mask, (r3 >>> 6).AsByte() & mask, xa + 192, xb + 192);
            }

            [MethodImpl(MethodImplOptions.AggressiveInlining)]
            void Step(Vector512<byte> q0, Vector512<byte> q1, Vector512<byte> q2, Vector512<byte> q3, sbyte* pa, sbyte* pb)
            {
                var v0 = Vector512.Load(pa); var v1 = Vector512.Load(pb);
                s00 += Mul(q0, v0); s01 += Mul(q0, v1); s10 += Mul(q1, v0); s11 += Mul(q1, v1);
                s20 += Mul(q2, v0); s21 += Mul(q2, v1); s30 += Mul(q3, v0); s31 += Mul(q3, v1);
            }
            c00 = Widen(c00, s00); c01 = Widen(c01, s01); c10 = Widen(c10, s10); c11 = Widen(c11, s11);
            c20 = Widen(c20, s20); c21 = Widen(c21, s21); c30 = Widen(c30, s30); c31 = Widen(c31, s31);
        }
        StoreRows4(a, i, t, Half(c00), Half(c10), Half(c20), Half(c30));
        StoreRows4(a, i, t + 1, Half(c01), Half(c11), Half(c21), Half(c31));
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector256<int> Half(Vector512<int> x) => x.GetLower() + x.GetUpper();

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void Rows4Token1x512(in Args a, int i, int t)
    {
        int rb = a.W.RowBytes;
        byte* w0 = a.W.RowPointer(i), w1 = w0 + rb, w2 = w1 + rb, w3 = w2 + rb;
        sbyte* x0 = a.X + (long)t * a.Kp;
        var mask = Vector512.Create((byte)3);
        Vector512<int> c0 = default, c1 = default, c2 = default, c3 = default;
        for (int g0 = 0; g0 < rb; g0 += 64 * Int16Blocks)
        {
            Vector512<short> s0 = default, s1 = default, s2 = default, s3 = default;
            Vector512<short> e0 = default, e1 = default, e2 = default, e3 = default;
            int gEnd = Math.Min(rb, g0 + 64 * Int16Blocks);
            for (int g = g0; g < gEnd; g += 64)
            {
                var r0 = Vector512.Load(w0 + g).AsUInt16(); var r1 = Vector512.Load(w1 + g).AsUInt16();
                var r2 = Vector512.Load(w2 + g).AsUInt16(); var r3 = Vector512.Load(w3 + g).AsUInt16();
                sbyte* x = x0 + g * 4;
                var v = Vector512.Load(x);
                s0 += Mul(r0.AsByte() & mask, v); s1 += Mul(r1.AsByte() & mask, v);
                s2 += Mul(r2.AsByte() & mask, v); s3 += Mul(r3.AsByte() & mask, v);
                v = Vector512.Load(x + 64);
                e0 += Mul((r0 >>> 2).AsByte() & mask, v); e1 += Mul((r1 >>> 2).AsByte() & mask, v);
                e2 += Mul((r2 >>> 2).AsByte() & mask, v); e3 += Mul((r3 >>> 2).AsByte() & mask, v);
                v = Vector512.Load(x + 128);
                s0 += Mul((r0 >>> 4).AsByte() & mask, v); s1 += Mul((r1 >>> 4).AsByte() & mask, v);
                s2 += Mul((r2 >>> 4).AsByte() & mask, v); s3 += Mul((r3 >>> 4).AsByte() & mask, v);
                v = Vector512.Load(x + 192);
                e0 += Mul((r0 >>> 6).AsByte() & mask, v); e1 += Mul((r1 >>> 6).AsByte() & mask, v);
                e2 += Mul((r2 >>> 6).AsByte() & mask, v); e3 += Mul((r3 >>> 6).AsByte() & mask, v);
            }
            c0 = Widen(Widen(c0, s0), e0); c1 = Widen(Widen(c1, s1), e1);
            c2 = Widen(Widen(c2, s2), e2); c3 = Widen(Widen(c3, s3), e3);
        }
        StoreRows4(a, i, t, Half(c0), Half(c1), Half(c2), Half(c3));
    }
}
