// Orleans grain storage over an ICheckpointStore, so job and parameter-server state live beside the checkpoints:
// a folder by default, an Azure blob container (Azurite locally) by configuration. One file per grain state,
// Orleans-serialized, written atomically by the store. ETags are content hashes; a stale write is rejected.
using System.Security.Cryptography;
using Duck.Core.Checkpoints;
using Orleans.Runtime;
using Orleans.Serialization;
using Orleans.Storage;

namespace Duck.Grains;

/// <summary>The name of the grain storage the Duck grains use.</summary>
public static class DuckStorage
{
    public const string Name = "duck";
}

/// <summary><see cref="IGrainStorage"/> on <see cref="ICheckpointStore"/> ("grains/{state}/{grain id}.bin").</summary>
public sealed class CheckpointStoreGrainStorage(ICheckpointStore store, Serializer serializer) : IGrainStorage
{
    static string PathOf(string stateName, GrainId grainId) =>
        $"grains/{stateName}/{Convert.ToHexStringLower(SHA256.HashData(System.Text.Encoding.UTF8.GetBytes(grainId.ToString())))[..32]}.bin";

    static string ETagOf(byte[] data) => Convert.ToHexStringLower(SHA256.HashData(data))[..16];

    public async Task ReadStateAsync<T>(string stateName, GrainId grainId, IGrainState<T> grainState)
    {
        var data = await store.ReadAsync(PathOf(stateName, grainId));
        if (data is null) { grainState.RecordExists = false; grainState.ETag = null; return; }
        grainState.State = serializer.Deserialize<T>(data);
        grainState.ETag = ETagOf(data);
        grainState.RecordExists = true;
    }

    public async Task WriteStateAsync<T>(string stateName, GrainId grainId, IGrainState<T> grainState)
    {
        string path = PathOf(stateName, grainId);
        var current = await store.ReadAsync(path);
        if (current is not null && grainState.ETag is not null && ETagOf(current) != grainState.ETag)
            throw new InconsistentStateException($"state {stateName} of {grainId} in {store.Description} changed under this activation", ETagOf(current), grainState.ETag);
        var data = serializer.SerializeToArray(grainState.State);
        await store.WriteAsync(path, data);
        grainState.ETag = ETagOf(data);
        grainState.RecordExists = true;
    }

    public async Task ClearStateAsync<T>(string stateName, GrainId grainId, IGrainState<T> grainState)
    {
        await store.DeleteAsync(PathOf(stateName, grainId));
        grainState.ETag = null;
        grainState.RecordExists = false;
    }
}
