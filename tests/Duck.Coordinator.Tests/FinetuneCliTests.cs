// `duck finetune` and `duck eval persona` end to end on the tiny preset: pretrain a few steps, fine-tune on a small
// persona file (resuming once), export, and evaluate with the base found through the GGUF metadata; plus bad input.
using System.Text.Json.Nodes;

namespace Duck.Coordinator.Tests;

public class FinetuneCliTests : IDisposable
{
    readonly string work = Directory.CreateTempSubdirectory("duck-ft-cli-").FullName;

    static string Line(string user, string reply, string? system = null) =>
        "{\"messages\":[" + (system is null ? "" : $"{{\"role\":\"system\",\"content\":\"{system}\"}},") +
        $"{{\"role\":\"user\",\"content\":\"{user}\"}},{{\"role\":\"assistant\",\"content\":\"{reply}\"}}]}}";

    void WritePersona()
    {
        File.WriteAllLines(Path.Combine(work, "persona.jsonl"),
        [
            Line("Hi!", "Hey! I'm Duck. What's on your mind?"),
            Line("What are you?", "A small ternary model trained on CPUs.", "You are Duck."),
            Line("Do you like code?", "I love it, especially C#."),
            Line("How are you?", "Cheerful and quantized, thanks!"),
        ]);
        File.WriteAllLines(Path.Combine(work, "persona.heldout.jsonl"),
        [
            Line("Hello!", "Hey there! I'm Duck."),
            Line("Who are you?", "I'm Duck, a tiny ternary model."),
        ]);
    }

    static List<JsonNode> JsonLines(string stdout) =>
        stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => JsonNode.Parse(l)!).ToList();

    [Fact]
    public void FinetuneResumeExportEvalPersona_Tiny_WorkEndToEnd()
    {
        DuckProcess.WriteTextCorpus(work);
        WritePersona();
        Assert.Equal(0, DuckProcess.Run(work, "data", "prepare", "--input", "texts", "--out", "data/brown").ExitCode);
        var pretrain = DuckProcess.Run(work, "train", "--preset", "tiny", "--steps", "3", "--batch-size", "2", "--seq-len", "32", "--threads", "1", "--out", "base");
        Assert.True(pretrain.ExitCode == 0, pretrain.Stderr);
        string[] Finetune(int steps, params string[] more) => new[] { "finetune", "--data", "persona.jsonl", "--steps", steps.ToString(),
            "--batch-size", "2", "--eval-every", "2", "--checkpoint-every", "2", "--threads", "1", "--out", "ft", "--json" }.Concat(more).ToArray();

        var first = DuckProcess.Run(work, Finetune(4, "--base", "base"));
        var resumed = DuckProcess.Run(work, Finetune(6, "--resume"));
        var export = DuckProcess.Run(work, "export", "--checkpoint", "ft", "--out", "ft.gguf");
        var eval = DuckProcess.Run(work, "eval", "persona", "--model", "ft.gguf", "--data", "persona.heldout.jsonl", "--max-tokens", "8", "--json");

        Assert.True(first.ExitCode == 0, first.Stderr);
        var lines = JsonLines(first.Stdout);
        Assert.Equal(new[] { 1, 2, 3, 4 }, lines.Where(l => (string?)l["event"] == "step").Select(l => l["step"]!.GetValue<int>()));
        Assert.Equal(new[] { 0, 2, 4 }, lines.Where(l => (string?)l["event"] == "eval").Select(l => l["step"]!.GetValue<int>()));
        Assert.True(resumed.ExitCode == 0, resumed.Stderr);
        Assert.Equal(new[] { 5, 6 }, JsonLines(resumed.Stdout).Where(l => (string?)l["event"] == "step").Select(l => l["step"]!.GetValue<int>()));
        Assert.True(export.ExitCode == 0, export.Stderr);
        Assert.True(eval.ExitCode == 0, eval.Stderr);
        var o = JsonNode.Parse(eval.Stdout)!;
        double before = o["loss_before"]!.GetValue<double>(), after = o["loss_after"]!.GetValue<double>();
        Assert.True(before > 0 && after > 0, eval.Stdout);
        Assert.Equal(1 - after / before, o["loss_reduction"]!.GetValue<double>(), 6);
        Assert.InRange(o["clean_end_rate"]!.GetValue<double>(), 0, 1);
        Assert.Equal(8, o["replies"]!.AsArray().Count);
        Assert.EndsWith(Path.Combine("base", "checkpoints", "step-00000003"), o["base"]!.GetValue<string>());
    }

    [Fact]
    public void Finetune_BadInput_PrintsOneErrorLineAndExits2()
    {
        WritePersona();
        File.AppendAllText(Path.Combine(work, "persona.jsonl"), "{\"messages\":[{\"role\":\"user\",\"content\":\"no reply\"}]}\n");
        DuckProcess.WriteTextCorpus(work);
        DuckProcess.Run(work, "data", "prepare", "--input", "texts", "--out", "data/brown");
        DuckProcess.Run(work, "train", "--preset", "tiny", "--steps", "1", "--batch-size", "2", "--seq-len", "16", "--threads", "1", "--out", "base");

        var noBase = DuckProcess.Run(work, "finetune", "--data", "persona.jsonl");
        var badFile = DuckProcess.Run(work, "finetune", "--base", "base", "--data", "persona.jsonl", "--out", "ft");
        var badMix = DuckProcess.Run(work, "finetune", "--base", "base", "--mix", "1.5", "--out", "ft2");
        var noRecordedBase = DuckProcess.Run(work, "eval", "persona", "--model", "missing.gguf");
        var clusterNoBase = DuckProcess.Run(work, "cluster", "finetune", "--base", "nowhere", "--data", "persona.jsonl");
        var clusterBadFile = DuckProcess.Run(work, "cluster", "finetune", "--base", "base", "--data", "persona.jsonl");

        foreach (var (r, expected) in new[] { (noBase, "--base is required"), (badFile, "persona.jsonl:5:"), (badMix, "--mix must be in [0, 1)"),
                     (noRecordedBase, "does not exist"), (clusterNoBase, "'nowhere' does not exist"), (clusterBadFile, "persona.jsonl:5:") })
        {
            Assert.Equal(2, r.ExitCode);
            Assert.Contains(expected, r.Stderr);
            Assert.Single(r.Stderr.Trim().Split('\n'));
        }
    }

    public void Dispose() => Directory.Delete(work, recursive: true);
}
