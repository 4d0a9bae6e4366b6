// Every ternary kernel path against the scalar oracle over many shapes, including odd row and token counts,
// inner dims that need padding, and the small model's 768 and 2048 widths. The integer dot products are exact,
// so results must be bit-identical. Paths the machine lacks are skipped (they run where supported; the suite
// also runs with DOTNET_EnableAVX512F=0 / DOTNET_EnableHWIntrinsic=0).
using Duck.Inference.Kernels;

namespace Duck.Inference.Tests;

public class TernaryMatMulTests
{
    public static IEnumerable<object[]> Shapes()
    {
        foreach (var (rows, cols) in new[] { (1, 64), (3, 100), (4, 256), (5, 200), (7, 512), (13, 768), (9, 2048), (8, 2304), (33, 704), (64, 128) })
            foreach (int tokens in new[] { 1, 2, 3, 4, 5, 9, 17 })
                yield return [rows, cols, tokens];
    }

    static (PackedTernary W, QuantizedActivations X) Random(int rows, int cols, int tokens, int seed)
    {
        var rng = new Random(seed);
        var w = new PackedTernary(rows, cols, 0.0173f);
        var t = new sbyte[cols];
        for (int r = 0; r < rows; r++)
        {
            for (int c = 0; c < cols; c++) t[c] = (sbyte)(rng.Next(3) - 1);
            w.SetRow(r, t);
        }
        var x = new float[tokens * cols];
        for (int i = 0; i < x.Length; i++) x[i] = (float)(rng.NextDouble() * 6 - 3);
        x[0] = 100f; // one outlier forces ±127 saturation of the largest value and small codes elsewhere
        var q = new QuantizedActivations();
        q.Quantize(x, tokens, cols);
        return (w, q);
    }

    [Theory, MemberData(nameof(Shapes))]
    public void Multiply_EveryPath_EqualsScalarOracle(int rows, int cols, int tokens)
    {
        var (w, x) = Random(rows, cols, tokens, rows * 1000 + cols + tokens);
        var expected = new float[tokens * rows];
        TernaryMatMul.Multiply(w, x, expected, 0, rows, KernelPath.Scalar);
        foreach (var path in new[] { KernelPath.Avx2, KernelPath.AvxVnni, KernelPath.Avx512 })
        {
            if (!TernaryMatMul.IsSupported(path)) continue;
            var y = new float[tokens * rows];
            TernaryMatMul.Multiply(w, x, y, 0, rows, path);
            Assert.True(expected.AsSpan().SequenceEqual(y), $"{path} differs from scalar for [{rows}x{cols}] x {tokens} tokens");
        }
        w.Dispose();
    }

    [Fact]
    public void Multiply_RowRange_WritesOnlyThoseRows()
    {
        var (w, x) = Random(10, 256, 2, 1);
        var y = new float[20];
        Array.Fill(y, float.NaN);
        TernaryMatMul.Multiply(w, x, y, 3, 7, TernaryMatMul.Best);
        for (int t = 0; t < 2; t++)
            for (int r = 0; r < 10; r++)
                Assert.Equal(r is >= 3 and < 7, !float.IsNaN(y[t * 10 + r]));
    }

    [Fact]
    public void Scalar_MatchesFloatDefinition()
    {
        var (w, x) = Random(6, 300, 3, 9);
        var y = new float[18];
        TernaryMatMul.Multiply(w, x, y, 0, 6, KernelPath.Scalar);
        for (int t = 0; t < 3; t++)
            for (int r = 0; r < 6; r++)
            {
                double sum = 0;
                for (int c = 0; c < 300; c++) sum += w.Get(r, c) * w.Scale * (x.Values[t * x.PaddedCols + c] / (double)x.Scales[t]);
                Assert.Equal(sum, y[t * 6 + r], 4);
            }
    }

    [Fact]
    public void Quantize_Activations_FollowsAbsmaxRule()
    {
        var x = new[] { 0.5f, -1f, 0.25f, 0.003f };
        var q = new sbyte[4];
        float s = QuantizedActivations.QuantizeRow(x, q, out int sum);
        Assert.Equal(127f, s);
        Assert.Equal(new sbyte[] { 64, -127, 32, 0 }, q); // 63.5 rounds to even 64, 31.75 → 32, 0.381 → 0
        Assert.Equal(64 - 127 + 32, sum);
    }

    [Theory]
    [InlineData(1)]
    [InlineData(16)]
    [InlineData(31)]
    [InlineData(32)]
    [InlineData(64)]
    [InlineData(100)]
    [InlineData(768)]
    [InlineData(2051)]
    public void QuantizeRow_Vectorized_EqualsScalarOracle(int n)
    {
        var rng = new Random(n);
        var x = Enumerable.Range(0, n).Select(i => (float)(rng.NextDouble() * 8 - 4)).ToArray();
        x[n / 2] = 0.5f * 127f / 127f; // a value landing on .5 steps after scaling exercises half-to-even
        var fast = new sbyte[n]; var slow = new sbyte[n];
        float s1 = QuantizedActivations.QuantizeRow(x, fast, out int sum1);
        float s2 = QuantizedActivations.QuantizeRowScalar(x, slow, out int sum2);
        Assert.Equal((s2, sum2), (s1, sum1));
        Assert.Equal(slow, fast);
    }
}
