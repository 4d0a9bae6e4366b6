// The gradient and weight codecs on their own: 2-bit packing, TernGrad's unbiasedness, error feedback's
// conservation of what was not sent, packets, and chunking of payloads larger than one message.
using Duck.Core.Data;

namespace Duck.Grains.Tests;

public class CodecTests
{
    [Fact]
    public void PackUnpack_AllTernaryValues_RoundTrip()
    {
        var values = Enumerable.Range(0, 1003).Select(i => (sbyte)(i * 7 % 3 - 1)).ToArray();
        var packed = new byte[TernaryCodec.PackedBytes(values.Length)];
        TernaryCodec.Pack(values, packed);
        var output = new float[values.Length];
        TernaryCodec.Unpack(packed, 0, 0.5f, output);

        Assert.Equal(251, packed.Length);
        Assert.Equal(values.Select(v => v * 0.5f), output);
    }

    [Theory]
    [InlineData(0, 1000)]
    [InlineData(3, 997)]
    [InlineData(6, 5)]
    public void Unpack_AnyStartAndLength_GivesTheCodesTimesTheScale(int first, int length)
    {
        var rng = new Random(first + length);
        var values = Enumerable.Range(0, 1003).Select(_ => (sbyte)(rng.Next(3) - 1)).ToArray();
        var packed = new byte[TernaryCodec.PackedBytes(values.Length)];
        TernaryCodec.Pack(values, packed);
        var output = new float[length];

        TernaryCodec.Unpack(packed, first, -1.5f, output);

        Assert.Equal(values.Skip(first).Take(length).Select(v => v * -1.5f), output);
    }

    [Fact]
    public void PackAt_RowsOfOddLengthPackedInOrder_EqualPackingTheWhole()
    {
        var rng = new Random(9);
        var values = Enumerable.Range(0, 7 * 5).Select(_ => (sbyte)(rng.Next(3) - 1)).ToArray();
        var whole = new byte[TernaryCodec.PackedBytes(values.Length)];
        TernaryCodec.Pack(values, whole);
        var rows = new byte[whole.Length];

        for (int r = 0; r < 5; r++) TernaryCodec.PackAt(values.AsSpan(r * 7, 7), rows, r * 7);

        Assert.Equal(whole, rows);
    }

    [Fact]
    public void Unpack_Add_AddsTheDecodedValues()
    {
        var values = new sbyte[] { 1, -1, 0, 1, 1, 0, -1 };
        var packed = new byte[TernaryCodec.PackedBytes(values.Length)];
        TernaryCodec.Pack(values, packed);
        var output = new float[] { 1, 1, 1, 1, 1, 1, 1 };

        TernaryCodec.Unpack(packed, 0, 2f, output, add: true);

        Assert.Equal(new float[] { 3, -1, 1, 3, 3, 1, -1 }, output);
    }

    [Fact]
    public void Read_TruncatedPacket_ThrowsInvalidData()
    {
        var writer = new TensorPacketWriter();
        writer.WriteTernary("w", 4, 8, new float[] { 1, 1, 1, 1 }, new sbyte[32]);
        var packet = writer.ToArray();

        Assert.Throws<InvalidDataException>(() => TensorPacketReader.Read(packet[..^3], (_, _, _, _, _) => { }));
    }

    [Fact]
    public void PackUnpack_BadCodes_Throw()
    {
        Assert.Throws<ArgumentException>(() => TernaryCodec.Pack(new sbyte[] { 0, 1, 2, -1 }, new byte[1]));
        var packed = new byte[] { 0b_0000_0000, 0b_0011_0000 }; // code 3 at value 6
        Assert.Throws<InvalidDataException>(() => TernaryCodec.Unpack(packed, 0, 1f, new float[8]));
        Assert.Throws<InvalidDataException>(() => TernaryCodec.Unpack(packed, 5, 1f, new float[2]));
        TernaryCodec.Unpack(packed, 0, 1f, new float[6]); // the values before it decode
    }

    [Fact]
    public void QuantizeRow_ManyDraws_AverageEqualsInput()
    {
        var rng = new Random(5);
        var gradient = Enumerable.Range(0, 64).Select(_ => (float)(rng.NextDouble() * 2 - 1)).ToArray();
        var sum = new double[gradient.Length];
        var generator = new SplitMix64(11);
        const int draws = 20_000;
        for (int d = 0; d < draws; d++)
        {
            var residual = new float[gradient.Length];
            var t = new sbyte[gradient.Length];
            float scale = TernaryCodec.QuantizeRow(gradient, residual, t, ref generator, clipSigmas: 0);
            for (int i = 0; i < t.Length; i++) sum[i] += t[i] * scale;
        }
        for (int i = 0; i < gradient.Length; i++)
            Assert.True(Math.Abs(sum[i] / draws - gradient[i]) < 0.02, $"element {i}: mean {sum[i] / draws} vs {gradient[i]}");
    }

