// A job's data and settings as the grains see them: the prepared data folder, the trainer options and model config a
// JobSpec stands for, and a worker's shard cursor. The cursor is positioned by step, so a re-activated worker or a
// step redone after a parameter-server restore sees exactly the batches an uninterrupted run would. Not a data loader.
using Duck.Core.Data;
using Duck.Core.Model;
using Duck.Model;

namespace Duck.Grains;

/// <summary>Maps a JobSpec onto the single-process trainer's types.</summary>
public static class JobData
{
    /// <summary>The data manifest of <paramref name="folder"/>; <see cref="ArgumentException"/> saying how to make it when absent.</summary>
    public static DataManifest OpenManifest(string folder)
    {
        if (!File.Exists(Path.Combine(folder, DataManifest.FileName)))
            throw new ArgumentException($"no prepared data in '{Path.GetFullPath(folder)}' ({DataManifest.FileName} missing); run `duck data prepare --out {folder}` first");
        return DataManifest.Read(folder);
    }

    public static TokenShard OpenTrainShard(string folder, int index)
    {
        var manifest = OpenManifest(folder);
        if (manifest.Shards.Count == 0) throw new ArgumentException($"data in '{folder}' has no training shard");
        return TokenShard.Open(Path.Combine(folder, manifest.Shards[index % manifest.Shards.Count].File));
    }

    public static TokenShard OpenValidationShard(string folder) =>
        TokenShard.Open(Path.Combine(folder, OpenManifest(folder).Validation.File));

    public static ModelConfig Model(JobSpec spec)
    {
        var config = ModelPresets.Get(spec.Preset);
        return spec.VocabSize > 0 ? config with { VocabSize = spec.VocabSize } : config;
    }

    /// <summary>The single-process trainer's options for the same global batch (GradAccumulation = Workers x micro-batches).</summary>
    public static TrainingOptions Options(JobSpec spec)
    {
        var o = TrainingOptions.ForPreset(spec.Preset) with
        {
            Steps = spec.Steps, BatchSize = spec.BatchSize, SequenceLength = spec.SequenceLength,
            GradAccumulation = spec.Workers * spec.MicroBatchesPerWorker, Seed = spec.Seed, GradClip = spec.GradClip,
            EvalBatches = Math.Max(1, spec.EvalBatches), CheckpointEvery = spec.CheckpointEvery,
        };
        if (spec.LearningRate > 0)
            o = o with { LearningRate = spec.LearningRate, SecondStageLearningRate = Math.Min(o.SecondStageLearningRate, spec.LearningRate) };
        o = spec.WarmupSteps >= 0 ? o with { WarmupSteps = spec.WarmupSteps }
            : o.WarmupSteps >= o.Steps ? o with { WarmupSteps = o.Steps / 10 } : o;
        return o.Validate(Model(spec).ContextLength);
    }

    /// <summary>Global index of micro-batch <paramref name="micro"/> of worker <paramref name="worker"/> at step <paramref name="step"/>
    /// in that worker's sampler sequence.</summary>
    public static long BatchIndex(JobSpec spec, int step, int worker, int micro) =>
        spec.SharedData
            ? ((long)step * spec.Workers + worker) * spec.MicroBatchesPerWorker + micro
            : (long)step * spec.MicroBatchesPerWorker + micro;

    /// <summary>The sampler seed of a worker: the job's seed in shared mode (as the single-process trainer), else one per worker.</summary>
    public static ulong Seed(JobSpec spec, int worker) => spec.SharedData ? (ulong)spec.Seed : (ulong)spec.Seed + (ulong)worker * 7919UL;
}

/// <summary>A worker's cursor over its shard: draws the batches of any step, replaying from the start only when asked to go back.</summary>
public sealed class WorkerCursor(TokenShard shard, JobSpec spec, int worker)
{
    BatchSampler sampler = new(shard, spec.BatchSize, spec.SequenceLength, JobData.Seed(spec, worker));
    long next;

    /// <summary>The cursor (position and generator state) the worker stands at.</summary>
    public DataCursor Cursor => sampler.Cursor;

    /// <summary>The cursor standing before batch <paramref name="index"/> of this worker's sequence.</summary>
    public DataCursor CursorAt(long index)
    {
        MoveTo(index);
        return sampler.Cursor;
    }

    void MoveTo(long index)
    {
        if (index < next)
        {
            sampler = new BatchSampler(shard, spec.BatchSize, spec.SequenceLength, JobData.Seed(spec, worker));
            next = 0;
        }
        var scratchIn = new long[spec.BatchSize * spec.SequenceLength];
        var scratchOut = new long[scratchIn.Length];
        for (; next < index; next++) sampler.Next(scratchIn, scratchOut);
    }

    /// <summary>The micro-batches of <paramref name="step"/> for this worker.</summary>
    public TokenBatch[] ForStep(int step)
    {
        var batches = new TokenBatch[spec.MicroBatchesPerWorker];
        for (int m = 0; m < batches.Length; m++)
        {
            MoveTo(JobData.BatchIndex(spec, step, worker, m));
            batches[m] = sampler.Next();
            next++;
        }
        return batches;
    }
}
