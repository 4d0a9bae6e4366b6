using Duck.Core.Model;
using static TorchSharp.torch;

namespace Duck.Model.Tests;

public class ModelTests
{
    [Theory]
    [InlineData("small", 123_532_032L, 162_182_400L)]
    [InlineData("tiny", 3_298_368L, 6_515_520L)]
    public void Model_Preset_ParameterCountsMatchConfig(string preset, long ternary, long total)
    {
        var config = ModelPresets.Get(preset);
        Assert.Equal(ternary, config.TernaryParameters);
        Assert.Equal(total, config.TotalParameters);
        if (preset == "tiny")
        {
            using var model = new DuckTransformer(config);
            Assert.Equal(total, model.parameters().Sum(p => p.numel()));
        }
    }

    [Fact]
    public void Model_TiedHead_HasNoHeadTensorAndFewerParameters()
    {
        var config = ModelPresets.Get("tiny") with { TiedHead = true };
        using var model = new DuckTransformer(config);
        var names = model.named_parameters().Select(p => p.name).ToList();
        Assert.DoesNotContain(TensorNames.Head, names);
        Assert.Equal(config.TotalParameters, model.parameters().Sum(p => p.numel()));
    }

    [Fact]
    public void Model_ParameterNames_AreTheCheckpointKeys()
    {
        using var model = new DuckTransformer(ModelPresets.Get("tiny"));
        var names = model.named_parameters().Select(p => p.name).ToHashSet();
        Assert.Contains(TensorNames.Embedding, names);
        Assert.Contains(TensorNames.Q(1), names);
        Assert.Contains(TensorNames.AttnSubNorm(0), names);
        Assert.Contains(TensorNames.FfnSubNorm(1), names);
        Assert.Contains(TensorNames.Down(1), names);
        Assert.Contains(TensorNames.Head, names);
        Assert.Equal(3 + 2 * 11, names.Count);
    }

    [Fact]
    public void Forward_TokenBatch_GivesLogitsPerPosition()
    {
        using var scope = NewDisposeScope(); // holds every temporary: an unheld one may be finalized mid-call (see AdamW.ZeroGrad)
        var config = ModelPresets.Get("tiny") with { VocabSize = 100 };
        using var model = new DuckTransformer(config);
        using var logits = model.forward(randint(0, 100, new long[] { 2, 10 }));
        Assert.Equal(new long[] { 2, 10, 100 }, logits.shape);
    }

    [Fact]
    public void Forward_FutureTokenChanged_EarlierLogitsUnchanged()
    {
        using var scope = NewDisposeScope(); // holds every temporary: an unheld one may be finalized mid-call (see AdamW.ZeroGrad)
        var config = ModelPresets.Get("tiny") with { VocabSize = 100 };
        using var model = new DuckTransformer(config);
        using var a = tensor(new long[] { 1, 2, 3, 4, 5, 6 }, new long[] { 1, 6 });
        using var b = tensor(new long[] { 1, 2, 3, 4, 5, 99 }, new long[] { 1, 6 });
        using var la = model.forward(a);
        using var lb = model.forward(b);
        Assert.True(la.narrow(1, 0, 5).allclose(lb.narrow(1, 0, 5)));
        Assert.False(la.narrow(1, 5, 1).allclose(lb.narrow(1, 5, 1)));
    }
}

public class ModelInitTests
{
    [Fact]
    public void Constructor_SameSeed_SameWeights()
    {
        using var scope = NewDisposeScope(); // holds every temporary: an unheld one may be finalized mid-call (see AdamW.ZeroGrad)
        var config = ModelPresets.Get("tiny") with { VocabSize = 100 };
        using var a = new DuckTransformer(config, seed: 5);
        using var b = new DuckTransformer(config, seed: 5);
        using var c = new DuckTransformer(config, seed: 6);
        foreach (var ((name, pa), (_, pb)) in a.named_parameters().Zip(b.named_parameters()))
            Assert.True(pa.equal(pb).all().item<bool>(), name);
        Assert.False(a.named_parameters().First(p => p.name == TensorNames.Q(0)).parameter
            .equal(c.named_parameters().First(p => p.name == TensorNames.Q(0)).parameter).all().item<bool>());
    }
}

public class PrequantizedTests
{
    [Fact]
    public void Forward_PrequantizedCopyOfQuantizedWeights_EqualsLatentModelAndItsGradients()
    {
        using var scope = NewDisposeScope(); // holds every temporary: an unheld one may be finalized mid-call (see AdamW.ZeroGrad)
        var config = ModelPresets.Get("tiny") with { VocabSize = 100 };
        using var latent = new DuckTransformer(config, seed: 3);
        using var replica = new DuckTransformer(config, seed: 4);
        using (no_grad())
            foreach (var ((name, src), (_, dst)) in latent.named_parameters().Zip(replica.named_parameters()))
                dst.copy_(latent.BitLinears.Any(l => ReferenceEquals(l.Weight, src)) ? BitQuant.TernaryWeights(src) : src);
        replica.SetPrequantizedWeights(true);
        using var x = randint(0, 100, new long[] { 2, 8 });
        using var y = randint(0, 100, new long[] { 2, 8 });

        latent.Loss(x, y).backward();
        replica.Loss(x, y).backward();

        foreach (var ((name, a), (_, b)) in latent.named_parameters().Zip(replica.named_parameters()))
            Assert.True(a.grad!.allclose(b.grad!, rtol: 1e-4, atol: 1e-6), name);
    }
}
