// Wires the training grains into a silo: worker placement, the "duck" grain storage over a checkpoint store,
// libtorch's thread count and the job keeper. Hosts call AddDuckTraining; everything else (clustering, ports) is the
// host's business.
using Duck.Core.Checkpoints;
using Microsoft.Extensions.DependencyInjection;
using Orleans.Hosting;
using Orleans.Runtime.Hosting;
using Orleans.Serialization;

namespace Duck.Grains;

/// <summary>What a silo needs to run training jobs.</summary>
public sealed record DuckSiloOptions
{
    /// <summary>Where grain state goes: a folder path or "azure:container[/prefix]".</summary>
    public string StateStore { get; init; } = Path.Combine("runs", "cluster", "state");
    /// <summary>libtorch intra-op threads for this process (0: leave libtorch's default, all cores).</summary>
    public int TorchThreads { get; init; }
    /// <summary>How often this silo pokes the running jobs, re-activating one whose silo died (zero: never).</summary>
    public TimeSpan JobKeeperPeriod { get; init; } = TimeSpan.FromSeconds(30);
}

public static class SiloBuilderExtensions
{
    public static ISiloBuilder AddDuckTraining(this ISiloBuilder silo, DuckSiloOptions options)
    {
        if (options.TorchThreads > 0) TorchSharp.torch.set_num_threads(options.TorchThreads);
        silo.AddPlacementDirector<SpreadWorkersPlacementStrategy, SpreadWorkersPlacementDirector>();
        silo.Services.AddSingleton(options);
        silo.Services.AddHostedService<JobKeeper>();
        silo.Services.AddGrainStorage(DuckStorage.Name, (sp, _) =>
            new CheckpointStoreGrainStorage(CheckpointStores.Open(options.StateStore), sp.GetRequiredService<Serializer>()));
        return silo;
    }
}
