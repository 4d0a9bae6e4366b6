// The architecture of a Duck model: a BitNet b1.58 transformer with the graph of llama.cpp's `bitnet`
// architecture. Shared by the TorchSharp trainer and the pure C# inference engine; this file holds no weights.
using System.Text.Json.Serialization;

namespace Duck.Core.Model;

/// <summary>Hyperparameters of one model. Saved in every checkpoint and every exported model file.</summary>
public sealed record ModelConfig
{
    /// <summary>Vocabulary size: 50257 for the GPT-2 BPE.</summary>
    public int VocabSize { get; init; } = 50257;
    /// <summary>Width of the residual stream (hidden size).</summary>
    public int ModelDim { get; init; } = 768;
    /// <summary>Number of transformer blocks.</summary>
    public int NumLayers { get; init; } = 12;
    /// <summary>Number of attention heads; ModelDim must be divisible by it and the head size even (RoPE).</summary>
    public int NumHeads { get; init; } = 12;
    /// <summary>Width of the gated feed-forward layer.</summary>
    public int FfnDim { get; init; } = 2048;
    /// <summary>Longest sequence the model is trained for and can attend over.</summary>
    public int ContextLength { get; init; } = 256;
    /// <summary>RoPE base frequency.</summary>
    public float RopeTheta { get; init; } = 10000f;
    /// <summary>Epsilon inside every RMSNorm.</summary>
    public float NormEps { get; init; } = 1e-5f;
    /// <summary>True: the LM head reuses the token embedding (llama.cpp's bitnet graph requires it).</summary>
    public bool TiedHead { get; init; }
    /// <summary>True: BitLinear layers quantize (BitNet b1.58). False: the FP32 twin with the same graph.</summary>
    public bool Ternary { get; init; } = true;

    [JsonIgnore] public int HeadDim => ModelDim / NumHeads;

    /// <summary>Throws with the offending values when the shape is impossible.</summary>
    public ModelConfig Validate()
    {
        void Require(bool ok, string message) { if (!ok) throw new ArgumentException(message); }
        Require(VocabSize > 0, $"VocabSize must be positive, got {VocabSize}");
        Require(ModelDim > 0 && NumHeads > 0 && ModelDim % NumHeads == 0,
            $"ModelDim ({ModelDim}) must be a positive multiple of NumHeads ({NumHeads})");
        Require(HeadDim % 2 == 0, $"head size ModelDim/NumHeads = {HeadDim} must be even for RoPE");
        Require(NumLayers > 0, $"NumLayers must be positive, got {NumLayers}");
        Require(FfnDim > 0, $"FfnDim must be positive, got {FfnDim}");
        Require(ContextLength > 1, $"ContextLength must be at least 2, got {ContextLength}");
        Require(RopeTheta > 0 && NormEps > 0, $"RopeTheta ({RopeTheta}) and NormEps ({NormEps}) must be positive");
        return this;
    }

    /// <summary>Ternary (BitLinear) weights: q, k, v, o, gate, up, down in every block, plus the head when untied.</summary>
    public long TernaryParameters =>
        (long)NumLayers * (4L * ModelDim * ModelDim + 3L * ModelDim * FfnDim)
        + (TiedHead ? 0 : (long)VocabSize * ModelDim);

    /// <summary>Full-precision weights: the token embedding and every RMSNorm gain.</summary>
    public long FullPrecisionParameters =>
        (long)VocabSize * ModelDim + (long)NumLayers * (3L * ModelDim + FfnDim) + ModelDim;

    public long TotalParameters => TernaryParameters + FullPrecisionParameters;

    /// <summary>Weights that take part in matrix products: every BitLinear plus the head (also when tied).</summary>
    public long MatmulParameters => (long)NumLayers * (4L * ModelDim * ModelDim + 3L * ModelDim * FfnDim)
                                    + (long)VocabSize * ModelDim;

    /// <summary>Training FLOPs per token by the PaLM convention: 6 per matmul weight plus 12·L·d·T for attention.</summary>
    public double TrainingFlopsPerToken(int sequenceLength) =>
        6.0 * MatmulParameters + 12.0 * NumLayers * ModelDim * sequenceLength;
}
