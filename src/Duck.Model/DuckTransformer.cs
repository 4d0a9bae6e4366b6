// The Duck model, read from the leaves up: RMSNorm -> RoPE -> attention -> gated FFN -> block -> transformer.
// The graph is llama.cpp's `bitnet` architecture (sub-norms before the output and down projections) so exported
// models run there. Legend: B batch, T sequence, C model dim, H heads, D head dim, F FFN dim, V vocabulary.
using Duck.Core.Persona;
using Duck.Core.Model;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Duck.Model;

/// <summary>x / sqrt(mean(x^2) + eps) * w over the last dimension.</summary>
public sealed class RmsNorm : nn.Module<Tensor, Tensor>
{
    static readonly Scalar Two = 2.ToScalar(); // made once: see BitQuant on implicit Scalar temporaries
    readonly Parameter weight;
    readonly Scalar eps;

    public RmsNorm(long dim, double eps) : base(nameof(RmsNorm))
    {
        this.eps = eps.ToScalar();
        weight = new Parameter(ones(dim));
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        var rms = x.pow(Two).mean(new long[] { -1 }, keepdim: true).add(eps, BitQuant.One).rsqrt();
        return (x * rms * weight).MoveToOuterDisposeScope();
    }
}

/// <summary>Rotary position embedding on interleaved pairs (x[2i], x[2i+1]) of each head (llama.cpp's NORM type).</summary>
public sealed class Rope : nn.Module<Tensor, Tensor>
{
    readonly Tensor cos, sin; // [T, D/2]

    public Rope(int headDim, int maxSequenceLength, float theta) : base(nameof(Rope))
    {
        var inv = pow(theta, arange(0, headDim, 2, dtype: float32) / -(float)headDim);   // [D/2]
        var angles = outer(arange(maxSequenceLength, dtype: float32), inv);              // [T, D/2]
        cos = angles.cos();
        sin = angles.sin();
        register_buffer("cos", cos, persistent: false);
        register_buffer("sin", sin, persistent: false);
    }

    /// <summary>x: [B, T, H, D], positions 0..T-1.</summary>
    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        long b = x.shape[0], t = x.shape[1], h = x.shape[2], d = x.shape[3];
        var pairs = x.reshape(b, t, h, d / 2, 2);
        var a = pairs.select(-1, 0);                                   // [B, T, H, D/2]
        var c = pairs.select(-1, 1);
        var cs = cos.narrow(0, 0, t).view(1, t, 1, d / 2);
        var sn = sin.narrow(0, 0, t).view(1, t, 1, d / 2);
        return stack(new[] { a * cs - c * sn, (a * sn).add(c * cs, BitQuant.One) }, -1).reshape(b, t, h, d).MoveToOuterDisposeScope();
    }
}

/// <summary>Causal multi-head attention with ternary q, k, v, o and a sub-norm before o.</summary>
public sealed class Attention : nn.Module<Tensor, Tensor>
{
    readonly BitLinear q, k, v, o;
    readonly RmsNorm sub_norm;
    readonly Rope rope;
    readonly int heads, headDim;

    public Attention(ModelConfig c, float initStd, float outStd, Generator generator) : base(nameof(Attention))
    {
        heads = c.NumHeads;
        headDim = c.HeadDim;
        q = new BitLinear(c.ModelDim, c.ModelDim, c.Ternary, initStd, generator);
        k = new BitLinear(c.ModelDim, c.ModelDim, c.Ternary, initStd, generator);
        v = new BitLinear(c.ModelDim, c.ModelDim, c.Ternary, initStd, generator);
        o = new BitLinear(c.ModelDim, c.ModelDim, c.Ternary, outStd, generator);
        sub_norm = new RmsNorm(c.ModelDim, c.NormEps);
        rope = new Rope(headDim, c.ContextLength, c.RopeTheta);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        long b = x.shape[0], t = x.shape[1];
        var qh = rope.forward(q.forward(x).view(b, t, heads, headDim)).transpose(1, 2); // [B, H, T, D]
        var kh = rope.forward(k.forward(x).view(b, t, heads, headDim)).transpose(1, 2); // [B, H, T, D]
        var vh = v.forward(x).view(b, t, heads, headDim).transpose(1, 2);             // [B, H, T, D]
        var y = nn.functional.scaled_dot_product_attention(qh, kh, vh, is_casual: true); // [B, H, T, D]
        y = y.transpose(1, 2).reshape(b, t, heads * headDim);                         // [B, T, C]
        return o.forward(sub_norm.forward(y)).MoveToOuterDisposeScope();
    }
}

