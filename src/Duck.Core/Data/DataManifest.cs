// data.json, written last into a prepared data folder: where the documents came from, how they were split and
// sharded, and the token count of every file. Also the cache key: a folder whose fingerprint matches is reused.
// Not the tokens: those are in the .tok shards it lists.
using System.Text.Json;
using System.Text.Json.Serialization;

namespace Duck.Core.Data;

/// <summary>One token shard file of a prepared folder.</summary>
public sealed record ShardInfo
{
    /// <summary>File name, relative to the folder holding data.json.</summary>
    public string File { get; init; } = "";
    public long Tokens { get; init; }
    public long Documents { get; init; }
    public long SizeBytes { get; init; }
}

/// <summary>The description of a prepared data folder (data.json, snake_case keys).</summary>
public sealed record DataManifest
{
    public const string FileName = "data.json";
    public const int CurrentFormatVersion = 1;

    /// <summary>Version of this manifest's layout.</summary>
    public int FormatVersion { get; init; } = CurrentFormatVersion;
    /// <summary>Version of the token shard format of the files listed.</summary>
    public uint ShardFormatVersion { get; init; } = TokenShard.FormatVersion;
    /// <summary>"brown" or "text".</summary>
    public string Source { get; init; } = "";
    /// <summary>The corpus folder or the user's input path.</summary>
    public string SourcePath { get; init; } = "";
    public string Tokenizer { get; init; } = "gpt2";
    public int VocabSize { get; init; }
    /// <summary>Token appended after every document.</summary>
    public int EndOfTextId { get; init; }
    /// <summary>Seed of the document-level train/validation split.</summary>
    public ulong Seed { get; init; }
    /// <summary>Requested fraction of documents held out for validation.</summary>
    public double ValFraction { get; init; }
    public int Documents { get; init; }
    public int TrainDocuments { get; init; }
    public int ValDocuments { get; init; }
    public long TrainTokens { get; init; }
    public long ValTokens { get; init; }
    /// <summary>Training shards, one per worker, balanced by tokens.</summary>
    public List<ShardInfo> Shards { get; init; } = [];
    public ShardInfo Validation { get; init; } = new();
    /// <summary>Names of the held-out documents, so that the split can be audited.</summary>
    public List<string> ValDocumentNames { get; init; } = [];
    /// <summary>xxHash64 of the inputs and settings; equal fingerprints mean identical output.</summary>
    public string InputFingerprint { get; init; } = "";
    public DateTimeOffset CreatedUtc { get; init; }

    public static readonly JsonSerializerOptions JsonOptions = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        WriteIndented = true,
        DefaultIgnoreCondition = JsonIgnoreCondition.Never,
    };

    /// <summary>Reads data.json from a prepared folder; <see cref="InvalidDataException"/> naming the file when it is malformed or of another version.</summary>
    public static DataManifest Read(string folder)
    {
        string path = Path.Combine(folder, FileName);
        DataManifest? manifest;
        try { manifest = JsonSerializer.Deserialize<DataManifest>(File.ReadAllBytes(path), JsonOptions); }
        catch (JsonException e) { throw new InvalidDataException($"{path}: not a valid data manifest ({e.Message})", e); }
        if (manifest is null || manifest.FormatVersion != CurrentFormatVersion)
            throw new InvalidDataException($"{path}: format_version {manifest?.FormatVersion} is not supported (this build reads {CurrentFormatVersion}); re-run `duck data prepare`");
        return manifest;
    }

    /// <summary>Writes data.json atomically (temporary file, then rename).</summary>
    public void Write(string folder)
    {
        string path = Path.Combine(folder, FileName);
        string temp = $"{path}.tmp-{Guid.NewGuid():N}";
        File.WriteAllBytes(temp, JsonSerializer.SerializeToUtf8Bytes(this, JsonOptions));
        File.Move(temp, path, overwrite: true);
    }
}
