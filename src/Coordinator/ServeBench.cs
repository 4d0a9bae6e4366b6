// `duck bench serve`: N concurrent conversations against a running cluster through the HTTP session API, each
// sending its next message as soon as the previous streamed reply ends, for S seconds. Prints p50/p99 time to first
// token, p50/p99 gaps between streamed chunks, aggregate reply tokens/s, requests and errors; then checks that each
// conversation's stored history holds every exchange that succeeded. Several --url values spread the sessions and
// let a session move on to the next silo when its silo stops answering (the failover drill): a failed turn is
// retried with the next message until one succeeds; `errors` counts every failed attempt, `failed_turns` the turns
// that failed at least once. The silos' own view comes from their /metrics before and after the load: how many
// batched passes ran, their mean decode batch, the prompt rows riding along and the mean pass time (null without metrics).
// --warmup runs the same load first, in conversations of its own, and leaves it out of every figure. Replies are as
// long as a silo makes them by default (128 tokens) unless --max-tokens says otherwise, so the figures are those of
// clients that leave max_tokens unset.
using System.CommandLine;
using System.Diagnostics;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using Duck.Grains;

namespace Duck.Coordinator;

public static class ServeBench
{
    public static Command Command()
    {
        var urls = new Option<string>("--url") { Description = "Silo HTTP address(es), comma-separated", DefaultValueFactory = _ => "http://127.0.0.1:8080" };
        var key = new Option<string?>("--key") { Description = "API key (default: $DUCK_API_KEY)" };
        var model = new Option<string?>("--model") { Description = "Served model (default: the only one)" };
        var sessions = new Option<int>("--sessions") { Description = "Concurrent conversations", DefaultValueFactory = _ => 16 };
        var seconds = new Option<int>("--seconds") { Description = "Duration of the load", DefaultValueFactory = _ => 30 };
        var maxTokens = new Option<int>("--max-tokens")
        {
            Description = "Most tokens per reply (default: what a silo gives a request that does not say)",
            DefaultValueFactory = _ => ChatGenerationSettings.DefaultMaxTokens,
        };
        var warmup = new Option<int>("--warmup") { Description = "Seconds of the same load run first and left out of the figures (a fresh silo loads the model and compiles its code then)", DefaultValueFactory = _ => 0 };
        var json = new Option<bool>("--json") { Description = "One JSON object" };
        var cmd = new Command("serve", "Chat serving figures of a running cluster: TTFT, inter-token latency, tokens/s, errors") { urls, key, model, sessions, seconds, maxTokens, warmup, json };
        cmd.SetAction(async (ParseResult pr, CancellationToken ct) =>
        {
            int n = pr.GetValue(sessions), s = pr.GetValue(seconds), m = pr.GetValue(maxTokens), w = pr.GetValue(warmup);
            if (n is < 1 or > 1024 || s < 1 || m < 1 || w < 0)
                throw new UserErrorException($"need --sessions in 1..1024, --seconds >= 1, --max-tokens >= 1, --warmup >= 0 (got {n}, {s}, {m}, {w})");
            var bases = pr.GetValue(urls)!.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
                .Select(u => Uri.TryCreate(u.EndsWith('/') ? u : u + "/", UriKind.Absolute, out var uri) ? uri : throw new UserErrorException($"--url '{u}' is not an http address")).ToArray();
            using var http = new HttpClient(new SocketsHttpHandler { MaxConnectionsPerServer = 4096, ConnectTimeout = TimeSpan.FromSeconds(5) }) { Timeout = TimeSpan.FromSeconds(120) };
            if ((pr.GetValue(key) ?? Environment.GetEnvironmentVariable("DUCK_API_KEY")) is { } apiKey) http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", apiKey);
            string modelName = pr.GetValue(model) ?? await OnlyModelAsync(http, bases[0], ct);
            if (w > 0)
            {
                // Conversations of their own, whose figures are dropped; the measured ones start afresh after them.
                var warm = new Run(http, bases, modelName, m);
                var warmDeadline = DateTime.UtcNow.AddSeconds(w);
                await Task.WhenAll(Enumerable.Range(0, n).Select(i => warm.ConversationAsync(i, warmDeadline, ct)));
            }
            var run = new Run(http, bases, modelName, m);
            var before = await ScrapeAsync(http, bases, modelName, beforeLoad: true, ct);
            var clock = Stopwatch.StartNew();
            var deadline = DateTime.UtcNow.AddSeconds(s);
            await Task.WhenAll(Enumerable.Range(0, n).Select(i => run.ConversationAsync(i, deadline, ct)));
            double elapsed = clock.Elapsed.TotalSeconds;
            var after = await ScrapeAsync(http, bases, modelName, beforeLoad: false, ct);
            var server = before is not null && after is not null ? after - before : null;
            var (mismatches, missing, unacknowledged) = await run.VerifyHistoriesAsync(ct);
            var result = new
            {
                model = modelName, sessions = n, seconds = Math.Round(elapsed, 1), max_tokens = m, warmup_seconds = w,
                ttft_p50_ms = Percentile(run.Ttft, 50), ttft_p99_ms = Percentile(run.Ttft, 99),
                itl_p50_ms = Percentile(run.Itl, 50), itl_p99_ms = Percentile(run.Itl, 99),
                tokens_per_s = Math.Round(run.Tokens / elapsed, 1), tokens = run.Tokens, requests = run.Requests, errors = run.Errors,
                prompt_tokens = run.PromptTokens, cached_prompt_tokens = run.CachedTokens,
                failed_turns = run.FailedTurns, unrecovered_sessions = run.Unrecovered, history_mismatches = mismatches,
                history_missing = missing, unacknowledged_turns = unacknowledged,
                server_decode_passes = server?.Passes, server_mean_batch = server?.MeanBatch, server_prompt_rows_per_pass = server?.PromptRowsPerPass,
                server_pass_ms = server?.PassMs,
            };
            if (pr.GetValue(json)) Cli.WriteJson(result);
            else Console.WriteLine($"{n} sessions x {elapsed:F0} s on '{modelName}': TTFT p50 {result.ttft_p50_ms} ms, p99 {result.ttft_p99_ms} ms; " +
                                   $"inter-token p50 {result.itl_p50_ms} ms, p99 {result.itl_p99_ms} ms; {result.tokens_per_s} tokens/s; " +
                                   $"{run.Requests} requests, {run.Errors} errors ({run.FailedTurns} turns failed at least once, {run.Unrecovered} conversations unrecovered); " +
                                   $"{mismatches} conversations with a history mismatch ({missing} missing exchanges that succeeded, " +
                                   $"{unacknowledged} exchanges stored whose reply the client saw fail)" +
                                   (server is { Passes: > 0 } ? $"; the silos ran {server.Passes} batched passes of {server.MeanBatch} decode and {server.PromptRowsPerPass} prompt rows, {server.PassMs} ms each" : ""));
            return run.Errors == 0 && mismatches == 0 ? 0 : 1;
        });
        return cmd;
    }

