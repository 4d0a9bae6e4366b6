// `duck finetune`: supervised fine-tuning of a pretrained checkpoint on chat conversations (a persona file), with
// the loss on the assistant's tokens only and a share of pretraining text mixed in; same checkpoints, resume and
// progress display as `duck train`. The held-out persona file is the validation set. Not the evaluation: see
// PersonaEvalCommand.cs.
using System.CommandLine;
using System.Security.Cryptography;
using System.Text.Json;
using System.Text.Json.Nodes;
using Duck.Core.Checkpoints;
using Duck.Core.Data;
using Duck.Core.Model;
using Duck.Core.Persona;
using Duck.Core.Text;
using Duck.Model;

namespace Duck.Coordinator;

/// <summary>What a fine-tune run was started from; saved in every checkpoint (state.run) so --resume reopens the same data.</summary>
public sealed record FinetuneRunState
{
    public string Kind { get; init; } = "finetune";
    /// <summary>The checkpoint the weights came from (folder path or azure: location).</summary>
    public required string Base { get; init; }
    public required string Data { get; init; }
    public required string DataSha256 { get; init; }
    public string? ValidationData { get; init; }
    public string? PretrainingData { get; init; }
    public double Mix { get; init; }
}

public static class FinetuneCommands
{
    public const string DefaultPersonaFile = "persona/duck_personality.jsonl";
    static readonly JsonSerializerOptions SnakeCase = new() { PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower };

    public static void Register(RootCommand root) => root.Subcommands.Add(Command());

