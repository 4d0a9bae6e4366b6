// docker-compose.yml against the code: every environment variable is read by its program, every image is built
// here, the published ports and health checks are the silo's, the duck service's commands exist, its gateway is a
// silo's gateway and its data folder is on the volume the silos share.
using YamlDotNet.RepresentationModel;
using static Duck.Silo.Tests.Deploy.DeploymentChecks;

namespace Duck.Silo.Tests.Deploy;

public class ComposeFileTests
{
    static readonly YamlMappingNode Compose = Yaml.Load("docker-compose.yml").Single();
    static IEnumerable<(string Name, YamlNode Service)> Services => Compose.Entries("services");
    static IEnumerable<(string Name, YamlNode Service)> Silos => Services.Where(s => (s.Service.Text("image") ?? "").StartsWith("duck-silo"));
    static Dictionary<string, string?> Env(YamlNode service) => service.Entries("environment").ToDictionary(e => e.Key, e => (e.Value as YamlScalarNode)?.Value);

    [Fact]
    public void Compose_EnvironmentVariables_AreReadByTheirProgram()
    {
        var problems = new List<string>();

        foreach (var (name, service) in Services.Where(s => s.Name != "azurite"))
            foreach (var (key, value) in Env(service))
                problems.CheckEnvironment($"service {name}", name == "duck" ? Program.Duck : Program.Silo, key, value);

        Assert.Empty(problems);
        Assert.Equal(3, Silos.Count());
    }

    [Fact]
    public void Compose_Images_AreBuiltByTheRepositorysDockerfiles()
    {
        var problems = new List<string>();
        var built = new Dictionary<string, string>();

        foreach (var (name, service) in Services.Where(s => s.Name != "azurite"))
        {
            problems.CheckImage($"service {name}", service.Text("image"));
            if (service.Text("build", "dockerfile") is { } dockerfile)
            {
                string repository = service.Text("image")!.Split(':')[0];
                built[repository] = dockerfile;
                if (BuiltCode.Images.GetValueOrDefault(repository) != dockerfile) problems.Add($"service {name}: {repository} is built from {BuiltCode.Images.GetValueOrDefault(repository)}, not {dockerfile}");
                foreach (var (arg, _) in service.Entries("build", "args"))
                    if (!File.ReadAllText(Path.Combine(Repo.Root, dockerfile)).Contains($"ARG {arg}=")) problems.Add($"service {name}: {dockerfile} declares no ARG {arg}");
            }
        }
        foreach (var (name, service) in Services.Where(s => s.Name != "azurite"))
            if (!built.ContainsKey(service.Text("image")!.Split(':')[0])) problems.Add($"service {name}: no service builds {service.Text("image")}");

        Assert.Empty(problems);
        Assert.StartsWith("mcr.microsoft.com/azure-storage/azurite:", Compose.Text("services", "azurite", "image"));
    }

    [Fact]
    public void Compose_SiloPortsAndHealthChecks_AreTheSilosOwn()
    {
        var problems = new List<string>();

        foreach (var (name, silo) in Silos)
        {
            var env = Env(silo);
            int http = SiloPort("HttpPort", env), gateway = SiloPort("GatewayPort", env);
            var containerPorts = silo.Items("ports").Select(p => int.Parse(((YamlScalarNode)p).Value!.Split(':').Last())).ToList();
            if (containerPorts.Any(p => p != http && p != gateway)) problems.Add($"{name}: publishes {string.Join(", ", containerPorts)}; the silo listens on http {http}, gateway {gateway}");
            string check = string.Join(" ", silo.Items("healthcheck", "test").Select(t => ((YamlScalarNode)t).Value));
            if (!check.Contains($"/dev/tcp/127.0.0.1/{http}") || !check.Contains("GET /health/ready")) problems.Add($"{name}: health check '{check}' does not ask /health/ready on port {http}");
            if (env.GetValueOrDefault("Duck__Silo__AdvertisedAddress") != silo.Text("hostname")) problems.Add($"{name}: advertises {env.GetValueOrDefault("Duck__Silo__AdvertisedAddress")}, its host name is {silo.Text("hostname")}");
        }

        Assert.Empty(problems);
        Assert.Equal(3, Silos.Select(s => Env(s.Service)["Duck__Silo__AdvertisedAddress"]).Distinct().Count());
        Assert.Contains(Silos, s => Env(s.Service)["Duck__Silo__Role"] == "inference");
    }

    [Fact]
    public void Compose_DuckService_RunsExistingCommandsOnASiloGatewayAndTheSharedVolume()
    {
        var duck = Compose.Get("services", "duck")!;
        string shell = string.Join(" ", duck.Items("command").Select(c => ((YamlScalarNode)c).Value));
        var problems = new List<string>();
        var dataFolders = new List<string>();

        problems.CheckDuckCommands("service duck", shell, (option, value) =>
        {
            if (option is "--data" or "--out") dataFolders.Add(value);
            if (option == "--gateway")
            {
                var (host, port) = (value.Split(':')[0], int.Parse(value.Split(':')[1]));
                var silo = Silos.FirstOrDefault(s => s.Name == host);
                if (silo.Service is null || SiloPort("GatewayPort", Env(silo.Service)) != port) problems.Add($"--gateway {value} is not a silo's gateway");
            }
        });
        var mounts = (YamlNode service) => service.Items("volumes").Select(v => ((YamlScalarNode)v).Value!.Split(':')[1]).ToList();

        Assert.Empty(problems);
        Assert.Equal(2, dataFolders.Count);
        Assert.All(dataFolders, folder => Assert.All(Silos.Select(s => s.Service).Append(duck), s => Assert.Contains(mounts(s), m => folder.StartsWith(m + "/"))));
    }
}
