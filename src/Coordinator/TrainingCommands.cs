// `duck info`, `duck train`, `duck eval` and `duck plot`: the single-process model commands. Options come from
// a JSON config file (--config, keys as in TrainingOptions, snake_case) and then flags; unknown keys are errors.
using System.CommandLine;
using System.Text.Json;
using System.Text.Json.Serialization;
using Duck.Core.Checkpoints;
using Duck.Core.Model;
using Duck.Model;
using Spectre.Console;

namespace Duck.Coordinator;

public static class TrainingCommands
{
    public static void Register(RootCommand root)
    {
        root.Subcommands.Add(InfoCommand());
        root.Subcommands.Add(TrainCommand());
        root.Subcommands.Add(EvalCommand());
        root.Subcommands.Add(PlotCommand());
        BenchCommands.Register(root);
    }

    static Command InfoCommand()
    {
        var preset = new Option<string>("--preset") { Description = "Model preset", Required = true };
        var tied = new Option<bool>("--tied-head") { Description = "Tie the LM head to the embedding" };
        var json = new Option<bool>("--json") { Description = "Print one JSON object" };
        var cmd = new Command("info", "Architecture, parameter counts and sizes of a preset") { preset, tied, json };
        cmd.SetAction(pr =>
        {
            var c = ModelPresets.Get(pr.GetValue(preset)!) with { TiedHead = pr.GetValue(tied) };
            long fp16Bytes = c.FullPrecisionParameters * 2;
            var info = new
            {
                preset = pr.GetValue(preset), layers = c.NumLayers, model_dim = c.ModelDim, heads = c.NumHeads,
                ffn_dim = c.FfnDim, vocab_size = c.VocabSize, context_length = c.ContextLength, tied_head = c.TiedHead,
                total_parameters = c.TotalParameters, ternary_parameters = c.TernaryParameters,
                full_precision_parameters = c.FullPrecisionParameters,
                fp32_bytes = c.TotalParameters * 4,
                ternary_2bit_bytes = c.TernaryParameters * 2 / 8,
                ternary_1_6bit_bytes = (long)(c.TernaryParameters * 1.6 / 8),
                model_2bit_bytes = c.TernaryParameters * 2 / 8 + fp16Bytes,
                model_1_6bit_bytes = (long)(c.TernaryParameters * 1.6 / 8) + fp16Bytes,
            };
            if (pr.GetValue(json)) { Cli.WriteJson(info); return 0; }
            var table = new Table().AddColumns("", "value");
            foreach (var p in info.GetType().GetProperties())
                table.AddRow(p.Name, p.GetValue(info) is long l ? l.ToString("N0") : p.GetValue(info)?.ToString() ?? "");
            AnsiConsole.Write(table);
            Console.WriteLine("sizes: *_2bit and *_1_6bit count ternary weights at 2 and 1.6 bits; model_* add the full-precision weights at fp16.");
            return 0;
        });
        return cmd;
    }

    static Command TrainCommand()
    {
        var o = new TrainFlags();
        var cmd = new Command("train", "Train a model on prepared data in this process");
        o.AddTo(cmd);
        cmd.SetAction((pr, ct) => TrainHandler.RunAsync(o, pr, ct));
        return cmd;
    }

