// The KV cache of one sequence: keys and values of every layer, grown on demand up to the context window. Two element
// types: bf16 (the default: within a relative 2^-8 of fp32) and int8 with one fp32 scale (absmax / 127) per head
// and position, plus each key's sum of int8 values: about half of bf16's bytes, the part of a batched decode's
// memory traffic that grows with the sessions' lengths. The int8 cache (the chat servers', whose many sessions'
// caches stream from memory in every batched pass) is position-major, [position, head, headDim] per layer, so a row
// reads its whole cache front to back in one run, as memory is fastest read; its scales and sums are [head, position].
// The bf16 cache (one stream's, mostly in L3) is head-major, [head, position, headDim], so each head's positions are
// contiguous for the one-head kernel (measured: single-stream decode 5-9 % slower over a position-major bf16 cache).
// Not the attention arithmetic (AttentionKernels).
using System.Runtime.CompilerServices;

namespace Duck.Inference.Engine;

/// <summary>How a KV cache stores keys and values.</summary>
public enum KvCacheType { Bf16, Int8 }

/// <summary>Keys and values of every layer for one sequence; see the file header.</summary>
public sealed class KvCache
{
    readonly int numHeads, headDim, maxPositions;
    public KvCacheType Type { get; }
    /// <summary>bf16 keys and values per layer (empty arrays for an int8 cache).</summary>
    public ushort[][] K { get; } = [];
    public ushort[][] V { get; } = [];
    /// <summary>int8 keys and values per layer, and their scales [head, position] (empty for a bf16 cache).</summary>
    public sbyte[][] K8 { get; } = [];
    public sbyte[][] V8 { get; } = [];
    public float[][] KScale { get; } = [];
    public float[][] VScale { get; } = [];
    /// <summary>Sums of each int8 key's values [head, position] (the integer q·k needs them; empty for a bf16 cache).</summary>
    public int[][] KSum { get; } = [];
    /// <summary>Positions the arrays can hold.</summary>
    public int Capacity { get; private set; }
    readonly int layers;

    public KvCache(int layers, int numHeads, int headDim, int maxPositions, KvCacheType type = KvCacheType.Bf16)
    {
        this.layers = layers;
        this.numHeads = numHeads;
        this.headDim = headDim;
        this.maxPositions = maxPositions;
        Type = type;
        if (type == KvCacheType.Int8)
        {
            K8 = Empty<sbyte>(); V8 = Empty<sbyte>(); KScale = Empty<float>(); VScale = Empty<float>(); KSum = Empty<int>();
        }
        else { K = Empty<ushort>(); V = Empty<ushort>(); }
    }

    T[][] Empty<T>()
    {
        var a = new T[layers][];
        for (int l = 0; l < layers; l++) a[l] = [];
        return a;
    }

    /// <summary>Bytes currently allocated.</summary>
    public long SizeBytes => Type == KvCacheType.Int8
        ? layers * Capacity * numHeads * (2L * (headDim + sizeof(float)) + sizeof(int))
        : 2L * layers * Capacity * numHeads * headDim * sizeof(ushort);

    /// <summary>Whether a layer's keys and values are [position, head, headDim] (int8), else [head, position, headDim] (bf16).</summary>
    public bool PositionMajor => Type == KvCacheType.Int8;

    /// <summary>Offset of (head, position) in a layer's element array.</summary>
    public int Offset(int head, int position) => PositionMajor ? (position * numHeads + head) * headDim : (head * Capacity + position) * headDim;

    /// <summary>Elements from one position to the next of one head in a layer's element array.</summary>
    public int Stride => PositionMajor ? numHeads * headDim : headDim;

    /// <summary>Index of (head, position) in a layer's scale and sum arrays.</summary>
    public int ScaleIndex(int head, int position) => head * Capacity + position;

    /// <summary>Writes the key and value of (layer, head, position).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public void Store(int layer, int head, int position, ReadOnlySpan<float> key, ReadOnlySpan<float> value)
    {
        int o = Offset(head, position);
        if (Type == KvCacheType.Int8)
        {
            int si = ScaleIndex(head, position);
            KScale[layer][si] = Kernels.AttentionKernels.QuantizeInt8(key, K8[layer].AsSpan(o, headDim), out KSum[layer][si]);
            VScale[layer][si] = Kernels.AttentionKernels.QuantizeInt8(value, V8[layer].AsSpan(o, headDim));
        }
        else
        {
            Kernels.AttentionKernels.Store(key, K[layer].AsSpan(o, headDim));
            Kernels.AttentionKernels.Store(value, V[layer].AsSpan(o, headDim));
        }
    }

