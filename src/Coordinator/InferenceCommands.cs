// The inference commands of `duck`: export (checkpoint → GGUF), chat (interactive), test (the eight personality
// prompts) and bench infer (prefill/decode speed). Wiring and printing only; the engine is Duck.Inference.
using System.CommandLine;
using System.Diagnostics;
using Duck.Inference.Engine;
using Duck.Inference.Export;
using Duck.Inference.Gguf;

namespace Duck.Coordinator;

public static class InferenceCommands
{
    /// <summary>The prototype's personality prompts, run by <c>duck test</c>.</summary>
    public static readonly string[] PersonalityPrompts =
    [
        "Hi Duck, what's your name?", "Tell me about yourself.", "What do you like to do?", "How do you feel about coding?",
        "What's your favorite thing?", "Can you help me?", "What makes you special?", "How are you today?",
    ];

    public static void Register(RootCommand root)
    {
        root.Subcommands.Add(ExportCommand());
        root.Subcommands.Add(ChatCommands.Chat());
        root.Subcommands.Add(TestCommand());
        BenchCommands.Group(root).Subcommands.Add(InferenceBench.Command());
        BenchCommands.Group(root).Subcommands.Add(ServeBench.Command());
    }

    static Command ExportCommand()
    {
        var checkpoint = new Option<string>("--checkpoint") { Description = "Checkpoint folder (with manifest.json) or run folder (newest checkpoints/<name>)", Required = true };
        var output = new Option<string>("--out") { Description = "GGUF file to write", Required = true };
        var ternary = new Option<string>("--ternary") { Description = "Ternary block type: tq2 (default) or tq1", DefaultValueFactory = _ => "tq2" };
        var embedding = new Option<string>("--embedding") { Description = "Token embedding type: q8_0 (default), f16 or f32", DefaultValueFactory = _ => "q8_0" };
        var llamaCpp = new Option<bool>("--llama-cpp") { Description = "Write exactly what llama.cpp's bitnet architecture loads (needs a tied head)" };
        var cmd = new Command("export", "Export a checkpoint as a GGUF model file for the inference engine.");
        cmd.Options.Add(checkpoint); cmd.Options.Add(output); cmd.Options.Add(ternary); cmd.Options.Add(embedding); cmd.Options.Add(llamaCpp);
        cmd.SetAction(async (ParseResult pr, CancellationToken ct) =>
        {
            var type = pr.GetValue(ternary) switch
            {
                "tq2" => GgmlType.TQ2_0,
                "tq1" => GgmlType.TQ1_0,
                var other => throw new UserErrorException($"--ternary must be tq2 or tq1, got '{other}'"),
            };
            var embeddingType = pr.GetValue(embedding) switch
            {
                "q8_0" => GgmlType.Q8_0,
                "f16" => GgmlType.F16,
                "f32" => GgmlType.F32,
                var other => throw new UserErrorException($"--embedding must be q8_0, f16 or f32, got '{other}'"),
            };
            var clock = Stopwatch.StartNew();
            var (config, tensors, loaded) = CheckpointReader.ReadWithManifest(pr.GetValue(checkpoint)!);
            string folder = loaded.Name;
            var extra = new Dictionary<string, string>();
            if (CheckpointReader.FinetuneBase(loaded) is { } baseCheckpoint) extra[CheckpointReader.FinetuneBaseKey] = baseCheckpoint;
            string path = pr.GetValue(output)!;
            string tmp = path + ".tmp";
            await using (var stream = File.Create(tmp))
                GgufExporter.Export(config, tensors, stream, new ExportOptions
                {
                    TernaryType = type, EmbeddingType = embeddingType, LlamaCpp = pr.GetValue(llamaCpp), ExtraMetadata = extra,
                });
            File.Move(tmp, path, overwrite: true);
            long bytes = new FileInfo(path).Length;
            Console.WriteLine($"exported {folder} -> {path}: {bytes / 1e6:F1} MB, {type}, {clock.Elapsed.TotalSeconds:F1} s");
            return 0;
        });
        return cmd;
    }

