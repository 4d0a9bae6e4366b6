// What a client submits and reads back about a training job: the job's specification, its state and its metric
// history. Immutable, Orleans-serializable records shared by silos and the `duck` CLI. Not the tensors: those
// travel as packed byte[] chunks (see TrainingGrains.cs).
namespace Duck.Grains;

/// <summary>How worker gradients travel to the parameter server.</summary>
public enum GradientCompression
{
    /// <summary>TernGrad: stochastic ternary (unbiased within the clip) with per-row scales, clipping at ClipSigmas and
    /// error feedback: about 2 bits per value.</summary>
    TernGrad = 0,
    /// <summary>Uncompressed fp32 (the reference for equivalence).</summary>
    None = 1,
    /// <summary>fp16 (half the bytes of fp32, for comparison).</summary>
    Fp16 = 2,
    /// <summary>The default: deterministic ternary (threshold 0.7·mean|v| per row, scale = mean kept magnitude) with error
    /// feedback, about 2 bits per value. The residual carries only the rounding error, not stochastic rounding's
    /// variance: on `mini` it ends 1.1 % above uncompressed where TernGrad ends 2.1-5.6 % above (docs/benchmarks.md).</summary>
    Ternary = 3,
}

/// <summary>Helpers on <see cref="GradientCompression"/>.</summary>
public static class GradientCompressionExtensions
{
    /// <summary>True for the ternary encodings, which keep error-feedback residuals.</summary>
    public static bool IsTernary(this GradientCompression compression) =>
        compression is GradientCompression.Ternary or GradientCompression.TernGrad;

    /// <summary>Parses a `--compress` value: ternary, terngrad, none or fp16.</summary>
    public static GradientCompression Parse(string value) => value switch
    {
        "ternary" => GradientCompression.Ternary,
        "terngrad" => GradientCompression.TernGrad,
        "none" => GradientCompression.None,
        "fp16" => GradientCompression.Fp16,
        _ => throw new ArgumentException($"--compress must be ternary, terngrad, none or fp16, got '{value}'"),
    };
}

/// <summary>Where a job stands.</summary>
public enum JobState
{
    Pending = 0,
    Running = 1,
    Paused = 2,
    Completed = 3,
    Failed = 4,
    Cancelled = 5,
}

/// <summary>A training job as submitted: model, data, workers, batch sizes, schedule and checkpoint policy.</summary>
[GenerateSerializer, Immutable]
public sealed record JobSpec
{
    /// <summary>Model preset name (tiny, mini, small...).</summary>
    [Id(0)] public string Preset { get; init; } = "tiny";
    /// <summary>Prepared data folder (holding data.json and its .tok shards), as seen by every silo.</summary>
    [Id(1)] public string DataFolder { get; init; } = Path.Combine("data", "brown");
    /// <summary>Worker grains taking part in every step.</summary>
    [Id(2)] public int Workers { get; init; } = 2;
    /// <summary>Optimizer steps in all.</summary>
    [Id(3)] public int Steps { get; init; } = 200;
    /// <summary>Sequences per micro-batch.</summary>
    [Id(4)] public int BatchSize { get; init; } = 8;
    /// <summary>Tokens per sequence.</summary>
    [Id(5)] public int SequenceLength { get; init; } = 64;
    /// <summary>Micro-batches each worker runs per step; the global batch is Workers x this x BatchSize sequences.</summary>
    [Id(6)] public int MicroBatchesPerWorker { get; init; } = 1;
    /// <summary>Peak learning rate (0: the preset's default).</summary>
    [Id(7)] public double LearningRate { get; init; }
    /// <summary>Warm-up steps (-1: the preset's default, shortened for short runs as `duck train` does).</summary>
    [Id(8)] public int WarmupSteps { get; init; } = -1;
    /// <summary>Seed for initialization and data order.</summary>
    [Id(9)] public long Seed { get; init; } = 1337;
    /// <summary>Gradient encoding on the way up.</summary>
    [Id(10)] public GradientCompression Compression { get; init; } = GradientCompression.Ternary;
    /// <summary>Checkpoint location: a folder path, or "azure:container[/prefix]".</summary>
    [Id(11)] public string CheckpointStore { get; init; } = "";
    /// <summary>Checkpoint every N steps (0: only at the end).</summary>
    [Id(12)] public int CheckpointEvery { get; init; } = 50;
    /// <summary>True: every worker reads training shard 0 and worker k takes micro-batches k*M..k*M+M-1 of each step's
    /// shared sequence, which is exactly the single-process trainer's data at GradAccumulation = Workers x M.
    /// False: worker k reads its own shard (k modulo the shard count).</summary>
    [Id(13)] public bool SharedData { get; init; }
    /// <summary>Longest wait for the gradients of one step before committing with those that arrived, in seconds (a
    /// low-communication round of SyncEvery local steps waits SyncEvery times as long).</summary>
    [Id(14)] public double StepTimeoutSeconds { get; init; } = 20;
    /// <summary>Validation batches at the end of the job (0: no validation).</summary>
    [Id(15)] public int EvalBatches { get; init; } = 4;
    /// <summary>Vocabulary override (0: the preset's); tests use small vocabularies for speed.</summary>
    [Id(16)] public int VocabSize { get; init; }
    /// <summary>Local steps between synchronizations: 1 is synchronous data parallelism; H > 1 is DiLoCo (workers take
    /// H local AdamW steps and the parameter server applies an outer Nesterov step to the averaged weight deltas).</summary>
    [Id(17)] public int SyncEvery { get; init; } = 1;
    /// <summary>Global gradient-norm clip applied by the parameter server (0: off).</summary>
    [Id(18)] public double GradClip { get; init; } = 1.0;
    /// <summary>Outer (parameter-server) learning rate of the low-communication mode (DiLoCo: 0.7).</summary>
    [Id(19)] public double OuterLearningRate { get; init; } = 0.7;
    /// <summary>Outer Nesterov momentum of the low-communication mode (DiLoCo: 0.9).</summary>
    [Id(20)] public double OuterMomentum { get; init; } = 0.9;
    /// <summary>Fine-tuning: the checkpoint whose weights the job starts from (folder or azure:); empty for pretraining.</summary>
    [Id(21)] public string BaseCheckpoint { get; init; } = "";
    /// <summary>Fine-tuning: chat conversations (persona JSONL, visible to every silo); the loss is on the replies only.</summary>
    [Id(22)] public string ChatData { get; init; } = "";
    /// <summary>Fine-tuning: share of rows that are pretraining text from DataFolder (0: none).</summary>
    [Id(23)] public double PretrainMix { get; init; }
    /// <summary>Fine-tuning: held-out conversations for the validation loss (empty: DataFolder's validation shard).</summary>
    [Id(24)] public string ChatValidationData { get; init; } = "";
    /// <summary>Low-communication mode: send the whole embedding delta every round, both ways, instead of the rows of the
    /// tokens a worker looks up in its round (the reference the row-sparse default is tested against; with a large
    /// vocabulary it costs about as many bytes as the rest of the model).</summary>
    [Id(25)] public bool DenseEmbeddingDelta { get; init; }
    /// <summary>TernGrad gradients: clip each row at this many standard deviations before ternarizing
    /// (TernGrad's 2.5; 0: no clipping). What clipping cuts off stays in the error-feedback residual.</summary>
    [Id(26)] public double ClipSigmas { get; init; } = 2.5;

