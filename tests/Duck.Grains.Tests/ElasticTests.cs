// Elastic join on an in-process cluster: a job starts on one silo with two workers; a second silo joins mid-job and
// one worker migrates there between two steps with its residuals (or local replica), so from then on the workers
// live on two silos and the loss sequence is exactly that of the same job run without the join. The low-communication
// job is paused while the silo joins (it is too quick to catch otherwise), which also checks that pause and resume
// leave the loss sequence unchanged.
using System.Net;

namespace Duck.Grains.Tests;

public class ElasticTests(Xunit.Abstractions.ITestOutputHelper output)
{
    const int Steps = 40;

    /// <summary>The same ternary job twice on one silo: once alone (the reference), once with a silo joining at step 5
    /// (paused meanwhile when <paramref name="pauseForJoin"/>).</summary>
    async Task<(IReadOnlyList<StepMetric> Reference, IReadOnlyList<StepMetric> Joined, JobStatus Done, List<(int Step, int Silos)> Seen)>
        RunAsync(string jobId, int syncEvery, bool pauseForJoin)
    {
        await using var cluster = await TestClusters.StartAsync(1);
        var client = cluster.Client;
        var data = TestData.PrepareFolder();
        var spec = TestData.Job(data, Steps, GradientCompression.Ternary) with { SyncEvery = syncEvery, CheckpointEvery = 20 };
        await client.GetGrain<ITrainingJobGrain>(jobId + "-ref").SubmitAsync(spec);
        await TestClusters.WaitAsync(client, jobId + "-ref", TimeSpan.FromSeconds(90));
        var reference = await client.GetGrain<ITrainingJobGrain>(jobId + "-ref").GetHistoryAsync(0, 100);

        var job = client.GetGrain<ITrainingJobGrain>(jobId);
        await job.SubmitAsync(spec with { CheckpointStore = spec.CheckpointStore + "-joined" });
        await TestClusters.WaitAsync(client, jobId, TimeSpan.FromSeconds(60), s => s.Step >= 5);
        if (pauseForJoin)
        {
            // Paused while the silo starts and its grain types reach every silo's manifest: a low-communication job on the
            // tiny preset can finish before the new silo is known (it did once in CI under load).
            var paused = await job.PauseAsync();
            await cluster.StartAdditionalSiloAsync();
            await cluster.WaitForClusterManifestToStabilizeAsync();
            var held = await job.GetStatusAsync();
            Assert.Equal(JobState.Paused, held.State);
            Assert.Equal(paused.Step, held.Step);
            var resumed = await job.ResumeAsync();
            Assert.Equal(JobState.Running, resumed.State);
        }
        else await cluster.StartAdditionalSiloAsync();
        var seen = new List<(int Step, int Silos)>();
        JobStatus status;
        do
        {
            status = await client.GetGrain<ITrainingJobGrain>(jobId).GetStatusAsync();
            var silos = await Task.WhenAll(Enumerable.Range(0, spec.Workers)
                .Select(w => client.GetGrain<IWorkerGrain>(TrainingJobGrain.WorkerKey(jobId, w)).GetStatusAsync()));
            seen.Add((status.Step, silos.Select(s => s.Silo).Distinct().Count()));
            await Task.Delay(100);
        }
        while (!status.IsFinished);
        var joined = await client.GetGrain<ITrainingJobGrain>(jobId).GetHistoryAsync(0, 100);
        output.WriteLine($"silos per observed step: {string.Join(" ", seen.Select(s => $"{s.Step}:{s.Silos}"))}");
        output.WriteLine($"losses (reference | joined): {string.Join(" ", reference.Zip(joined, (r, j) => $"{r.Loss:F4}|{j.Loss:F4}"))}");
        return (reference, joined, status, seen);
    }

    static void AssertElastic(IReadOnlyList<StepMetric> reference, IReadOnlyList<StepMetric> joined, JobStatus done, List<(int Step, int Silos)> seen)
    {
        Assert.True(done.State == JobState.Completed, done.Reason);
        Assert.Equal(Enumerable.Range(1, Steps), joined.Select(m => m.Step));
        int firstSpread = seen.FindIndex(s => s.Silos == 2);
        Assert.True(firstSpread >= 0 && seen[firstSpread].Step < Steps, $"the workers never lived on two silos before the end: {string.Join(" ", seen)}");
        Assert.All(seen.Skip(firstSpread), s => Assert.Equal(2, s.Silos));
        Assert.True(joined.TakeLast(5).Average(m => m.Loss) < joined.Take(5).Average(m => m.Loss) - 0.1);
        for (int i = 0; i < Steps; i++)
            Assert.True(joined[i].Loss == reference[i].Loss, $"step {i + 1}: joined {joined[i].Loss:R}, reference {reference[i].Loss:R}");
    }

    [Fact]
    public async Task SiloJoins_MidJob_OneWorkerMovesThereAndLossSequenceIsUnchanged()
    {
        var (reference, joined, done, seen) = await RunAsync("elastic", syncEvery: 1, pauseForJoin: false);

        AssertElastic(reference, joined, done, seen);
    }

    [Fact]
    public async Task SiloJoins_MidJobInLowCommunicationMode_WorkerMovesWithItsReplicaAndLossSequenceIsUnchanged()
    {
        var (reference, joined, done, seen) = await RunAsync("elastic-diloco", syncEvery: 4, pauseForJoin: true);

        AssertElastic(reference, joined, done, seen);
    }

    static SiloAddress Silo(int port) => SiloAddress.New(new IPEndPoint(IPAddress.Loopback, port), 1);

    [Fact]
    public void Plan_TwoWorkersOnOneSiloAndAnEmptySilo_MovesTheHigherIndexThere()
    {
        var (a, b) = (Silo(11111), Silo(11112));

        var move = ElasticWorkers.Plan([a.ToString(), a.ToString()], [a, b]);

        Assert.Equal((1, b), move);
    }

    [Fact]
    public void Plan_ThreeWorkersSpreadOverTwoOfThreeSilos_MovesOneOfTheCrowdedSilo()
    {
        var (a, b, c) = (Silo(11111), Silo(11112), Silo(11113));

        var move = ElasticWorkers.Plan([a.ToString(), c.ToString(), a.ToString()], [a, b, c]);

        Assert.Equal((2, b), move);
    }

    [Fact]
    public void Plan_NoSiloHostsTwoWorkers_ReturnsNull()
    {
        var (a, b, c) = (Silo(11111), Silo(11112), Silo(11113));

        Assert.Null(ElasticWorkers.Plan([a.ToString(), b.ToString()], [a, b, c]));
        Assert.Null(ElasticWorkers.Plan([a.ToString(), a.ToString()], [a]));
    }
}
