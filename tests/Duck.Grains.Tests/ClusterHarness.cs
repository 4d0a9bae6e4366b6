// Test scaffolding for the training cluster: a small prepared data folder (two training shards and a validation
// shard of a learnable token pattern, vocabulary 128) and in-process Orleans test clusters of 2-3 silos wired
// like src/Silo, with fast failure detection so that a killed silo is declared dead within seconds.
using Duck.Core.Data;
using Duck.Grains;
using Orleans.Configuration;
using Orleans.Hosting;
using Orleans.TestingHost;

namespace Duck.Grains.Tests;

static class TestData
{
    public const int Vocab = 128;

    /// <summary>A learnable sequence: a repeating pattern with a little noise.</summary>
    public static ushort[] Pattern(int length, int seed)
    {
        var rng = new Random(seed);
        var tokens = new ushort[length];
        for (int i = 0; i < length; i++) tokens[i] = (ushort)(rng.Next(10) == 0 ? rng.Next(Vocab) : (i * 7 + i / 5) % Vocab);
        return tokens;
    }

    /// <summary>A prepared data folder with <paramref name="shards"/> training shards and a validation shard.</summary>
    public static string PrepareFolder(int shards = 2)
    {
        string folder = Directory.CreateTempSubdirectory("duck-grains-data-").FullName;
        var infos = new List<ShardInfo>();
        for (int s = 0; s < shards; s++)
        {
            string file = $"train-{s:D3}.tok";
            long size = TokenShard.Write(Path.Combine(folder, file), Pattern(20_000, s + 1), 1, Vocab);
            infos.Add(new ShardInfo { File = file, Tokens = 20_000, Documents = 1, SizeBytes = size });
        }
        long valSize = TokenShard.Write(Path.Combine(folder, "val.tok"), Pattern(4_000, 99), 1, Vocab);
        new DataManifest
        {
            Source = "text", VocabSize = Vocab, Shards = infos,
            Validation = new ShardInfo { File = "val.tok", Tokens = 4_000, Documents = 1, SizeBytes = valSize },
        }.Write(folder);
        return folder;
    }

    /// <summary>A tiny-preset job over <paramref name="dataFolder"/> checkpointing to a fresh temporary folder.</summary>
    public static JobSpec Job(string dataFolder, int steps, GradientCompression compression, int workers = 2, bool shared = false) => new()
    {
        Preset = "tiny", DataFolder = dataFolder, Workers = workers, Steps = steps, BatchSize = 4, SequenceLength = 32,
        VocabSize = Vocab, Compression = compression, SharedData = shared, LearningRate = 3e-3, WarmupSteps = 2,
        CheckpointStore = Directory.CreateTempSubdirectory("duck-grains-ckpt-").FullName, CheckpointEvery = 5,
        StepTimeoutSeconds = 8, EvalBatches = 2,
    };
}

static class TestClusters
{
    /// <summary>Starts <paramref name="silos"/> silos sharing one grain-state folder (or store spec); <paramref name="configure"/>
    /// adds more to each silo (e.g. chat serving).</summary>
    public static async Task<InProcessTestCluster> StartAsync(int silos, string? stateStore = null, Action<ISiloBuilder>? configure = null)
    {
        stateStore ??= Directory.CreateTempSubdirectory("duck-grains-state-").FullName;
        var builder = new InProcessTestClusterBuilder((short)silos);
        builder.ConfigureSilo((_, silo) =>
        {
            silo.AddDuckTraining(new DuckSiloOptions { StateStore = stateStore, TorchThreads = 1, JobKeeperPeriod = TimeSpan.FromSeconds(1) });
            configure?.Invoke(silo);
            silo.Configure<ClusterMembershipOptions>(o =>
            {
                o.ProbeTimeout = TimeSpan.FromSeconds(1);
                o.NumMissedProbesLimit = 2;
                o.NumVotesForDeathDeclaration = 1;
                o.IAmAliveTablePublishTimeout = TimeSpan.FromSeconds(2);
            });
        });
        var cluster = builder.Build();
        await cluster.DeployAsync();
        return cluster;
    }

    /// <summary>Polls the job (which also re-arms its driver after a re-activation) until it finishes or the deadline passes.</summary>
    public static async Task<JobStatus> WaitAsync(IClusterClient client, string jobId, TimeSpan limit, Func<JobStatus, bool>? until = null)
    {
        var deadline = DateTime.UtcNow + limit;
        JobStatus? last = null;
        while (DateTime.UtcNow < deadline)
        {
            try
            {
                last = await client.GetGrain<ITrainingJobGrain>(jobId).GetStatusAsync();
                if (last.IsFinished || (until?.Invoke(last) ?? false)) return last;
            }
            catch (Exception) when (DateTime.UtcNow < deadline) { /* a silo just died; try again */ }
            await Task.Delay(250);
        }
        throw new TimeoutException($"job {jobId} did not finish within {limit}: {last}");
    }
}
