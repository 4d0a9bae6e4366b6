// The three grains of a training job and the messages between them. Every call is short and bounded: long work
// (a worker's forward/backward, the server's optimizer step) is started by a call and reported by a later one, so
// no call comes near Orleans' 30 s default timeout. Tensors travel as packed byte[] chunks of at most 4 MiB.
using Orleans.Concurrency;

namespace Duck.Grains;

/// <summary>The job (keyed by job id): accepts it, drives its steps from a timer, keeps state and metric history.</summary>
public interface ITrainingJobGrain : IGrainWithStringKey
{
    /// <summary>Accepts and starts the job. A spec that cannot run (missing data, unknown preset, a checkpoint of another
    /// model, failing storage) leaves the job Failed with the reason, which the returned status carries.</summary>
    [ResponseTimeout("00:00:25")]
    Task<JobStatus> SubmitAsync(JobSpec spec);

    /// <summary>State, progress and the newest metrics. Also re-arms the job's driver after a re-activation.</summary>
    [ResponseTimeout("00:00:10")]
    Task<JobStatus> GetStatusAsync();

    /// <summary>The committed steps' metrics after <paramref name="afterStep"/>, at most <paramref name="max"/> of them.</summary>
    [ResponseTimeout("00:00:10")]
    Task<IReadOnlyList<StepMetric>> GetHistoryAsync(int afterStep, int max);

    /// <summary>Stops the job after checkpointing the committed step; <see cref="ResumeAsync"/> continues it.</summary>
    [ResponseTimeout("00:00:25")]
    Task<JobStatus> CancelAsync();

    /// <summary>The parameter server's word that it committed <paramref name="version"/>: the job orders the next step now
    /// instead of at its next timer tick (which stays, for a server that cannot tell it).</summary>
    [OneWay]
    Task CommittedAsync(int version);

    /// <summary>Stops ordering steps; the step in flight still commits. <see cref="ResumeAsync"/> continues from there
    /// without reloading (from the newest checkpoint when the parameter server was collected or lost meanwhile).</summary>
    [ResponseTimeout("00:00:10")]
    Task<JobStatus> PauseAsync();

    /// <summary>Continues a paused job where it stopped, or a cancelled or failed one from its newest checkpoint.</summary>
    [ResponseTimeout("00:00:25")]
    Task<JobStatus> ResumeAsync();
}

/// <summary>The cluster's running jobs (one grain, key <c>RunningJobs.Key</c>). Every silo pokes it periodically and it
/// asks each job for its status, which re-activates a job whose silo died: a job drives its own steps from a timer, and
/// without a caller nothing would bring it back while no client follows it.</summary>
public interface IRunningJobsGrain : IGrainWithStringKey
{
    /// <summary>Remembers a job that runs (a job calls it when its driver starts).</summary>
    [OneWay]
    Task AddAsync(string jobId);

    /// <summary>Asks every remembered job for its status and forgets those that no longer run; returns how many run.</summary>
    [ResponseTimeout("00:00:25")]
    Task<int> PokeAsync();
}

/// <summary>The key of the one <see cref="IRunningJobsGrain"/>.</summary>
public static class RunningJobs
{
    public const string Key = "running";
}

/// <summary>The parameter server of one job (keyed by job id): latent fp32 weights and AdamW state, one gradient
/// contribution per worker per step, averaging, the optimizer step, publication of the next weight version and
/// checkpoints. Tensors are addressed by name, so the model can be split by parameter range over several servers.</summary>
public interface IParameterServerGrain : IGrainWithStringKey
{
    /// <summary>Loads the newest checkpoint of the spec's store (or initializes from the seed) unless already serving
    /// this spec; throws with the reason when the data, the preset or the checkpoint do not fit.</summary>
    [ResponseTimeout("00:00:25")]
    Task<ParameterServerStatus> StartAsync(JobSpec spec, bool reloadCheckpoint);

    /// <summary>Version, gradients received for it, and the metrics of recent commits.</summary>
    [ResponseTimeout("00:00:10")]
    Task<ParameterServerStatus> GetStatusAsync();

    /// <summary>How the packed weights of <paramref name="version"/> are chunked; null when that version is not the current one.
    /// In low-communication mode (SyncEvery > 1) the packet is the delta from the previous version unless
    /// <paramref name="full"/> asks for the whole fp32 weights (a worker that missed a round); null while committing.</summary>
    [ResponseTimeout("00:00:10")]
    Task<WeightsManifest?> GetWeightsManifestAsync(int version, bool full);

    /// <summary>One chunk (at most 4 MiB) of the packet the manifest describes; null when stale.</summary>
    [ResponseTimeout("00:00:10")]
    Task<PacketPart?> GetWeightsChunkAsync(int version, int index, bool full);

    /// <summary>fp32 rows of the token embedding (row-major, ModelDim floats each) for the given ids; null when stale.
    /// Ask for at most <see cref="Payloads.MaxRowsPerCall"/> rows per call.</summary>
    [ResponseTimeout("00:00:10")]
    Task<byte[]?> GetEmbeddingRowsAsync(int version, int[] rows);

    /// <summary>One chunk of a worker's encoded gradient for step <paramref name="chunk"/>.Step; false when that step is no
    /// longer open (the worker then drops its work).</summary>
    [ResponseTimeout("00:00:10")]
    Task<bool> PushGradientAsync(GradientChunk chunk);