    static Command EvalCommand()
    {
        var checkpoint = new Option<string>("--checkpoint") { Description = "Checkpoint folder, run folder, or azure:CONTAINER[/PREFIX] (newest checkpoint there; needs DUCK_STORAGE_CONNECTION_STRING)", Required = true };
        var data = new Option<string?>("--data") { Description = "Token shard to evaluate (default: the validation shard of data/brown)" };
        var batches = new Option<int>("--batches") { Description = "At most this many batches of 8", DefaultValueFactory = _ => 200 };
        var json = new Option<bool>("--json") { Description = "Print one JSON object" };
        var cmd = new Command("eval", "Validation loss and perplexity of a checkpoint (duck eval persona: the persona evaluation)") { checkpoint, data, batches, json };
        cmd.Subcommands.Add(PersonaEvalCommand.Command());
        cmd.SetAction(async (pr, ct) =>
        {
            var loaded = await TrainingRun.LoadCheckpointAsync(pr.GetValue(checkpoint)!, ct);
            using var model = TrainingRun.ModelFrom(loaded);
            var training = loaded.Manifest.Training.Deserialize<TrainingOptions>();
            int seq = training?.SequenceLength ?? model.Config.ContextLength;
            string dataPath = pr.GetValue(data) ?? "";
            Duck.Core.Data.TokenShard shard;
            if (dataPath == "")
            {
                var (m, folder) = TrainingRun.OpenData(Path.Combine("data", "brown"));
                shard = TrainingRun.OpenValidationShard(m, folder);
            }
            else shard = Duck.Core.Data.TokenShard.Open(dataPath);
            double loss = Trainer.Evaluate(model, new ShardValidation(shard), 8, seq, pr.GetValue(batches));
            var result = new { checkpoint = loaded.Name, step = loaded.Manifest.Step, data = shard.Path, val_loss = loss, perplexity = Math.Exp(loss) };
            if (pr.GetValue(json)) Cli.WriteJson(result);
            else Console.WriteLine($"{loaded.Name} (step {loaded.Manifest.Step}) on {shard.Path}: validation loss {loss:F4}, perplexity {Math.Exp(loss):F1}");
            return 0;
        });
        return cmd;
    }

    static Command PlotCommand()
    {
        var runs = new Argument<string[]>("runs") { Description = "Run folders (e.g. a ternary run and its FP32 twin)", Arity = ArgumentArity.OneOrMore };
        var output = new Option<string?>("--out") { Description = "SVG file to write (default: loss-compare.svg in the first run)" };
        var cmd = new Command("plot", "Draw train and validation loss of one or more runs on one chart") { runs, output };
        cmd.SetAction(pr =>
        {
            var folders = pr.GetValue(runs)!;
            string outFile = pr.GetValue(output) ?? Path.Combine(folders[0], "loss-compare.svg");
            TrainingRun.WriteChart(outFile, folders.Select(f => (Path.GetFileName(Path.GetFullPath(f)), f)).ToList());
            Console.WriteLine($"wrote {outFile}");
            return 0;
        });
        return cmd;
    }
}

/// <summary>The flags of `duck train`; each overrides the same key of --config.</summary>
sealed class TrainFlags
{
    public readonly Option<string> Preset = new("--preset") { Description = "Model preset (tiny, mini, small, 700m, 1.3b, 3b)", DefaultValueFactory = _ => "mini" };
    public readonly Option<int?> Steps = new("--steps") { Description = "Optimizer steps" };
    public readonly Option<long?> Tokens = new("--tokens") { Description = "Train on about this many tokens (sets --steps)" };
    public readonly Option<bool> Fp32 = new("--fp32") { Description = "Train the FP32 twin (quantization off)" };
    public readonly Option<bool> TiedHead = new("--tied-head") { Description = "Tie the LM head to the embedding (for llama.cpp export)" };
    public readonly Option<string?> Out = new("--out") { Description = "Run folder (default runs/<preset>[-fp32])" };
    public readonly Option<string> Data = new("--data") { Description = "Prepared data folder", DefaultValueFactory = _ => Path.Combine("data", "brown") };
    public readonly Option<bool> Resume = new("--resume") { Description = "Continue from the run folder's newest checkpoint" };
    public readonly Option<bool> Json = new("--json") { Description = "One JSON object per step/eval on stdout instead of a progress bar" };
    public readonly Option<string?> Config = new("--config") { Description = "JSON file of training options (snake_case keys)" };
    public readonly Option<int?> BatchSize = new("--batch-size") { Description = "Sequences per micro-batch" };
    public readonly Option<int?> SequenceLength = new("--seq-len") { Description = "Tokens per sequence" };
    public readonly Option<int?> GradAccumulation = new("--grad-accum") { Description = "Micro-batches per step" };
    public readonly Option<double?> LearningRate = new("--lr") { Description = "Peak learning rate" };
    public readonly Option<double?> SecondStageLearningRate = new("--lr2") { Description = "Second-stage learning rate" };
    public readonly Option<int?> WarmupSteps = new("--warmup") { Description = "Warm-up steps" };
    public readonly Option<double?> WeightDecay = new("--weight-decay") { Description = "First-stage weight decay" };
    public readonly Option<double?> GradClip = new("--grad-clip") { Description = "Gradient-norm clip (0: off)" };
    public readonly Option<long?> Seed = new("--seed") { Description = "Seed for initialization and data order" };
    public readonly Option<int?> EvalEvery = new("--eval-every") { Description = "Validate every N steps" };
    public readonly Option<int?> EvalBatches = new("--eval-batches") { Description = "Batches per validation" };
    public readonly Option<int?> CheckpointEvery = new("--checkpoint-every") { Description = "Checkpoint every N steps" };
    public readonly Option<int?> KeepCheckpoints = new("--keep") { Description = "Checkpoints to keep" };
    public readonly Option<int?> Threads = new("--threads") { Description = "libtorch threads (0: all cores)" };

