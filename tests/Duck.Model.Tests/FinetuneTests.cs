// Supervised fine-tuning: the batches train on exactly the replies, the loss skips everything else, a resumed
// source continues with the same rows, and a tiny model fine-tuned on a few conversations answers them word for word
// through the engine (exported to GGUF, greedy decoding), ending its turn.
using Duck.Core.Data;
using Duck.Core.Model;
using Duck.Core.Persona;
using Duck.Core.Text;
using Duck.Inference.Engine;
using Duck.Inference.Export;
using static TorchSharp.torch;

namespace Duck.Model.Tests;

public class FinetuneTests : IDisposable
{
    readonly string dir = Directory.CreateTempSubdirectory("duck-finetune-").FullName;

    static readonly Conversation[] Chats =
    [
        new(ChatMessage.User("What is your name?"), ChatMessage.Assistant("I'm Duck, a tiny ternary model.")),
        new(ChatMessage.System("You are Duck."), ChatMessage.User("How are you?"), ChatMessage.Assistant("Happy and quantized, thanks!")),
        new(ChatMessage.User("Can you fly?"), ChatMessage.Assistant("No, but my gradients do.")),
    ];

    [Fact]
    public void Batches_TrainExactlyOnReplyTokens()
    {
        var samples = SftSamples.Build(Chats, 33);
        var source = new SftBatchSource(samples, batchSize: 4, sequenceLength: 32, seed: 5);
        var inputs = new long[4 * 32];
        var targets = new long[4 * 32];
        source.Next(inputs, targets);

        // Every trained target is the next input token, and the set of trained tokens is the replies plus end of turn.
        var replyText = new List<long>();
        for (int i = 0; i < targets.Length; i++)
        {
            if (targets[i] == SftSamples.IgnoreTarget) continue;
            if ((i + 1) % 32 != 0) Assert.Equal(inputs[i + 1], targets[i]);
            replyText.Add(targets[i]);
        }
        var replies = Chats.Select(c => c.Messages[^1].Content).ToArray();
        string decoded = Gpt2Tokenizer.Shared.Decode(replyText.Select(t => (int)t).Where(t => t != ChatFormat.EndOfTurnToken).ToArray());
        Assert.Contains(replies, r => decoded.Contains(r[..10]));
        Assert.DoesNotContain("<|", decoded);
        Assert.DoesNotContain("What is your name", decoded);
        Assert.Contains((long)ChatFormat.EndOfTurnToken, replyText);
    }

    [Fact]
    public void LongConversation_IsSplitAtUserTurns_KeepingTheSystemMessage()
    {
        var longChat = new Conversation(ChatMessage.System("You are Duck."),
            ChatMessage.User("Hello there, my friend!"), ChatMessage.Assistant("Hey! What's on your mind today?"),
            ChatMessage.User("Tell me about quantization."), ChatMessage.Assistant("I keep every weight as minus one, zero or plus one."));
        int whole = ChatFormat.Encode(longChat).Tokens.Length;
        var samples = SftSamples.Build([longChat], whole - 5);

        Assert.Equal(2, samples.Count);
        string second = Gpt2Tokenizer.Shared.Decode(samples[1].Tokens);
        Assert.StartsWith("<|system|>\nYou are Duck.\n<|user|>\nTell me about quantization.", second);
        Assert.All(samples, s => Assert.True(s.Tokens.Length <= whole - 5));
    }

