// Silos as compose and Kubernetes run them, on a real Azurite (blob and table services from tools/node): Azure
// Table clustering and Azure Blob grain state from environment variables alone (DUCK_STORAGE_CONNECTION_STRING,
// ORLEANS_CLUSTER_ID, POD_IP or Duck__Silo__AdvertisedAddress as a host name), forming one cluster.
using System.Diagnostics;
using System.Text.Json.Nodes;

namespace Duck.Silo.Tests;

public sealed class AzureClusteringTests : IAsyncLifetime
{
    const string AccountKey = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";
    Process? azurite;
    int blobPort, tablePort;

    string ConnectionString => $"DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={AccountKey};" +
                               $"BlobEndpoint=http://127.0.0.1:{blobPort}/devstoreaccount1;TableEndpoint=http://127.0.0.1:{tablePort}/devstoreaccount1";

    [Fact]
    public async Task TwoSilos_AzureClusteringFromEnvironment_FormOneCluster()
    {
        var env = new Dictionary<string, string>
        {
            ["Duck__Silo__Clustering"] = "azure", ["DUCK_STORAGE_CONNECTION_STRING"] = ConnectionString, ["Duck__Chat__ApiKeys__0"] = "test-key",
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

    public async Task InitializeAsync()
    {
        (blobPort, tablePort) = (Repo.FreePort(), Repo.FreePort());
        string binary = Path.Combine(Repo.Root, "tools", "node", "node_modules", ".bin", "azurite");
        if (!File.Exists(binary)) throw new FileNotFoundException($"{binary} is missing; run scripts/setup.sh");
        var start = new ProcessStartInfo(binary) { UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (string a in new[] { "--blobHost", "127.0.0.1", "--blobPort", blobPort.ToString(), "--tableHost", "127.0.0.1", "--tablePort", tablePort.ToString(),
                     "--queuePort", Repo.FreePort().ToString(), "--location", Directory.CreateTempSubdirectory("duck-azurite-").FullName,
                     "--skipApiVersionCheck", "--loose", "--silent" })
            start.ArgumentList.Add(a);
        azurite = Process.Start(start)!;
        azurite.OutputDataReceived += (_, _) => { };
        azurite.ErrorDataReceived += (_, _) => { };
        azurite.BeginOutputReadLine();
        azurite.BeginErrorReadLine();
        using var client = new HttpClient { Timeout = TimeSpan.FromSeconds(2) };
        for (var deadline = DateTime.UtcNow.AddSeconds(30); DateTime.UtcNow < deadline; await Task.Delay(200))
        {
            if (azurite.HasExited) throw new InvalidOperationException($"azurite exited with {azurite.ExitCode}");
            try { await client.GetAsync($"http://127.0.0.1:{tablePort}/"); await client.GetAsync($"http://127.0.0.1:{blobPort}/"); return; }
            catch (Exception e) when (e is HttpRequestException or TaskCanceledException) { }
        }
        throw new TimeoutException("azurite did not listen within 30 s");
    }

    public Task DisposeAsync()
    {
        if (azurite is { HasExited: false }) azurite.Kill(entireProcessTree: true);
        azurite?.Dispose();
        return Task.CompletedTask;
    }
}
