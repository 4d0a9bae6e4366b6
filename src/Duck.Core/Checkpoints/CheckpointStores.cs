// Turns a user's checkpoint location string into a store: a plain path means a folder, "azure:" means a blob
// container. Not configuration binding: the caller decides where the spec comes from.
namespace Duck.Core.Checkpoints;

/// <summary>Opens an <see cref="ICheckpointStore"/> from a location string.</summary>
public static class CheckpointStores
{
    /// <summary>The environment variable holding the Azure Storage connection string for "azure:" specs.</summary>
    public const string ConnectionStringVariable = "DUCK_STORAGE_CONNECTION_STRING";

    /// <summary>
    /// "azure:&lt;container&gt;[/&lt;prefix&gt;]" opens a blob container with the connection string from
    /// <paramref name="connectionString"/>, else the DUCK_STORAGE_CONNECTION_STRING variable, else
    /// AZURE_STORAGE_CONNECTION_STRING ("UseDevelopmentStorage=true" for a local Azurite).
    /// Anything else is a folder path.
    /// </summary>
    public static ICheckpointStore Open(string spec, string? connectionString = null)
    {
        if (string.IsNullOrWhiteSpace(spec)) throw new ArgumentException("checkpoint location is empty");
        if (!spec.StartsWith("azure:", StringComparison.OrdinalIgnoreCase)) return new FolderCheckpointStore(spec);

        string rest = spec["azure:".Length..].Trim('/');
        int slash = rest.IndexOf('/');
        string container = slash < 0 ? rest : rest[..slash];
        string prefix = slash < 0 ? "" : rest[(slash + 1)..];
        if (container.Length == 0)
            throw new ArgumentException($"checkpoint location '{spec}' names no container; use azure:<container>[/<prefix>]");
        connectionString ??= Environment.GetEnvironmentVariable(ConnectionStringVariable)
            ?? Environment.GetEnvironmentVariable("AZURE_STORAGE_CONNECTION_STRING");
        if (string.IsNullOrWhiteSpace(connectionString))
            throw new ArgumentException($"checkpoint location '{spec}' needs a connection string: set {ConnectionStringVariable} (or AZURE_STORAGE_CONNECTION_STRING)");
        return new AzureBlobCheckpointStore(connectionString, container, prefix);
    }
}
