// The storage a checkpoint manager writes to: a flat namespace of '/'-separated relative paths holding bytes,
// backed by a local folder or an Azure blob container. Not a checkpoint format: see CheckpointManager for that.
namespace Duck.Core.Checkpoints;

/// <summary>A key/value store of files addressed by relative, '/'-separated paths (e.g. "step-00000100/model.safetensors").</summary>
public interface ICheckpointStore
{
    /// <summary>Where the files live, for logs and error messages (e.g. "folder /abs/path").</summary>
    string Description { get; }

    /// <summary>Writes (or replaces) one file atomically: readers see the old content or the new, never a part.</summary>
    Task WriteAsync(string path, ReadOnlyMemory<byte> data, CancellationToken ct = default);

    /// <summary>The content of one file, or null when it does not exist.</summary>
    Task<byte[]?> ReadAsync(string path, CancellationToken ct = default);

    /// <summary>
    /// Every file whose path starts with <paramref name="prefix"/> (string prefix, "" for all), as store-relative paths
    /// that can be passed back to <see cref="ReadAsync"/>, sorted ordinally.
    /// </summary>
    Task<IReadOnlyList<string>> ListAsync(string prefix, CancellationToken ct = default);

    /// <summary>Deletes every file whose path starts with <paramref name="prefix"/>; no error when there is none.</summary>
    Task DeleteAsync(string prefix, CancellationToken ct = default);
}

/// <summary>Checks the relative paths the stores accept.</summary>
public static class CheckpointPaths
{
    /// <summary>Throws <see cref="ArgumentException"/> unless the path is relative, '/'-separated, without empty, "." or ".." segments.</summary>
    public static string Validate(string path, bool allowEmpty = false, bool allowTrailingSlash = false)
    {
        ArgumentNullException.ThrowIfNull(path);
        if (path.Length == 0)
            return allowEmpty ? path : throw new ArgumentException("checkpoint path is empty");
        string body = allowTrailingSlash && path.EndsWith('/') ? path[..^1] : path;
        if (body.Length == 0 || body.StartsWith('/') || body.Contains('\\') || body.Contains(':')
            || body.Split('/').Any(s => s is "" or "." or ".."))
            throw new ArgumentException($"checkpoint path '{path}' must be relative and '/'-separated, without empty, '.' or '..' segments");
        return path;
    }
}
