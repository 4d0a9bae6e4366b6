// The rules deployment files are held to: an environment variable is one its program reads (a Duck__Section__Key
// of an options record with a value of the right type, or a variable Duck's assemblies name), an image is one a
// Dockerfile here builds, and a `duck` command line uses options that command has.
namespace Duck.Silo.Tests.Deploy;

static class DeploymentChecks
{
    public enum Program { Silo, Duck }

    static readonly string[] ClusteringValues = ["localhost", "azure"];

    /// <summary>Adds a problem unless <paramref name="program"/> reads variable <paramref name="name"/> and can take <paramref name="value"/>.</summary>
    public static void CheckEnvironment(this List<string> problems, string where, Program program, string name, string? value)
    {
        if (program == Program.Silo && name.StartsWith("Duck__", StringComparison.Ordinal))
        {
            var parts = name.Split("__");
            string section = $"{parts[0]}:{parts.ElementAtOrDefault(1)}";
            if (!BuiltCode.Sections.TryGetValue(section, out var keys)) { problems.Add($"{where}: {name}: the silo has no configuration section {section}"); return; }
            if (parts.Length < 3 || !keys.TryGetValue(parts[2], out var property)) { problems.Add($"{where}: {name}: {section} has no key '{parts.ElementAtOrDefault(2)}' (keys: {string.Join(", ", keys.Keys)})"); return; }
            if (value is null || value.Contains("${")) return; // substituted at deployment time
            bool fits = property.Type == typeof(int) ? int.TryParse(value, out _) : property.Type == typeof(bool) ? bool.TryParse(value, out _) : true;
            if (!fits) problems.Add($"{where}: {name}={value} is not a {property.Type.Name}");
            if (parts[2] == "Role" && !BuiltCode.Roles.Contains(value)) problems.Add($"{where}: {name}={value}: roles are {string.Join(", ", BuiltCode.Roles)}");
            if (parts[2] == "Clustering" && !ClusteringValues.Contains(value)) problems.Add($"{where}: {name}={value}: clustering is localhost or azure");
            return;
        }
        string bin = program == Program.Silo ? Repo.SiloBin : Path.GetDirectoryName(Repo.DuckDll)!;
        bool reads = (program == Program.Silo && BuiltCode.SiloEnvironment.Contains(name)) || BuiltCode.NamesLiteral(bin, name);
        if (!reads) problems.Add($"{where}: {name}: {program} does not read this variable");
    }

    /// <summary>Adds a problem unless the repository name of <paramref name="image"/> is built by a Dockerfile here.</summary>
    public static void CheckImage(this List<string> problems, string where, string? image)
    {
        string repository = (image ?? "").Split(':')[0];
        if (!BuiltCode.Images.TryGetValue(repository, out var dockerfile)) problems.Add($"{where}: image '{image}' is not one this repository builds ({string.Join(", ", BuiltCode.Images.Keys)})");
        else if (!File.Exists(Path.Combine(Repo.Root, dockerfile))) problems.Add($"{where}: image '{image}' comes from {dockerfile}, which does not exist");
    }

    /// <summary>Checks every `dotnet /app/duck.dll COMMAND...` in a shell line: the tool's entry point and each command's options.</summary>
    public static void CheckDuckCommands(this List<string> problems, string where, string shell, Action<string, string>? onOption = null)
    {
        foreach (var invocation in shell.Split("&&").Select(s => s.Trim()).Where(s => s.Length > 0))
        {
            var words = invocation.Split((char[])[' ', '\n'], StringSplitOptions.RemoveEmptyEntries);
            if (words is not ["dotnet", "/app/duck.dll", var verb, ..]) { problems.Add($"{where}: '{invocation}' is not `dotnet /app/duck.dll ...`, the duck image's tool"); continue; }
            var command = words.Skip(2).TakeWhile(w => !w.StartsWith("--")).ToArray();
            var known = BuiltCode.DuckOptions(command);
            if (known.Count == 0) { problems.Add($"{where}: `duck {string.Join(' ', command)}` is not a command"); continue; }
            for (int i = 2 + command.Length; i < words.Length; i++)
                if (words[i].StartsWith("--"))
                {
                    if (!known.Contains(words[i])) problems.Add($"{where}: `duck {string.Join(' ', command)}` has no option {words[i]}");
                    else onOption?.Invoke(words[i], i + 1 < words.Length ? words[i + 1] : "");
                }
            _ = verb;
        }
    }

    /// <summary>The silo's default value of Duck:Silo:<paramref name="key"/>, or its override in <paramref name="env"/>.</summary>
    public static int SiloPort(string key, IReadOnlyDictionary<string, string?> env) =>
        env.TryGetValue($"Duck__Silo__{key}", out var v) && v is not null ? int.Parse(v) : (int)BuiltCode.Sections["Duck:Silo"][key].Default!;
}