    static async Task<string> OnlyModelAsync(HttpClient http, Uri baseUrl, CancellationToken ct)
    {
        HttpResponseMessage response;
        try { response = await http.GetAsync(new Uri(baseUrl, "v1/models"), ct); }
        catch (HttpRequestException e) { throw new UserErrorException($"cannot reach {baseUrl}: {e.Message}; start a cluster with `duck cluster up`"); }
        using var _ = response;
        if (!response.IsSuccessStatusCode) throw new UserErrorException($"GET {baseUrl}v1/models answered {(int)response.StatusCode}: {await response.Content.ReadAsStringAsync(ct)}");
        using var doc = JsonDocument.Parse(await response.Content.ReadAsStringAsync(ct));
        var names = doc.RootElement.GetProperty("data").EnumerateArray().Select(e => e.GetProperty("id").GetString()!).ToArray();
        return names.Length == 1 ? names[0] : throw new UserErrorException($"the cluster serves {names.Length} models ({string.Join(", ", names)}): pick one with --model");
    }

    /// <summary>A served model's batcher counters (the silos' duck_inference_* metrics), summed over silos.</summary>
    public sealed record BatcherCounters(double DecodePasses, double DecodedTokens, double PrefilledTokens, double BusySeconds)
    {
        public long Passes => (long)Math.Round(DecodePasses);
        public double? MeanBatch => DecodePasses > 0 ? Math.Round(DecodedTokens / DecodePasses, 1) : null;
        public double? PromptRowsPerPass => DecodePasses > 0 ? Math.Round(PrefilledTokens / DecodePasses, 1) : null;
        /// <summary>Mean wall time of a pass; passes that only prefill are few under load and count in the time only.</summary>
        public double? PassMs => DecodePasses > 0 ? Math.Round(1000 * BusySeconds / DecodePasses, 2) : null;

        public static BatcherCounters operator +(BatcherCounters a, BatcherCounters b) =>
            new(a.DecodePasses + b.DecodePasses, a.DecodedTokens + b.DecodedTokens, a.PrefilledTokens + b.PrefilledTokens, a.BusySeconds + b.BusySeconds);
        public static BatcherCounters operator -(BatcherCounters a, BatcherCounters b) =>
            new(a.DecodePasses - b.DecodePasses, a.DecodedTokens - b.DecodedTokens, a.PrefilledTokens - b.PrefilledTokens, a.BusySeconds - b.BusySeconds);
    }

