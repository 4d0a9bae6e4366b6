// The continuous batcher against the plain generator: greedy replies are the same token for token whether a
// session decodes alone or batched with others; a follow-up prompt reuses the cached prefix, and a prompt that
// leaves out a cached span reuses what follows it (moved down in the KV cache); cancellation stops.
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
    public async Task Submit_TenConcurrentGreedy_OnTheServingPath_SameTextAsUnbatchedGeneration()
    {
        // Ten decode rows per pass reach the lookup kernel a serving silo runs (TernaryMatMul.BestBatched).
        var expected = Enumerable.Range(0, 10).Select(i =>
            string.Concat(TextGenerator.Generate(new InferenceSession(model), Prompt(i), Greedy, new GenerationStats()))).ToArray();
        model.KernelPath = Kernels.TernaryMatMul.BestBatched;
        model.PrepareLookup();
        using var batcher = new ContinuousBatcher(model);

        var streams = Enumerable.Range(0, 10).Select(i => batcher.Submit(new InferenceSession(model), Prompt(i), Greedy)).ToArray();
        var results = await Task.WhenAll(streams.Select(ReadAsync));

        for (int i = 0; i < 10; i++) Assert.Equal(expected[i], results[i].Text);
        Assert.True(batcher.DecodedTokens >= 2 * batcher.DecodeSteps, $"{batcher.DecodedTokens} tokens in {batcher.DecodeSteps} passes: too little was batched");
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
    public async Task Submit_SamplesFromThePass_LastLogitsUnkeptUntilTheNextAppend()
    {
        using var batcher = new ContinuousBatcher(model);
        var session = new InferenceSession(model);
        await ReadAsync(batcher.Submit(session, Prompt(2), Greedy));

        // The batcher sampled from its pass's buffer: the session kept no copy to read.
        Assert.Throws<InvalidOperationException>(() => session.LastLogits.Length);
        var reference = new InferenceSession(model);
        var expected = reference.Append([.. session.Tokens, 42]).ToArray();
        var actual = session.Append([42]).ToArray();
        Assert.Equal(expected.Length, actual.Length);
        Assert.True(expected.Zip(actual).Max(p => Math.Abs(p.First - p.Second)) < 1e-4f, "the next append's logits differ from a fresh prefill's");
    }

    /// <summary>
    /// A 30-token prompt, then the window moving on: the first 3 tokens stay, the next 10 go, the other 17 follow,
    /// then two new tokens. Returns the second generation's summary, the session and the second prompt.
    /// </summary>
    async Task<(GenerationSummary Summary, InferenceSession Session, int[] Moved)> MoveWindowAsync(int shiftMinTokens)
    {
        using var batcher = new ContinuousBatcher(model) { ShiftMinTokens = shiftMinTokens };
        var session = new InferenceSession(model);
        int[] first = [.. Enumerable.Range(0, 30).Select(i => (i * 131 + 7) % 50000 + 1)];
        await ReadAsync(batcher.Submit(session, first, Greedy));
        int[] moved = [.. first[..3], .. first[13..], 11, 12];
        return ((await ReadAsync(batcher.Submit(session, moved, Greedy))).Summary, session, moved);
    }

    [Fact]
    public async Task Submit_PromptLeavingOutACachedSpan_MovesTheRestDownInsteadOfPrefillingIt()
    {
        var (summary, session, moved) = await MoveWindowAsync(shiftMinTokens: 4);

        Assert.Equal(3 + 17, summary.CachedTokens);
        Assert.Equal(moved.Length, summary.PromptTokens);
        Assert.Equal(12, summary.GeneratedTokens);
        Assert.Equal(moved, session.Tokens.Take(moved.Length));
    }

    [Fact]
    public async Task Submit_ShiftOff_PrefillsEverythingAfterTheCommonPrefix() =>
        Assert.Equal(3, (await MoveWindowAsync(shiftMinTokens: 0)).Summary.CachedTokens);

    [Theory]
    [InlineData(new[] { 1, 2, 3, 4, 5, 6 }, new[] { 1, 4, 5, 6, 9 }, 1, 2, 3)] // drop 2 3, then 4 5 6 follow
    [InlineData(new[] { 1, 2, 3, 4, 5, 6 }, new[] { 1, 4, 5, 6 }, 1, 2, 2)]    // the prompt's last token is run again
    [InlineData(new[] { 1, 2, 3 }, new[] { 1, 7, 8 }, 1, 0, 0)]                // nothing matches after a removal
    [InlineData(new[] { 1, 2, 9, 3, 9, 3, 4 }, new[] { 1, 9, 3, 4, 0 }, 1, 3, 3)] // the longest run wins over the first
    public void LongestShiftedMatch_FindsTheRemovalWithTheLongestFollowingRun(int[] cached, int[] prompt, int start, int drop, int follow) =>
        Assert.Equal((drop, follow), ContinuousBatcher.LongestShiftedMatch(cached, prompt, start));

    [Theory]
    [InlineData(KvCacheType.Bf16)]
    [InlineData(KvCacheType.Int8)]
    public void RemoveWithoutReplay_FirstLayerEntries_EqualThoseOfASequenceThatNeverHadTheSpan(KvCacheType type)
    {
        // Layer 0's key and value of a token depend only on the token and its position, so after the span is removed
        // they must match a fresh prefill of the shortened sequence: values exactly, keys up to the rounding of the
        // rotation back (bf16) or of quantizing again (int8).
        model.KvCacheType = type;
        try
        {
            int[] all = [.. Enumerable.Range(0, 24).Select(i => (i * 173 + 11) % 50000 + 1)];
            var shifted = new InferenceSession(model);
            shifted.Append(all);
            shifted.RemoveWithoutReplay(5, 7);
            var fresh = new InferenceSession(model);
            fresh.Append([.. all[..5], .. all[12..]]);

            Assert.Equal(fresh.Tokens, shifted.Tokens);
            var c = model.Config;
            KvCache a = shifted.Cache, b = fresh.Cache;
            for (int h = 0; h < c.NumHeads; h++)
                for (int p = 0; p < fresh.Length; p++)
                {
                    var (ka, va) = Entry(a, h, p);
                    var (kb, vb) = Entry(b, h, p);
                    Assert.Equal(vb, va);
                    // int8: the old and the new key each rounded to half a step, the fresh one too: within 2 steps.
                    float tolerance = type == KvCacheType.Int8 ? 2 * MathF.Max(a.KScale[0][h * a.Capacity + p], b.KScale[0][h * b.Capacity + p]) : kb.Max(MathF.Abs) / 64;
                    for (int d = 0; d < c.HeadDim; d++)
                        Assert.True(MathF.Abs(ka[d] - kb[d]) <= tolerance, $"head {h} position {p} dim {d}: {ka[d]} vs {kb[d]}");
                    if (type == KvCacheType.Int8)
                        Assert.Equal(a.K8[0].AsSpan(a.Offset(h, p), c.HeadDim).ToArray().Sum(x => (int)x), a.KSum[0][h * a.Capacity + p]);
                }
            var logits = shifted.Append([5]).ToArray();
            Assert.All(logits, x => Assert.True(float.IsFinite(x)));

            // The session's shift splits the layers across the model's pool: every layer's kept positions as the shift
            // on one thread gives them (the cache's arrays past them are uninitialized).
            var serial = new InferenceSession(model);
            serial.Append(all);
            int half = c.HeadDim / 2, kept = all.Length - 7;
            serial.Cache.Shift(5, 7, all.Length, model.RopeCos.AsSpan(7 * half, half), model.RopeSin.AsSpan(7 * half, half));
            var pooled = new InferenceSession(model);
            pooled.Append(all);
            pooled.RemoveWithoutReplay(5, 7);
            KvCache x = serial.Cache, y = pooled.Cache;
            for (int l = 0; l < c.NumLayers; l++)
                for (int h = 0; h < c.NumHeads; h++)
                {
                    int si = x.ScaleIndex(h, 0);
                    if (type == KvCacheType.Int8)
                    {
                        Assert.Equal(x.KScale[l].AsSpan(si, kept).ToArray(), y.KScale[l].AsSpan(si, kept).ToArray());
                        Assert.Equal(x.VScale[l].AsSpan(si, kept).ToArray(), y.VScale[l].AsSpan(si, kept).ToArray());
                        Assert.Equal(x.KSum[l].AsSpan(si, kept).ToArray(), y.KSum[l].AsSpan(si, kept).ToArray());
                    }
                    for (int p = 0; p < kept; p++)
                    {
                        int o = x.Offset(h, p);
                        if (type == KvCacheType.Int8)
                        {
                            Assert.Equal(x.K8[l].AsSpan(o, c.HeadDim).ToArray(), y.K8[l].AsSpan(o, c.HeadDim).ToArray());
                            Assert.Equal(x.V8[l].AsSpan(o, c.HeadDim).ToArray(), y.V8[l].AsSpan(o, c.HeadDim).ToArray());
                        }
                        else
                        {
                            Assert.Equal(x.K[l].AsSpan(o, c.HeadDim).ToArray(), y.K[l].AsSpan(o, c.HeadDim).ToArray());
                            Assert.Equal(x.V[l].AsSpan(o, c.HeadDim).ToArray(), y.V[l].AsSpan(o, c.HeadDim).ToArray());
                        }
                    }
                }
        }
        finally { model.KvCacheType = KvCacheType.Bf16; }

        (float[] Key, float[] Value) Entry(KvCache cache, int h, int p)
        {
            int o = cache.Offset(h, p), hd = model.Config.HeadDim, si = h * cache.Capacity + p;
            return cache.Type == KvCacheType.Int8
                ? (cache.K8[0].AsSpan(o, hd).ToArray().Select(x => x * cache.KScale[0][si]).ToArray(), cache.V8[0].AsSpan(o, hd).ToArray().Select(x => x * cache.VScale[0][si]).ToArray())
                : (cache.K[0].AsSpan(o, hd).ToArray().Select(AttentionKernelsFromBf16).ToArray(), cache.V[0].AsSpan(o, hd).ToArray().Select(AttentionKernelsFromBf16).ToArray());
        }
    }

    static float AttentionKernelsFromBf16(ushort x) => Duck.Inference.Kernels.AttentionKernels.FromBf16(x);

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