    /// <summary>A supervised fine-tune on chat conversations rather than pretraining.</summary>
    public bool IsFinetune => ChatData != "";

    /// <summary>Throws <see cref="ArgumentException"/> with the offending values when the spec cannot work.</summary>
    public JobSpec Validate()
    {
        void Require(bool ok, string message) { if (!ok) throw new ArgumentException(message); }
        Require(!string.IsNullOrWhiteSpace(Preset), "preset is empty");
        Require(Workers is >= 1 and <= 256, $"workers must be in 1..256, got {Workers}");
        Require(Steps > 0, $"steps must be positive, got {Steps}");
        Require(BatchSize > 0 && MicroBatchesPerWorker > 0, $"batch size ({BatchSize}) and micro-batches per worker ({MicroBatchesPerWorker}) must be positive");
        Require(StepTimeoutSeconds is > 0 and <= 3600, $"step timeout must be in (0, 3600] s, got {StepTimeoutSeconds}");
        Require(CheckpointEvery >= 0, $"checkpoint every must not be negative, got {CheckpointEvery}");
        Require(SyncEvery is >= 1 and <= 256, $"sync every must be in 1..256 local steps, got {SyncEvery}");
        Require(OuterLearningRate > 0 && OuterMomentum is >= 0 and < 1, $"outer learning rate ({OuterLearningRate}) must be positive and outer momentum ({OuterMomentum}) in [0, 1)");
        Require(!string.IsNullOrWhiteSpace(CheckpointStore), "checkpoint store is empty");
        Require(ClipSigmas is >= 0 and <= 100, $"clip sigmas must be in [0, 100], got {ClipSigmas}");
        if (IsFinetune)
        {
            Require(BaseCheckpoint != "", "a fine-tuning job needs the base checkpoint to start from");
            Require(SyncEvery == 1, $"fine-tuning runs synchronously; sync every must be 1, got {SyncEvery}");
            Require(PretrainMix is >= 0 and < 1, $"pretraining mix must be in [0, 1), got {PretrainMix}");
        }
        return this;
    }
}

/// <summary>The figures of one committed step.</summary>
[GenerateSerializer, Immutable]
public sealed record StepMetric(
    [property: Id(0)] int Step,
    [property: Id(1)] double Loss,
    [property: Id(2)] double TokensPerSecond,
    [property: Id(3)] long BytesUpPerWorker,
    [property: Id(4)] long BytesDownPerWorker,
    [property: Id(5)] int LiveWorkers,
    [property: Id(6)] double StepTimeMs,
    [property: Id(7)] double LearningRate);

/// <summary>A job as a client sees it.</summary>
[GenerateSerializer, Immutable]
public sealed record JobStatus
{
    [Id(0)] public string JobId { get; init; } = "";
    [Id(1)] public JobState State { get; init; }
    /// <summary>Steps committed by the parameter server.</summary>
    [Id(2)] public int Step { get; init; }
    [Id(3)] public int Steps { get; init; }
    /// <summary>Why the job failed, or the last recovery it went through.</summary>
    [Id(4)] public string? Reason { get; init; }
    [Id(5)] public StepMetric? Last { get; init; }
    /// <summary>Validation loss at the end of the job.</summary>
    [Id(6)] public double? ValLoss { get; init; }
    /// <summary>fp32 bytes of the model, both ways, divided by the bytes actually sent per worker per step (mean).</summary>
    [Id(7)] public double CompressionRatio { get; init; }
    [Id(8)] public JobSpec? Spec { get; init; }
    /// <summary>Newest committed checkpoint's step (-1: none).</summary>
    [Id(9)] public int CheckpointStep { get; init; } = -1;
    /// <summary>Times the parameter server came back from a checkpoint after losing its activation.</summary>
    [Id(10)] public int Recoveries { get; init; }
    /// <summary>The silo of the job's grain.</summary>
    [Id(11)] public string? Silo { get; init; }

    public bool IsFinished => State is JobState.Completed or JobState.Failed or JobState.Cancelled;
}
