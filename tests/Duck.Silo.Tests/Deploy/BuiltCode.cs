// What the built programs really read and build, for checking deployment files against: the configuration keys of
// the silo's options records (by reflection over src/Silo's output), the environment variables Duck's own
// assemblies name (string literals in their metadata), the image names the Dockerfiles build, and the options of
// the `duck` commands (from `duck ... --help`).
using System.Diagnostics;
using System.Reflection;
using System.Reflection.Metadata;
using System.Reflection.Metadata.Ecma335;
using System.Reflection.PortableExecutable;
using System.Runtime.Loader;

namespace Duck.Silo.Tests.Deploy;

static class BuiltCode
{
    /// <summary>Images the repository builds (docker build -f DOCKERFILE [--build-arg DUCK_ROLE=inference] -t NAME), by repository name.</summary>
    public static readonly IReadOnlyDictionary<string, string> Images = new Dictionary<string, string>
    {
        ["duck-silo"] = "src/Silo/Dockerfile",
        ["duck-silo-inference"] = "src/Silo/Dockerfile",
        ["duck-tool"] = "src/Coordinator/Dockerfile",
    };

    static readonly Lazy<Assembly> SiloAssembly = new(() =>
    {
        var context = new AssemblyLoadContext("duck-silo-bin", isCollectible: false);
        string aspNet = Path.Combine(Path.GetDirectoryName(typeof(object).Assembly.Location)!.Replace("Microsoft.NETCore.App", "Microsoft.AspNetCore.App"));
        context.Resolving += (ctx, name) => new[] { Repo.SiloBin, aspNet }.Select(d => Path.Combine(d, name.Name + ".dll")).Where(File.Exists)
            .Select(ctx.LoadFromAssemblyPath).FirstOrDefault();
        return context.LoadFromAssemblyPath(Repo.SiloDll);
    });

    static Type SiloType(string name) => SiloAssembly.Value.GetType($"Duck.Silo.{name}", throwOnError: true)!;

    /// <summary>"Duck:Section" to its options record's properties (name to type and default value).</summary>
    public static IReadOnlyDictionary<string, IReadOnlyDictionary<string, (Type Type, object? Default)>> Sections => sections.Value;
    static readonly Lazy<IReadOnlyDictionary<string, IReadOnlyDictionary<string, (Type, object?)>>> sections = new(() =>
        new Dictionary<string, IReadOnlyDictionary<string, (Type, object?)>>(StringComparer.OrdinalIgnoreCase)
        {
            ["Duck:Silo"] = Describe(SiloType("SiloHostOptions")),
            ["Duck:Dashboard"] = Describe(SiloType("DuckDashboardOptions")),
            // The chat API's section, by reflection once it is part of the silo; until then the keys the deployment
            // files already carry for it (its API keys and model location).
            ["Duck:Chat"] = SiloAssembly.Value.GetType("Duck.Silo.ChatApi.ChatApiOptions") is { } chat ? Describe(chat) : PendingChatKeys,
        });

    static readonly IReadOnlyDictionary<string, (Type, object?)> PendingChatKeys = new Dictionary<string, (Type, object?)>(StringComparer.OrdinalIgnoreCase)
    {
        ["ApiKeys"] = (typeof(string[]), null),
        ["Models"] = (typeof(string), null),
    };

    static IReadOnlyDictionary<string, (Type, object?)> Describe(Type options)
    {
        object instance = Activator.CreateInstance(options)!;
        return options.GetProperties(BindingFlags.Public | BindingFlags.Instance).Where(p => p.CanWrite)
            .ToDictionary(p => p.Name, p => (p.PropertyType, p.GetValue(instance)), StringComparer.OrdinalIgnoreCase);
    }

    /// <summary>The silo's roles (Duck:Silo:Role values).</summary>
    public static IEnumerable<string> Roles => Enum.GetNames(SiloType("SiloRole")).Select(n => n.ToLowerInvariant());

    /// <summary>The silo's environment variables besides configuration (POD_IP, ORLEANS_CLUSTER_ID...).</summary>
    public static IReadOnlyList<string> SiloEnvironment => (IReadOnlyList<string>)SiloType("SiloEnvironment").GetField("All")!.GetValue(null)!;

    /// <summary>True when Duck's own assemblies in <paramref name="binFolder"/> contain <paramref name="literal"/> as a string constant.</summary>
    public static bool NamesLiteral(string binFolder, string literal) =>
        Directory.EnumerateFiles(binFolder, "*.dll").Where(f => Path.GetFileName(f).StartsWith("Duck.", StringComparison.Ordinal) || Path.GetFileName(f) == "duck.dll")
            .Any(f => UserStrings(f).Contains(literal));

    static HashSet<string> UserStrings(string assembly)
    {
        using var pe = new PEReader(File.OpenRead(assembly));
        var md = pe.GetMetadataReader();
        var strings = new HashSet<string>(StringComparer.Ordinal);
        if (md.GetHeapSize(HeapIndex.UserString) > 1)
            for (var h = MetadataTokens.UserStringHandle(1); !h.IsNil; h = md.GetNextHandle(h)) strings.Add(md.GetUserString(h));
        foreach (var f in md.FieldDefinitions)
        {
            var field = md.GetFieldDefinition(f);
            if (!field.GetDefaultValue().IsNil)
            {
                var c = md.GetConstant(field.GetDefaultValue());
                if (c.TypeCode == ConstantTypeCode.String) strings.Add(md.GetBlobReader(c.Value).ReadUTF16(md.GetBlobReader(c.Value).Length));
            }
        }
        return strings;
    }

    /// <summary>The options `duck <paramref name="command"/> --help` lists.</summary>
    public static HashSet<string> DuckOptions(params string[] command)
    {
        var start = new ProcessStartInfo("dotnet") { UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true };
        start.ArgumentList.Add(Repo.DuckDll);
        foreach (var c in command) start.ArgumentList.Add(c);
        start.ArgumentList.Add("--help");
        using var p = Process.Start(start)!;
        string help = p.StandardOutput.ReadToEnd();
        p.WaitForExit();
        return System.Text.RegularExpressions.Regex.Matches(help, @"(?<![\w-])--[a-z][a-z0-9-]*").Select(m => m.Value).ToHashSet();
    }
}