/// <summary>down(sub_norm(SiLU(gate(x)) * up(x))), all three ternary.</summary>
public sealed class FeedForward : nn.Module<Tensor, Tensor>
{
    readonly BitLinear gate, up, down;
    readonly RmsNorm sub_norm;

    public FeedForward(ModelConfig c, float initStd, float outStd, Generator generator) : base(nameof(FeedForward))
    {
        gate = new BitLinear(c.ModelDim, c.FfnDim, c.Ternary, initStd, generator);
        up = new BitLinear(c.ModelDim, c.FfnDim, c.Ternary, initStd, generator);
        down = new BitLinear(c.FfnDim, c.ModelDim, c.Ternary, outStd, generator);
        sub_norm = new RmsNorm(c.FfnDim, c.NormEps);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        var h = nn.functional.silu(gate.forward(x)) * up.forward(x);                  // [B, T, F]
        return down.forward(sub_norm.forward(h)).MoveToOuterDisposeScope();          // [B, T, C]
    }
}

/// <summary>Pre-norm residual block: x + attn(norm(x)), then + ffn(norm(x)).</summary>
public sealed class Block : nn.Module<Tensor, Tensor>
{
    readonly RmsNorm attn_norm, ffn_norm;
    readonly Attention attn;
    readonly FeedForward ffn;

    public Block(ModelConfig c, float initStd, float outStd, Generator generator) : base(nameof(Block))
    {
        attn_norm = new RmsNorm(c.ModelDim, c.NormEps);
        attn = new Attention(c, initStd, outStd, generator);
        ffn_norm = new RmsNorm(c.ModelDim, c.NormEps);
        ffn = new FeedForward(c, initStd, outStd, generator);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        var h = x.add(attn.forward(attn_norm.forward(x)), BitQuant.One);
        return h.add(ffn.forward(ffn_norm.forward(h)), BitQuant.One).MoveToOuterDisposeScope();
    }
}

/// <summary>The whole model: token ids [B, T] to logits [B, T, V]. Parameter names are <see cref="TensorNames"/>.</summary>
public sealed class DuckTransformer : nn.Module<Tensor, Tensor>
{
    readonly Embedding embed;
    readonly ModuleList<Block> blocks;
    readonly RmsNorm norm;
    readonly BitLinear? head;

    public ModelConfig Config { get; }

    public DuckTransformer(ModelConfig config, long seed = 1337) : base(nameof(DuckTransformer))
    {
        Config = config.Validate();
        // A generator of our own: torch's global one is shared by every thread of the process.
        using var generator = new Generator((ulong)seed);
        const float initStd = 0.02f;
        float outStd = initStd / MathF.Sqrt(2f * config.NumLayers); // GPT-2's scaled init of residual projections
        embed = nn.Embedding(config.VocabSize, config.ModelDim);
        using (no_grad()) embed.weight!.normal_(0, initStd, generator);
        blocks = new ModuleList<Block>(Enumerable.Range(0, config.NumLayers)
            .Select(_ => new Block(config, initStd, outStd, generator)).ToArray());
        norm = new RmsNorm(config.ModelDim, config.NormEps);
        if (!config.TiedHead) head = new BitLinear(config.ModelDim, config.VocabSize, config.Ternary, initStd, generator);
        RegisterComponents();
    }

    /// <summary>Every BitLinear of the model, in parameter order.</summary>
    public IEnumerable<BitLinear> BitLinears => modules().OfType<BitLinear>();

    /// <summary>Switches every BitLinear between latent weights (training) and received quantized weights (worker replicas).</summary>
    public void SetPrequantizedWeights(bool prequantized)
    {
        foreach (var layer in BitLinears) layer.PrequantizedWeights = prequantized;
    }

    public override Tensor forward(Tensor tokens)
    {
        using var scope = NewDisposeScope();
        var x = embed.forward(tokens);                                                 // [B, T, C]
        foreach (var block in blocks) x = block.forward(x);
        x = norm.forward(x);
        var logits = head is null ? nn.functional.linear(x, embed.weight!) : head.forward(x); // [B, T, V]
        return logits.MoveToOuterDisposeScope();
    }

    /// <summary>Mean cross-entropy of next-token prediction; targets [B, T].</summary>
    public Tensor Loss(Tensor tokens, Tensor targets)
    {
        using var scope = NewDisposeScope();
        var logits = forward(tokens);
        // Targets of SftSamples.IgnoreTarget (-100) are skipped: fine-tuning trains on the replies only.
        var loss = nn.functional.cross_entropy(logits.view(-1, Config.VocabSize), targets.view(-1), ignore_index: SftSamples.IgnoreTarget);
        return loss.MoveToOuterDisposeScope();
    }
}