    /// <summary>
    /// Moves the entries of positions [from + count, end) down to [from, end − count), for a sequence that loses
    /// tokens [from, from + count): values as they are, keys turned back by count positions. RoPE turns pair i of a
    /// key at position p by p·θ_i, so turning it by −count·θ_i gives the key at p − count, up to the rounding of its
    /// storage (int8 keys are quantized again, bf16 keys rounded again). <paramref name="cos"/> and
    /// <paramref name="sin"/> hold cos(count·θ_i) and sin(count·θ_i). The moved entries still carry what their
    /// tokens saw of the lost ones in the layers above the first, as any context shift of a KV cache does.
    /// </summary>
    /// <remarks>With a <paramref name="pool"/>, the layers are split across its threads: a chat silo's batcher shifts a
    /// session's cache between passes, while the other sessions wait for it (201 positions of `small`: 5.8-6.4 ms with
    /// the int8 keys widened one value at a time on one thread, 1.0-1.3 ms with vectors on two).</remarks>
    public void Shift(int from, int count, int end, ReadOnlySpan<float> cos, ReadOnlySpan<float> sin, WorkerPool? pool = null)
    {
        if (from < 0 || count < 1 || end > Capacity || from + count > end)
            throw new ArgumentException($"cannot shift positions [{from + count}, {end}) down by {count} in a cache of {Capacity} positions");
        float[] turn = cos.ToArray(), back = new float[sin.Length];
        for (int i = 0; i < sin.Length; i++) back[i] = -sin[i];
        if (pool is null) for (int l = 0; l < layers; l++) ShiftLayer(l, from, count, end, turn, back);
        else pool.For(layers, l => ShiftLayer(l, from, count, end, turn, back));
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    void ShiftLayer(int l, int from, int count, int end, float[] cos, float[] back)
    {
        Span<float> key = stackalloc float[headDim];
        for (int h = 0; h < numHeads; h++)
            for (int p = from + count; p < end; p++)
            {
                int src = Offset(h, p), dst = Offset(h, p - count), si = ScaleIndex(h, p), di = si - count;
                if (Type == KvCacheType.Int8)
                {
                    Kernels.AttentionKernels.DequantizeInt8(K8[l].AsSpan(src, headDim), KScale[l][si], key);
                    Kernels.VectorMath.Rope(key, 1, headDim, cos, back);
                    KScale[l][di] = Kernels.AttentionKernels.QuantizeInt8(key, K8[l].AsSpan(dst, headDim), out KSum[l][di]);
                    V8[l].AsSpan(src, headDim).CopyTo(V8[l].AsSpan(dst, headDim));
                    VScale[l][di] = VScale[l][si];
                }
                else
                {
                    Kernels.AttentionKernels.Load(K[l].AsSpan(src, headDim), key);
                    Kernels.VectorMath.Rope(key, 1, headDim, cos, back);
                    Kernels.AttentionKernels.Store(key, K[l].AsSpan(dst, headDim));
                    V[l].AsSpan(src, headDim).CopyTo(V[l].AsSpan(dst, headDim));
                }
            }
    }

    /// <summary>Makes room for positions [0, positions).</summary>
    public void EnsureCapacity(int positions)
    {
        if (positions <= Capacity) return;
        int capacity = Math.Min(maxPositions, Math.Max(64, (int)System.Numerics.BitOperations.RoundUpToPowerOf2((uint)positions)));
        for (int l = 0; l < layers; l++)
            if (Type == KvCacheType.Int8)
            {
                K8[l] = Grow(K8[l], capacity);
                V8[l] = Grow(V8[l], capacity);
                KScale[l] = RegrowByHead(KScale[l], capacity, 1);
                VScale[l] = RegrowByHead(VScale[l], capacity, 1);
                KSum[l] = RegrowByHead(KSum[l], capacity, 1);
            }
            else
            {
                K[l] = RegrowByHead(K[l], capacity, headDim);
                V[l] = RegrowByHead(V[l], capacity, headDim);
            }
        Capacity = capacity;
    }

    /// <summary>A position-major array with room for <paramref name="capacity"/> positions, the old positions copied to its start.</summary>
    T[] Grow<T>(T[] old, int capacity)
    {
        var grown = GC.AllocateUninitializedArray<T>(capacity * numHeads * headDim);
        Array.Copy(old, grown, old.Length);
        return grown;
    }

    /// <summary>A head-major [head, position, width] array with room for <paramref name="capacity"/> positions per head.</summary>
    T[] RegrowByHead<T>(T[] old, int capacity, int width)
    {
        var grown = GC.AllocateUninitializedArray<T>(numHeads * capacity * width);
        for (int h = 0; h < numHeads && Capacity > 0; h++)
            Array.Copy(old, h * Capacity * width, grown, h * capacity * width, Capacity * width);
        return grown;
    }
}
