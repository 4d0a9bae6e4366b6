// The trainer's view of the data: seeded random windows that resume exactly from a saved cursor, and fixed
// non-overlapping validation windows.
using System.Text.Json;
using Duck.Core.Data;

namespace Duck.Core.Tests.Data;

public sealed class BatchSamplerTests
{
    // Token i is i % 50000, so a window's content reveals where it started.
    static readonly TokenShard Shard = TokenShard.FromTokens(Enumerable.Range(0, 20_000).Select(i => (ushort)(i % 50000)).ToArray());

    [Fact]
    public void NextUInt64_SeedZero_MatchesSplitMix64Reference()
    {
        var rng = new SplitMix64(0);

        ulong first = rng.NextUInt64(), second = rng.NextUInt64();

        Assert.Equal(0xE220A8397B1DCDAFUL, first);
        Assert.Equal(0x6E789E6AA1B965F4UL, second);
    }

    [Fact]
    public void Next_SameSeed_YieldsSameBatches()
    {
        var a = new BatchSampler(Shard, batchSize: 4, sequenceLength: 16, seed: 7);
        var b = new BatchSampler(Shard, batchSize: 4, sequenceLength: 16, seed: 7);
        var c = new BatchSampler(Shard, batchSize: 4, sequenceLength: 16, seed: 8);

        var fromA = Enumerable.Range(0, 5).Select(_ => a.Next().Inputs).ToList();
        var fromB = Enumerable.Range(0, 5).Select(_ => b.Next().Inputs).ToList();
        var fromC = Enumerable.Range(0, 5).Select(_ => c.Next().Inputs).ToList();

        Assert.Equal(fromA, fromB);
        Assert.NotEqual(fromA, fromC);
    }

    [Fact]
    public void Next_AnyBatch_TargetsAreInputsShiftedByOneWithinShard()
    {
        var sampler = new BatchSampler(Shard, batchSize: 8, sequenceLength: 32, seed: 1);

        var batch = sampler.Next();

        Assert.Equal(8 * 32, batch.Inputs.Length);
        for (int b = 0; b < 8; b++)
        {
            long start = batch.Inputs[b * 32];
            Assert.InRange(start, 0, 20_000 - 33);
            for (int t = 0; t < 32; t++)
            {
                Assert.Equal(start + t, batch.Inputs[b * 32 + t]);
                Assert.Equal(start + t + 1, batch.Targets[b * 32 + t]);
            }
        }
    }

    [Fact]
    public void Next_ResumedFromSerializedCursor_YieldsExactlyTheSameFollowingBatches()
    {
        var uninterrupted = new BatchSampler(Shard, batchSize: 2, sequenceLength: 8, seed: 42);
        for (int i = 0; i < 10; i++) uninterrupted.Next();
        string saved = JsonSerializer.Serialize(uninterrupted.Cursor);
        var expected = Enumerable.Range(0, 10).Select(_ => uninterrupted.Next()).ToList();

        var cursor = JsonSerializer.Deserialize<DataCursor>(saved)!;
        var resumed = new BatchSampler(Shard, batchSize: 2, sequenceLength: 8, seed: 999, resumeFrom: cursor);
        var actual = Enumerable.Range(0, 10).Select(_ => resumed.Next()).ToList();

        Assert.Equal(10, cursor.Position);
        Assert.Equal(expected.Select(b => b.Inputs), actual.Select(b => b.Inputs));
        Assert.Equal(expected.Select(b => b.Targets), actual.Select(b => b.Targets));
        Assert.Equal(uninterrupted.Cursor, resumed.Cursor);
    }

    [Fact]
    public void Constructor_ShardShorterThanWindow_ThrowsNamingSizes()
    {
        var tiny = TokenShard.FromTokens([1, 2, 3, 4]);

        var e = Assert.Throws<ArgumentException>(() => new BatchSampler(tiny, batchSize: 1, sequenceLength: 4, seed: 0));

        Assert.Contains("4 tokens", e.Message);
        Assert.Contains("sequenceLength 4", e.Message);
    }

    [Fact]
    public void Enumerate_ValidationShard_YieldsNonOverlappingWindowsInOrderWithPartialLastBatch()
    {
        var shard = TokenShard.FromTokens(Enumerable.Range(0, 101).Select(i => (ushort)i).ToArray());

        var batches = SequentialBatches.Enumerate(shard, batchSize: 3, sequenceLength: 10).ToList();

        Assert.Equal(10, SequentialBatches.WindowCount(shard, 10));
        Assert.Equal([3, 3, 3, 1], batches.Select(b => b.BatchSize));
        var starts = batches.SelectMany(b => Enumerable.Range(0, b.BatchSize).Select(r => b.Inputs[r * 10])).ToList();
        Assert.Equal(Enumerable.Range(0, 10).Select(i => (long)i * 10), starts);
        Assert.Equal(100, batches[^1].Targets[^1]);
    }

    [Fact]
    public void Enumerate_WithoutPartialAndMaxBatches_StopsEarly()
    {
        var shard = TokenShard.FromTokens(Enumerable.Range(0, 101).Select(i => (ushort)i).ToArray());

        int full = SequentialBatches.Enumerate(shard, 3, 10, includePartial: false).Count();
        int capped = SequentialBatches.Enumerate(shard, 3, 10, maxBatches: 2).Count();

        Assert.Equal(3, full);
        Assert.Equal(2, capped);
    }
}
