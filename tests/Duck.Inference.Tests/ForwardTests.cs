// The optimized engine against the plain reference forward pass on tiny random models (ternary TQ2_0/TQ1_0,
// tied and untied head, FP32 twin): logits within tolerance and equal greedy tokens; KV-cache decode equals
// full recompute; batched decode equals one session at a time; every kernel path gives the same logits.
using Duck.Core.Model;
using Duck.Inference.Engine;
using Duck.Inference.Gguf;
using Duck.Inference.Kernels;

namespace Duck.Inference.Tests;

public class ForwardTests
{
    // Engine and reference differ only in fp32 summation order (int dot × scale vs fp32 sums; float vs double
    // norms), which can flip an int8 activation rounding now and then. Logits of these tiny models are O(1-10).
    const float Tolerance = 2e-3f;

    static readonly int[] Prompt = [464, 318, 257, 922, 11, 290, 262, 995, 13, 198, 40, 716, 257];

    static float MaxAbsDiff(ReadOnlySpan<float> a, ReadOnlySpan<float> b)
    {
        float m = 0;
        for (int i = 0; i < a.Length; i++) m = MathF.Max(m, MathF.Abs(a[i] - b[i]));
        return m;
    }

    public static IEnumerable<object[]> Models() =>
    [
        [false, true, GgmlType.TQ2_0, GgmlType.Q8_0],
        [true, true, GgmlType.TQ2_0, GgmlType.Q8_0],
        [false, true, GgmlType.TQ1_0, GgmlType.Q8_0],
        [false, false, GgmlType.TQ2_0, GgmlType.Q8_0],
        [true, true, GgmlType.TQ2_0, GgmlType.F16],
        [true, false, GgmlType.TQ2_0, GgmlType.F32],
    ];

    [Theory, MemberData(nameof(Models))]
    public void Forward_TinyModel_MatchesReference(bool tied, bool ternary, GgmlType type, GgmlType embedding)
    {
        var config = TestModels.Tiny(tied, ternary, vocab: 1000);
        string path = TestModels.WriteGguf(config, seed: 11, type, embedding: embedding);
        try
        {
            using var model = InferenceModel.Load(path);
            using var file = GgufFile.Open(path);
            var expected = new ReferenceModel(file, config).Logits(Prompt);
            var actual = new InferenceSession(model).AppendAllLogits(Prompt);
            int v = config.VocabSize;
            for (int t = 0; t < Prompt.Length; t++)
            {
                var row = actual.AsSpan(t * v, v);
                Assert.True(MaxAbsDiff(row, expected[t]) < Tolerance * (1 + expected[t].Max(MathF.Abs)),
                    $"position {t}: max |diff| {MaxAbsDiff(row, expected[t])}");
                Assert.Equal(Array.IndexOf(expected[t], expected[t].Max()), Sampler.ArgMax(row));
            }
        }
        finally { File.Delete(path); }
    }

    [Fact]
    public void Decode_WithKvCache_EqualsFullRecompute()
    {
        var config = TestModels.Tiny(vocab: 1000);
        string path = TestModels.WriteGguf(config, seed: 12);
        try
        {
            using var model = InferenceModel.Load(path);
            var full = new InferenceSession(model).AppendAllLogits(Prompt);
            var inc = new InferenceSession(model);
            inc.Append(Prompt.AsSpan(0, 5));
            int v = config.VocabSize;
            for (int t = 5; t < Prompt.Length; t++)
            {
                var logits = inc.Append([Prompt[t]]);
                Assert.True(MaxAbsDiff(logits, full.AsSpan(t * v, v)) < 1e-4f, $"position {t}");
            }
        }
        finally { File.Delete(path); }
    }

    [Fact]
    public void DecodeBatch_ThreeSessions_EqualsSeparateDecodes()
    {
        var config = TestModels.Tiny(vocab: 1000);
        string path = TestModels.WriteGguf(config, seed: 13);
        try
        {
            using var model = InferenceModel.Load(path);
            var sessions = Enumerable.Range(0, 3).Select(_ => new InferenceSession(model)).ToArray();
            var singles = Enumerable.Range(0, 3).Select(_ => new InferenceSession(model)).ToArray();
            for (int i = 0; i < 3; i++) { sessions[i].Append(Prompt.AsSpan(0, 3 + i)); singles[i].Append(Prompt.AsSpan(0, 3 + i)); }
            int[] next = [7, 8, 9];
            InferenceSession.DecodeBatch(sessions, next);
            for (int i = 0; i < 3; i++)
                Assert.True(MaxAbsDiff(sessions[i].LastLogits, singles[i].Append([next[i]])) < 1e-4f, $"session {i}");
        }
        finally { File.Delete(path); }
    }

