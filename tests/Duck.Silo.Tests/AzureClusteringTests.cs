// Silos as compose and Kubernetes run them, on a real Azurite (blob and table services from tools/node): Azure
// Table clustering and Azure Blob grain state from environment variables alone (DUCK_STORAGE_CONNECTION_STRING,
// ORLEANS_CLUSTER_ID, POD_IP or Duck__Silo__AdvertisedAddress as a host name), forming one cluster.
using System.Text.Json.Nodes;
using Duck.Tests.Shared;

namespace Duck.Silo.Tests;

public sealed class AzureClusteringTests : IAsyncLifetime
{
    readonly AzuriteFixture azurite = new(tables: true);

    [Fact]
    public async Task TwoSilos_AzureClusteringFromEnvironment_FormOneCluster()
    {
        var env = new Dictionary<string, string>
        {
            ["Duck__Silo__Clustering"] = "azure", ["DUCK_STORAGE_CONNECTION_STRING"] = azurite.ConnectionString, ["Duck__Chat__ApiKeys__0"] = "test-key",
            ["ORLEANS_CLUSTER_ID"] = $"test-{Guid.NewGuid():N}", ["Duck__Silo__StateStore"] = "azure:duck-state",
        };
        using var first = SiloProcess.Start(null, env: new Dictionary<string, string>(env) { ["Duck__Silo__AdvertisedAddress"] = "localhost", ["POD_NAME"] = "duck-silo-a" });
        using var second = SiloProcess.Start(null, env: new Dictionary<string, string>(env) { ["POD_IP"] = "127.0.0.1", ["POD_NAME"] = "duck-silo-b" });
        await Task.WhenAll(first.WaitReadyAsync(), second.WaitReadyAsync());

        JsonArray members = [];
        for (int attempt = 0; attempt < 40 && members.Count < 2; attempt++, await Task.Delay(250))
            members = JsonNode.Parse(await first.Http.GetStringAsync("/training/data.json"))!["members"]!.AsArray();

        Assert.Equal(["duck-silo-a", "duck-silo-b"], members.Select(m => (string)m!["name"]!).Order());
        Assert.All(members, m => Assert.Equal("Active", (string?)m!["status"]));
        Assert.All(members, m => Assert.StartsWith("S127.0.0.1:", (string?)m!["address"]));
    }

    public Task InitializeAsync() => azurite.InitializeAsync();

    public Task DisposeAsync() => azurite.DisposeAsync();
}
