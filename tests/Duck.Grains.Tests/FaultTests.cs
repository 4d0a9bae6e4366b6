// Faults on a 3-silo in-process cluster: killing the silo of a worker mid-job, and killing the silo of the parameter
// server mid-job, both end in a completed job whose loss kept falling; the server comes back from its checkpoint.
// A worker lost in low-communication mode rejoins with a full weight fetch.
using Orleans.TestingHost;

namespace Duck.Grains.Tests;

public class FaultTests
{
    static async Task<(JobStatus Done, IReadOnlyList<StepMetric> History)> RunWithKillAsync(string jobId, bool killServer, int syncEvery = 1)
    {
        await using var cluster = await TestClusters.StartAsync(3);
        var spec = TestData.Job(TestData.PrepareFolder(), steps: 30, GradientCompression.Ternary) with { CheckpointEvery = 5, SyncEvery = syncEvery };
        var client = cluster.Client;
        await client.GetGrain<ITrainingJobGrain>(jobId).SubmitAsync(spec);
        await TestClusters.WaitAsync(client, jobId, TimeSpan.FromSeconds(60), s => s.Step >= 12);

        string serverSilo = (await client.GetGrain<IParameterServerGrain>(jobId).GetStatusAsync()).Silo;
        string victimSilo = serverSilo;
        if (!killServer)
            for (int w = 0; w < spec.Workers && victimSilo == serverSilo; w++)
                victimSilo = (await client.GetGrain<IWorkerGrain>(TrainingJobGrain.WorkerKey(jobId, w)).GetStatusAsync()).Silo;
        var victim = cluster.Silos.Single(s => s.SiloAddress.ToString() == victimSilo);
        await cluster.KillSiloAsync(victim);

        var done = await TestClusters.WaitAsync(client, jobId, TimeSpan.FromSeconds(150));
        return (done, await client.GetGrain<ITrainingJobGrain>(jobId).GetHistoryAsync(0, 100));
    }

    [Fact]
    public async Task KillSilo_OfAWorker_JobCompletesAndLossKeepsFalling()
    {
        var (done, history) = await RunWithKillAsync("killworker", killServer: false);

        Assert.Equal(JobState.Completed, done.State);
        Assert.Equal(Enumerable.Range(1, 30), history.Select(m => m.Step));
        Assert.True(history.TakeLast(5).Average(m => m.Loss) < history.Take(5).Average(m => m.Loss) - 0.1);
    }

    [Fact]
    public async Task KillSilo_OfAWorkerInLowCommunicationMode_JobCompletesAndLossKeepsFalling()
    {
        // The re-activated worker has missed rounds: it fetches the full weights once, then follows deltas again.
        var (done, history) = await RunWithKillAsync("killworker-diloco", killServer: false, syncEvery: 3);

        Assert.True(done.State == JobState.Completed, done.Reason);
        Assert.Equal(Enumerable.Range(1, 30), history.Select(m => m.Step));
        Assert.True(history.TakeLast(5).Average(m => m.Loss) < history.Take(5).Average(m => m.Loss) - 0.1);
    }

    [Fact]
    public async Task KillSilo_OfTheParameterServer_ResumesFromCheckpointAndCompletes()
    {
        var (done, history) = await RunWithKillAsync("killserver", killServer: true);

        Assert.Equal(JobState.Completed, done.State);
        Assert.True(done.Recoveries >= 1, $"recoveries {done.Recoveries}; reason {done.Reason}");
        Assert.Equal(Enumerable.Range(1, 30), history.Select(m => m.Step));
        Assert.True(history.TakeLast(5).Average(m => m.Loss) < history.Take(5).Average(m => m.Loss) - 0.1);
    }
}
