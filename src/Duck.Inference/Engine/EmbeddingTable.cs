// The token embedding [vocab, modelDim] stored as F32, F16 or Q8_0 (a view into the mapped file or native memory
// of random weights): row lookup for the input, and, for a tied head, logits = x · embedᵀ as a plain fp32
// linear layer over the dequantized rows (activations stay fp32). Not the ternary head (TernaryLinear).
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using Duck.Inference.Gguf;
using Duck.Inference.Kernels;

namespace Duck.Inference.Engine;

/// <summary>Embedding rows in a ggml type; also usable as the tied LM head.</summary>
public sealed unsafe class EmbeddingTable : Linear
{
    readonly byte* data;
    readonly bool ownsData;
    readonly int rowBytes;

    public GgmlType Type { get; }
    public int VocabSize { get; }
    public int ModelDim { get; }
    public override int InFeatures => ModelDim;
    public override int OutFeatures => VocabSize;

    /// <summary>Wraps rows of <paramref name="type"/> at <paramref name="data"/>; frees it on Dispose when <paramref name="ownsData"/>.</summary>
    public EmbeddingTable(GgmlType type, byte* data, int vocabSize, int modelDim, bool ownsData)
    {
        if (type is not (GgmlType.F32 or GgmlType.F16 or GgmlType.Q8_0))
            throw new InvalidDataException($"token embedding type {type} is not supported (F32, F16 or Q8_0)");
        Type = type;
        this.data = data;
        this.ownsData = ownsData;
        VocabSize = vocabSize;
        ModelDim = modelDim;
        rowBytes = (int)GgmlTypes.TensorBytes(type, modelDim, 1);
    }

    /// <summary>Bytes of one row.</summary>
    public int RowBytes => rowBytes;

    /// <summary>Writes the fp32 embedding of <paramref name="token"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public void GetRow(int token, Span<float> y)
    {
        if ((uint)token >= (uint)VocabSize) throw new ArgumentOutOfRangeException(nameof(token), token, $"token id must be in [0, {VocabSize})");
        var src = new ReadOnlySpan<byte>(data + (long)token * rowBytes, rowBytes);
        switch (Type)
        {
            case GgmlType.F32: MemoryMarshal.Cast<byte, float>(src).CopyTo(y); break;
            case GgmlType.F16:
                var h = MemoryMarshal.Cast<byte, Half>(src);
                for (int i = 0; i < ModelDim; i++) y[i] = (float)h[i];
                break;
            default: Quant.GgmlQuants.DequantizeQ8(src, y[..ModelDim]); break;
        }
    }

    /// <summary>Tied head: y[t, v] = Σ_j x[t, j] · embed[v, j] in fp32.</summary>
    public override void Forward(float[] x, QuantizedActivations xq, int tokens, float[] y, WorkerPool pool, KernelPath path)
    {
        int d = ModelDim, v = VocabSize;
        ForRowChunks(pool, v, 1, 64, (start, end) =>
        {
            Span<float> row = stackalloc float[d];
            for (int i = start; i < end; i++)
            {
                if (Type == GgmlType.Q8_0 && Vector256.IsHardwareAccelerated)
                {
                    for (int t = 0; t < tokens; t++) y[(long)t * v + i] = DotQ8(i, x.AsSpan(t * d, d));
                    continue;
                }
                GetRow(i, row);
                for (int t = 0; t < tokens; t++) y[(long)t * v + i] = VectorMath.Dot(x.AsSpan(t * d, d), row);
            }
        });
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    float DotQ8(int row, ReadOnlySpan<float> x)
    {
        byte* p = data + (long)row * rowBytes;
        float sum = 0;
        fixed (float* xp = x)
        {
            for (int b = 0; b < ModelDim / GgmlTypes.QK8_0; b++, p += GgmlTypes.Q8BlockBytes)
            {
                var q = Vector256.Load((sbyte*)(p + 2));
                var (lo, hi) = Vector256.Widen(q);
                var (a0, a1) = Vector256.Widen(lo);
                var (a2, a3) = Vector256.Widen(hi);
                float* xb = xp + b * 32;
                var acc = Vector256.ConvertToSingle(a0) * Vector256.Load(xb);
                acc = Vector256.FusedMultiplyAdd(Vector256.ConvertToSingle(a1), Vector256.Load(xb + 8), acc);
                acc = Vector256.FusedMultiplyAdd(Vector256.ConvertToSingle(a2), Vector256.Load(xb + 16), acc);
                acc = Vector256.FusedMultiplyAdd(Vector256.ConvertToSingle(a3), Vector256.Load(xb + 24), acc);
                sum += Vector256.Sum(acc) * (float)*(Half*)p;
            }
        }
        return sum;
    }

    bool disposed;

    public override void Dispose()
    {
        if (ownsData && !disposed) NativeMemory.AlignedFree(data);
        disposed = true;
    }
}
