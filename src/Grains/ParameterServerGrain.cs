// The parameter server of one job: latent fp32 weights and AdamW state, one gradient contribution per worker per
// step, averaging, clip, the optimizer step with the two-stage schedule, publication of the next (packed ternary)
// weight version, and checkpoints in the single-process trainer's format. TorchSharp runs off the grain scheduler.
using System.Diagnostics;
using System.Text.Json;
using System.Text.Json.Nodes;
using Duck.Core.Checkpoints;
using Duck.Core.Model;
using Duck.Model;
using Microsoft.Extensions.Logging;
using static TorchSharp.torch;

namespace Duck.Grains;

/// <summary>What survives the server's activation: the spec it serves (the weights live in checkpoints).</summary>
[GenerateSerializer]
public sealed record ParameterServerState
{
    [Id(0)] public JobSpec? Spec { get; init; }
}

public sealed class ParameterServerGrain(
    [PersistentState("ps", DuckStorage.Name)] IPersistentState<ParameterServerState> saved,
    ILogger<ParameterServerGrain> logger) : Grain, IParameterServerGrain
{
    sealed record Contribution(byte[] Packet, double Loss, long BytesDown, long BytesUp, double[]? StepLosses);
    sealed record Snapshot(int Step, Dictionary<string, byte[]> Files, CheckpointManifest Manifest);

    readonly string activationId = Guid.NewGuid().ToString("N");
    readonly Dictionary<int, Contribution> arrived = new();
    readonly Dictionary<int, byte[]?[]> assembling = new();
    readonly List<StepMetric> recent = new();
    JobSpec? spec;
    TrainingOptions options = new();
    ModelConfig config = new();
    ServerModel? server;
    CheckpointManager? checkpoints;
    int version;
    byte[] weights = [];
    /// <summary>The chunks of <see cref="weights"/>, cut once per version and shared by every worker's fetch.</summary>
    byte[][]? weightChunks;
    readonly OffGrainWork work = new();
    byte[]? fullWeights;
    float[] embedding = [];
    bool committing, frozen;
    string? error;
    double? valLoss;
    int checkpointStep = -1;
    long lastCommitTimestamp;
    Task checkpointWrites = Task.CompletedTask;

    public override async Task OnActivateAsync(CancellationToken ct)
    {
        if (saved.State.Spec is not { } s) return;
        try { await InitializeAsync(s); }
        catch (Exception e) { error = $"parameter server could not resume: {e.Message}"; }
    }

    public override Task OnDeactivateAsync(DeactivationReason reason, CancellationToken ct)
    {
        work.DisposeAfter(server); // a commit may still be running on it
        return Task.CompletedTask;
    }

    public async Task<ParameterServerStatus> StartAsync(JobSpec jobSpec, bool reloadCheckpoint)
    {
        jobSpec.Validate();
        if (server is null || reloadCheckpoint || spec != jobSpec || error is not null)
        {
            while (committing) await Task.Delay(50);
            try { await checkpointWrites; } catch (Exception) { /* reported when it failed; reload what is committed */ }
            await InitializeAsync(jobSpec);
            saved.State = new ParameterServerState { Spec = jobSpec };
            await saved.WriteStateAsync();
        }
        return Status();
    }

    async Task InitializeAsync(JobSpec jobSpec)
    {
        var newConfig = JobData.Model(jobSpec);
        var newOptions = JobData.Options(jobSpec);
        var validation = JobData.Validation(jobSpec);
        var shard0 = JobData.OpenTrainShard(jobSpec.DataFolder, 0);
        var manager = new CheckpointManager(CheckpointStores.Open(jobSpec.CheckpointStore), newOptions.KeepCheckpoints);
        var latest = await manager.LoadLatestAsync();
        if (latest is not null)
        {
            var savedModel = latest.Manifest.Model.Deserialize<ModelConfig>();
            if (savedModel != newConfig)
                throw new InvalidDataException($"checkpoint {latest.Name} in {manager.Store.Description} holds a different model " +
                    $"({JsonSerializer.Serialize(savedModel)}) than preset '{jobSpec.Preset}' ({JsonSerializer.Serialize(newConfig)}); use another checkpoint store");
        }
        LoadedCheckpoint? baseCheckpoint = null;
        if (latest is null && jobSpec.IsFinetune)
        {
            baseCheckpoint = await CheckpointLocator.LoadAsync(jobSpec.BaseCheckpoint);
            var baseModel = baseCheckpoint.Manifest.Model.Deserialize<ModelConfig>();
            if (baseModel != newConfig)
                throw new InvalidDataException($"base checkpoint {jobSpec.BaseCheckpoint} holds a different model ({JsonSerializer.Serialize(baseModel)}) " +
                    $"than preset '{jobSpec.Preset}' ({JsonSerializer.Serialize(newConfig)})");
        }
        var loaded = await work.Run(() => ServerModel.Create(newConfig, newOptions, jobSpec, latest ?? baseCheckpoint, latest is null, validation, shard0));
        work.DisposeAfter(server);
        (server, spec, config, options, checkpoints) = (loaded, jobSpec, newConfig, newOptions, manager);
        version = (int)(latest?.Manifest.Step ?? 0);
        checkpointStep = latest is null ? -1 : version;
        (weights, weightChunks, embedding, fullWeights) = (loaded.Weights, null, loaded.Embedding, null);
        arrived.Clear(); assembling.Clear(); recent.Clear();
        if (latest is not null) recent.AddRange(MetricsOf(latest.Manifest));
        error = null; committing = frozen = false;
        // A store whose newest checkpoint is the last step (e.g. a run finished by `duck finetune`) has nothing left to
        // commit: validate now, so that the job can complete.
        valLoss = version >= newOptions.Steps && jobSpec.EvalBatches > 0 ? await work.Run(loaded.Evaluate) : null;
        lastCommitTimestamp = Stopwatch.GetTimestamp();
        Log.ServerReady(logger, this.GetPrimaryKeyString(), version, RuntimeIdentity);
    }

    public Task<ParameterServerStatus> GetStatusAsync() => Task.FromResult(Status());

    ParameterServerStatus Status() => new()
    {
        Version = server is null ? -1 : version, Contributions = arrived.Count, Committing = committing,
        Recent = recent.TakeLast(256).ToArray(), CheckpointStep = checkpointStep, Error = error, ValLoss = valLoss,
        ActivationId = activationId, Fp32ModelBytes = config.TotalParameters * 4, Silo = RuntimeIdentity,
    };

    public Task<WeightsManifest?> GetWeightsManifestAsync(int v, bool full)
    {
        if (server is null || v != version) return Task.FromResult<WeightsManifest?>(null);
        if (server.Outer is not { } outer) return Task.FromResult<WeightsManifest?>(new(version, weights.Length, Chunking.CountOf(weights.Length)));
        if (!full) return Task.FromResult<WeightsManifest?>(new(version, weights.Length, Chunking.CountOf(weights.Length), outer.Lineage, outer.DeltaFrom, outer.SeedInitialized));
        if (committing) return Task.FromResult<WeightsManifest?>(null); // the replica view is changing
        fullWeights ??= server.FullWeights();
        return Task.FromResult<WeightsManifest?>(new(version, fullWeights.Length, Chunking.CountOf(fullWeights.Length), outer.Lineage));
    }

    public Task<PacketPart?> GetWeightsChunkAsync(int v, int index, bool full)
    {
        if (server is null || v != version) return Task.FromResult<PacketPart?>(null);
        if (full && server.Outer is not null)
            return Task.FromResult(fullWeights is null || committing ? null : new PacketPart(Chunking.Slice(fullWeights, index)));
        weightChunks ??= Enumerable.Range(0, Chunking.CountOf(weights.Length)).Select(i => Chunking.Slice(weights, i)).ToArray();
        if ((uint)index >= (uint)weightChunks.Length)
            throw new ArgumentOutOfRangeException(nameof(index), index, $"chunk index must be in 0..{weightChunks.Length - 1}");
        return Task.FromResult<PacketPart?>(new PacketPart(weightChunks[index]));
    }

    public Task<byte[]?> GetEmbeddingRowsAsync(int v, int[] rows)
    {
        if (rows.Length > Payloads.MaxRowsPerCall) throw new ArgumentException($"at most {Payloads.MaxRowsPerCall} rows per call, got {rows.Length}");
        return Task.FromResult(server is null || v != version ? null : ModelExchange.EmbeddingRows(embedding, config, rows));
    }

    public Task<bool> PushGradientAsync(GradientChunk chunk)
    {
        if (server is null || spec is null || chunk.Step != version || committing || frozen || error is not null) return Task.FromResult(false);
        if (arrived.ContainsKey(chunk.WorkerIndex)) return Task.FromResult(true);
        if (!assembling.TryGetValue(chunk.WorkerIndex, out var parts) || parts.Length != chunk.Count)
            assembling[chunk.WorkerIndex] = parts = new byte[]?[chunk.Count];
        parts[chunk.Index] = chunk.Bytes;
        if (parts.All(p => p is not null))
        {
            arrived[chunk.WorkerIndex] = new Contribution(Chunking.Join(parts), chunk.Loss, chunk.BytesDown, chunk.BytesUp, chunk.StepLosses);
            assembling.Remove(chunk.WorkerIndex);
            if (arrived.Count >= spec.Workers) StartCommit();
        }
        return Task.FromResult(true);
    }

    public Task<bool> CommitPartialAsync(int step)
    {
        if (server is null || step != version || committing || frozen || arrived.Count == 0) return Task.FromResult(false);
        Log.PartialCommit(logger, this.GetPrimaryKeyString(), step, arrived.Count, spec!.Workers);
        StartCommit();
        return Task.FromResult(true);
    }

    public async Task<int> CheckpointNowAsync()
    {
        if (server is null) throw new InvalidOperationException("the parameter server holds no model");
        frozen = true; // no further steps until StartAsync
        while (committing) await Task.Delay(50);
        try { await checkpointWrites; } catch (Exception) { /* its error is reported; written again below */ }
        if (checkpointStep == version) return version; // the commit's own checkpoint covers it
        var snapshot = await work.Run(() => server.Snapshot(version));
        await WriteCheckpointAsync(WithMetrics(snapshot));
        return version;
    }

    void StartCommit()
    {
        committing = true;
        _ = CommitAsync();
    }

    async Task CommitAsync()
    {
        try
        {
            var contributions = arrived.OrderBy(kv => kv.Key).Select(kv => kv.Value).ToList();
            int step = version;
            // A commit covers one step, or a round of up to SyncEvery local steps in low-communication mode.
            int covered = Math.Min(spec!.SyncEvery, options.Steps - step), next = step + covered;
            bool last = next == options.Steps;
            bool checkpoint = last || (options.CheckpointEvery > 0 && next / options.CheckpointEvery > step / options.CheckpointEvery);
            var packets = contributions.Select(c => c.Packet).ToList();
            var (lr, wd) = TwoStageSchedule.At(options, step);
            float scale = (float)spec.Workers / contributions.Count; // workers send gradients pre-divided by the full count
            string job = this.GetPrimaryKeyString();
            var result = spec.SyncEvery > 1
                ? await work.Run(() => server!.ApplyOuter(packets, step, next, checkpoint, last))
                : await work.Run(() => server!.Apply(job, packets, scale, lr, wd, checkpoint, last));
            double ms = Stopwatch.GetElapsedTime(lastCommitTimestamp).TotalMilliseconds / covered;
            lastCommitTimestamp = Stopwatch.GetTimestamp();
            long tokens = (long)contributions.Count * spec.MicroBatchesPerWorker * spec.BatchSize * spec.SequenceLength;
            // Traffic of a round is reported per local step, so that figures compare with synchronous steps.
            long up = (long)contributions.Average(c => c.BytesUp) / covered, down = (long)contributions.Average(c => c.BytesDown) / covered;
            for (int i = 0; i < covered; i++)
            {
                double loss = contributions.Average(c => c.StepLosses is { } l && l.Length == covered ? l[i] : c.Loss);
                recent.Add(new StepMetric(step + i + 1, loss, tokens / (ms / 1000), up, down, contributions.Count, ms, TwoStageSchedule.At(options, step + i).LearningRate));
                if (!double.IsFinite(loss)) error = $"loss became {loss} at step {step + i + 1}; lower the learning rate ({options.LearningRate})";
            }
            DuckMetrics.RecordSteps(this.GetPrimaryKeyString(), recent.TakeLast(covered));
            (weights, weightChunks, embedding, fullWeights) = (result.Weights, null, result.Embedding, null);
            version = next;
            arrived.Clear();
            assembling.Clear();
            if (recent.Count > 256) recent.RemoveRange(0, recent.Count - 256);
            if (result.ValLoss is { } v)
            {
                valLoss = v;
                DuckMetrics.ValidationLoss.Record(v, new KeyValuePair<string, object?>("job", this.GetPrimaryKeyString()));
            }
            committing = false;
            GrainFactory.GetGrain<ITrainingJobGrain>(this.GetPrimaryKeyString()).CommittedAsync(version).Ignore();
            if (result.Snapshot is { } snapshot) await WriteCheckpointAsync(WithMetrics(snapshot));
        }
        catch (Exception e)
        {
            error = $"step {version + 1} failed on the parameter server: {e.Message}";
            Log.CommitFailed(logger, e, this.GetPrimaryKeyString(), version + 1);
            committing = false;
        }
    }

    /// <summary>The checkpoint carries the metrics of the steps it covers: a server lost after the checkpoint, before
    /// the job read those steps' metrics, comes back with them (the job's history would otherwise miss those rows).</summary>
    Snapshot WithMetrics(Snapshot snapshot)
    {
        snapshot.Manifest.State[MetricsKey] = JsonSerializer.SerializeToNode(recent.Where(m => m.Step <= snapshot.Step).ToArray(), MetricsJson);
        return snapshot;
    }

    /// <summary>The metrics a checkpoint carries (none in one written by the single-process trainer).</summary>
    static IEnumerable<StepMetric> MetricsOf(CheckpointManifest manifest) =>
        manifest.State[MetricsKey]?.Deserialize<StepMetric[]>(MetricsJson)?.Where(m => m.Step <= manifest.Step) ?? [];

    const string MetricsKey = "cluster_metrics";
    static readonly JsonSerializerOptions MetricsJson = new() { NumberHandling = System.Text.Json.Serialization.JsonNumberHandling.AllowNamedFloatingPointLiterals };

    async Task WriteCheckpointAsync(Snapshot snapshot)
    {
        var previous = checkpointWrites;
        var write = WriteAfterAsync(previous, snapshot);
        checkpointWrites = write;
        await write;
    }

    async Task WriteAfterAsync(Task previous, Snapshot snapshot)
    {
        try { await previous; } catch { /* reported by its own caller */ }
        try
        {
            string name = await checkpoints!.SaveAsync(snapshot.Manifest, snapshot.Files);
            checkpointStep = Math.Max(checkpointStep, snapshot.Step);
            DuckMetrics.RecordCheckpoint(this.GetPrimaryKeyString());
            Log.Checkpointed(logger, this.GetPrimaryKeyString(), name, checkpoints.Store.Description);
        }
        catch (Exception e)
        {
            error = $"checkpoint of step {snapshot.Step} to {checkpoints!.Store.Description} failed: {e.Message}";
            throw;
        }
    }

    /// <summary>The TorchSharp half of the server: used by one thread at a time (commits are sequential).</summary>
    sealed class ServerModel : IDisposable
    {
        readonly DuckTransformer model;
        readonly AdamW optimizer;
        readonly TrainingOptions options;
        readonly JobSpec spec;
        readonly HashSet<string> ternaryNames;
        readonly IValidationSource validation;
        readonly Duck.Core.Data.TokenShard shard0;
        /// <summary>The low-communication mode's summed deltas (synchronous steps sum into the gradient tensors).</summary>
        Dictionary<string, float[]>? sums;

        public byte[] Weights { get; private set; } = [];
        public float[] Embedding { get; private set; } = [];
        readonly float[][] embeddingBuffers = [[], []];
        /// <summary>The low-communication (DiLoCo) outer optimizer; null in synchronous mode.</summary>
        public OuterOptimizer? Outer { get; private set; }

        ServerModel(ModelConfig config, TrainingOptions options, JobSpec spec, IValidationSource validation, Duck.Core.Data.TokenShard shard0)
        {
            model = new DuckTransformer(config, options.Seed);
            optimizer = new AdamW(model.named_parameters(), options.Beta1, options.Beta2);
            (this.options, this.spec, this.validation, this.shard0) = (options, spec, validation, shard0);
            ternaryNames = ModelExchange.TernaryNames(model);
        }

        /// <summary>A server on <paramref name="latest"/>'s weights and optimizer, or, when <paramref name="weightsOnly"/>
        /// (a fine-tune's base), on its weights with a fresh optimizer.</summary>
        public static ServerModel Create(ModelConfig config, TrainingOptions options, JobSpec spec, LoadedCheckpoint? latest, bool weightsOnly,
                                         IValidationSource validation, Duck.Core.Data.TokenShard shard0)
        {
            var s = new ServerModel(config, options, spec, validation, shard0);
            if (latest is not null && weightsOnly)
            {
                var weights = Duck.Core.Checkpoints.Safetensors.Read(latest.Files[Trainer.ModelFile], $"{latest.Name}/{Trainer.ModelFile}");
                ModelWeights.Load(s.model, weights.Tensors, $"{latest.Name}/{Trainer.ModelFile}");
            }
            else if (latest is not null)
            {
                var weights = Duck.Core.Checkpoints.Safetensors.Read(latest.Files[Trainer.ModelFile], $"{latest.Name}/{Trainer.ModelFile}");
                ModelWeights.Load(s.model, weights.Tensors, $"{latest.Name}/{Trainer.ModelFile}");
                var opt = Duck.Core.Checkpoints.Safetensors.Read(latest.Files[Trainer.OptimizerFile], $"{latest.Name}/{Trainer.OptimizerFile}");
                if (spec.SyncEvery > 1)
                    s.Outer = new OuterOptimizer(s.model, seedInitialized: false, opt.Tensors.Where(t => t.Name.StartsWith(OuterOptimizer.MomentumPrefix))
                        .ToDictionary(t => t.Name[OuterOptimizer.MomentumPrefix.Length..], t => t.Data), DenseWeights.EmbeddingByRows(spec));
                else
                {
                    var state = opt.Tensors.ToDictionary(t => t.Name, t => tensor(t.Data, t.Shape));
                    try { s.optimizer.LoadState(state, latest.Manifest.Step); }
                    finally { foreach (var t in state.Values) t.Dispose(); }
                }
            }
            else if (spec.SyncEvery > 1) s.Outer = new OuterOptimizer(s.model, seedInitialized: true, null, DenseWeights.EmbeddingByRows(spec));
            s.Publish();
            return s;
        }

        /// <summary>Validation loss of the current weights over the job's EvalBatches batches.</summary>
        public double Evaluate() => Trainer.Evaluate(model, validation, options.BatchSize, options.SequenceLength, spec.EvalBatches);

        /// <summary>The fp32 weights workers start a round from (low-communication mode), for a worker that missed a delta.</summary>
        public byte[] FullWeights() => Outer!.Full(model);

        /// <summary>Low-communication round <paramref name="from"/>..<paramref name="to"/>: the outer step on the averaged deltas.</summary>
        public (byte[] Weights, float[] Embedding, Snapshot? Snapshot, double? ValLoss) ApplyOuter(
            IReadOnlyList<byte[]> packets, int from, int to, bool checkpoint, bool last)
        {
            sums ??= model.named_parameters().ToDictionary(p => p.name, p => new float[p.parameter.numel()]);
            foreach (var sum in sums.Values) Array.Clear(sum);
            foreach (var packet in packets) ModelExchange.Accumulate(packet, sums);
            ulong seed = Duck.Core.Data.SplitMix64.Mix((ulong)spec.Seed ^ ((ulong)from << 20) ^ 0xD0D0UL);
            Outer!.Step(model, sums, packets.Count, spec.OuterLearningRate, spec.OuterMomentum, spec.Compression, from, seed);
            Publish();
            var snapshot = checkpoint ? Snapshot(to) : null;
            double? val = last && spec.EvalBatches > 0 ? Evaluate() : null;
            return (Weights, Embedding, snapshot, val);
        }

        /// <summary>What workers fetch: packed weights (synchronous) or the round's delta (low-communication), and the
        /// current embedding when it is served by rows (a copy: the next commit must not change what is being served).</summary>
        void Publish()
        {
            Weights = Outer is not null ? Outer.Delta : ModelExchange.PackWeights(model, ternaryNames);
            bool byRows = Outer?.EmbeddingByRows ?? ModelExchange.EmbeddingByRows(model.Config);
            if (!byRows) { Embedding = []; return; }
            // Two buffers used in turn: rows of the version being served are read from one while the next commit writes
            // the other (a fresh 51 MB array per step cost 70-350 ms in page faults on `mini`).
            var source = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(
                model.named_parameters().First(p => p.name == TensorNames.Embedding).parameter.bytes);
            var target = ReferenceEquals(Embedding, embeddingBuffers[0]) ? 1 : 0;
            if (embeddingBuffers[target].Length != source.Length) embeddingBuffers[target] = new float[source.Length];
            source.CopyTo(embeddingBuffers[target]);
            Embedding = embeddingBuffers[target];
        }

        public (byte[] Weights, float[] Embedding, Snapshot? Snapshot, double? ValLoss) Apply(string job,
            IReadOnlyList<byte[]> packets, float scale, double lr, double wd, bool checkpoint, bool last)
        {
            long phase = Stopwatch.GetTimestamp();
            using (var scope = NewDisposeScope())
            {
                // Summed straight into the parameters' gradient tensors (created once, zeroed every step).
                var grads = new Dictionary<string, Tensor>();
                foreach (var (name, p) in model.named_parameters())
                {
                    if (p.grad is null) p.grad = zeros_like(p).DetachFromDisposeScope();
                    var g = p.grad!;
                    g.zero_();
                    grads[name] = g;
                }
                foreach (var packet in packets)
                    ModelExchange.Accumulate(packet, name => grads.TryGetValue(name, out var g)
                        ? System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(g.bytes) : throw ModelExchange.UnknownTensor(name));
                phase = DuckMetrics.RecordPhase(job, "decode", phase);
                if (scale != 1) foreach (var g in grads.Values) g.mul_(scale);
                if (options.GradClip > 0) nn.utils.clip_grad_norm_(model.parameters(), options.GradClip);
                optimizer.Step(lr, wd);
            }
            phase = DuckMetrics.RecordPhase(job, "optimizer", phase);
            Publish();
            DuckMetrics.RecordPhase(job, "publish", phase);
            var snapshot = checkpoint ? Snapshot((int)optimizer.StepCount) : null;
            double? val = last && spec.EvalBatches > 0 ? Evaluate() : null;
            return (Weights, Embedding, snapshot, val);
        }

        /// <summary>The checkpoint files and manifest of the current weights, as Trainer.SaveCheckpointAsync writes them.</summary>
        public Snapshot Snapshot(int step)
        {
            var files = new Dictionary<string, byte[]>
            {
                [Trainer.ModelFile] = ModelWeights.ToSafetensors(ModelWeights.Export(model),
                    new Dictionary<string, string> { ["duck.config"] = JsonSerializer.Serialize(model.Config) }),
                [Trainer.OptimizerFile] = Outer is null
                    ? ModelWeights.ToSafetensors(optimizer.State().Select(s => ModelWeights.ToNamed(s.Name, s.Value)))
                    : ModelWeights.ToSafetensors(Outer.State().Select(s => new NamedTensor(s.Name, new long[] { s.Values.Length }, s.Values))),
            };
            var cursor = JobData.Batches(spec with { SharedData = true }, 0, shard0).CursorAt(JobData.BatchIndex(spec with { SharedData = true }, step, 0, 0));
            var manifest = new CheckpointManifest
            {
                Step = step,
                TokensSeen = (long)step * options.TokensPerStep,
                Model = (JsonObject)JsonSerializer.SerializeToNode(model.Config)!,
                Training = (JsonObject)JsonSerializer.SerializeToNode(options)!,
                State = new JsonObject
                {
                    ["data"] = cursor, ["optimizer_steps"] = Outer is null ? optimizer.StepCount : step,
                    ["cluster"] = JsonSerializer.SerializeToNode(spec), ["run"] = JobData.RunState(spec),
                },
                CreatedUtc = DateTimeOffset.UtcNow,
            };
            return new Snapshot(step, files, manifest);
        }

        public void Dispose()
        {
            optimizer.Dispose();
            model.Dispose();
        }
    }
}
