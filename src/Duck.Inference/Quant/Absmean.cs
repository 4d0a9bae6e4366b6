// BitNet b1.58 weight quantization exactly as the trainer does it: one absmean scale per tensor and ternary
// values round-half-to-even(W / (gamma + 1e-5)) clamped to [-1, 1]. Not the activation quantizer (ActivationQuant).
namespace Duck.Inference.Quant;

/// <summary>Per-tensor absmean ternarization.</summary>
public static class Absmean
{
    /// <summary>Epsilon added to gamma before dividing, as in the trainer.</summary>
    public const float Epsilon = 1e-5f;

    /// <summary>gamma = mean(|W|) over the whole tensor, accumulated in double for a stable sum.</summary>
    public static float Gamma(ReadOnlySpan<float> w)
    {
        double sum = 0;
        foreach (float v in w) sum += MathF.Abs(v);
        return w.Length == 0 ? 0f : (float)(sum / w.Length);
    }

    /// <summary>Ternary values t = clamp(round_half_even(W / (gamma + 1e-5)), -1, 1); returns gamma.</summary>
    public static float Ternarize(ReadOnlySpan<float> w, Span<sbyte> t)
    {
        float gamma = Gamma(w);
        float denom = gamma + Epsilon;
        for (int i = 0; i < w.Length; i++)
            t[i] = (sbyte)Math.Clamp(MathF.Round(w[i] / denom, MidpointRounding.ToEven), -1f, 1f);
        return gamma;
    }
}