    [Fact]
    public void QuantizeRow_WithErrorFeedback_SentPlusResidualEqualsSumOfGradients()
    {
        var rng = new Random(6);
        var residual = new float[32];
        var sent = new double[32];
        var total = new double[32];
        var generator = new SplitMix64(3);
        for (int step = 0; step < 50; step++)
        {
            var g = Enumerable.Range(0, 32).Select(_ => (float)(rng.NextDouble() - 0.5)).ToArray();
            var t = new sbyte[32];
            float scale = TernaryCodec.QuantizeRow(g, residual, t, ref generator, TernaryCodec.DefaultClipSigmas);
            for (int i = 0; i < 32; i++) { sent[i] += t[i] * scale; total[i] += g[i]; }
        }
        for (int i = 0; i < 32; i++) Assert.Equal(total[i], sent[i] + residual[i], 3);
    }

    [Fact]
    public void QuantizeRowThreshold_KeepsValuesAboveSevenTenthsOfTheMeanAtTheirMeanMagnitude()
    {
        var gradient = new float[] { 1f, -4f, 0.5f, 0f, 3f, -0.2f, 2f, -1.3f };
        var residual = new float[gradient.Length];
        var t = new sbyte[gradient.Length];

        float scale = TernaryCodec.QuantizeRowThreshold(gradient, residual, t);

        // mean|v| = 12 / 8 = 1.5, threshold 1.05: -4, 3, 2 and -1.3 are kept, at (4 + 3 + 2 + 1.3) / 4.
        Assert.Equal(new sbyte[] { 0, -1, 0, 0, 1, 0, 1, -1 }, t);
        Assert.Equal(2.575f, scale, 5);
        for (int i = 0; i < gradient.Length; i++) Assert.Equal(gradient[i] - t[i] * scale, residual[i], 5);
    }

    [Fact]
    public void QuantizeRowThreshold_WithErrorFeedback_SentTracksTheSumOfGradientsWithABoundedResidual()
    {
        var rng = new Random(7);
        var residual = new float[64];
        var sent = new double[64];
        var total = new double[64];
        for (int step = 0; step < 400; step++)
        {
            var g = Enumerable.Range(0, 64).Select(i => (float)(rng.NextDouble() - 0.5 + (i % 8) * 0.05)).ToArray();
            var t = new sbyte[64];
            float scale = TernaryCodec.QuantizeRowThreshold(g, residual, t);
            for (int i = 0; i < 64; i++) { sent[i] += t[i] * scale; total[i] += g[i]; }
        }
        for (int i = 0; i < 64; i++)
        {
            Assert.Equal(total[i], sent[i] + residual[i], 2);
            Assert.True(Math.Abs(residual[i]) < 3, $"element {i}: residual {residual[i]} grows (sum of gradients {total[i]:F1})");
        }
    }

    [Theory]
    [InlineData(256)]
    [InlineData(61)] // a tail after the last group of eight
    [InlineData(4)]
    public void QuantizeRowThresholdPacked_StepsOfErrorFeedback_SameScaleResidualAndCodesAsTheScalarQuantizer(int n)
    {
        var rng = new Random(n);
        var (residual, residualPacked) = (new float[n], new float[n]);
        for (int step = 0; step < 20; step++)
        {
            var g = Enumerable.Range(0, n).Select(i => (float)(rng.NextDouble() - 0.5) * (i % 5 + 1)).ToArray();
            if (step == 3) g[n / 2] = 0; // rows with ties and zeros
            var t = new sbyte[n];
            var expected = new byte[TernaryCodec.PackedBytes(n)];
            var packed = Enumerable.Repeat((byte)0xFF, expected.Length + 2).ToArray(); // stale bytes are overwritten

            float scale = TernaryCodec.QuantizeRowThreshold(g, residual, t);
            float scalePacked = TernaryCodec.QuantizeRowThresholdPacked(g, residualPacked, packed);
            TernaryCodec.Pack(t, expected);

            Assert.Equal(scale, scalePacked);
            Assert.Equal(residual, residualPacked); // bit for bit: the vector step rounds v - t·scale as the scalar one does
            Assert.Equal(expected, packed[..expected.Length]);
            Assert.Equal(0xFF, packed[^1]); // nothing past the row
        }
    }

    [Fact]
    public void QuantizeRowThresholdPacked_AllZero_ScaleZeroAndZeroCodes()
    {
        var packed = Enumerable.Repeat((byte)0xFF, 4).ToArray();
        var residual = new float[16];

        Assert.Equal(0f, TernaryCodec.QuantizeRowThresholdPacked(new float[16], residual, packed));
        Assert.Equal(new byte[4], packed);
    }

