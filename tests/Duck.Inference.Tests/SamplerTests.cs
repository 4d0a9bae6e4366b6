// Sampler properties: greedy, top-k never leaves the k best, top-p keeps the nucleus, seeds reproduce,
// repetition penalty, and validation of impossible settings.
using Duck.Inference.Engine;

namespace Duck.Inference.Tests;

public class SamplerTests
{
    static float[] Logits(int n, int seed)
    {
        var rng = new Random(seed);
        return Enumerable.Range(0, n).Select(_ => (float)(rng.NextDouble() * 10 - 5)).ToArray();
    }

    [Fact]
    public void Sample_TemperatureZero_ReturnsArgMax()
    {
        var l = Logits(1000, 1);
        var s = new Sampler(new SamplingOptions { Temperature = 0 });
        Assert.Equal(Array.IndexOf(l, l.Max()), s.Sample(l, []));
    }

    [Fact]
    public void Sample_TopK_NeverOutsideKBest()
    {
        var l = Logits(500, 2);
        var best = l.Select((v, i) => (v, i)).OrderByDescending(p => p.v).Take(5).Select(p => p.i).ToHashSet();
        var s = new Sampler(new SamplingOptions { Temperature = 5f, TopK = 5, Seed = 1 });
        var seen = new HashSet<int>();
        for (int i = 0; i < 2000; i++) seen.Add(s.Sample(l, []));
        Assert.Subset(best, seen);
        Assert.True(seen.Count > 1, "a high temperature should spread over several of the k tokens");
    }

    [Fact]
    public void Sample_TopP_KeepsOnlyNucleus()
    {
        var l = new float[10];
        l[3] = 10; l[7] = 9.5f; // together ~0.9999 of the mass at temperature 1
        var s = new Sampler(new SamplingOptions { Temperature = 1, TopK = 0, TopP = 0.9f, Seed = 3 });
        for (int i = 0; i < 500; i++) Assert.Contains(s.Sample(l, []), new[] { 3, 7 });
    }

    [Fact]
    public void Sample_SameSeed_SameSequence()
    {
        var l = Logits(300, 4);
        var o = new SamplingOptions { Temperature = 1.2f, TopK = 50, TopP = 0.9f, Seed = 99 };
        var a = new Sampler(o); var b = new Sampler(o);
        var sa = Enumerable.Range(0, 100).Select(_ => a.Sample(l, [])).ToArray();
        var sb = Enumerable.Range(0, 100).Select(_ => b.Sample(l, [])).ToArray();
        Assert.Equal(sa, sb);
    }

    [Fact]
    public void Sample_RepetitionPenalty_AvoidsRecentToken()
    {
        var l = new float[] { 1f, 5f, 4.5f };
        var s = new Sampler(new SamplingOptions { Temperature = 0, RepetitionPenalty = 1.5f });
        Assert.Equal(1, s.Sample(l, [0]));
        Assert.Equal(2, s.Sample(l, [1])); // 5 / 1.5 = 3.33 < 4.5
    }

    [Fact]
    public void ApplyRepetitionPenalty_NegativeLogit_IsMultiplied()
    {
        var l = new float[] { -2f, 2f };
        Sampler.ApplyRepetitionPenalty(l, [0, 1, 1], 2f, 64);
        Assert.Equal(new[] { -4f, 1f }, l);
    }

    [Theory]
    [InlineData(64)]    // deduplicated on the stack
    [InlineData(1000)]  // a window longer than 256 tokens goes through a set
    public void ApplyRepetitionPenalty_TokenRepeatedInTheWindow_IsPenalizedOnce(int window)
    {
        var rng = new Random(3);
        var history = Enumerable.Range(0, 600).Select(_ => rng.Next(20)).ToList(); // every token repeats many times
        var l = Enumerable.Range(0, 30).Select(i => i % 2 == 0 ? 2f + i : -2f - i).ToArray();
        var original = l.ToArray();
        Sampler.ApplyRepetitionPenalty(l, history, 2f, window);
        var recent = history.Skip(Math.Max(0, history.Count - window)).ToHashSet();
        for (int t = 0; t < l.Length; t++)
            Assert.Equal(!recent.Contains(t) ? original[t] : original[t] > 0 ? original[t] / 2f : original[t] * 2f, l[t]);
    }

    [Theory]
    [InlineData(-0.1f, 40, 1f)]
    [InlineData(0.8f, -1, 1f)]
    [InlineData(0.8f, 40, 0f)]
    [InlineData(0.8f, 40, 1.5f)]
    [InlineData(float.NaN, 40, 1f)]
    public void Validate_ImpossibleSettings_Throw(float temperature, int topK, float topP)
    {
        Assert.Throws<ArgumentException>(() => new SamplingOptions { Temperature = temperature, TopK = topK, TopP = topP }.Validate());
    }
}
