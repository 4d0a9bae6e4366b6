// Binding and validation of the silo's configuration sections ("Duck:Silo", "Duck:Dashboard"): unknown keys and
// values that do not convert are errors naming the key, and each options record lists its own wrong values. A
// configuration error ends the process with one line per problem and exit code 2 (see Program.cs), before any
// port opens. Not the options themselves: SiloHostOptions (SiloHosting.cs) and DashboardOptions.
namespace Duck.Silo;

/// <summary>A configuration value that cannot work; the message names the key and the value.</summary>
public sealed class SiloConfigurationException(string message) : Exception(message);

public static class DuckConfiguration
{
    /// <summary>Exit code of a silo that did not start because of its configuration or unreachable storage.</summary>
    public const int ExitCode = 2;

    /// <summary>Binds <typeparamref name="T"/> from <paramref name="section"/>; throws for unknown keys and unconvertible values.</summary>
    public static T BindSection<T>(this IConfiguration configuration, string section) where T : class, new()
    {
        var node = configuration.GetSection(section);
        var known = typeof(T).GetProperties().Select(p => p.Name).ToHashSet(StringComparer.OrdinalIgnoreCase);
        foreach (var child in node.GetChildren())
            if (!known.Contains(child.Key))
                throw new SiloConfigurationException($"unknown configuration key {section}:{child.Key}; known keys: {string.Join(", ", known.Order())}");
        try { return node.Get<T>() ?? new T(); }
        catch (InvalidOperationException e)
        {
            // The binder's message names the key path ("Failed to convert configuration value at 'Duck:Silo:HttpPort' ...").
            var inner = e.InnerException is { } i ? $" ({i.Message})" : "";
            throw new SiloConfigurationException($"{e.Message}{inner}");
        }
    }

    /// <summary>Throws one <see cref="SiloConfigurationException"/> listing every message of <paramref name="problems"/>.</summary>
    public static void ThrowIfAny(IReadOnlyCollection<string> problems)
    {
        if (problems.Count > 0) throw new SiloConfigurationException(string.Join(Environment.NewLine, problems));
    }

    /// <summary>Checks that <paramref name="port"/> is a TCP port, adding "KEY must be in 1..65535, got N" otherwise.</summary>
    public static void RequirePort(this List<string> problems, string key, int port)
    {
        if (port is < 1 or > 65535) problems.Add($"{key} must be in 1..65535, got {port}");
    }
}
