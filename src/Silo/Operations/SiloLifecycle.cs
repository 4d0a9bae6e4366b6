// The silo's life as operators and probes see it: storage checked before anything starts (an unreachable store
// ends the process with one line instead of a silo that retries forever behind a healthy /health/live), readiness
// that is true only while the silo is Active and not shutting down, a drain delay during which /health/ready is
// already false but the silo still serves, and a shutdown bounded by Duck:Silo:ShutdownTimeoutSeconds.
using Azure.Core;
using Azure.Data.Tables;
using Azure.Storage.Blobs;
using Orleans.Runtime;

namespace Duck.Silo;

/// <summary>Whether this silo should receive traffic.</summary>
public sealed class SiloReadiness(IHostApplicationLifetime lifetime, ISiloStatusOracle oracle)
{
    public bool IsReady => lifetime.ApplicationStarted.IsCancellationRequested && !lifetime.ApplicationStopping.IsCancellationRequested
                           && oracle.CurrentStatus == SiloStatus.Active;
}

public static partial class SiloLifecycle
{
    /// <summary>Readiness, the shutdown timeout and the storage check; call before UseOrleans so the check runs first.</summary>
    public static WebApplicationBuilder AddDuckLifecycle(this WebApplicationBuilder builder, SiloHostOptions options)
    {
        builder.Services.AddSingleton(options);
        builder.Services.AddSingleton<SiloReadiness>();
        builder.Services.Configure<HostOptions>(h => h.ShutdownTimeout = TimeSpan.FromSeconds(options.ShutdownTimeoutSeconds));
        builder.Services.AddHostedService<StoragePreflight>();
        builder.Services.AddHostedService<DrainDelay>();
        return builder;
    }

    sealed partial class StoragePreflight(SiloHostOptions o, ILogger<StoragePreflight> logger) : IHostedLifecycleService
    {
        public async Task StartingAsync(CancellationToken ct)
        {
            LogEffective(logger, o.Clustering, o.Role, o.AdvertisedAddress ?? "127.0.0.1", o.HttpUrl(), o.SiloPort, o.GatewayPort, o.ClusterId, o.ServiceId,
                o.StateStore, o.SiloName ?? "(generated)", Environment.GetEnvironmentVariable(SiloEnvironment.PodNamespace) ?? "(none)");
            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(ct);
            timeout.CancelAfter(TimeSpan.FromSeconds(20));
            var clientOptions = (Retry: 1, Timeout: TimeSpan.FromSeconds(5));
            if (o.IsAzureClustering())
                await CheckAsync("Azure Table storage (Duck:Silo:Clustering=azure)", async () =>
                {
                    var tableOptions = new TableClientOptions { Retry = { MaxRetries = clientOptions.Retry, NetworkTimeout = clientOptions.Timeout } };
                    await foreach (var _ in new TableServiceClient(o.ConnectionString, tableOptions).QueryAsync(maxPerPage: 1, cancellationToken: timeout.Token)) break;
                });
            if (o.StateStore.StartsWith("azure:", StringComparison.OrdinalIgnoreCase))
                await CheckAsync($"Azure Blob storage (Duck:Silo:StateStore={o.StateStore})", async () =>
                {
                    var blobOptions = new BlobClientOptions { Retry = { MaxRetries = clientOptions.Retry, NetworkTimeout = clientOptions.Timeout } };
                    await foreach (var _ in new BlobServiceClient(o.ConnectionString, blobOptions).GetBlobContainersAsync(cancellationToken: timeout.Token).AsPages(pageSizeHint: 1)) break;
                });
            else
                await CheckAsync($"the grain state folder (Duck:Silo:StateStore={o.StateStore})", () => { Directory.CreateDirectory(o.StateStore); return Task.CompletedTask; });
        }

        static async Task CheckAsync(string what, Func<Task> probe)
        {
            try { await probe(); }
            catch (Exception e) when (e is not SiloConfigurationException)
            {
                string reason = e is OperationCanceledException ? "no answer within 20 s" : e.Message.Split('\n')[0].Trim();
                throw new SiloConfigurationException($"cannot reach {what}: {reason}");
            }
        }

        public Task StartAsync(CancellationToken ct) => Task.CompletedTask;
        public Task StartedAsync(CancellationToken ct) => Task.CompletedTask;
        public Task StopAsync(CancellationToken ct) => Task.CompletedTask;
        public Task StoppingAsync(CancellationToken ct) => Task.CompletedTask;
        public Task StoppedAsync(CancellationToken ct) => Task.CompletedTask;

        [LoggerMessage(1, LogLevel.Information, "duck silo: clustering {Clustering}, role {Role}, advertised {Advertised}, http {Http}, silo port {SiloPort}, " +
            "gateway {GatewayPort}, cluster {ClusterId}/{ServiceId}, state {StateStore}, name {SiloName}, namespace {Namespace}")]
        static partial void LogEffective(ILogger logger, string clustering, string role, string advertised, string http, int siloPort, int gatewayPort,
            string clusterId, string serviceId, string stateStore, string siloName, string @namespace);
    }

    /// <summary>Waits in StoppingAsync, which runs before any hosted service (Kestrel, the silo) stops.</summary>
    sealed partial class DrainDelay(SiloHostOptions o, ILogger<DrainDelay> logger) : IHostedLifecycleService
    {
        public Task StartingAsync(CancellationToken ct) => Task.CompletedTask;
        public Task StartAsync(CancellationToken ct) => Task.CompletedTask;
        public Task StartedAsync(CancellationToken ct) => Task.CompletedTask;
        public Task StopAsync(CancellationToken ct) => Task.CompletedTask;
        public Task StoppedAsync(CancellationToken ct) => Task.CompletedTask;

        public async Task StoppingAsync(CancellationToken ct)
        {
            if (o.DrainDelaySeconds <= 0) return;
            LogDraining(logger, o.DrainDelaySeconds);
            try { await Task.Delay(TimeSpan.FromSeconds(o.DrainDelaySeconds), ct); }
            catch (OperationCanceledException) { }
        }

        [LoggerMessage(2, LogLevel.Information, "shutting down: /health/ready is false; the silo leaves the cluster in {Seconds} s")]
        static partial void LogDraining(ILogger logger, int seconds);
    }
}