    /// <summary>
    /// The batcher counters of <paramref name="model"/> read from every silo's /metrics, or null when one of them has
    /// none to give (no metrics endpoint, an older silo, a silo that is gone): the figures are then left out, not guessed.
    /// Before the load a silo that has not loaded the model yet has no counters for it: they start at zero.
    /// </summary>
    static async Task<BatcherCounters?> ScrapeAsync(HttpClient http, Uri[] bases, string model, bool beforeLoad, CancellationToken ct)
    {
        var total = new BatcherCounters(0, 0, 0, 0);
        foreach (var baseUrl in bases)
        {
            try
            {
                using var response = await http.GetAsync(new Uri(baseUrl, "metrics"), ct);
                if (!response.IsSuccessStatusCode) return null;
                var c = ParseBatcherCounters(await response.Content.ReadAsStringAsync(ct), model) ?? (beforeLoad ? new BatcherCounters(0, 0, 0, 0) : null);
                if (c is null) return null;
                total += c;
            }
            catch (HttpRequestException) { return null; }
            catch (TaskCanceledException) when (!ct.IsCancellationRequested) { return null; } // the client's timeout
        }
        return total;
    }

    /// <summary>
    /// The four batcher counters of <paramref name="model"/> in a Prometheus text exposition (series with its
    /// model="…" label, summed), or null when any of them is missing.
    /// </summary>
    public static BatcherCounters? ParseBatcherCounters(string exposition, string model)
    {
        string[] names = ["duck_inference_decode_passes_total", "duck_inference_decoded_tokens_total", "duck_inference_prefilled_tokens_total", "duck_inference_busy_time_seconds_total"];
        var sums = new double?[names.Length];
        string label = $"model=\"{model}\"";
        foreach (var line in exposition.Split('\n'))
        {
            int brace = line.IndexOf('{'), close = line.LastIndexOf('}');
            if (line.StartsWith('#') || brace < 0 || close < brace) continue;
            int i = Array.IndexOf(names, line[..brace]);
            if (i < 0 || !line[brace..close].Split(',').Any(l => l.Trim('{', ' ') == label)) continue;
            var value = line[(close + 1)..].Trim().Split(' ')[0];
            if (double.TryParse(value, System.Globalization.NumberStyles.Float, System.Globalization.CultureInfo.InvariantCulture, out double v)) sums[i] = (sums[i] ?? 0) + v;
        }
        return sums.All(x => x.HasValue) ? new BatcherCounters(sums[0]!.Value, sums[1]!.Value, sums[2]!.Value, sums[3]!.Value) : null;
    }

    static double Percentile(List<double> values, int p)
    {
        lock (values)
        {
            if (values.Count == 0) return 0;
            var sorted = values.Order().ToArray();
            return Math.Round(sorted[Math.Min(sorted.Length - 1, (int)Math.Ceiling(p / 100.0 * sorted.Length) - 1)], 1);
        }
    }

    sealed class Run(HttpClient http, Uri[] bases, string model, int maxTokens)
    {
        public readonly List<double> Ttft = new(), Itl = new();
        readonly List<(string Id, int Exchanges, Uri Base)> done = new();
        long tokens, requests, errors, failedTurns, unrecovered, promptTokens, cachedTokens;
        public long Tokens => Interlocked.Read(ref tokens);
        /// <summary>Prompt tokens of the finished turns, and how many of them the session's KV cache already held.</summary>
        public long PromptTokens => Interlocked.Read(ref promptTokens);
        public long CachedTokens => Interlocked.Read(ref cachedTokens);
        /// <summary>Turns that failed at least once (a conversation retries until one succeeds): the requests lost in flight.</summary>
        public long FailedTurns => Interlocked.Read(ref failedTurns);
        /// <summary>Conversations whose last attempt failed.</summary>
        public long Unrecovered => Interlocked.Read(ref unrecovered);
        public long Requests => Interlocked.Read(ref requests);
        public long Errors => Interlocked.Read(ref errors);

        public async Task ConversationAsync(int index, DateTime deadline, CancellationToken ct)
        {
            int silo = index % bases.Length;
            string? id = null;
            int exchanges = 0, turn = 0;
            bool failing = false;
            while (DateTime.UtcNow < deadline && !ct.IsCancellationRequested)
            {
                try
                {
                    id ??= await CreateAsync(bases[silo], index, ct);
                    string message = InferenceCommands.PersonalityPrompts[(index + turn++) % InferenceCommands.PersonalityPrompts.Length];
                    Interlocked.Increment(ref requests);
                    await TurnAsync(bases[silo], id, message, ct);
                    exchanges++;
                    failing = false;
                }
                catch (Exception) when (!ct.IsCancellationRequested)
                {
                    Interlocked.Increment(ref errors);
                    if (!failing) Interlocked.Increment(ref failedTurns);
                    failing = true;
                    silo = (silo + 1) % bases.Length; // this silo may be gone: the conversation continues through another
                    await Task.Delay(200, ct);
                }
            }
            if (failing) Interlocked.Increment(ref unrecovered);
            if (id is not null) lock (done) done.Add((id, exchanges, bases[silo]));
        }

