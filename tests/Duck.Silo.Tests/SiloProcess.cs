// Runs the built silo (src/Silo/bin/<configuration>/net10.0/Duck.Silo.dll) as a child process, the way `duck
// cluster up`, compose and Kubernetes do: free loopback ports, configuration as --Duck:Silo:Key=value or
// Duck__Section__Key environment variables, readiness polling, SIGTERM, and the captured output.
using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using System.Text;

namespace Duck.Silo.Tests;

public sealed partial class SiloProcess : IDisposable
{
    readonly Process process;
    readonly StringBuilder output = new();

    public int HttpPort { get; }
    public int SiloPort { get; }
    public int GatewayPort { get; }
    public HttpClient Http { get; }
    public string Output { get { lock (output) return output.ToString(); } }
    public bool HasExited => process.HasExited;
    public int Pid => process.Id;
    /// <summary>Resident memory now (VmRSS), in bytes.</summary>
    public long ResidentBytes => long.Parse(File.ReadLines($"/proc/{process.Id}/status").First(l => l.StartsWith("VmRSS:")).Split(' ', StringSplitOptions.RemoveEmptyEntries)[1]) * 1024;
    public int ExitCode => process.ExitCode;

    SiloProcess(Process process, int httpPort, int siloPort, int gatewayPort)
    {
        (this.process, HttpPort, SiloPort, GatewayPort) = (process, httpPort, siloPort, gatewayPort);
        Http = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{httpPort}"), Timeout = TimeSpan.FromSeconds(10) };
        process.OutputDataReceived += (_, e) => { if (e.Data is not null) lock (output) output.AppendLine(e.Data); };
        process.ErrorDataReceived += (_, e) => { if (e.Data is not null) lock (output) output.AppendLine(e.Data); };
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
    }

    /// <summary>Starts a silo on fresh loopback ports (localhost clustering with <paramref name="primarySiloPort"/>, or itself as primary);
    /// a null <paramref name="stateStore"/> leaves Duck:Silo:StateStore to the environment.</summary>
    public static SiloProcess Start(string? stateStore, int? primarySiloPort = null, IEnumerable<string>? args = null, IDictionary<string, string>? env = null)
    {
        int http = Repo.FreePort(), silo = Repo.FreePort(), gateway = Repo.FreePort();
        var start = new ProcessStartInfo("dotnet") { UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true };
        start.ArgumentList.Add(Repo.SiloDll);
        foreach (var (key, value) in new[] { ("HttpPort", http), ("SiloPort", silo), ("GatewayPort", gateway), ("PrimarySiloPort", primarySiloPort ?? silo), ("TorchThreads", 1) })
            start.ArgumentList.Add($"--Duck:Silo:{key}={value}");
        if (stateStore is not null) start.ArgumentList.Add($"--Duck:Silo:StateStore={stateStore}");
        foreach (var a in args ?? []) start.ArgumentList.Add(a);
        start.Environment["DUCK_MALLOC_TUNING"] = "0";
        start.Environment["Logging__LogLevel__Default"] = "Warning";
        foreach (var (k, v) in env ?? new Dictionary<string, string>()) start.Environment[k] = v;
        return new SiloProcess(Process.Start(start)!, http, silo, gateway);
    }

    /// <summary>Runs a silo that is expected to refuse to start; its exit code and output.</summary>
    public static (int ExitCode, string Output) RunToExit(IEnumerable<string> args, IDictionary<string, string>? env = null, int timeoutSeconds = 60)
    {
        using var silo = Start(Directory.CreateTempSubdirectory("duck-silo-state-").FullName, args: args, env: env);
        if (!silo.process.WaitForExit(TimeSpan.FromSeconds(timeoutSeconds)))
            throw new TimeoutException($"the silo kept running for {timeoutSeconds} s; output:\n{silo.Output}");
        silo.process.WaitForExit(); // flushes the output readers
        return (silo.ExitCode, silo.Output);
    }

    /// <summary>Waits until /health/ready answers 200; throws with the silo's output if it exits or takes too long.</summary>
    public async Task WaitReadyAsync(int timeoutSeconds = 90)
    {
        var deadline = DateTime.UtcNow.AddSeconds(timeoutSeconds);
        while (DateTime.UtcNow < deadline)
        {
            if (process.HasExited) throw new InvalidOperationException($"silo exited with {process.ExitCode}:\n{Output}");
            if (await StatusAsync("/health/ready") == HttpStatusCode.OK) return;
            await Task.Delay(200);
        }
        throw new TimeoutException($"silo not ready in {timeoutSeconds} s:\n{Output}");
    }

    /// <summary>The status code of GET <paramref name="path"/>, or 0 when nothing answers.</summary>
    public async Task<HttpStatusCode> StatusAsync(string path)
    {
        try { using var r = await Http.GetAsync(path); return r.StatusCode; }
        catch (Exception e) when (e is HttpRequestException or TaskCanceledException) { return 0; }
    }

    /// <summary>Sends SIGTERM, as Kubernetes and docker stop do.</summary>
    public void Terminate() => Kill(process.Id, 15);

    public bool WaitForExit(TimeSpan limit) => process.WaitForExit(limit);

    public void Dispose()
    {
        Http.Dispose();
        if (!process.HasExited) process.Kill(entireProcessTree: true);
        process.Dispose();
    }

    [LibraryImport("libc", EntryPoint = "kill")]
    private static partial int Kill(int pid, int signal);
}

/// <summary>Paths of the repository and its built programs.</summary>
static class Repo
{
    public static readonly string Root = FindRoot();
    static readonly string Configuration = AppContext.BaseDirectory.Contains($"{Path.DirectorySeparatorChar}Debug{Path.DirectorySeparatorChar}") ? "Debug" : "Release";
    public static string SiloDll => Built("Silo", "Duck.Silo.dll");
    public static string DuckDll => Built("Coordinator", "duck.dll");
    public static string SiloBin => Path.GetDirectoryName(SiloDll)!;

    static string Built(string project, string file)
    {
        string path = Path.Combine(Root, "src", project, "bin", Configuration, "net10.0", file);
        return File.Exists(path) ? path : throw new FileNotFoundException($"{path} is not built; run `dotnet build Duck.Distributed.sln -c {Configuration}`");
    }

    static string FindRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "Duck.Distributed.sln"))) return dir.FullName;
        throw new DirectoryNotFoundException("Duck.Distributed.sln not found above " + AppContext.BaseDirectory);
    }

    /// <summary>A loopback TCP port that is free now.</summary>
    public static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }
}
