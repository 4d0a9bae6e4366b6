// Ternary gradient codes: deterministic thresholded ternarization (the default) and TernGrad-style stochastic
// ternarization, both with error feedback, and 2-bit packing of ternary values (4 per byte).
// Pure C# on float spans: the scalar meaning is the documentation and the test oracle. Not the packet layout:
// see TensorPacket for how encoded tensors are framed.
using System.Buffers.Binary;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using Duck.Core.Data;

namespace Duck.Grains;

/// <summary>Ternary codes and the TernGrad quantizer.</summary>
public static class TernaryCodec
{
    /// <summary>Clip at this many standard deviations of the row before ternarizing (TernGrad's c = 2.5).</summary>
    public const float DefaultClipSigmas = 2.5f;

    /// <summary>Bytes that hold <paramref name="count"/> 2-bit codes.</summary>
    public static int PackedBytes(long count) => checked((int)((count + 3) / 4));

    /// <summary>Packs values in {-1, 0, +1} as 2-bit codes (0: 0, 1: +1, 2: -1), four per byte, lowest bits first.</summary>
    public static void Pack(ReadOnlySpan<sbyte> ternary, Span<byte> packed)
    {
        int n = ternary.Length, whole = n & ~3;
        packed = packed[..PackedBytes(n)];
        for (int i = 0; i < whole; i += 4)
            packed[i >> 2] = (byte)(Code(ternary, i) | Code(ternary, i + 1) << 2 | Code(ternary, i + 2) << 4 | Code(ternary, i + 3) << 6);
        if (whole < n)
        {
            int last = 0;
            for (int i = whole; i < n; i++) last |= Code(ternary, i) << ((i & 3) * 2);
            packed[whole >> 2] = (byte)last;
        }
    }

    /// <summary>Packs <paramref name="ternary"/> as the codes from <paramref name="firstCode"/> on of a packed buffer whose
    /// earlier codes are written already and whose later ones are still zero (rows packed in order).</summary>
    public static void PackAt(ReadOnlySpan<sbyte> ternary, Span<byte> packed, long firstCode)
    {
        if ((firstCode & 3) == 0)
        {
            Pack(ternary, packed[(int)(firstCode >> 2)..]);
            return;
        }
        for (int i = 0; i < ternary.Length; i++)
        {
            long at = firstCode + i;
            packed[(int)(at >> 2)] |= (byte)(Code(ternary, i) << (int)((at & 3) * 2));
        }
    }

    /// <summary>The 2-bit code of ternary[i]: the value's low two bits, with -1 (binary 11) turned into 2.</summary>
    static int Code(ReadOnlySpan<sbyte> ternary, int i)
    {
        int t = ternary[i];
        if ((uint)(t + 1) > 2) throw new ArgumentException($"value {t} at {i} is not ternary");
        return (t & 3) ^ ((t >> 7) & 1);
    }

    /// <summary>For every byte of four codes, its four values at scale 1 (NaN where the code is the invalid 3).</summary>
    static readonly float[] Decoded = BuildDecoded();

    static float[] BuildDecoded()
    {
        var table = new float[256 * 4];
        for (int b = 0; b < 256; b++)
            for (int k = 0; k < 4; k++)
                table[b * 4 + k] = ((b >> (2 * k)) & 3) switch { 0 => 0f, 1 => 1f, 2 => -1f, _ => float.NaN };
        return table;
    }

