// A persona fine-tune on the cluster: the parameter server starts from the base checkpoint's weights, workers train on
// the replies of their conversations with pretraining rows mixed in, and with uncompressed gradients over shared data
// the job's losses are the single-process fine-tune's. Its checkpoints record the base, as `duck finetune`'s do.
using Duck.Core.Checkpoints;
using Duck.Core.Model;
using Duck.Core.Persona;
using Duck.Model;

namespace Duck.Grains.Tests;

public class FinetuneJobTests(TwoSiloCluster fixture) : IClassFixture<TwoSiloCluster>
{
    IClusterClient Client => fixture.Cluster.Client;

    static string WritePersona()
    {
        string file = Path.Combine(Directory.CreateTempSubdirectory("duck-grains-persona-").FullName, "persona.jsonl");
        string Line(string user, string reply) =>
            $"{{\"messages\":[{{\"role\":\"user\",\"content\":\"{user}\"}},{{\"role\":\"assistant\",\"content\":\"{reply}\"}}]}}";
        File.WriteAllLines(file, [Line("Hi!", "Hey! I'm Duck."), Line("Who made you?", "A team with a CPU cluster."),
            Line("Do you like C#?", "Very much, especially records."), Line("How are you?", "Cheerful and quantized!")]);
        return file;
    }

    /// <summary>A tiny base run (full GPT-2 vocabulary, since persona text is GPT-2 tokens) with one checkpoint.</summary>
    async Task<string> BaseCheckpointAsync()
    {
        string folder = Directory.CreateTempSubdirectory("duck-grains-base-").FullName;
        var options = TrainingOptions.ForPreset("tiny") with { Steps = 2, BatchSize = 2, SequenceLength = 32, WarmupSteps = 1, EvalEvery = 0, Threads = 1 };
        var shard = JobData.OpenTrainShard(fixture.DataFolder, 0);
        using var trainer = new Trainer(ModelPresets.Get("tiny"), options, new ShardBatchSource(shard, 2, 32, 5), null,
                                        new CheckpointManager(new FolderCheckpointStore(folder)));
        await trainer.RunAsync();
        return Path.Combine(folder, "step-00000002");
    }

    [Fact]
    public async Task Finetune_UncompressedSharedData_StartsFromTheBaseAndReproducesSingleProcessLosses()
    {
        string baseCheckpoint = await BaseCheckpointAsync();
        string persona = WritePersona();
        var spec = TestData.Job(fixture.DataFolder, steps: 5, GradientCompression.None, shared: true) with
        {
            VocabSize = 0, SequenceLength = 32, BatchSize = 2, BaseCheckpoint = baseCheckpoint, ChatData = persona,
            ChatValidationData = persona, PretrainMix = 0.25, CheckpointEvery = 0, EvalBatches = 1, StepTimeoutSeconds = 20,
        };
        var options = JobData.Options(spec);
        var losses = new List<double>();
        TorchSharp.torch.set_num_threads(1); // the silos' setting, on this thread too
        var source = new SftBatchSource(SftSamples.Build(PersonaDataset.Load(persona), spec.SequenceLength + 1), spec.BatchSize, spec.SequenceLength,
                                        (ulong)spec.Seed, JobData.OpenTrainShard(spec.DataFolder, 0), spec.PretrainMix);
        using (var trainer = new Trainer(JobData.Model(spec), options, source, null, null, e => { if (e is StepEvent s) losses.Add(s.Loss); }))
        {
            trainer.LoadWeights(await CheckpointLocator.LoadAsync(baseCheckpoint));
            await trainer.RunAsync();
        }

        await Client.GetGrain<ITrainingJobGrain>("finetune").SubmitAsync(spec);
        var done = await TestClusters.WaitAsync(Client, "finetune", TimeSpan.FromSeconds(120));
        var history = await Client.GetGrain<ITrainingJobGrain>("finetune").GetHistoryAsync(0, 100);
        var latest = await new CheckpointManager(CheckpointStores.Open(spec.CheckpointStore)).LoadLatestAsync();

        Assert.True(done.State == JobState.Completed, done.Reason);
        Assert.Equal(5, history.Count);
        for (int i = 0; i < 5; i++)
            Assert.True(Math.Abs(history[i].Loss - losses[i]) <= 1e-4, $"step {i + 1}: cluster {history[i].Loss:F6}, trainer {losses[i]:F6}");
        Assert.Equal(baseCheckpoint, latest!.Manifest.State["run"]!["base"]!.GetValue<string>());
        Assert.True(done.ValLoss is > 0, $"validation loss {done.ValLoss}");
    }

    [Fact]
    public async Task Finetune_MissingBaseCheckpoint_FailsVisibly()
    {
        var spec = TestData.Job(fixture.DataFolder, steps: 3, GradientCompression.Ternary) with
        {
            VocabSize = 0, BaseCheckpoint = Path.Combine(Path.GetTempPath(), "no-such-base-" + Guid.NewGuid().ToString("N")), ChatData = WritePersona(),
        };

        await Client.GetGrain<ITrainingJobGrain>("finetune-nobase").SubmitAsync(spec);
        var done = await TestClusters.WaitAsync(Client, "finetune-nobase", TimeSpan.FromSeconds(60));

        Assert.Equal(JobState.Failed, done.State);
        Assert.Contains("no-such-base", done.Reason);
    }
}
