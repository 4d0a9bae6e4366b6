// The single-process trainer: AdamW with the two-stage schedule, gradient accumulation and clipping, periodic
// validation and checkpoints, exact resume. It reports through events; printing is the caller's business.
using System.Diagnostics;
using System.Text.Json;
using System.Text.Json.Nodes;
using Duck.Core.Checkpoints;
using Duck.Core.Model;
using TorchSharp;
using static TorchSharp.torch;

namespace Duck.Model;

public abstract record TrainingEvent(int Step);
/// <summary>One optimizer step: mean loss over its micro-batches.</summary>
public sealed record StepEvent(int Step, double Loss, double LearningRate, double TokensPerSecond, long TokensSeen, double StepTimeMs) : TrainingEvent(Step);
public sealed record EvalEvent(int Step, double ValLoss) : TrainingEvent(Step);
public sealed record CheckpointEvent(int Step, string Name) : TrainingEvent(Step);

public sealed record TrainingResult(int Steps, long TokensSeen, double FinalLoss, double? ValLoss, double ElapsedSeconds);

public sealed class Trainer : IDisposable
{
    public const string ModelFile = "model.safetensors";
    public const string OptimizerFile = "optimizer.safetensors";

    readonly TrainingOptions options;
    readonly IBatchSource train;
    readonly IValidationSource? validation;
    readonly CheckpointManager? checkpoints;
    readonly Action<TrainingEvent> onEvent;
    readonly AdamW optimizer;
    int step;
    long tokensSeen;

    public DuckTransformer Model { get; }
    public int Step => step;
    /// <summary>Saved in every checkpoint manifest's state beside the data cursor (e.g. what a fine-tune started from).</summary>
    public JsonObject? RunState { get; init; }

    public Trainer(ModelConfig config, TrainingOptions options, IBatchSource train, IValidationSource? validation,
                   CheckpointManager? checkpoints, Action<TrainingEvent>? onEvent = null)
    {
        this.options = options.Validate(config.ContextLength);
        if (train.BatchSize != options.BatchSize || train.SequenceLength != options.SequenceLength)
            throw new ArgumentException($"batch source yields [{train.BatchSize}, {train.SequenceLength}], options ask for [{options.BatchSize}, {options.SequenceLength}]");
        if (options.Threads > 0) set_num_threads(options.Threads);
        this.train = train;
        this.validation = validation;
        this.checkpoints = checkpoints;
        this.onEvent = onEvent ?? (_ => { });
        Model = new DuckTransformer(config, options.Seed);
        optimizer = new AdamW(Model.named_parameters(), options.Beta1, options.Beta2);
    }

    /// <summary>Restores the newest checkpoint; false when there is none. The checkpoint's model must match this one.</summary>
    public async Task<bool> TryResumeAsync(CancellationToken ct = default)
    {
        if (checkpoints is null) return false;
        var latest = await checkpoints.LoadLatestAsync(ct);
        if (latest is null) return false;
        var saved = latest.Manifest.Model.Deserialize<ModelConfig>();
        if (saved != Model.Config)
            throw new InvalidDataException($"checkpoint {latest.Name} holds a different model ({JsonSerializer.Serialize(saved)}) than this run ({JsonSerializer.Serialize(Model.Config)})");
        LoadState(latest);
        return true;
    }

    /// <summary>Starts from another run's weights (not its optimizer, step or data cursor): the base of a fine-tune.
    /// Its model must match this one.</summary>
    public void LoadWeights(LoadedCheckpoint checkpoint)
    {
        var saved = checkpoint.Manifest.Model.Deserialize<ModelConfig>();
        if (saved != Model.Config)
            throw new InvalidDataException($"checkpoint {checkpoint.Name} holds a different model ({JsonSerializer.Serialize(saved)}) than this run ({JsonSerializer.Serialize(Model.Config)})");
        if (!checkpoint.Files.TryGetValue(ModelFile, out var bytes)) throw new InvalidDataException($"checkpoint {checkpoint.Name} has no {ModelFile}");
        ModelWeights.Load(Model, Safetensors.Read(bytes, $"{checkpoint.Name}/{ModelFile}").Tensors, $"{checkpoint.Name}/{ModelFile}");
    }

    void LoadState(LoadedCheckpoint checkpoint)
    {
        var model = Safetensors.Read(checkpoint.Files[ModelFile], $"{checkpoint.Name}/{ModelFile}");
        ModelWeights.Load(Model, model.Tensors, $"{checkpoint.Name}/{ModelFile}");
        var opt = Safetensors.Read(checkpoint.Files[OptimizerFile], $"{checkpoint.Name}/{OptimizerFile}");
        var state = opt.Tensors.ToDictionary(t => t.Name, t => (Tensor)tensor(t.Data, t.Shape));
        try { optimizer.LoadState(state, checkpoint.Manifest.Step); }
        finally { foreach (var t in state.Values) t.Dispose(); }
        step = (int)checkpoint.Manifest.Step;
        tokensSeen = checkpoint.Manifest.TokensSeen;
        train.RestoreState(checkpoint.Manifest.State["data"] ?? throw new InvalidDataException($"{checkpoint.Name}: manifest has no data cursor"));
    }

