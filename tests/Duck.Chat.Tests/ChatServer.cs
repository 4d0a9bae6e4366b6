// A real silo host for the tests, wired exactly as src/Silo/Program.cs: one Orleans silo and Kestrel on loopback
// (free ports), a tiny random model "tiny" (context 64) in a temp models folder, an API key, and a small request
// size limit. Shared by the tests of a class through IClassFixture.
using System.Net;
using System.Net.Sockets;
using Duck.Inference.Tests;
using Duck.Silo;
using Duck.Silo.ChatApi;

namespace Duck.Silo.Tests;

public sealed class ChatServer : IAsyncLifetime
{
    public const string Key = "test-key-0123";
    public const string Model = "tiny";
    public const int MaxRequestBytes = 4096;

    public string ModelsFolder { get; } = Directory.CreateTempSubdirectory("duck-silo-models-").FullName;
    public Uri BaseUrl { get; private set; } = null!;
    public WebApplication App { get; private set; } = null!;
    public string ModelPath => Path.Combine(ModelsFolder, Model + ".gguf");
    public int GatewayPort { get; private set; }
    public string ClusterId { get; } = $"test-{Guid.NewGuid():N}";

    static int FreePort()
    {
        using var l = new TcpListener(IPAddress.Loopback, 0);
        l.Start();
        return ((IPEndPoint)l.LocalEndpoint).Port;
    }

    public async Task InitializeAsync()
    {
        File.Move(TestModels.WriteGguf(TestModels.Tiny(), seed: 5), ModelPath);
        int http = FreePort(), silo = FreePort(), gateway = GatewayPort = FreePort();
        string[] args =
        [
            $"--Duck:Silo:SiloPort={silo}", $"--Duck:Silo:PrimarySiloPort={silo}", $"--Duck:Silo:GatewayPort={gateway}", $"--Duck:Silo:HttpPort={http}",
            $"--Duck:Silo:ClusterId={ClusterId}", $"--Duck:Silo:StateStore={Directory.CreateTempSubdirectory("duck-silo-state-").FullName}",
            $"--Duck:Chat:Models={ModelsFolder}", "--Duck:Chat:Threads=1", $"--Duck:Chat:ApiKeys:0={Key}", "--Duck:Chat:DefaultMaxTokens=8",
            $"--Duck:Chat:MaxRequestBytes={MaxRequestBytes}",
        ];
        var builder = WebApplication.CreateBuilder(args);
        builder.Logging.ClearProviders();
        builder.AddDuckSilo();
        builder.AddDuckChat();
        App = builder.Build();
        App.MapDuckHealth();
        App.MapDuckChatApi();
        await App.StartAsync();
        BaseUrl = new Uri($"http://127.0.0.1:{http}/");
    }

    public async Task DisposeAsync()
    {
        await App.StopAsync();
        await App.DisposeAsync();
    }

    /// <summary>An HttpClient on the server, with the key unless told otherwise.</summary>
    public HttpClient Http(string? key = Key)
    {
        var client = new HttpClient { BaseAddress = BaseUrl };
        if (key is not null) client.DefaultRequestHeaders.Authorization = new("Bearer", key);
        return client;
    }
}
