// The KV-cache attention: bf16 conversions round to nearest even and keep specials; Attend over bf16 keys and
// values equals a double-precision softmax-weighted sum of the same (bf16-rounded) numbers, for the head size 64
// fast path, the generic vector path and the scalar path (head size not a multiple of 8); AttendInt8 equals it for
// the int8-quantized query, within the rounding of its weights to int16 where the weighted sum runs in integers. Over a position-major cache (every head's vector of a position together, as KvCache lays
// them out), several heads at once and one head with a stride give the bits of one contiguous head at a time.
using Duck.Inference.Kernels;

namespace Duck.Inference.Tests;

public class AttentionKernelsTests
{
    [Theory]
    [InlineData(1f, (ushort)0x3F80)]
    [InlineData(-2f, (ushort)0xC000)]
    [InlineData(0f, (ushort)0x0000)]
    [InlineData(float.PositiveInfinity, (ushort)0x7F80)]
    [InlineData(float.NegativeInfinity, (ushort)0xFF80)]
    public void ToBf16_ExactValues_KeepTheirBits(float x, ushort expected) => Assert.Equal(expected, AttentionKernels.ToBf16(x));

    [Fact]
    public void ToBf16_Halfway_RoundsToEven()
    {
        // 1 + 2^-8 lies halfway between bf16 1.0 (0x3F80, even) and 1 + 2^-7 (0x3F81): ties go to the even one.
        Assert.Equal((ushort)0x3F80, AttentionKernels.ToBf16(BitConverter.UInt32BitsToSingle(0x3F808000)));
        // 0x3F818000 is halfway between 0x3F81 (odd) and 0x3F82 (even).
        Assert.Equal((ushort)0x3F82, AttentionKernels.ToBf16(BitConverter.UInt32BitsToSingle(0x3F818000)));
        // Just above halfway rounds up.
        Assert.Equal((ushort)0x3F81, AttentionKernels.ToBf16(BitConverter.UInt32BitsToSingle(0x3F808001)));
        Assert.True(float.IsNaN(AttentionKernels.FromBf16(AttentionKernels.ToBf16(float.NaN))));
    }

    [Fact]
    public void Store_VectorAndTail_EqualsScalarConversion()
    {
        var rng = new Random(5);
        var x = Enumerable.Range(0, 37).Select(i => (float)((rng.NextDouble() - 0.5) * Math.Pow(10, rng.Next(-8, 8)))).ToArray();
        x[3] = float.NaN; x[20] = float.PositiveInfinity; x[21] = -0f; x[5] = x[35] = BitConverter.UInt32BitsToSingle(0x7F800001); // a NaN that rounding would turn into inf (vector part and tail)
        var y = new ushort[x.Length];
        AttentionKernels.Store(x, y);
        Assert.Equal(x.Select(AttentionKernels.ToBf16), y);
        Assert.True(float.IsNaN(AttentionKernels.FromBf16(y[5])) && float.IsNaN(AttentionKernels.FromBf16(y[35])));
    }

    [Fact]
    public void RoundToBf16_RelativeError_AtMost2PowMinus8()
    {
        var rng = new Random(3);
        for (int i = 0; i < 10000; i++)
        {
            float x = (float)((rng.NextDouble() - 0.5) * Math.Pow(10, rng.Next(-6, 6)));
            Assert.True(Math.Abs(AttentionKernels.RoundToBf16(x) - x) <= Math.Abs(x) * Math.Pow(2, -8), $"{x}");
        }
    }

