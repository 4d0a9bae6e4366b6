// The operations view of a running local cluster (LocalCluster): the job on /metrics and on the Orleans Dashboard
// within seconds, roles keeping training grains off the inference silo, the training page's JSON, and the page in
// headless Chromium drawing one chart point per committed step.
using System.Diagnostics;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;

namespace Duck.Silo.Tests;

public class TrainingPageTests(LocalCluster cluster) : IClassFixture<LocalCluster>
{
    [Fact]
    public async Task Metrics_JobSubmitted_ShowsWithinSecondsAndCountsEveryStep()
    {
        var scrapes = await Task.WhenAll(cluster.Silos.Select(s => s.Http.GetStringAsync("/metrics")));

        Assert.True(cluster.MetricsDelaySeconds < 15, $"job on /metrics after {cluster.MetricsDelaySeconds:F1} s");
        Assert.Equal(LocalCluster.Steps, scrapes.Sum(s => LocalCluster.MetricLines(s, "duck_training_steps_total").Sum()));
        Assert.Contains(scrapes, s => LocalCluster.MetricLines(s, "duck_training_validation_loss").Any(v => v > 0 && v < 10));
        Assert.Contains(scrapes, s => s.Split('\n').Any(l => l.StartsWith("duck_training_job_step{") && l.Contains($"job=\"{LocalCluster.JobId}\"")
                                                                && l.Contains("state=\"completed\"") && l.EndsWith($" {LocalCluster.Steps}")));
        Assert.Contains(scrapes, s => LocalCluster.MetricLines(s, "duck_training_tokens_per_second").Any(v => v > 0));
        Assert.Contains(scrapes, s => s.Contains("orleans_catalog_activations"));
        foreach (var name in new[] { "duck_training_step_time_milliseconds_bucket", "duck_training_step_sent_bytes", "duck_training_step_received_bytes",
                     "duck_training_live_workers", "duck_training_checkpoint_age_seconds", "duck_training_worker_tokens_per_second" })
            Assert.Contains(scrapes, s => s.Contains(name + "{"));
    }

    [Fact]
    public void Dashboard_RunningJob_ListsTrainingGrainsWithinSeconds()
    {
        Assert.True(cluster.DashboardDelaySeconds < 15, $"workers on the dashboard after {cluster.DashboardDelaySeconds:F1} s");
        Assert.Contains(cluster.DashboardGrains, g => g.Grain == "Duck.Grains.TrainingJobGrain");
        Assert.Contains(cluster.DashboardGrains, g => g.Grain == "Duck.Grains.ParameterServerGrain");
    }

    [Fact]
    public void Roles_InferenceSilo_HostsNoTrainingGrain()
    {
        var inference = LocalCluster.Endpoint(cluster.Inference);

        Assert.Contains(cluster.DashboardGrains, g => g.Grain == "Duck.Grains.WorkerGrain");
        Assert.DoesNotContain(cluster.DashboardGrains, g => g.Silo.StartsWith(inference));
    }

    [Fact]
    public async Task DashboardSiloCounters_OnOrleans10_ShowOrleansValues()
    {
        var hosts = JsonNode.Parse(await cluster.Silos[0].Http.GetStringAsync("/dashboard/DashboardCounters"))!["hosts"]!.AsArray();
        string address = (string)hosts[0]!["siloAddress"]!;

        var counters = JsonNode.Parse(await cluster.Silos[0].Http.GetStringAsync($"/dashboard/SiloCounters/{address}"))!.AsArray();

        Assert.Equal(3, hosts.Count);
        Assert.Contains(counters, c => (string?)c!["name"] == "orleans-catalog-activations" && double.Parse((string)c["value"]!) > 0);
    }

    [Fact]
    public async Task TrainingData_CompletedJob_HasEveryStepValidationAndMembers()
    {
        var data = JsonNode.Parse(await cluster.Inference.Http.GetStringAsync("/training/data.json"))!;
        var job = data["jobs"]!.AsArray().Single(j => (string?)j!["job"] == LocalCluster.JobId)!;

        Assert.Equal("completed", (string?)job["state"]);
        Assert.Equal(Enumerable.Range(1, LocalCluster.Steps), job["train"]!.AsArray().Select(p => (int)(double)p![0]!));
        Assert.Equal(cluster.Final.ValLoss, (double)job["val"]![0]![1]!);
        Assert.Equal(3, data["members"]!.AsArray().Count);
    }

    [Fact]
    public void Chromium_TrainingPage_ChartHasOnePointPerStep()
    {
        string url = $"http://127.0.0.1:{cluster.Silos[0].HttpPort}/training";
        string screenshot = Path.Combine(Directory.CreateTempSubdirectory("duck-ops-shot-").FullName, "training-page.png");

        string dom = Chromium($"--dump-dom", url);
        Chromium($"--screenshot={screenshot}", url);

        var svg = Regex.Match(dom, "<svg[^>]*data-job=\"" + LocalCluster.JobId + "\"[^>]*>");
        Assert.True(svg.Success, "no chart for the job in:\n" + dom[..Math.Min(dom.Length, 3000)]);
        Assert.Contains($"data-train-points=\"{LocalCluster.Steps}\"", svg.Value);
        Assert.Contains("data-val-points=\"1\"", svg.Value);
        string points = Regex.Match(dom, "<polyline class=\"train\" points=\"([^\"]*)\"").Groups[1].Value;
        Assert.Equal(LocalCluster.Steps, points.Split(' ', StringSplitOptions.RemoveEmptyEntries).Length);
        Assert.True(new FileInfo(screenshot).Length > 10_000, "screenshot missing or blank");
        if (Environment.GetEnvironmentVariable("DUCK_SCREENSHOT_OUT") is { Length: > 0 } keep) File.Copy(screenshot, keep, overwrite: true);
    }

    /// <summary>Runs Debian's headless Chromium once (scripts/setup.sh installs it); its standard output.</summary>
    static string Chromium(string action, string url)
    {
        string binary = new[] { "/usr/bin/chromium", "/usr/bin/chromium-browser" }.FirstOrDefault(File.Exists)
            ?? throw new FileNotFoundException("Chromium is not installed; run scripts/setup.sh (apt-get install -y chromium)");
        var start = new ProcessStartInfo(binary) { UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (string a in new[] { "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                     "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage", "--hide-scrollbars", "--window-size=1100,900",
                     $"--user-data-dir={Directory.CreateTempSubdirectory("duck-chromium-").FullName}", "--virtual-time-budget=5000", action, url })
            start.ArgumentList.Add(a);
        using var p = Process.Start(start)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(TimeSpan.FromSeconds(60))) { p.Kill(entireProcessTree: true); throw new TimeoutException("chromium did not finish in 60 s"); }
        Assert.True(p.ExitCode == 0, $"chromium exited with {p.ExitCode}: {stderr.Result}");
        return stdout.Result;
    }
}
