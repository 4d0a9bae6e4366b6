// The chat commands of `duck` as a user runs them: `duck cluster deploy` copies a checked model under its name and
// refuses bad names and files; `duck chat`/`test --cluster` and `duck bench serve` report bad input and an
// unreachable server in one line with exit code 2; `duck bench infer --json` gives its figures and kernel paths.
using System.Net;
using System.Net.Sockets;
using Duck.Inference.Tests;

namespace Duck.Coordinator.Tests;

public sealed class ChatCliTests : IDisposable
{
    readonly string work = Directory.CreateTempSubdirectory("duck-chat-cli-").FullName;

    public void Dispose() => Directory.Delete(work, recursive: true);

    static int ClosedPort()
    {
        using var l = new TcpListener(IPAddress.Loopback, 0);
        l.Start();
        return ((IPEndPoint)l.LocalEndpoint).Port;
    }

    [Fact]
    public void ClusterDeploy_TinyModel_CopiedUnderItsName()
    {
        string model = TestModels.WriteGguf(TestModels.Tiny(), seed: 3);

        var r = DuckProcess.Run(work, "cluster", "deploy", model, "--name", "tiny-1", "--models", "models");

        Assert.True(r.ExitCode == 0, r.Stderr);
        Assert.Equal(File.ReadAllBytes(model), File.ReadAllBytes(Path.Combine(work, "models", "tiny-1.gguf")));
        Assert.Contains("tiny-1", r.Stdout);
        File.Delete(model);
    }

    [Theory]
    [InlineData("--name must be", "cluster", "deploy", "MODEL", "--name", "bad name")]
    [InlineData("does not exist", "cluster", "deploy", "missing.gguf", "--name", "x")]
    [InlineData("--model FILE is required", "chat")]
    [InlineData("--model FILE is required", "test")]
    [InlineData("--sessions", "bench", "serve", "--sessions", "0")]
    [InlineData("--warmup >= 0", "bench", "serve", "--warmup", "-1")]
    public void Command_BadInput_OneErrorLineExit2(string expected, params string[] args)
    {
        string model = TestModels.WriteGguf(TestModels.Tiny(), seed: 3);
        args = args.Select(a => a == "MODEL" ? model : a).ToArray();

        var r = DuckProcess.Run(work, args);

        Assert.Equal(2, r.ExitCode);
        Assert.Contains(expected, r.Stderr);
        Assert.Single(r.Stderr.Trim().Split('\n'));
        File.Delete(model);
    }

    // The engine benchmark names the kernel paths it ran: the ternary kernel and, over an int8 cache, the attention's
    // q·k dots (AVX-VNNI, else AVX2), the same the test process sees on this CPU. The second case forces the serving
    // path (the lookup kernel where AVX-512BW exists) on 8 sessions, the smallest batch it takes.
    [Theory]
    [InlineData("int8", false)]
    [InlineData("bf16", true)]
    public void BenchInfer_Json_ReportsFiguresAndKernelPaths(string kv, bool batchedPath)
    {
        string model = TestModels.WriteGguf(TestModels.Tiny(), seed: 3);
        var kernel = batchedPath ? Duck.Inference.Kernels.TernaryMatMul.BestBatched : Duck.Inference.Kernels.TernaryMatMul.Best;
        int batch = batchedPath ? Duck.Inference.Kernels.TernaryMatMul.LookupMinTokens : 2;

        var r = DuckProcess.Run(work, ["bench", "infer", "--model", model, "--prompt-tokens", "8", "--generate-tokens", "8",
            "--batch", batch.ToString(), "--repeat", "1", "--kv-cache", kv, "--json", .. (batchedPath ? new[] { "--kernel", kernel.ToString().ToLowerInvariant() } : [])]);

        Assert.True(r.ExitCode == 0, r.Stderr);
        var j = System.Text.Json.JsonDocument.Parse(r.Stdout).RootElement;
        Assert.Equal(kernel.ToString(), j.GetProperty("kernel").GetString());
        Assert.Equal(kv == "int8" ? Duck.Inference.Kernels.AttentionKernels.DotPath.ToString() : null, j.GetProperty("attention_kernel").GetString());
        Assert.Equal(kv, j.GetProperty("kv_cache").GetString());
        Assert.Equal(batch, j.GetProperty("batch").GetInt32());
        Assert.True(j.GetProperty("decode_tokens_per_s").GetDouble() > 0);
        Assert.True(j.GetProperty("prefill_tokens_per_s").GetDouble() > 0);
        File.Delete(model);
    }

    [Fact]
    public void ClusterDeploy_NotAGgufFile_Exit2()
    {
        File.WriteAllText(Path.Combine(work, "fake.gguf"), "not a model");

        var r = DuckProcess.Run(work, "cluster", "deploy", "fake.gguf", "--name", "fake");

        Assert.Equal(2, r.ExitCode);
        Assert.False(File.Exists(Path.Combine(work, "runs", "cluster", "models", "fake.gguf")));
    }

    [Theory]
    [InlineData("test", "--cluster", "--url")]
    [InlineData("bench", "serve", "--seconds", "1", "--url")]
    public void ClusterCommand_NothingListening_Exit2(params string[] args)
    {
        var r = DuckProcess.Run(work, [.. args, $"http://127.0.0.1:{ClosedPort()}"]);

        Assert.Equal(2, r.ExitCode);
        Assert.Single(r.Stderr.Trim().Split('\n'));
    }
}
