// Reads what an export needs from a trainer checkpoint folder: the ModelConfig from manifest.json's "model"
// object and the fp32 tensors of model.safetensors. Finding and verifying the checkpoint is CheckpointLocator's
// (Duck.Core). Not the checkpoint manager (Duck.Core).
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
    /// <summary>GGUF metadata key naming the checkpoint a fine-tuned model started from (duck eval persona reads it).</summary>
    public const string FinetuneBaseKey = "duck.finetune.base";

    /// <summary>The base checkpoint recorded in a fine-tune checkpoint's manifest (state.run.base), or null.</summary>
    public static string? FinetuneBase(LoadedCheckpoint checkpoint) =>
        checkpoint.Manifest.State["run"]?["base"]?.GetValue<string>();

    /// <summary>Reads the config and the tensors of a checkpoint folder, a run folder (its newest checkpoint) or
    /// "azure:container[/prefix]", after verifying every file against the manifest's sizes and SHA-256.</summary>
    public static (ModelConfig Config, Dictionary<string, float[]> Tensors, string Folder) Read(string path)
    {
        var (config, tensors, checkpoint) = ReadWithManifest(path);
        return (config, tensors, checkpoint.Name);
    }

    /// <summary>As <see cref="Read"/>, with the whole loaded checkpoint (its manifest says what run made it).</summary>
    public static (ModelConfig Config, Dictionary<string, float[]> Tensors, LoadedCheckpoint Checkpoint) ReadWithManifest(string path)
    {
        var checkpoint = CheckpointLocator.LoadAsync(path).GetAwaiter().GetResult();
        string source = $"{path} ({checkpoint.Name})";
        var config = ReadConfig(new JsonObject { ["model"] = checkpoint.Manifest.Model.DeepClone() }, source);
        if (!checkpoint.Files.TryGetValue(ModelFile, out var bytes))
            throw new FileNotFoundException($"checkpoint {source} has no {ModelFile}");
        var (tensors, _) = Safetensors.Read(bytes, $"{source}/{ModelFile}");
        return (config, tensors.ToDictionary(t => t.Name, t => t.Data), checkpoint);
    }

    /// <summary>The ModelConfig under manifest.json's "model" key; accepts PascalCase, camelCase or snake_case names.</summary>
    public static ModelConfig ReadConfig(JsonNode? root, string manifestPath)
    {
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
