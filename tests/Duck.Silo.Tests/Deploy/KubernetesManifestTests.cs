// deploy/k8s against the code and against itself: environment (direct, ConfigMap and Secret keys) read by the
// silo, images built here, container ports and probe paths the silo serves (asked of a real silo), a termination
// grace above the silo's shutdown timeout, and every reference (ConfigMap, Secret, claim, ServiceAccount, Service
// and budget selectors, the Job's gateway) resolving to an object in the manifests.
using System.Net;
using YamlDotNet.RepresentationModel;
using static Duck.Silo.Tests.Deploy.DeploymentChecks;

namespace Duck.Silo.Tests.Deploy;

public class KubernetesManifestTests
{
    static readonly List<YamlMappingNode> Objects = Directory.GetFiles(Path.Combine(Repo.Root, "deploy", "k8s"), "*.yaml").Order()
        .SelectMany(f => Yaml.Load(Path.GetRelativePath(Repo.Root, f))).ToList();
    static IEnumerable<YamlMappingNode> OfKind(string kind) => Objects.Where(o => o.Text("kind") == kind);
    static YamlMappingNode Named(string kind, string name) => OfKind(kind).SingleOrDefault(o => o.Text("metadata", "name") == name)
        ?? throw new Xunit.Sdk.XunitException($"no {kind} named {name} in deploy/k8s");
    static IEnumerable<YamlMappingNode> SiloDeployments => OfKind("Deployment").Where(d => d.Text("metadata", "name")!.StartsWith("duck-silo"));
    static YamlNode Container(YamlNode workload) => workload.Items("spec", "template", "spec", "containers").Single();
    static Dictionary<string, string?> ConfigMap => Named("ConfigMap", "duck-silo-config").Entries("data").ToDictionary(e => e.Key, e => ((YamlScalarNode)e.Value).Value);

    [Fact]
    public void Manifests_EnvironmentAndConfig_AreReadByTheirProgram()
    {
        var problems = new List<string>();

        foreach (var (key, value) in ConfigMap) problems.CheckEnvironment("ConfigMap duck-silo-config", Program.Silo, key, value);
        foreach (var (key, _) in Named("Secret", "duck-secrets").Entries("stringData")) problems.CheckEnvironment("Secret duck-secrets", Program.Silo, key, null);
        foreach (var workload in OfKind("Deployment").Concat(OfKind("Job")))
            foreach (var env in Container(workload).Items("env"))
                problems.CheckEnvironment($"{workload.Text("kind")} {workload.Text("metadata", "name")}", workload.Text("kind") == "Job" ? Program.Duck : Program.Silo,
                    env.Text("name")!, env.Text("value"));

        Assert.Empty(problems);
        Assert.All(SiloDeployments, d => Assert.Equal(["POD_NAME", "POD_NAMESPACE", "POD_IP"],
            Container(d).Items("env").Where(e => e.Get("valueFrom", "fieldRef") is not null).Select(e => e.Text("name")!)));
    }

    [Fact]
    public void Manifests_Images_AreBuiltByTheRepositorysDockerfiles()
    {
        var problems = new List<string>();

        foreach (var workload in OfKind("Deployment").Concat(OfKind("Job")))
            problems.CheckImage($"{workload.Text("kind")} {workload.Text("metadata", "name")}", Container(workload).Text("image"));

        Assert.Empty(problems);
        Assert.Equal("duck-silo-inference", Container(Named("Deployment", "duck-silo-inference")).Text("image")!.Split(':')[0]);
    }