    [Theory]
    [InlineData(64, 1)]
    [InlineData(64, 2)]
    [InlineData(64, 37)]
    [InlineData(64, 256)]
    [InlineData(16, 9)]
    [InlineData(100, 33)]
    [InlineData(6, 5)]
    public unsafe void Attend_MatchesDoublePrecisionSoftmax(int hd, int count)
    {
        var rng = new Random(hd * 1000 + count);
        var q = Enumerable.Range(0, hd).Select(_ => (float)(rng.NextDouble() * 2 - 1)).ToArray();
        var k = Enumerable.Range(0, hd * count).Select(_ => AttentionKernels.ToBf16((float)(rng.NextDouble() * 4 - 2))).ToArray();
        var v = Enumerable.Range(0, hd * count).Select(_ => AttentionKernels.ToBf16((float)(rng.NextDouble() * 2 - 1))).ToArray();
        float scale = 1f / MathF.Sqrt(hd);
        var expected = new double[hd];
        var s = new double[count];
        for (int j = 0; j < count; j++)
            for (int d = 0; d < hd; d++) s[j] += (double)q[d] * AttentionKernels.FromBf16(k[j * hd + d]) * scale;
        double max = s.Max(), sum = s.Sum(z => Math.Exp(z - max));
        for (int j = 0; j < count; j++)
            for (int d = 0; d < hd; d++) expected[d] += Math.Exp(s[j] - max) / sum * AttentionKernels.FromBf16(v[j * hd + d]);

        var o = new float[hd];
        var scores = new float[count];
        fixed (float* qp = q, op = o, sp = scores)
        fixed (ushort* kp = k, vp = v)
            AttentionKernels.Attend(qp, kp, vp, count, hd, scale, sp, op);
        for (int d = 0; d < hd; d++) Assert.True(Math.Abs(o[d] - expected[d]) < 1e-5, $"dim {d}: {o[d]} vs {expected[d]}");
    }

    [Fact]
    public void DequantizeInt8AndLoad_VectorAndTail_EqualScalarConversion()
    {
        var rng = new Random(6);
        var q = Enumerable.Range(0, 37).Select(_ => (sbyte)rng.Next(-128, 128)).ToArray();
        q[0] = -128; q[36] = 127;
        var x = new float[q.Length];
        AttentionKernels.DequantizeInt8(q, 0.0173f, x);
        Assert.Equal(q.Select(v => v * 0.0173f), x);
        var y = Enumerable.Range(0, 37).Select(_ => (ushort)rng.Next(0, 65536)).ToArray();
        AttentionKernels.Load(y, x);
        Assert.Equal(y.Select(v => BitConverter.SingleToUInt32Bits(AttentionKernels.FromBf16(v))), x.Select(BitConverter.SingleToUInt32Bits));
        Assert.Throws<ArgumentException>(() => AttentionKernels.Load(y, new float[36]));
    }

    [Fact]
    public void QuantizeInt8_RoundTrip_WithinHalfAScale()
    {
        var rng = new Random(9);
        var x = Enumerable.Range(0, 64).Select(_ => (float)(rng.NextDouble() * 6 - 3)).ToArray();
        var q = new sbyte[64];
        float scale = AttentionKernels.QuantizeInt8(x, q);
        Assert.Equal(x.Max(MathF.Abs) / 127f, scale, 6);
        for (int i = 0; i < x.Length; i++) Assert.True(MathF.Abs(q[i] * scale - x[i]) <= scale / 2 + 1e-6f, $"{i}");
        Assert.Equal(1f / (1f / 1e-5f * 127f), AttentionKernels.QuantizeInt8(new float[8], q));
        Assert.All(q.Take(8), v => Assert.Equal(0, v));
    }

