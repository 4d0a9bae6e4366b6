// Named model sizes: tiny for tests, mini for the demo, small for the prototype's size, and the BitNet b1.58
// paper's shapes for benchmarks. Not a registry of trained weights.
namespace Duck.Core.Model;

/// <summary>The named presets and what each is for.</summary>
public static class ModelPresets
{
    /// <summary>Preset name to architecture. Every preset is ternary; use <c>with { Ternary = false }</c> for the FP32 twin.</summary>
    public static readonly IReadOnlyDictionary<string, ModelConfig> All = new Dictionary<string, ModelConfig>
    {
        // Tests: seconds per run.
        ["tiny"] = new() { ModelDim = 64, NumLayers = 2, NumHeads = 4, FfnDim = 128, ContextLength = 64 },
        // The demo: visibly learns within ten minutes on 2 cores.
        ["mini"] = new() { ModelDim = 256, NumLayers = 4, NumHeads = 4, FfnDim = 704, ContextLength = 128 },
        // The prototype's size: 123,532,032 ternary parameters, about 162.2M in all.
        ["small"] = new() { ModelDim = 768, NumLayers = 12, NumHeads = 12, FfnDim = 2048, ContextLength = 256 },
        // BitNet b1.58 paper shapes.
        ["700m"] = new() { ModelDim = 1536, NumLayers = 24, NumHeads = 24, FfnDim = 4096, ContextLength = 2048 },
        ["1.3b"] = new() { ModelDim = 2048, NumLayers = 24, NumHeads = 32, FfnDim = 5460, ContextLength = 2048 },
        ["3b"] = new() { ModelDim = 3200, NumLayers = 26, NumHeads = 32, FfnDim = 8640, ContextLength = 2048 },
    };

    /// <summary>Looks a preset up by name; throws a message listing the known names otherwise.</summary>
    public static ModelConfig Get(string name) =>
        All.TryGetValue(name, out var config)
            ? config
            : throw new ArgumentException($"unknown preset '{name}'; known presets: {string.Join(", ", All.Keys)}");
}
