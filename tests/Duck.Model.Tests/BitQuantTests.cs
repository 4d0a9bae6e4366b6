using TorchSharp;
using static TorchSharp.torch;

namespace Duck.Model.Tests;

public class BitQuantTests
{
    [Fact]
    public void TernaryWeights_KnownMatrix_RoundsToScaledTernary()
    {
        using var scope = NewDisposeScope(); // holds every temporary: an unheld one may be finalized mid-call (see AdamW.ZeroGrad)
        // gamma = mean(|w|) = (0.5 + 0.1 + 1.2 + 0.2 + 0.0 + 0.4) / 6 = 0.4
        using var w = tensor(new[] { 0.5f, -0.1f, 1.2f, -0.2f, 0.0f, -0.4f }, new long[] { 2, 3 });
        using var q = BitQuant.TernaryWeights(w);
        float g = 0.4f;
        // w/(gamma+eps): 1.25 -> 1, -0.25 -> 0, 3 -> 1 (clipped), -0.5 -> -0 (half to even), 0 -> 0, -1 -> -1
        Assert.Equal(new[] { g, 0, g, 0, 0, -g }, q.data<float>().ToArray(), new FloatTolerance(1e-6f));
    }

    [Fact]
    public void Int8Activations_PerToken_ScalesByRowMaximum()
    {
        using var scope = NewDisposeScope(); // holds every temporary: an unheld one may be finalized mid-call (see AdamW.ZeroGrad)
        using var x = tensor(new[] { 1f, -0.5f, 0.25f, 10f, 0.05f, -2.5f }, new long[] { 2, 3 });
        using var q = BitQuant.Int8Activations(x);
        var v = q.data<float>().ToArray();
        // row 0: s = 127; 1 -> 127/127, -0.5 -> round(-63.5) = -64 (half to even), 0.25 -> round(31.75) = 32
        Assert.Equal(new[] { 1f, -64f / 127, 32f / 127 }, v[..3], new FloatTolerance(1e-6f));
        // row 1: s = 12.7; 0.05 -> round(0.635) = 1; -2.5 -> round(-31.75) = -32
        Assert.Equal(new[] { 10f, 1f / 12.7f, -32f / 12.7f }, v[3..], new FloatTolerance(1e-5f));
    }

    [Fact]
    public void SteThrough_Backward_PassesGradientUnchanged()
    {
        using var scope = NewDisposeScope(); // holds every temporary: an unheld one may be finalized mid-call (see AdamW.ZeroGrad)
        using var x = randn(4, 8).requires_grad_(true);
        using var y = BitQuant.SteThrough(x, BitQuant.Int8Activations(x));
        using var w = arange(32, dtype: float32).view(4, 8);
        (y * w).sum().backward();
        Assert.Equal(w.data<float>().ToArray(), x.grad!.data<float>().ToArray());
        Assert.Equal(BitQuant.Int8Activations(x).data<float>().ToArray(), y.data<float>().ToArray());
    }

    [Fact]
    public void SteThrough_LargeWeights_ForwardValueIsExactlyTheQuantizedValue()
    {
        using var scope = NewDisposeScope(); // holds every temporary: an unheld one may be finalized mid-call (see AdamW.ZeroGrad)
        using var generator = new TorchSharp.torch.Generator(7);
        using Scalar std = 0.02.ToScalar(); // held: implicit Scalars are finalizer-freed temporaries
        using var w = randn(64, 64, generator: generator).mul_(std).index_put_(tensor(0.9f), 0, 0).index_put_(tensor(-1.7f), 3, 5);
        using var q = BitQuant.TernaryWeights(w);
        using var y = BitQuant.SteThrough(w, q);
        Assert.Equal(q.data<float>().ToArray(), y.data<float>().ToArray());
    }
}

sealed class FloatTolerance(float tolerance) : IEqualityComparer<float>
{
    public bool Equals(float a, float b) => MathF.Abs(a - b) <= tolerance;
    public int GetHashCode(float f) => 0;
}