    static Command Command()
    {
        var baseCheckpoint = new Option<string?>("--base") { Description = "Pretrained checkpoint: checkpoint folder, run folder (newest) or azure:CONTAINER[/PREFIX]" };
        var data = new Option<string>("--data") { Description = "Persona conversations (JSONL, OpenAI-style messages; see persona/README.md)", DefaultValueFactory = _ => DefaultPersonaFile };
        var valData = new Option<string?>("--val-data") { Description = "Held-out conversations for validation (default: DATA's .heldout.jsonl sibling when it exists)" };
        var pretrain = new Option<string>("--pretrain-data") { Description = "Prepared pretraining data mixed in so the model keeps its language", DefaultValueFactory = _ => Path.Combine("data", "brown") };
        var mix = new Option<double>("--mix") { Description = "Share of rows that are pretraining text (0: none)", DefaultValueFactory = _ => 0.15 };
        var output = new Option<string?>("--out") { Description = "Run folder (default runs/<preset>-duck)" };
        var resume = new Option<bool>("--resume") { Description = "Continue from the run folder's newest checkpoint" };
        var json = new Option<bool>("--json") { Description = "One JSON object per step/eval on stdout instead of a progress bar" };
        var steps = new Option<int?>("--steps") { Description = "Optimizer steps (default 240)" };
        var lr = new Option<double?>("--lr") { Description = "Peak learning rate" };
        var batch = new Option<int?>("--batch-size") { Description = "Sequences per step" };
        var seed = new Option<long?>("--seed") { Description = "Seed for data order" };
        var evalEvery = new Option<int?>("--eval-every") { Description = "Validate every N steps" };
        var checkpointEvery = new Option<int?>("--checkpoint-every") { Description = "Checkpoint every N steps" };
        var threads = new Option<int?>("--threads") { Description = "libtorch threads (0: all cores)" };
        var cmd = new Command("finetune", "Fine-tune a pretrained checkpoint on chat conversations (loss on the assistant's replies only)")
        {
            baseCheckpoint, data, valData, pretrain, mix, output, resume, json, steps, lr, batch, seed, evalEvery, checkpointEvery, threads,
        };
        cmd.SetAction(async (pr, ct) =>
        {
            bool asJson = pr.GetValue(json), isResume = pr.GetValue(resume);
            string? outDir = pr.GetValue(output);
            TrainingOptions options;
            ModelConfig model;
            FinetuneRunState run;
            LoadedCheckpoint? baseLoaded = null;
            CheckpointManager checkpoints;
            if (isResume)
            {
                if (outDir is null) throw new UserErrorException("--resume needs --out, the fine-tune run folder to continue");
                var latest = await Checkpoints(outDir, int.MaxValue).LoadLatestAsync(ct) ?? throw new UserErrorException($"nothing to resume: no checkpoint in '{outDir}'");
                run = latest.Manifest.State["run"].Deserialize<FinetuneRunState>(SnakeCase)
                      ?? throw new UserErrorException($"'{outDir}' is not a fine-tune run (its checkpoint has no fine-tune state); use duck train --resume");
                var saved = latest.Manifest.Training.Deserialize<TrainingOptions>()!;
                options = saved with { Steps = pr.GetValue(steps) ?? saved.Steps };
                model = latest.Manifest.Model.Deserialize<ModelConfig>()!;
                checkpoints = Checkpoints(outDir, options.KeepCheckpoints);
                if (Sha256(run.Data) != run.DataSha256)
                    throw new UserErrorException($"'{run.Data}' changed since this fine-tune started; start a new run (--out) instead of resuming");
                RunFolder.TruncateMetrics(outDir, latest.Manifest.Step);
            }
            else
            {
                string basePath = pr.GetValue(baseCheckpoint) ?? throw new UserErrorException("--base is required: the pretrained checkpoint to fine-tune (e.g. runs/mini)");
                baseLoaded = await TrainingRun.LoadCheckpointAsync(basePath, ct);
                model = baseLoaded.Manifest.Model.Deserialize<ModelConfig>()!;
                var pretraining = baseLoaded.Manifest.Training.Deserialize<TrainingOptions>() ?? new TrainingOptions();
                options = TrainingOptions.ForFinetune(pretraining, model.ContextLength, model.ModelDim);
                options = options with
                {
                    Steps = pr.GetValue(steps) ?? options.Steps, LearningRate = pr.GetValue(lr) ?? options.LearningRate,
                    BatchSize = pr.GetValue(batch) ?? options.BatchSize, Seed = pr.GetValue(seed) ?? options.Seed,
                    EvalEvery = pr.GetValue(evalEvery) ?? options.EvalEvery, CheckpointEvery = pr.GetValue(checkpointEvery) ?? options.CheckpointEvery,
                    Threads = pr.GetValue(threads) ?? options.Threads,
                };
                options = options with { SecondStageLearningRate = Math.Min(options.SecondStageLearningRate, options.LearningRate) };
                if (options.WarmupSteps >= options.Steps) options = options with { WarmupSteps = options.Steps / 10 };
                double share = pr.GetValue(mix);
                if (share is < 0 or >= 1) throw new UserErrorException($"--mix must be in [0, 1), got {share}");
                string dataFile = Path.GetFullPath(pr.GetValue(data)!);
                string? val = pr.GetValue(valData) is { } v ? Path.GetFullPath(v) : HeldOutSibling(dataFile);
                run = new FinetuneRunState
                {
                    Base = ResolvedLocation(basePath, baseLoaded), Data = dataFile, DataSha256 = File.Exists(dataFile) ? Sha256(dataFile) : "",
                    ValidationData = val, PretrainingData = share > 0 ? Path.GetFullPath(pr.GetValue(pretrain)!) : null, Mix = share,
                };
                outDir ??= Path.Combine("runs", options.Preset + "-duck");
                checkpoints = Checkpoints(outDir, options.KeepCheckpoints);
                if (await checkpoints.LoadLatestAsync(ct) is { } existing)
                    throw new UserErrorException($"'{outDir}' already holds checkpoint {existing.Name}; pass --resume to continue it or --out for a new run");
                RunFolder.ResetMetrics(outDir);
            }
            try { options.Validate(model.ContextLength); }
            catch (ArgumentException e) { throw new UserErrorException(e.Message); }

            var trainConversations = LoadPersona(run.Data);
            var samples = SftSamples.Build(trainConversations, options.SequenceLength + 1);
            IValidationSource? validation = null;
            int heldOut = 0;
            if (run.ValidationData is { } valFile)
            {
                var conversations = LoadPersona(valFile);
                heldOut = conversations.Count;
                validation = new SftValidation(SftSamples.Build(conversations, options.SequenceLength + 1));
            }
            TokenShard? pretrainShard = null;
            if (run.PretrainingData is { } pretrainFolder)
            {
                try { var (manifest, folder) = TrainingRun.OpenData(pretrainFolder); pretrainShard = TrainingRun.OpenTrainShard(manifest, folder); }
                catch (Exception e) when (e is IOException or InvalidDataException or UserErrorException)
                { throw new UserErrorException($"pretraining data for the mix: {e.Message} (prepare it with duck data prepare, or pass --mix 0)"); }
            }
            RunFolder.EnsureWritable(outDir);
            File.WriteAllText(Path.Combine(outDir, "config.json"), JsonSerializer.Serialize(new { model, training = options, run }, new JsonSerializerOptions { WriteIndented = true }));
            if (!asJson)
                Console.WriteLine($"fine-tuning {options.Preset} from {run.Base}: {trainConversations.Count} conversations ({samples.Count} examples, " +
                                  $"{samples.Sum(s => s.Trained.Count(t => t)):N0} reply tokens) from {run.Data}, {run.Mix:P0} pretraining text, " +
                                  $"{options.Steps} steps x {options.BatchSize} x {options.SequenceLength} tokens; validation: {heldOut} held-out conversations; run folder {outDir}");

            var progress = new TrainingProgress(options, asJson, outDir);
            using var trainer = new Trainer(model, options, new SftBatchSource(samples, options.BatchSize, options.SequenceLength, (ulong)options.Seed, pretrainShard, run.Mix),
                                            validation, checkpoints, progress.OnEvent)
            { RunState = (JsonObject)JsonSerializer.SerializeToNode(run, SnakeCase)! };
            if (isResume)
            {
                await trainer.TryResumeAsync(ct);
                if (trainer.Step >= options.Steps)
                {
                    if (asJson) Cli.WriteJson(new { @event = "done", steps = trainer.Step, out_dir = outDir, already_complete = true });
                    else Console.WriteLine($"{outDir} is already complete at step {trainer.Step} (pass --steps N to continue further)");
                    return 0;
                }
            }
            else
            {
                trainer.LoadWeights(baseLoaded!);
                if (validation is not null) progress.OnEvent(new EvalEvent(0, trainer.Evaluate()));
            }
            var result = await progress.RunAsync(() => trainer.RunAsync(ct: ct), trainer.Step);

            TrainingRun.WriteChart(Path.Combine(outDir, TrainingRun.ChartFile), new[] { (options.Preset + "-duck", outDir) });
            var summary = new { @event = "done", steps = result.Steps, loss = result.FinalLoss, val_loss = result.ValLoss, elapsed_s = result.ElapsedSeconds, out_dir = outDir };
            if (asJson) Cli.WriteJson(summary);
            else
                Console.WriteLine($"done: {result.Steps} steps in {result.ElapsedSeconds:F0} s; train loss {result.FinalLoss:F3}, held-out reply loss {result.ValLoss:F3}; " +
                                  $"chart {Path.Combine(outDir, TrainingRun.ChartFile)}, checkpoints {Path.Combine(outDir, TrainingRun.CheckpointFolder)}");
            return 0;
        });
        return cmd;
    }

