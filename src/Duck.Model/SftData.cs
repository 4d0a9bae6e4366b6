// What supervised fine-tuning reads: chat conversations turned into token windows whose targets are the reply
// tokens only (every other position is IgnoreTarget, which the loss skips), mixed with plain pretraining windows so
// the model keeps its language. Resumable like the pretraining source: the cursor goes into checkpoints.
using System.Text.Json;
using System.Text.Json.Nodes;
using Duck.Core.Data;
using Duck.Core.Persona;

namespace Duck.Model;

/// <summary>Where a fine-tuning source stands: the shuffled epoch, the next example in it, rows served, and the
/// pretraining sampler's own cursor.</summary>
public sealed record SftCursor
{
    public int Epoch { get; init; }
    public int Position { get; init; }
    public long Rows { get; init; }
    public DataCursor? Pretraining { get; init; }
}

/// <summary>Fine-tuning batches. Each row is packed with whole examples in a shuffled order (the last one cut at the
/// row's end); a share <c>mix</c> of the rows, spread evenly, are random windows of pretraining text instead, trained
/// on every token.</summary>
public sealed class SftBatchSource : IBatchSource
{
    const double Golden = 0.6180339887498949;
    readonly IReadOnlyList<SftSample> samples;
    readonly TokenShard? pretraining;
    readonly double mix;
    readonly ulong seed;
    BatchSampler? sampler;
    int[] order = [];
    int epoch = -1, position;
    long rows;
    readonly long[] oneInput, oneTarget;

    public SftBatchSource(IReadOnlyList<SftSample> samples, int batchSize, int sequenceLength, ulong seed,
                          TokenShard? pretraining = null, double mix = 0)
    {
        if (samples.Count == 0) throw new ArgumentException("no fine-tuning examples");
        if (mix is < 0 or >= 1) throw new ArgumentException($"the pretraining mix must be in [0, 1), got {mix}");
        if (mix > 0 && pretraining is null) throw new ArgumentException("a pretraining mix needs pretraining data");
        this.samples = samples;
        this.pretraining = mix > 0 ? pretraining : null;
        this.mix = mix;
        this.seed = seed;
        BatchSize = batchSize;
        SequenceLength = sequenceLength;
        oneInput = new long[sequenceLength];
        oneTarget = new long[sequenceLength];
        if (this.pretraining is not null) sampler = new BatchSampler(this.pretraining, 1, sequenceLength, seed);
        StartEpoch(0, 0);
    }

    public int BatchSize { get; }
    public int SequenceLength { get; }

    /// <summary>Whether row number <paramref name="row"/> (counted from the start of training) is pretraining text.</summary>
    public bool IsPretrainingRow(long row) => mix > 0 && (row + 1) * Golden % 1.0 < mix;

    public void Next(long[] inputs, long[] targets)
    {
        int t = SequenceLength;
        var window = new int[t + 1];
        var trained = new bool[t + 1];
        for (int b = 0; b < BatchSize; b++, rows++)
        {
            var rowInputs = inputs.AsSpan(b * t, t);
            var rowTargets = targets.AsSpan(b * t, t);
            if (IsPretrainingRow(rows))
            {
                sampler!.Next(oneInput, oneTarget);
                oneInput.CopyTo(rowInputs);
                oneTarget.CopyTo(rowTargets);
                continue;
            }
            int filled = 0;
            while (filled < t + 1)
            {
                if (position == order.Length) StartEpoch(epoch + 1, 0);
                var s = samples[order[position++]];
                int n = Math.Min(s.Tokens.Length, t + 1 - filled);
                s.Tokens.AsSpan(0, n).CopyTo(window.AsSpan(filled));
                s.Trained.AsSpan(0, n).CopyTo(trained.AsSpan(filled));
                filled += n;
            }
            SftSamples.WriteRow(window, trained, rowInputs, rowTargets);
        }
    }

    void StartEpoch(int e, int p)
    {
        epoch = e;
        position = p;
        order = Enumerable.Range(0, samples.Count).ToArray();
        new Random(unchecked((int)(seed * 1_000_003UL + (ulong)e))).Shuffle(order);
    }

    public JsonNode SaveState() => JsonSerializer.SerializeToNode(new SftCursor { Epoch = epoch, Position = position, Rows = rows, Pretraining = sampler?.Cursor })!;

    public void RestoreState(JsonNode state)
    {
        var c = state.Deserialize<SftCursor>() ?? throw new InvalidDataException("fine-tuning data cursor is empty");
        if (c.Position < 0 || c.Position > samples.Count)
            throw new InvalidDataException($"fine-tuning cursor position {c.Position} is outside the {samples.Count} examples of this data");
        StartEpoch(c.Epoch, c.Position);
        rows = c.Rows;
        if (pretraining is not null)
            sampler = new BatchSampler(pretraining, 1, SequenceLength, 0, c.Pretraining ?? throw new InvalidDataException("fine-tuning cursor has no pretraining cursor"));
    }
}

/// <summary>Held-out conversations as validation batches: one example per row, padded, in file order.</summary>
public sealed class SftValidation(IReadOnlyList<SftSample> samples) : IValidationSource
{
    public IEnumerable<(long[] Inputs, long[] Targets)> Batches(int batchSize, int sequenceLength, int maxBatches)
    {
        for (int start = 0, batch = 0; start < samples.Count && batch < maxBatches; start += batchSize, batch++)
        {
            int b = Math.Min(batchSize, samples.Count - start);
            var inputs = new long[b * sequenceLength];
            var targets = new long[b * sequenceLength];
            for (int r = 0; r < b; r++)
            {
                var s = samples[start + r];
                int n = Math.Min(s.Tokens.Length, sequenceLength + 1);
                SftSamples.WriteRow(s.Tokens.AsSpan(0, n), s.Trained.AsSpan(0, n), inputs.AsSpan(r * sequenceLength, sequenceLength), targets.AsSpan(r * sequenceLength, sequenceLength));
            }
            yield return (inputs, targets);
        }
    }
}
