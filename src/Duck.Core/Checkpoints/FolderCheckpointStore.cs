// An ICheckpointStore on the local file system (or any mounted volume): each write goes to a temporary file in
// the destination folder and is renamed over the target, so a crash never leaves a half-written file under its name.
// Not a cache and not safe for two writers of the same path at once.
namespace Duck.Core.Checkpoints;

/// <summary>Checkpoint files in a folder; paths map to sub-folders.</summary>
public sealed class FolderCheckpointStore : ICheckpointStore
{
    /// <summary>Marks in-flight temporary files; they are never listed.</summary>
    internal const string TempMarker = ".duck-tmp-";

    readonly string root;

    /// <summary>Uses <paramref name="root"/> (created on the first write) as the store.</summary>
    public FolderCheckpointStore(string root)
    {
        if (string.IsNullOrWhiteSpace(root)) throw new ArgumentException("checkpoint folder path is empty");
        this.root = Path.GetFullPath(root);
    }

    public string Description => $"folder {root}";

    /// <summary>The absolute folder holding the files.</summary>
    public string Root => root;

    public async Task WriteAsync(string path, ReadOnlyMemory<byte> data, CancellationToken ct = default)
    {
        string full = FullPath(CheckpointPaths.Validate(path));
        string temp = full + TempMarker + Guid.NewGuid().ToString("N")[..8];
        try
        {
            Directory.CreateDirectory(Path.GetDirectoryName(full)!);
            await using (var fs = new FileStream(temp, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 16, useAsync: true))
            {
                await fs.WriteAsync(data, ct);
                fs.Flush(flushToDisk: true);
            }
            File.Move(temp, full, overwrite: true);
        }
        catch (UnauthorizedAccessException e)
        {
            TryDelete(temp);
            throw new UnauthorizedAccessException($"cannot write checkpoint file '{full}' in {Description}: {e.Message}", e);
        }
        catch (IOException e)
        {
            TryDelete(temp);
            throw new IOException($"cannot write checkpoint file '{full}' in {Description}: {e.Message}", e);
        }
        catch (OperationCanceledException)
        {
            TryDelete(temp);
            throw;
        }
    }

    public async Task<byte[]?> ReadAsync(string path, CancellationToken ct = default)
    {
        string full = FullPath(CheckpointPaths.Validate(path));
        try { return await File.ReadAllBytesAsync(full, ct); }
        catch (FileNotFoundException) { return null; }
        catch (DirectoryNotFoundException) { return null; }
    }

    public Task<IReadOnlyList<string>> ListAsync(string prefix, CancellationToken ct = default)
    {
        CheckpointPaths.Validate(prefix, allowEmpty: true, allowTrailingSlash: true);
        // Only the folder named by the prefix's complete segments can hold matches.
        int lastSlash = prefix.LastIndexOf('/');
        string folder = lastSlash < 0 ? root : FullPath(prefix[..lastSlash]);
        IReadOnlyList<string> result = !Directory.Exists(folder) ? [] : Directory
            .EnumerateFiles(folder, "*", SearchOption.AllDirectories)
            .Select(f => Path.GetRelativePath(root, f).Replace('\\', '/'))
            .Where(p => p.StartsWith(prefix, StringComparison.Ordinal) && !p.Contains(TempMarker, StringComparison.Ordinal))
            .Order(StringComparer.Ordinal)
            .ToList();
        return Task.FromResult(result);
    }

    public async Task DeleteAsync(string prefix, CancellationToken ct = default)
    {
        foreach (string path in await ListAsync(prefix, ct))
        {
            ct.ThrowIfCancellationRequested();
            File.Delete(FullPath(path));
        }
        RemoveEmptyFolders(root);
    }

    string FullPath(string relative) => Path.Combine(root, relative.Replace('/', Path.DirectorySeparatorChar));

    static void RemoveEmptyFolders(string folder)
    {
        if (!Directory.Exists(folder)) return;
        foreach (string sub in Directory.GetDirectories(folder))
        {
            RemoveEmptyFolders(sub);
            if (!Directory.EnumerateFileSystemEntries(sub).Any()) Directory.Delete(sub);
        }
    }

    static void TryDelete(string file)
    {
        try { File.Delete(file); } catch (IOException) { } catch (UnauthorizedAccessException) { }
    }
}