    /// <summary>Effectively output[i] = scale * t[i] (with <paramref name="add"/>: output[i] += scale * t[i]) for the 2-bit
    /// code t[i] of <paramref name="packed"/>, starting at code <paramref name="first"/>.</summary>
    public static void Unpack(ReadOnlySpan<byte> packed, long first, float scale, Span<float> output, bool add = false)
    {
        int i = 0;
        for (; i < output.Length && ((first + i) & 3) != 0; i++) output[i] = (add ? output[i] : 0) + Single(packed, first + i, scale);
        int bytes = (output.Length - i) >> 2;
        var source = packed.Slice((int)((first + i) >> 2), bytes);
        ref float table = ref MemoryMarshal.GetArrayDataReference(Decoded);
        ref float target = ref MemoryMarshal.GetReference(output);
        var s = Vector128.Create(scale);
        for (int b = 0; b < bytes; b++, i += 4)
        {
            int code = source[b];
            if ((code & (code >> 1) & 0x55) != 0) Single(packed, first + i + FirstInvalid(source[b]), scale); // throws
            var four = s * Vector128.LoadUnsafe(ref table, (nuint)(code * 4)); // scale * t, as one product per value
            if (add) four += Vector128.LoadUnsafe(ref target, (nuint)i);
            four.StoreUnsafe(ref target, (nuint)i);
        }
        for (; i < output.Length; i++) output[i] = (add ? output[i] : 0) + Single(packed, first + i, scale);
    }

    static int FirstInvalid(byte b)
    {
        for (int k = 0; k < 4; k++) if (((b >> (2 * k)) & 3) == 3) return k;
        return 0;
    }

    static float Single(ReadOnlySpan<byte> packed, long at, float scale)
    {
        int code = (packed[(int)(at >> 2)] >> (int)((at & 3) * 2)) & 3;
        return code switch { 0 => 0f, 1 => scale, 2 => -scale, _ => throw new InvalidDataException($"invalid ternary code 3 at {at}") };
    }

    /// <summary>
    /// TernGrad with error feedback on one row: v = gradient + residual; v is clipped to ±clipSigmas·std(v) (0: no clip);
    /// s = max|v_clipped|; t[i] = sign(v[i]) with probability |v_clipped[i]| / s, else 0, so that E[s·t] = v_clipped.
    /// The residual becomes v − s·t (what was not sent, clipping included). Returns s.
    /// </summary>
    public static float QuantizeRow(ReadOnlySpan<float> gradient, Span<float> residual, Span<sbyte> ternary, ref SplitMix64 rng, float clipSigmas)
    {
        int n = gradient.Length;
        double sum = 0, sumSq = 0;
        for (int i = 0; i < n; i++)
        {
            float v = gradient[i] + residual[i];
            residual[i] = v; // holds v until the send is known
            sum += v; sumSq += (double)v * v;
        }
        float clip = float.PositiveInfinity;
        if (clipSigmas > 0 && n > 1)
        {
            double mean = sum / n, variance = Math.Max(0, sumSq / n - mean * mean);
            clip = (float)(clipSigmas * Math.Sqrt(variance));
            if (clip == 0) clip = float.PositiveInfinity;
        }
        float scale = 0;
        for (int i = 0; i < n; i++) scale = Math.Max(scale, Math.Min(Math.Abs(residual[i]), clip));
        if (scale == 0 || !float.IsFinite(scale))
        {
            ternary[..n].Clear();
            return 0; // nothing to send; the residual keeps v
        }
        for (int i = 0; i < n; i++)
        {
            float v = residual[i];
            float magnitude = Math.Min(Math.Abs(v), clip);
            float u = (rng.NextUInt64() >> 40) * (1f / (1 << 24)); // uniform in [0, 1)
            sbyte t = u < magnitude / scale ? (sbyte)Math.Sign(v) : (sbyte)0;
            ternary[i] = t;
            residual[i] = v - t * scale;
        }
        return scale;
    }

    /// <summary>Threshold of the deterministic quantizer as a multiple of mean|v| (ternary weight networks' 0.7).</summary>
    public const float ThresholdOfMean = 0.7f;

