// An xunit fixture that runs a real Azurite (from tools/node/node_modules) on free local ports for the tests of one
// collection, then stops it and deletes its data: the blob service, or with tables the blob and table services (the
// silo's Azure clustering). Shared by test projects via <Compile Include="../Shared/*.cs" />. Not a mock: when Azurite
// is missing the tests fail, they are never skipped.
using System.Diagnostics;
using System.Net;
using System.Net.Sockets;

namespace Duck.Tests.Shared;

/// <summary>Starts `azurite-blob` (or `azurite` with tables) on free ports; <see cref="ConnectionString"/> points at it.</summary>
public sealed class AzuriteFixture : IAsyncLifetime
{
    const string AccountKey = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";
    static readonly TimeSpan StartTimeout = TimeSpan.FromSeconds(30);
    /// <summary>Starts tried before giving up: a free port can be taken by another process before Azurite binds it.</summary>
    const int Attempts = 3;

    Process? process;
    string? dataFolder;
    readonly System.Text.StringBuilder output = new();

    readonly bool tables;

    /// <summary>The blob service only (what a collection fixture gets: xunit wants one public constructor).</summary>
    public AzuriteFixture() { }

    /// <summary>With <paramref name="tables"/>, the table service too (a test that starts it itself).</summary>
    internal AzuriteFixture(bool tables) => this.tables = tables;

    /// <summary>The port the blob service listens on (127.0.0.1).</summary>
    public int Port { get; private set; }

    /// <summary>The port of the table service (127.0.0.1), or 0 without tables.</summary>
    public int TablePort { get; private set; }

    /// <summary>The well-known devstoreaccount1 connection string for this instance.</summary>
    public string ConnectionString =>
        $"DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={AccountKey};BlobEndpoint=http://127.0.0.1:{Port}/devstoreaccount1;" +
        (tables ? $"TableEndpoint=http://127.0.0.1:{TablePort}/devstoreaccount1;" : "");

    /// <summary>A container name unique to this call, valid for Azure (lowercase, 3-63 chars).</summary>
    public static string NewContainerName(string hint) =>
        $"t{new string(hint.ToLowerInvariant().Where(char.IsAsciiLetterOrDigit).Take(20).ToArray())}-{Guid.NewGuid():N}";

    public async Task InitializeAsync()
    {
        string azurite = FindAzurite(tables ? "azurite" : "azurite-blob");
        for (int attempt = 1; ; attempt++)
        {
            Port = FreePort();
            TablePort = tables ? FreePort() : 0;
            dataFolder = Directory.CreateTempSubdirectory("duck-azurite-").FullName;
            var start = new ProcessStartInfo(azurite)
            {
                UseShellExecute = false,
                RedirectStandardOutput = true,
                RedirectStandardError = true,
            };
            string[] services = tables
                ? ["--blobHost", "127.0.0.1", "--blobPort", Port.ToString(), "--tableHost", "127.0.0.1", "--tablePort", TablePort.ToString(),
                   "--queueHost", "127.0.0.1", "--queuePort", FreePort().ToString()]
                : ["--blobHost", "127.0.0.1", "--blobPort", Port.ToString()];
            foreach (string arg in services.Concat(["--location", dataFolder, "--skipApiVersionCheck", "--loose", "--silent"]))
                start.ArgumentList.Add(arg);
            lock (output) output.Clear();
            process = Process.Start(start) ?? throw new InvalidOperationException($"could not start {azurite}");
            process.OutputDataReceived += (_, e) => { lock (output) output.AppendLine(e.Data); };
            process.ErrorDataReceived += (_, e) => { lock (output) output.AppendLine(e.Data); };
            process.BeginOutputReadLine();
            process.BeginErrorReadLine();
            if (await WaitUntilListeningAsync()) return;
            // It exited before listening, most likely because another process took one of its ports meanwhile.
            string why = $"{Path.GetFileName(azurite)} exited with code {process.ExitCode} before listening on port {Port}" +
                         (tables ? $" and {TablePort}" : "") + $": {Output()}";
            await DisposeAsync();
            if (attempt == Attempts) throw new InvalidOperationException($"{why} ({Attempts} attempts)");
        }
    }

    public Task DisposeAsync()
    {
        if (process is { HasExited: false })
        {
            process.Kill(entireProcessTree: true);
            process.WaitForExit(5000);
        }
        process?.Dispose();
        process = null;
        if (dataFolder is not null)
        {
            try { Directory.Delete(dataFolder, recursive: true); } catch (IOException) { }
        }
        dataFolder = null;
        return Task.CompletedTask;
    }

    /// <summary>True once every service accepts connections, false when the process exits first.</summary>
    async Task<bool> WaitUntilListeningAsync()
    {
        var deadline = DateTime.UtcNow + StartTimeout;
        while (DateTime.UtcNow < deadline)
        {
            if (process!.HasExited) return false;
            try
            {
                foreach (int port in tables ? new[] { Port, TablePort } : [Port])
                {
                    using var client = new TcpClient();
                    await client.ConnectAsync(IPAddress.Loopback, port);
                }
                return true;
            }
            catch (SocketException) { await Task.Delay(100); }
        }
        throw new TimeoutException($"azurite did not listen on 127.0.0.1:{Port} within {StartTimeout.TotalSeconds} s: {Output()}");
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

    /// <summary>tools/node/node_modules/.bin/<paramref name="name"/> in the first ancestor folder of the test binaries that has tools/node.</summary>
    static string FindAzurite(string name)
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            string toolsNode = Path.Combine(dir.FullName, "tools", "node");
            if (!Directory.Exists(toolsNode)) continue;
            string bin = Path.Combine(toolsNode, "node_modules", ".bin", name);
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
