// The behaviour every ICheckpointStore must give CheckpointManager, written once and run against each store
// (folder, Azurite). Not a test of the trainer's file contents: the files here are arbitrary bytes.
using System.Text;
using System.Text.Json.Nodes;
using Duck.Core.Checkpoints;

namespace Duck.Core.Tests.Checkpoints;

public abstract class CheckpointManagerContract
{
    /// <summary>A fresh, empty store for one test.</summary>
    protected abstract ICheckpointStore NewStore();

    static CheckpointManifest Manifest(long step) => new()
    {
        Step = step,
        TokensSeen = step * 1024,
        Model = new JsonObject { ["model_dim"] = 64, ["num_layers"] = 2 },
        Training = new JsonObject { ["lr"] = 0.001 },
        State = new JsonObject { ["cursor"] = new JsonObject { ["position"] = step, ["rng_state"] = "12345" } },
    };

    static Dictionary<string, byte[]> Files(long step) => new()
    {
        ["model.safetensors"] = Enumerable.Range(0, 5000).Select(i => (byte)(i * 7 + step)).ToArray(),
        ["optimizer/adam.bin"] = Encoding.UTF8.GetBytes($"optimizer state at {step}"),
    };

    [Fact]
    public async Task SaveAsync_ThenLoadLatest_RoundTripsManifestAndFiles()
    {
        var manager = new CheckpointManager(NewStore());

        string name = await manager.SaveAsync(Manifest(42), Files(42));
        var loaded = await manager.LoadLatestAsync();

        Assert.Equal("step-00000042", name);
        Assert.NotNull(loaded);
        Assert.Equal(name, loaded.Name);
        Assert.Equal(42, loaded.Manifest.Step);
        Assert.Equal(42 * 1024, loaded.Manifest.TokensSeen);
        Assert.Equal(64, loaded.Manifest.Model["model_dim"]!.GetValue<int>());
        Assert.Equal("12345", loaded.Manifest.State["cursor"]!["rng_state"]!.GetValue<string>());
        Assert.Equal(5000, loaded.Manifest.FileSizes["model.safetensors"]);
        Assert.Equal(64, loaded.Manifest.Files["optimizer/adam.bin"].Length);
        Assert.NotEqual(default, loaded.Manifest.CreatedUtc);
        Assert.Equal(Files(42)["model.safetensors"], loaded.Files["model.safetensors"]);
        Assert.Equal(Files(42)["optimizer/adam.bin"], loaded.Files["optimizer/adam.bin"]);
    }

    [Fact]
    public async Task SaveAsync_ManifestJson_UsesSnakeCaseKeys()
    {
        var store = NewStore();
        var manager = new CheckpointManager(store);

        string name = await manager.SaveAsync(Manifest(1), Files(1));
        var json = JsonNode.Parse(await store.ReadAsync($"{name}/manifest.json"))!.AsObject();

        Assert.Equal(["format_version", "step", "tokens_seen", "model", "training", "state", "files", "file_sizes", "created_utc"],
            json.Select(kv => kv.Key).ToArray());
        Assert.Equal(1, json["format_version"]!.GetValue<int>());
    }

    [Fact]
    public async Task SaveAsync_MoreThanKeepLast_PrunesOldest()
    {
        var manager = new CheckpointManager(NewStore(), keepLast: 2);

        foreach (long step in new long[] { 10, 20, 30, 40 }) await manager.SaveAsync(Manifest(step), Files(step));
        var names = await manager.ListAsync();

        Assert.Equal(["step-00000030", "step-00000040"], names);
        Assert.Equal(40, (await manager.LoadLatestAsync())!.Manifest.Step);
    }

    [Fact]
    public async Task ListAsync_CheckpointWithoutManifest_IsIgnoredAndPrunedOnNextSave()
    {
        var store = NewStore();
        var manager = new CheckpointManager(store);
        await manager.SaveAsync(Manifest(10), Files(10));
        await store.WriteAsync("step-00000020/model.safetensors", new byte[] { 1, 2, 3 }); // a save that crashed

        var before = await manager.ListAsync();
        var latest = await manager.LoadLatestAsync();
        await manager.SaveAsync(Manifest(15), Files(15));

        Assert.Equal(["step-00000010"], before);
        Assert.Equal(10, latest!.Manifest.Step);
        Assert.Empty(await store.ListAsync("step-00000020/"));
        Assert.Equal(["step-00000010", "step-00000015"], await manager.ListAsync());
    }

