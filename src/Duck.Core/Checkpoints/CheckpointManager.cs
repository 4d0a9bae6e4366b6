// Saves and loads whole checkpoints in an ICheckpointStore: the files of a step go under "step-NNNNNNNN/",
// manifest.json last as the commit point; older checkpoints beyond keepLast and uncommitted leftovers are pruned.
// Not the trainer: what the files contain (safetensors, optimizer state) is the caller's business.
using System.Globalization;
using System.Security.Cryptography;

namespace Duck.Core.Checkpoints;

/// <summary>Checkpoint lifecycle on top of a store: save, list, load with verification, prune.</summary>
public sealed class CheckpointManager
{
    /// <summary>The commit marker and description of every checkpoint.</summary>
    public const string ManifestFileName = "manifest.json";
    const string NamePrefix = "step-";

    readonly ICheckpointStore store;
    readonly int keepLast;

    /// <summary>Manages the checkpoints in <paramref name="store"/>, keeping the newest <paramref name="keepLast"/> (at least 1).</summary>
    public CheckpointManager(ICheckpointStore store, int keepLast = 3)
    {
        ArgumentNullException.ThrowIfNull(store);
        if (keepLast < 1) throw new ArgumentOutOfRangeException(nameof(keepLast), keepLast, $"keepLast must be at least 1, got {keepLast}");
        this.store = store;
        this.keepLast = keepLast;
    }

    /// <summary>The store, for log lines.</summary>
    public ICheckpointStore Store => store;

    /// <summary>The checkpoint name of a step: "step-" and the step with at least 8 digits.</summary>
    public static string NameOf(long step) => $"{NamePrefix}{step:D8}";

    /// <summary>
    /// Writes every file under "&lt;name&gt;/", then manifest.json (with sizes and SHA-256 filled in) as the commit point,
    /// then prunes. Returns the checkpoint name.
    /// </summary>
    public async Task<string> SaveAsync(CheckpointManifest manifest, IReadOnlyDictionary<string, byte[]> files, CancellationToken ct = default)
    {
        ArgumentNullException.ThrowIfNull(manifest);
        ArgumentNullException.ThrowIfNull(files);
        if (manifest.Step < 0) throw new ArgumentOutOfRangeException(nameof(manifest), manifest.Step, $"checkpoint step must be >= 0, got {manifest.Step}");
        foreach (string fileName in files.Keys)
        {
            CheckpointPaths.Validate(fileName);
            if (fileName == ManifestFileName) throw new ArgumentException($"checkpoint file name '{ManifestFileName}' is reserved for the manifest");
        }

        string name = NameOf(manifest.Step);
        // Re-saving a step: uncommit the old one first so that a crash midway cannot pair its manifest with new files.
        await store.DeleteAsync($"{name}/{ManifestFileName}", ct);
        var hashes = new Dictionary<string, string>();
        var sizes = new Dictionary<string, long>();
        foreach (var (fileName, data) in files.OrderBy(kv => kv.Key, StringComparer.Ordinal))
        {
            await store.WriteAsync($"{name}/{fileName}", data, ct);
            hashes[fileName] = Convert.ToHexStringLower(SHA256.HashData(data));
            sizes[fileName] = data.LongLength;
        }
        var committed = manifest with
        {
            Files = hashes,
            FileSizes = sizes,
            CreatedUtc = manifest.CreatedUtc == default ? DateTimeOffset.UtcNow : manifest.CreatedUtc,
        };
        await store.WriteAsync($"{name}/{ManifestFileName}", committed.ToJsonBytes(), ct);
        await PruneAsync(name, files.Keys.ToHashSet(), ct);
        return name;
    }

    /// <summary>Names of the committed checkpoints (those with a manifest), oldest first.</summary>
    public async Task<IReadOnlyList<string>> ListAsync(CancellationToken ct = default)
    {
        var (committed, _) = await ScanAsync(ct);
        return committed;
    }

    /// <summary>The newest committed checkpoint, verified; null when there is none.</summary>
    public async Task<LoadedCheckpoint?> LoadLatestAsync(CancellationToken ct = default)
    {
        var names = await ListAsync(ct);
        return names.Count == 0 ? null : await LoadAsync(names[^1], ct);
    }

