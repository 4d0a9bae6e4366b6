// Runs the built `duck` tool as a child process, the way a user or script does, and captures its output.
using System.Diagnostics;

namespace Duck.Coordinator.Tests;

sealed record DuckResult(int ExitCode, string Stdout, string Stderr);

static class DuckProcess
{
    public static DuckResult Run(string workingDirectory, params string[] args) => RunWithInput(workingDirectory, null, args);

    public static DuckResult RunWithInput(string workingDirectory, string? stdin, params string[] args)
    {
        var psi = new ProcessStartInfo("dotnet")
        {
            WorkingDirectory = workingDirectory,
            RedirectStandardOutput = true, RedirectStandardError = true, RedirectStandardInput = true,
            UseShellExecute = false,
        };
        psi.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "duck.dll"));
        foreach (var a in args) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        if (stdin is not null) p.StandardInput.Write(stdin);
        p.StandardInput.Close();
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(TimeSpan.FromMinutes(3)))
        {
            p.Kill(entireProcessTree: true);
            throw new TimeoutException($"duck {string.Join(' ', args)} did not finish in 3 minutes");
        }
        return new DuckResult(p.ExitCode, stdout.Result, stderr.Result);
    }

    /// <summary>A folder of small English text files, enough for a tiny data set.</summary>
    public static string WriteTextCorpus(string folder, int files = 12)
    {
        string[] sentences =
        {
            "The duck swam across the quiet pond in the morning.", "A small model can learn simple patterns from text.",
            "The farmer counted his ducks before the long winter.", "Every evening the children read stories by the fire.",
            "Ternary weights are minus one, zero or plus one.", "The river carried leaves past the old stone bridge.",
            "She wrote a letter to her brother in the city.", "Training on a CPU cluster is slow but it works.",
        };
        var dir = Directory.CreateDirectory(Path.Combine(folder, "texts")).FullName;
        var rng = new Random(42);
        for (int f = 0; f < files; f++)
        {
            var lines = Enumerable.Range(0, 60).Select(_ => sentences[rng.Next(sentences.Length)]);
            File.WriteAllText(Path.Combine(dir, $"doc{f:D2}.txt"), string.Join(" ", lines));
        }
        return dir;
    }
}
