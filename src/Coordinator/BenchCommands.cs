// `duck bench train`: training throughput and model FLOPs utilization (MFU) against the fp32 matmul peak of this
// machine, measured by the same command. Other `duck bench` subcommands attach to the same `bench` group.
using System.CommandLine;
using System.Diagnostics;
using Duck.Core.Model;
using Duck.Model;
using static TorchSharp.torch;

namespace Duck.Coordinator;

public static class BenchCommands
{
    /// <summary>The `bench` command group of the root, created on first use.</summary>
    public static Command Group(RootCommand root)
    {
        var existing = root.Subcommands.FirstOrDefault(c => c.Name == "bench");
        if (existing is not null) return existing;
        var bench = new Command("bench", "Benchmarks that print figures (run them alone on the machine)");
        root.Subcommands.Add(bench);
        return bench;
    }

    public static void Register(RootCommand root) => Group(root).Subcommands.Add(TrainBench());

    static Command TrainBench()
    {
        var preset = new Option<string>("--preset") { Description = "Model preset", DefaultValueFactory = _ => "small" };
        var batch = new Option<int>("--batch-size") { Description = "Sequences per step", DefaultValueFactory = _ => 8 };
        var seq = new Option<int>("--seq-len") { Description = "Tokens per sequence", DefaultValueFactory = _ => 256 };
        var steps = new Option<int>("--steps") { Description = "Timed steps (after one warm-up step)", DefaultValueFactory = _ => 4 };
        var fp32 = new Option<bool>("--fp32") { Description = "Measure the FP32 twin instead" };
        var compare = new Option<bool>("--compare") { Description = "Measure both the ternary model and its FP32 twin" };
        var threads = new Option<int>("--threads") { Description = "libtorch threads (0: all cores)" };
        var json = new Option<bool>("--json") { Description = "Print one JSON object" };
        var cmd = new Command("train", "Training tokens/s and MFU of a preset on random tokens") { preset, batch, seq, steps, fp32, compare, threads, json };
        cmd.SetAction(pr =>
        {
            if (pr.GetValue(threads) > 0) set_num_threads(pr.GetValue(threads));
            var config = ModelPresets.Get(pr.GetValue(preset)!);
            int b = pr.GetValue(batch), t = pr.GetValue(seq), n = pr.GetValue(steps);
            if (b < 1 || t < 2 || t > config.ContextLength || n < 1)
                throw new UserErrorException($"need --batch-size >= 1, --seq-len in 2..{config.ContextLength}, --steps >= 1 (got {b}, {t}, {n})");
            double peak = MeasurePeakGflops();
            double flops = config.TrainingFlopsPerToken(t);
            bool both = pr.GetValue(compare);
            double? ternary = both || !pr.GetValue(fp32) ? MeasureTokensPerSecond(config, b, t, n) : null;
            double? twin = both || pr.GetValue(fp32) ? MeasureTokensPerSecond(config with { Ternary = false }, b, t, n) : null;
            double main = ternary ?? twin!.Value;
            var result = new
            {
                preset = pr.GetValue(preset), fp32 = ternary is null, batch_size = b, seq_len = t, threads = get_num_threads(),
                tokens_per_s = main, step_time_ms = b * t / main * 1000, flops_per_token = flops,
                achieved_gflops = main * flops / 1e9, peak_gflops = peak, mfu = main * flops / 1e9 / peak,
                fp32_tokens_per_s = twin, ternary_vs_fp32 = ternary / twin,
            };
            if (pr.GetValue(json)) Cli.WriteJson(result);
            else
                Console.WriteLine($"{result.preset}{(result.fp32 ? " FP32 twin" : "")} [{b} x {t}], {result.threads} threads: {main:F1} tokens/s, " +
                                  $"{result.achieved_gflops:F1} GFLOP/s of a {peak:F1} GFLOP/s fp32 matmul peak: MFU {result.mfu:P1}" +
                                  (both ? $"; FP32 twin {twin:F1} tokens/s, ternary/FP32 {ternary / twin:F3}" : ""));
            return 0;
        });
        return cmd;
    }

    /// <summary>The best fp32 GFLOP/s of square matrix products over a few sizes: the machine's practical peak.</summary>
    public static double MeasurePeakGflops()
    {
        double best = 0;
        foreach (int n in new[] { 1024, 2048 })
        {
            using var scope = NewDisposeScope();
            var a = randn(n, n);
            var b = randn(n, n);
            mm(a, b).Dispose();
            for (int rep = 0; rep < 5; rep++)
            {
                var sw = Stopwatch.StartNew();
                using var c = mm(a, b);
                best = Math.Max(best, 2.0 * n * n * n / sw.Elapsed.TotalSeconds / 1e9);
            }
        }
        return best;
    }

    /// <summary>Tokens/s of full training steps (forward, backward, clip, AdamW) on random tokens.</summary>
    public static double MeasureTokensPerSecond(ModelConfig config, int batchSize, int sequenceLength, int steps)
    {
        var options = TrainingOptions.ForPreset("bench") with
        {
            Steps = steps + 1, BatchSize = batchSize, SequenceLength = sequenceLength, WarmupSteps = 0, EvalEvery = 0, CheckpointEvery = 0,
        };
        var timings = new List<double>();
        using var trainer = new Trainer(config, options, new RandomTokens(config.VocabSize, batchSize, sequenceLength), null, null,
            e => { if (e is StepEvent s) timings.Add(s.StepTimeMs); });
        trainer.RunAsync().GetAwaiter().GetResult();
        double meanMs = timings.Skip(1).Average();
        return batchSize * sequenceLength / (meanMs / 1000);
    }

    sealed class RandomTokens(int vocab, int batchSize, int sequenceLength) : IBatchSource
    {
        readonly Random rng = new(1);
        public int BatchSize => batchSize;
        public int SequenceLength => sequenceLength;
        public void Next(long[] inputs, long[] targets)
        {
            for (int i = 0; i < inputs.Length; i++) { inputs[i] = rng.Next(vocab); targets[i] = rng.Next(vocab); }
        }
        public System.Text.Json.Nodes.JsonNode SaveState() => new System.Text.Json.Nodes.JsonObject();
        public void RestoreState(System.Text.Json.Nodes.JsonNode state) { }
    }
}
