// Attention over a compact KV cache, widened back to fp32 in registers for the q·k dot products and the weighted
// sum of values: bfloat16 storage (the upper half of an fp32, rounded to nearest even: each element within a
// relative 2^-8 of its fp32 value, half the bytes) or int8 with an absmax scale per head vector (a quarter of the
// bytes). A decode step streams every cached position of every session it advances, so these bytes are the part
// of a batched decode that grows with the sessions' lengths. Not the cache bookkeeping (KvCache) or the forward pass.
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Duck.Inference.Kernels;

/// <summary>bfloat16 conversions and the attention of one query head over cached keys and values.</summary>
public static unsafe class AttentionKernels
{
    /// <summary>fp32 → bf16, round to nearest even (NaN stays NaN, ±inf stays ±inf).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ushort ToBf16(float x)
    {
        uint b = BitConverter.SingleToUInt32Bits(x);
        if ((b & 0x7FFFFFFF) > 0x7F800000) return (ushort)((b >> 16) | 0x40); // quiet NaN
        return (ushort)((b + 0x7FFF + ((b >> 16) & 1)) >> 16);
    }

    /// <summary>bf16 → fp32 (exact).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float FromBf16(ushort h) => BitConverter.UInt32BitsToSingle((uint)h << 16);

    /// <summary>The value a float has after a round trip through bf16.</summary>
    public static float RoundToBf16(float x) => FromBf16(ToBf16(x));

    /// <summary>Stores x as bf16 (the same rounding as <see cref="ToBf16"/>, 16 values per step).</summary>
    public static void Store(ReadOnlySpan<float> x, Span<ushort> y)
    {
        if (y.Length < x.Length) throw new ArgumentException($"bf16 output holds {y.Length} values, needs {x.Length}");
        int i = 0;
        if (Vector256.IsHardwareAccelerated)
            fixed (float* xp = x)
            fixed (ushort* yp = y)
                for (; i + 16 <= x.Length; i += 16)
                    Vector256.Narrow(Round(Vector256.Load(xp + i).AsUInt32()), Round(Vector256.Load(xp + i + 8).AsUInt32())).Store(yp + i);
        for (; i < x.Length; i++) y[i] = ToBf16(x[i]);

        static Vector256<uint> Round(Vector256<uint> b)
        {
            var rounded = (b + Vector256.Create(0x7FFFu) + ((b >>> 16) & Vector256<uint>.One)) >>> 16;
            var nan = Vector256.GreaterThan((b & Vector256.Create(0x7FFFFFFFu)).AsInt32(), Vector256.Create(0x7F800000)).AsUInt32();
            return Vector256.ConditionalSelect(nan, (b >>> 16) | Vector256.Create(0x40u), rounded);
        }
    }

    /// <summary>
    /// o = Σ_j softmax_j(q·k_j · scale) · v_j over positions j in [0, count), keys and values [count, hd] bf16,
    /// q and o fp32 [hd]. <paramref name="scores"/> holds at least count floats of scratch.
    /// </summary>
    public static void Attend(float* q, ushort* keys, ushort* values, int count, int hd, float scale, float* scores, float* o) =>
        Attend<ushort, Bf16>(q, keys, null, values, null, count, hd, scale, scores, o);

    /// <summary>
    /// <see cref="Attend"/> over an int8 cache: key j is keyScales[j] · keys[j], value j is valueScales[j] · values[j].
    /// </summary>
    public static void AttendInt8(float* q, sbyte* keys, float* keyScales, sbyte* values, float* valueScales, int count, int hd, float scale, float* scores, float* o) =>
        Attend<sbyte, Int8>(q, keys, keyScales, values, valueScales, count, hd, scale, scores, o);

    /// <summary>
    /// x ≈ q · scale, quantized as the activations are (QuantizedActivations.QuantizeRow: absmax, round half to
    /// even, vectorized); returns the scale, max(max|x|, 1e-5) / 127.
    /// </summary>
    public static float QuantizeInt8(ReadOnlySpan<float> x, Span<sbyte> q) => 1f / QuantizedActivations.QuantizeRow(x, q, out _);

    /// <summary>How a cache element type widens to fp32: one value, or eight into a vector.</summary>
    interface IElement<T> where T : unmanaged
    {
        static abstract float Scalar(T x);
        static abstract Vector256<float> Widen(T* p);
    }

    /// <summary>bf16: vpmovzxwd + vpslld.</summary>
    struct Bf16 : IElement<ushort>
    {
        public static float Scalar(ushort x) => FromBf16(x);
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<float> Widen(ushort* p) => Avx2.ShiftLeftLogical(Avx2.ConvertToVector256Int32(p), 16).AsSingle();
    }

    /// <summary>int8: vpmovsxbd + vcvtdq2ps.</summary>
    struct Int8 : IElement<sbyte>
    {
        public static float Scalar(sbyte x) => x;
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<float> Widen(sbyte* p) => Avx.ConvertToVector256Single(Avx2.ConvertToVector256Int32(p));
    }

