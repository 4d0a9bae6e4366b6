// Reads what an export needs from a trainer checkpoint folder: the ModelConfig from manifest.json's "model"
// object and the fp32 tensors of model.safetensors. Accepts a checkpoint folder or a run folder holding
// checkpoints/<name>/manifest.json (the newest name wins). Not the checkpoint manager (Duck.Core).
using System.Text.Json;
using System.Text.Json.Nodes;
using Duck.Core.Checkpoints;
using Duck.Core.Model;

namespace Duck.Inference.Export;

/// <summary>Checkpoint folder → (config, tensors by checkpoint key).</summary>
public static class CheckpointReader
{
    public const string ManifestFile = "manifest.json";
    public const string ModelFile = "model.safetensors";

    /// <summary>The checkpoint folder <paramref name="path"/> denotes: itself, or the newest under path/checkpoints.</summary>
    public static string ResolveCheckpointFolder(string path)
    {
        if (File.Exists(Path.Combine(path, ManifestFile))) return path;
        if (!Directory.Exists(path)) throw new DirectoryNotFoundException($"checkpoint folder '{path}' does not exist");
        var root = Path.Combine(path, "checkpoints");
        var newest = Directory.Exists(root)
            ? Directory.GetDirectories(root).Where(d => File.Exists(Path.Combine(d, ManifestFile))).OrderBy(d => Path.GetFileName(d), StringComparer.Ordinal).LastOrDefault()
            : null;
        return newest ?? throw new FileNotFoundException($"'{path}' is neither a checkpoint folder (no {ManifestFile}) nor a run folder with checkpoints/<name>/{ManifestFile}");
    }

    /// <summary>Reads the config and the tensors of a checkpoint folder (or run folder).</summary>
    public static (ModelConfig Config, Dictionary<string, float[]> Tensors, string Folder) Read(string path)
    {
        string folder = ResolveCheckpointFolder(path);
        var config = ReadConfig(Path.Combine(folder, ManifestFile));
        string model = Path.Combine(folder, ModelFile);
        if (!File.Exists(model)) throw new FileNotFoundException($"checkpoint '{folder}' has no {ModelFile}", model);
        using var stream = File.OpenRead(model);
        var (tensors, _) = Safetensors.Read(stream, model);
        return (config, tensors.ToDictionary(t => t.Name, t => t.Data), folder);
    }

    /// <summary>The ModelConfig under manifest.json's "model" key; accepts PascalCase, camelCase or snake_case names.</summary>
    public static ModelConfig ReadConfig(string manifestPath)
    {
        JsonNode? root;
        try { root = JsonNode.Parse(File.ReadAllBytes(manifestPath)); }
        catch (JsonException e) { throw new InvalidDataException($"{manifestPath}: not valid JSON ({e.Message})"); }
        if (root?["model"] is not JsonObject model)
            throw new InvalidDataException($"{manifestPath}: has no \"model\" object holding the model config");
        var normalized = new JsonObject();
        foreach (var (key, value) in model) normalized[key.Replace("_", "")] = value?.DeepClone();
        try
        {
            var config = normalized.Deserialize<ModelConfig>(new JsonSerializerOptions { PropertyNameCaseInsensitive = true })
                         ?? throw new InvalidDataException($"{manifestPath}: \"model\" is null");
            return config.Validate();
        }
        catch (Exception e) when (e is JsonException or ArgumentException)
        {
            throw new InvalidDataException($"{manifestPath}: \"model\" is not a valid model config ({e.Message})");
        }
    }
}
