// The Dockerfiles against the repository: official .NET 10 images, COPY sources that exist and are not excluded by
// .dockerignore, an entry point that is the project's built assembly, a non-root user, environment the program
// reads, and exposed ports that are the silo's.
using static Duck.Silo.Tests.Deploy.DeploymentChecks;

namespace Duck.Silo.Tests.Deploy;

public class DockerfileTests
{
    [Theory]
    [InlineData("src/Silo/Dockerfile", "Duck.Silo.dll")]
    [InlineData("src/Coordinator/Dockerfile", "duck.dll")]
    public void Dockerfile_Instructions_MatchTheRepositoryAndTheBuild(string dockerfile, string assembly)
    {
        var lines = Instructions(File.ReadAllText(Path.Combine(Repo.Root, dockerfile)));
        var ignored = File.ReadAllLines(Path.Combine(Repo.Root, ".dockerignore")).Where(l => l.Length > 0 && !l.StartsWith('#')).Select(l => l.Trim('*', '/')).ToList();
        var program = assembly == "duck.dll" ? Program.Duck : Program.Silo;
        var froms = lines.Where(l => l.StartsWith("FROM ")).Select(l => l.Split(' ')[1]).ToList();
        var final = lines.Skip(lines.FindLastIndex(l => l.StartsWith("FROM "))).ToList();
        var problems = new List<string>();

        if (!froms[^1].StartsWith("mcr.microsoft.com/dotnet/") || !froms[^1].EndsWith(":10.0")) problems.Add($"final image {froms[^1]} is not an official .NET 10 image");
        if (!froms.Any(f => f == "mcr.microsoft.com/dotnet/sdk:10.0")) problems.Add("no build stage on mcr.microsoft.com/dotnet/sdk:10.0");
        foreach (var copy in lines.Where(l => l.StartsWith("COPY ") && !l.Contains("--from=")))
            foreach (var source in copy.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1..^1])
            {
                if (!File.Exists(Path.Combine(Repo.Root, source)) && !Directory.Exists(Path.Combine(Repo.Root, source))) problems.Add($"COPY {source}: no such path");
                if (ignored.Any(i => source.TrimEnd('/').Split('/').Contains(i))) problems.Add($"COPY {source}: excluded by .dockerignore");
            }
        var entry = final.Single(l => l.StartsWith("ENTRYPOINT "));
        if (!entry.Contains($"{assembly}\"")) problems.Add($"{entry} does not run {assembly}");
        if (!File.Exists(program == Program.Duck ? Repo.DuckDll : Path.Combine(Repo.SiloBin, assembly))) problems.Add($"the build makes no {assembly}");
        if (!final.Any(l => l == "USER $APP_UID")) problems.Add("the final stage does not switch to the non-root user $APP_UID");
        foreach (var env in final.Where(l => l.StartsWith("ENV ")).SelectMany(l => l[4..].Split(' ', StringSplitOptions.RemoveEmptyEntries)))
            problems.CheckEnvironment(dockerfile, program, env.Split('=')[0], env.Split('=', 2)[1].StartsWith('$') ? null : env.Split('=', 2)[1]);
        foreach (var port in final.Where(l => l.StartsWith("EXPOSE ")).SelectMany(l => l.Split(' ')[1..]).Select(int.Parse))
            if (!new[] { "HttpPort", "SiloPort", "GatewayPort" }.Any(k => SiloPort(k, new Dictionary<string, string?>()) == port)) problems.Add($"EXPOSE {port} is none of the silo's default ports");

        Assert.Empty(problems);
    }

    /// <summary>Instructions with continuation lines joined and comments dropped.</summary>
    static List<string> Instructions(string text) =>
        text.Replace("\\\n", " ").Split('\n').Select(l => System.Text.RegularExpressions.Regex.Replace(l.Trim(), @"\s+", " "))
            .Where(l => l.Length > 0 && !l.StartsWith('#')).ToList();
}
