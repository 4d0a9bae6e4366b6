// Export from a safetensors checkpoint folder made in the test (and from a run folder), the --llama-cpp
// restriction, the exported tokenizer, and the chat loop driven through text streams on a tiny model.
using System.Text.Json;
using Duck.Core.Checkpoints;
using Duck.Core.Model;
using Duck.Core.Text;
using Duck.Inference.Engine;
using Duck.Inference.Export;
using Duck.Inference.Gguf;

namespace Duck.Inference.Tests;

public class ExportAndChatTests : IDisposable
{
    readonly string dir = Path.Combine(Path.GetTempPath(), $"duck-export-{Guid.NewGuid():N}");

    public void Dispose() { if (Directory.Exists(dir)) Directory.Delete(dir, recursive: true); }

    /// <summary>Saves a committed checkpoint (manifest with sizes and SHA-256) of random weights under dir/checkpoints.</summary>
    string MakeCheckpoint(ModelConfig config, long step)
    {
        var tensors = TestModels.RandomTensors(config, 21);
        using var ms = new MemoryStream();
        Safetensors.Write(ms, tensors.Select(kv => new NamedTensor(kv.Key, kv.Key.EndsWith("norm.weight") ? [kv.Value.Length] : [kv.Value.Length / (kv.Key.Contains("down") ? config.FfnDim : config.ModelDim), kv.Key.Contains("down") ? config.FfnDim : config.ModelDim], kv.Value)));
        var manager = new CheckpointManager(new FolderCheckpointStore(Path.Combine(dir, "checkpoints")), keepLast: 10);
        var manifest = new CheckpointManifest { Step = step, Model = (System.Text.Json.Nodes.JsonObject)JsonSerializer.SerializeToNode(config)! };
        string name = manager.SaveAsync(manifest, new Dictionary<string, byte[]> { ["model.safetensors"] = ms.ToArray() }).GetAwaiter().GetResult();
        return Path.Combine(dir, "checkpoints", name);
    }

    [Fact]
    public void Read_CorruptedCheckpoint_IsRejectedNamingTheFile()
    {
        string folder = MakeCheckpoint(TestModels.Tiny(vocab: 1000), 3);
        string model = Path.Combine(folder, "model.safetensors");
        var bytes = File.ReadAllBytes(model);
        bytes[^5] ^= 0x40;
        File.WriteAllBytes(model, bytes);

        var e = Assert.Throws<InvalidDataException>(() => CheckpointReader.Read(dir));
        Assert.Contains("model.safetensors", e.Message);
    }

    [Fact]
    public void Export_FromRunFolder_LoadsNewestCheckpoint()
    {
        var config = TestModels.Tiny(vocab: 1000);
        MakeCheckpoint(config with { NumLayers = 1 }, 1);
        MakeCheckpoint(config, 2);
        var (read, tensors, folder) = CheckpointReader.Read(dir);
        Assert.EndsWith("step-00000002", folder);
        Assert.Equal(config, read);
        string path = Path.Combine(dir, "m.gguf");
        using (var s = File.Create(path)) GgufExporter.Export(read, tensors, s, new ExportOptions { IncludeTokenizer = false });
        using var model = InferenceModel.Load(path);
        Assert.Equal(config, model.Config);
        Assert.Equal(1000, new InferenceSession(model).Append([1, 2, 3]).Length);
    }

    [Fact]
    public void Export_LlamaCppWithUntiedHead_ThrowsTiedHeadMessage()
    {
        var config = ModelPresets.Get("tiny") with { VocabSize = 1000 };
        var e = Assert.Throws<ArgumentException>(() =>
            GgufExporter.Export(config, TestModels.RandomTensors(config, 1), Stream.Null, new ExportOptions { LlamaCpp = true }));
        Assert.Contains("needs a model trained with a tied head (--tied-head)", e.Message);
    }

    [Fact]
    public void Export_MissingTensor_ThrowsNamingIt()
    {
        var config = TestModels.Tiny(vocab: 1000);
        var tensors = TestModels.RandomTensors(config, 1);
        tensors.Remove(TensorNames.Up(1));
        var e = Assert.Throws<ArgumentException>(() => GgufExporter.Export(config, tensors, new MemoryStream(), new ExportOptions { IncludeTokenizer = false }));
        Assert.Contains(TensorNames.Up(1), e.Message);
    }

    [Fact]
    public void Export_WithTokenizer_WritesGpt2TokensAndMerges()
    {
        Directory.CreateDirectory(dir);
        var config = TestModels.Tiny(tied: true);
        string path = Path.Combine(dir, "t.gguf");
        using (var s = File.Create(path)) GgufExporter.Export(config, TestModels.RandomTensors(config, 2), s);
        using var f = GgufFile.Open(path);
        var tokens = f.Get<string[]>("tokenizer.ggml.tokens");
        Assert.Equal(50257, tokens.Length);
        Assert.Equal("Ġthe", tokens[262]);
        Assert.Equal(50000, f.Get<string[]>("tokenizer.ggml.merges").Length);
        Assert.Equal("Ġ t", f.Get<string[]>("tokenizer.ggml.merges")[0]);
        Assert.Equal("gpt2", f.Get<string>("tokenizer.ggml.model"));
        // The one chat template, in the Jinja form other runtimes read.
        Assert.Equal(Duck.Core.Text.ChatFormat.JinjaTemplate, f.Get<string>("tokenizer.chat_template"));
        Assert.Equal(f.FileBytes, GgufExporter.EstimateFileBytes(config, GgmlType.TQ2_0));
    }

