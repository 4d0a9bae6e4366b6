// Runs the CheckpointManager contract on the folder store and on a real Azurite blob service, plus the checks
// that only one store has (unwritable folder, container creation, location strings).
using Duck.Core.Checkpoints;
using Duck.Tests.Shared;

namespace Duck.Core.Tests.Checkpoints;

public sealed class FolderCheckpointStoreTests : CheckpointManagerContract, IDisposable
{
    readonly string root = Directory.CreateTempSubdirectory("duck-ckpt-").FullName;

    protected override ICheckpointStore NewStore() => new FolderCheckpointStore(Path.Combine(root, Guid.NewGuid().ToString("N")));

    public void Dispose() => Directory.Delete(root, recursive: true);

    [Fact]
    public async Task WriteAsync_UnwritableRoot_ThrowsNamingPath()
    {
        string blocker = Path.Combine(root, "a-file");
        await File.WriteAllTextAsync(blocker, "not a folder");
        var store = new FolderCheckpointStore(Path.Combine(blocker, "ckpt"));

        var e = await Assert.ThrowsAnyAsync<IOException>(() => store.WriteAsync("step-00000001/model.bin", new byte[] { 1 }));

        Assert.Contains(Path.Combine(blocker, "ckpt", "step-00000001", "model.bin"), e.Message);
    }

    [Fact]
    public async Task WriteAsync_Completed_LeavesNoTemporaryFiles()
    {
        var store = new FolderCheckpointStore(Path.Combine(root, "clean"));

        await store.WriteAsync("step-00000001/model.bin", new byte[100]);

        Assert.Equal(["model.bin"], Directory.GetFiles(Path.Combine(root, "clean", "step-00000001")).Select(Path.GetFileName));
    }

    [Fact]
    public void Open_PlainPath_ReturnsFolderStore()
    {
        var store = CheckpointStores.Open(Path.Combine(root, "x"));

        Assert.Equal($"folder {Path.Combine(root, "x")}", store.Description);
    }

    [Fact]
    public void Open_AzureSpecWithoutContainer_ThrowsWithUsage()
    {
        var e = Assert.Throws<ArgumentException>(() => CheckpointStores.Open("azure:", "UseDevelopmentStorage=true"));

        Assert.Contains("azure:<container>", e.Message);
    }
}

[Collection(AzuriteCollection.Name)]
public sealed class AzureBlobCheckpointStoreTests(AzuriteFixture azurite) : CheckpointManagerContract
{
    protected override ICheckpointStore NewStore() =>
        new AzureBlobCheckpointStore(azurite.ConnectionString, AzuriteFixture.NewContainerName("ckpt"), "runs/test");

    [Fact]
    public async Task WriteAsync_WithPrefix_StoresBlobsUnderPrefixInNewContainer()
    {
        string container = AzuriteFixture.NewContainerName("prefix");
        var store = new AzureBlobCheckpointStore(azurite.ConnectionString, container, "/runs/a/");
        var unprefixed = new AzureBlobCheckpointStore(azurite.ConnectionString, container);

        await store.WriteAsync("step-00000001/model.bin", new byte[] { 1, 2 });

        Assert.Equal(["runs/a/step-00000001/model.bin"], await unprefixed.ListAsync(""));
        Assert.Equal(["step-00000001/model.bin"], await store.ListAsync(""));
        Assert.Contains($"'{container}' prefix 'runs/a'", store.Description);
    }

    [Fact]
    public void Open_AzureSpec_ReturnsBlobStoreWithContainerAndPrefix()
    {
        var store = CheckpointStores.Open("azure:mycontainer/run1", azurite.ConnectionString);

        Assert.IsType<AzureBlobCheckpointStore>(store);
        Assert.Contains("'mycontainer' prefix 'run1'", store.Description);
    }
}
