// BitNet b1.58's linear layer: ternary weights (per-tensor absmean) times int8-range activations (per-token
// absmax), trained through a straight-through estimator on latent fp32 weights. No bias. With quantization
// off it is a plain fp32 linear layer: the FP32 twin.
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Duck.Model;

/// <summary>The quantizers, as pure functions so tests and the inference engine's parity checks can call them.</summary>
public static class BitQuant
{
    public const float Eps = 1e-5f;

    // The constants as Scalars made once. A Scalar converted implicitly from a number is a temporary that TorchSharp
    // 0.107 leaves to the finalizer, which can free it while the native call using it still runs: a worker step
    // failed once with "Unknown scalar type" in TernaryWeights' div_ (a low-communication test in CI). TorchSharp's
    // one-operand add, add_ and Tensor + Tensor make such a temporary for their alpha of 1 (an AdamW step failed in
    // CI with "toFloat ... Expected false to be true" in add_), so additions here pass One instead.
    internal static readonly Scalar One = 1.ToScalar();
    static readonly Scalar EpsScalar = Eps.ToScalar(), MinusOne = (-1).ToScalar(),
        Int8Min = (-128).ToScalar(), Int8Max = 127.ToScalar(), Int8MaxFloat = 127f.ToScalar();

    /// <summary>Effectively W_q = clamp(round(W / (gamma + eps)), -1, 1) * gamma with gamma = mean(|W|).</summary>
    public static Tensor TernaryWeights(Tensor w)
    {
        using var noGrad = no_grad();
        var (gamma, denominator) = Scale(w);
        using (gamma)
        using (denominator)
            return w.div(denominator).round_().clamp_(MinusOne, One).mul_(gamma); // one temporary, the rest in place
    }

    /// <summary>gamma and gamma + eps of <see cref="TernaryWeights"/>, computed as it computes them.</summary>
    public static (float Gamma, float Denominator) TernaryScale(Tensor w)
    {
        using var noGrad = no_grad();
        var (gamma, denominator) = Scale(w);
        using (gamma)
        using (denominator)
            return (gamma.item<float>(), denominator.item<float>());
    }

    /// <summary>gamma = mean|W| (without an |W| temporary) and gamma + eps, as 0-dimensional tensors.</summary>
    static (Tensor Gamma, Tensor Denominator) Scale(Tensor w)
    {
        using var count = w.numel().ToScalar();
        var gamma = w.norm(1f).div_(count);
        return (gamma, gamma.add(EpsScalar, One));
    }

    /// <summary>Effectively x_q = clamp(round(x * s), -128, 127) / s with s = 127 / max|x| per token (last dim).</summary>
    public static Tensor Int8Activations(Tensor x)
    {
        using var noGrad = no_grad();
        using var scale = x.abs().amax(new long[] { -1 }, keepdim: true).clamp_min_(EpsScalar).reciprocal_().mul_(Int8MaxFloat);
        return x.mul(scale).round_().clamp_(Int8Min, Int8Max).div_(scale);
    }

    /// <summary>Straight-through estimator: exactly the forward value of <paramref name="quantized"/> (q + 0, where
    /// x + (q - x) would be off by rounding), the gradient of identity.</summary>
    public static Tensor SteThrough(Tensor x, Tensor quantized)
    {
        return (x - x.detach()).add_(quantized, One);
    }
}

/// <summary>y = Q_act(x) · Q_w(W)^T with latent fp32 weights [outFeatures, inFeatures].</summary>
public sealed class BitLinear : nn.Module<Tensor, Tensor>
{
    readonly bool ternary;
    readonly Parameter weight;

    public BitLinear(long inFeatures, long outFeatures, bool ternary, float initStd, Generator? generator = null) : base(nameof(BitLinear))
    {
        this.ternary = ternary;
        weight = new Parameter(empty(outFeatures, inFeatures));
        using (no_grad()) weight.normal_(0, initStd, generator); // nn.init.normal_ ignores its generator (TorchSharp 0.107)
        RegisterComponents();
    }

    public Parameter Weight => weight;

    /// <summary>True when <see cref="Weight"/> already holds quantized values (t * gamma, as a worker replica receives them
    /// from the parameter server): the forward pass uses them as they are, and their gradient is the STE gradient of
    /// the latent weights they came from.</summary>
    public bool PrequantizedWeights { get; set; }

    public override Tensor forward(Tensor x)
    {
        if (!ternary) return nn.functional.linear(x, weight);
        using var scope = NewDisposeScope();
        var xq = BitQuant.SteThrough(x, BitQuant.Int8Activations(x));   // [.., in]
        var wq = PrequantizedWeights ? weight : BitQuant.SteThrough(weight, BitQuant.TernaryWeights(weight)); // [out, in]
        return nn.functional.linear(xq, wq).MoveToOuterDisposeScope();   // [.., out]
    }
}
