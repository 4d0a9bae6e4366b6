// Bad input at start: each wrong or missing value, and unreachable storage, ends the silo with exit code 2 and one
// "error:" line naming the key or the problem, before anything listens.
namespace Duck.Silo.Tests;

public class SiloConfigurationTests
{
    [Theory]
    [InlineData("Duck:Silo:HttpPort must be in 1..65535, got 0", "--Duck:Silo:HttpPort=0")]
    [InlineData("'Duck:Silo:GatewayPort'", "--Duck:Silo:GatewayPort=lots")]
    [InlineData("unknown configuration key Duck:Silo:Colour", "--Duck:Silo:Colour=red")]
    [InlineData("unknown configuration key Duck:Dashboard:Pasword", "--Duck:Dashboard:Pasword=secret-secret")]
    [InlineData("Duck:Silo:Role must be 'training', 'inference' or 'both', got 'chat'", "--Duck:Silo:Role=chat")]
    [InlineData("Duck:Silo:Clustering must be 'localhost' or 'azure', got 'zookeeper'", "--Duck:Silo:Clustering=zookeeper")]
    [InlineData("Duck:Silo:HttpHost must be an IP address", "--Duck:Silo:HttpHost=everywhere")]
    [InlineData("Duck:Silo:DrainDelaySeconds must be in 0..Duck:Silo:ShutdownTimeoutSeconds-1 (9), got 10", "--Duck:Silo:ShutdownTimeoutSeconds=10", "--Duck:Silo:DrainDelaySeconds=10")]
    [InlineData("Duck:Dashboard:Password is required", "--Duck:Silo:HttpHost=0.0.0.0")]
    [InlineData("Duck:Silo:ConnectionString (or DUCK_STORAGE_CONNECTION_STRING) is required by Duck:Silo:Clustering=azure", "--Duck:Silo:Clustering=azure")]
    [InlineData("Duck:Silo:ConnectionString (or DUCK_STORAGE_CONNECTION_STRING) is not an Azure Storage connection string", "--Duck:Silo:StateStore=azure:state", "--Duck:Silo:ConnectionString=hello")]
    public void Start_WrongValue_OneLineNamingTheKeyAndExit2(string expected, params string[] args)
    {
        var (exitCode, output) = SiloProcess.RunToExit(args, new Dictionary<string, string> { ["DUCK_STORAGE_CONNECTION_STRING"] = "" });

        Assert.Equal(2, exitCode);
        var errors = output.Split('\n', StringSplitOptions.RemoveEmptyEntries).Where(l => l.StartsWith("error:")).ToList();
        Assert.Contains(expected, Assert.Single(errors));
        Assert.DoesNotContain("   at ", output);
    }

    [Fact]
    public void Start_WrongValueFromEnvironmentVariable_NamesTheConfigurationKey()
    {
        var (exitCode, output) = SiloProcess.RunToExit([], new Dictionary<string, string> { ["Duck__Silo__ShutdownTimeoutSeconds"] = "0" });

        Assert.Equal(2, exitCode);
        Assert.Contains("error: Duck:Silo:ShutdownTimeoutSeconds must be in 1..3600, got 0", output);
    }

    [Fact]
    public void Start_UnreachableTableStorage_NamesTheStoreAndExits2()
    {
        int closed = Repo.FreePort();
        string unreachable = $"DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;TableEndpoint=http://127.0.0.1:{closed}/devstoreaccount1;BlobEndpoint=http://127.0.0.1:{closed}/devstoreaccount1";

        var (exitCode, output) = SiloProcess.RunToExit(["--Duck:Silo:Clustering=azure"], new Dictionary<string, string> { ["DUCK_STORAGE_CONNECTION_STRING"] = unreachable, ["Duck__Chat__ApiKeys__0"] = "test-key" });

        Assert.Equal(2, exitCode);
        Assert.Contains("error: cannot reach Azure Table storage (Duck:Silo:Clustering=azure)", output);
    }

    [Fact]
    public void Start_HttpPortInUse_SaysSoAndExits2()
    {
        using var taken = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0);
        taken.Start();
        int port = ((System.Net.IPEndPoint)taken.LocalEndpoint).Port;

        var (exitCode, output) = SiloProcess.RunToExit([$"--Duck:Silo:HttpPort={port}"]);

        Assert.True(exitCode == 2, output);
        Assert.Contains("Duck:Silo:HttpPort", output);
    }
}
