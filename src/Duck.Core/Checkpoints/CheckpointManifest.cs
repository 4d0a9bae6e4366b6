// The manifest.json of one checkpoint: the step, the configurations needed to rebuild the model and resume
// training, and the size and SHA-256 of every file. Writing it is the commit point of a checkpoint.
// Not the tensors themselves (those are files such as model.safetensors listed in Files).
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Json.Serialization;

namespace Duck.Core.Checkpoints;

/// <summary>What a checkpoint holds; serialized with snake_case keys.</summary>
public sealed record CheckpointManifest
{
    /// <summary>The version this code writes and reads.</summary>
    public const int CurrentFormatVersion = 1;

    /// <summary>Manifest format version; readers reject versions they do not know.</summary>
    public int FormatVersion { get; init; } = CurrentFormatVersion;
    /// <summary>Optimizer steps completed when the checkpoint was taken.</summary>
    public long Step { get; init; }
    /// <summary>Training tokens consumed so far.</summary>
    public long TokensSeen { get; init; }
    /// <summary>The serialized ModelConfig: resuming takes the architecture from here.</summary>
    public JsonObject Model { get; init; } = new();
    /// <summary>The full effective training configuration.</summary>
    public JsonObject Training { get; init; } = new();
    /// <summary>Data cursors, RNG states, anything else needed to resume exactly.</summary>
    public JsonObject State { get; init; } = new();
    /// <summary>File name -> lowercase SHA-256 hex; filled by <see cref="CheckpointManager.SaveAsync"/>.</summary>
    public Dictionary<string, string> Files { get; init; } = new();
    /// <summary>File name -> size in bytes; filled by <see cref="CheckpointManager.SaveAsync"/>.</summary>
    public Dictionary<string, long> FileSizes { get; init; } = new();
    /// <summary>When the checkpoint was written; set by the manager when left default.</summary>
    public DateTimeOffset CreatedUtc { get; init; }

    /// <summary>The JSON options of manifest.json (snake_case, indented).</summary>
    public static readonly JsonSerializerOptions JsonOptions = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        WriteIndented = true,
        DefaultIgnoreCondition = JsonIgnoreCondition.Never,
    };

    /// <summary>The manifest as UTF-8 JSON.</summary>
    public byte[] ToJsonBytes() => JsonSerializer.SerializeToUtf8Bytes(this, JsonOptions);

    /// <summary>Parses manifest.json; <see cref="InvalidDataException"/> naming <paramref name="sourceName"/> when malformed or of another version.</summary>
    public static CheckpointManifest FromJsonBytes(ReadOnlySpan<byte> json, string sourceName)
    {
        CheckpointManifest? manifest;
        try { manifest = JsonSerializer.Deserialize<CheckpointManifest>(json, JsonOptions); }
        catch (JsonException e) { throw new InvalidDataException($"{sourceName}: not a valid checkpoint manifest ({e.Message})", e); }
        if (manifest is null) throw new InvalidDataException($"{sourceName}: manifest is JSON null");
        if (manifest.FormatVersion != CurrentFormatVersion)
            throw new InvalidDataException($"{sourceName}: manifest format_version {manifest.FormatVersion} is not supported (this build reads {CurrentFormatVersion})");
        return manifest;
    }
}

/// <summary>A checkpoint read back and verified: its name (e.g. "step-00000100"), manifest and file contents by name.</summary>
public sealed record LoadedCheckpoint(string Name, CheckpointManifest Manifest, IReadOnlyDictionary<string, byte[]> Files);
