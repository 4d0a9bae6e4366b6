// A worker of one job: its shard cursor, a model replica running on received quantized weights, and the residual
// of its compressed gradients (error feedback). A step order starts background work and returns; forward/backward
// runs on the thread pool with immutable inputs, and the encoded gradient goes to the parameter server in chunks.
// Between steps it can migrate to another silo (elastic join), taking its residuals or local replica along.
using Duck.Core.Data;
using Duck.Model;
using Microsoft.Extensions.Logging;
using Orleans.Runtime.Placement;
using static TorchSharp.torch;

namespace Duck.Grains;

/// <summary>What a migrating worker takes along besides its packed tensors.</summary>
[GenerateSerializer, Immutable]
public sealed record WorkerCarry(
    [property: Id(0)] JobSpec Spec,
    [property: Id(1)] int Index,
    [property: Id(2)] string Lineage = "",
    [property: Id(3)] int Version = -1,
    [property: Id(4)] long InnerSteps = 0);

[SpreadWorkersPlacement]
public sealed class WorkerGrain(ILogger<WorkerGrain> logger) : Grain, IWorkerGrain, IGrainMigrationParticipant
{
    /// <summary>Orders arriving this long after a move request are dropped (the job re-orders once the worker has moved).</summary>
    static readonly TimeSpan MoveGrace = TimeSpan.FromSeconds(10);

    readonly Dictionary<string, float[]> residuals = new();
    JobSpec? spec;
    int index;
    DuckTransformer? replica;
    IStepBatches? cursor;
    StepOrder? pending;
    bool running;
    int busyStep = -1, lastStep = -1;
    byte[]? lastPacket;
    (double Loss, long BytesDown, double[]? StepLosses) lastFigures;
    LocalReplica? local;
    string? lastError;
    double tokensPerSecond;
    DateTime movingUntil;
    (WorkerCarry Carry, byte[] Tensors)? carry;
    readonly OffGrainWork work = new();

    public Task ComputeAsync(StepOrder order)
    {
        if (order.Step == busyStep && spec == order.Spec) return Task.CompletedTask;
        if (DateTime.UtcNow < movingUntil) return Task.CompletedTask; // leaving: the job orders the new activation
        pending = order;
        if (!running)
        {
            running = true;
            _ = RunAsync();
        }
        return Task.CompletedTask;
    }

    public Task<WorkerStatus> GetStatusAsync() => Task.FromResult(new WorkerStatus(lastStep, running, RuntimeIdentity, lastError, tokensPerSecond));

    public Task<bool> MoveToAsync(SiloAddress silo)
    {
        if (running || silo.ToString() == RuntimeIdentity) return Task.FromResult(false);
        movingUntil = DateTime.UtcNow + MoveGrace;
        RequestContext.Set(IPlacementDirector.PlacementHintKey, silo); // SpreadWorkersPlacement honours the hint
        this.MigrateOnIdle();
        return Task.FromResult(true);
    }

    public override Task OnDeactivateAsync(DeactivationReason reason, CancellationToken ct)
    {
        if (reason.ReasonCode == DeactivationReasonCode.Migrating) carry = Pack();
        work.DisposeAfter(replica, local); // a step may still be computing on them
        return Task.CompletedTask;
    }

    /// <summary>The state a re-activation would lose: residuals (synchronous) or the local replica (low-communication).</summary>
    (WorkerCarry, byte[])? Pack()
    {
        if (spec is null) return null;
        long bytes = local?.ExportBytes ?? residuals.Values.Sum(r => (long)r.Length) * 4;
        if (bytes > Payloads.MaxMigrationBytes)
        {
            Log.CarryTooLarge(logger, this.GetPrimaryKeyString(), bytes);
            return null;
        }
        if (local is not null)
        {
            var (tensors, lineage, version, innerSteps) = local.Export();
            return (new WorkerCarry(spec, index, lineage, version, innerSteps), tensors);
        }
        var packet = new TensorPacketWriter();
        foreach (var (name, values) in residuals) packet.WriteFp32(name, 1, values.Length, values);
        return (new WorkerCarry(spec, index), packet.ToArray());
    }

    public void OnDehydrate(IDehydrationContext context)
    {
        if (carry is not { } c) return;
        context.TryAddValue("carry", c.Carry);
        context.AddBytes("tensors", c.Tensors);
    }

    public void OnRehydrate(IRehydrationContext context)
    {
        if (context.TryGetValue<WorkerCarry>("carry", out var c) && c is not null && context.TryGetBytes("tensors", out var tensors))
            carry = (c, System.Buffers.BuffersExtensions.ToArray(tensors));
    }

    /// <summary>Takes back what the previous activation carried, when it worked on the same job as the same worker.</summary>
    void Unpack(JobSpec s, int workerIndex)
    {
        if (carry is not ({ } c, var tensors) || c.Spec != s || c.Index != workerIndex) { carry = null; return; }
        carry = null;
        if (s.SyncEvery > 1) local = LocalReplica.Import(s, tensors, c.Lineage, c.Version, c.InnerSteps);
        else TensorPacketReader.Read(tensors, (name, _, _, _, values) => residuals[name] = values);
    }