    // The query is quantized as the activations are, so the reference takes q8 · qScale; the integer dot products
    // are exact on every path this CPU has (vpdpbusd or vpmaddubsw for head sizes divisible by 32, scalar otherwise),
    // keys of -128 included.
    [Theory]
    [InlineData(64, 1)]
    [InlineData(64, 8)]
    [InlineData(64, 9)]
    [InlineData(64, 37)]
    [InlineData(64, 256)]
    [InlineData(128, 19)]
    [InlineData(16, 9)]
    [InlineData(100, 33)]
    public unsafe void AttendInt8_MatchesDoublePrecisionSoftmaxOfTheQuantizedQuery(int hd, int count)
    {
        var rng = new Random(hd * 7 + count);
        var q = Enumerable.Range(0, hd).Select(_ => (float)(rng.NextDouble() * 2 - 1)).ToArray();
        var k = Enumerable.Range(0, hd * count).Select(_ => (sbyte)rng.Next(-128, 128)).ToArray();
        var v = Enumerable.Range(0, hd * count).Select(_ => (sbyte)rng.Next(-128, 128)).ToArray();
        var ks = Enumerable.Range(0, count).Select(_ => (float)(rng.NextDouble() * 0.03)).ToArray();
        var vs = Enumerable.Range(0, count).Select(_ => (float)(rng.NextDouble() * 0.01)).ToArray();
        var sums = Enumerable.Range(0, count).Select(j => k.Skip(j * hd).Take(hd).Sum(x => (int)x)).ToArray();
        var q8 = new sbyte[hd];
        float qScale = AttentionKernels.QuantizeInt8(q, q8);
        float scale = 1f / MathF.Sqrt(hd);
        var s = new double[count];
        for (int j = 0; j < count; j++)
            for (int d = 0; d < hd; d++) s[j] += (double)q8[d] * qScale * k[j * hd + d] * ks[j] * scale;
        double max = s.Max(), sum = s.Sum(z => Math.Exp(z - max));
        var expected = new double[hd];
        for (int j = 0; j < count; j++)
            for (int d = 0; d < hd; d++) expected[d] += Math.Exp(s[j] - max) / sum * v[j * hd + d] * vs[j];
        // The weighted sum may run in integers (head size 64 with AVX-512BW): each weight p_j · vs_j rounded to a step
        // of 1 / min(32767 / max weight, 16e6 / Σ weights), so o is off by at most half a step per |v_j|.
        var weights = Enumerable.Range(0, count).Select(j => Math.Exp(s[j] - max) / sum * vs[j]).ToArray();
        double step = 1 / Math.Min(32767 / weights.Max(), 16e6 / weights.Sum());
        bool integerSum = hd == 64 && System.Runtime.Intrinsics.X86.Avx512BW.IsSupported;
        var tolerance = Enumerable.Range(0, hd).Select(d => 1e-5 + (integerSum ? step / 2 * Enumerable.Range(0, count).Sum(j => Math.Abs((double)v[j * hd + d])) : 0)).ToArray();

        var o = new float[hd];
        var scores = new float[count];
        var paths = new[] { KernelPath.Scalar, KernelPath.Avx2, KernelPath.AvxVnni }.Where(p => p == KernelPath.Scalar
            || (p == KernelPath.Avx2 && System.Runtime.Intrinsics.X86.Avx2.IsSupported)
            || (p == KernelPath.AvxVnni && System.Runtime.Intrinsics.X86.AvxVnni.IsSupported)).ToList();
        Assert.Contains(AttentionKernels.DotPath, paths);
        foreach (var path in paths)
        {
            fixed (float* qp = q, op = o, sp = scores, ksp = ks, vsp = vs)
            fixed (sbyte* kp = k, vp = v)
            fixed (int* sump = sums)
                AttentionKernels.AttendInt8(qp, kp, ksp, sump, vp, vsp, count, hd, scale, sp, op, path);
            for (int d = 0; d < hd; d++) Assert.True(Math.Abs(o[d] - expected[d]) < tolerance[d], $"{path}, dim {d}: {o[d]} vs {expected[d]}");
        }
        fixed (float* qp = q, op = o, sp = scores, ksp = ks, vsp = vs)
        fixed (sbyte* kp = k, vp = v)
        fixed (int* sump = sums)
            AttentionKernels.AttendInt8(qp, kp, ksp, sump, vp, vsp, count, hd, scale, sp, op);
        // Against the unquantized query the output moves by well under a percent of the values' scale.
        var exact = new double[count];
        for (int j = 0; j < count; j++)
            for (int d = 0; d < hd; d++) exact[j] += (double)q[d] * k[j * hd + d] * ks[j] * scale;
        double emax = exact.Max(), esum = exact.Sum(z => Math.Exp(z - emax));
        var reference = new double[hd];
        for (int j = 0; j < count; j++)
            for (int d = 0; d < hd; d++) reference[d] += Math.Exp(exact[j] - emax) / esum * v[j * hd + d] * vs[j];
        double valueScale = 128 * vs.Max();
        for (int d = 0; d < hd; d++) Assert.True(Math.Abs(o[d] - reference[d]) < 0.01 * valueScale, $"dim {d}: {o[d]} vs unquantized {reference[d]}");
    }

