// Ternary × int8 matrix products: y[t, i] = (Σ_j t_ij · xq_tj) · gamma / s_t for a range of output rows i and
// every token t. One scalar oracle and three SIMD paths (AVX2 vpmaddubsw, AVX-VNNI vpdpbusd, AVX-512BW), each
// tiled 4 rows × 4 tokens so one unpack of the 2-bit codes feeds 16 products. The kernels multiply codes
// (t+1 ∈ {0,1,2}, unsigned) by int8 activations and subtract the row's activation sum. Not thread-aware: callers split rows.
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Duck.Inference.Kernels;

/// <summary>Which implementation a kernel uses; tests force each one, production takes <see cref="TernaryMatMul.Best"/>.</summary>
public enum KernelPath { Scalar, Avx2, AvxVnni, Avx512 }

/// <summary>Ternary matrix × int8 activations.</summary>
public static unsafe class TernaryMatMul
{
    /// <summary>The fastest path this CPU (and the DOTNET_Enable* settings) supports.</summary>
    public static KernelPath Best { get; } =
        IsSupported(KernelPath.AvxVnni) ? KernelPath.AvxVnni
        : IsSupported(KernelPath.Avx512) ? KernelPath.Avx512
        : IsSupported(KernelPath.Avx2) ? KernelPath.Avx2 : KernelPath.Scalar;

    /// <summary>True when the hardware and runtime allow the path.</summary>
    public static bool IsSupported(KernelPath path) => path switch
    {
        KernelPath.Scalar => true,
        KernelPath.Avx2 => Avx2.IsSupported,
        KernelPath.AvxVnni => Avx2.IsSupported && AvxVnni.IsSupported,
        KernelPath.Avx512 => Avx2.IsSupported && Avx512BW.IsSupported,
        _ => false,
    };

    /// <summary>
    /// Computes rows [rowStart, rowEnd) of y = x Wᵀ for all <c>x.Rows</c> tokens; y is [tokens, w.Rows] row-major.
    /// Effectively y[t, i] = (Σ_j (code_ij − 1) · xq[t, j]) · w.Scale / x.Scales[t].
    /// </summary>
    public static void Multiply(PackedTernary w, QuantizedActivations x, Span<float> y, int rowStart, int rowEnd, KernelPath path)
    {
        if (x.PaddedCols != w.PaddedCols)
            throw new ArgumentException($"activations have {x.PaddedCols} padded columns, weights {w.PaddedCols}");
        if (y.Length < x.Rows * w.Rows) throw new ArgumentException($"output holds {y.Length} values, needs {x.Rows * w.Rows}");
        if (!IsSupported(path)) throw new PlatformNotSupportedException($"kernel path {path} is not supported on this machine");
        fixed (sbyte* xp = x.Values)
        fixed (float* yp = y)
        {
            var a = new Args(w, xp, x.Scales, x.Sums, x.Rows, yp);
            switch (path)
            {
                case KernelPath.Scalar: Scalar(a, rowStart, rowEnd); break;
                case KernelPath.Avx2: Tiled256<Avx2Dot>(a, rowStart, rowEnd); break;
                case KernelPath.AvxVnni: Tiled256<VnniDot>(a, rowStart, rowEnd); break;
                case KernelPath.Avx512: Tiled512(a, rowStart, rowEnd); break;
            }
        }
    }

