// Moves a model's parameters to and from named F32 arrays (safetensors, grain messages). Names are the
// module's parameter names, which equal TensorNames; shapes are checked on the way in.
using Duck.Core.Checkpoints;
using TorchSharp;
using static TorchSharp.torch;

namespace Duck.Model;

public static class ModelWeights
{
    /// <summary>Copies every parameter out as a named F32 array.</summary>
    public static List<NamedTensor> Export(nn.Module module) =>
        module.named_parameters().Select(p => ToNamed(p.name, p.parameter)).ToList();

    public static NamedTensor ToNamed(string name, Tensor t) => new(name, t.shape, t.DetachedArray<float>());

    /// <summary>Overwrites every parameter from <paramref name="tensors"/>; throws naming a missing, extra or mis-shaped tensor.</summary>
    public static void Load(nn.Module module, IEnumerable<NamedTensor> tensors, string source)
    {
        var byName = tensors.ToDictionary(t => t.Name);
        var parameters = module.named_parameters().ToList();
        foreach (var extra in byName.Keys.Except(parameters.Select(p => p.name)))
            throw new InvalidDataException($"{source}: tensor '{extra}' does not belong to this model (different preset or head tying?)");
        using var noGrad = no_grad();
        foreach (var (name, p) in parameters)
        {
            if (!byName.TryGetValue(name, out var t))
                throw new InvalidDataException($"{source}: missing tensor '{name}'");
            if (!t.Shape.SequenceEqual(p.shape))
                throw new InvalidDataException($"{source}: tensor '{name}' has shape [{string.Join(", ", t.Shape)}], the model expects [{string.Join(", ", p.shape)}]");
            using var value = tensor(t.Data, t.Shape);
            p.copy_(value);
        }
    }

    /// <summary>Serializes named tensors as safetensors bytes.</summary>
    public static byte[] ToSafetensors(IEnumerable<NamedTensor> tensors, IReadOnlyDictionary<string, string>? metadata = null)
    {
        using var ms = new MemoryStream();
        Safetensors.Write(ms, tensors, metadata);
        return ms.ToArray();
    }
}
