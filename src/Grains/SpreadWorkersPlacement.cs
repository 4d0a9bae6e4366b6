// Worker placement: worker k of a job goes to silo k modulo the live compatible silos (ordered by address), so K
// workers on N silos put at most ceil(K / N) busy workers on a silo. A worker whose silo died is re-activated on
// a survivor by the same rule. A placement hint (a worker migrating to a silo that joined, see ElasticWorkers) wins.
using Orleans.Placement;
using Orleans.Runtime;
using Orleans.Runtime.Placement;

namespace Duck.Grains;

/// <summary>Spreads a job's workers over silos by worker index.</summary>
[GenerateSerializer, Immutable, SuppressReferenceTracking]
public sealed class SpreadWorkersPlacementStrategy : PlacementStrategy
{
    public static readonly SpreadWorkersPlacementStrategy Instance = new();
}

/// <summary>Marks a grain class keyed "jobId/index" for <see cref="SpreadWorkersPlacementStrategy"/>.</summary>
[AttributeUsage(AttributeTargets.Class, AllowMultiple = false)]
public sealed class SpreadWorkersPlacementAttribute() : PlacementAttribute(SpreadWorkersPlacementStrategy.Instance);

/// <summary>Chooses the hinted silo when the request carries a valid hint, else silo (index mod silo count) among the
/// compatible silos in address order.</summary>
public sealed class SpreadWorkersPlacementDirector : IPlacementDirector
{
    public Task<SiloAddress> OnAddActivation(PlacementStrategy strategy, PlacementTarget target, IPlacementContext context)
    {
        var compatible = context.GetCompatibleSilos(target);
        if (IPlacementDirector.GetPlacementHint(target.RequestContextData, compatible) is { } hint) return Task.FromResult(hint);
        var silos = compatible.OrderBy(s => s.ToString(), StringComparer.Ordinal).ToArray();
        if (silos.Length == 0) throw new OrleansException($"no silo can host {target.GrainIdentity}");
        string key = target.GrainIdentity.Key.ToString() ?? "";
        int slash = key.LastIndexOf('/');
        int index = slash >= 0 && int.TryParse(key.AsSpan(slash + 1), out int i) ? i : (int)(target.GrainIdentity.GetUniformHashCode() & int.MaxValue);
        return Task.FromResult(silos[index % silos.Length]);
    }
}
