// The names of a Duck model's tensors, shared by checkpoints (safetensors, PyTorch-style [out, in] matrices)
// and the inference engine's loader. Changing a name breaks every saved checkpoint.
namespace Duck.Core.Model;

/// <summary>Stable checkpoint keys.</summary>
public static class TensorNames
{
    public const string Embedding = "embed.weight";          // [VocabSize, ModelDim]
    public const string FinalNorm = "norm.weight";           // [ModelDim]
    public const string Head = "head.weight";                // [VocabSize, ModelDim], absent when tied

    public static string AttnNorm(int layer) => $"blocks.{layer}.attn_norm.weight";     // [ModelDim]
    public static string Q(int layer) => $"blocks.{layer}.attn.q.weight";               // [ModelDim, ModelDim]
    public static string K(int layer) => $"blocks.{layer}.attn.k.weight";               // [ModelDim, ModelDim]
    public static string V(int layer) => $"blocks.{layer}.attn.v.weight";               // [ModelDim, ModelDim]
    public static string AttnSubNorm(int layer) => $"blocks.{layer}.attn.sub_norm.weight"; // [ModelDim]
    public static string O(int layer) => $"blocks.{layer}.attn.o.weight";               // [ModelDim, ModelDim]
    public static string FfnNorm(int layer) => $"blocks.{layer}.ffn_norm.weight";       // [ModelDim]
    public static string Gate(int layer) => $"blocks.{layer}.ffn.gate.weight";          // [FfnDim, ModelDim]
    public static string Up(int layer) => $"blocks.{layer}.ffn.up.weight";              // [FfnDim, ModelDim]
    public static string FfnSubNorm(int layer) => $"blocks.{layer}.ffn.sub_norm.weight"; // [FfnDim]
    public static string Down(int layer) => $"blocks.{layer}.ffn.down.weight";          // [ModelDim, FfnDim]
}
