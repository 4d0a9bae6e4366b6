// The silo's settings that come from its surroundings rather than from "Duck:Silo": the Kubernetes downward API
// (POD_IP, POD_NAME, POD_NAMESPACE), ORLEANS_CLUSTER_ID / ORLEANS_SERVICE_ID, and the storage connection string
// variable shared with the checkpoint stores. Explicit "Duck:Silo" keys win over these. Also the validation of
// SiloHostOptions and the addresses it implies (HTTP bind URL, advertised silo address).
using System.Net;
using System.Net.Sockets;
using Duck.Core.Checkpoints;

namespace Duck.Silo;

/// <summary>Environment variables the silo reads besides the Duck__Section__Key configuration ones.</summary>
public static class SiloEnvironment
{
    /// <summary>The pod's IP (Kubernetes downward API): the advertised address unless Duck:Silo:AdvertisedAddress is set.</summary>
    public const string PodIp = "POD_IP";
    /// <summary>The pod's name: the Orleans silo name.</summary>
    public const string PodName = "POD_NAME";
    /// <summary>The pod's namespace: logged with the effective configuration.</summary>
    public const string PodNamespace = "POD_NAMESPACE";
    /// <summary>Cluster id unless Duck:Silo:ClusterId is set.</summary>
    public const string ClusterId = "ORLEANS_CLUSTER_ID";
    /// <summary>Service id unless Duck:Silo:ServiceId is set.</summary>
    public const string ServiceId = "ORLEANS_SERVICE_ID";
    /// <summary>Azure Storage connection string for clustering, grain state and checkpoints.</summary>
    public const string StorageConnectionString = CheckpointStores.ConnectionStringVariable;

    /// <summary>Every variable above, for tests that check deployment files name only what the silo reads.</summary>
    public static readonly IReadOnlyList<string> All = [PodIp, PodName, PodNamespace, ClusterId, ServiceId, StorageConnectionString];

    static string? Get(string name) => Environment.GetEnvironmentVariable(name) is { Length: > 0 } v ? v : null;

    /// <summary>Fills what configuration left unset from the environment.</summary>
    public static SiloHostOptions WithEnvironment(this SiloHostOptions o, IConfiguration configuration)
    {
        string key(string name) => $"{SiloHosting.Section}:{name}";
        return o with
        {
            ClusterId = configuration[key(nameof(o.ClusterId))] is null ? Get(ClusterId) ?? o.ClusterId : o.ClusterId,
            ServiceId = configuration[key(nameof(o.ServiceId))] is null ? Get(ServiceId) ?? o.ServiceId : o.ServiceId,
            AdvertisedAddress = o.AdvertisedAddress ?? Get(PodIp),
            ConnectionString = o.ConnectionString ?? Get(StorageConnectionString),
            SiloName = o.SiloName ?? Get(PodName),
        };
    }