    [Fact]
    public void ChatLoop_ScriptedInput_StreamsRepliesAndEndsOnEof()
    {
        var config = TestModels.Tiny();
        string path = TestModels.WriteGguf(config, seed: 31);
        try
        {
            using var model = InferenceModel.Load(path);
            var input = new StringReader("Hi Duck!\n\nHow are you?\n");
            var output = new StringWriter();
            var result = ChatLoop.Run(model, new SamplingOptions { Temperature = 0.8f, Seed = 1, MaxTokens = 12 }, input, output);
            string text = output.ToString();
            Assert.Equal(new ChatLoopResult(2, EndOfInput: true), result);
            Assert.Equal(4, text.Split("you> ").Length - 1); // two messages, the empty line, then the prompt that reads EOF
            Assert.Equal(2, text.Split("duck>").Length - 1);
        }
        finally { File.Delete(path); }
    }

    [Fact]
    public void ChatLoop_QuitAndOverlongMessage_ReportsAndStops()
    {
        var config = TestModels.Tiny();
        string path = TestModels.WriteGguf(config, seed: 33);
        try
        {
            using var model = InferenceModel.Load(path);
            string longMessage = string.Join(" ", Enumerable.Repeat("duck", 200)); // far beyond the 64-token context
            var output = new StringWriter();
            var result = ChatLoop.Run(model, new SamplingOptions { MaxTokens = 4, Seed = 2 }, new StringReader(longMessage + "\nquit\nnever read\n"), output);
            Assert.Equal(new ChatLoopResult(0, EndOfInput: false), result);
            Assert.Contains("(not sent: the message is", output.ToString());
        }
        finally { File.Delete(path); }
    }

    [Fact]
    public void ChatConversation_ManyTurns_DropsOldTurnsToStayInContext()
    {
        var config = TestModels.Tiny(); // 64-token context
        string path = TestModels.WriteGguf(config, seed: 34);
        try
        {
            using var model = InferenceModel.Load(path);
            var chat = new ChatConversation(model);
            var o = new SamplingOptions { Temperature = 0.8f, Seed = 5, MaxTokens = 10 };
            for (int turn = 0; turn < 8; turn++)
            {
                _ = string.Concat(chat.Reply($"Tell me something about turn number {turn}", o, new GenerationStats()));
                Assert.InRange(chat.Session.Length, 1, config.ContextLength);
            }
            string transcript = Gpt2Tokenizer.Shared.Decode(chat.Session.Tokens);
            Assert.Contains("<|user|>\nTell me something about turn number 7\n<|assistant|>\n", transcript);
            Assert.DoesNotContain("turn number 0", transcript); // 8 turns of ~20 tokens cannot all fit in 64
        }
        finally { File.Delete(path); }
    }

    [Fact]
    public void ChatConversation_SecondTurn_PrefillsOnlyNewTokens()
    {
        var config = TestModels.Tiny();
        string path = TestModels.WriteGguf(config, seed: 32);
        try
        {
            using var model = InferenceModel.Load(path);
            var chat = new ChatConversation(model);
            var o = new SamplingOptions { Temperature = 0, MaxTokens = 5 };
            _ = string.Concat(chat.Reply("Hello", o, new GenerationStats()));
            int afterFirst = chat.Session.Length;
            var stats = new GenerationStats();
            _ = string.Concat(chat.Reply("Again", o, stats));
            Assert.Equal(Gpt2Tokenizer.Shared.Encode(ChatTemplate.UserTurn("Again")).Length, stats.PromptTokens);
            Assert.True(chat.Session.Length > afterFirst);
        }
        finally { File.Delete(path); }
    }

    [Fact]
    public void ChatConversation_OneTurn_KeepsTheExchangeInChatFormat()
    {
        var config = TestModels.Tiny();
        string path = TestModels.WriteGguf(config, seed: 35);
        try
        {
            using var model = InferenceModel.Load(path);
            var chat = new ChatConversation(model);
            string reply = string.Concat(chat.Reply(" Hello ", new SamplingOptions { Temperature = 0, MaxTokens = 5 }, new GenerationStats()));
            int[] prompt = ChatFormat.PromptForReply([ChatMessage.User("Hello")]);
            Assert.Equal(prompt, chat.Session.Tokens.Take(prompt.Length));
            int[] exchange = [.. prompt, .. Gpt2Tokenizer.Shared.Encode(reply.Trim()), ChatFormat.EndOfTurnToken];
            Assert.Equal(exchange, chat.Session.Tokens);
        }
        finally { File.Delete(path); }
    }

    [Fact]
    public void TokenTextDecoder_Utf8SplitAcrossTokens_DecodesWholeCharacter()
    {
        // "é" is the two bytes C3 A9; GPT-2 has single-byte tokens for both.
        var vocab = Gpt2Vocabulary.Shared;
        int c3 = Enumerable.Range(0, 256).First(i => vocab.TokenBytes(i).SequenceEqual(new byte[] { 0xC3 }));
        int a9 = Enumerable.Range(0, 256).First(i => vocab.TokenBytes(i).SequenceEqual(new byte[] { 0xA9 }));
        var decoder = new TokenTextDecoder();
        Assert.Equal("", decoder.Append(c3));
        Assert.Equal("é", decoder.Append(a9));
        Assert.Equal("", decoder.Flush());
    }

    [Fact]
    public void SplitAtStop_HoldsBackPossibleStopPrefix()
    {
        var sb = new System.Text.StringBuilder("hello Us");
        var (emit, stopped) = TextGenerator.SplitAtStop(sb, ["User:"]);
        Assert.Equal(("hello ", false), (emit, stopped));
        sb.Append("er: hi");
        Assert.Equal(("", true), TextGenerator.SplitAtStop(sb, ["User:"]));
    }
}