    [Theory]
    [InlineData(37, 29)]
    [InlineData(8, 256)]
    public void PackTernaryWeights_RandomWeights_TheCodesAndScaleOfBitQuantTernaryWeights(int rows, int columns)
    {
        using var scope = TorchSharp.torch.NewDisposeScope(); // holds every temporary: an unheld one may be finalized mid-call (see AdamW.ZeroGrad)
        var rng = new Random(rows);
        var values = Enumerable.Range(0, rows * columns).Select(_ => (float)(rng.NextDouble() * 2 - 1) * 0.03f).ToArray();
        using var w = TorchSharp.torch.tensor(values, new long[] { rows, columns });
        using var q = Duck.Model.BitQuant.TernaryWeights(w);
        var expected = Packed(q.sign().to(TorchSharp.torch.ScalarType.Int8).data<sbyte>().ToArray());
        var packed = new byte[expected.Length];
        var (gamma, denominator) = Duck.Model.BitQuant.TernaryScale(w);

        Assert.True(TernaryCodec.PackTernaryWeights(values, denominator, packed));
        Assert.Equal(expected, packed);
        Assert.Equal(q.abs().max().item<float>(), gamma);
    }

    [Fact]
    public void PackTernaryWeights_ValuesOnAndNextToTheRoundingBoundaries_RoundLikeTorch()
    {
        using var scope = TorchSharp.torch.NewDisposeScope(); // holds every temporary: an unheld one may be finalized mid-call (see AdamW.ZeroGrad)
        const float d = 0.0123f;
        float edge = 0.5f * d;
        var values = new[] { edge, MathF.BitIncrement(edge), MathF.BitDecrement(edge), 1.5f * d, 3 * d, 0f, -0f }
            .SelectMany(v => new[] { v, -v }).ToArray(); // 14 values: a tail after the group of eight
        using var w = TorchSharp.torch.tensor(values);
        using var denominator = TorchSharp.torch.tensor(d);
        using TorchSharp.Scalar low = TorchSharp.ScalarExtensionMethods.ToScalar(-1), high = TorchSharp.ScalarExtensionMethods.ToScalar(1); // held: implicit Scalars are finalizer-freed temporaries
        using var rounded = w.div(denominator).round_().clamp_(low, high); // BitQuant.TernaryWeights' division and rounding
        var expected = Packed(rounded.to(TorchSharp.torch.ScalarType.Int8).data<sbyte>().ToArray());
        var packed = new byte[expected.Length];

        TernaryCodec.PackTernaryWeights(values, d, packed);

        Assert.Equal(expected, packed);
    }

    static byte[] Packed(sbyte[] codes)
    {
        var packed = new byte[TernaryCodec.PackedBytes(codes.Length)];
        TernaryCodec.Pack(codes, packed);
        return packed;
    }

    [Fact]
    public void PackTernaryWeights_ZeroWeights_NoNonzeroCode()
    {
        var packed = Enumerable.Repeat((byte)0xFF, 3).ToArray();

        Assert.False(TernaryCodec.PackTernaryWeights(new float[10], Duck.Model.BitQuant.Eps, packed));
        Assert.Equal(new byte[3], packed);
    }

    [Fact]
    public void Parse_CompressOptions_MapToEncodings()
    {
        Assert.Equal(GradientCompression.Ternary, GradientCompressionExtensions.Parse("ternary"));
        Assert.Equal(GradientCompression.TernGrad, GradientCompressionExtensions.Parse("terngrad"));
        Assert.True(GradientCompression.TernGrad.IsTernary());
        Assert.False(GradientCompression.Fp16.IsTernary());
        Assert.Throws<ArgumentException>(() => GradientCompressionExtensions.Parse("int4"));
    }

    [Fact]
    public void Packet_Fp32AndTernaryRows_DecodeToWhatWasWritten()
    {
        var writer = new TensorPacketWriter();
        writer.WriteFp32("a", 2, 3, new float[] { 1, 2, 3, 4, 5, 6 });
        writer.WriteTernary("e", 10, 2, new float[] { 0.25f, 2f }, new sbyte[] { 1, -1, 0, 1 }, rowIds: new[] { 7, 3 });
        var seen = new List<(string, int[]?, float[])>();

        TensorPacketReader.Read(writer.ToArray(), (name, rows, columns, ids, values) => seen.Add((name, ids, values)));

        Assert.Equal(("a", (int[]?)null), (seen[0].Item1, seen[0].Item2));
        Assert.Equal(new float[] { 1, 2, 3, 4, 5, 6 }, seen[0].Item3);
        Assert.Equal(new[] { 7, 3 }, seen[1].Item2);
        Assert.Equal(new float[] { 0.25f, -0.25f, 0, 2f }, seen[1].Item3);
    }

