using Duck.Core.Checkpoints;
using Duck.Core.Model;

namespace Duck.Model.Tests;

public class TrainerTests : IDisposable
{
    static readonly ModelConfig SmallVocab = ModelPresets.Get("tiny") with { VocabSize = 96, ContextLength = 32 };
    readonly string dir = Directory.CreateTempSubdirectory("duck-trainer-").FullName;

    static TrainingOptions Options(int steps) => TrainingOptions.ForPreset("tiny") with
    {
        Steps = steps, BatchSize = 4, SequenceLength = 16, WarmupSteps = 2, EvalEvery = 0, EvalBatches = 2,
        CheckpointEvery = 3, Threads = 1,
    };

    [Fact]
    public async Task RunAsync_OneRepeatedBatch_OverfitsToNearZeroLoss()
    {
        var tokens = ArrayBatchSource.Pattern(18, 96, seed: 1);
        var source = new ArrayBatchSource(tokens, 4, 16, seed: 1); // 18 tokens: every window is the same one
        var options = Options(150) with { LearningRate = 1e-2, SecondStageLearningRate = 5e-3, CheckpointEvery = 0 };
        using var trainer = new Trainer(SmallVocab, options, source, null, null);

        var result = await trainer.RunAsync();

        Assert.True(result.FinalLoss < 0.1, $"final loss {result.FinalLoss}");
    }

    [Fact]
    public async Task TryResumeAsync_StoppedRun_ContinuesWithIdenticalLosses()
    {
        var tokens = ArrayBatchSource.Pattern(4000, 96, seed: 2);
        var full = new List<double>();
        using (var t = new Trainer(SmallVocab, Options(6) with { CheckpointEvery = 0 }, new ArrayBatchSource(tokens, 4, 16, 7), null, null,
                   e => { if (e is StepEvent s) full.Add(s.Loss); }))
            await t.RunAsync();

        var store = new CheckpointManager(new FolderCheckpointStore(dir), keepLast: 2);
        using (var first = new Trainer(SmallVocab, Options(6), new ArrayBatchSource(tokens, 4, 16, 7), null, store))
            await first.RunAsync(stopAfterStep: 3);
        var resumed = new List<double>();
        using (var second = new Trainer(SmallVocab, Options(6), new ArrayBatchSource(tokens, 4, 16, 999), null, store,
                   e => { if (e is StepEvent s) resumed.Add(s.Loss); }))
        {
            Assert.True(await second.TryResumeAsync());
            Assert.Equal(3, second.Step);
            await second.RunAsync();
        }

        Assert.Equal(full.Skip(3), resumed);
    }

    [Fact]
    public async Task TryResumeAsync_DifferentModel_ThrowsNamingBoth()
    {
        var tokens = ArrayBatchSource.Pattern(500, 96, seed: 3);
        var store = new CheckpointManager(new FolderCheckpointStore(dir));
        using (var t = new Trainer(SmallVocab, Options(3), new ArrayBatchSource(tokens, 4, 16, 1), null, store))
            await t.RunAsync(stopAfterStep: 1);
        using var other = new Trainer(SmallVocab with { NumLayers = 3 }, Options(3), new ArrayBatchSource(tokens, 4, 16, 1), null, store);

        var e = await Assert.ThrowsAsync<InvalidDataException>(() => other.TryResumeAsync());
        Assert.Contains("different model", e.Message);
    }

    public void Dispose() => Directory.Delete(dir, recursive: true);
}