    async Task RunAsync()
    {
        while (pending is { } order)
        {
            pending = null;
            busyStep = order.Step;
            try
            {
                await StepAsync(order);
                lastError = null;
            }
            catch (Exception e)
            {
                lastError = e.Message;
                Log.WorkerStepFailed(logger, e, this.GetPrimaryKeyString(), order.Step);
            }
            busyStep = -1;
        }
        running = false;
    }

    async Task StepAsync(StepOrder order)
    {
        var ps = GrainFactory.GetGrain<IParameterServerGrain>(order.JobId);
        if (order.Step == lastStep && order.Spec == spec && lastPacket is not null)
        {
            await PushAsync(ps, order.Step, lastPacket, lastFigures); // a retry: same gradient, residual untouched
            return;
        }
        if (spec != order.Spec || index != order.WorkerIndex || replica is null)
        {
            local?.Dispose();
            local = null;
            var s = order.Spec;
            var shard = JobData.OpenTrainShard(s.DataFolder, s.SharedData ? 0 : order.WorkerIndex);
            replica?.Dispose();
            int workerIndex = order.WorkerIndex;
            IStepBatches? batchesOfWorker = null;
            replica = await work.Run(() =>
            {
                batchesOfWorker = JobData.Batches(s, workerIndex, shard); // fine-tuning tokenizes its conversations here
                var model = new DuckTransformer(JobData.Model(s), s.Seed);
                model.SetPrequantizedWeights(true);
                return model;
            });
            (spec, index, cursor) = (s, workerIndex, batchesOfWorker);
            residuals.Clear();
            if (carry is not null) await work.Run(() => Unpack(s, workerIndex));
        }
        if (order.Spec.SyncEvery > 1)
        {
            await RoundAsync(ps, order);
            return;
        }
        var batches = cursor!.ForStep(order.Step);
        int[] rows = ModelExchange.EmbeddingByRows(replica.Config)
            ? batches.SelectMany(b => b.Inputs).Select(t => (int)t).Distinct().Order().ToArray() : [];

        long phase = System.Diagnostics.Stopwatch.GetTimestamp();
        var manifest = await ps.GetWeightsManifestAsync(order.Step, full: false);
        if (manifest is null) return; // the server moved on or went back; the job sends a new order
        var (fetchingWeights, fetchingRows) = (FetchAsync(ps, manifest, full: false), FetchRowsAsync(ps, order.Step, rows));
        var (weights, rowBytes) = (await fetchingWeights, await fetchingRows);
        if (weights is null || rowBytes is null) return;
        long bytesDown = weights.Length + rowBytes.Length + rows.Length * 4L;
        phase = DuckMetrics.RecordPhase(order.JobId, "fetch", phase);

        var (model, s2, worker, step) = (replica, spec!, index, order.Step);
        long started = System.Diagnostics.Stopwatch.GetTimestamp();
        var (packet, loss) = await work.Run(() => Compute(model, s2, order.JobId, worker, step, batches, weights, rows, rowBytes, residuals));
        RecordThroughput(batches.Sum(b => (long)b.BatchSize * b.SequenceLength), started);
        (lastStep, lastPacket, lastFigures) = (step, packet, (loss, bytesDown, null));
        phase = System.Diagnostics.Stopwatch.GetTimestamp();
        await PushAsync(ps, step, packet, lastFigures);
        DuckMetrics.RecordPhase(order.JobId, "push", phase);
    }

