// The cluster's list of running jobs, and the silo service that pokes it. A job grain drives its steps from a grain
// timer; when its silo dies, Orleans re-activates it only on the next call. A client following the job makes that
// call, and so does the parameter server after each commit, but a step that waits for a lost worker has neither: only
// the job would re-order it. So every silo pokes this grain every period, and it asks each running job for its status,
// which re-activates the job (and its driver) on a surviving silo.
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace Duck.Grains;

/// <summary>The persisted list of running jobs.</summary>
[GenerateSerializer]
public sealed record RunningJobsState
{
    [Id(0)] public List<string> JobIds { get; init; } = [];
}

public sealed class RunningJobsGrain(
    [PersistentState("running", DuckStorage.Name)] IPersistentState<RunningJobsState> saved,
    ILogger<RunningJobsGrain> logger) : Grain, IRunningJobsGrain
{
    static readonly TimeSpan AskLimit = TimeSpan.FromSeconds(10);

    public async Task AddAsync(string jobId)
    {
        if (saved.State.JobIds.Contains(jobId)) return;
        saved.State = new RunningJobsState { JobIds = [.. saved.State.JobIds, jobId] };
        await saved.WriteStateAsync();
    }

    public async Task<int> PokeAsync()
    {
        var ids = saved.State.JobIds.ToArray();
        var states = await Task.WhenAll(ids.Select(AskAsync));
        var running = ids.Where((_, i) => states[i] is null or JobState.Running or JobState.Pending).ToList();
        if (running.Count != ids.Length)
        {
            saved.State = new RunningJobsState { JobIds = running };
            await saved.WriteStateAsync();
        }
        return running.Count;
    }

    /// <summary>The job's state; null when it could not be asked now (kept, asked again next time).</summary>
    async Task<JobState?> AskAsync(string jobId)
    {
        try { return (await GrainFactory.GetGrain<ITrainingJobGrain>(jobId).GetStatusAsync().WaitAsync(AskLimit)).State; }
        catch (KeyNotFoundException) { return JobState.Failed; } // no such job: forget it
        catch (Exception e)
        {
            Log.JobPokeFailed(logger, e, jobId);
            return null;
        }
    }
}

/// <summary>Pokes the running-jobs grain every <see cref="DuckSiloOptions.JobKeeperPeriod"/> (on every silo, so that any
/// survivor does it).</summary>
public sealed class JobKeeper(IGrainFactory grains, DuckSiloOptions options, ILogger<JobKeeper> logger) : BackgroundService
{
    protected override async Task ExecuteAsync(CancellationToken ct)
    {
        if (options.JobKeeperPeriod <= TimeSpan.Zero) return;
        using var timer = new PeriodicTimer(options.JobKeeperPeriod);
        while (await timer.WaitForNextTickAsync(ct))
        {
            try { await grains.GetGrain<IRunningJobsGrain>(RunningJobs.Key).PokeAsync(); }
            catch (Exception e) when (!ct.IsCancellationRequested) { Log.JobKeeperFailed(logger, e); } // silo starting or stopping, or no training silo
        }
    }
}