    [Fact]
    public void Bytes_EveryEntryKind_SumsToThePacketsExactSize()
    {
        string longName = new('w', 200); // a two-byte length prefix
        long size = TensorPacketWriter.HeaderBytes
            + TensorPacketWriter.Bytes("a", EntryKind.Fp32, 2, 3, byRows: false)
            + TensorPacketWriter.Bytes("é", EntryKind.Fp16, 1, 5, byRows: true)
            + TensorPacketWriter.Bytes(longName, EntryKind.Ternary, 2, 7, byRows: true, scales: 2);
        var writer = new TensorPacketWriter((int)size);
        writer.WriteFp32("a", 2, 3, new float[] { 1, 2, 3, 4, 5, 6 });
        writer.WriteFp16("é", 9, 5, new float[] { 1, 2, 3, 4, 5 }, rowIds: new[] { 4 });
        writer.WriteTernary(longName, 10, 7, new float[] { 0.5f, 2f }, new sbyte[] { 1, -1, 0, 1, 0, 0, 1, -1, -1, 0, 1, 0, 0, 1 }, rowIds: new[] { 7, 3 });

        var packet = writer.ToArray();
        var names = new List<string>();
        TensorPacketReader.Read(packet, (name, _, _, _, _) => names.Add(name));

        Assert.Equal(size, packet.Length);
        Assert.Equal(new[] { "a", "é", longName }, names);
    }

    [Fact]
    public void GatherThenScatterRows_SomeRows_LandWhereTheyCameFromAndBadRowsThrow()
    {
        var source = Enumerable.Range(0, 5 * 3).Select(i => (float)i).ToArray(); // 5 rows of 3
        var rows = new[] { 4, 1 };
        var gathered = new float[6];

        ModelExchange.GatherRows(source, 3, rows, gathered);
        var target = new float[15];
        ModelExchange.ScatterRows(gathered, 3, rows, target);

        Assert.Equal(new float[] { 12, 13, 14, 3, 4, 5 }, gathered);
        Assert.Equal(new float[] { 0, 0, 0, 3, 4, 5, 0, 0, 0, 0, 0, 0, 12, 13, 14 }, target);
        Assert.Throws<ArgumentOutOfRangeException>(() => ModelExchange.GatherRows(source, 3, new[] { 5 }, new float[3]));
        Assert.Throws<InvalidDataException>(() => ModelExchange.ScatterRows(gathered, 3, new[] { 0, 5 }, target));
        Assert.Throws<InvalidDataException>(() => ModelExchange.ScatterRows(gathered, 3, new[] { 0 }, target));
    }

    [Fact]
    public void Chunking_PayloadOfSeveralChunks_JoinsBackExactly()
    {
        var payload = new byte[Payloads.MaxChunkBytes * 2 + 12345];
        new Random(1).NextBytes(payload);
        int count = Chunking.CountOf(payload.Length);

        var chunks = Enumerable.Range(0, count).Select(i => (byte[]?)Chunking.Slice(payload, i)).ToList();

        Assert.Equal(3, count);
        Assert.All(chunks, c => Assert.True(c!.Length <= Payloads.MaxChunkBytes));
        Assert.Equal(payload, Chunking.Join(chunks));
    }

    [Fact]
    public async Task FetchAsync_ElevenParts_InOrderWithABoundedWindowInFlight()
    {
        int inFlight = 0, most = 0;
        async Task<byte[]?> Fetch(int i)
        {
            most = Math.Max(most, Interlocked.Increment(ref inFlight));
            await Task.Delay(10 - i % 3 * 4); // later parts of a window finish first
            Interlocked.Decrement(ref inFlight);
            return [(byte)i, (byte)(i * 2)];
        }

        var joined = await Chunking.FetchAsync(11, Fetch);

        Assert.Equal(Enumerable.Range(0, 11).SelectMany(i => new[] { (byte)i, (byte)(i * 2) }), joined);
        Assert.Equal(Chunking.FetchWindow, most);
        Assert.Equal(Array.Empty<byte>(), await Chunking.FetchAsync(0, Fetch));
    }

    [Fact]
    public async Task FetchAsync_OnePartStale_ReturnsNull()
    {
        Assert.Null(await Chunking.FetchAsync(6, i => Task.FromResult(i == 5 ? null : new byte[] { 1 })));
    }

    [Fact]
    public void Join_MissingChunk_Throws()
    {
        Assert.Throws<InvalidDataException>(() => Chunking.Join(new byte[]?[] { new byte[1], null }));
    }
}