        async Task<string> CreateAsync(Uri baseUrl, int index, CancellationToken ct)
        {
            string body = JsonSerializer.Serialize(new { model, max_tokens = maxTokens, temperature = 0.8, seed = index });
            using var response = await http.PostAsync(new Uri(baseUrl, "v1/sessions"), new StringContent(body, Encoding.UTF8, "application/json"), ct);
            string text = await response.Content.ReadAsStringAsync(ct);
            if (!response.IsSuccessStatusCode) throw new HttpRequestException($"create session: {(int)response.StatusCode} {text}");
            using var doc = JsonDocument.Parse(text);
            return doc.RootElement.GetProperty("id").GetString()!;
        }

        async Task TurnAsync(Uri baseUrl, string id, string message, CancellationToken ct)
        {
            string body = JsonSerializer.Serialize(new { content = message, stream = true });
            var start = Stopwatch.GetTimestamp();
            using var request = new HttpRequestMessage(HttpMethod.Post, new Uri(baseUrl, $"v1/sessions/{id}/messages")) { Content = new StringContent(body, Encoding.UTF8, "application/json") };
            using var response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, ct);
            if (!response.IsSuccessStatusCode) throw new HttpRequestException($"message: {(int)response.StatusCode} {await response.Content.ReadAsStringAsync(ct)}");
            using var reader = new StreamReader(await response.Content.ReadAsStreamAsync(ct));
            long? last = null;
            var gaps = new List<double>();
            double? ttft = null;
            bool finished = false;
            string? line;
            while ((line = await reader.ReadLineAsync(ct)) is not null)
            {
                if (!line.StartsWith("data: ", StringComparison.Ordinal)) continue;
                if (line == "data: [DONE]") { finished = true; break; }
                using var doc = JsonDocument.Parse(line.AsMemory(6));
                var root = doc.RootElement;
                if (root.TryGetProperty("error", out var error)) throw new HttpRequestException($"in-band error: {error}");
                if (root.TryGetProperty("usage", out var usage))
                {
                    Interlocked.Add(ref tokens, usage.GetProperty("completion_tokens").GetInt32());
                    Interlocked.Add(ref promptTokens, usage.GetProperty("prompt_tokens").GetInt32());
                    if (usage.TryGetProperty("prompt_tokens_details", out var details) && details.TryGetProperty("cached_tokens", out var cached))
                        Interlocked.Add(ref cachedTokens, cached.GetInt32());
                }
                foreach (var choice in root.GetProperty("choices").EnumerateArray())
                {
                    if (!choice.GetProperty("delta").TryGetProperty("content", out var content) || content.GetString() is not { Length: > 0 }) continue;
                    long now = Stopwatch.GetTimestamp();
                    if (last is null) ttft = Stopwatch.GetElapsedTime(start, now).TotalMilliseconds;
                    else gaps.Add(Stopwatch.GetElapsedTime(last.Value, now).TotalMilliseconds);
                    last = now;
                }
            }
            if (!finished) throw new HttpRequestException("the reply stream ended without [DONE]");
            if (ttft is { } t) lock (Ttft) Ttft.Add(t);
            lock (Itl) Itl.AddRange(gaps);
        }

        /// <summary>
        /// Conversations whose stored history does not hold exactly two messages per successful exchange; of those, the
        /// ones holding fewer (exchanges lost: unreadable counts here too), and the exchanges stored beyond the
        /// successful ones: turns the server completed and kept whose stream broke before the client read its end
        /// (its HTTP silo died), which the client counted as failed.
        /// </summary>
        public async Task<(int Mismatches, int Missing, int Unacknowledged)> VerifyHistoriesAsync(CancellationToken ct)
        {
            int bad = 0, missing = 0, extra = 0;
            foreach (var (id, exchanges, baseUrl) in done)
            {
                try
                {
                    using var response = await http.GetAsync(new Uri(baseUrl, $"v1/sessions/{id}"), ct);
                    using var doc = JsonDocument.Parse(await response.Content.ReadAsStringAsync(ct));
                    int stored = response.IsSuccessStatusCode ? doc.RootElement.GetProperty("messages").GetArrayLength() : -1;
                    if (stored == 2 * exchanges) continue;
                    bad++;
                    if (stored < 2 * exchanges) missing++;
                    else extra += (stored - 2 * exchanges) / 2;
                }
                catch (Exception) when (!ct.IsCancellationRequested) { bad++; missing++; }
            }
            return (bad, missing, extra);
        }
    }
}
