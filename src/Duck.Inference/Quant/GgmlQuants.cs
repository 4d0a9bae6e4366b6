// Scalar reference quantize/dequantize for the ggml block types Duck writes: TQ2_0, TQ1_0 and Q8_0, with ggml's
// exact byte layouts (ggml-quants.c, *_ref functions), plus packers that take ternary codes directly so an
// export keeps a per-tensor scale. Not the inference kernels (those use PackedTernary's layout).
namespace Duck.Inference.Quant;

using static Duck.Inference.Gguf.GgmlTypes;

/// <summary>ggml block codecs. All spans hold whole blocks; lengths are checked.</summary>
public static class GgmlQuants
{
    static readonly byte[] Pow3 = [1, 3, 9, 27, 81, 243];

    /// <summary>ggml's lroundf: round half away from zero.</summary>
    static int LRound(float v) => (int)MathF.Round(v, MidpointRounding.AwayFromZero);

    static void CheckLength(int elements, int block, string what)
    {
        if (elements % block != 0) throw new ArgumentException($"{what}: {elements} elements is not a multiple of the block size {block}");
    }

    // ---- TQ2_0: per block of 256, qs[64] (byte j+m holds elements j*4+m+32l at bits 2l, stored as t+1), fp16 d ----

    /// <summary>ggml's quantize_row_tq2_0_ref: d = max|x| per block, codes = lroundf(x/d)+1.</summary>
    public static void QuantizeTq2Ref(ReadOnlySpan<float> x, Span<byte> blocks)
    {
        CheckLength(x.Length, QK_K, "TQ2_0");
        int nb = x.Length / QK_K;
        Span<sbyte> t = stackalloc sbyte[QK_K];
        for (int i = 0; i < nb; i++)
        {
            var xb = x.Slice(i * QK_K, QK_K);
            float amax = 0;
            foreach (float v in xb) amax = MathF.Max(amax, MathF.Abs(v));
            Half d = (Half)amax;
            float id = amax != 0 ? 1f / amax : 0f;
            for (int j = 0; j < QK_K; j++) t[j] = (sbyte)LRound(xb[j] * id);
            PackTq2Block(t, d, blocks.Slice(i * Tq2BlockBytes, Tq2BlockBytes));
        }
    }

    /// <summary>Packs 256 ternary values t ∈ {-1,0,1} and a scale into one TQ2_0 block.</summary>
    public static void PackTq2Block(ReadOnlySpan<sbyte> t, Half d, Span<byte> block)
    {
        for (int j = 0; j < QK_K / 4; j += 32)
            for (int m = 0; m < 32; m++)
            {
                int q = 0;
                for (int n = 0; n < 4; n++) q += ((t[j * 4 + m + n * 32] + 1) & 3) << (2 * n);
                block[j + m] = (byte)q;
            }
        BitConverter.TryWriteBytes(block.Slice(QK_K / 4, 2), d);
    }

    /// <summary>ggml's dequantize_row_tq2_0: y = (code - 1) * d.</summary>
    public static void DequantizeTq2(ReadOnlySpan<byte> blocks, Span<float> y)
    {
        CheckLength(y.Length, QK_K, "TQ2_0");
        for (int i = 0; i < y.Length / QK_K; i++)
        {
            var b = blocks.Slice(i * Tq2BlockBytes, Tq2BlockBytes);
            float d = (float)BitConverter.ToHalf(b.Slice(QK_K / 4, 2));
            int o = i * QK_K;
            for (int j = 0; j < QK_K / 4; j += 32)
                for (int l = 0; l < 4; l++)
                    for (int m = 0; m < 32; m++)
                        y[o++] = (((b[j + m] >> (l * 2)) & 3) - 1) * d;
        }
    }

    // ---- TQ1_0: per block, qs[48] (5 trits/byte, fixed-point base 3), qh[4] (4 trits/byte), fp16 d ----

    /// <summary>ggml's quantize_row_tq1_0_ref.</summary>
    public static void QuantizeTq1Ref(ReadOnlySpan<float> x, Span<byte> blocks)
    {
        CheckLength(x.Length, QK_K, "TQ1_0");
        Span<sbyte> t = stackalloc sbyte[QK_K];
        for (int i = 0; i < x.Length / QK_K; i++)
        {
            var xb = x.Slice(i * QK_K, QK_K);
            float amax = 0;
            foreach (float v in xb) amax = MathF.Max(amax, MathF.Abs(v));
            float id = amax != 0 ? 1f / amax : 0f;
            for (int j = 0; j < QK_K; j++) t[j] = (sbyte)LRound(xb[j] * id);
            PackTq1Block(t, (Half)amax, blocks.Slice(i * Tq1BlockBytes, Tq1BlockBytes));
        }
    }

