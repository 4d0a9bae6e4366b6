// An xunit fixture that runs a real Azurite blob service (from tools/node/node_modules) on a free local port for the
// tests of one collection, then stops it and deletes its data. Shared by test projects via
// <Compile Include="../Shared/*.cs" />. Not a mock: when Azurite is missing the tests fail, they are never skipped.
using System.Diagnostics;
using System.Net;
using System.Net.Sockets;

namespace Duck.Tests.Shared;

/// <summary>Starts `azurite-blob` on a free port; <see cref="ConnectionString"/> points at it.</summary>
public sealed class AzuriteFixture : IAsyncLifetime
{
    const string AccountKey = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";
    static readonly TimeSpan StartTimeout = TimeSpan.FromSeconds(30);

    Process? process;
    string? dataFolder;
    readonly System.Text.StringBuilder output = new();

    /// <summary>The port the blob service listens on (127.0.0.1).</summary>
    public int Port { get; private set; }

    /// <summary>The well-known devstoreaccount1 connection string for this instance.</summary>
    public string ConnectionString =>
        $"DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={AccountKey};BlobEndpoint=http://127.0.0.1:{Port}/devstoreaccount1;";

    /// <summary>A container name unique to this call, valid for Azure (lowercase, 3-63 chars).</summary>
    public static string NewContainerName(string hint) =>
        $"t{new string(hint.ToLowerInvariant().Where(char.IsAsciiLetterOrDigit).Take(20).ToArray())}-{Guid.NewGuid():N}";

    public async Task InitializeAsync()
    {
        string azurite = FindAzurite();
        Port = FreePort();
        dataFolder = Directory.CreateTempSubdirectory("duck-azurite-").FullName;
        var start = new ProcessStartInfo(azurite)
        {
            UseShellExecute = false,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        foreach (string arg in new[] { "--blobHost", "127.0.0.1", "--blobPort", Port.ToString(), "--location", dataFolder,
                     "--skipApiVersionCheck", "--loose", "--silent" })
            start.ArgumentList.Add(arg);
        process = Process.Start(start) ?? throw new InvalidOperationException($"could not start {azurite}");
        process.OutputDataReceived += (_, e) => { lock (output) output.AppendLine(e.Data); };
        process.ErrorDataReceived += (_, e) => { lock (output) output.AppendLine(e.Data); };
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        await WaitUntilListeningAsync();
    }

    public Task DisposeAsync()
    {
        if (process is { HasExited: false })
        {
            process.Kill(entireProcessTree: true);
            process.WaitForExit(5000);
        }
        process?.Dispose();
        if (dataFolder is not null)
        {
            try { Directory.Delete(dataFolder, recursive: true); } catch (IOException) { }
        }
        return Task.CompletedTask;
    }

    async Task WaitUntilListeningAsync()
    {
        var deadline = DateTime.UtcNow + StartTimeout;
        while (DateTime.UtcNow < deadline)
        {
            if (process!.HasExited)
                throw new InvalidOperationException($"azurite-blob exited with code {process.ExitCode} before listening on port {Port}: {Output()}");
            try
            {
                using var client = new TcpClient();
                await client.ConnectAsync(IPAddress.Loopback, Port);
                return;
            }
            catch (SocketException) { await Task.Delay(100); }
        }
        throw new TimeoutException($"azurite-blob did not listen on 127.0.0.1:{Port} within {StartTimeout.TotalSeconds} s: {Output()}");
    }

    string Output() { lock (output) return output.ToString().Trim(); }

    static int FreePort()
    {
        var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        int port = ((IPEndPoint)listener.LocalEndpoint).Port;
        listener.Stop();
        return port;
    }

    /// <summary>tools/node/node_modules/.bin/azurite-blob in the first ancestor folder of the test binaries that has tools/node.</summary>
    static string FindAzurite()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            string toolsNode = Path.Combine(dir.FullName, "tools", "node");
            if (!Directory.Exists(toolsNode)) continue;
            string bin = Path.Combine(toolsNode, "node_modules", ".bin", "azurite-blob");
            if (File.Exists(bin)) return bin;
            throw new InvalidOperationException($"Azurite is not installed: {bin} is missing. Run `npm ci --prefix {toolsNode}` (needs Node 20+ and npm).");
        }
        throw new InvalidOperationException($"no tools/node folder above {AppContext.BaseDirectory}; run the tests from the Duck repository and `npm ci --prefix tools/node` first");
    }
}

/// <summary>Test classes marked [Collection(AzuriteCollection.Name)] share one Azurite process.</summary>
[CollectionDefinition(Name)]
public sealed class AzuriteCollection : ICollectionFixture<AzuriteFixture>
{
    public const string Name = "Azurite";
}
