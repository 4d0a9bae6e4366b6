// The training page: /training serves one self-contained HTML file (inline SVG chart, no external scripts), which
// polls /training/data.json. The JSON reads the job grains (status, step history, workers) and the membership
// table through the management grain. Jobs listed are those active in the cluster, those this silo has listed
// before, and any named with ?job=ID. Not the Orleans Dashboard (grain and silo statistics): see DuckOperations.
using System.Collections.Concurrent;
using Duck.Grains;
using Orleans.Runtime;

namespace Duck.Silo;

/// <summary>Builds the training page's data from the cluster.</summary>
public sealed class TrainingPage(IGrainFactory grains, ILocalSiloDetails local)
{
    /// <summary>Largest number of points per job and curve in one answer (the newest ones).</summary>
    public const int MaxPoints = 5000;
    static readonly GrainType JobGrainType = GrainType.Create("trainingjob");
    readonly ConcurrentDictionary<string, byte> known = new();

    public async Task<object> ReadAsync(IEnumerable<string> requested, CancellationToken ct)
    {
        var management = grains.GetGrain<IManagementGrain>(0);
        var hosts = await management.GetDetailedHosts(onlyActive: true);
        try
        {
            foreach (var id in await management.GetActiveGrains(JobGrainType)) known.TryAdd(id.Key.ToString()!, 0);
        }
        catch (Exception) { /* a silo is leaving; the jobs seen before are still listed */ }
        foreach (var id in requested.Where(j => !string.IsNullOrWhiteSpace(j))) known.TryAdd(id.Trim(), 0);
        var jobs = await Task.WhenAll(known.Keys.Order(StringComparer.Ordinal).Select(ReadJobAsync));
        return new
        {
            silo = local.Name,
            generated_at = DateTime.UtcNow,
            members = hosts.OrderBy(h => h.SiloAddress.ToString(), StringComparer.Ordinal).Select(h => new
            {
                name = h.SiloName, address = h.SiloAddress.ToString(), status = h.Status.ToString(), started = h.StartTime,
                local = h.SiloAddress.Equals(local.SiloAddress),
            }),
            jobs = jobs.Where(j => j is not null),
        };
    }

    async Task<object?> ReadJobAsync(string id)
    {
        var job = grains.GetGrain<ITrainingJobGrain>(id);
        JobStatus status;
        try { status = await job.GetStatusAsync(); }
        catch (KeyNotFoundException) { known.TryRemove(id, out _); return null; }
        var history = await job.GetHistoryAsync(-1, 10_000);
        var workers = status.State == JobState.Running && status.Spec is { } spec
            ? await Task.WhenAll(Enumerable.Range(0, spec.Workers).Select(async w =>
                (Index: w, Status: await grains.GetGrain<IWorkerGrain>(TrainingJobGrain.WorkerKey(id, w)).GetStatusAsync())))
            : [];
        var last = history.TakeLast(MaxPoints).ToList();
        return new
        {
            job = id, state = status.State.ToString().ToLowerInvariant(), step = status.Step, steps = status.Steps, preset = status.Spec?.Preset,
            workers = status.Spec?.Workers, reason = status.Reason, val_loss = status.ValLoss, checkpoint_step = status.CheckpointStep,
            recoveries = status.Recoveries, compression_ratio = status.CompressionRatio,
            tokens_per_s = status.Last?.TokensPerSecond, step_time_ms = status.Last?.StepTimeMs, live_workers = status.Last?.LiveWorkers,
            train = last.Select(m => new[] { m.Step, m.Loss }),
            val = status.ValLoss is { } v ? new[] { new[] { (double)status.Step, v } } : [],
            worker_status = workers.Select(w => new
            {
                index = w.Index, silo = w.Status.Silo, last_step = w.Status.LastStep, busy = w.Status.Busy,
                tokens_per_s = w.Status.TokensPerSecond, error = w.Status.LastError,
            }),
        };
    }
}

public static class TrainingPageEndpoints
{
    public static WebApplication MapTrainingPage(this WebApplication app)
    {
        string html;
        using (var stream = typeof(TrainingPage).Assembly.GetManifestResourceStream("Duck.Silo.training.html")
                            ?? throw new InvalidOperationException("training.html is not embedded in Duck.Silo"))
        using (var reader = new StreamReader(stream)) html = reader.ReadToEnd();
        app.MapGet("/training", () => Results.Content(html, "text/html; charset=utf-8"));
        app.MapGet("/training/data.json", async (HttpContext context, TrainingPage page, CancellationToken ct) =>
        {
            var requested = context.Request.Query["job"].SelectMany(j => (j ?? "").Split(','));
            try { return Results.Json(await page.ReadAsync(requested, ct)); }
            catch (Exception e) when (e is not OperationCanceledException)
            {
                return Results.Json(new { error = $"{e.GetType().Name}: {e.Message}" }, statusCode: StatusCodes.Status503ServiceUnavailable);
            }
        });
        return app;
    }
}