    [Fact]
    public unsafe void AttendInt8_LongUniformContext_KeepsItsSumsInRange()
    {
        // 2048 equal keys make every weight 1/2048; values of -128 (and 127) at scale 1 then average to exactly -128 (127):
        // the integer weighted sum must hold 2048 · 128 · its weights without overflowing int32.
        const int hd = 64, count = 2048;
        foreach (sbyte value in new sbyte[] { -128, 127 })
        {
            var q = Enumerable.Range(0, hd).Select(i => (float)Math.Sin(i)).ToArray();
            var k = new sbyte[hd * count];
            var v = Enumerable.Repeat(value, hd * count).ToArray();
            var ks = Enumerable.Repeat(0.01f, count).ToArray();
            var vs = Enumerable.Repeat(1f, count).ToArray();
            var sums = new int[count];
            var o = new float[hd];
            var scores = new float[count];
            fixed (float* qp = q, op = o, sp = scores, ksp = ks, vsp = vs)
            fixed (sbyte* kp = k, vp = v)
            fixed (int* sump = sums)
                AttentionKernels.AttendInt8(qp, kp, ksp, sump, vp, vsp, count, hd, 0.125f, sp, op);
            Assert.All(o, x => Assert.Equal(value, x, 0.01));
        }
    }

    [Theory]
    [InlineData(64, 37, 0, 12)]
    [InlineData(64, 37, 2, 3)]
    [InlineData(64, 21, 1, 5)]
    [InlineData(32, 19, 0, 12)]
    [InlineData(64, 8, 11, 1)]
    [InlineData(32, 19, 1, 9)]
    [InlineData(16, 9, 3, 4)]
    public unsafe void AttendInt8_HeadsOfAPositionMajorCache_EqualEachHeadAlone(int hd, int count, int h0, int heads)
    {
        const int H = 12;
        int capacity = count + 5, stride = H * hd;
        var rng = new Random(hd + count * 3 + h0 * 7 + heads);
        var q = Enumerable.Range(0, heads * hd).Select(_ => (float)(rng.NextDouble() * 2 - 1)).ToArray();
        var k = Enumerable.Range(0, capacity * stride).Select(_ => (sbyte)rng.Next(-128, 128)).ToArray();
        var v = Enumerable.Range(0, capacity * stride).Select(_ => (sbyte)rng.Next(-128, 128)).ToArray();
        var ks = Enumerable.Range(0, H * capacity).Select(_ => (float)(rng.NextDouble() * 0.03)).ToArray();
        var vs = Enumerable.Range(0, H * capacity).Select(_ => (float)(rng.NextDouble() * 0.01)).ToArray();
        var sums = new int[H * capacity];
        for (int h = 0; h < H; h++)
            for (int j = 0; j < capacity; j++) sums[h * capacity + j] = k.Skip(j * stride + h * hd).Take(hd).Sum(x => (int)x);
        float scale = 1f / MathF.Sqrt(hd);
        var paths = new[] { KernelPath.Scalar, KernelPath.Avx2, KernelPath.AvxVnni }.Where(p => p == KernelPath.Scalar
            || (p == KernelPath.Avx2 && System.Runtime.Intrinsics.X86.Avx2.IsSupported)
            || (p == KernelPath.AvxVnni && System.Runtime.Intrinsics.X86.AvxVnni.IsSupported)).ToList();
        foreach (var path in paths)
        {
            var o = new float[heads * hd];
            var scores = new float[heads * count];
            fixed (float* qp = q, op = o, sp = scores, ksp = ks, vsp = vs)
            fixed (sbyte* kp = k, vp = v)
            fixed (int* sump = sums)
                AttentionKernels.AttendInt8(qp, kp + h0 * hd, ksp + h0 * capacity, sump + h0 * capacity, vp + h0 * hd, vsp + h0 * capacity, count, hd,
                    heads, stride, capacity, scale, sp, op, path);
            for (int i = 0; i < heads; i++)
            {
                int h = h0 + i;
                // The head alone, its keys and values copied out contiguous.
                var kh = Enumerable.Range(0, count).SelectMany(j => k.Skip(j * stride + h * hd).Take(hd)).ToArray();
                var vh = Enumerable.Range(0, count).SelectMany(j => v.Skip(j * stride + h * hd).Take(hd)).ToArray();
                var alone = new float[hd];
                var single = new float[count];
                fixed (float* qp = q, op = alone, sp = single, ksp = ks, vsp = vs)
                fixed (sbyte* kp = kh, vp = vh)
                fixed (int* sump = sums)
                    AttentionKernels.AttendInt8(qp + i * hd, kp, ksp + h * capacity, sump + h * capacity, vp, vsp + h * capacity, count, hd, scale, sp, op, path);
                Assert.Equal(alone, o.AsSpan(i * hd, hd).ToArray());
            }
            // Asking for another row's keys meanwhile (more or fewer lines than positions) changes nothing.
            foreach (long prefetchBytes in new long[] { 1, 64L * count * heads + 100, k.Length })
            {
                var withPrefetch = new float[heads * hd];
                fixed (float* qp = q, op = withPrefetch, sp = scores, ksp = ks, vsp = vs)
                fixed (sbyte* kp = k, vp = v)
                fixed (int* sump = sums)
                fixed (sbyte* other = new sbyte[prefetchBytes])
                    AttentionKernels.AttendInt8(qp, kp + h0 * hd, ksp + h0 * capacity, sump + h0 * capacity, vp + h0 * hd, vsp + h0 * capacity, count, hd,
                        heads, stride, capacity, scale, sp, op, path, other, prefetchBytes);
                Assert.Equal(o, withPrefetch);
            }
        }
    }

