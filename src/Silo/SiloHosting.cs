// Wiring of the silo host: options from "Duck:Silo" (unknown keys are an error), Orleans clustering (localhost
// with a primary silo, or Azure Table storage, which Azurite also serves), the training grains, and the health
// endpoints. Several silos run on one machine by giving each its own ports. Not the grains: see src/Grains.
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
    /// <summary>HTTP port of the health endpoints.</summary>
    public int HttpPort { get; init; } = 8080;
    /// <summary>Cluster id; silos with the same id form one cluster.</summary>
    public string ClusterId { get; init; } = "duck";
    /// <summary>Azure Storage connection string for "azure" clustering (default: DUCK_STORAGE_CONNECTION_STRING).</summary>
    public string? ConnectionString { get; init; }
    /// <summary>Grain state location: folder path or "azure:container[/prefix]".</summary>
    public string StateStore { get; init; } = Path.Combine("runs", "cluster", "state");
    /// <summary>libtorch threads (0: all cores); give cores / silos-per-machine when several silos share a machine.</summary>
    public int TorchThreads { get; init; }
}

public static class SiloHosting
{
    public const string Section = "Duck:Silo";

    public static WebApplicationBuilder AddDuckSilo(this WebApplicationBuilder builder)
    {
        var section = builder.Configuration.GetSection(Section);
        var known = typeof(SiloHostOptions).GetProperties().Select(p => p.Name).ToHashSet(StringComparer.OrdinalIgnoreCase);
        foreach (var child in section.GetChildren())
            if (!known.Contains(child.Key)) throw new ArgumentException($"unknown configuration key {Section}:{child.Key}; known keys: {string.Join(", ", known)}");
        var o = section.Get<SiloHostOptions>() ?? new SiloHostOptions();
        builder.WebHost.UseUrls($"http://127.0.0.1:{o.HttpPort}");
        builder.UseOrleans(silo =>
        {
            if (o.Clustering.Equals("azure", StringComparison.OrdinalIgnoreCase))
            {
                string cs = o.ConnectionString ?? Environment.GetEnvironmentVariable(Duck.Core.Checkpoints.CheckpointStores.ConnectionStringVariable)
                    ?? throw new ArgumentException($"azure clustering needs {Section}:ConnectionString or {Duck.Core.Checkpoints.CheckpointStores.ConnectionStringVariable}");
                silo.UseAzureStorageClustering(t => t.TableServiceClient = new Azure.Data.Tables.TableServiceClient(cs));
                silo.ConfigureEndpoints(IPAddress.Loopback, o.SiloPort, o.GatewayPort);
            }
            else if (o.Clustering.Equals("localhost", StringComparison.OrdinalIgnoreCase))
                silo.UseLocalhostClustering(o.SiloPort, o.GatewayPort, new IPEndPoint(IPAddress.Loopback, o.PrimarySiloPort), "duck", o.ClusterId);
            else throw new ArgumentException($"{Section}:Clustering must be 'localhost' or 'azure', got '{o.Clustering}'");
            silo.Configure<ClusterOptions>(c => { c.ClusterId = o.ClusterId; c.ServiceId = "duck"; });
            silo.Configure<ClusterMembershipOptions>(m =>
            {
                // Training steps are short; declare a dead silo within seconds so that its grains move on.
                m.ProbeTimeout = TimeSpan.FromSeconds(2);
                m.NumMissedProbesLimit = 2;
                m.NumVotesForDeathDeclaration = 1;
            });
            silo.AddDuckTraining(new DuckSiloOptions { StateStore = o.StateStore, TorchThreads = o.TorchThreads });
        });
        return builder;
    }

    public static WebApplication MapDuckHealth(this WebApplication app)
    {
        var lifetime = app.Services.GetRequiredService<IHostApplicationLifetime>();
        app.MapGet("/health/live", () => Results.Ok("live"));
        app.MapGet("/health/ready", () => lifetime.ApplicationStarted.IsCancellationRequested ? Results.Ok("ready") : Results.StatusCode(503));
        return app;
    }
}
