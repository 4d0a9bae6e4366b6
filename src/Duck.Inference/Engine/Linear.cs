// The linear layers of the engine: y = x Wᵀ over a batch of token rows, split by output rows across the worker
// pool. TernaryLinear is BitLinear (int8 activations × packed ternary weights); DenseLinear is the FP32 twin's
// plain fp32 matmul. Not the embedding (EmbeddingTable) and not the forward pass (InferenceModel).
using Duck.Inference.Kernels;

namespace Duck.Inference.Engine;

/// <summary>y[tokens, OutFeatures] = x[tokens, InFeatures] · Wᵀ.</summary>
public abstract class Linear : IDisposable
{
    public abstract int InFeatures { get; }
    public abstract int OutFeatures { get; }

    /// <summary>
    /// Runs the layer. <paramref name="xq"/> holds x already quantized (shared by layers with the same input);
    /// layers that need fp32 read <paramref name="x"/>.
    /// </summary>
    public abstract void Forward(float[] x, QuantizedActivations xq, int tokens, float[] y, WorkerPool pool, KernelPath path);

    public virtual void Dispose() { }

    /// <summary>Splits [0, rows) into about 4 chunks per thread, each a multiple of <paramref name="granule"/> rows.</summary>
    protected static void ForRowChunks(WorkerPool pool, int rows, int granule, int minChunk, Action<int, int> body)
    {
        int target = Math.Max(minChunk, rows / (pool.ThreadCount * 4));
        int chunk = (target + granule - 1) / granule * granule;
        int count = (rows + chunk - 1) / chunk;
        pool.For(count, c => body(c * chunk, Math.Min(rows, (c + 1) * chunk)));
    }
}

/// <summary>BitLinear: y = (Σ t·xq) · gamma / s.</summary>
public sealed class TernaryLinear(PackedTernary weights) : Linear
{
    public PackedTernary Weights { get; } = weights;
    public override int InFeatures => Weights.Cols;
    public override int OutFeatures => Weights.Rows;

    public override void Forward(float[] x, QuantizedActivations xq, int tokens, float[] y, WorkerPool pool, KernelPath path)
    {
        var w = Weights;
        int minChunk = tokens > 1 ? 16 : 64;
        int granule = TernaryMatMul.RowGranule(path, tokens), perItem = TernaryMatMul.TokensPerItem(path, tokens, w.Rows, pool.ThreadCount);
        if (perItem >= tokens)
        {
            ForRowChunks(pool, w.Rows, granule, minChunk, (start, end) => TernaryMatMul.Multiply(w, xq, y, start, end, path));
            return;
        }
        // Few row chunks: split the tokens too.
        int chunks = (w.Rows + granule - 1) / granule, parts = (tokens + perItem - 1) / perItem;
        pool.For(chunks * parts, k =>
        {
            int start = k / parts * granule, t0 = k % parts * perItem;
            TernaryMatMul.Multiply(w, xq, y, start, Math.Min(w.Rows, start + granule), path, t0, Math.Min(tokens, t0 + perItem));
        });
    }

    public override void Dispose() => Weights.Dispose();

    /// <summary>
    /// Runs several ternary layers that share one quantized input (q/k/v, gate/up) as one parallel loop, so the
    /// threads meet at one barrier instead of one per layer.
    /// </summary>
    public static void ForwardShared(ReadOnlySpan<TernaryLinear> layers, float[][] outputs, QuantizedActivations xq, int tokens, WorkerPool pool, KernelPath path)
    {
        int rowsTotal = 0;
        foreach (var l in layers) rowsTotal += l.OutFeatures;
        int target = Math.Max(tokens > 1 ? 16 : 64, rowsTotal / (pool.ThreadCount * 4));
        int granule = TernaryMatMul.RowGranule(path, tokens);
        int chunk = (target + granule - 1) / granule * granule;
        var items = new List<(PackedTernary W, float[] Y, int Start, int End)>();
        for (int i = 0; i < layers.Length; i++)
        {
            var w = layers[i].Weights;
            for (int start = 0; start < w.Rows; start += chunk) items.Add((w, outputs[i], start, Math.Min(w.Rows, start + chunk)));
        }
        pool.For(items.Count, k =>
        {
            var (w, y, start, end) = items[k];
            TernaryMatMul.Multiply(w, xq, y, start, end, path);
        });
    }
}

/// <summary>Plain fp32 weights [out, in] (the FP32 twin, or F16/F32 tensors in a file).</summary>
public sealed class DenseLinear : Linear
{
    readonly float[] weights;
    readonly int inFeatures, outFeatures;

    public DenseLinear(float[] weights, int outFeatures, int inFeatures)
    {
        if (weights.Length != (long)outFeatures * inFeatures)
            throw new ArgumentException($"dense weights hold {weights.Length} values, expected {outFeatures}x{inFeatures}");
        this.weights = weights;
        this.inFeatures = inFeatures;
        this.outFeatures = outFeatures;
    }

    public override int InFeatures => inFeatures;
    public override int OutFeatures => outFeatures;

    /// <summary>Row <paramref name="row"/> of W.</summary>
    public ReadOnlySpan<float> Row(int row) => weights.AsSpan(row * inFeatures, inFeatures);

    public override void Forward(float[] x, QuantizedActivations xq, int tokens, float[] y, WorkerPool pool, KernelPath path)
    {
        int n = outFeatures, k = inFeatures;
        ForRowChunks(pool, n, 1, 16, (start, end) =>
        {
            for (int i = start; i < end; i++)
            {
                var wr = weights.AsSpan(i * k, k);
                for (int t = 0; t < tokens; t++) y[t * n + i] = VectorMath.Dot(x.AsSpan(t * k, k), wr);
            }
        });
    }
}
