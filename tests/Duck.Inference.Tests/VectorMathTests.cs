// RoPE's vectorized pairs give the bits of the scalar formula (a·c − b·s, a·s + b·c) for every head size the loop
// splits into vector steps and a scalar tail. The vector e^x is within 2e-7 of double exp, finite at the ends and
// NaN for NaN; the SiLU gate built on it matches the double formula.
using System.Runtime.Intrinsics;
using Duck.Inference.Kernels;

namespace Duck.Inference.Tests;

public class VectorMathTests
{
    [Theory]
    [InlineData(2, 64, 37)]
    [InlineData(1, 128, 255)]
    [InlineData(3, 6, 5)]
    [InlineData(2, 12, 0)]
    public void Rope_EqualsScalarFormula_BitForBit(int heads, int headDim, int position)
    {
        var rng = new Random(heads * 100 + headDim);
        var x = Enumerable.Range(0, heads * headDim).Select(_ => (float)(rng.NextDouble() * 4 - 2)).ToArray();
        var (cosTable, sinTable) = VectorMath.RopeTables(position + 1, headDim, 10000f);
        int half = headDim / 2;
        var cos = cosTable.AsSpan(position * half, half).ToArray();
        var sin = sinTable.AsSpan(position * half, half).ToArray();
        var expected = (float[])x.Clone();
        for (int h = 0; h < heads; h++)
            for (int i = 0; i < half; i++)
            {
                float a = x[h * headDim + 2 * i], b = x[h * headDim + 2 * i + 1];
                expected[h * headDim + 2 * i] = a * cos[i] - b * sin[i];
                expected[h * headDim + 2 * i + 1] = a * sin[i] + b * cos[i];
            }
        VectorMath.Rope(x, heads, headDim, cos, sin);
        Assert.Equal(expected, x);
    }

    [Fact]
    public void Exp_IsWithinTwoUlpsOfDoubleExp()
    {
        double worst = 0;
        for (float x = -87f; x < 88.3f; x += 0.0007f)
        {
            float e8 = VectorMath.Exp(Vector256.Create(x)).ToScalar();
            worst = Math.Max(worst, Math.Abs(e8 - Math.Exp(x)) / Math.Exp(x));
        }
        Assert.True(worst < 2e-7, $"relative error {worst}");
        Assert.Equal(1f, VectorMath.Exp(Vector256.Create(0f)).ToScalar());
        float tiny = VectorMath.Exp(Vector256.Create(-1000f)).ToScalar(), huge = VectorMath.Exp(Vector256.Create(1000f)).ToScalar();
        Assert.True(tiny >= 0 && tiny < 1e-37f && float.IsFinite(huge) && huge > 1e38f, $"{tiny} {huge}");
        Assert.True(float.IsNaN(VectorMath.Exp(Vector256.Create(float.NaN)).ToScalar()));
    }

    [Theory]
    [InlineData(2048)]
    [InlineData(29)]
    public void SiluGate_MatchesTheDoubleFormula(int n)
    {
        var rng = new Random(n);
        var gate = Enumerable.Range(0, n).Select(_ => (float)(rng.NextDouble() * 40 - 20)).ToArray();
        var up = Enumerable.Range(0, n).Select(_ => (float)(rng.NextDouble() * 4 - 2)).ToArray();
        var expected = gate.Select((g, i) => g / (1 + Math.Exp(-g)) * up[i]).ToArray();
        VectorMath.SiluGate(gate, up);
        for (int i = 0; i < n; i++) Assert.True(Math.Abs(gate[i] - expected[i]) <= 1e-6 * Math.Max(1, Math.Abs(expected[i])), $"{i}: {gate[i]} vs {expected[i]}");
    }
}
