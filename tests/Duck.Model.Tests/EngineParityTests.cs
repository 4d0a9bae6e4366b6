// The inference engine against the TorchSharp model in quantized mode: a tiny model is trained briefly, exported
// to GGUF, and both must give the same logits (within the tolerance that the file's fp16 ternary scales and Q8_0
// embedding introduce) and the same greedy tokens.
using Duck.Core.Model;
using Duck.Inference.Engine;
using Duck.Inference.Export;
using Duck.Inference.Gguf;
using static TorchSharp.torch;

namespace Duck.Model.Tests;

public class EngineParityTests : IDisposable
{
    readonly string dir = Directory.CreateTempSubdirectory("duck-parity-").FullName;

    static async Task<DuckTransformer> TrainedTinyAsync(bool tied)
    {
        var config = ModelPresets.Get("tiny") with { TiedHead = tied };
        var tokens = ArrayBatchSource.Pattern(3000, 200, seed: 11);
        var options = TrainingOptions.ForPreset("tiny") with
        {
            Steps = 60, BatchSize = 4, SequenceLength = 32, WarmupSteps = 5, LearningRate = 1e-2, SecondStageLearningRate = 5e-3,
            EvalEvery = 0, CheckpointEvery = 0, Threads = 1,
        };
        var trainer = new Trainer(config, options, new ArrayBatchSource(tokens, 4, 32, 3), null, null);
        await trainer.RunAsync();
        return trainer.Model;
    }

    string Export(DuckTransformer model, GgmlType type)
    {
        string path = Path.Combine(dir, $"model-{type}.gguf");
        var tensors = ModelWeights.Export(model).ToDictionary(t => t.Name, t => t.Data);
        using (var f = File.Create(path))
            GgufExporter.Export(model.Config, tensors, f, new ExportOptions { TernaryType = type, IncludeTokenizer = false });
        return path;
    }

    static float[] TorchLogits(DuckTransformer model, int[] prompt)
    {
        model.eval();
        using var noGrad = no_grad();
        using var x = tensor(prompt.Select(t => (long)t).ToArray(), new long[] { 1, prompt.Length });
        using var logits = model.forward(x);
        return logits.data<float>().ToArray();
    }

    [Theory]
    [InlineData(GgmlType.TQ2_0, false)]
    [InlineData(GgmlType.TQ1_0, true)]
    public async Task Logits_EngineAndTorchSharp_AgreeWithinTolerance(GgmlType type, bool tied)
    {
        using var model = await TrainedTinyAsync(tied);
        using var engine = InferenceModel.Load(Export(model, type), threads: 1);
        var prompt = ArrayBatchSource.Pattern(40, 200, seed: 12);

        var expected = TorchLogits(model, prompt);
        var actual = new InferenceSession(engine).AppendAllLogits(prompt);

        float scale = expected.Max(MathF.Abs);
        var diffs = expected.Zip(actual, (e, g) => Math.Abs(e - g)).ToArray();
        double maxDiff = diffs.Max(), meanDiff = diffs.Average();
        // Documented tolerance: mean |difference| within 0.5% and the largest within 6% of the largest logit. The file's
        // fp16 gammas and Q8_0 embedding shift activations slightly; where that moves an int8 activation across a
        // rounding boundary, the sub-norms can amplify the flip. A tied head multiplies by the Q8_0 embedding itself:
        // measured 0.3% max (TQ2_0, untied) and 4.9% max / 0.12% mean (TQ1_0, tied).
        Assert.True(meanDiff <= 0.005 * scale && maxDiff <= 0.06 * scale,
            $"mean |logit difference| {meanDiff:G4}, max {maxDiff:G4}, against a logit scale of {scale:G4}");
    }

    [Fact]
    public async Task Greedy_EngineAndTorchSharp_ProduceTheSameTokens()
    {
        using var model = await TrainedTinyAsync(tied: false);
        using var engine = InferenceModel.Load(Export(model, GgmlType.TQ2_0), threads: 1);
        var prompt = ArrayBatchSource.Pattern(12, 200, seed: 13).ToList();
        var session = new InferenceSession(engine);

        var torchTokens = new List<int>(prompt);
        var engineTokens = new List<int>();
        var logits = session.Append(prompt.ToArray()).ToArray();
        for (int i = 0; i < 16; i++)
        {
            var all = TorchLogits(model, torchTokens.ToArray());
            int v = model.Config.VocabSize;
            torchTokens.Add(ArgMax(all.AsSpan(all.Length - v, v)));
            int next = ArgMax(logits);
            engineTokens.Add(next);
            logits = session.Append(new[] { next }).ToArray();
        }

        Assert.Equal(torchTokens.Skip(prompt.Count), engineTokens);
    }

    static int ArgMax(ReadOnlySpan<float> values)
    {
        int best = 0;
        for (int i = 1; i < values.Length; i++) if (values[i] > values[best]) best = i;
        return best;
    }

    public void Dispose() => Directory.Delete(dir, recursive: true);
}
