// What an operator gets from every silo besides the grains: Prometheus metrics on /metrics (the Duck meter, Orleans'
// "Microsoft.Orleans" meter, .NET's runtime and ASP.NET Core meters), the Orleans Dashboard on /dashboard, and the
// training page on /training. Program.cs calls AddDuckOperations after AddDuckSilo and MapDuckOperations after Build.
using Duck.Grains;
using OpenTelemetry.Metrics;
using OpenTelemetry.Resources;
using Orleans.Dashboard;

namespace Duck.Silo;

public static class DuckOperations
{
    /// <summary>Meters exported on /metrics.</summary>
    public static readonly string[] Meters = [DuckMetrics.MeterName, "Microsoft.Orleans", "System.Runtime", "Microsoft.AspNetCore.Hosting", "Microsoft.AspNetCore.Server.Kestrel"];

    public static WebApplicationBuilder AddDuckOperations(this WebApplicationBuilder builder)
    {
        var silo = builder.Services.Select(s => s.ImplementationInstance).OfType<SiloHostOptions>().FirstOrDefault()
            ?? throw new InvalidOperationException("call AddDuckSilo before AddDuckOperations");
        var dashboard = builder.Configuration.BindSection<DuckDashboardOptions>(DuckDashboardOptions.Section);
        DuckConfiguration.ThrowIfAny(dashboard.Problems(silo));
        builder.Services.AddSingleton(dashboard);
        builder.Services.AddOpenTelemetry()
            .ConfigureResource(r => r.AddService("duck-silo", serviceInstanceId: silo.SiloName ?? $"{Environment.MachineName}:{silo.SiloPort}"))
            .WithMetrics(m => m.AddMeter(Meters).AddPrometheusExporter());
        if (dashboard.Enabled)
        {
            builder.UseOrleans(s => s.AddDashboard());
            builder.Services.AddSingleton<TrainingPage>();
        }
        return builder;
    }

    public static WebApplication MapDuckOperations(this WebApplication app)
    {
        var dashboard = app.Services.GetRequiredService<DuckDashboardOptions>();
        app.MapPrometheusScrapingEndpoint("/metrics");
        if (!dashboard.Enabled) return app;
        app.UseDashboardAccess(dashboard);
        app.MapOrleansDashboard(routePrefix: "/dashboard");
        app.MapTrainingPage();
        return app;
    }
}