    [Fact]
    public void AppendBatch_DecodeRowsAndPromptChunksInOnePass_EqualsSeparateAppends()
    {
        var config = TestModels.Tiny(vocab: 1000);
        string path = TestModels.WriteGguf(config, seed: 14);
        try
        {
            using var model = InferenceModel.Load(path);
            // a: decodes one token after its prompt; b: a fresh 6-token prompt; c: 4 more prompt tokens after 3 cached.
            var batched = Enumerable.Range(0, 3).Select(_ => new InferenceSession(model)).ToArray();
            var singles = Enumerable.Range(0, 3).Select(_ => new InferenceSession(model)).ToArray();
            batched[0].Append(Prompt.AsSpan(0, 5)); singles[0].Append(Prompt.AsSpan(0, 5));
            batched[2].Append(Prompt.AsSpan(0, 3)); singles[2].Append(Prompt.AsSpan(0, 3));
            int[][] segments = [[42], Prompt[..6], Prompt[3..7]];
            InferenceSession.AppendBatch(batched, segments);
            for (int i = 0; i < 3; i++)
            {
                var expected = singles[i].Append(segments[i]);
                Assert.True(MaxAbsDiff(batched[i].LastLogits, expected) < 1e-4f, $"session {i}");
                Assert.Equal(singles[i].Tokens, batched[i].Tokens);
            }
            Assert.Throws<ArgumentException>(() => InferenceSession.AppendBatch([batched[0], batched[0]], [[1], [2]]));
            Assert.Throws<ArgumentException>(() => InferenceSession.AppendBatch([batched[1]], [[]]));
        }
        finally { File.Delete(path); }
    }

    [Fact]
    public void AppendBatch_ServingPath_Int8CachesMixedBatch_EqualsSeparateAppends()
    {
        // A serving silo's pass: int8 caches, the lookup kernel (which then asks for the next layer's caches while it
        // multiplies), and runs of rows that store their keys right before they attend. Twelve decode rows, a fresh
        // 6-token prompt and 4 more prompt tokens after 3 cached: 22 rows. Then a 9-token prompt chunk alone.
        var config = TestModels.Tiny(vocab: 1000);
        string path = TestModels.WriteGguf(config, seed: 16);
        try
        {
            using var model = InferenceModel.Load(path);
            model.KvCacheType = KvCacheType.Int8;
            model.KernelPath = TernaryMatMul.BestBatched;
            model.PrepareLookup();
            var batched = Enumerable.Range(0, 14).Select(_ => new InferenceSession(model)).ToArray();
            var singles = Enumerable.Range(0, 14).Select(_ => new InferenceSession(model)).ToArray();
            var segments = new int[14][];
            for (int i = 0; i < 12; i++)
            {
                batched[i].Append(Prompt.AsSpan(0, 2 + i % 9)); singles[i].Append(Prompt.AsSpan(0, 2 + i % 9));
                segments[i] = [100 + i];
            }
            segments[12] = Prompt[..6];
            batched[13].Append(Prompt.AsSpan(0, 3)); singles[13].Append(Prompt.AsSpan(0, 3));
            segments[13] = Prompt[3..7];
            InferenceSession.AppendBatch(batched, segments);
            for (int i = 0; i < 14; i++)
            {
                var expected = singles[i].Append(segments[i]);
                Assert.True(MaxAbsDiff(batched[i].LastLogits, expected) < 1e-4f, $"session {i}");
                Assert.Equal(singles[i].Tokens, batched[i].Tokens);
            }
            // A prompt chunk alone (its rows split across the threads) against the same tokens one at a time.
            int[] more = [.. Prompt[..9]];
            var chunk = batched[13].Append(more).ToArray();
            float[] last = [];
            foreach (int t in more) last = singles[13].Append([t]).ToArray();
            Assert.True(MaxAbsDiff(chunk, last) < 1e-4f, "a lone prompt chunk");
        }
        finally { File.Delete(path); }
    }