    public void AddTo(Command cmd)
    {
        foreach (var f in GetType().GetFields()) cmd.Options.Add((Option)f.GetValue(this)!);
    }

    static readonly JsonSerializerOptions ConfigJson = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        UnmappedMemberHandling = JsonUnmappedMemberHandling.Disallow,
        ReadCommentHandling = JsonCommentHandling.Skip,
    };

    /// <summary>Preset defaults, then the config file, then flags.</summary>
    public TrainingOptions Bind(ParseResult pr)
    {
        string preset = pr.GetValue(Preset)!;
        ModelPresets.Get(preset);
        var o = TrainingOptions.ForPreset(preset);
        if (pr.GetValue(Config) is { } file)
        {
            if (!File.Exists(file)) throw new UserErrorException($"config file '{file}' does not exist");
            try { o = JsonSerializer.Deserialize<TrainingOptions>(File.ReadAllText(file), ConfigJson)! with { Preset = preset }; }
            catch (JsonException e) { throw new UserErrorException($"config file '{file}': {e.Message}"); }
        }
        T Pick<T>(Option<T?> flag, T current) where T : struct => pr.GetValue(flag) ?? current;
        o = o with
        {
            Steps = Pick(Steps, o.Steps), BatchSize = Pick(BatchSize, o.BatchSize), SequenceLength = Pick(SequenceLength, o.SequenceLength),
            GradAccumulation = Pick(GradAccumulation, o.GradAccumulation), LearningRate = Pick(LearningRate, o.LearningRate),
            SecondStageLearningRate = Pick(SecondStageLearningRate, o.SecondStageLearningRate), WarmupSteps = Pick(WarmupSteps, o.WarmupSteps),
            WeightDecay = Pick(WeightDecay, o.WeightDecay), GradClip = Pick(GradClip, o.GradClip), Seed = Pick(Seed, o.Seed),
            EvalEvery = Pick(EvalEvery, o.EvalEvery), EvalBatches = Pick(EvalBatches, o.EvalBatches),
            CheckpointEvery = Pick(CheckpointEvery, o.CheckpointEvery), KeepCheckpoints = Pick(KeepCheckpoints, o.KeepCheckpoints),
            Threads = Pick(Threads, o.Threads), Fp32 = o.Fp32 || pr.GetValue(Fp32), TiedHead = o.TiedHead || pr.GetValue(TiedHead),
        };
        if (pr.GetValue(Tokens) is { } tokens)
        {
            if (pr.GetValue(Steps) is not null) throw new UserErrorException("give --steps or --tokens, not both");
            if (tokens <= 0) throw new UserErrorException($"--tokens must be positive, got {tokens}");
            o = o with { Steps = (int)Math.Max(1, tokens / o.TokensPerStep) };
        }
        // A short run keeps the preset's warm-up proportion unless --warmup says otherwise.
        if (pr.GetValue(WarmupSteps) is null && o.WarmupSteps >= o.Steps) o = o with { WarmupSteps = o.Steps / 10 };
        return o;
    }
}