    /// <summary>Packs 256 ternary values and a scale into one TQ1_0 block, exactly as ggml orders them.</summary>
    public static void PackTq1Block(ReadOnlySpan<sbyte> t, Half d, Span<byte> block)
    {
        const int qsBytes = 48, qhBytes = 4;
        int x = 0;
        for (int j = 0; j < qsBytes - qsBytes % 32; j += 32)
        {
            for (int m = 0; m < 32; m++)
            {
                int q = 0;
                for (int n = 0; n < 5; n++) q = q * 3 + t[x + m + n * 32] + 1;
                block[j + m] = (byte)((q * 256 + 242) / 243); // ceiling division: trits as a fixed-point fraction
            }
            x += 5 * 32;
        }
        for (int j = qsBytes - qsBytes % 32; j < qsBytes; j += 16)
        {
            for (int m = 0; m < 16; m++)
            {
                int q = 0;
                for (int n = 0; n < 5; n++) q = q * 3 + t[x + m + n * 16] + 1;
                block[j + m] = (byte)((q * 256 + 242) / 243);
            }
            x += 5 * 16;
        }
        for (int j = 0; j < qhBytes; j++)
        {
            int q = 0;
            for (int m = 0; m < 4; m++) q = q * 3 + t[x + j + m * qhBytes] + 1;
            q *= 3; // the first value goes to the most significant trit
            block[qsBytes + j] = (byte)((q * 256 + 242) / 243);
        }
        BitConverter.TryWriteBytes(block.Slice(qsBytes + qhBytes, 2), d);
    }

    /// <summary>ggml's dequantize_row_tq1_0.</summary>
    public static void DequantizeTq1(ReadOnlySpan<byte> blocks, Span<float> y)
    {
        CheckLength(y.Length, QK_K, "TQ1_0");
        Span<sbyte> t = stackalloc sbyte[QK_K];
        for (int i = 0; i < y.Length / QK_K; i++)
        {
            var b = blocks.Slice(i * Tq1BlockBytes, Tq1BlockBytes);
            float d = (float)BitConverter.ToHalf(b.Slice(52, 2));
            UnpackTq1Block(b, t);
            for (int j = 0; j < QK_K; j++) y[i * QK_K + j] = t[j] * d;
        }
    }

    /// <summary>The 256 ternary values of one TQ1_0 block, in element order.</summary>
    public static void UnpackTq1Block(ReadOnlySpan<byte> block, Span<sbyte> t)
    {
        int o = 0;
        for (int j = 0; j < 32; j += 32)
            for (int n = 0; n < 5; n++)
                for (int m = 0; m < 32; m++) t[o++] = Trit(block[j + m], n);
        for (int j = 32; j < 48; j += 16)
            for (int n = 0; n < 5; n++)
                for (int m = 0; m < 16; m++) t[o++] = Trit(block[j + m], n);
        for (int n = 0; n < 4; n++)
            for (int j = 0; j < 4; j++) t[o++] = Trit(block[48 + j], n);
    }

    static sbyte Trit(byte packed, int n)
    {
        byte q = (byte)(packed * Pow3[n]);
        return (sbyte)(((q * 3) >> 8) - 1);
    }

    /// <summary>The 256 ternary values of one TQ2_0 block, in element order.</summary>
    public static void UnpackTq2Block(ReadOnlySpan<byte> block, Span<sbyte> t)
    {
        int o = 0;
        for (int j = 0; j < 64; j += 32)
            for (int l = 0; l < 4; l++)
                for (int m = 0; m < 32; m++) t[o++] = (sbyte)(((block[j + m] >> (l * 2)) & 3) - 1);
    }

    // ---- Q8_0: per block of 32, fp16 d = max|x|/127, int8 round(x/d) ----

    /// <summary>ggml's quantize_row_q8_0_ref (roundf: half away from zero).</summary>
    public static void QuantizeQ8(ReadOnlySpan<float> x, Span<byte> blocks)
    {
        CheckLength(x.Length, QK8_0, "Q8_0");
        for (int i = 0; i < x.Length / QK8_0; i++)
        {
            var xb = x.Slice(i * QK8_0, QK8_0);
            var b = blocks.Slice(i * Q8BlockBytes, Q8BlockBytes);
            float amax = 0;
            foreach (float v in xb) amax = MathF.Max(amax, MathF.Abs(v));
            float d = amax / 127f;
            float id = d != 0 ? 1f / d : 0f;
            BitConverter.TryWriteBytes(b[..2], (Half)d);
            for (int j = 0; j < QK8_0; j++) b[2 + j] = (byte)(sbyte)LRound(xb[j] * id);
        }
    }

    /// <summary>ggml's dequantize_row_q8_0.</summary>
    public static void DequantizeQ8(ReadOnlySpan<byte> blocks, Span<float> y)
    {
        CheckLength(y.Length, QK8_0, "Q8_0");
        for (int i = 0; i < y.Length / QK8_0; i++)
        {
            var b = blocks.Slice(i * Q8BlockBytes, Q8BlockBytes);
            float d = (float)BitConverter.ToHalf(b[..2]);
            for (int j = 0; j < QK8_0; j++) y[i * QK8_0 + j] = (sbyte)b[2 + j] * d;
        }
    }
}
