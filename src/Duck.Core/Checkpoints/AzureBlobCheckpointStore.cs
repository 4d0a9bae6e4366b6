// An ICheckpointStore in an Azure Storage blob container (or Azurite): one block blob per path under an optional
// name prefix. A single-blob upload commits all at once, which gives the atomic-per-file guarantee.
// Not a general blob client: no leases, no concurrency control between writers.
using Azure;
using Azure.Storage.Blobs;
using Azure.Storage.Blobs.Models;

namespace Duck.Core.Checkpoints;

/// <summary>Checkpoint files as block blobs named "&lt;prefix&gt;/&lt;path&gt;" in one container.</summary>
public sealed class AzureBlobCheckpointStore : ICheckpointStore
{
    readonly BlobContainerClient container;
    readonly string blobPrefix; // "" or "some/prefix/"
    readonly SemaphoreSlim creating = new(1, 1);
    volatile bool created;

    /// <summary>Uses <paramref name="container"/> (created on first use if missing) and puts every blob under <paramref name="prefix"/>.</summary>
    public AzureBlobCheckpointStore(string connectionString, string container, string prefix = "")
    {
        if (string.IsNullOrWhiteSpace(connectionString)) throw new ArgumentException("Azure storage connection string is empty");
        if (string.IsNullOrWhiteSpace(container)) throw new ArgumentException("Azure blob container name is empty");
        string trimmed = (prefix ?? "").Trim('/');
        if (trimmed.Length > 0) CheckpointPaths.Validate(trimmed);
        blobPrefix = trimmed.Length == 0 ? "" : trimmed + "/";
        try { this.container = new BlobContainerClient(connectionString, container); }
        catch (FormatException e) { throw new ArgumentException($"Azure storage connection string is malformed: {e.Message}", e); }
    }

    public string Description => $"azure blob container '{container.Name}' prefix '{blobPrefix.TrimEnd('/')}' at {container.Uri}";

    public async Task WriteAsync(string path, ReadOnlyMemory<byte> data, CancellationToken ct = default)
    {
        await EnsureContainerAsync(ct);
        var blob = container.GetBlobClient(BlobName(CheckpointPaths.Validate(path)));
        await blob.UploadAsync(BinaryData.FromBytes(data), overwrite: true, ct);
    }

    public async Task<byte[]?> ReadAsync(string path, CancellationToken ct = default)
    {
        await EnsureContainerAsync(ct);
        var blob = container.GetBlobClient(BlobName(CheckpointPaths.Validate(path)));
        try
        {
            var response = await blob.DownloadContentAsync(ct);
            return response.Value.Content.ToArray();
        }
        catch (RequestFailedException e) when (e.Status == 404) { return null; }
    }

    public async Task<IReadOnlyList<string>> ListAsync(string prefix, CancellationToken ct = default)
    {
        CheckpointPaths.Validate(prefix, allowEmpty: true, allowTrailingSlash: true);
        await EnsureContainerAsync(ct);
        var result = new List<string>();
        var options = new GetBlobsOptions { Prefix = blobPrefix + prefix };
        await foreach (BlobItem item in container.GetBlobsAsync(options, ct))
            result.Add(item.Name[blobPrefix.Length..]);
        result.Sort(StringComparer.Ordinal);
        return result;
    }

    public async Task DeleteAsync(string prefix, CancellationToken ct = default)
    {
        foreach (string path in await ListAsync(prefix, ct))
            await container.GetBlobClient(BlobName(path)).DeleteIfExistsAsync(DeleteSnapshotsOption.IncludeSnapshots, cancellationToken: ct);
    }

    string BlobName(string path) => blobPrefix + path;

    /// <summary>Creates the container once; a failure is retried on the next call rather than remembered.</summary>
    async Task EnsureContainerAsync(CancellationToken ct)
    {
        if (created) return;
        await creating.WaitAsync(ct);
        try
        {
            if (created) return;
            await container.CreateIfNotExistsAsync(cancellationToken: ct);
            created = true;
        }
        catch (RequestFailedException e)
        {
            throw new IOException($"cannot create or open {Description}: {e.Status} {e.ErrorCode}: {e.Message.Split('\n')[0]}", e);
        }
        finally { creating.Release(); }
    }
}
