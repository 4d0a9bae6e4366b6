// TQ2_0 / TQ1_0 / Q8_0 codecs: round trips over many lengths and edge values, ggml's byte layout, and the
// equivalence of the ggml reference quantizer with Duck's direct packing of ternary codes.
using Duck.Inference.Gguf;
using Duck.Inference.Quant;

namespace Duck.Inference.Tests;

public class GgmlQuantsTests
{
    static sbyte[] RandomTernary(int n, int seed, bool edges = false)
    {
        var rng = new Random(seed);
        var t = new sbyte[n];
        for (int i = 0; i < n; i++) t[i] = (sbyte)(rng.Next(3) - 1);
        if (edges) { Array.Fill(t, (sbyte)1, 0, Math.Min(n, 300)); Array.Fill(t, (sbyte)-1, n / 2, Math.Min(n / 2, 300)); }
        return t;
    }

    public static IEnumerable<object[]> Lengths() => new[] { 1, 2, 3, 5, 8, 12 }.SelectMany(b => new[] { new object[] { b * 256, false }, [b * 256, true] });

    [Theory, MemberData(nameof(Lengths))]
    public void Tq2_PackThenDequantize_ReturnsValuesTimesScale(int n, bool edges)
    {
        var t = RandomTernary(n, n, edges);
        var blocks = new byte[n / 256 * GgmlTypes.Tq2BlockBytes];
        Half d = (Half)0.0371f;
        for (int b = 0; b < n / 256; b++) GgmlQuants.PackTq2Block(t.AsSpan(b * 256, 256), d, blocks.AsSpan(b * 66, 66));
        var y = new float[n];
        GgmlQuants.DequantizeTq2(blocks, y);
        for (int i = 0; i < n; i++) Assert.Equal(t[i] * (float)d, y[i]);
    }

    [Theory, MemberData(nameof(Lengths))]
    public void Tq1_PackThenDequantize_ReturnsValuesTimesScale(int n, bool edges)
    {
        var t = RandomTernary(n, n + 1, edges);
        var blocks = new byte[n / 256 * GgmlTypes.Tq1BlockBytes];
        Half d = (Half)1.5f;
        for (int b = 0; b < n / 256; b++) GgmlQuants.PackTq1Block(t.AsSpan(b * 256, 256), d, blocks.AsSpan(b * 54, 54));
        var y = new float[n];
        GgmlQuants.DequantizeTq1(blocks, y);
        for (int i = 0; i < n; i++) Assert.Equal(t[i] * 1.5f, y[i]);
    }

    [Fact]
    public void Tq1_AllTritCombinations_RoundTrip()
    {
        // Every 5-trit pattern (0..242) in the qs bytes and every 4-trit pattern in qh.
        var t = new sbyte[256];
        for (int pattern = 0; pattern < 243; pattern++)
        {
            for (int i = 0; i < 256; i++) t[i] = (sbyte)((pattern / (int)Math.Pow(3, i % 5)) % 3 - 1);
            var block = new byte[54];
            GgmlQuants.PackTq1Block(t, Half.One, block);
            var back = new sbyte[256];
            GgmlQuants.UnpackTq1Block(block, back);
            Assert.Equal(t, back);
        }
    }

    [Fact]
    public void Tq2_Layout_MatchesGgmlByteOrder()
    {
        // ggml: qs[j + m] holds x[j*4 + m + 32*l] at bits 2l, for j in {0, 32}.
        var t = new sbyte[256];
        t[32 * 2 + 5] = 1;    // j=0, m=5, l=2  → qs[5] bits 4-5 = 2
        t[128 + 32 * 3 + 7] = -1; // j=32, m=7, l=3 → qs[39] bits 6-7 = 0
        var block = new byte[66];
        GgmlQuants.PackTq2Block(t, Half.One, block);
        Assert.Equal(0b01_10_01_01, block[5]);
        Assert.Equal(0b00_01_01_01, block[39]);
        Assert.Equal(0x55, block[0]);
    }

    [Theory]
    [InlineData(GgmlType.TQ2_0)]
    [InlineData(GgmlType.TQ1_0)]
    public void QuantizeRef_OnTernaryTimesGamma_EqualsDirectPacking(GgmlType type)
    {
        int n = 1024;
        var t = RandomTernary(n, 5);
        float gamma = 0.25f; // exactly representable in fp16, so amax per block = gamma
        var x = t.Select(v => v * gamma).ToArray();
        int bb = GgmlTypes.BlockBytes(type);
        var viaRef = new byte[n / 256 * bb];
        var direct = new byte[n / 256 * bb];
        if (type == GgmlType.TQ2_0) GgmlQuants.QuantizeTq2Ref(x, viaRef); else GgmlQuants.QuantizeTq1Ref(x, viaRef);
        for (int b = 0; b < n / 256; b++)
        {
            if (type == GgmlType.TQ2_0) GgmlQuants.PackTq2Block(t.AsSpan(b * 256, 256), (Half)gamma, direct.AsSpan(b * bb, bb));
            else GgmlQuants.PackTq1Block(t.AsSpan(b * 256, 256), (Half)gamma, direct.AsSpan(b * bb, bb));
        }
        Assert.Equal(direct, viaRef);
    }

    [Fact]
    public void Q8_RoundTrip_ErrorWithinHalfStep()
    {
        var rng = new Random(3);
        var x = Enumerable.Range(0, 32 * 40).Select(i => i % 97 == 0 ? 0f : (float)(rng.NextDouble() * 4 - 2)).ToArray();
        var blocks = new byte[40 * GgmlTypes.Q8BlockBytes];
        GgmlQuants.QuantizeQ8(x, blocks);
        var y = new float[x.Length];
        GgmlQuants.DequantizeQ8(blocks, y);
        for (int b = 0; b < 40; b++)
        {
            float amax = x.Skip(b * 32).Take(32).Max(MathF.Abs);
            // Half a quantization step plus the fp16 rounding of the scale (relative 2^-11 of amax).
            float tol = amax / 127 * 0.5f + amax * 1e-3f;
            for (int i = b * 32; i < b * 32 + 32; i++) Assert.InRange(y[i] - x[i], -tol, tol);
        }
    }

    [Fact]
    public void Absmean_Ternarize_MatchesDefinition()
    {
        var w = new[] { 0.3f, -0.1f, 0.05f, -0.6f, 0f, 0.2f };
        var t = new sbyte[w.Length];
        float gamma = Absmean.Ternarize(w, t);
        Assert.Equal(0.2083333f, gamma, 5);
        Assert.Equal(new sbyte[] { 1, 0, 0, -1, 0, 1 }, t); // 0.2/0.20834 = 0.96 → 1; 0.1/0.208 = 0.48 → 0
    }
}
