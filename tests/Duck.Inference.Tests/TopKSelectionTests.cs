// The sampler's one-pass top-k selection against the full sort it replaced (kept as the oracle): the same indices
// in the same order, ties broken by the lower index, for many sizes, k and tie-heavy logits.
using Duck.Inference.Engine;

namespace Duck.Inference.Tests;

public class TopKSelectionTests
{
    [Theory]
    [InlineData(1, 1)]
    [InlineData(5, 1)]
    [InlineData(5, 5)]
    [InlineData(100, 40)]
    [InlineData(257, 256)]
    [InlineData(1003, 7)]
    [InlineData(50257, 40)]
    public void SelectTopK_RandomLogitsWithTies_SameAsFullSort(int vocab, int k)
    {
        for (int seed = 0; seed < 5; seed++)
        {
            var rng = new Random(seed);
            // Rounded to a few values so that ties are common.
            var logits = Enumerable.Range(0, vocab).Select(_ => MathF.Round((float)(rng.NextDouble() * 8 - 4), seed % 2 == 0 ? 0 : 2)).ToArray();
            var expected = new int[vocab];
            var actual = new int[vocab];

            Sampler.SortCandidates(logits, expected);
            Sampler.SelectTopK(logits, actual, k);

            Assert.Equal(expected.Take(k), actual.Take(k));
        }
    }
}