    [Fact]
    public void Forward_SelectedLogitRows_EqualThoseRowsOfAllLogits()
    {
        var config = TestModels.Tiny(vocab: 1000);
        string path = TestModels.WriteGguf(config, seed: 15);
        try
        {
            using var model = InferenceModel.Load(path);
            int v = config.VocabSize;
            var reference = new InferenceSession(model);
            var all = reference.AppendAllLogits(Prompt);
            var cache = new KvCache(config.NumLayers, config.NumHeads, config.HeadDim, config.ContextLength);
            var caches = Enumerable.Repeat(cache, Prompt.Length).ToArray();
            var positions = Enumerable.Range(0, Prompt.Length).ToArray();
            int[] rows = [2, 7, Prompt.Length - 1];
            var logits = new float[rows.Length * v];
            model.Forward(Prompt, caches, positions, rows, logits, new ForwardScratch());
            for (int i = 0; i < rows.Length; i++)
                Assert.True(MaxAbsDiff(logits.AsSpan(i * v, v), all.AsSpan(rows[i] * v, v)) < 1e-4f, $"row {rows[i]}");
            // The rows that sampled nothing skipped the rest of the last block once stored: the next token sees them.
            var next = new float[v];
            model.Forward([Prompt[0]], [cache], [Prompt.Length], [0], next, new ForwardScratch());
            Assert.True(MaxAbsDiff(next, reference.Append([Prompt[0]])) < 1e-4f, "the token after the selected rows");
            Assert.Throws<ArgumentException>(() => model.Forward(Prompt, caches, positions, [3, 2], logits, new ForwardScratch()));
        }
        finally { File.Delete(path); }
    }

    [Fact]
    public void Int8KvCache_DecodeEqualsRecomputeAndStaysCloseToBf16()
    {
        var config = TestModels.Tiny(vocab: 1000);
        string path = TestModels.WriteGguf(config, seed: 16);
        try
        {
            using var model = InferenceModel.Load(path);
            var bf16 = new InferenceSession(model).AppendAllLogits(Prompt);
            model.KvCacheType = KvCacheType.Int8;
            var full = new InferenceSession(model).AppendAllLogits(Prompt);
            var inc = new InferenceSession(model);
            inc.Append(Prompt.AsSpan(0, 4));
            int v = config.VocabSize;
            for (int t = 4; t < Prompt.Length; t++)
                Assert.True(MaxAbsDiff(inc.Append([Prompt[t]]), full.AsSpan(t * v, v)) < 1e-4f, $"position {t}");
            // int8 keys and values move the logits by about 1 % of their scale, not more.
            float scale = bf16.Max(MathF.Abs);
            Assert.True(MaxAbsDiff(full, bf16) < 0.03f * scale, $"max |int8 - bf16| {MaxAbsDiff(full, bf16)} against logit scale {scale}");
            Assert.Equal(config.NumLayers * 64L * config.NumHeads * (2 * (config.HeadDim + sizeof(float)) + sizeof(int)), inc.CacheBytes); // 64 positions
        }
        finally { File.Delete(path); }
    }

    // 21 and 26 tokens on 2 or 3 threads: the lookup path splits the o and down products by tokens too.
    [Theory]
    [InlineData(13, 2)]
    [InlineData(21, 2)]
    [InlineData(26, 3)]
    public void Forward_EveryKernelPath_SameLogits(int tokens, int threads)
    {
        var config = TestModels.Tiny(vocab: 1000);
        string path = TestModels.WriteGguf(config, seed: 14);
        int[] prompt = [.. Enumerable.Range(0, tokens).Select(i => i < Prompt.Length ? Prompt[i] : (Prompt[i % Prompt.Length] + i) % config.VocabSize)];
        try
        {
            using var model = InferenceModel.Load(path, threads);
            model.KernelPath = KernelPath.Scalar;
            var expected = new InferenceSession(model).AppendAllLogits(prompt);
            foreach (var p in Enum.GetValues<KernelPath>().Where(TernaryMatMul.IsSupported))
            {
                model.KernelPath = p;
                Assert.Equal(expected, new InferenceSession(model).AppendAllLogits(prompt));
            }
        }
        finally { File.Delete(path); }
    }

    [Fact]
    public void Append_PastContextWindow_Throws()
    {
        var config = TestModels.Tiny(vocab: 1000);
        string path = TestModels.WriteGguf(config, seed: 15);
        try
        {
            using var model = InferenceModel.Load(path);
            var e = Assert.Throws<ArgumentException>(() => new InferenceSession(model).Append(new int[config.ContextLength + 1]));
            Assert.Contains("context window", e.Message);
        }
        finally { File.Delete(path); }
    }

    [Fact]
    public void CreateRandom_SmallShape_ProducesFiniteLogits()
    {
        using var model = InferenceModel.CreateRandom(ModelPresets.Get("tiny"), seed: 3);
        var logits = new InferenceSession(model).Append(Prompt);
        Assert.All(logits.ToArray(), v => Assert.True(float.IsFinite(v)));
    }
}
