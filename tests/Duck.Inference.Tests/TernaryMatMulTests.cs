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
        // The lookup path's shapes: several 128-row quads with a partial last one, widths not a multiple of 9, and
        // last blocks of 4, 3, 2 and 1 tokens.
        foreach (var (rows, cols) in new[] { (130, 768), (300, 100), (256, 2048) })
            foreach (int tokens in new[] { 8, 11, 14, 33 })
                yield return [rows, cols, tokens];
        // An output past the lookup kernel's in-cache size (as the head's logits): its lines are fetched ahead of the stores.
        yield return [4100, 96, 33];
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
        foreach (var path in new[] { KernelPath.Avx2, KernelPath.AvxVnni, KernelPath.Avx512, KernelPath.Avx512Lookup })
        {
            if (!TernaryMatMul.IsSupported(path)) continue;
            var y = new float[tokens * rows];
            TernaryMatMul.Multiply(w, x, y, 0, rows, path);
            Assert.True(expected.AsSpan().SequenceEqual(y), $"{path} differs from scalar for [{rows}x{cols}] x {tokens} tokens");
        }
        w.Dispose();
    }

    [Fact]
    public void Lookup_RowRangesOfQuads_MatchWholeProduct()
    {
        if (!TernaryMatMul.IsSupported(KernelPath.Avx512Lookup)) return;
        var (w, x) = Random(300, 768, 12, 5);
        Assert.Equal(128, TernaryMatMul.RowGranule(KernelPath.Avx512Lookup, 12));
        Assert.Equal(4, TernaryMatMul.RowGranule(KernelPath.Avx512Lookup, TernaryMatMul.LookupMinTokens - 1));
        var expected = new float[12 * 300];
        TernaryMatMul.Multiply(w, x, expected, 0, 300, KernelPath.Scalar);
        var y = new float[12 * 300];
        Array.Fill(y, float.NaN);
        // Ranges as a caller splits them (quads), and one that does not start on a quad (multiply kernels instead).
        foreach (var (start, end) in new[] { (0, 128), (256, 300), (128, 130), (130, 256) })
            TernaryMatMul.Multiply(w, x, y, start, end, KernelPath.Avx512Lookup);
        Assert.Equal(expected, y);
        w.Dispose();
    }

    [Fact]
    public void Multiply_TokenRanges_MatchWholeProduct()
    {
        var (w, x) = Random(256, 768, 14, 7);
        var expected = new float[14 * 256];
        TernaryMatMul.Multiply(w, x, expected, 0, 256, KernelPath.Scalar);
        foreach (var path in Enum.GetValues<KernelPath>().Where(TernaryMatMul.IsSupported))
        {
            var y = new float[14 * 256];
            Array.Fill(y, float.NaN);
            // Token parts as TernaryLinear splits a lookup product (multiples of 4), and odd ones (multiply kernels instead).
            foreach (var (t0, t1) in new[] { (0, 8), (8, 14) })
                TernaryMatMul.Multiply(w, x, y, 0, 128, path, t0, t1);
            foreach (var (t0, t1) in new[] { (0, 3), (3, 14) })
                TernaryMatMul.Multiply(w, x, y, 128, 256, path, t0, t1);
            Assert.True(expected.AsSpan().SequenceEqual(y), $"{path} over token ranges differs from the whole product");
        }
        Assert.Throws<ArgumentException>(() => TernaryMatMul.Multiply(w, x, new float[14 * 256], 0, 256, KernelPath.Scalar, 10, 15));
        // 768 rows are 6 quads: 16 tokens go in parts of 8 for 2 threads; 4096 rows need no split, nor do the multiply kernels.
        if (TernaryMatMul.IsSupported(KernelPath.Avx512Lookup))
        {
            Assert.Equal(8, TernaryMatMul.TokensPerItem(KernelPath.Avx512Lookup, 16, 768, 2));
            Assert.Equal(16, TernaryMatMul.TokensPerItem(KernelPath.Avx512Lookup, 16, 4096, 2));
        }
        Assert.Equal(16, TernaryMatMul.TokensPerItem(KernelPath.Avx512, 16, 768, 2));
        w.Dispose();
    }

    [Fact]
    public unsafe void Lookup_Tables_HoldEverySignedSumOfThreeCodes()
    {
        if (!TernaryMatMul.IsSupported(KernelPath.Avx512Lookup)) return;
        var rng = new Random(7);
        foreach (int cols in new[] { 9, 100, 704, 768, 2048 })
        {
            const int rows = 9;
            var q = new QuantizedActivations();
            q.Prepare(rows, cols);
            for (int r = 0; r < rows; r++)
                for (int c = 0; c < cols; c++)
                    q.Values[r * q.PaddedCols + c] = r switch { 0 => -128, 1 => 127, _ => (sbyte)rng.Next(-128, 128) }; // both extremes
            short* tables = q.ThreadTables();
            for (int r = 0; r < rows; r++)
                for (int g = 0; g < q.TableGroups; g++)
                {
                    short* entry = tables + ((long)(r / 4) * q.TableGroups * 4 + g * 4 + r % 4) * 32;
                    int Code(int c) => c < cols ? q.Values[r * q.PaddedCols + c] : 0;
                    for (int i = 0; i < 32; i++)
                    {
                        int expected = i < 27 ? (i / 9 - 1) * Code(3 * g) + (i / 3 % 3 - 1) * Code(3 * g + 1) + (i % 3 - 1) * Code(3 * g + 2) : 0;
                        Assert.True(expected == entry[i], $"cols {cols}, row {r}, group {g}, entry {i}: {entry[i]}, expected {expected}");
                    }
                }
        }
    }

    [Fact]
    public void Lookup_LargestSums_DoNotOverflowInt16()
    {
        if (!TernaryMatMul.IsSupported(KernelPath.Avx512Lookup)) return;
        // Every weight +1 (or -1) and every activation 127: each table entry used is ±381, the most an int16 sum holds
        // 86 of, and 2048 columns run 228 words, so the sums must be widened on the way (in every block size: 8 to 11 tokens).
        foreach (sbyte sign in new sbyte[] { 1, -1 })
        foreach (int tokens in new[] { 8, 9, 10, 11 })
        {
            var w = new PackedTernary(128, 2048, 1f);
            var row = new sbyte[2048];
            Array.Fill(row, sign);
            for (int r = 0; r < 128; r++) w.SetRow(r, row);
            var x = new float[tokens * 2048];
            Array.Fill(x, 1f);
            var q = new QuantizedActivations();
            q.Quantize(x, tokens, 2048);
            var y = new float[tokens * 128];
            var expected = new float[tokens * 128];
            TernaryMatMul.Multiply(w, q, y, 0, 128, KernelPath.Avx512Lookup);
            TernaryMatMul.Multiply(w, q, expected, 0, 128, KernelPath.Scalar);
            Assert.Equal(expected, y);
            Assert.All(y, v => Assert.Equal(sign * 2048f, v, 2)); // 2048 · 127 · gamma / s, with s = 127
            w.Dispose();
        }
    }

    [Fact]
    public void Lookup_Layout_FollowsSetRow()
    {
        if (!TernaryMatMul.IsSupported(KernelPath.Avx512Lookup)) return;
        var (w, x) = Random(128, 256, 8, 6);
        var y = new float[8 * 128];
        TernaryMatMul.Multiply(w, x, y, 0, 128, KernelPath.Avx512Lookup); // builds the lookup layout
        var zeros = new sbyte[256];
        w.SetRow(5, zeros);
        TernaryMatMul.Multiply(w, x, y, 0, 128, KernelPath.Avx512Lookup);
        for (int t = 0; t < 8; t++) Assert.Equal(0f, y[t * 128 + 5]);
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
