// Finds and loads (verified) the checkpoint a user names: a checkpoint folder, a run folder whose newest checkpoint
// is taken, or "azure:container[/prefix]". Shared by `duck eval` and `duck export`; not the manager itself.
namespace Duck.Core.Checkpoints;

public static class CheckpointLocator
{
    /// <summary>Loads and verifies (sizes, SHA-256) the checkpoint <paramref name="path"/> denotes; throws
    /// DirectoryNotFoundException / FileNotFoundException / ArgumentException naming the path otherwise.</summary>
    public static async Task<LoadedCheckpoint> LoadAsync(string path, CancellationToken ct = default)
    {
        if (path.StartsWith("azure:", StringComparison.OrdinalIgnoreCase))
        {
            var store = CheckpointStores.Open(path);
            return await new CheckpointManager(store, keepLast: int.MaxValue).LoadLatestAsync(ct)
                   ?? throw new FileNotFoundException($"no committed checkpoint in {store.Description}");
        }
        string full = Path.GetFullPath(path);
        if (File.Exists(Path.Combine(full, CheckpointManager.ManifestFileName)))
            return await new CheckpointManager(new FolderCheckpointStore(Path.GetDirectoryName(full)!), keepLast: int.MaxValue)
                .LoadAsync(Path.GetFileName(full), ct);
        string root = Directory.Exists(Path.Combine(full, "checkpoints")) ? Path.Combine(full, "checkpoints") : full;
        if (!Directory.Exists(root)) throw new DirectoryNotFoundException($"checkpoint '{path}' does not exist");
        return await new CheckpointManager(new FolderCheckpointStore(root), keepLast: int.MaxValue).LoadLatestAsync(ct)
               ?? throw new FileNotFoundException($"no committed checkpoint in '{path}'");
    }
}