    /// <summary>The attention of one head; null scales mean 1 (bf16).</summary>
    static void Attend<T, TE>(float* q, T* keys, float* keyScales, T* values, float* valueScales, int count, int hd, float scale, float* scores, float* o)
        where T : unmanaged where TE : struct, IElement<T>
    {
        bool simd = Avx2.IsSupported && Fma.IsSupported && hd % 8 == 0;
        if (simd && hd == 64) ScoresHd64<T, TE>(q, keys, count, scale, scores);
        else
            for (int j = 0; j < count; j++)
            {
                T* k = keys + (long)j * hd;
                float dot = 0;
                if (simd)
                {
                    var acc = Vector256<float>.Zero;
                    for (int d = 0; d < hd; d += 8) acc = Fma.MultiplyAdd(Vector256.Load(q + d), TE.Widen(k + d), acc);
                    dot = Vector256.Sum(acc);
                }
                else
                    for (int d = 0; d < hd; d++) dot += q[d] * TE.Scalar(k[d]);
                scores[j] = dot * scale;
            }
        float max = float.NegativeInfinity;
        for (int j = 0; j < count; j++)
        {
            if (keyScales != null) scores[j] *= keyScales[j];
            max = MathF.Max(max, scores[j]);
        }
        float inv = 1f / ExpAndSum(scores, count, max);
        for (int j = 0; j < count; j++) scores[j] *= valueScales != null ? inv * valueScales[j] : inv;
        if (simd && hd == 64) { WeightedSumHd64<T, TE>(values, scores, count, o); return; }
        new Span<float>(o, hd).Clear();
        for (int j = 0; j < count; j++)
        {
            float a = scores[j];
            T* v = values + (long)j * hd;
            if (simd)
            {
                var va = Vector256.Create(a);
                for (int d = 0; d < hd; d += 8) Fma.MultiplyAdd(TE.Widen(v + d), va, Vector256.Load(o + d)).Store(o + d);
            }
            else
                for (int d = 0; d < hd; d++) o[d] += a * TE.Scalar(v[d]);
        }
    }

    /// <summary>Head size 64 (every preset but 3b): q stays in 8 registers; two positions per iteration.</summary>
    static void ScoresHd64<T, TE>(float* q, T* keys, int count, float scale, float* scores) where T : unmanaged where TE : struct, IElement<T>
    {
        var q0 = Vector256.Load(q); var q1 = Vector256.Load(q + 8); var q2 = Vector256.Load(q + 16); var q3 = Vector256.Load(q + 24);
        var q4 = Vector256.Load(q + 32); var q5 = Vector256.Load(q + 40); var q6 = Vector256.Load(q + 48); var q7 = Vector256.Load(q + 56);
        int j = 0;
        for (; j + 2 <= count; j += 2)
        {
            T* a = keys + j * 64, b = a + 64;
            scores[j] = Dot(a) * scale;
            scores[j + 1] = Dot(b) * scale;
        }
        if (j < count) scores[j] = Dot(keys + j * 64) * scale;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        float Dot(T* k)
        {
            var s = Fma.MultiplyAdd(q0, TE.Widen(k), Fma.MultiplyAdd(q1, TE.Widen(k + 8), Fma.MultiplyAdd(q2, TE.Widen(k + 16), q3 * TE.Widen(k + 24))));
            var t = Fma.MultiplyAdd(q4, TE.Widen(k + 32), Fma.MultiplyAdd(q5, TE.Widen(k + 40), Fma.MultiplyAdd(q6, TE.Widen(k + 48), q7 * TE.Widen(k + 56))));
            return Vector256.Sum(s + t);
        }
    }

    /// <summary>Head size 64: o = Σ_j weights[j] · v_j with the output in 8 registers across all positions.</summary>
    static void WeightedSumHd64<T, TE>(T* values, float* weights, int count, float* o) where T : unmanaged where TE : struct, IElement<T>
    {
        Vector256<float> o0 = default, o1 = default, o2 = default, o3 = default, o4 = default, o5 = default, o6 = default, o7 = default;
        for (int j = 0; j < count; j++)
        {
            var a = Vector256.Create(weights[j]);
            T* v = values + j * 64;
            o0 = Fma.MultiplyAdd(TE.Widen(v), a, o0); o1 = Fma.MultiplyAdd(TE.Widen(v + 8), a, o1);
            o2 = Fma.MultiplyAdd(TE.Widen(v + 16), a, o2); o3 = Fma.MultiplyAdd(TE.Widen(v + 24), a, o3);
            o4 = Fma.MultiplyAdd(TE.Widen(v + 32), a, o4); o5 = Fma.MultiplyAdd(TE.Widen(v + 40), a, o5);
            o6 = Fma.MultiplyAdd(TE.Widen(v + 48), a, o6); o7 = Fma.MultiplyAdd(TE.Widen(v + 56), a, o7);
        }
        o0.Store(o); o1.Store(o + 8); o2.Store(o + 16); o3.Store(o + 24);
        o4.Store(o + 32); o5.Store(o + 40); o6.Store(o + 48); o7.Store(o + 56);
    }

    /// <summary>scores[j] = exp(scores[j] − max); returns their sum.</summary>
    static float ExpAndSum(float* scores, int count, float max)
    {
        int j = 0;
        float sum = 0;
        if (Vector256.IsHardwareAccelerated)
        {
            var m = Vector256.Create(max);
            var acc = Vector256<float>.Zero;
            for (; j + 8 <= count; j += 8)
            {
                var e = Vector256.Exp(Vector256.Load(scores + j) - m);
                e.Store(scores + j);
                acc += e;
            }
            sum = Vector256.Sum(acc);
        }
        for (; j < count; j++) { scores[j] = MathF.Exp(scores[j] - max); sum += scores[j]; }
        return sum;
    }
}
