// What the trainer draws from a token shard: random (input, target) windows from a seeded SplitMix64 whose state is
// part of a small serializable cursor, so that a resumed run gets exactly the batches an uninterrupted run would;
// and fixed, non-overlapping windows over the validation set. Not a data loader with threads or prefetching.
namespace Duck.Core.Data;

/// <summary>Where a <see cref="BatchSampler"/> stands: batches drawn so far and the generator state. Save it in checkpoints.</summary>
public sealed record DataCursor
{
    /// <summary>Number of batches drawn since the start of the run.</summary>
    public long Position { get; init; }
    /// <summary>The SplitMix64 state that produces the next batch.</summary>
    public ulong RngState { get; init; }
}

/// <summary>
/// One batch, row-major: <see cref="Inputs"/>[b * SequenceLength + t] is token t of row b, and
/// <see cref="Targets"/> holds the token that follows each input (the inputs shifted left by one). Shapes [B, T].
/// </summary>
public sealed record TokenBatch(long[] Inputs, long[] Targets, int BatchSize, int SequenceLength);

/// <summary>Random windows of sequenceLength + 1 tokens, deterministic in (seed, shard) and resumable from a <see cref="DataCursor"/>.</summary>
public sealed class BatchSampler
{
    readonly ReadOnlyMemory<ushort> tokens;
    SplitMix64 rng;
    long position;

    /// <summary>
    /// Samples from <paramref name="shard"/>. A fresh run starts from <paramref name="seed"/>; pass <paramref name="resumeFrom"/>
    /// (a saved <see cref="Cursor"/>) to continue exactly where that run stood — the seed is then ignored.
    /// </summary>
    public BatchSampler(TokenShard shard, int batchSize, int sequenceLength, ulong seed, DataCursor? resumeFrom = null)
    {
        ArgumentNullException.ThrowIfNull(shard);
        if (batchSize < 1) throw new ArgumentOutOfRangeException(nameof(batchSize), batchSize, $"batchSize must be >= 1, got {batchSize}");
        if (sequenceLength < 1) throw new ArgumentOutOfRangeException(nameof(sequenceLength), sequenceLength, $"sequenceLength must be >= 1, got {sequenceLength}");
        if (shard.TokenCount < sequenceLength + 1L)
            throw new ArgumentException($"{shard.Path}: {shard.TokenCount} tokens are too few for windows of sequenceLength {sequenceLength} + 1");
        if (resumeFrom is { Position: < 0 })
            throw new ArgumentOutOfRangeException(nameof(resumeFrom), resumeFrom.Position, $"cursor position must be >= 0, got {resumeFrom.Position}");
        tokens = shard.Memory;
        BatchSize = batchSize;
        SequenceLength = sequenceLength;
        rng = new SplitMix64(resumeFrom?.RngState ?? SplitMix64.Mix(seed));
        position = resumeFrom?.Position ?? 0;
    }

    public int BatchSize { get; }
    public int SequenceLength { get; }

    /// <summary>The state to save; a sampler built from it yields the same batches this one will yield next.</summary>
    public DataCursor Cursor => new() { Position = position, RngState = rng.State };

    /// <summary>The next batch in new arrays.</summary>
    public TokenBatch Next()
    {
        var inputs = new long[BatchSize * SequenceLength];
        var targets = new long[BatchSize * SequenceLength];
        Next(inputs, targets);
        return new TokenBatch(inputs, targets, BatchSize, SequenceLength);
    }

    /// <summary>Fills caller-owned arrays of batchSize * sequenceLength with the next batch.</summary>
    public void Next(long[] inputs, long[] targets)
    {
        int size = BatchSize * SequenceLength;
        if (inputs.Length != size || targets.Length != size)
            throw new ArgumentException($"inputs ({inputs.Length}) and targets ({targets.Length}) must both hold batchSize {BatchSize} x sequenceLength {SequenceLength} = {size} tokens");
        var span = tokens.Span;
        ulong startCount = (ulong)(span.Length - SequenceLength); // windows [s, s + T] with s + T <= N - 1
        for (int b = 0; b < BatchSize; b++)
        {
            int start = (int)rng.NextBelow(startCount);
            CopyWindow(span, start, inputs.AsSpan(b * SequenceLength, SequenceLength), targets.AsSpan(b * SequenceLength, SequenceLength));
        }
        position++;
    }

    internal static void CopyWindow(ReadOnlySpan<ushort> source, int start, Span<long> inputs, Span<long> targets)
    {
        for (int t = 0; t < inputs.Length; t++)
        {
            inputs[t] = source[start + t];
            targets[t] = source[start + t + 1];
        }
    }
}

/// <summary>Fixed evaluation windows: row i starts at token i * sequenceLength; windows never overlap.</summary>
public static class SequentialBatches
{
    /// <summary>Number of whole windows of sequenceLength + 1 tokens the shard holds.</summary>
    public static long WindowCount(TokenShard shard, int sequenceLength) =>
        shard.TokenCount < sequenceLength + 1L ? 0 : (shard.TokenCount - 1) / sequenceLength;

    /// <summary>
    /// The windows in order, batchSize at a time, at most <paramref name="maxBatches"/> batches. The last batch holds the
    /// remaining rows (its BatchSize is smaller) unless <paramref name="includePartial"/> is false.
    /// </summary>
    public static IEnumerable<TokenBatch> Enumerate(TokenShard shard, int batchSize, int sequenceLength,
        int maxBatches = int.MaxValue, bool includePartial = true)
    {
        ArgumentNullException.ThrowIfNull(shard);
        if (batchSize < 1) throw new ArgumentOutOfRangeException(nameof(batchSize), batchSize, $"batchSize must be >= 1, got {batchSize}");
        if (sequenceLength < 1) throw new ArgumentOutOfRangeException(nameof(sequenceLength), sequenceLength, $"sequenceLength must be >= 1, got {sequenceLength}");
        return Iterate(shard, batchSize, sequenceLength, maxBatches, includePartial);
    }

    static IEnumerable<TokenBatch> Iterate(TokenShard shard, int batchSize, int sequenceLength, int maxBatches, bool includePartial)
    {
        long windows = WindowCount(shard, sequenceLength);
        for (long first = 0, batches = 0; first < windows && batches < maxBatches; first += batchSize, batches++)
        {
            int rows = (int)Math.Min(batchSize, windows - first);
            if (rows < batchSize && !includePartial) yield break;
            var inputs = new long[rows * sequenceLength];
            var targets = new long[rows * sequenceLength];
            for (int r = 0; r < rows; r++)
                BatchSampler.CopyWindow(shard.Tokens, (int)((first + r) * sequenceLength),
                    inputs.AsSpan(r * sequenceLength, sequenceLength), targets.AsSpan(r * sequenceLength, sequenceLength));
            yield return new TokenBatch(inputs, targets, rows, sequenceLength);
        }
    }
}