    /// <summary>
    /// Reads a checkpoint and verifies the size and SHA-256 of every file its manifest lists;
    /// <see cref="InvalidDataException"/> naming the file when one is missing, truncated or corrupted.
    /// </summary>
    public async Task<LoadedCheckpoint> LoadAsync(string name, CancellationToken ct = default)
    {
        CheckpointPaths.Validate(name);
        string manifestPath = $"{name}/{ManifestFileName}";
        byte[] json = await store.ReadAsync(manifestPath, ct)
            ?? throw new InvalidDataException($"checkpoint '{name}' in {store.Description} has no {ManifestFileName} (not saved, or incomplete)");
        var manifest = CheckpointManifest.FromJsonBytes(json, $"{manifestPath} in {store.Description}");
        var contents = new Dictionary<string, byte[]>();
        foreach (var (fileName, expectedHash) in manifest.Files)
        {
            string path = $"{name}/{fileName}";
            byte[] data = await store.ReadAsync(path, ct)
                ?? throw new InvalidDataException($"checkpoint file '{path}' listed in the manifest is missing from {store.Description}");
            if (manifest.FileSizes.TryGetValue(fileName, out long expectedBytes) && data.LongLength != expectedBytes)
                throw new InvalidDataException($"checkpoint file '{path}' in {store.Description} is {data.LongLength} bytes but the manifest says {expectedBytes} (truncated or replaced)");
            string actualHash = Convert.ToHexStringLower(SHA256.HashData(data));
            if (!string.Equals(actualHash, expectedHash, StringComparison.OrdinalIgnoreCase))
                throw new InvalidDataException($"checkpoint file '{path}' in {store.Description} has SHA-256 {actualHash} but the manifest says {expectedHash} (corrupted)");
            contents[fileName] = data;
        }
        return new LoadedCheckpoint(name, manifest, contents);
    }

    async Task PruneAsync(string justSaved, HashSet<string> savedFiles, CancellationToken ct)
    {
        var (committed, incomplete) = await ScanAsync(ct);
        foreach (string old in committed.Where(n => n != justSaved).SkipLast(keepLast - 1))
            await store.DeleteAsync(old + "/", ct);
        foreach (string leftover in incomplete.Where(n => n != justSaved))
            await store.DeleteAsync(leftover + "/", ct);
        // Files an earlier save of the same step left behind and the new manifest does not list.
        foreach (string path in await store.ListAsync(justSaved + "/", ct))
        {
            string fileName = path[(justSaved.Length + 1)..];
            if (fileName != ManifestFileName && !savedFiles.Contains(fileName)) await store.DeleteAsync(path, ct);
        }
    }

    /// <summary>Checkpoint folders in the store, split into committed (with manifest) and incomplete, each oldest first.</summary>
    async Task<(List<string> Committed, List<string> Incomplete)> ScanAsync(CancellationToken ct)
    {
        var byName = new Dictionary<string, bool>();
        foreach (string path in await store.ListAsync(NamePrefix, ct))
        {
            int slash = path.IndexOf('/');
            if (slash < 0) continue;
            string name = path[..slash];
            if (!TryParseStep(name, out _)) continue;
            bool isManifest = path[(slash + 1)..] == ManifestFileName;
            byName[name] = byName.GetValueOrDefault(name) || isManifest;
        }
        var ordered = byName.OrderBy(kv => { TryParseStep(kv.Key, out long s); return s; }).ToList();
        return (ordered.Where(kv => kv.Value).Select(kv => kv.Key).ToList(),
                ordered.Where(kv => !kv.Value).Select(kv => kv.Key).ToList());
    }

    static bool TryParseStep(string name, out long step)
    {
        step = 0;
        return name.StartsWith(NamePrefix, StringComparison.Ordinal) && name.Length >= NamePrefix.Length + 8
            && name[NamePrefix.Length..].All(char.IsAsciiDigit)
            && long.TryParse(name.AsSpan(NamePrefix.Length), NumberStyles.None, CultureInfo.InvariantCulture, out step);
    }
}
