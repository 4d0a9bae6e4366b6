// The continuous batcher against the plain generator: greedy replies are the same token for token whether a
// session decodes alone or batched with others; a follow-up prompt reuses the cached prefix; cancellation stops.
using Duck.Inference.Engine;

namespace Duck.Inference.Tests;

public sealed class ContinuousBatcherTests : IDisposable
{
    readonly string path = TestModels.WriteGguf(TestModels.Tiny(), seed: 21);
    readonly InferenceModel model;

    public ContinuousBatcherTests() => model = InferenceModel.Load(path);

    public void Dispose()
    {
        model.Dispose();
        File.Delete(path);
    }

    static readonly SamplingOptions Greedy = new() { Temperature = 0, MaxTokens = 12, EndOfTextToken = null };

    static int[] Prompt(int seed) => Enumerable.Range(0, 5 + seed).Select(i => (i * 97 + seed * 31) % 50000 + 1).ToArray();

    static async Task<(string Text, GenerationSummary Summary)> ReadAsync(GenerationStream stream)
    {
        var text = new System.Text.StringBuilder();
        await foreach (var piece in stream.Text.ReadAllAsync()) text.Append(piece);
        return (text.ToString(), await stream.Completion);
    }

    [Fact]
    public async Task Submit_FourConcurrentGreedy_SameTextAsUnbatchedGeneration()
    {
        var expected = Enumerable.Range(0, 4).Select(i =>
            string.Concat(TextGenerator.Generate(new InferenceSession(model), Prompt(i), Greedy, new GenerationStats()))).ToArray();
        using var batcher = new ContinuousBatcher(model);

        var streams = Enumerable.Range(0, 4).Select(i => batcher.Submit(new InferenceSession(model), Prompt(i), Greedy)).ToArray();
        var results = await Task.WhenAll(streams.Select(ReadAsync));

        for (int i = 0; i < 4; i++)
        {
            Assert.Equal(expected[i], results[i].Text);
            Assert.Equal(12, results[i].Summary.GeneratedTokens);
            Assert.Equal(StopReason.MaxTokens, results[i].Summary.StopReason);
        }
        Assert.True(batcher.DecodedTokens > batcher.DecodeSteps, $"{batcher.DecodedTokens} tokens in {batcher.DecodeSteps} passes: nothing was batched");
        Assert.Equal(0, batcher.ActiveGenerations);
    }

    [Fact]
    public async Task Submit_FollowUpPrompt_PrefillsOnlyTheNewTokens()
    {
        using var batcher = new ContinuousBatcher(model);
        var session = new InferenceSession(model);
        int[] first = Prompt(3);
        var (_, one) = await ReadAsync(batcher.Submit(session, first, Greedy));
        int[] followUp = [.. first, 5, 6, 7];

        var (_, two) = await ReadAsync(batcher.Submit(session, followUp, Greedy));

        Assert.Equal(0, one.CachedTokens);
        Assert.Equal(first.Length, two.CachedTokens);
        Assert.Equal(followUp.Length, two.PromptTokens);
    }

    [Fact]
    public async Task Submit_CancelledToken_StopsWithCancelled()
    {
        using var batcher = new ContinuousBatcher(model);
        using var cts = new CancellationTokenSource();
        cts.Cancel();

        var (text, summary) = await ReadAsync(batcher.Submit(new InferenceSession(model), Prompt(1), Greedy with { MaxTokens = 40 }, cts.Token));

        Assert.Equal(StopReason.Cancelled, summary.StopReason);
        Assert.Equal(0, summary.GeneratedTokens);
        Assert.Equal("", text);
        Assert.Equal(0, batcher.ActiveGenerations);
    }

    [Fact]
    public void Submit_PromptFillingTheContext_Throws()
    {
        using var batcher = new ContinuousBatcher(model);

        var e = Assert.Throws<ArgumentException>(() => batcher.Submit(new InferenceSession(model), new int[model.Config.ContextLength], Greedy));

        Assert.Contains("context window", e.Message);
    }
}