    static Command TestCommand()
    {
        var model = new Option<string?>("--model") { Description = "GGUF model file (with --cluster: the served model's name)" };
        var seed = new Option<int>("--seed") { Description = "Sampling seed", DefaultValueFactory = _ => 42 };
        var maxTokens = new Option<int>("--max-tokens") { Description = "Most tokens per reply", DefaultValueFactory = _ => 64 };
        var json = new Option<bool>("--json") { Description = "One JSON line per prompt, then a summary line" };
        var cmd = new Command("test", "Run the eight personality prompts (temperature 0.8, top-k 40) and report speed.");
        cmd.Options.Add(model); cmd.Options.Add(seed); cmd.Options.Add(maxTokens); cmd.Options.Add(json);
        var cluster = ClusterChatCommands.ClusterOptions.Create();
        cluster.AddTo(cmd);
        cmd.SetAction(async (ParseResult pr, CancellationToken ct) =>
        {
            if (pr.GetValue(cluster.Cluster))
            {
                await using var chat = await ClusterChatCommands.ConnectAsync(pr, cluster, pr.GetValue(model), ct);
                var chatOptions = new Microsoft.Extensions.AI.ChatOptions { Temperature = 0.8f, TopK = 40, Seed = pr.GetValue(seed), MaxOutputTokens = pr.GetValue(maxTokens) };
                return await ClusterChatCommands.TestAsync(chat, chatOptions, pr.GetValue(json), ct);
            }
            if (pr.GetValue(model) is null) throw new UserErrorException("--model FILE is required (or --cluster to run the prompts on a running cluster)");
            var options = new SamplingOptions { Temperature = 0.8f, TopK = 40, Seed = pr.GetValue(seed), MaxTokens = pr.GetValue(maxTokens) }.Validate();
            using var m = InferenceModel.Load(pr.GetValue(model)!);
            bool asJson = pr.GetValue(json);
            double totalMs = 0, totalTokens = 0;
            foreach (var prompt in PersonalityPrompts)
            {
                var chat = new ChatConversation(m);
                var stats = new GenerationStats();
                string reply = string.Concat(chat.Reply(prompt, options, stats, ct)).Trim();
                double tps = stats.TotalMs > 0 ? stats.GeneratedTokens / (stats.TotalMs / 1000) : 0;
                totalMs += stats.TotalMs;
                totalTokens += stats.GeneratedTokens;
                long rss = ProcessMemory.PeakRssBytes();
                if (asJson) Cli.WriteJson(new { prompt, reply, latency_ms = Math.Round(stats.TotalMs, 1), tokens_per_s = Math.Round(tps, 1), tokens = stats.GeneratedTokens, peak_rss_bytes = rss });
                else Console.WriteLine($"> {prompt}\n{reply}\n  [{stats.TotalMs:F0} ms, {stats.GeneratedTokens} tokens, {tps:F1} tokens/s, peak memory {rss / 1e6:F0} MB]\n");
            }
            long peak = ProcessMemory.PeakRssBytes();
            double avgTps = totalMs > 0 ? totalTokens / (totalMs / 1000) : 0;
            if (asJson) Cli.WriteJson(new { summary = true, prompts = PersonalityPrompts.Length, total_ms = Math.Round(totalMs, 1), tokens_per_s = Math.Round(avgTps, 1), peak_rss_bytes = peak });
            else Console.WriteLine($"summary: {PersonalityPrompts.Length} prompts, {totalTokens} tokens in {totalMs / 1000:F2} s, {avgTps:F1} tokens/s, peak memory {peak / 1e6:F0} MB");
            return 0;
        });
        return cmd;
    }
}

/// <summary>Memory figures of this process from /proc/self/status.</summary>
public static class ProcessMemory
{
    /// <summary>Peak resident set size (VmHWM) in bytes, or the current working set where /proc is absent.</summary>
    public static long PeakRssBytes()
    {
        try
        {
            foreach (var line in File.ReadLines("/proc/self/status"))
                if (line.StartsWith("VmHWM:", StringComparison.Ordinal))
                    return long.Parse(line[6..].Trim().Split(' ')[0]) * 1024;
        }
        catch (IOException) { }
        return Environment.WorkingSet;
    }
}