    /// <summary>Commits step <paramref name="step"/> with the contributions that arrived (the job calls it after its bounded
    /// wait); false when nothing arrived or the step is not open.</summary>
    [ResponseTimeout("00:00:10")]
    Task<bool> CommitPartialAsync(int step);

    /// <summary>Writes a checkpoint of the current version now (cancel) and returns its step. The server then
    /// takes no step until the next <c>StartAsync</c>.</summary>
    [ResponseTimeout("00:00:25")]
    Task<int> CheckpointNowAsync();
}

/// <summary>A worker (keyed "jobId/index"): its shard cursor and a model replica; computes one step when told.</summary>
public interface IWorkerGrain : IGrainWithStringKey
{
    /// <summary>Starts computing <paramref name="order"/>.Step in the background and returns at once; the gradient goes to
    /// the parameter server. Repeating an order the worker is already computing is harmless.</summary>
    [OneWay]
    Task ComputeAsync(StepOrder order);

    /// <summary>What the worker is doing, for status and tests.</summary>
    [ResponseTimeout("00:00:10")]
    Task<WorkerStatus> GetStatusAsync();

    /// <summary>Migrates this worker to <paramref name="silo"/> once idle, carrying its residuals (the job calls it between
    /// steps); false when the worker is busy or already there. Orders arriving before it has moved are dropped.</summary>
    [ResponseTimeout("00:00:10")]
    Task<bool> MoveToAsync(SiloAddress silo);
}

/// <summary>"Compute step <see cref="Step"/> on weight version <see cref="Step"/> as worker <see cref="WorkerIndex"/>."</summary>
[GenerateSerializer, Immutable]
public sealed record StepOrder(
    [property: Id(0)] string JobId,
    [property: Id(1)] int Step,
    [property: Id(2)] int WorkerIndex,
    [property: Id(3)] JobSpec Spec);

/// <summary>How one weight version is packed: total bytes and chunk count; in low-communication mode also which
/// version the delta applies to within which lineage of the server's replica view.</summary>
[GenerateSerializer, Immutable]
public sealed record WeightsManifest(
    [property: Id(0)] int Version,
    [property: Id(1)] long TotalBytes,
    [property: Id(2)] int Chunks,
    [property: Id(3)] string Lineage = "",
    [property: Id(4)] int DeltaFrom = -1,
    [property: Id(5)] bool SeedInitialized = false);

/// <summary>A piece of a packet. Immutable: a grain of the same silo gets the very array, not a copy (every fetch of a
/// weight version shares the chunks the server cut once).</summary>
[GenerateSerializer, Immutable]
public sealed record PacketPart([property: Id(0)] byte[] Bytes);

/// <summary>A piece of one worker's encoded gradient (see Payloads), with the worker's figures for the step; in
/// low-communication mode the encoded weight delta of a round, with the loss of each local step.</summary>
[GenerateSerializer, Immutable]
public sealed record GradientChunk(
    [property: Id(0)] int Step,
    [property: Id(1)] int WorkerIndex,
    [property: Id(2)] int Index,
    [property: Id(3)] int Count,
    [property: Id(4)] byte[] Bytes,
    [property: Id(5)] double Loss,
    [property: Id(6)] long BytesDown,
    [property: Id(7)] long BytesUp,
    [property: Id(8)] double[]? StepLosses = null);

/// <summary>The parameter server's view.</summary>
[GenerateSerializer, Immutable]
public sealed record ParameterServerStatus
{
    /// <summary>Current weight version = optimizer steps taken.</summary>
    [Id(0)] public int Version { get; init; }
    [Id(1)] public int Contributions { get; init; }
    [Id(2)] public bool Committing { get; init; }
    /// <summary>Metrics of the latest commits (newest last).</summary>
    [Id(3)] public IReadOnlyList<StepMetric> Recent { get; init; } = [];
    [Id(4)] public int CheckpointStep { get; init; } = -1;
    /// <summary>Set when the server cannot go on (non-finite loss, storage failure).</summary>
    [Id(5)] public string? Error { get; init; }
    [Id(6)] public double? ValLoss { get; init; }
    /// <summary>Identifies this activation; it changes when the server re-activates (e.g. after its silo died).</summary>
    [Id(7)] public string ActivationId { get; init; } = "";
    /// <summary>fp32 bytes of all parameters (one direction).</summary>
    [Id(8)] public long Fp32ModelBytes { get; init; }
    /// <summary>The silo hosting this activation.</summary>
    [Id(9)] public string Silo { get; init; } = "";
}

/// <summary>A worker's view; <c>TokensPerSecond</c> is its forward/backward throughput in its newest step.</summary>
[GenerateSerializer, Immutable]
public sealed record WorkerStatus(
    [property: Id(0)] int LastStep,
    [property: Id(1)] bool Busy,
    [property: Id(2)] string Silo,
    [property: Id(3)] string? LastError,
    [property: Id(4)] double TokensPerSecond = 0);

/// <summary>Limits of what one message carries.</summary>
public static class Payloads
{
    /// <summary>Largest byte[] in one message; far below the 100 MiB that tears a silo connection down.</summary>
    public const int MaxChunkBytes = 4 << 20;
    /// <summary>Embedding rows per call (keeps a row fetch within one chunk for model widths up to 1024 fp32).</summary>
    public const int MaxRowsPerCall = 1024;
    /// <summary>Largest state a moving worker carries (it travels in one migration message); beyond it the worker
    /// restarts its residuals, as after its silo's death.</summary>
    public const int MaxMigrationBytes = 64 << 20;
}
