// Next-token sampling from logits: repetition penalty, then greedy (temperature 0) or temperature + top-k + top-p
// sampling with a seedable RNG. Not generation control (stop sequences, max tokens: TextGenerator).
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace Duck.Inference.Engine;

/// <summary>Sampling and stopping settings of one reply; <see cref="Validate"/> rejects impossible values.</summary>
public sealed record SamplingOptions
{
    /// <summary>0 means greedy; otherwise logits are divided by it before softmax.</summary>
    public float Temperature { get; init; } = 0.8f;
    /// <summary>Keep only the k most likely tokens; 0 disables.</summary>
    public int TopK { get; init; } = 40;
    /// <summary>Keep the smallest set of tokens whose probability reaches p; 1 disables. Must be in (0, 1].</summary>
    public float TopP { get; init; } = 1f;
    /// <summary>CTRL-style penalty (>1 discourages repeats): positive logits of recent tokens are divided by it, negative ones multiplied.</summary>
    public float RepetitionPenalty { get; init; } = 1f;
    /// <summary>How many of the latest tokens the repetition penalty looks at.</summary>
    public int RepetitionWindow { get; init; } = 64;
    /// <summary>RNG seed; null draws a random one.</summary>
    public int? Seed { get; init; }
    /// <summary>Most tokens to generate.</summary>
    public int MaxTokens { get; init; } = 128;
    /// <summary>Generation ends when the text contains one of these; the stop text is not returned.</summary>
    public IReadOnlyList<string> StopSequences { get; init; } = [];
    /// <summary>Token that ends generation (GPT-2's &lt;|endoftext|&gt;); null disables.</summary>
    public int? EndOfTextToken { get; init; } = 50256;

    public SamplingOptions Validate()
    {
        if (!(Temperature >= 0) || float.IsInfinity(Temperature)) throw new ArgumentException($"temperature must be a finite number >= 0, got {Temperature}");
        if (TopK < 0) throw new ArgumentException($"top-k must be >= 0 (0 disables), got {TopK}");
        if (!(TopP > 0 && TopP <= 1)) throw new ArgumentException($"top-p must be in (0, 1], got {TopP}");
        if (!(RepetitionPenalty > 0) || float.IsInfinity(RepetitionPenalty)) throw new ArgumentException($"repetition penalty must be > 0, got {RepetitionPenalty}");
        if (RepetitionWindow < 0) throw new ArgumentException($"repetition window must be >= 0, got {RepetitionWindow}");
        if (MaxTokens < 1) throw new ArgumentException($"max tokens must be at least 1, got {MaxTokens}");
        if (StopSequences.Any(string.IsNullOrEmpty)) throw new ArgumentException("stop sequences must not be empty strings");
        return this;
    }
}

/// <summary>Picks token ids from logits. One instance per generation (it owns the RNG).</summary>
public sealed class Sampler
{
    readonly SamplingOptions options;
    readonly Random rng;
    // Work arrays of one Sample call, per thread rather than per sampler: a serving silo creates a sampler for
    // every reply, and two vocabulary-sized arrays each time were large-object garbage.
    [ThreadStatic] static float[]? threadWork;
    [ThreadStatic] static int[]? threadOrder;

    public Sampler(SamplingOptions options)
    {
        this.options = options.Validate();
        rng = options.Seed is int seed ? new Random(seed) : new Random();
    }

    /// <summary>Samples a token from <paramref name="logits"/> given the tokens generated or seen so far.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public int Sample(ReadOnlySpan<float> logits, IReadOnlyList<int> history)
    {
        int v = logits.Length;
        if (threadWork is null || threadWork.Length != v) { threadWork = new float[v]; threadOrder = new int[v]; }
        float[] work = threadWork;
        int[] order = threadOrder!;
        logits.CopyTo(work);
        ApplyRepetitionPenalty(work, history, options.RepetitionPenalty, options.RepetitionWindow);
        if (options.Temperature == 0) return ArgMax(work);

        // Candidates: the top-k indices by logit (ties: lower index first), in that order.
        int k = options.TopK > 0 ? Math.Min(options.TopK, v) : v;
        if (k < v) SelectTopK(work, order, k);
        else SortCandidates(work, order);
        float max = work[order[0]];
        Span<double> probs = k <= 256 ? stackalloc double[k] : new double[k];
        double sum = 0;
        for (int i = 0; i < k; i++) { probs[i] = Math.Exp((work[order[i]] - max) / options.Temperature); sum += probs[i]; }
        int n = k;
        if (options.TopP < 1)
        {
            double cumulative = 0;
            for (int i = 0; i < k; i++)
            {
                cumulative += probs[i] / sum;
                if (cumulative >= options.TopP) { n = i + 1; break; }
            }
            sum = 0;
            for (int i = 0; i < n; i++) sum += probs[i];
        }
        double u = rng.NextDouble() * sum;
        for (int i = 0; i < n; i++)
        {
            u -= probs[i];
            if (u <= 0) return order[i];
        }
        return order[n - 1];
    }