    /// <summary>Trains until options.Steps (or <paramref name="stopAfterStep"/>, checkpointing there), evaluating and
    /// checkpointing on the way; returns the final figures. Cancellation finishes the current step and checkpoints first.</summary>
    public async Task<TrainingResult> RunAsync(int? stopAfterStep = null, CancellationToken ct = default)
    {
        int endStep = Math.Min(stopAfterStep ?? options.Steps, options.Steps);
        var clock = Stopwatch.StartNew();
        double lastLoss = double.NaN;
        double? valLoss = null;
        var inputs = new long[options.BatchSize * options.SequenceLength];
        var targets = new long[inputs.Length];
        while (step < endStep)
        {
            var t0 = Stopwatch.GetTimestamp();
            var (lr, wd) = TwoStageSchedule.At(options, step);
            lastLoss = TrainStep(inputs, targets, lr, wd);
            step++;
            tokensSeen += options.TokensPerStep;
            double ms = Stopwatch.GetElapsedTime(t0).TotalMilliseconds;
            onEvent(new StepEvent(step, lastLoss, lr, options.TokensPerStep / (ms / 1000), tokensSeen, ms));
            if (!double.IsFinite(lastLoss))
                throw new InvalidOperationException($"loss became {lastLoss} at step {step}; lower the learning rate ({options.LearningRate})") { Source = "Duck" };
            bool last = step == endStep || ct.IsCancellationRequested;
            if (validation is not null && (last || (options.EvalEvery > 0 && step % options.EvalEvery == 0)))
            {
                valLoss = Evaluate();
                onEvent(new EvalEvent(step, valLoss.Value));
            }
            if (checkpoints is not null && (last || (options.CheckpointEvery > 0 && step % options.CheckpointEvery == 0)))
                onEvent(new CheckpointEvent(step, await SaveCheckpointAsync(CancellationToken.None)));
            ct.ThrowIfCancellationRequested();
        }
        return new TrainingResult(step, tokensSeen, lastLoss, valLoss, clock.Elapsed.TotalSeconds);
    }

    /// <summary>Forward, backward over every micro-batch, clip, update. Returns the mean loss.</summary>
    double TrainStep(long[] inputs, long[] targets, double lr, double wd)
    {
        Model.train();
        double lossSum = 0;
        for (int micro = 0; micro < options.GradAccumulation; micro++)
        {
            train.Next(inputs, targets);
            using var scope = NewDisposeScope();
            var x = tensor(inputs, new long[] { options.BatchSize, options.SequenceLength });
            var y = tensor(targets, new long[] { options.BatchSize, options.SequenceLength });
            var loss = Model.Loss(x, y);
            using var share = options.GradAccumulation.ToScalar(); // held: see BitQuant on implicit Scalar temporaries
            loss.div(share).backward();
            lossSum += loss.item<float>();
        }
        if (options.GradClip > 0) nn.utils.clip_grad_norm_(Model.parameters(), options.GradClip);
        optimizer.Step(lr, wd);
        optimizer.ZeroGrad();
        return lossSum / options.GradAccumulation;
    }

    /// <summary>Mean validation loss over options.EvalBatches batches (no gradients).</summary>
    public double Evaluate() => Evaluate(Model, validation ?? throw new InvalidOperationException("no validation data"),
                                         options.BatchSize, options.SequenceLength, options.EvalBatches);

    public static double Evaluate(DuckTransformer model, IValidationSource validation, int batchSize, int sequenceLength, int maxBatches)
    {
        model.eval();
        using var noGrad = no_grad();
        double sum = 0;
        int count = 0;
        foreach (var (inputs, targets) in validation.Batches(batchSize, sequenceLength, maxBatches))
        {
            using var scope = NewDisposeScope();
            int b = inputs.Length / sequenceLength;
            sum += model.Loss(tensor(inputs, new long[] { b, sequenceLength }), tensor(targets, new long[] { b, sequenceLength })).item<float>();
            count++;
        }
        if (count == 0) throw new InvalidDataException($"validation data holds no window of {sequenceLength + 1} tokens");
        return sum / count;
    }

    public async Task<string> SaveCheckpointAsync(CancellationToken ct = default)
    {
        if (checkpoints is null) throw new InvalidOperationException("no checkpoint store");
        var files = new Dictionary<string, byte[]>
        {
            [ModelFile] = ModelWeights.ToSafetensors(ModelWeights.Export(Model),
                new Dictionary<string, string> { ["duck.config"] = JsonSerializer.Serialize(Model.Config) }),
            [OptimizerFile] = ModelWeights.ToSafetensors(optimizer.State().Select(s => ModelWeights.ToNamed(s.Name, s.Value))),
        };
        var manifest = new CheckpointManifest
        {
            Step = step,
            TokensSeen = tokensSeen,
            Model = (JsonObject)JsonSerializer.SerializeToNode(Model.Config)!,
            Training = (JsonObject)JsonSerializer.SerializeToNode(options)!,
            State = new JsonObject { ["data"] = train.SaveState(), ["optimizer_steps"] = optimizer.StepCount, ["run"] = RunState?.DeepClone() },
            CreatedUtc = DateTimeOffset.UtcNow,
        };
        return await checkpoints.SaveAsync(manifest, files, ct);
    }

    public void Dispose()
    {
        optimizer.Dispose();
        Model.Dispose();
    }
}
