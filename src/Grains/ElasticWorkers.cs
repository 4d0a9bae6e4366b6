// Elastic workers: when the silos that can host workers change (one joined, or one died and its workers doubled up on
// a survivor), the job moves one worker per step boundary from a silo hosting several of its workers to a silo hosting
// none. The worker migrates with Orleans live migration and carries its error-feedback residuals (and, in
// low-communication mode, its local replica), so the loss sequence is the one it would have been without the move.
// Not the placement of new activations: SpreadWorkersPlacement does that.
using Microsoft.Extensions.Logging;

namespace Duck.Grains;

/// <summary>Where a job's workers should go.</summary>
public static class ElasticWorkers
{
    /// <summary>The move that spreads the workers: the highest-index worker of the most crowded silo (two or more of
    /// the job's workers) to the first silo of <paramref name="silos"/> hosting none; null when no such move exists.
    /// <paramref name="workerSilos"/>[k] is where worker k lives (as SiloAddress.ToString()).</summary>
    public static (int Worker, SiloAddress Target)? Plan(IReadOnlyList<string> workerSilos, IReadOnlyList<SiloAddress> silos)
    {
        var free = silos.FirstOrDefault(s => !workerSilos.Contains(s.ToString()));
        var crowded = workerSilos.Select((silo, worker) => (silo, worker)).GroupBy(w => w.silo)
            .Where(g => g.Count() > 1).OrderByDescending(g => g.Count()).ThenBy(g => g.Key, StringComparer.Ordinal).FirstOrDefault();
        if (free is null || crowded is null) return null;
        return (crowded.Max(w => w.worker), free);
    }
}

/// <summary>The job grain's half: at each step boundary, before the step is ordered, checks the silos that can host
/// workers and moves at most one worker; the step is ordered once the worker has arrived.</summary>
sealed class WorkerSpreader(IGrainFactory grains, IClusterMembershipService membership, IClusterManifestProvider manifest, ILogger logger)
{
    /// <summary>Bound on each status query (a worker whose silo died but is not yet declared dead does not hold the job).</summary>
    static readonly TimeSpan StatusTimeout = TimeSpan.FromSeconds(3);
    /// <summary>How long the job waits for a moving worker before it orders the step wherever the worker is.</summary>
    static readonly TimeSpan MoveLimit = TimeSpan.FromSeconds(15);

    string? balancedFor;
    (int Worker, SiloAddress Target, DateTime Deadline)? moving;

    /// <summary>True while a worker is on its way: the caller must not order the step yet.</summary>
    public async Task<bool> BeforeStepAsync(string jobId, JobSpec spec, int step)
    {
        if (moving is { } m) return await StillMovingAsync(jobId, m);
        var silos = WorkerSilos(jobId);
        string key = string.Join(",", silos);
        if (key == balancedFor || silos.Count < 2) return false;
        string[] where;
        try
        {
            var statuses = await Task.WhenAll(Enumerable.Range(0, spec.Workers)
                .Select(w => grains.GetGrain<IWorkerGrain>(TrainingJobGrain.WorkerKey(jobId, w)).GetStatusAsync().WaitAsync(StatusTimeout)));
            where = statuses.Select(s => s.Silo).ToArray();
        }
        catch (Exception) { return false; } // a worker's silo is dying; look again at the next step
        if (ElasticWorkers.Plan(where, silos) is not { } move)
        {
            balancedFor = key;
            return false;
        }
        var worker = grains.GetGrain<IWorkerGrain>(TrainingJobGrain.WorkerKey(jobId, move.Worker));
        if (!await worker.MoveToAsync(move.Target)) return false; // busy with a late step: try at the next boundary
        Log.WorkerMoving(logger, jobId, move.Worker, where[move.Worker], move.Target.ToString(), step + 1);
        moving = (move.Worker, move.Target, DateTime.UtcNow + MoveLimit);
        return true;
    }

    async Task<bool> StillMovingAsync(string jobId, (int Worker, SiloAddress Target, DateTime Deadline) m)
    {
        string? silo = null;
        try { silo = (await grains.GetGrain<IWorkerGrain>(TrainingJobGrain.WorkerKey(jobId, m.Worker)).GetStatusAsync().WaitAsync(StatusTimeout)).Silo; }
        catch (Exception) { /* in transit */ }
        if (silo != m.Target.ToString() && DateTime.UtcNow < m.Deadline) return true;
        if (silo != m.Target.ToString()) Log.WorkerMoveAbandoned(logger, jobId, m.Worker, m.Target.ToString());
        moving = null;
        return false;
    }

    /// <summary>The active silos that can host worker grains (a silo of role inference cannot), in address order.</summary>
    List<SiloAddress> WorkerSilos(string jobId)
    {
        var type = grains.GetGrain<IWorkerGrain>(TrainingJobGrain.WorkerKey(jobId, 0)).GetGrainId().Type;
        var supported = manifest.Current.Silos.Where(s => s.Value.Grains.ContainsKey(type)).Select(s => s.Key).ToHashSet();
        return membership.CurrentSnapshot.Members.Values
            .Where(m => m.Status == SiloStatus.Active && supported.Contains(m.SiloAddress)).Select(m => m.SiloAddress)
            .OrderBy(s => s.ToString(), StringComparer.Ordinal).ToList();
    }
}
