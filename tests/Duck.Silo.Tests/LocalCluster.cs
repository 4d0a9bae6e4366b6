// A real three-silo cluster on loopback for the operations tests: silo 0 (role both, primary), silo 1 (training)
// and silo 2 (inference), one `tiny` job of a few steps on a 128-token pattern submitted through an Orleans client,
// and what operators would have seen while it ran: how long until the job showed on /metrics and on the Orleans
// Dashboard, and where the dashboard saw Duck's grains.
using System.Diagnostics;
using System.Net;
using System.Text.Json.Nodes;
using Duck.Core.Data;
using Duck.Grains;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Orleans.Configuration;

namespace Duck.Silo.Tests;

public sealed class LocalCluster : IAsyncLifetime
{
    public const int Steps = 12;
    public const string JobId = "ops-tiny";
    public SiloProcess[] Silos { get; private set; } = [];
    public SiloProcess Inference => Silos[2];
    /// <summary>Seconds from submission until a silo's /metrics carried the job (duck_training_job_step).</summary>
    public double MetricsDelaySeconds { get; private set; } = double.NaN;
    /// <summary>Seconds from submission until the dashboard listed a worker grain.</summary>
    public double DashboardDelaySeconds { get; private set; } = double.NaN;
    /// <summary>Grain type and silo address of every Duck grain the dashboard listed during the run.</summary>
    public HashSet<(string Grain, string Silo)> DashboardGrains { get; } = [];
    public JobStatus Final { get; private set; } = new();
    IHost? client;

    public async Task InitializeAsync()
    {
        string state = Directory.CreateTempSubdirectory("duck-ops-state-").FullName;
        var primary = SiloProcess.Start(state);
        await primary.WaitReadyAsync();
        Silos = [primary, SiloProcess.Start(state, primary.SiloPort, ["--Duck:Silo:Role=training"]),
                 SiloProcess.Start(state, primary.SiloPort, ["--Duck:Silo:Role=inference"])];
        await Task.WhenAll(Silos.Skip(1).Select(s => s.WaitReadyAsync()));

        var builder = Host.CreateApplicationBuilder();
        builder.Logging.ClearProviders();
        builder.UseOrleansClient(c =>
        {
            c.UseStaticClustering(new IPEndPoint(IPAddress.Loopback, primary.GatewayPort));
            c.Configure<ClusterOptions>(o => { o.ClusterId = "duck"; o.ServiceId = "duck"; });
        });
        client = builder.Build();
        await client.StartAsync();
        var grains = client.Services.GetRequiredService<IClusterClient>();

        var submitted = Stopwatch.StartNew();
        await grains.GetGrain<ITrainingJobGrain>(JobId).SubmitAsync(Spec(PrepareData()));
        var deadline = DateTime.UtcNow.AddMinutes(4);
        while (DateTime.UtcNow < deadline)
        {
            if (double.IsNaN(MetricsDelaySeconds) && await AnyMetricsShowJobAsync()) MetricsDelaySeconds = submitted.Elapsed.TotalSeconds;
            await ReadDashboardAsync();
            if (double.IsNaN(DashboardDelaySeconds) && DashboardGrains.Any(g => g.Grain.EndsWith("WorkerGrain"))) DashboardDelaySeconds = submitted.Elapsed.TotalSeconds;
            Final = await grains.GetGrain<ITrainingJobGrain>(JobId).GetStatusAsync();
            if (Final.IsFinished) break;
            await Task.Delay(250);
        }
        if (!Final.IsFinished) throw new TimeoutException($"job {JobId} did not finish: {Final}\n{string.Join("\n---\n", Silos.Select(s => s.Output))}");
    }

    async Task<bool> AnyMetricsShowJobAsync()
    {
        foreach (var silo in Silos)
            if (MetricLines(await silo.Http.GetStringAsync("/metrics"), "duck_training_job_step").Any()) return true;
        return false;
    }

    /// <summary>The values of <paramref name="metric"/>'s samples for this job in a Prometheus scrape.</summary>
    public static IEnumerable<double> MetricLines(string scrape, string metric) =>
        scrape.Split('\n').Where(l => l.StartsWith(metric + "{") && l.Contains($"job=\"{JobId}\""))
              .Select(l => double.Parse(l[(l.LastIndexOf(' ') + 1)..], System.Globalization.CultureInfo.InvariantCulture));

    async Task ReadDashboardAsync()
    {
        var counters = JsonNode.Parse(await Silos[0].Http.GetStringAsync("/dashboard/DashboardCounters"))!;
        foreach (var g in counters["simpleGrainStats"]!.AsArray())
            if (((string?)g!["grainType"])?.StartsWith("Duck.") == true && (int)g["activationCount"]! > 0)
                DashboardGrains.Add(((string)g["grainType"]!, (string)g["siloAddress"]!));
    }

    static string PrepareData()
    {
        const int vocab = 128;
        static ushort[] Pattern(int length, int seed)
        {
            var rng = new Random(seed);
            return Enumerable.Range(0, length).Select(i => (ushort)(rng.Next(10) == 0 ? rng.Next(vocab) : (i * 7 + i / 5) % vocab)).ToArray();
        }
        string folder = Directory.CreateTempSubdirectory("duck-ops-data-").FullName;
        var shards = new List<ShardInfo>();
        for (int s = 0; s < 2; s++)
        {
            string file = $"train-{s:D3}.tok";
            shards.Add(new ShardInfo { File = file, Tokens = 20_000, Documents = 1, SizeBytes = TokenShard.Write(Path.Combine(folder, file), Pattern(20_000, s + 1), 1, vocab) });
        }
        long valSize = TokenShard.Write(Path.Combine(folder, "val.tok"), Pattern(4_000, 99), 1, vocab);
        new DataManifest { Source = "text", VocabSize = vocab, Shards = shards, Validation = new ShardInfo { File = "val.tok", Tokens = 4_000, Documents = 1, SizeBytes = valSize } }.Write(folder);
        return folder;
    }

    static JobSpec Spec(string data) => new()
    {
        Preset = "tiny", DataFolder = data, Workers = 2, Steps = Steps, BatchSize = 4, SequenceLength = 32, VocabSize = 128,
        LearningRate = 3e-3, WarmupSteps = 2, CheckpointStore = Directory.CreateTempSubdirectory("duck-ops-ckpt-").FullName,
        CheckpointEvery = 6, StepTimeoutSeconds = 10, EvalBatches = 2,
    };

    /// <summary>The silo address as the dashboard writes it ("127.0.0.1:PORT@GENERATION" without the generation).</summary>
    public static string Endpoint(SiloProcess silo) => $"127.0.0.1:{silo.SiloPort}@";

    public async Task DisposeAsync()
    {
        // DUCK_OPS_FIGURES=FILE keeps what an operator would have seen, for docs/benchmarks.md.
        if (Environment.GetEnvironmentVariable("DUCK_OPS_FIGURES") is { Length: > 0 } figures && Silos.All(s => !s.HasExited))
            File.WriteAllText(figures, System.Text.Json.JsonSerializer.Serialize(new
            {
                metrics_delay_s = MetricsDelaySeconds, dashboard_delay_s = DashboardDelaySeconds, steps = Final.Step, val_loss = Final.ValLoss,
                rss_bytes = Silos.Select(s => s.ResidentBytes).ToArray(), roles = new[] { "both", "training", "inference" },
            }));
        if (client is not null) { try { await client.StopAsync(); } catch (Exception) { } client.Dispose(); }
        foreach (var s in Silos) s.Dispose();
    }
}