    [Fact]
    public async Task Manifests_PortsProbesAndGrace_AreTheSilosOwn()
    {
        var configured = ConfigMap;
        var paths = new HashSet<string>();
        foreach (var d in SiloDeployments)
        {
            var c = Container(d);
            var ports = c.Items("ports").ToDictionary(p => p.Text("name")!, p => int.Parse(p.Text("containerPort")!));
            Assert.Equal(SiloPort("HttpPort", configured), ports["http"]);
            Assert.Equal(SiloPort("SiloPort", configured), ports["silo"]);
            Assert.Equal(SiloPort("GatewayPort", configured), ports["gateway"]);
            foreach (var probe in new[] { "startupProbe", "readinessProbe", "livenessProbe" })
            {
                Assert.Equal("http", c.Text(probe, "httpGet", "port"));
                paths.Add(c.Text(probe, "httpGet", "path")!);
            }
            paths.Add(d.Text("spec", "template", "metadata", "annotations", "prometheus.io/path")!);
            Assert.True(int.Parse(d.Text("spec", "template", "spec", "terminationGracePeriodSeconds")!) > SiloPort("ShutdownTimeoutSeconds", configured));
            Assert.True(d.Get("spec", "template", "spec", "containers") is not null && c.Get("resources", "requests") is not null);
        }

        using var silo = SiloProcess.Start(Directory.CreateTempSubdirectory("duck-k8s-state-").FullName);
        await silo.WaitReadyAsync();
        foreach (var path in paths) Assert.True(await silo.StatusAsync(path) == HttpStatusCode.OK, $"the silo does not answer {path}");
        Assert.Equal(["/health/live", "/health/ready", "/metrics"], paths.Order());
    }

    [Fact]
    public void Manifests_References_ResolveToObjectsInTheManifests()
    {
        foreach (var workload in OfKind("Deployment").Concat(OfKind("Job")))
        {
            var spec = workload.Get("spec", "template", "spec")!;
            foreach (var from in Container(workload).Items("envFrom"))
            {
                if (from.Text("configMapRef", "name") is { } map) Named("ConfigMap", map);
                if (from.Text("secretRef", "name") is { } secret) Named("Secret", secret);
            }
            foreach (var volume in spec.Items("volumes"))
                if (volume.Text("persistentVolumeClaim", "claimName") is { } claim) Named("PersistentVolumeClaim", claim);
            if (spec.Text("serviceAccountName") is { } account) Named("ServiceAccount", account);
            Assert.All(Objects.Where(o => o.Text("kind") != "Namespace"), o => Assert.Equal("duck", o.Text("metadata", "namespace")));
        }
        foreach (var selector in OfKind("Service").Select(s => s.Get("spec", "selector")!).Concat(OfKind("PodDisruptionBudget").Select(p => p.Get("spec", "selector", "matchLabels")!)))
            Assert.Contains(SiloDeployments, d => selector.Entries().All(kv => d.Text("spec", "template", "metadata", "labels", kv.Key) == ((YamlScalarNode)kv.Value).Value));
        foreach (var service in OfKind("Service"))
            foreach (var port in service.Items("spec", "ports"))
                Assert.All(SiloDeployments.Where(d => service.Get("spec", "selector")!.Entries().All(kv => d.Text("spec", "template", "metadata", "labels", kv.Key) == ((YamlScalarNode)kv.Value).Value)),
                    d => Assert.Contains(Container(d).Items("ports"), p => p.Text("name") == port.Text("targetPort")));
    }

    [Fact]
    public void Manifests_AgainstKubernetesSchemas_AreValid()
    {
        var start = new System.Diagnostics.ProcessStartInfo("node") { UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true };
        start.ArgumentList.Add(Path.Combine(Repo.Root, "deploy", "k8s", "validate.mjs"));
        using var node = System.Diagnostics.Process.Start(start)!;
        string output = node.StandardOutput.ReadToEnd() + node.StandardError.ReadToEnd();
        node.WaitForExit();

        Assert.True(node.ExitCode == 0, output);
        Assert.Contains($"{Objects.Count} objects valid", output);
    }

    [Fact]
    public void TrainJob_Command_UsesExistingOptionsAGatewayServiceAndTheDataClaim()
    {
        var job = OfKind("Job").Single();
        var problems = new List<string>();
        var mounts = Container(job).Items("volumeMounts").Select(m => m.Text("mountPath")!).ToList();

        problems.CheckDuckCommands("Job", string.Join(" ", Container(job).Items("args").Select(a => ((YamlScalarNode)a).Value)), (option, value) =>
        {
            if (option is "--data" or "--out" && !mounts.Any(m => value.StartsWith(m + "/"))) problems.Add($"{option} {value} is not on a mounted volume");
            if (option == "--gateway")
            {
                var service = Named("Service", value.Split(':')[0]);
                if (!service.Items("spec", "ports").Any(p => p.Text("port") == value.Split(':')[1])) problems.Add($"--gateway {value}: the Service has no such port");
            }
        });

        Assert.Empty(problems);
    }
}