    /// <summary>
    /// Deterministic thresholded ternarization with error feedback on one row: v = gradient + residual;
    /// t[i] = sign(v[i]) where |v[i]| &gt; 0.7·mean|v|, else 0; s = the mean |v[i]| over the kept values (the scale that
    /// minimizes the squared error for that support). The residual becomes v − s·t, the rounding error only, which the
    /// next step sends. Biased per step, but every value is eventually sent (EF-SignSGD's argument). Returns s.
    /// </summary>
    public static float QuantizeRowThreshold(ReadOnlySpan<float> gradient, Span<float> residual, Span<sbyte> ternary)
    {
        int n = gradient.Length;
        float scale = ThresholdScale(gradient, residual, out float threshold);
        if (scale == 0)
        {
            ternary[..n].Clear();
            return 0;
        }
        for (int i = 0; i < n; i++)
        {
            float v = residual[i];
            int t = (v > threshold ? 1 : 0) - (v < -threshold ? 1 : 0);
            ternary[i] = (sbyte)t;
            residual[i] = v - t * scale;
        }
        return scale;
    }

    /// <summary>
    /// <see cref="QuantizeRowThreshold"/> with the codes written packed: the row's codes from the start of
    /// <paramref name="packed"/> (its first <see cref="PackedBytes"/>(n) bytes), as <see cref="Pack"/> lays them out.
    /// The same scale, codes and residual, eight values per vector step.
    /// </summary>
    public static float QuantizeRowThresholdPacked(ReadOnlySpan<float> gradient, Span<float> residual, Span<byte> packed)
    {
        int n = gradient.Length;
        packed = packed[..PackedBytes(n)];
        float scale = ThresholdScale(gradient, residual, out float threshold);
        packed.Clear();
        if (scale == 0) return 0;
        int i = 0;
        if (Vector256.IsHardwareAccelerated)
        {
            var (above, below, s, one) = (Vector256.Create(threshold), Vector256.Create(-threshold), Vector256.Create(scale), Vector256.Create(1f));
            ref float r = ref MemoryMarshal.GetReference(residual);
            for (; i <= n - 8; i += 8)
            {
                var v = Vector256.LoadUnsafe(ref r, (nuint)i);
                var positive = Vector256.GreaterThan(v, above);
                var negative = Vector256.LessThan(v, below);
                var t = (positive & one) - (negative & one);
                (v - t * s).StoreUnsafe(ref r, (nuint)i); // v - t·scale, as the scalar loop rounds it
                WriteEight(packed, i, positive.ExtractMostSignificantBits(), negative.ExtractMostSignificantBits());
            }
        }
        for (; i < n; i++)
        {
            float v = residual[i];
            int positive = v > threshold ? 1 : 0, negative = v < -threshold ? 1 : 0;
            residual[i] = v - (positive - negative) * scale;
            WriteOne(packed, i, positive, negative);
        }
        return scale;
    }

    /// <summary>
    /// Packs the ternary weights W_q / gamma = clamp(round(W / <paramref name="denominator"/>), -1, 1) (round half to even,
    /// as BitQuant.TernaryWeights computes them) as 2-bit codes without materializing them: the value is +1 exactly when
    /// W / denominator &gt; 0.5, -1 when it is &lt; -0.5. Returns whether any code is nonzero.
    /// </summary>
    public static bool PackTernaryWeights(ReadOnlySpan<float> weights, float denominator, Span<byte> packed)
    {
        int n = weights.Length, i = 0;
        packed = packed[..PackedBytes(n)];
        packed.Clear();
        bool any = false;
        if (Vector256.IsHardwareAccelerated)
        {
            var (d, half, minusHalf) = (Vector256.Create(denominator), Vector256.Create(0.5f), Vector256.Create(-0.5f));
            ref float w = ref MemoryMarshal.GetReference(weights);
            for (; i <= n - 8; i += 8)
            {
                var q = Vector256.LoadUnsafe(ref w, (nuint)i) / d;
                uint positive = Vector256.GreaterThan(q, half).ExtractMostSignificantBits();
                uint negative = Vector256.LessThan(q, minusHalf).ExtractMostSignificantBits();
                any |= (positive | negative) != 0;
                WriteEight(packed, i, positive, negative);
            }
        }
        for (; i < n; i++)
        {
            float q = weights[i] / denominator;
            int positive = q > 0.5f ? 1 : 0, negative = q < -0.5f ? 1 : 0;
            any |= (positive | negative) != 0;
            WriteOne(packed, i, positive, negative);
        }
        return any;
    }

