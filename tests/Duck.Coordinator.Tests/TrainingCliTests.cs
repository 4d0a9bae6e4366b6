using System.Text.Json.Nodes;

namespace Duck.Coordinator.Tests;

public class TrainingCliTests : IDisposable
{
    readonly string work = Directory.CreateTempSubdirectory("duck-cli-").FullName;

    [Fact]
    public void Info_SmallPresetJson_HasPrototypeParameterCounts()
    {
        var r = DuckProcess.Run(work, "info", "--preset", "small", "--json");

        Assert.True(r.ExitCode == 0, r.Stderr);
        var o = JsonNode.Parse(r.Stdout)!;
        Assert.Equal(123_532_032L, o["ternary_parameters"]!.GetValue<long>());
        Assert.Equal(162_182_400L, o["total_parameters"]!.GetValue<long>());
        Assert.Equal(38_650_368L, o["full_precision_parameters"]!.GetValue<long>());
    }

    [Theory]
    [InlineData("unknown preset 'huge'", "train", "--preset", "huge")]
    [InlineData("no prepared data", "train", "--preset", "tiny", "--data", "nowhere")]
    [InlineData("learning rate 5 must be in (0, 1)", "train", "--preset", "tiny", "--lr", "5", "--data", "nowhere")]
    [InlineData("does not exist", "eval", "--checkpoint", "missing-run")]
    public void Command_BadInput_PrintsOneErrorLineAndExits2(string expected, params string[] args)
    {
        var r = DuckProcess.Run(work, args);

        Assert.Equal(2, r.ExitCode);
        Assert.Contains(expected, r.Stderr);
        Assert.Single(r.Stderr.Trim().Split('\n'));
    }

    [Fact]
    public void Train_UnwritableOutput_FailsWithOneLine()
    {
        string file = Path.Combine(work, "a-file");
        File.WriteAllText(file, "");

        var r = DuckProcess.Run(work, "train", "--preset", "tiny", "--out", Path.Combine(file, "run"));

        Assert.Equal(2, r.ExitCode);
        Assert.Contains("cannot write to output folder", r.Stderr);
    }

    [Fact]
    public void TrainEvalResume_TinyOnSmallCorpus_WorkEndToEnd()
    {
        DuckProcess.WriteTextCorpus(work);
        Assert.Equal(0, DuckProcess.Run(work, "data", "prepare", "--input", "texts", "--out", "data/brown").ExitCode);
        string[] Train(int steps, params string[] more) => new[] { "train", "--preset", "tiny", "--steps", steps.ToString(), "--batch-size", "2",
            "--seq-len", "32", "--eval-every", "3", "--eval-batches", "2", "--checkpoint-every", "3", "--threads", "1", "--out", "run", "--json" }
            .Concat(more).ToArray();

        var first = DuckProcess.Run(work, Train(6));
        var again = DuckProcess.Run(work, Train(6));
        var resumed = DuckProcess.Run(work, Train(8, "--resume"));
        var eval = DuckProcess.Run(work, "eval", "--checkpoint", "run", "--batches", "2", "--json");

        Assert.True(first.ExitCode == 0, first.Stderr);
        var lines = first.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => JsonNode.Parse(l)!).ToList();
        var steps = lines.Where(l => (string?)l["event"] == "step").ToList();
        Assert.Equal(6, steps.Count);
        Assert.All(steps, s => Assert.True(s["loss"]!.GetValue<double>() > 0 && s["tokens_per_s"]!.GetValue<double>() > 0 && s["lr"] is not null));
        Assert.Equal(2, lines.Count(l => l["val_loss"] is not null && (string?)l["event"] == "eval"));
        Assert.True(File.Exists(Path.Combine(work, "run", "loss.svg")));
        Assert.Equal(2, again.ExitCode);
        Assert.Contains("--resume", again.Stderr);
        Assert.True(resumed.ExitCode == 0, resumed.Stderr);
        Assert.Equal(new[] { 7, 8 }, resumed.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => JsonNode.Parse(l)!)
            .Where(l => (string?)l["event"] == "step").Select(l => l["step"]!.GetValue<int>()));
        Assert.True(eval.ExitCode == 0, eval.Stderr);
        Assert.Equal(8, JsonNode.Parse(eval.Stdout)!["step"]!.GetValue<int>());
    }

    [Fact]
    public void Eval_CorruptedCheckpoint_NamesTheFile()
    {
        DuckProcess.WriteTextCorpus(work);
        DuckProcess.Run(work, "data", "prepare", "--input", "texts", "--out", "data/brown");
        DuckProcess.Run(work, "train", "--preset", "tiny", "--steps", "1", "--batch-size", "2", "--seq-len", "16", "--threads", "1", "--out", "run");
        string model = Directory.GetFiles(Path.Combine(work, "run", "checkpoints"), "model.safetensors", SearchOption.AllDirectories).Single();
        var bytes = File.ReadAllBytes(model);
        bytes[^10] ^= 0xFF;
        File.WriteAllBytes(model, bytes);

        var r = DuckProcess.Run(work, "eval", "--checkpoint", "run");

        Assert.Equal(2, r.ExitCode);
        Assert.Contains("model.safetensors", r.Stderr);
    }

    public void Dispose() => Directory.Delete(work, recursive: true);
}