    [Fact]
    public unsafe void Attend_WithAStride_EqualsTheContiguousHead()
    {
        const int hd = 64, count = 29, stride = 5 * hd, h = 3;
        var rng = new Random(11);
        var q = Enumerable.Range(0, hd).Select(_ => (float)(rng.NextDouble() * 2 - 1)).ToArray();
        var k = Enumerable.Range(0, count * stride).Select(_ => AttentionKernels.ToBf16((float)(rng.NextDouble() * 4 - 2))).ToArray();
        var v = Enumerable.Range(0, count * stride).Select(_ => AttentionKernels.ToBf16((float)(rng.NextDouble() * 2 - 1))).ToArray();
        var kh = Enumerable.Range(0, count).SelectMany(j => k.Skip(j * stride + h * hd).Take(hd)).ToArray();
        var vh = Enumerable.Range(0, count).SelectMany(j => v.Skip(j * stride + h * hd).Take(hd)).ToArray();
        var strided = new float[hd];
        var contiguous = new float[hd];
        var scores = new float[count];
        fixed (float* qp = q, op = strided, cp = contiguous, sp = scores)
        fixed (ushort* kp = k, vp = v, khp = kh, vhp = vh)
        {
            AttentionKernels.Attend(qp, kp + h * hd, vp + h * hd, count, hd, stride, 0.125f, sp, op);
            AttentionKernels.Attend(qp, khp, vhp, count, hd, 0.125f, sp, cp);
        }
        Assert.Equal(contiguous, strided);
    }
}