    /// <summary>The codes of values first..first+7 (first a multiple of 8) from their +1 and -1 flags, bit k for value k.</summary>
    static void WriteEight(Span<byte> packed, int first, uint positive, uint negative) =>
        BinaryPrimitives.WriteUInt16LittleEndian(packed[(first >> 2)..], (ushort)(SpreadBits[(int)positive] | SpreadBits[(int)negative] << 1));

    /// <summary>ORs the code of value i (from its +1 and -1 flags, each 0 or 1) into a cleared packed buffer.</summary>
    static void WriteOne(Span<byte> packed, int i, int positive, int negative) =>
        packed[i >> 2] |= (byte)((positive | negative << 1) << ((i & 3) * 2));

    /// <summary>For every byte b, the 16-bit value with bit k of b moved to bit 2k (eight sign flags to eight 2-bit slots).</summary>
    static readonly ushort[] SpreadBits = Enumerable.Range(0, 256)
        .Select(b => (ushort)Enumerable.Range(0, 8).Sum(k => ((b >> k) & 1) << (2 * k))).ToArray();

    /// <summary>The first two passes of the thresholded quantizer: residual becomes v = gradient + residual; returns the
    /// scale (0 when nothing is kept) and the threshold 0.7·mean|v|.</summary>
    static float ThresholdScale(ReadOnlySpan<float> gradient, Span<float> residual, out float threshold)
    {
        int n = gradient.Length, width = System.Numerics.Vector<float>.Count, i = 0;
        residual = residual[..n];
        // Vectorized and branch-free where it can be: the keep/drop decisions are data-dependent coin flips that a
        // branch would mispredict about half the time.
        var sumAbs = System.Numerics.Vector<float>.Zero;
        for (; i <= n - width; i += width)
        {
            var v = new System.Numerics.Vector<float>(gradient[i..]) + new System.Numerics.Vector<float>(residual[i..]);
            v.CopyTo(residual[i..]);
            sumAbs += System.Numerics.Vector.Abs(v);
        }
        double total = System.Numerics.Vector.Sum(sumAbs);
        for (; i < n; i++)
        {
            float v = gradient[i] + residual[i];
            residual[i] = v;
            total += Math.Abs(v);
        }
        threshold = (float)(ThresholdOfMean * total / Math.Max(1, n));
        var limit = new System.Numerics.Vector<float>(threshold);
        var keptSum = System.Numerics.Vector<float>.Zero;
        var keptCount = System.Numerics.Vector<int>.Zero;
        for (i = 0; i <= n - width; i += width)
        {
            var magnitude = System.Numerics.Vector.Abs(new System.Numerics.Vector<float>(residual[i..]));
            var keep = System.Numerics.Vector.GreaterThan(magnitude, limit);
            keptSum += System.Numerics.Vector.ConditionalSelect(keep, magnitude, System.Numerics.Vector<float>.Zero);
            keptCount -= keep; // true lanes are -1
        }
        double kept = System.Numerics.Vector.Sum(keptSum);
        long keptN = System.Numerics.Vector.Sum(keptCount);
        float limitScalar = threshold;
        for (; i < n; i++)
        {
            float magnitude = Math.Abs(residual[i]);
            if (magnitude > limitScalar) { kept += magnitude; keptN++; }
        }
        float scale = keptN == 0 ? 0 : (float)(kept / keptN);
        return scale == 0 || !float.IsFinite(scale) ? 0 : scale;
    }
}
