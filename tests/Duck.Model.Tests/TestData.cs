// Deterministic in-memory token data for trainer tests: random windows over a fixed token array, with a cursor.
using System.Text.Json.Nodes;
using Duck.Model;

namespace Duck.Model.Tests;

sealed class ArrayBatchSource(int[] tokens, int batchSize, int sequenceLength, ulong seed) : IBatchSource, IValidationSource
{
    ulong state = seed;
    public int BatchSize => batchSize;
    public int SequenceLength => sequenceLength;

    ulong NextRandom()
    {
        state += 0x9E3779B97F4A7C15UL;
        ulong z = state;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }

    public void Next(long[] inputs, long[] targets)
    {
        for (int b = 0; b < batchSize; b++)
        {
            int start = (int)(NextRandom() % (ulong)(tokens.Length - sequenceLength - 1));
            for (int t = 0; t < sequenceLength; t++)
            {
                inputs[b * sequenceLength + t] = tokens[start + t];
                targets[b * sequenceLength + t] = tokens[start + t + 1];
            }
        }
    }

    public JsonNode SaveState() => new JsonObject { ["rng"] = state.ToString() };
    public void RestoreState(JsonNode saved) => state = ulong.Parse(saved["rng"]!.GetValue<string>());

    public IEnumerable<(long[] Inputs, long[] Targets)> Batches(int b, int t, int maxBatches)
    {
        for (int i = 0; i < maxBatches; i++)
        {
            var x = new long[b * t];
            var y = new long[b * t];
            for (int r = 0; r < b; r++)
                for (int j = 0; j < t; j++)
                {
                    int at = (i * b + r) * t % (tokens.Length - t - 1) + j;
                    x[r * t + j] = tokens[at];
                    y[r * t + j] = tokens[at + 1];
                }
            yield return (x, y);
        }
    }

    /// <summary>A learnable sequence: a repeating pattern with a little noise, over a small vocabulary.</summary>
    public static int[] Pattern(int length, int vocab, int seed)
    {
        var rng = new Random(seed);
        var tokens = new int[length];
        for (int i = 0; i < length; i++) tokens[i] = rng.Next(10) == 0 ? rng.Next(vocab) : (i * 7 + i / 5) % vocab;
        return tokens;
    }
}
