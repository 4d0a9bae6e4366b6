// Connecting the CLI to a Duck cluster through one gateway (static clustering), with a bounded wait and a one-line
// error when the gateway cannot be reached; and finding the silo host binary for `duck cluster up`.
using System.Net;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Orleans.Configuration;

namespace Duck.Coordinator;

/// <summary>An Orleans client connected to a gateway; dispose to disconnect.</summary>
sealed class ClusterConnection(IHost host) : IAsyncDisposable
{
    static readonly TimeSpan ConnectTimeout = TimeSpan.FromSeconds(15);

    public IClusterClient Client { get; } = host.Services.GetRequiredService<IClusterClient>();

    public static async Task<ClusterConnection> ConnectAsync(string gateway, CancellationToken ct)
    {
        var endpoint = await ParseAsync(gateway, ct);
        var builder = Host.CreateApplicationBuilder();
        builder.Logging.ClearProviders();
        builder.UseOrleansClient(client =>
        {
            client.UseStaticClustering(endpoint);
            // The silos' defaults, or what a deployment sets for both (deploy/k8s, docker-compose.yml).
            client.Configure<ClusterOptions>(o =>
            {
                o.ClusterId = Environment.GetEnvironmentVariable("ORLEANS_CLUSTER_ID") is { Length: > 0 } cluster ? cluster : "duck";
                o.ServiceId = Environment.GetEnvironmentVariable("ORLEANS_SERVICE_ID") is { Length: > 0 } service ? service : "duck";
            });
        });
        var host = builder.Build();
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(ct);
        timeout.CancelAfter(ConnectTimeout);
        try { await host.StartAsync(timeout.Token); }
        catch (Exception e) when (e is not OperationCanceledException || !ct.IsCancellationRequested)
        {
            host.Dispose();
            throw new UserErrorException($"cannot reach a Duck silo gateway at {gateway} ({e.GetType().Name}: {e.Message}); start one with `duck cluster up` or pass --gateway HOST:PORT");
        }
        return new ClusterConnection(host);
    }

    static async Task<IPEndPoint> ParseAsync(string gateway, CancellationToken ct)
    {
        int colon = gateway.LastIndexOf(':');
        if (colon <= 0 || !int.TryParse(gateway.AsSpan(colon + 1), out int port) || port is < 1 or > 65535)
            throw new UserErrorException($"--gateway must be HOST:PORT, got '{gateway}'");
        string name = gateway[..colon];
        if (IPAddress.TryParse(name, out var ip)) return new IPEndPoint(ip, port);
        try { return new IPEndPoint((await Dns.GetHostAddressesAsync(name, ct)).First(a => a.AddressFamily == System.Net.Sockets.AddressFamily.InterNetwork), port); }
        catch (Exception e) when (e is System.Net.Sockets.SocketException or InvalidOperationException)
        {
            throw new UserErrorException($"cannot resolve gateway host '{name}': {e.Message}");
        }
    }

    public async ValueTask DisposeAsync()
    {
        try { await host.StopAsync(TimeSpan.FromSeconds(5)); } catch (Exception) { /* the cluster may be gone */ }
        host.Dispose();
    }

    /// <summary>Duck.Silo.dll: $DUCK_SILO_DLL, else src/Silo/bin/{Release,Debug}/net10.0 above the running tool.</summary>
    public static string FindSiloDll()
    {
        if (Environment.GetEnvironmentVariable("DUCK_SILO_DLL") is { Length: > 0 } env)
            return File.Exists(env) ? env : throw new UserErrorException($"DUCK_SILO_DLL points at '{env}', which does not exist");
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            foreach (string config in new[] { "Release", "Debug" })
            {
                string candidate = Path.Combine(dir.FullName, "src", "Silo", "bin", config, "net10.0", "Duck.Silo.dll");
                if (File.Exists(candidate)) return candidate;
            }
        throw new UserErrorException("cannot find Duck.Silo.dll; build it with `dotnet build src/Silo` or set DUCK_SILO_DLL");
    }
}
