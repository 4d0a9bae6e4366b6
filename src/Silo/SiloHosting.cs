// Wiring of the silo host: options from "Duck:Silo" (unknown keys and wrong values are errors naming the key),
// Orleans clustering (localhost with a primary silo, or Azure Table storage, which Azurite also serves) with the
// advertised address, the grains of the silo's role, and the health endpoints. Several silos run on one machine by
// giving each its own ports. Operations (lifecycle, metrics, dashboard, training page) live in Operations/.
using System.Net;
using Duck.Grains;
using Orleans.Configuration;

namespace Duck.Silo;

/// <summary>How this silo runs; bound from the "Duck:Silo" configuration section.</summary>
public sealed record SiloHostOptions
{
    /// <summary>"localhost" (the first silo's port is the primary) or "azure" (Azure Table clustering).</summary>
    public string Clustering { get; init; } = "localhost";
    /// <summary>Silo-to-silo port.</summary>
    public int SiloPort { get; init; } = 11111;
    /// <summary>Client gateway port.</summary>
    public int GatewayPort { get; init; } = 30000;
    /// <summary>Silo port of the primary silo (localhost clustering).</summary>
    public int PrimarySiloPort { get; init; } = 11111;
    /// <summary>HTTP port of the health, metrics, dashboard and training-page endpoints.</summary>
    public int HttpPort { get; init; } = 8080;
    /// <summary>IP address the HTTP endpoints listen on: loopback, or 0.0.0.0 in a container (the dashboard then needs a password).</summary>
    public string HttpHost { get; init; } = "127.0.0.1";
    /// <summary>IP or host name other silos and clients reach this silo at (azure clustering; default: $POD_IP, else 127.0.0.1).</summary>
    public string? AdvertisedAddress { get; init; }
    /// <summary>Which grains this silo hosts: "training", "inference" or "both".</summary>
    public string Role { get; init; } = "both";
    /// <summary>Silo name in the membership table (default: $POD_NAME, else generated).</summary>
    public string? SiloName { get; init; }
    /// <summary>Cluster id; silos with the same id form one cluster (default: $ORLEANS_CLUSTER_ID, else "duck").</summary>
    public string ClusterId { get; init; } = "duck";
    /// <summary>Service id, stable across deployments of the same service (default: $ORLEANS_SERVICE_ID, else "duck").</summary>
    public string ServiceId { get; init; } = "duck";
    /// <summary>Azure Storage connection string for "azure" clustering (default: DUCK_STORAGE_CONNECTION_STRING).</summary>
    public string? ConnectionString { get; init; }
    /// <summary>Grain state location: folder path or "azure:container[/prefix]".</summary>
    public string StateStore { get; init; } = Path.Combine("runs", "cluster", "state");
    /// <summary>libtorch threads (0: all cores); give cores / silos-per-machine when several silos share a machine.</summary>
    public int TorchThreads { get; init; }
    /// <summary>Longest graceful shutdown in seconds (keep it below Kubernetes' terminationGracePeriodSeconds).</summary>
    public int ShutdownTimeoutSeconds { get; init; } = 30;
    /// <summary>Seconds between SIGTERM and leaving the cluster, with /health/ready already false (lets load balancers drain).</summary>
    public int DrainDelaySeconds { get; init; }
}

public static class SiloHosting
{
    public const string Section = "Duck:Silo";

    public static WebApplicationBuilder AddDuckSilo(this WebApplicationBuilder builder)
    {
        var o = builder.Configuration.BindSection<SiloHostOptions>(Section).WithEnvironment(builder.Configuration);
        DuckConfiguration.ThrowIfAny(o.Problems());
        var role = Enum.Parse<SiloRole>(o.Role, ignoreCase: true);
        builder.WebHost.UseUrls(o.HttpUrl());
        builder.AddDuckLifecycle(o);
        builder.UseOrleans(silo =>
        {
            if (o.IsAzureClustering())
            {
                silo.UseAzureStorageClustering(t => t.TableServiceClient = new Azure.Data.Tables.TableServiceClient(o.ConnectionString));
                var advertised = o.ResolveAdvertisedAddress();
                silo.ConfigureEndpoints(advertised, o.SiloPort, o.GatewayPort, listenOnAnyHostAddress: !IPAddress.IsLoopback(advertised));
            }
            else
                silo.UseLocalhostClustering(o.SiloPort, o.GatewayPort, new IPEndPoint(IPAddress.Loopback, o.PrimarySiloPort), o.ServiceId, o.ClusterId);
            silo.Configure<ClusterOptions>(c => { c.ClusterId = o.ClusterId; c.ServiceId = o.ServiceId; });
            if (o.SiloName is { } name) silo.Configure<SiloOptions>(s => s.SiloName = name);
            silo.Configure<ClusterMembershipOptions>(m =>
            {
                // Training steps are short; declare a dead silo within seconds so that its grains move on.
                m.ProbeTimeout = TimeSpan.FromSeconds(2);
                m.NumMissedProbesLimit = 2;
                m.NumVotesForDeathDeclaration = 1;
            });
            silo.AddDuckRole(role, new DuckSiloOptions { StateStore = o.StateStore, TorchThreads = o.TorchThreads });
        });
        return builder;
    }

    /// <summary>True for Azure Table clustering.</summary>
    public static bool IsAzureClustering(this SiloHostOptions o) => o.Clustering.Equals("azure", StringComparison.OrdinalIgnoreCase);

    public static WebApplication MapDuckHealth(this WebApplication app)
    {
        var readiness = app.Services.GetRequiredService<SiloReadiness>();
        app.MapGet("/health/live", () => Results.Ok("live"));
        app.MapGet("/health/ready", () => readiness.IsReady ? Results.Ok("ready") : Results.Text("not ready", statusCode: 503));
        return app;
    }
}
