// The job grain: accepts a job, drives its steps from a grain timer with short calls only (order the workers, poll
// the parameter server, commit with the gradients that arrived after a bounded wait, re-order lost workers, move a
// worker to a silo that joined between steps), keeps state and metric history in grain storage, and notices a
// parameter server that came back from a checkpoint.
using Microsoft.Extensions.Logging;

namespace Duck.Grains;

/// <summary>The job's persisted state.</summary>
[GenerateSerializer]
public sealed record TrainingJobState
{
    [Id(0)] public JobSpec? Spec { get; init; }
    [Id(1)] public JobState State { get; init; }
    [Id(2)] public int Step { get; init; }
    [Id(3)] public string? Reason { get; init; }
    [Id(4)] public List<StepMetric> History { get; init; } = [];
    [Id(5)] public double? ValLoss { get; init; }
    [Id(6)] public int CheckpointStep { get; init; } = -1;
    [Id(7)] public int Recoveries { get; init; }
    [Id(8)] public long Fp32ModelBytes { get; init; }
    /// <summary>The parameter server activation the job last saw; a different one means it came back from a
    /// checkpoint. Persisted, so a job whose own silo died with the server's still counts the recovery.</summary>
    [Id(9)] public string? ServerActivation { get; init; }
}

public sealed class TrainingJobGrain(
    [PersistentState("job", DuckStorage.Name)] IPersistentState<TrainingJobState> saved,
    IClusterMembershipService membership, IClusterManifestProvider manifest,
    ILogger<TrainingJobGrain> logger) : Grain, ITrainingJobGrain
{
    static readonly TimeSpan TickPeriod = TimeSpan.FromMilliseconds(100);
    /// <summary>How long the parameter server may stay unreachable before the job fails.</summary>
    static readonly TimeSpan ServerLossLimit = TimeSpan.FromMinutes(3);

    IGrainTimer? timer;
    int dispatchedStep = -1;
    bool reordered;
    DateTime dispatchedAt, serverReachableAt = DateTime.UtcNow;
    WorkerSpreader? spreader;

    string JobId => this.GetPrimaryKeyString();
    TrainingJobState S => saved.State;
    IParameterServerGrain Server => GrainFactory.GetGrain<IParameterServerGrain>(JobId);

    public override Task OnActivateAsync(CancellationToken ct)
    {
        if (S.State == JobState.Running) StartDriver();
        return Task.CompletedTask;
    }

    public async Task<JobStatus> SubmitAsync(JobSpec spec)
    {
        if (S.Spec is not null)
        {
            if (S.Spec == spec) return Status();
            throw new ArgumentException($"job '{JobId}' already exists with another spec ({S.State}); pick another job id");
        }
        saved.State = new TrainingJobState { Spec = spec, State = JobState.Pending };
        try
        {
            spec.Validate();
            JobData.Options(spec);
            var manifest = JobData.OpenManifest(spec.DataFolder);
            if (!spec.SharedData && manifest.Shards.Count < spec.Workers)
                Log.FewerShards(logger, JobId, manifest.Shards.Count, spec.Workers);
            var ps = await Server.StartAsync(spec, reloadCheckpoint: false);
            saved.State = S with
            {
                State = JobState.Running, Step = Math.Max(0, ps.Version), CheckpointStep = ps.CheckpointStep, Fp32ModelBytes = ps.Fp32ModelBytes,
                ServerActivation = ps.ActivationId,
            };
        }
        catch (Exception e)
        {
            saved.State = S with { State = JobState.Failed, Reason = Message(e) };
        }
        await SaveAsync();
        if (S.State == JobState.Running) StartDriver();
        return Status();
    }

    public Task<JobStatus> GetStatusAsync()
    {
        if (S.Spec is null) throw new KeyNotFoundException($"unknown job '{JobId}'");
        return Task.FromResult(Status());
    }

    public Task<IReadOnlyList<StepMetric>> GetHistoryAsync(int afterStep, int max) =>
        Task.FromResult<IReadOnlyList<StepMetric>>(S.History.Where(m => m.Step > afterStep).Take(Math.Clamp(max, 1, 10_000)).ToArray());

    public async Task<JobStatus> CancelAsync()
    {
        if (S.Spec is null) throw new KeyNotFoundException($"unknown job '{JobId}'");
        if (S.State != JobState.Running) return Status();
        StopDriver();
        int checkpoint = S.CheckpointStep;
        try
        {
            checkpoint = await Server.CheckpointNowAsync();
            // A commit in flight when the cancel arrived finished first: keep its metrics.
            var ps = await Server.GetStatusAsync();
            saved.State = S with { History = [.. S.History, .. Unseen(ps, checkpoint)], Step = Math.Max(S.Step, checkpoint) };
        }
        catch (Exception e) { Log.CancelCheckpointFailed(logger, e, JobId); }
        saved.State = S with { State = JobState.Cancelled, Reason = $"cancelled at step {S.Step}; checkpoint step {checkpoint}", CheckpointStep = checkpoint };
        await SaveAsync();
        return Status();
    }

    public Task CommittedAsync(int version) =>
        S.State == JobState.Running && timer is not null && version > dispatchedStep ? TickAsync(CancellationToken.None) : Task.CompletedTask;

    public async Task<JobStatus> PauseAsync()
    {
        if (S.Spec is null) throw new KeyNotFoundException($"unknown job '{JobId}'");
        if (S.State != JobState.Running) return Status();
        StopDriver();
        // No checkpoint here: it would freeze the server, and the step in flight must still commit (a worker that moves
        // while the job is paused would otherwise redo its round from a replica that already took it).
        saved.State = S with { State = JobState.Paused, Reason = $"paused after step {S.Step}" };
        await SaveAsync();
        return Status();
    }

    public async Task<JobStatus> ResumeAsync()
    {
        if (S.Spec is not { } spec) throw new KeyNotFoundException($"unknown job '{JobId}'");
        if (S.State is JobState.Running or JobState.Completed) return Status();
        // A paused job goes on from the server's current version, with the metrics of a commit that landed during the
        // pause taken now (a server lost right after the resume comes back without them). A server that was collected
        // meanwhile comes back from its newest checkpoint by itself.
        bool paused = S.State == JobState.Paused;
        var ps = await Server.StartAsync(spec, reloadCheckpoint: !paused);
        int step = ps.Version;
        var history = S.History.Where(m => m.Step <= step).ToList();
        if (paused) history.AddRange(Unseen(ps, step));
        saved.State = S with
        {
            State = JobState.Running, Step = step, Reason = paused ? $"resumed at step {step}" : $"resumed from checkpoint step {ps.Version}",
            History = history, CheckpointStep = ps.CheckpointStep, ServerActivation = ps.ActivationId,
        };
        await SaveAsync();
        dispatchedStep = -1;
        StartDriver();
        return Status();
    }

    /// <summary>The server's metrics of committed steps after the job's own, up to <paramref name="upTo"/>, in order.</summary>
    IEnumerable<StepMetric> Unseen(ParameterServerStatus ps, int upTo) =>
        ps.Recent.Where(m => m.Step > S.Step && m.Step <= upTo).OrderBy(m => m.Step);

    JobStatus Status()
    {
        var sent = S.History.Where(m => m.BytesUpPerWorker + m.BytesDownPerWorker > 0).ToList();
        double ratio = sent.Count == 0 ? 0 : 2.0 * S.Fp32ModelBytes / sent.Average(m => (double)(m.BytesUpPerWorker + m.BytesDownPerWorker));
        return new JobStatus
        {
            JobId = JobId, State = S.State, Step = S.Step, Steps = S.Spec?.Steps ?? 0, Reason = S.Reason, Last = S.History.LastOrDefault(),
            ValLoss = S.ValLoss, CompressionRatio = ratio, Spec = S.Spec, CheckpointStep = S.CheckpointStep, Recoveries = S.Recoveries,
            Silo = RuntimeIdentity,
        };
    }

    void StartDriver()
    {
        timer ??= this.RegisterGrainTimer(TickAsync, new GrainTimerCreationOptions(TickPeriod, TickPeriod) { Interleave = false, KeepAlive = true });
        serverReachableAt = DateTime.UtcNow;
        // Remembered by the running jobs, which re-activate this grain if its silo dies (see RunningJobsGrain).
        GrainFactory.GetGrain<IRunningJobsGrain>(RunningJobs.Key).AddAsync(JobId).Ignore();
    }

    void StopDriver()
    {
        timer?.Dispose();
        timer = null;
    }

    async Task TickAsync(CancellationToken ct)
    {
        if (S.State != JobState.Running || S.Spec is not { } spec) { StopDriver(); return; }
        ParameterServerStatus ps;
        try
        {
            ps = await Server.GetStatusAsync();
            if (ps.Version < 0 && ps.Error is null) ps = await Server.StartAsync(spec, reloadCheckpoint: false);
            serverReachableAt = DateTime.UtcNow;
        }
        catch (Exception e)
        {
            // Its silo may be dead and not yet declared so; Orleans re-activates it elsewhere once it is.
            if (DateTime.UtcNow - serverReachableAt > ServerLossLimit) await FailAsync($"parameter server unreachable for {ServerLossLimit.TotalMinutes} min: {Message(e)}");
            return;
        }
        if (ps.Error is not null) { await FailAsync(ps.Error); return; }

        bool changed = false;
        if (S.ServerActivation != ps.ActivationId)
        {
            if (S.ServerActivation is not null || ps.Version < S.Step)
            {
                saved.State = S with
                {
                    Step = Math.Min(S.Step, ps.Version), Recoveries = S.Recoveries + 1, History = S.History.Where(m => m.Step <= ps.Version).ToList(),
                    Reason = $"parameter server re-activated at {DateTime.UtcNow:HH:mm:ss}Z from checkpoint step {ps.Version}; redoing {Math.Max(0, S.Step - ps.Version)} step(s)",
                };
                Log.ServerRecovered(logger, JobId, ps.Version);
                changed = true;
            }
            saved.State = S with { ServerActivation = ps.ActivationId };
            changed = true;
            dispatchedStep = -1;
        }
        var fresh = Unseen(ps, ps.Version).ToList();
        if (fresh.Count > 0 || ps.Version > S.Step || ps.CheckpointStep != S.CheckpointStep)
        {
            var history = S.History.Concat(fresh).ToList();
            saved.State = S with { Step = Math.Max(S.Step, ps.Version), History = history, CheckpointStep = ps.CheckpointStep, ValLoss = ps.ValLoss ?? S.ValLoss };
            changed = true;
        }
        if (ps.Version >= spec.Steps && !ps.Committing && (ps.ValLoss is not null || spec.EvalBatches == 0) && ps.CheckpointStep >= spec.Steps)
        {
            saved.State = S with { State = JobState.Completed, ValLoss = ps.ValLoss, Reason = S.Recoveries > 0 ? S.Reason : null };
            StopDriver();
            await SaveAsync();
            return;
        }
        if (ps.Version < spec.Steps && !ps.Committing) await DriveAsync(spec, ps);
        if (changed) await SaveAsync();
    }

    async Task DriveAsync(JobSpec spec, ParameterServerStatus ps)
    {
        var elapsed = DateTime.UtcNow - dispatchedAt;
        var timeout = TimeSpan.FromSeconds(spec.StepTimeoutSeconds * spec.SyncEvery);
        if (dispatchedStep != ps.Version)
        {
            // Between steps no worker holds uncommitted work, so a worker can move to a silo that joined (elastic).
            spreader ??= new WorkerSpreader(GrainFactory, membership, manifest, logger);
            if (!await spreader.BeforeStepAsync(JobId, spec, ps.Version)) Order(spec, ps.Version);
        }
        else if (elapsed > timeout)
        {
            if (ps.Contributions > 0)
            {
                _ = Server.CommitPartialAsync(ps.Version);
                saved.State = S with { Reason = $"step {ps.Version + 1} committed with {ps.Contributions} of {spec.Workers} workers after {timeout.TotalSeconds:F0} s" };
                dispatchedAt = DateTime.UtcNow;
            }
            else Order(spec, ps.Version);
        }
        else if (!reordered && elapsed > timeout / 2)
        {
            // Workers whose silo died get re-activated on a surviving silo by this order; the others ignore it.
            reordered = true;
            SendOrders(spec, ps.Version);
        }
    }

    void Order(JobSpec spec, int step)
    {
        dispatchedStep = step;
        dispatchedAt = DateTime.UtcNow;
        reordered = false;
        SendOrders(spec, step);
    }

    void SendOrders(JobSpec spec, int step)
    {
        for (int w = 0; w < spec.Workers; w++)
            _ = GrainFactory.GetGrain<IWorkerGrain>(WorkerKey(JobId, w)).ComputeAsync(new StepOrder(JobId, step, w, spec));
    }

    async Task FailAsync(string reason)
    {
        saved.State = S with { State = JobState.Failed, Reason = reason };
        StopDriver();
        Log.JobFailed(logger, JobId, reason);
        await SaveAsync();
    }

    /// <summary>Writes the state; the Duck meter's job_step gauge follows it.</summary>
    Task SaveAsync()
    {
        DuckMetrics.RecordJob(JobId, S.State, S.Step);
        return saved.WriteStateAsync();
    }

    /// <summary>The key of worker <paramref name="index"/> of a job: "jobId/index" (placement reads the index).</summary>
    public static string WorkerKey(string jobId, int index) => $"{jobId}/{index}";

    static string Message(Exception e) => e is AggregateException { InnerException: { } inner } ? inner.Message : e.Message;
}
