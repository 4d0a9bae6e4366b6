// `duck bench infer`: prefill and decode speed of the inference engine on a GGUF file or on random packed
// weights of a preset (small, 700m, 1.3b, 3b), with time to first token, file size and peak memory.
using System.CommandLine;
using System.Diagnostics;
using Duck.Core.Model;
using Duck.Inference.Engine;
using Duck.Inference.Kernels;

namespace Duck.Coordinator;

public static class InferenceBench
{
    public static Command Command()
    {
        var model = new Option<string?>("--model") { Description = "GGUF model file" };
        var preset = new Option<string?>("--preset") { Description = "Preset shape (with --random-weights)" };
        var random = new Option<bool>("--random-weights") { Description = "Random ternary weights instead of a file" };
        var prompt = new Option<int>("--prompt-tokens") { Description = "Prompt length", DefaultValueFactory = _ => 128 };
        var generate = new Option<int>("--generate-tokens") { Description = "Tokens to decode", DefaultValueFactory = _ => 128 };
        var threads = new Option<int>("--threads") { Description = "Threads per request", DefaultValueFactory = _ => 2 };
        var kernel = new Option<string?>("--kernel") { Description = "Force a kernel path: scalar, avx2, avxvnni, avx512, avx512lookup" };
        var json = new Option<bool>("--json") { Description = "One JSON line" };
        var kv = new Option<string>("--kv-cache") { Description = "KV cache element type: bf16 or int8", DefaultValueFactory = _ => "bf16" };
        var batch = new Option<int>("--batch") { Description = "Concurrent sessions decoded together in one batched pass per token (the chat batcher's shape)", DefaultValueFactory = _ => 1 };
        var repeat = new Option<int>("--repeat") { Description = "Measured runs; the best of each phase is reported (noise on a shared machine only slows runs down)", DefaultValueFactory = _ => 3 };
        var cmd = new Command("infer", "Measure prefill and decode tokens/s of the inference engine.");
        foreach (var o in new Option[] { model, preset, random, prompt, generate, threads, kernel, batch, kv, json, repeat }) cmd.Options.Add(o);
        cmd.SetAction((ParseResult pr, CancellationToken ct) =>
        {
            string? path = pr.GetValue(model), presetName = pr.GetValue(preset);
            int promptTokens = pr.GetValue(prompt), genTokens = pr.GetValue(generate), nThreads = pr.GetValue(threads);
            if ((path is null) == (presetName is null)) throw new UserErrorException("give either --model FILE or --preset NAME --random-weights");
            if (presetName is not null && !pr.GetValue(random)) throw new UserErrorException("--preset needs --random-weights (there are no trained weights for a preset)");
            if (promptTokens < 1 || genTokens < 1) throw new UserErrorException("--prompt-tokens and --generate-tokens must be at least 1");
            if (nThreads < 1) throw new UserErrorException($"--threads must be at least 1, got {nThreads}");
            int nBatch = pr.GetValue(batch);
            if (nBatch < 1 || nBatch > 256) throw new UserErrorException($"--batch must be in [1, 256], got {nBatch}");
            var loadClock = Stopwatch.StartNew();
            using var m = path is not null
                ? InferenceModel.Load(path, nThreads)
                : InferenceModel.CreateRandom(ModelPresets.Get(presetName!), seed: 1, threads: nThreads);
            if (pr.GetValue(kernel) is { } k)
            {
                m.KernelPath = Enum.TryParse<KernelPath>(k, ignoreCase: true, out var kp) && TernaryMatMul.IsSupported(kp)
                    ? kp : throw new UserErrorException($"--kernel '{k}' is unknown or unsupported here (best: {TernaryMatMul.Best}, batched: {TernaryMatMul.BestBatched})");
                if (kp == KernelPath.Avx512Lookup) m.PrepareLookup(); // as a chat silo does at load
            }
            double loadMs = loadClock.Elapsed.TotalMilliseconds;
            m.KvCacheType = Cli.ParseKvCache(pr.GetValue(kv)!);
            if (promptTokens + genTokens > m.Config.ContextLength)
                throw new UserErrorException($"prompt {promptTokens} + generate {genTokens} tokens exceed the context window of {m.Config.ContextLength}");
            var rng = new Random(7);
            int[] tokens = Enumerable.Range(0, promptTokens).Select(_ => rng.Next(50000)).ToArray();

            // Warm-up (JIT tiers, page faults), then the measured run.
            var warm = new InferenceSession(m);
            warm.Append(tokens.AsSpan(0, Math.Min(16, promptTokens)));
            for (int i = 0; i < 8 && warm.Length < m.Config.ContextLength; i++) warm.Append([Sampler.ArgMax(warm.LastLogits)]);

            int runs = pr.GetValue(repeat);
            if (runs < 1) throw new UserErrorException($"--repeat must be at least 1, got {runs}");
            double prefillMs = double.MaxValue, ttftMs = double.MaxValue, decodeMs = double.MaxValue, prefillCpuMs = 0, decodeCpuMs = 0;
            var process = Process.GetCurrentProcess();
            var session = new InferenceSession(m);
            // --batch N: N-1 more sessions with the same prompt, decoded together with the measured one (their
            // prefill is not timed); decode tokens/s then counts the tokens of all N.
            var others = Enumerable.Range(1, nBatch - 1).Select(_ => new InferenceSession(m)).ToArray();
            var all = others.Prepend(session).ToArray();
            var nexts = new int[nBatch];
            for (int run = 0; run < runs; run++)
            {
                session.Reset();
                process.Refresh();
                var cpu0 = process.TotalProcessorTime;
                var clock = Stopwatch.StartNew();
                session.Append(tokens);
                double p = clock.Elapsed.TotalMilliseconds;
                int next = Sampler.ArgMax(session.LastLogits);
                double ttft = clock.Elapsed.TotalMilliseconds;
                process.Refresh();
                var cpu1Prefill = process.TotalProcessorTime;
                foreach (var o in others) { o.Reset(); o.Append(tokens); }
                process.Refresh();
                var cpu1 = process.TotalProcessorTime;
                var decodeClock = Stopwatch.StartNew();
                if (nBatch == 1)
                    for (int i = 0; i < genTokens; i++)
                    {
                        session.Append([next]);
                        next = Sampler.ArgMax(session.LastLogits);
                    }
                else
                {
                    Array.Fill(nexts, next);
                    for (int i = 0; i < genTokens; i++)
                    {
                        InferenceSession.DecodeBatch(all, nexts);
                        for (int b = 0; b < nBatch; b++) nexts[b] = Sampler.ArgMax(all[b].LastLogits);
                    }
                }
                double d = decodeClock.Elapsed.TotalMilliseconds;
                process.Refresh();
                // CPU time actually received (workers' spinning included): tells a slow run on a busy machine from a slow engine.
                if (p < prefillMs) { prefillMs = p; ttftMs = ttft; prefillCpuMs = (cpu1Prefill - cpu0).TotalMilliseconds; }
                if (d < decodeMs) { decodeMs = d; decodeCpuMs = (process.TotalProcessorTime - cpu1).TotalMilliseconds; }
            }
            double prefillTps = promptTokens / (prefillMs / 1000), decodeTps = (double)genTokens * nBatch / (decodeMs / 1000);
            long peak = ProcessMemory.PeakRssBytes();
            string name = path ?? $"{presetName} (random)";
            // The int8 cache's q·k dots have their own path (AVX-VNNI or AVX2); a bf16 cache's attention is fp32 FMA.
            string? attention = m.KvCacheType == KvCacheType.Int8 ? AttentionKernels.DotPath.ToString() : null;
            if (pr.GetValue(json))
                Cli.WriteJson(new
                {
                    model = name, runs, kernel = m.KernelPath.ToString(), attention_kernel = attention, kv_cache = m.KvCacheType.ToString().ToLowerInvariant(), threads = nThreads, prompt_tokens = promptTokens, generate_tokens = genTokens, batch = nBatch,
                    prefill_tokens_per_s = Math.Round(prefillTps, 1), decode_tokens_per_s = Math.Round(decodeTps, 1),
                    ttft_ms = Math.Round(ttftMs, 1), prefill_cpu_ms = Math.Round(prefillCpuMs), decode_cpu_ms = Math.Round(decodeCpuMs), load_ms = Math.Round(loadMs, 1), file_bytes = m.FileBytes, peak_rss_bytes = peak,
                });
            else
                Console.WriteLine($"{name}: kernel {m.KernelPath}{(attention is null ? "" : $", int8 attention {attention}")}, {nThreads} threads, load {loadMs:F0} ms\n" +
                                  $"  prefill {promptTokens} tokens: {prefillTps:F1} tokens/s (time to first token {ttftMs:F1} ms)\n" +
                                  $"  decode {genTokens} tokens{(nBatch > 1 ? $" x {nBatch} sessions" : "")}: {decodeTps:F1} tokens/s\n" +
                                  $"  file {m.FileBytes / 1e6:F1} MB, peak RSS {peak / 1e6:F1} MB\n" +
                                  $"  CPU time received: prefill {prefillCpuMs:F0} ms of {prefillMs:F0} ms wall, decode {decodeCpuMs:F0} ms of {decodeMs:F0} ms wall");
            return Task.FromResult(0);
        });
        return cmd;
    }
}