    /// <summary>Every wrong value, each naming its key.</summary>
    public static List<string> Problems(this SiloHostOptions o)
    {
        string S(string name) => $"{SiloHosting.Section}:{name}";
        var problems = new List<string>();
        if (!o.Clustering.Equals("localhost", StringComparison.OrdinalIgnoreCase) && !o.Clustering.Equals("azure", StringComparison.OrdinalIgnoreCase))
            problems.Add($"{S(nameof(o.Clustering))} must be 'localhost' or 'azure', got '{o.Clustering}'");
        if (!Enum.TryParse<SiloRole>(o.Role, ignoreCase: true, out _))
            problems.Add($"{S(nameof(o.Role))} must be 'training', 'inference' or 'both', got '{o.Role}'");
        problems.RequirePort(S(nameof(o.SiloPort)), o.SiloPort);
        problems.RequirePort(S(nameof(o.GatewayPort)), o.GatewayPort);
        problems.RequirePort(S(nameof(o.PrimarySiloPort)), o.PrimarySiloPort);
        problems.RequirePort(S(nameof(o.HttpPort)), o.HttpPort);
        var ports = new[] { (nameof(o.SiloPort), o.SiloPort), (nameof(o.GatewayPort), o.GatewayPort), (nameof(o.HttpPort), o.HttpPort) };
        foreach (var clash in ports.GroupBy(p => p.Item2).Where(g => g.Count() > 1))
            problems.Add($"{string.Join(" and ", clash.Select(p => S(p.Item1)))} must differ, all are {clash.Key}");
        if (!IPAddress.TryParse(o.HttpHost, out _))
            problems.Add($"{S(nameof(o.HttpHost))} must be an IP address (127.0.0.1, or 0.0.0.0 for every interface), got '{o.HttpHost}'");
        if (string.IsNullOrWhiteSpace(o.ClusterId)) problems.Add($"{S(nameof(o.ClusterId))} (or {ClusterId}) must not be empty");
        if (string.IsNullOrWhiteSpace(o.ServiceId)) problems.Add($"{S(nameof(o.ServiceId))} (or {ServiceId}) must not be empty");
        if (o.TorchThreads is < 0 or > 1024) problems.Add($"{S(nameof(o.TorchThreads))} must be in 0..1024, got {o.TorchThreads}");
        if (o.ShutdownTimeoutSeconds is < 1 or > 3600) problems.Add($"{S(nameof(o.ShutdownTimeoutSeconds))} must be in 1..3600, got {o.ShutdownTimeoutSeconds}");
        if (o.DrainDelaySeconds < 0 || o.DrainDelaySeconds >= o.ShutdownTimeoutSeconds)
            problems.Add($"{S(nameof(o.DrainDelaySeconds))} must be in 0..{S(nameof(o.ShutdownTimeoutSeconds))}-1 ({o.ShutdownTimeoutSeconds - 1}), got {o.DrainDelaySeconds}");
        if (string.IsNullOrWhiteSpace(o.StateStore)) problems.Add($"{S(nameof(o.StateStore))} must be a folder or azure:CONTAINER[/PREFIX]");
        bool needsStorage = o.IsAzureClustering() || o.StateStore.StartsWith("azure:", StringComparison.OrdinalIgnoreCase);
        if (needsStorage && o.ConnectionString is null)
            problems.Add($"{S(nameof(o.ConnectionString))} (or {StorageConnectionString}) is required by {(o.IsAzureClustering() ? $"{S(nameof(o.Clustering))}=azure" : $"{S(nameof(o.StateStore))}={o.StateStore}")}");
        else if (o.ConnectionString is { } cs && !LooksLikeConnectionString(cs))
            problems.Add($"{S(nameof(o.ConnectionString))} (or {StorageConnectionString}) is not an Azure Storage connection string (expected 'UseDevelopmentStorage=true' or 'Key=Value;...' with a BlobEndpoint, TableEndpoint or AccountName)");
        if (o.AdvertisedAddress is { } a && Uri.CheckHostName(a) == UriHostNameType.Unknown)
            problems.Add($"{S(nameof(o.AdvertisedAddress))} (or {PodIp}) must be an IP address or host name, got '{a}'");
        return problems;
    }

    static bool LooksLikeConnectionString(string cs) =>
        cs.Trim().Equals("UseDevelopmentStorage=true", StringComparison.OrdinalIgnoreCase)
        || cs.Split(';', StringSplitOptions.RemoveEmptyEntries).Select(p => p.Split('=', 2)[0].Trim())
             .Any(k => k is "AccountName" or "BlobEndpoint" or "TableEndpoint");

    /// <summary>The URL Kestrel listens on.</summary>
    public static string HttpUrl(this SiloHostOptions o) => $"http://{(IPAddress.Parse(o.HttpHost) is { AddressFamily: AddressFamily.InterNetworkV6 } v6 ? $"[{v6}]" : o.HttpHost)}:{o.HttpPort}";

    /// <summary>True when the HTTP endpoints are reachable from this machine only.</summary>
    public static bool HttpIsLoopback(this SiloHostOptions o) => IPAddress.Parse(o.HttpHost) is var ip && IPAddress.IsLoopback(ip);

    /// <summary>The address other silos and clients reach this silo at: an IP, or a host name resolved now (e.g. a compose service).</summary>
    public static IPAddress ResolveAdvertisedAddress(this SiloHostOptions o)
    {
        if (o.AdvertisedAddress is not { } a) return IPAddress.Loopback;
        if (IPAddress.TryParse(a, out var ip)) return ip;
        try
        {
            return Dns.GetHostAddresses(a).FirstOrDefault(x => x.AddressFamily == AddressFamily.InterNetwork)
                ?? throw new SiloConfigurationException($"{SiloHosting.Section}:AdvertisedAddress '{a}' has no IPv4 address");
        }
        catch (SocketException e)
        {
            throw new SiloConfigurationException($"{SiloHosting.Section}:AdvertisedAddress '{a}' cannot be resolved: {e.Message}");
        }
    }
}
