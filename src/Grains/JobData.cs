// A job's data and settings as the grains see them: the prepared data folder, the trainer options and model config a
// JobSpec stands for, and a worker's shard cursor. The cursor is positioned by step, so a re-activated worker or a
// step redone after a parameter-server restore sees exactly the batches an uninterrupted run would. Not a data loader.
using System.Text.Json;
using System.Text.Json.Nodes;
using Duck.Core.Data;
using Duck.Core.Model;
using Duck.Core.Persona;
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
        var model = Model(spec);
        var start = spec.IsFinetune
            ? TrainingOptions.ForFinetune(TrainingOptions.ForPreset(spec.Preset), model.ContextLength, model.ModelDim)
            : TrainingOptions.ForPreset(spec.Preset);
        var o = start with
        {
            Steps = spec.Steps, BatchSize = spec.BatchSize, SequenceLength = spec.SequenceLength,
            GradAccumulation = spec.Workers * spec.MicroBatchesPerWorker, Seed = spec.Seed, GradClip = spec.GradClip,
            EvalBatches = Math.Max(1, spec.EvalBatches), CheckpointEvery = spec.CheckpointEvery,
        };
        if (spec.LearningRate > 0)
            o = o with { LearningRate = spec.LearningRate, SecondStageLearningRate = Math.Min(o.SecondStageLearningRate, spec.LearningRate) };
        o = spec.WarmupSteps >= 0 ? o with { WarmupSteps = spec.WarmupSteps }
            : o.WarmupSteps >= o.Steps ? o with { WarmupSteps = o.Steps / 10 } : o;
        return o.Validate(model.ContextLength);
    }

    /// <summary>The fine-tuning examples worker <paramref name="worker"/> trains on: every K-th conversation (all of
    /// them with shared data), split to the sequence length as the single-process fine-tune does.</summary>
    public static List<SftSample> ChatSamples(JobSpec spec, int worker)
    {
        var conversations = PersonaDataset.Load(spec.ChatData);
        var mine = spec.SharedData ? conversations : conversations.Where((_, i) => i % spec.Workers == worker % spec.Workers).ToList();
        if (mine.Count == 0) throw new ArgumentException($"{spec.ChatData} has {conversations.Count} conversations, too few for {spec.Workers} workers");
        return SftSamples.Build(mine, spec.SequenceLength + 1);
    }

    /// <summary>What the parameter server validates on: the held-out conversations of a fine-tune, else the validation shard.</summary>
    public static IValidationSource Validation(JobSpec spec) =>
        spec.IsFinetune && spec.ChatValidationData != ""
            ? new SftValidation(SftSamples.Build(PersonaDataset.Load(spec.ChatValidationData), spec.SequenceLength + 1))
            : new ShardValidation(OpenValidationShard(spec.DataFolder));

    /// <summary>A worker's batches: token windows of its shard, or fine-tuning rows of its conversations.</summary>
    public static IStepBatches Batches(JobSpec spec, int worker, TokenShard shard) =>
        spec.IsFinetune ? new ChatWorkerCursor(ChatSamples(spec, worker), shard, spec, worker) : new WorkerCursor(shard, spec, worker);

    /// <summary>What a fine-tune checkpoint records about its start (state.run), as `duck finetune` writes it.</summary>
    public static JsonObject? RunState(JobSpec spec) => !spec.IsFinetune ? null : new JsonObject
    {
        ["kind"] = "finetune", ["base"] = spec.BaseCheckpoint, ["data"] = spec.ChatData,
        ["validation_data"] = spec.ChatValidationData == "" ? null : spec.ChatValidationData,
        ["pretraining_data"] = spec.PretrainMix > 0 ? spec.DataFolder : null, ["mix"] = spec.PretrainMix,
    };
    /// <summary>Global index of micro-batch <paramref name="micro"/> of worker <paramref name="worker"/> at step <paramref name="step"/>
    /// in that worker's sampler sequence.</summary>
    public static long BatchIndex(JobSpec spec, int step, int worker, int micro) =>
        spec.SharedData
            ? ((long)step * spec.Workers + worker) * spec.MicroBatchesPerWorker + micro
            : (long)step * spec.MicroBatchesPerWorker + micro;

    /// <summary>The sampler seed of a worker: the job's seed in shared mode (as the single-process trainer), else one per worker.</summary>
    public static ulong Seed(JobSpec spec, int worker) => spec.SharedData ? (ulong)spec.Seed : (ulong)spec.Seed + (ulong)worker * 7919UL;
}

/// <summary>A worker's batches by step, positioned so a re-activated worker sees what an uninterrupted one would.</summary>
public interface IStepBatches
{
    TokenBatch[] ForStep(int step);
    /// <summary>The data cursor before batch <paramref name="index"/> (what a checkpoint records).</summary>
    JsonNode CursorAt(long index);
}

/// <summary>Fine-tuning rows (SftBatchSource) of one worker's conversations, with pretraining rows of its shard mixed in.</summary>
public sealed class ChatWorkerCursor(List<SftSample> samples, TokenShard shard, JobSpec spec, int worker) : IStepBatches
{
    SftBatchSource source = New(samples, shard, spec, worker);
    long next;

    static SftBatchSource New(List<SftSample> samples, TokenShard shard, JobSpec spec, int worker) =>
        new(samples, spec.BatchSize, spec.SequenceLength, JobData.Seed(spec, worker), spec.PretrainMix > 0 ? shard : null, spec.PretrainMix);

    void MoveTo(long index)
    {
        if (index < next) { source = New(samples, shard, spec, worker); next = 0; }
        var scratchIn = new long[spec.BatchSize * spec.SequenceLength];
        var scratchOut = new long[scratchIn.Length];
        for (; next < index; next++) source.Next(scratchIn, scratchOut);
    }

    public JsonNode CursorAt(long index)
    {
        MoveTo(index);
        return source.SaveState();
    }

    public TokenBatch[] ForStep(int step)
    {
        var batches = new TokenBatch[spec.MicroBatchesPerWorker];
        for (int m = 0; m < batches.Length; m++)
        {
            MoveTo(JobData.BatchIndex(spec, step, worker, m));
            var inputs = new long[spec.BatchSize * spec.SequenceLength];
            var targets = new long[inputs.Length];
            source.Next(inputs, targets);
            next++;
            batches[m] = new TokenBatch(inputs, targets, spec.BatchSize, spec.SequenceLength);
        }
        return batches;
    }
}

/// <summary>A worker's cursor over its shard: draws the batches of any step, replaying from the start only when asked to go back.</summary>
public sealed class WorkerCursor(TokenShard shard, JobSpec spec, int worker) : IStepBatches
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

    JsonNode IStepBatches.CursorAt(long index) => JsonSerializer.SerializeToNode(CursorAt(index))!;

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