    [Fact]
    public void Mix_SpreadsPretrainingRowsEvenly_AndResumeContinuesTheSameRows()
    {
        string shardPath = Path.Combine(dir, "text.ducktok");
        TokenShard.Write(shardPath, Enumerable.Range(0, 4000).Select(i => (ushort)(100 + i % 500)).ToArray(), documentCount: 1);
        var shard = TokenShard.Open(shardPath);
        var samples = SftSamples.Build(Chats, 33);
        var a = new SftBatchSource(samples, 8, 32, seed: 9, shard, mix: 0.25);
        Assert.Equal(25, Enumerable.Range(0, 100).Count(r => a.IsPretrainingRow(r)), 1.0);

        var inputs = new long[8 * 32];
        var targets = new long[8 * 32];
        a.Next(inputs, targets);
        var state = a.SaveState();
        var expected = new List<long[]>();
        for (int i = 0; i < 3; i++) { a.Next(inputs, targets); expected.Add([.. inputs, .. targets]); }

        var b = new SftBatchSource(samples, 8, 32, seed: 9, shard, mix: 0.25);
        b.RestoreState(state);
        for (int i = 0; i < 3; i++) { b.Next(inputs, targets); Assert.Equal(expected[i], (long[])[.. inputs, .. targets]); }
        // Pretraining rows train on every token.
        int pretrainingRows = Enumerable.Range(0, 8).Count(r => targets.AsSpan(r * 32, 32).IndexOf(SftSamples.IgnoreTarget) < 0);
        Assert.True(pretrainingRows >= 1, "a batch of 8 rows at a 25% mix holds pretraining rows");
    }

    [Fact]
    public void Loss_SkipsIgnoredTargets()
    {
        using var scope = NewDisposeScope(); // holds every temporary: an unheld one may be finalized mid-call (see AdamW.ZeroGrad)
        using var model = new DuckTransformer(ModelPresets.Get("tiny"), seed: 3);
        model.eval();
        using var noGrad = no_grad();
        var tokens = ArrayBatchSource.Pattern(16, 300, seed: 4).Select(t => (long)t).ToArray();
        var targets = ArrayBatchSource.Pattern(16, 300, seed: 5).Select(t => (long)t).ToArray();
        var masked = targets.Select((t, i) => i % 3 == 0 ? t : SftSamples.IgnoreTarget).ToArray();
        using var x = tensor(tokens, new long[] { 1, 16 });
        using var logits = model.forward(x);
        using var all = nn.functional.cross_entropy(logits.view(16, -1), tensor(targets), reduction: nn.Reduction.None);
        double expected = Enumerable.Range(0, 16).Where(i => i % 3 == 0).Average(i => all[i].item<float>());

        float actual = model.Loss(x, tensor(masked, new long[] { 1, 16 })).item<float>();

        Assert.Equal(expected, actual, 4);
    }

    [Fact]
    public async Task TinyModel_FinetunedOnAFewConversations_ReproducesThemGreedily()
    {
        var config = ModelPresets.Get("tiny");
        var options = TrainingOptions.ForPreset("tiny") with
        {
            Steps = 120, BatchSize = 4, SequenceLength = 64, WarmupSteps = 10, LearningRate = 1e-2, SecondStageLearningRate = 5e-3,
            WeightDecay = 0, EvalEvery = 0, CheckpointEvery = 0, Threads = 1,
        };
        var samples = SftSamples.Build(Chats, options.SequenceLength + 1);
        using var trainer = new Trainer(config, options, new SftBatchSource(samples, options.BatchSize, options.SequenceLength, seed: 7), null, null);
        await trainer.RunAsync();

        string path = Path.Combine(dir, "tiny-sft.gguf");
        var tensors = ModelWeights.Export(trainer.Model).ToDictionary(t => t.Name, t => t.Data);
        using (var f = File.Create(path)) GgufExporter.Export(config, tensors, f, new ExportOptions { IncludeTokenizer = false });
        using var engine = InferenceModel.Load(path, threads: 1);
        var replies = PersonaEvaluation.Replies(engine, Chats, new SamplingOptions { Temperature = 0, TopK = 0, MaxTokens = 24 }).ToList();

        Assert.Equal(Chats.Select(c => c.Messages[^1].Content), replies.Select(r => r.Reply));
        Assert.All(replies, r => Assert.True(r.EndedCleanly, $"'{r.Reply}' did not end its turn"));
        var loss = PersonaEvaluation.ReplyLoss(engine, Chats);
        Assert.True(loss.Loss < 0.5, $"reply loss {loss.Loss:F3} after fitting the conversations");
    }

    public void Dispose() => Directory.Delete(dir, recursive: true);
}
