// A real silo host for the tests, wired exactly as src/Silo/Program.cs: one Orleans silo and Kestrel on loopback
// (free ports), a tiny random model "tiny" (context 64) in a temp models folder, an API key, a small request
// size limit, and the Duck meter on /metrics. Shared by the tests of a class through IClassFixture. LongReplyChatServer serves the same tiny model
// with a long context, for replies that run long enough to be cut short.
using System.Net;
using System.Net.Sockets;
using Duck.Inference.Tests;
using Duck.Silo;
using Duck.Silo.ChatApi;
using Microsoft.Extensions.DependencyInjection;
using OpenTelemetry.Metrics;

namespace Duck.Silo.Tests;

public class ChatServer : IAsyncLifetime
{
    public const string Key = "test-key-0123";
    public const string Model = "tiny";
    public const int MaxRequestBytes = 4096;

    public string ModelsFolder { get; } = Directory.CreateTempSubdirectory("duck-silo-models-").FullName;
    readonly string stateFolder = Directory.CreateTempSubdirectory("duck-silo-state-").FullName;
    public Uri BaseUrl { get; private set; } = null!;
    public WebApplication App { get; private set; } = null!;
    public string ModelPath => Path.Combine(ModelsFolder, Model + ".gguf");
    public int GatewayPort { get; private set; }
    public string ClusterId { get; } = $"test-{Guid.NewGuid():N}";

    /// <summary>The served model's shape.</summary>
    protected virtual Duck.Core.Model.ModelConfig ModelConfig => TestModels.Tiny();
    /// <summary>Settings added after the defaults (later ones win).</summary>
    protected virtual string[] ExtraArgs => [];

    static int FreePort()
    {
        using var l = new TcpListener(IPAddress.Loopback, 0);
        l.Start();
        return ((IPEndPoint)l.LocalEndpoint).Port;
    }

    public async Task InitializeAsync()
    {
        File.Move(TestModels.WriteGguf(ModelConfig, seed: 5), ModelPath);
        int http = FreePort(), silo = FreePort(), gateway = GatewayPort = FreePort();
        string[] args =
        [
            $"--Duck:Silo:SiloPort={silo}", $"--Duck:Silo:PrimarySiloPort={silo}", $"--Duck:Silo:GatewayPort={gateway}", $"--Duck:Silo:HttpPort={http}",
            $"--Duck:Silo:ClusterId={ClusterId}", $"--Duck:Silo:StateStore={stateFolder}",
            $"--Duck:Chat:Models={ModelsFolder}", "--Duck:Chat:Threads=1", $"--Duck:Chat:ApiKeys:0={Key}", "--Duck:Chat:DefaultMaxTokens=8",
            $"--Duck:Chat:MaxRequestBytes={MaxRequestBytes}", .. ExtraArgs,
        ];
        var builder = WebApplication.CreateBuilder(args);
        builder.Logging.ClearProviders();
        builder.AddDuckSilo();
        builder.AddDuckChat();
        builder.Services.AddOpenTelemetry().WithMetrics(m => m.AddMeter(Duck.Grains.DuckMetrics.MeterName).AddPrometheusExporter());
        App = builder.Build();
        App.MapDuckHealth();
        App.MapDuckChatApi();
        App.MapPrometheusScrapingEndpoint("/metrics");
        await App.StartAsync();
        BaseUrl = new Uri($"http://127.0.0.1:{http}/");
    }

    public async Task DisposeAsync()
    {
        await App.StopAsync();
        await App.DisposeAsync();
        Directory.Delete(ModelsFolder, recursive: true); // the silo has let go of the model and its state by now
        Directory.Delete(stateFolder, recursive: true);
    }

    /// <summary>An HttpClient on the server, with the key unless told otherwise.</summary>
    public HttpClient Http(string? key = Key)
    {
        var client = new HttpClient { BaseAddress = BaseUrl };
        if (key is not null) client.DefaultRequestHeaders.Authorization = new("Bearer", key);
        return client;
    }
}

/// <summary>
/// The tiny model with a context of <see cref="ContextLength"/> tokens and max_tokens up to half of it: a reply of
/// <see cref="MaxTokens"/> tokens has no end-of-text to stop it early (random weights) and takes seconds.
/// </summary>
public sealed class LongReplyChatServer : ChatServer
{
    public const int ContextLength = 8192;
    public const int MaxTokens = ContextLength / 2;

    protected override Duck.Core.Model.ModelConfig ModelConfig => TestModels.Tiny() with { ContextLength = ContextLength };
    protected override string[] ExtraArgs => [$"--Duck:Chat:MaxTokensLimit={MaxTokens}"];

    Duck.Inference.Engine.ContinuousBatcher? Batcher => App.Services.GetRequiredService<Duck.Grains.Chat.ChatModelHost>().Loaded.SingleOrDefault()?.Batcher;
    /// <summary>Tokens the model's batcher has decoded (0 before the model is loaded by the first request).</summary>
    public long DecodedTokens => Batcher?.DecodedTokens ?? 0;
    /// <summary>Generations the model's batcher is running or has queued.</summary>
    public int ActiveGenerations => Batcher?.ActiveGenerations ?? 0;
}
