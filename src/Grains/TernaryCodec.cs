// TernGrad-style stochastic ternarization and deterministic thresholded ternarization, both with error feedback, and 2-bit packing of ternary values (4 per byte).
// Pure C# on float spans: the scalar meaning is the documentation and the test oracle. Not the packet layout:
// see TensorPacket for how encoded tensors are framed.
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
        packed[..PackedBytes(ternary.Length)].Clear();
        for (int i = 0; i < ternary.Length; i++)
        {
            int code = ternary[i] switch { 0 => 0, 1 => 1, -1 => 2, _ => throw new ArgumentException($"value {ternary[i]} at {i} is not ternary") };
            packed[i >> 2] |= (byte)(code << ((i & 3) * 2));
        }
    }

    /// <summary>Effectively output[i] = scale * t[i] for the 2-bit code t[i] of <paramref name="packed"/>, starting at code <paramref name="first"/>.</summary>
    public static void Unpack(ReadOnlySpan<byte> packed, long first, float scale, Span<float> output)
    {
        for (int i = 0; i < output.Length; i++)
        {
            long at = first + i;
            int code = (packed[(int)(at >> 2)] >> (int)((at & 3) * 2)) & 3;
            output[i] = code switch { 0 => 0f, 1 => scale, 2 => -scale, _ => throw new InvalidDataException($"invalid ternary code 3 at {at}") };
        }
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
        double sumAbs = 0;
        for (int i = 0; i < n; i++)
        {
            float v = gradient[i] + residual[i];
            residual[i] = v;
            sumAbs += Math.Abs(v);
        }
        float threshold = (float)(ThresholdOfMean * sumAbs / Math.Max(1, n));
        double keptSum = 0;
        int kept = 0;
        for (int i = 0; i < n; i++)
        {
            float magnitude = Math.Abs(residual[i]);
            if (magnitude > threshold) { keptSum += magnitude; kept++; }
        }
        float scale = kept == 0 ? 0 : (float)(keptSum / kept);
        if (scale == 0 || !float.IsFinite(scale))
        {
            ternary[..n].Clear();
            return 0;
        }
        for (int i = 0; i < n; i++)
        {
            float v = residual[i];
            sbyte t = Math.Abs(v) > threshold ? (sbyte)Math.Sign(v) : (sbyte)0;
            ternary[i] = t;
            residual[i] = v - t * scale;
        }
        return scale;
    }
}
