// What the trainer reads: fixed-size batches of (input, target) token windows, with a cursor that a checkpoint
// saves so that a resumed run sees exactly the batches an uninterrupted run would have seen.
using System.Text.Json.Nodes;

namespace Duck.Model;

/// <summary>An endless, resumable stream of training batches of [batchSize, sequenceLength] token ids.</summary>
public interface IBatchSource
{
    int BatchSize { get; }
    int SequenceLength { get; }
    /// <summary>Fills inputs and targets (targets are inputs shifted by one token), each batchSize * sequenceLength long.</summary>
    void Next(long[] inputs, long[] targets);
    JsonNode SaveState();
    void RestoreState(JsonNode state);
}

/// <summary>A finite, deterministic set of validation batches.</summary>
public interface IValidationSource
{
    IEnumerable<(long[] Inputs, long[] Targets)> Batches(int batchSize, int sequenceLength, int maxBatches);
}
