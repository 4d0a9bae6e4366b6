// Runs `duck train`: binds options, opens data and the run folder, resumes when asked, drives the trainer with
// a progress bar (or JSON lines), and writes the loss chart and a summary at the end.
using System.CommandLine;
using System.Text.Json;
using Duck.Core.Checkpoints;
using Duck.Core.Data;
using Duck.Core.Model;
using Duck.Model;
using Spectre.Console;

namespace Duck.Coordinator;

static class TrainHandler
{
    public static async Task<int> RunAsync(TrainFlags f, ParseResult pr, CancellationToken ct)
    {
        var options = f.Bind(pr);
        var model = ModelPresets.Get(options.Preset) with { Ternary = !options.Fp32, TiedHead = options.TiedHead };
        string outDir = pr.GetValue(f.Out) ?? Path.Combine("runs", options.Preset + (options.Fp32 ? "-fp32" : ""));
        bool json = pr.GetValue(f.Json), resume = pr.GetValue(f.Resume);
        RunFolder.EnsureWritable(outDir);
        var checkpoints = new CheckpointManager(new FolderCheckpointStore(Path.Combine(outDir, TrainingRun.CheckpointFolder)), options.KeepCheckpoints);
        var latest = await checkpoints.LoadLatestAsync(ct);
        if (resume)
        {
            if (latest is null) throw new UserErrorException($"nothing to resume: no checkpoint in '{outDir}'");
            var saved = latest.Manifest.Training.Deserialize<TrainingOptions>()!;
            options = saved with { Steps = pr.GetValue(f.Steps) ?? saved.Steps }; // the checkpoint's options win; --steps may extend
            model = latest.Manifest.Model.Deserialize<ModelConfig>()!;
            RunFolder.TruncateMetrics(outDir, latest.Manifest.Step);
        }
        else if (latest is not null)
            throw new UserErrorException($"'{outDir}' already holds checkpoint {latest.Name}; pass --resume to continue it or --out for a new run");
        else RunFolder.ResetMetrics(outDir);
        options.Validate(model.ContextLength);

        var (data, dataFolder) = TrainingRun.OpenData(pr.GetValue(f.Data)!);
        var trainShard = TrainingRun.OpenTrainShard(data, dataFolder);
        var valShard = TrainingRun.OpenValidationShard(data, dataFolder);
        File.WriteAllText(Path.Combine(outDir, "config.json"), JsonSerializer.Serialize(new { model, training = options }, new JsonSerializerOptions { WriteIndented = true }));
        if (!json)
            Console.WriteLine($"training {options.Preset}{(options.Fp32 ? " (FP32 twin)" : "")}: {model.TotalParameters:N0} parameters " +
                              $"({model.TernaryParameters:N0} ternary), {options.Steps} steps x {options.TokensPerStep:N0} tokens, " +
                              $"data {dataFolder} ({trainShard.TokenCount:N0} train tokens), run folder {outDir}");

        var progress = new TrainingProgress(options, json, outDir);
        using var trainer = new Trainer(model, options, new ShardBatchSource(trainShard, options.BatchSize, options.SequenceLength, (ulong)options.Seed),
                                        new ShardValidation(valShard), checkpoints, progress.OnEvent);
        if (resume) await trainer.TryResumeAsync(ct);
        var result = await progress.RunAsync(() => trainer.RunAsync(ct: ct), trainer.Step);

        TrainingRun.WriteChart(Path.Combine(outDir, TrainingRun.ChartFile), new[] { (options.Preset + (options.Fp32 ? "-fp32" : ""), outDir) });
        double unigram = UnigramLoss(trainShard, valShard);
        var summary = new
        {
            @event = "done", steps = result.Steps, tokens_seen = result.TokensSeen, loss = result.FinalLoss, val_loss = result.ValLoss,
            unigram_val_loss = unigram, elapsed_s = result.ElapsedSeconds, out_dir = outDir,
        };
        if (json) Cli.WriteJson(summary);
        else
            Console.WriteLine($"done: {result.Steps} steps in {result.ElapsedSeconds:F0} s; train loss {result.FinalLoss:F3}, " +
                              $"validation loss {result.ValLoss:F3} (a unigram model scores {unigram:F3}; uniform guessing {Math.Log(model.VocabSize):F3}); " +
                              $"chart {Path.Combine(outDir, TrainingRun.ChartFile)}, checkpoints {Path.Combine(outDir, TrainingRun.CheckpointFolder)}");
        return 0;
    }