    static CheckpointManager Checkpoints(string outDir, int keep)
    {
        RunFolder.EnsureWritable(outDir);
        return new CheckpointManager(new FolderCheckpointStore(Path.Combine(outDir, TrainingRun.CheckpointFolder)), keep);
    }

    /// <summary>persona/x.jsonl → persona/x.heldout.jsonl when that file exists.</summary>
    public static string? HeldOutSibling(string dataFile)
    {
        string candidate = Path.ChangeExtension(dataFile, null) + ".heldout.jsonl";
        return File.Exists(candidate) && Path.GetFullPath(candidate) != Path.GetFullPath(dataFile) ? candidate : null;
    }

    /// <summary>The conversations of a persona file; a missing file or its first errors become one user error.</summary>
    public static IReadOnlyList<Conversation> LoadPersona(string path)
    {
        if (!File.Exists(path)) throw new UserErrorException($"persona file '{path}' does not exist");
        try { return PersonaDataset.Load(path); }
        catch (InvalidDataException e) { throw new UserErrorException(e.Message.ReplaceLineEndings("; ")); }
    }

    /// <summary>Where the base checkpoint lives, pinned to the exact checkpoint (a run folder's newest may change later).</summary>
    public static string ResolvedLocation(string path, LoadedCheckpoint loaded)
    {
        if (path.StartsWith("azure:", StringComparison.OrdinalIgnoreCase)) return path;
        string full = Path.GetFullPath(path);
        if (File.Exists(Path.Combine(full, CheckpointManager.ManifestFileName))) return full;
        string root = Directory.Exists(Path.Combine(full, TrainingRun.CheckpointFolder)) ? Path.Combine(full, TrainingRun.CheckpointFolder) : full;
        return Path.Combine(root, loaded.Name);
    }

    static string Sha256(string file) => Convert.ToHexStringLower(SHA256.HashData(File.ReadAllBytes(file)));
}