    [Fact]
    public async Task LoadAsync_FlippedByte_ThrowsNamingFile()
    {
        var store = NewStore();
        var manager = new CheckpointManager(store);
        string name = await manager.SaveAsync(Manifest(5), Files(5));
        byte[] data = (await store.ReadAsync($"{name}/model.safetensors"))!;
        data[1234] ^= 0x01;
        await store.WriteAsync($"{name}/model.safetensors", data);

        var e = await Assert.ThrowsAsync<InvalidDataException>(() => manager.LoadAsync(name));

        Assert.Contains("step-00000005/model.safetensors", e.Message);
        Assert.Contains("corrupted", e.Message);
    }

    [Fact]
    public async Task LoadAsync_TruncatedFile_ThrowsNamingFileAndSizes()
    {
        var store = NewStore();
        var manager = new CheckpointManager(store);
        string name = await manager.SaveAsync(Manifest(5), Files(5));
        await store.WriteAsync($"{name}/model.safetensors", Files(5)["model.safetensors"].AsMemory(0, 4000));

        var e = await Assert.ThrowsAsync<InvalidDataException>(() => manager.LoadLatestAsync());

        Assert.Contains("step-00000005/model.safetensors", e.Message);
        Assert.Contains("4000 bytes", e.Message);
        Assert.Contains("5000", e.Message);
    }

    [Fact]
    public async Task LoadAsync_MissingFile_ThrowsNamingFile()
    {
        var store = NewStore();
        var manager = new CheckpointManager(store);
        string name = await manager.SaveAsync(Manifest(5), Files(5));
        await store.DeleteAsync($"{name}/optimizer/");

        var e = await Assert.ThrowsAsync<InvalidDataException>(() => manager.LoadAsync(name));

        Assert.Contains("step-00000005/optimizer/adam.bin", e.Message);
        Assert.Contains("missing", e.Message);
    }

    [Fact]
    public async Task LoadLatestAsync_EmptyStore_ReturnsNull()
    {
        var manager = new CheckpointManager(NewStore());

        var loaded = await manager.LoadLatestAsync();

        Assert.Null(loaded);
    }

    [Fact]
    public async Task SaveAsync_SameStepTwice_KeepsOnlyNewFiles()
    {
        var store = NewStore();
        var manager = new CheckpointManager(store);
        await manager.SaveAsync(Manifest(7), Files(7));

        await manager.SaveAsync(Manifest(7), new Dictionary<string, byte[]> { ["model.safetensors"] = [9, 9] });
        var loaded = await manager.LoadAsync("step-00000007");

        Assert.Equal(["model.safetensors"], loaded.Files.Keys);
        Assert.Equal(["step-00000007/manifest.json", "step-00000007/model.safetensors"], await store.ListAsync("step-00000007/"));
    }

    [Fact]
    public async Task Store_WriteReadListDelete_BehaveAsDocumented()
    {
        var store = NewStore();

        await store.WriteAsync("a/x.bin", new byte[] { 1 });
        await store.WriteAsync("a/y/z.bin", new byte[] { 2, 3 });
        await store.WriteAsync("ab.bin", new byte[] { 4 });
        await store.WriteAsync("a/x.bin", new byte[] { 5, 6, 7 });
        var underA = await store.ListAsync("a/");
        var startingWithA = await store.ListAsync("a");
        byte[]? x = await store.ReadAsync("a/x.bin");
        byte[]? absent = await store.ReadAsync("a/none.bin");
        await store.DeleteAsync("a/");

        Assert.Equal(["a/x.bin", "a/y/z.bin"], underA);
        Assert.Equal(["a/x.bin", "a/y/z.bin", "ab.bin"], startingWithA);
        Assert.Equal([5, 6, 7], x);
        Assert.Null(absent);
        Assert.Equal(["ab.bin"], await store.ListAsync(""));
    }

    [Fact]
    public async Task Store_PathWithParentSegment_ThrowsNamingPath()
    {
        var store = NewStore();

        var e = await Assert.ThrowsAsync<ArgumentException>(() => store.WriteAsync("../evil.bin", new byte[] { 1 }));

        Assert.Contains("'../evil.bin'", e.Message);
    }
}
