// A silo's life seen from outside: ready only once Orleans is active, not ready as soon as SIGTERM arrives while it
// still drains, a clean exit within the shutdown timeout; the dashboard and training page answer 401 without
// credentials when the silo listens beyond loopback, while probes and /metrics stay open.
using System.Net;
using System.Net.Http.Headers;
using System.Text;

namespace Duck.Silo.Tests;

public class SiloLifecycleTests
{
    [Fact]
    public async Task Terminate_WhileDraining_ReadyFalseLiveTrueThenExit0()
    {
        using var silo = SiloProcess.Start(Directory.CreateTempSubdirectory("duck-silo-state-").FullName,
            args: ["--Duck:Silo:DrainDelaySeconds=5", "--Duck:Silo:ShutdownTimeoutSeconds=15"]);
        await silo.WaitReadyAsync();
        Assert.Equal(HttpStatusCode.OK, await silo.StatusAsync("/health/live"));

        silo.Terminate();
        var signalled = System.Diagnostics.Stopwatch.StartNew();
        HttpStatusCode readyWhileDraining;
        do readyWhileDraining = await silo.StatusAsync("/health/ready");
        while (readyWhileDraining == HttpStatusCode.OK && signalled.Elapsed < TimeSpan.FromSeconds(4));
        var liveWhileDraining = await silo.StatusAsync("/health/live");
        bool exited = silo.WaitForExit(TimeSpan.FromSeconds(20));

        Assert.Equal(HttpStatusCode.ServiceUnavailable, readyWhileDraining);
        Assert.Equal(HttpStatusCode.OK, liveWhileDraining);
        Assert.True(exited, silo.Output);
        Assert.Equal(0, silo.ExitCode);
    }

    [Fact]
    public async Task Dashboard_NotLoopbackWithoutCredentials_401AndProbesOpen()
    {
        using var silo = SiloProcess.Start(Directory.CreateTempSubdirectory("duck-silo-state-").FullName,
            args: ["--Duck:Silo:HttpHost=0.0.0.0"], env: new Dictionary<string, string> { ["Duck__Dashboard__Password"] = "quack-quack-42" });
        await silo.WaitReadyAsync();
        var withCredentials = new HttpRequestMessage(HttpMethod.Get, "/dashboard/DashboardCounters");
        withCredentials.Headers.Authorization = new AuthenticationHeaderValue("Basic", Convert.ToBase64String(Encoding.UTF8.GetBytes("duck:quack-quack-42")));
        var wrong = new HttpRequestMessage(HttpMethod.Get, "/training/data.json");
        wrong.Headers.Authorization = new AuthenticationHeaderValue("Basic", Convert.ToBase64String(Encoding.UTF8.GetBytes("duck:quack")));

        var authorized = await silo.Http.SendAsync(withCredentials);
        var wrongPassword = await silo.Http.SendAsync(wrong);

        Assert.Equal(HttpStatusCode.Unauthorized, await silo.StatusAsync("/dashboard/"));
        Assert.Equal(HttpStatusCode.Unauthorized, await silo.StatusAsync("/training"));
        Assert.Equal(HttpStatusCode.Unauthorized, wrongPassword.StatusCode);
        Assert.Equal(HttpStatusCode.OK, authorized.StatusCode);
        Assert.Contains("\"hosts\"", await authorized.Content.ReadAsStringAsync());
        Assert.Equal(HttpStatusCode.OK, await silo.StatusAsync("/metrics"));
        Assert.Equal(HttpStatusCode.OK, await silo.StatusAsync("/health/live"));
    }
}
