// Faults on a 3-silo in-process cluster: killing the silo of a worker mid-job, and killing the silo of the parameter
// server mid-job, both end in a completed job whose loss kept falling; the server comes back from its checkpoint.
// A worker lost in low-communication mode rejoins with a full weight fetch.
using Orleans.TestingHost;

namespace Duck.Grains.Tests;

public class FaultTests
{
    /// <summary>Runs a 30-step job on 3 silos and kills the silo of the parameter server or of a worker once the job
    /// is past its first checkpoint (step 5). The job is paused while the victim is picked and killed right after it
    /// resumes: the tiny job is quick enough to finish between a poll and a kill on a loaded machine (it did once in
    /// CI). The pause is asked for at step 6, not later: in CI a pause asked for at step 12 landed at step 27, the
    /// last round of a low-communication job.</summary>
    static async Task<(JobStatus Done, IReadOnlyList<StepMetric> History, int VictimWorker, WorkerStatus? VictimAfter, string VictimSilo, int PausedAt)>
        RunWithKillAsync(string jobId, bool killServer, int syncEvery = 1)
    {
        await using var cluster = await TestClusters.StartAsync(3);
        var spec = TestData.Job(TestData.PrepareFolder(), steps: 30, GradientCompression.Ternary) with { CheckpointEvery = 5, SyncEvery = syncEvery };
        var client = cluster.Client;
        var job = client.GetGrain<ITrainingJobGrain>(jobId);
        await job.SubmitAsync(spec);
        await TestClusters.WaitAsync(client, jobId, TimeSpan.FromSeconds(60), s => s.Step >= 6);
        var paused = await job.PauseAsync();
        Assert.True(paused.State == JobState.Paused && paused.Step < spec.Steps - syncEvery, $"{paused.State} at step {paused.Step}");

        string serverSilo = (await client.GetGrain<IParameterServerGrain>(jobId).GetStatusAsync()).Silo;
        string victimSilo = serverSilo;
        int victimWorker = -1;
        if (!killServer)
            for (int w = 0; w < spec.Workers && victimSilo == serverSilo; w++)
                (victimSilo, victimWorker) = ((await client.GetGrain<IWorkerGrain>(TrainingJobGrain.WorkerKey(jobId, w)).GetStatusAsync()).Silo, w);
        Assert.True(killServer || victimSilo != serverSilo, "no worker lives apart from the parameter server");
        var victim = cluster.Silos.Single(s => s.SiloAddress.ToString() == victimSilo);
        await job.ResumeAsync();
        await cluster.KillSiloAsync(victim);

        var done = await TestClusters.WaitAsync(client, jobId, TimeSpan.FromSeconds(150));
        var after = victimWorker < 0 ? null : await client.GetGrain<IWorkerGrain>(TrainingJobGrain.WorkerKey(jobId, victimWorker)).GetStatusAsync();
        return (done, await job.GetHistoryAsync(0, 100), victimWorker, after, victimSilo, paused.Step);
    }

    /// <summary>The killed worker re-activated on a surviving silo and took part in the job there (a worker first
    /// activated by the status query would not have computed any step).</summary>
    static void AssertWorkerCarriedOn(WorkerStatus? after, string victimSilo, int pausedAt)
    {
        Assert.NotNull(after);
        Assert.NotEqual(victimSilo, after.Silo);
        Assert.True(after.LastStep > pausedAt, $"the re-activated worker's last step is {after.LastStep}; the kill came after step {pausedAt}");
    }

    [Fact]
    public async Task KillSilo_OfAWorker_JobCompletesAndLossKeepsFalling()
    {
        var (done, history, _, after, victimSilo, pausedAt) = await RunWithKillAsync("killworker", killServer: false);

        Assert.True(done.State == JobState.Completed, done.Reason);
        Assert.Equal(Enumerable.Range(1, 30), history.Select(m => m.Step));
        Assert.True(history.TakeLast(5).Average(m => m.Loss) < history.Take(5).Average(m => m.Loss) - 0.1);
        AssertWorkerCarriedOn(after, victimSilo, pausedAt);
    }

    [Fact]
    public async Task KillSilo_OfAWorkerInLowCommunicationMode_JobCompletesAndLossKeepsFalling()
    {
        // The re-activated worker has missed rounds: it fetches the full weights once, then follows deltas again.
        var (done, history, _, after, victimSilo, pausedAt) = await RunWithKillAsync("killworker-diloco", killServer: false, syncEvery: 3);

        Assert.True(done.State == JobState.Completed, done.Reason);
        Assert.Equal(Enumerable.Range(1, 30), history.Select(m => m.Step));
        Assert.True(history.TakeLast(5).Average(m => m.Loss) < history.Take(5).Average(m => m.Loss) - 0.1);
        AssertWorkerCarriedOn(after, victimSilo, pausedAt);
    }

    [Fact]
    public async Task KillSilo_OfTheParameterServer_ResumesFromCheckpointAndCompletes()
    {
        var (done, history, _, _, _, _) = await RunWithKillAsync("killserver", killServer: true);

        Assert.True(done.State == JobState.Completed, done.Reason);
        Assert.True(done.Recoveries >= 1, $"recoveries {done.Recoveries}; reason {done.Reason}");
        Assert.Equal(Enumerable.Range(1, 30), history.Select(m => m.Step));
        Assert.True(history.TakeLast(5).Average(m => m.Loss) < history.Take(5).Average(m => m.Loss) - 0.1);
    }

    [Fact]
    public async Task KillSilo_OfTheJob_WithNoClientFollowing_JobGoesOnToCompletion()
    {
        // Nobody asks the job after its silo dies: only the parameter server is watched. The running-jobs keeper
        // re-activates the job, which orders the steps (and re-orders a worker lost with the same silo).
        await using var cluster = await TestClusters.StartAsync(3);
        var spec = TestData.Job(TestData.PrepareFolder(), steps: 30, GradientCompression.Ternary) with { CheckpointEvery = 5 };
        var client = cluster.Client;
        var job = client.GetGrain<ITrainingJobGrain>("killjob");
        await job.SubmitAsync(spec);
        var running = await TestClusters.WaitAsync(client, "killjob", TimeSpan.FromSeconds(60), s => s.Step >= 5);
        Assert.Equal(JobState.Running, running.State);

        await cluster.KillSiloAsync(cluster.Silos.Single(s => s.SiloAddress.ToString() == running.Silo));
        var server = client.GetGrain<IParameterServerGrain>("killjob");
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(150);
        ParameterServerStatus? ps = null;
        while (DateTime.UtcNow < deadline && ps is not { Version: 30, Committing: false })
        {
            try { ps = await server.GetStatusAsync(); } catch (Exception) { /* the server's silo may be the dead one */ }
            await Task.Delay(250);
        }

        Assert.True(ps is { Version: 30 }, $"the server stopped at version {ps?.Version}");
        var done = await TestClusters.WaitAsync(client, "killjob", TimeSpan.FromSeconds(60));
        Assert.True(done.State == JobState.Completed, done.Reason);
        Assert.NotEqual(running.Silo, done.Silo);
    }
}
