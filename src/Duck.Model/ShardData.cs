// Adapts Duck.Core's token shards to what the trainer reads: a resumable random-window batch source and a fixed
// validation set. The sampling itself lives in Duck.Core.Data.BatchSampler.
using System.Text.Json;
using System.Text.Json.Nodes;
using Duck.Core.Data;

namespace Duck.Model;

/// <summary>Random training windows from one shard; its cursor goes into checkpoints.</summary>
public sealed class ShardBatchSource : IBatchSource
{
    readonly TokenShard shard;
    BatchSampler sampler;

    public ShardBatchSource(TokenShard shard, int batchSize, int sequenceLength, ulong seed)
    {
        this.shard = shard;
        sampler = new BatchSampler(shard, batchSize, sequenceLength, seed);
    }

    public int BatchSize => sampler.BatchSize;
    public int SequenceLength => sampler.SequenceLength;
    public void Next(long[] inputs, long[] targets) => sampler.Next(inputs, targets);
    public JsonNode SaveState() => JsonSerializer.SerializeToNode(sampler.Cursor)!;

    public void RestoreState(JsonNode state) =>
        sampler = new BatchSampler(shard, BatchSize, SequenceLength, 0,
            state.Deserialize<DataCursor>() ?? throw new InvalidDataException("data cursor is empty"));
}

/// <summary>The validation shard's non-overlapping windows, in order.</summary>
public sealed class ShardValidation(TokenShard shard) : IValidationSource
{
    public IEnumerable<(long[] Inputs, long[] Targets)> Batches(int batchSize, int sequenceLength, int maxBatches) =>
        SequentialBatches.Enumerate(shard, batchSize, sequenceLength, maxBatches).Select(b => (b.Inputs, b.Targets));
}
