// The cluster chat commands of `duck` against a real silo serving a tiny model over HTTP on loopback: `duck test
// --cluster` runs the eight personality prompts, `duck chat --cluster` keeps a conversation on the server from
// piped lines, and `duck bench serve --json` prints its stable fields with a clean history check.
using System.Text.Json.Nodes;
using Duck.Silo.Tests;

namespace Duck.Coordinator.Tests;

public sealed class ClusterChatCliTests(ChatServer server) : IClassFixture<ChatServer>, IDisposable
{
    readonly string work = Directory.CreateTempSubdirectory("duck-cluster-cli-").FullName;
    string Url => server.BaseUrl.ToString().TrimEnd('/');

    public void Dispose() => Directory.Delete(work, recursive: true);

    [Fact]
    public void Test_Cluster_EightPersonalityPromptsEachAnswered()
    {
        var r = DuckProcess.Run(work, "test", "--cluster", "--url", Url, "--key", ChatServer.Key, "--max-tokens", "6", "--json");

        Assert.True(r.ExitCode == 0, r.Stderr);
        var lines = r.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => JsonNode.Parse(l)!).ToArray();
        var prompts = lines.Where(l => l["prompt"] is not null).ToArray();
        Assert.Equal(InferenceCommands.PersonalityPrompts, prompts.Select(p => p["prompt"]!.GetValue<string>()));
        Assert.All(prompts, p => Assert.InRange(p["tokens"]!.GetValue<int>(), 1, 6));
        Assert.Equal(8, lines.Single(l => l["summary"] is not null)["prompts"]!.GetValue<int>());
    }

    [Fact]
    public async Task Chat_Cluster_PipedLines_OneServerKeptConversation()
    {
        var r = DuckProcess.RunWithInput(work, "Hello there\nAnd then?\nquit\n", "chat", "--cluster", "--url", Url, "--key", ChatServer.Key, "--max-tokens", "4", "--seed", "1");

        Assert.True(r.ExitCode == 0, r.Stderr);
        string id = System.Text.RegularExpressions.Regex.Match(r.Stdout, @"conversation (\S+)\.").Groups[1].Value;
        using var http = server.Http();
        var session = JsonNode.Parse(await http.GetStringAsync($"v1/sessions/{id}"))!;
        var messages = session["messages"]!.AsArray().Select(m => (m!["role"]!.GetValue<string>(), m["content"]!.GetValue<string>())).ToArray();
        Assert.Equal(4, messages.Length);
        Assert.Equal(("user", "Hello there"), messages[0]);
        Assert.Equal(("user", "And then?"), messages[2]);
        Assert.Equal(2, r.Stdout.Split("duck>").Length - 1);
    }

    [Fact]
    public void BenchServe_Json_StableFieldsAndACleanHistoryCheck()
    {
        var r = DuckProcess.Run(work, "bench", "serve", "--url", Url, "--key", ChatServer.Key, "--sessions", "3", "--seconds", "3", "--max-tokens", "4", "--warmup", "1", "--json");

        Assert.True(r.ExitCode == 0, r.Stdout + r.Stderr);
        var o = JsonNode.Parse(r.Stdout.Trim().Split('\n')[^1])!;
        foreach (var field in new[] { "ttft_p50_ms", "ttft_p99_ms", "itl_p50_ms", "itl_p99_ms", "tokens_per_s", "requests", "errors" })
            Assert.NotNull(o[field]);
        Assert.True(o["requests"]!.GetValue<long>() >= 3 && o["tokens_per_s"]!.GetValue<double>() > 0, r.Stdout);
        Assert.Equal(0, o["errors"]!.GetValue<long>());
        Assert.Equal(0, o["history_mismatches"]!.GetValue<int>());
        Assert.Equal(0, o["history_missing"]!.GetValue<int>());
        Assert.Equal(0, o["unacknowledged_turns"]!.GetValue<int>());
        Assert.Equal(3, o["sessions"]!.GetValue<int>());
        Assert.Equal(1, o["warmup_seconds"]!.GetValue<int>());
        // The silo's own view from its /metrics: the load ran batched passes of at least one decode row, in time.
        // (Other test classes in this process serve "tiny" too, so only bounds hold.)
        Assert.True(o["server_decode_passes"]!.GetValue<long>() >= 1, r.Stdout);
        Assert.True(o["server_mean_batch"]!.GetValue<double>() >= 1, r.Stdout);
        Assert.True(o["server_pass_ms"]!.GetValue<double>() > 0, r.Stdout);
        Assert.NotNull(o["server_prompt_rows_per_pass"]);
    }

    [Fact]
    public void ParseBatcherCounters_SumsTheModelsSeriesAndNeedsAllFour()
    {
        const string text = """
            # TYPE duck_inference_decode_passes_total counter
            duck_inference_decode_passes_total{otel_scope_name="Duck",model="small"} 100 1700000000000
            duck_inference_decode_passes_total{otel_scope_name="Duck",model="small"} 20
            duck_inference_decode_passes_total{otel_scope_name="Duck",model="smaller"} 7
            duck_inference_decoded_tokens_total{otel_scope_name="Duck",model="small"} 1800
            duck_inference_prefilled_tokens_total{otel_scope_name="Duck",model="small"} 1200
            duck_inference_busy_time_seconds_total{otel_scope_name="Duck",model="small"} 2.4
            """;

        var c = ServeBench.ParseBatcherCounters(text, "small")!;

        Assert.Equal(120, c.Passes);
        Assert.Equal(15, c.MeanBatch);
        Assert.Equal(10, c.PromptRowsPerPass);
        Assert.Equal(20, c.PassMs);
        Assert.Null(ServeBench.ParseBatcherCounters(text, "smaller")); // its other three counters are missing
        Assert.Null(ServeBench.ParseBatcherCounters(text.Replace("busy_time", "idle_time"), "small"));
    }
}