    /// <summary>Cross-entropy of the validation tokens under the training set's add-one-smoothed unigram distribution.</summary>
    public static double UnigramLoss(TokenShard train, TokenShard validation)
    {
        var counts = new double[Math.Max(train.VocabSize, 65536)];
        foreach (ushort t in train.Tokens) counts[t]++;
        double total = train.TokenCount + train.VocabSize, sum = 0;
        foreach (ushort t in validation.Tokens) sum -= Math.Log((counts[t] + 1) / total);
        return sum / Math.Max(1, validation.TokenCount);
    }
}

/// <summary>Shows training progress: a Spectre progress bar on a terminal, a line every 5% when redirected, or JSON lines.</summary>
sealed class TrainingProgress(TrainingOptions options, bool json, string runFolder)
{
    ProgressTask? bar;
    double lastLoss = double.NaN, lastVal = double.NaN;

    public void OnEvent(TrainingEvent e)
    {
        object line = e switch
        {
            StepEvent s => new { @event = "step", step = s.Step, loss = s.Loss, lr = s.LearningRate, tokens_per_s = s.TokensPerSecond, tokens_seen = s.TokensSeen, step_time_ms = s.StepTimeMs },
            EvalEvent v => new { @event = "eval", step = v.Step, val_loss = v.ValLoss },
            CheckpointEvent c => new { @event = "checkpoint", step = c.Step, name = c.Name },
            _ => throw new ArgumentOutOfRangeException(nameof(e)),
        };
        if (e is not CheckpointEvent) TrainingRun.AppendMetric(runFolder, line);
        if (json) { Cli.WriteJson(line); return; }
        if (e is StepEvent step)
        {
            lastLoss = step.Loss;
            string text = $"step {step.Step}/{options.Steps} loss {step.Loss:F3} lr {step.LearningRate:0.0e0} {step.TokensPerSecond:N0} tok/s" +
                          (double.IsNaN(lastVal) ? "" : $" val {lastVal:F3}");
            if (bar is not null) { bar.Value = step.Step; bar.Description = Markup.Escape(text); }
            else if (step.Step % Math.Max(1, options.Steps / 20) == 0 || step.Step == options.Steps) Console.WriteLine(text);
        }
        else if (e is EvalEvent ev)
        {
            lastVal = ev.ValLoss;
            if (bar is null) Console.WriteLine($"step {ev.Step}: validation loss {ev.ValLoss:F3}");
        }
    }

    public async Task<TrainingResult> RunAsync(Func<Task<TrainingResult>> run, int startStep)
    {
        if (json || Console.IsOutputRedirected) return await run();
        TrainingResult? result = null;
        await AnsiConsole.Progress()
            .Columns(new TaskDescriptionColumn { Alignment = Justify.Left }, new ProgressBarColumn(), new PercentageColumn(), new RemainingTimeColumn())
            .StartAsync(async ctx =>
            {
                bar = ctx.AddTask("starting", maxValue: options.Steps);
                bar.Value = startStep;
                result = await run();
            });
        return result!;
    }
}

static class RunFolder
{
    public static void EnsureWritable(string dir)
    {
        try
        {
            Directory.CreateDirectory(dir);
            string probe = Path.Combine(dir, $".write-test-{Environment.ProcessId}");
            File.WriteAllText(probe, "");
            File.Delete(probe);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new UserErrorException($"cannot write to output folder '{dir}': {e.Message}");
        }
    }

    public static void ResetMetrics(string dir) => File.Delete(Path.Combine(dir, TrainingRun.MetricsFile));

    /// <summary>Drops logged events after <paramref name="step"/>, which a resumed run will redo.</summary>
    public static void TruncateMetrics(string dir, long step)
    {
        string file = Path.Combine(dir, TrainingRun.MetricsFile);
        if (!File.Exists(file)) return;
        var keep = File.ReadLines(file).Where(l => !string.IsNullOrWhiteSpace(l) &&
            System.Text.Json.Nodes.JsonNode.Parse(l)!["step"]!.GetValue<long>() <= step).ToList();
        File.WriteAllLines(file, keep);
    }
}
