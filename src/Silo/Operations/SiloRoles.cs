// Silo roles: which of Duck's grains a silo hosts. A "training" silo hosts the job, parameter server and workers
// and none of Duck's other grains (chat); an "inference" silo hosts everything but the training grains, so chat
// silos carry no training load and never load libtorch; "both" hosts everything. Orleans places a grain only on
// silos that host its class, so a deployment keeps the two apart with configuration alone.
using Duck.Grains;
using Orleans.Configuration;

namespace Duck.Silo;

/// <summary>What a silo is for (Duck:Silo:Role).</summary>
public enum SiloRole
{
    /// <summary>Training and inference grains.</summary>
    Both = 0,
    /// <summary>Training grains only (job, parameter server, workers).</summary>
    Training = 1,
    /// <summary>Every Duck grain except the training ones.</summary>
    Inference = 2,
}

public static class SiloRoles
{
    /// <summary>The grain classes of training jobs.</summary>
    public static readonly IReadOnlySet<Type> TrainingGrains = new HashSet<Type> { typeof(TrainingJobGrain), typeof(ParameterServerGrain), typeof(WorkerGrain), typeof(RunningJobsGrain) };

    /// <summary>True when a silo of <paramref name="role"/> hosts grain class <paramref name="grainClass"/>.</summary>
    public static bool Hosts(this SiloRole role, Type grainClass)
    {
        bool training = TrainingGrains.Contains(grainClass);
        bool duck = grainClass.Assembly.GetName().Name?.StartsWith("Duck.", StringComparison.Ordinal) == true;
        return role switch
        {
            SiloRole.Training => training || !duck,
            SiloRole.Inference => !training,
            _ => true,
        };
    }

    /// <summary>Adds the training grains' services and removes the grain classes this role does not host.</summary>
    public static ISiloBuilder AddDuckRole(this ISiloBuilder silo, SiloRole role, DuckSiloOptions training)
    {
        // Placement and the grain storage are cheap and lazy; libtorch's thread count would load libtorch, so an
        // inference silo leaves it alone.
        silo.AddDuckTraining(role == SiloRole.Inference ? training with { TorchThreads = 0 } : training);
        silo.Configure<GrainTypeOptions>(options =>
        {
            foreach (var type in options.Classes.Where(t => !role.Hosts(t)).ToList()) options.Classes.Remove(type);
        });
        return silo;
    }
}
