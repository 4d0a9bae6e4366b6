// RoPE's vectorized pairs give the bits of the scalar formula (a·c − b·s, a·s + b·c) for every head size the loop
// splits into vector steps and a scalar tail.
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
}