    /// <summary>The reference order: every index sorted by logit, descending, ties by index (kept as the oracle of <see cref="SelectTopK"/>).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void SortCandidates(float[] keys, int[] order)
    {
        for (int i = 0; i < keys.Length; i++) order[i] = i;
        Array.Sort(order, 0, keys.Length, Comparer<int>.Create((a, b) => Better(keys, a, b) ? -1 : Better(keys, b, a) ? 1 : 0));
    }

    /// <summary>
    /// Effectively SortCandidates then keep order[0..k): the k best indices in the same order, found with a size-k
    /// heap in one pass over the logits (O(V log k) rather than a full O(V log V) sort per sampled token).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void SelectTopK(float[] keys, int[] order, int k)
    {
        // order[0..k) is a heap whose root is the worst candidate kept so far.
        for (int i = 0; i < k; i++) { order[i] = i; SiftUp(keys, order, i); }
        int next = k;
        if (Vector512.IsHardwareAccelerated || Vector256.IsHardwareAccelerated)
        {
            // Every kept index is below the one being read, so a key beats the root exactly when it is greater: skip
            // 16 (or 8) keys at a time that are not (nearly all of a vocabulary once the heap holds good candidates).
            int width = Vector512.IsHardwareAccelerated ? 16 : 8;
            float worst = keys[order[0]];
            for (; next + width <= keys.Length; next += width)
            {
                bool any = Vector512.IsHardwareAccelerated // a JIT-time constant: one arm is compiled
                    ? Vector512.GreaterThanAny(Vector512.Create(keys.AsSpan(next, 16)), Vector512.Create(worst))
                    : Vector256.GreaterThanAny(Vector256.Create(keys.AsSpan(next, 8)), Vector256.Create(worst));
                if (!any) continue;
                for (int i = next; i < next + width; i++)
                    if (Better(keys, i, order[0])) { order[0] = i; SiftDown(keys, order, 0, k); }
                worst = keys[order[0]];
            }
        }
        for (int i = next; i < keys.Length; i++)
            if (Better(keys, i, order[0])) { order[0] = i; SiftDown(keys, order, 0, k); }
        // Best first. An insertion sort: k is small (40 by default), and a comparer delegate would allocate per token.
        for (int i = 1; i < k; i++)
        {
            int x = order[i], j = i - 1;
            for (; j >= 0 && Better(keys, x, order[j]); j--) order[j + 1] = order[j];
            order[j + 1] = x;
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)] // measured: left as a call, it took a quarter of a sampled token's time
    static bool Better(float[] keys, int a, int b) => keys[a] > keys[b] || (keys[a] == keys[b] && a < b);

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void SiftUp(float[] keys, int[] heap, int i)
    {
        while (i > 0)
        {
            int parent = (i - 1) / 2;
            if (!Better(keys, heap[parent], heap[i])) break;
            (heap[parent], heap[i]) = (heap[i], heap[parent]);
            i = parent;
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void SiftDown(float[] keys, int[] heap, int i, int count)
    {
        while (true)
        {
            int worst = i, left = 2 * i + 1, right = left + 1;
            if (left < count && Better(keys, heap[worst], heap[left])) worst = left;
            if (right < count && Better(keys, heap[worst], heap[right])) worst = right;
            if (worst == i) return;
            (heap[worst], heap[i]) = (heap[i], heap[worst]);
            i = worst;
        }
    }

    /// <summary>Divides positive logits (multiplies negative ones) of tokens among the last <paramref name="window"/> of <paramref name="history"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void ApplyRepetitionPenalty(Span<float> logits, IReadOnlyList<int> history, float penalty, int window)
    {
        if (penalty == 1f) return;
        int from = Math.Max(0, history.Count - window), count = history.Count - from;
        // Each token is penalized once. A window of the usual size is deduplicated by a look back over a stack copy;
        // a set is allocated only for a long one.
        HashSet<int>? seen = count > 256 ? new HashSet<int>() : null;
        Span<int> done = stackalloc int[seen is null ? count : 0];
        int n = 0;
        for (int i = from; i < history.Count; i++)
        {
            int t = history[i];
            if ((uint)t >= (uint)logits.Length) continue;
            if (seen is not null ? !seen.Add(t) : done[..n].Contains(t)) continue;
            if (seen is null) done[n++] = t;
            logits[t] = logits[t] > 0 ? logits[t] / penalty : logits[t] * penalty;
        }
    }

    /// <summary>Index of the largest value (the first on ties).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static int ArgMax(ReadOnlySpan<float> x)
    {
        int best = 0;
        for (int i = 1; i < x.Length; i++) if (x[i] > x[best]) best = i;
        return best;
    }
}