    /// <summary>Low-communication round: bring the replica view to the server's version (seed, delta or full weights),
    /// take up to SyncEvery local AdamW steps, push the encoded weight delta with the loss of every local step.</summary>
    async Task RoundAsync(IParameterServerGrain ps, StepOrder order)
    {
        local ??= await work.Run(() => new LocalReplica(order.Spec));
        var s = spec!;
        var options = JobData.Options(s);
        int n = Math.Min(s.SyncEvery, s.Steps - order.Step);
        var steps = Enumerable.Range(order.Step, n).Select(t => cursor!.ForStep(t)).ToArray();
        int[]? rows = DenseWeights.EmbeddingByRows(s)
            ? steps.SelectMany(batches => batches).SelectMany(b => b.Inputs).Select(t => (int)t).Distinct().Order().ToArray() : null;

        var manifest = await ps.GetWeightsManifestAsync(order.Step, full: false);
        if (manifest is null) return;
        bool full = !local.CanFollow(manifest);
        if (full && (manifest = await ps.GetWeightsManifestAsync(order.Step, full: true)) is null) return;
        bool seeded = manifest.SeedInitialized && !full; // the replica view is the seed's initialization, built here
        byte[]? packet = seeded ? [] : await FetchAsync(ps, manifest, full);
        if (packet is null) return;
        byte[] rowBytes = [];
        if (rows is not null && !seeded)
        {
            if (await FetchRowsAsync(ps, order.Step, rows) is not { } fetched) return;
            rowBytes = fetched;
        }
        var replicaView = local;
        await work.Run(() =>
        {
            replicaView.Follow(manifest, packet, full);
            if (rowBytes.Length > 0) replicaView.SetEmbeddingRows(rows!, rowBytes);
        });

        var schedule = Enumerable.Range(order.Step, n).Select(t => TwoStageSchedule.At(options, t)).ToArray();
        ulong seed = SplitMix64.Mix((ulong)s.Seed ^ ((ulong)order.Step << 20) ^ (ulong)index);
        long started = System.Diagnostics.Stopwatch.GetTimestamp();
        var (delta, losses) = await work.Run(() => replicaView.Run(steps, schedule, s.GradClip, s.Compression, seed, rows));
        RecordThroughput(steps.Sum(batches => batches.Sum(b => (long)b.BatchSize * b.SequenceLength)), started);
        long bytesDown = packet.Length + rowBytes.Length + (rowBytes.Length > 0 ? rows!.Length * 4L : 0);
        (lastStep, lastPacket, lastFigures) = (order.Step, delta, (losses.Average(), bytesDown, losses));
        await PushAsync(ps, order.Step, delta, lastFigures);
    }

    /// <summary>The fp32 embedding rows of version <paramref name="version"/>, fetched in bounded calls; null when stale.</summary>
    static Task<byte[]?> FetchRowsAsync(IParameterServerGrain ps, int version, int[] rows)
    {
        var groups = rows.Chunk(Payloads.MaxRowsPerCall).ToArray();
        return Chunking.FetchAsync(groups.Length, i => ps.GetEmbeddingRowsAsync(version, groups[i]));
    }

    void RecordThroughput(long tokens, long startedTimestamp)
    {
        tokensPerSecond = tokens / Math.Max(1e-6, System.Diagnostics.Stopwatch.GetElapsedTime(startedTimestamp).TotalSeconds);
        string key = this.GetPrimaryKeyString(); // "jobId/index"
        DuckMetrics.WorkerTokensPerSecond.Record(tokensPerSecond, new("job", key[..Math.Max(0, key.LastIndexOf('/'))]), new("worker", index));
    }

    static Task<byte[]?> FetchAsync(IParameterServerGrain ps, WeightsManifest manifest, bool full) =>
        Chunking.FetchAsync(manifest.Chunks, async i => (await ps.GetWeightsChunkAsync(manifest.Version, i, full))?.Bytes);

    async Task PushAsync(IParameterServerGrain ps, int step, byte[] packet, (double Loss, long BytesDown, double[]? StepLosses) figures)
    {
        int count = Chunking.CountOf(packet.Length);
        for (int i = 0; i < count; i++)
            if (!await ps.PushGradientAsync(new GradientChunk(step, index, i, count, Chunking.Slice(packet, i), figures.Loss, figures.BytesDown, packet.Length, figures.StepLosses)))
                return;
    }

    /// <summary>Forward and backward over the worker's micro-batches on the received weights; the encoded gradient and mean loss.</summary>
    static (byte[] Packet, double Loss) Compute(DuckTransformer model, JobSpec spec, string jobId, int worker, int step, TokenBatch[] batches,
                                                byte[] weights, int[] rows, byte[] rowBytes, Dictionary<string, float[]> residuals)
    {
        using var scope = NewDisposeScope();
        long phase = System.Diagnostics.Stopwatch.GetTimestamp();
        ModelExchange.LoadReplica(model, weights, rows, rowBytes);
        phase = DuckMetrics.RecordPhase(jobId, "load", phase);
        model.train();
        foreach (var p in model.parameters()) p.grad?.zero_();
        double lossSum = 0;
        foreach (var b in batches)
        {
            using var inner = NewDisposeScope();
            var x = tensor(b.Inputs, new long[] { b.BatchSize, b.SequenceLength });
            var y = tensor(b.Targets, new long[] { b.BatchSize, b.SequenceLength });
            var loss = model.Loss(x, y);
            // Scaled by the global micro-batch count, as the single-process trainer does: the server only sums.
            using var share = TorchSharp.ScalarExtensionMethods.ToScalar(batches.Length * spec.Workers); // held: see BitQuant on implicit Scalar temporaries
            loss.div(share).backward();
            lossSum += loss.item<float>();
        }
        phase = DuckMetrics.RecordPhase(jobId, "forward_backward", phase);
        var rng = new SplitMix64(SplitMix64.Mix((ulong)spec.Seed ^ ((ulong)step << 20) ^ (ulong)worker));
        var packet = ModelExchange.EncodeGradients(model, rows, spec.Compression, residuals, ref rng, (float)spec.ClipSigmas);
        DuckMetrics.RecordPhase(jobId, "encode", phase);
        return (packet, lossSum / batches.Length);
    }
}
