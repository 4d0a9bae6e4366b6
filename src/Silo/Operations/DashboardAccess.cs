// Who may see the Orleans Dashboard and the training page: anyone on a loopback-only silo, and otherwise only
// requests with HTTP Basic credentials matching "Duck:Dashboard" (a silo listening beyond loopback without a
// password does not start). Health and /metrics stay open for probes and scrapers. Not TLS: put an ingress in front.
using System.Security.Cryptography;
using System.Text;

namespace Duck.Silo;

/// <summary>The dashboard and training page; bound from "Duck:Dashboard".</summary>
public sealed record DuckDashboardOptions
{
    public const string Section = "Duck:Dashboard";
    /// <summary>Serve the Orleans Dashboard at /dashboard and the training page at /training.</summary>
    public bool Enabled { get; init; } = true;
    /// <summary>User name for HTTP Basic authentication.</summary>
    public string Username { get; init; } = "duck";
    /// <summary>Password for HTTP Basic authentication; required when Duck:Silo:HttpHost is not loopback.</summary>
    public string? Password { get; init; }

    /// <summary>Every wrong value, each naming its key, given how the silo's HTTP is bound.</summary>
    public List<string> Problems(SiloHostOptions silo)
    {
        var problems = new List<string>();
        if (Enabled && !silo.HttpIsLoopback() && string.IsNullOrEmpty(Password))
            problems.Add($"{Section}:Password is required: {SiloHosting.Section}:HttpHost is {silo.HttpHost}, not loopback, so the dashboard needs authentication (or set {Section}:Enabled=false)");
        if (Password is { Length: > 0 and < 8 }) problems.Add($"{Section}:Password must have at least 8 characters, got {Password.Length}");
        if (string.IsNullOrWhiteSpace(Username) || Username.Contains(':')) problems.Add($"{Section}:Username must be non-empty without ':', got '{Username}'");
        return problems;
    }
}

public static class DashboardAccess
{
    /// <summary>Paths behind the dashboard credentials.</summary>
    public static readonly string[] ProtectedPaths = ["/dashboard", "/training"];

    /// <summary>Answers 401 to requests for protected paths without the right credentials, when a password is set.</summary>
    public static WebApplication UseDashboardAccess(this WebApplication app, DuckDashboardOptions options)
    {
        if (string.IsNullOrEmpty(options.Password)) return app;
        byte[] expected = Encoding.UTF8.GetBytes($"{options.Username}:{options.Password}");
        app.Use(async (context, next) =>
        {
            if (ProtectedPaths.Any(p => context.Request.Path.StartsWithSegments(p)) && !Authorized(context.Request.Headers.Authorization.ToString(), expected))
            {
                context.Response.StatusCode = StatusCodes.Status401Unauthorized;
                context.Response.Headers.WWWAuthenticate = "Basic realm=\"duck\", charset=\"UTF-8\"";
                await context.Response.WriteAsync("credentials required (Duck:Dashboard:Username and Duck:Dashboard:Password)\n");
                return;
            }
            await next(context);
        });
        return app;
    }

    static bool Authorized(string header, byte[] expected)
    {
        if (!header.StartsWith("Basic ", StringComparison.OrdinalIgnoreCase)) return false;
        Span<byte> given = stackalloc byte[512];
        if (!Convert.TryFromBase64String(header[6..].Trim(), given, out int length)) return false;
        return CryptographicOperations.FixedTimeEquals(given[..length], expected);
    }
}