    readonly struct Args(PackedTernary w, sbyte* x, float[] scales, int[] sums, int tokens, float* y)
    {
        public readonly PackedTernary W = w;
        public readonly sbyte* X = x;
        public readonly float[] Scales = scales;
        public readonly int[] Sums = sums;
        public readonly int Tokens = tokens;
        public readonly float* Y = y;
        public readonly int Kp = w.PaddedCols;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public void Store(int row, int token, int codeDot) =>
            Y[(long)token * W.Rows + row] = (codeDot - Sums[token]) * (W.Scale / Scales[token]);
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
                a.Y[(long)t * a.W.Rows + i] = dot * (a.W.Scale / a.Scales[t]);
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

    static void Tiled256<TDot>(in Args a, int rowStart, int rowEnd) where TDot : struct, IDot256
    {
        int i = rowStart;
        for (; i + 4 <= rowEnd; i += 4)
        {
            int t = 0;
            for (; t + 4 <= a.Tokens; t += 4) Rows4Tokens4<TDot>(a, i, t);
            for (; t < a.Tokens; t++) Rows4Token1<TDot>(a, i, t);
        }
        for (; i < rowEnd; i++)
            for (int t = 0; t < a.Tokens; t++) Row1Token1<TDot>(a, i, t);
    }

    static void Rows4Tokens4<TDot>(in Args a, int i, int t) where TDot : struct, IDot256
    {
        int rb = a.W.RowBytes;
        byte* w0 = a.W.RowPointer(i), w1 = w0 + rb, w2 = w1 + rb, w3 = w2 + rb;
        sbyte* x0 = a.X + (long)t * a.Kp, x1 = x0 + a.Kp, x2 = x1 + a.Kp, x3 = x2 + a.Kp;
        Vector256<int> c00 = default, c01 = default, c02 = default, c03 = default;
        Vector256<int> c10 = default, c11 = default, c12 = default, c13 = default;
        Vector256<int> c20 = default, c21 = default, c22 = default, c23 = default;
        Vector256<int> c30 = default, c31 = default, c32 = default, c33 = default;
        for (int g = 0; g < rb; g += 32) // g: byte offset of a 32-byte half of a 64-byte group
        {
            int colBase = (g >> 6) * 256 + (g & 63);
            var r0 = Vector256.Load(w0 + g); var r1 = Vector256.Load(w1 + g);
            var r2 = Vector256.Load(w2 + g); var r3 = Vector256.Load(w3 + g);
            for (int l = 0; l < 4; l++)
            {
                int col = colBase + l * 64;
                var v0 = Vector256.Load(x0 + col); var v1 = Vector256.Load(x1 + col);
                var v2 = Vector256.Load(x2 + col); var v3 = Vector256.Load(x3 + col);
                var q = Codes(r0, 2 * l);
                c00 = TDot.Dot(c00, q, v0); c01 = TDot.Dot(c01, q, v1); c02 = TDot.Dot(c02, q, v2); c03 = TDot.Dot(c03, q, v3);
                q = Codes(r1, 2 * l);
                c10 = TDot.Dot(c10, q, v0); c11 = TDot.Dot(c11, q, v1); c12 = TDot.Dot(c12, q, v2); c13 = TDot.Dot(c13, q, v3);
                q = Codes(r2, 2 * l);
                c20 = TDot.Dot(c20, q, v0); c21 = TDot.Dot(c21, q, v1); c22 = TDot.Dot(c22, q, v2); c23 = TDot.Dot(c23, q, v3);
                q = Codes(r3, 2 * l);
                c30 = TDot.Dot(c30, q, v0); c31 = TDot.Dot(c31, q, v1); c32 = TDot.Dot(c32, q, v2); c33 = TDot.Dot(c33, q, v3);
            }
        }
        a.Store(i, t, Vector256.Sum(c00)); a.Store(i, t + 1, Vector256.Sum(c01)); a.Store(i, t + 2, Vector256.Sum(c02)); a.Store(i, t + 3, Vector256.Sum(c03));
        a.Store(i + 1, t, Vector256.Sum(c10)); a.Store(i + 1, t + 1, Vector256.Sum(c11)); a.Store(i + 1, t + 2, Vector256.Sum(c12)); a.Store(i + 1, t + 3, Vector256.Sum(c13));
        a.Store(i + 2, t, Vector256.Sum(c20)); a.Store(i + 2, t + 1, Vector256.Sum(c21)); a.Store(i + 2, t + 2, Vector256.Sum(c22)); a.Store(i + 2, t + 3, Vector256.Sum(c23));
        a.Store(i + 3, t, Vector256.Sum(c30)); a.Store(i + 3, t + 1, Vector256.Sum(c31)); a.Store(i + 3, t + 2, Vector256.Sum(c32)); a.Store(i + 3, t + 3, Vector256.Sum(c33));
    }

    static void Rows4Token1<TDot>(in Args a, int i, int t) where TDot : struct, IDot256
    {
        int rb = a.W.RowBytes;
        byte* w0 = a.W.RowPointer(i), w1 = w0 + rb, w2 = w1 + rb, w3 = w2 + rb;
        sbyte* x0 = a.X + (long)t * a.Kp;
        Vector256<int> c0 = default, c1 = default, c2 = default, c3 = default;
        for (int g = 0; g < rb; g += 32)
        {
            int colBase = (g >> 6) * 256 + (g & 63);
            var r0 = Vector256.Load(w0 + g); var r1 = Vector256.Load(w1 + g);
            var r2 = Vector256.Load(w2 + g); var r3 = Vector256.Load(w3 + g);
            for (int l = 0; l < 4; l++)
            {
                var v = Vector256.Load(x0 + colBase + l * 64);
                c0 = TDot.Dot(c0, Codes(r0, 2 * l), v);
                c1 = TDot.Dot(c1, Codes(r1, 2 * l), v);
                c2 = TDot.Dot(c2, Codes(r2, 2 * l), v);
                c3 = TDot.Dot(c3, Codes(r3, 2 * l), v);
            }
        }
        a.Store(i, t, Vector256.Sum(c0)); a.Store(i + 1, t, Vector256.Sum(c1));
        a.Store(i + 2, t, Vector256.Sum(c2)); a.Store(i + 3, t, Vector256.Sum(c3));
    }

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

    // ---- AVX-512BW: a 64-byte load holds a whole 256-column block; vpmaddubsw + vpmaddwd per product ----

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector512<byte> Codes(Vector512<byte> raw, int shift) =>
        (raw.AsUInt16() >>> shift).AsByte() & Vector512.Create((byte)3);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector512<int> Dot(Vector512<int> acc, Vector512<byte> w, Vector512<sbyte> x) =>
        Avx512BW.Add(acc, Avx512BW.MultiplyAddAdjacent(Avx512BW.MultiplyAddAdjacent(w, x), Vector512<short>.One));

    static void Tiled512(in Args a, int rowStart, int rowEnd)
    {
        int i = rowStart;
        for (; i + 4 <= rowEnd; i += 4)
        {
            int t = 0;
            for (; t + 2 <= a.Tokens; t += 2) Rows4Tokens2x512(a, i, t);
            for (; t < a.Tokens; t++) Rows4Token1x512(a, i, t);
        }
        for (; i < rowEnd; i++)
            for (int t = 0; t < a.Tokens; t++) Row1Token1<Avx2Dot>(a, i, t);
    }

    static void Rows4Tokens2x512(in Args a, int i, int t)
    {
        int rb = a.W.RowBytes;
        byte* w0 = a.W.RowPointer(i), w1 = w0 + rb, w2 = w1 + rb, w3 = w2 + rb;
        sbyte* x0 = a.X + (long)t * a.Kp, x1 = x0 + a.Kp;
        Vector512<int> c00 = default, c01 = default, c10 = default, c11 = default;
        Vector512<int> c20 = default, c21 = default, c30 = default, c31 = default;
        for (int g = 0; g < rb; g += 64)
        {
            var r0 = Vector512.Load(w0 + g); var r1 = Vector512.Load(w1 + g);
            var r2 = Vector512.Load(w2 + g); var r3 = Vector512.Load(w3 + g);
            for (int l = 0; l < 4; l++)
            {
                int col = g * 4 + l * 64;
                var v0 = Vector512.Load(x0 + col); var v1 = Vector512.Load(x1 + col);
                var q = Codes(r0, 2 * l); c00 = Dot(c00, q, v0); c01 = Dot(c01, q, v1);
                q = Codes(r1, 2 * l); c10 = Dot(c10, q, v0); c11 = Dot(c11, q, v1);
                q = Codes(r2, 2 * l); c20 = Dot(c20, q, v0); c21 = Dot(c21, q, v1);
                q = Codes(r3, 2 * l); c30 = Dot(c30, q, v0); c31 = Dot(c31, q, v1);
            }
        }
        a.Store(i, t, Vector512.Sum(c00)); a.Store(i, t + 1, Vector512.Sum(c01));
        a.Store(i + 1, t, Vector512.Sum(c10)); a.Store(i + 1, t + 1, Vector512.Sum(c11));
        a.Store(i + 2, t, Vector512.Sum(c20)); a.Store(i + 2, t + 1, Vector512.Sum(c21));
        a.Store(i + 3, t, Vector512.Sum(c30)); a.Store(i + 3, t + 1, Vector512.Sum(c31));
    }

    static void Rows4Token1x512(in Args a, int i, int t)
    {
        int rb = a.W.RowBytes;
        byte* w0 = a.W.RowPointer(i), w1 = w0 + rb, w2 = w1 + rb, w3 = w2 + rb;
        sbyte* x0 = a.X + (long)t * a.Kp;
        Vector512<int> c0 = default, c1 = default, c2 = default, c3 = default;
        for (int g = 0; g < rb; g += 64)
        {
            var r0 = Vector512.Load(w0 + g); var r1 = Vector512.Load(w1 + g);
            var r2 = Vector512.Load(w2 + g); var r3 = Vector512.Load(w3 + g);
            for (int l = 0; l < 4; l++)
            {
                var v = Vector512.Load(x0 + g * 4 + l * 64);
                c0 = Dot(c0, Codes(r0, 2 * l), v); c1 = Dot(c1, Codes(r1, 2 * l), v);
                c2 = Dot(c2, Codes(r2, 2 * l), v); c3 = Dot(c3, Codes(r3, 2 * l), v);
            }
        }
        a.Store(i, t, Vector512.Sum(c0)); a.Store(i + 1, t, Vector512.Sum(c1));
        a.Store(i + 2, t, Vector512.Sum(c2)); a.Store(i + 2 + 1, t, Vector512.Sum(c3));
    }
}
