// Attention over a compact KV cache, widened back to fp32 in registers for the q·k dot products and the weighted
// sum of values: bfloat16 storage (the upper half of an fp32, rounded to nearest even: each element within a
// relative 2^-8 of its fp32 value, half the bytes) or int8 with an absmax scale per head vector (a quarter of the
// bytes). A decode step streams every cached position of every session it advances, so these bytes are the part
// of a batched decode that grows with the sessions' lengths. Over an int8 cache the query is quantized too, so q·k
// is an exact integer dot product (vpdpbusd: 64 multiply-adds in two instructions; without AVX-VNNI, as on Zen 4,
// vpmaddubsw and vpmaddwd). Not the cache bookkeeping (KvCache) or the forward pass.
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
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
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
        Attend(q, keys, values, count, hd, hd, scale, scores, o);

    /// <summary><see cref="Attend(float*, ushort*, ushort*, int, int, float, float*, float*)"/> with position j's key and value at j · <paramref name="stride"/> elements.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Attend(float* q, ushort* keys, ushort* values, int count, int hd, int stride, float scale, float* scores, float* o)
    {
        bool simd = Avx2.IsSupported && Fma.IsSupported && hd % 8 == 0;
        if (simd && hd == 64) ScoresHd64<ushort, Bf16>(q, keys, stride, count, scale, scores);
        else
            for (int j = 0; j < count; j++)
            {
                ushort* k = keys + (long)j * stride;
                float dot = 0;
                if (simd)
                {
                    var acc = Vector256<float>.Zero;
                    for (int d = 0; d < hd; d += 8) acc = Fma.MultiplyAdd(Vector256.Load(q + d), Bf16.Widen(k + d), acc);
                    dot = Vector256.Sum(acc);
                }
                else
                    for (int d = 0; d < hd; d++) dot += q[d] * FromBf16(k[d]);
                scores[j] = dot * scale;
            }
        float max = float.NegativeInfinity;
        for (int j = 0; j < count; j++) max = MathF.Max(max, scores[j]);
        float inv = 1f / ExpAndSum(scores, count, max);
        for (int j = 0; j < count; j++) scores[j] *= inv;
        WeightedSum<ushort, Bf16>(values, stride, scores, count, hd, o, null, 0);
    }

    /// <summary>
    /// <see cref="Attend"/> over an int8 cache: key j is keyScales[j] · keys[j] with keySums[j] = Σ_d keys[j, d], value j
    /// is valueScales[j] · values[j]. The query is quantized as the activations are (absmax int8, <see cref="QuantizeInt8(ReadOnlySpan{float}, Span{sbyte})"/>),
    /// so score j = (q8·k8_j) · (scale · qScale) · keyScales[j] with an exact integer dot product on every path.
    /// </summary>
    public static void AttendInt8(float* q, sbyte* keys, float* keyScales, int* keySums, sbyte* values, float* valueScales, int count, int hd, float scale, float* scores, float* o) =>
        AttendInt8(q, keys, keyScales, keySums, values, valueScales, count, hd, 1, hd, count, scale, scores, o, DotPath);

    /// <summary>
    /// <see cref="AttendInt8(float*, sbyte*, float*, int*, sbyte*, float*, int, int, float, float*, float*)"/> for
    /// <paramref name="heads"/> consecutive heads of one row over a position-major cache: head i's key at position j is
    /// keys[j · stride + i · hd, + hd), its scale and sum keyScales and keySums[i · scaleStride + j], the values
    /// likewise; q and o hold the heads' vectors one after another. The dots go position by position across the heads,
    /// so the keys (and the values, asked for alongside) are read front to back once. <paramref name="scores"/> holds
    /// heads · count floats of scratch. While the weighted sums run from L2, the <paramref name="prefetchBytes"/> at
    /// <paramref name="prefetch"/> (the keys the caller reads next) are asked for into L2, one line per position, so
    /// memory streams while this row computes.
    /// </summary>
    public static void AttendInt8(float* q, sbyte* keys, float* keyScales, int* keySums, sbyte* values, float* valueScales, int count, int hd,
        int heads, int stride, int scaleStride, float scale, float* scores, float* o, sbyte* prefetch = null, long prefetchBytes = 0) =>
        AttendInt8(q, keys, keyScales, keySums, values, valueScales, count, hd, heads, stride, scaleStride, scale, scores, o, DotPath, prefetch, prefetchBytes);

    /// <summary>
    /// The path of AttendInt8's q·k dots on this CPU: AvxVnni (vpdpbusd), else Avx2 (vpmaddubsw on |k| and q with
    /// k's sign, then vpmaddwd), else Scalar. Zen 4 has AVX-512 but not AVX-VNNI, so it takes Avx2.
    /// </summary>
    public static KernelPath DotPath { get; } = AvxVnni.IsSupported ? KernelPath.AvxVnni : Avx2.IsSupported ? KernelPath.Avx2 : KernelPath.Scalar;

    /// <summary><see cref="AttendInt8(float*, sbyte*, float*, int*, sbyte*, float*, int, int, float, float*, float*)"/> with the dots' path chosen (tests force each one).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void AttendInt8(float* q, sbyte* keys, float* keyScales, int* keySums, sbyte* values, float* valueScales, int count, int hd, float scale, float* scores, float* o, KernelPath path) =>
        AttendInt8(q, keys, keyScales, keySums, values, valueScales, count, hd, 1, hd, count, scale, scores, o, path);

    /// <summary>The multi-head form with the dots' path chosen.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void AttendInt8(float* q, sbyte* keys, float* keyScales, int* keySums, sbyte* values, float* valueScales, int count, int hd,
        int heads, int stride, int scaleStride, float scale, float* scores, float* o, KernelPath path, sbyte* prefetch = null, long prefetchBytes = 0)
    {
        sbyte* q8 = stackalloc sbyte[heads * hd];
        float* factors = stackalloc float[heads];
        for (int i = 0; i < heads; i++) factors[i] = scale * QuantizeInt8(new ReadOnlySpan<float>(q + i * hd, hd), new Span<sbyte>(q8 + i * hd, hd));
        int* dots = (int*)scores;                            // [heads, count]: the integer dots, turned into float scores in place
        if (hd % 32 != 0) path = KernelPath.Scalar;
        switch (path)
        {
            case KernelPath.AvxVnni: Dots<VnniKeyDot>(q8, keys, keySums, values, count, hd, heads, stride, scaleStride, dots); break;
            case KernelPath.Avx2: Dots<Avx2KeyDot>(q8, keys, keySums, values, count, hd, heads, stride, scaleStride, dots); break;
            default:
                for (int i = 0; i < heads; i++)
                    for (int j = 0; j < count; j++)
                    {
                        sbyte* k = keys + (long)j * stride + i * hd, qi = q8 + i * hd;
                        int dot = 0;
                        for (int d = 0; d < hd; d++) dot += qi[d] * k[d];
                        dots[i * count + j] = dot;
                    }
                break;
        }
        var totals = stackalloc (float Max, float Sum)[heads];
        for (int i = 0; i < heads; i++)
        {
            float* weights = scores + (long)i * count;
            float max = ScaleDots((int*)weights, keyScales + (long)i * scaleStride, factors[i], count);
            float inv = 1f / ExpAndSum(weights, count, max);
            totals[i] = ScaleWeights(weights, valueScales + (long)i * scaleStride, inv, count);
        }
        long lines = prefetch == null ? 0 : (prefetchBytes + 63) / 64, perHead = (lines + heads - 1) / heads;
        for (int i = 0; i < heads; i++)
        {
            byte* pf = (byte*)prefetch + i * perHead * 64;
            long n = Math.Clamp(lines - i * perHead, 0, perHead);
            if (hd == 64 && Avx512BW.IsSupported)
                WeightedSumInt8Hd64(values + i * hd, stride, scores + (long)i * count, count, totals[i].Max, totals[i].Sum, o + i * hd, pf, n);
            else
                WeightedSum<sbyte, Int8>(values + i * hd, stride, scores + (long)i * count, count, hd, o + i * hd, pf, n);
        }
    }

    /// <summary>
    /// x ≈ q · scale, quantized as the activations are (QuantizedActivations.QuantizeRow: absmax, round half to
    /// even, vectorized); returns the scale, max(max|x|, 1e-5) / 127.
    /// </summary>
    public static float QuantizeInt8(ReadOnlySpan<float> x, Span<sbyte> q) => QuantizeInt8(x, q, out _);

    /// <summary><see cref="QuantizeInt8(ReadOnlySpan{float}, Span{sbyte})"/>, also giving the sum of the int8 values (a key's, for <see cref="AttendInt8"/>).</summary>
    public static float QuantizeInt8(ReadOnlySpan<float> x, Span<sbyte> q, out int sum) => 1f / QuantizedActivations.QuantizeRow(x, q, out sum);

    /// <summary>x = q · scale: the inverse of <see cref="QuantizeInt8(ReadOnlySpan{float}, Span{sbyte})"/> (a moved cache's keys).</summary>
    public static void DequantizeInt8(ReadOnlySpan<sbyte> q, float scale, Span<float> x) => Widen<sbyte, Int8>(q, scale, x);

    /// <summary>x = the bf16 values y as fp32 (exact): the inverse of <see cref="Store"/>.</summary>
    public static void Load(ReadOnlySpan<ushort> y, Span<float> x) => Widen<ushort, Bf16>(y, 1f, x);

    /// <summary>x = widened values · scale, eight at a time (the cache elements' widening of the weighted sums).</summary>
    static void Widen<T, TE>(ReadOnlySpan<T> values, float scale, Span<float> x) where T : unmanaged where TE : struct, IElement<T>
    {
        if (x.Length < values.Length) throw new ArgumentException($"output holds {x.Length} values, needs {values.Length}");
        int i = 0;
        fixed (T* v = values)
        fixed (float* o = x)
        {
            if (Avx2.IsSupported)
            {
                var s = Vector256.Create(scale);
                for (; i + 8 <= values.Length; i += 8) (TE.Widen(v + i) * s).Store(o + i);
            }
            for (; i < values.Length; i++) o[i] = TE.Scalar(v[i]) * scale;
        }
    }

    /// <summary>One 32-byte chunk of q·k: the query chunk prepared once per head, then multiplied into a key's chunk.</summary>
    interface IKeyDot
    {
        /// <summary>The query chunk as the product wants it.</summary>
        static abstract Vector256<sbyte> Prepare(Vector256<sbyte> q);
        static abstract Vector256<int> Dot(Vector256<int> acc, Vector256<sbyte> q, Vector256<sbyte> k);
        /// <summary>True when the dot comes out as Σ (q + 128) · k, so 128 · keySums[j] has to come off.</summary>
        static abstract bool Offset { get; }
    }

    /// <summary>vpdpbusd multiplies unsigned by signed bytes: the query goes in as q8 + 128 (one instruction per 32 products).</summary>
    struct VnniKeyDot : IKeyDot
    {
        public static Vector256<sbyte> Prepare(Vector256<sbyte> q) => q ^ Vector256.Create((sbyte)-128);
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<int> Dot(Vector256<int> acc, Vector256<sbyte> q, Vector256<sbyte> k) => AvxVnni.MultiplyWideningAndAdd(acc, q.AsByte(), k);
        public static bool Offset => true;
    }

    /// <summary>
    /// AVX2: q·k = Σ |k| · (q · sign k), vpabsb and vpsignb then vpmaddubsw; |k| <= 128 and |q| <= 127 (absmax), so a
    /// pair sums to at most 32,512 and never saturates; vpmaddwd by ones widens the pairs to int32. Exact for every k.
    /// </summary>
    struct Avx2KeyDot : IKeyDot
    {
        public static Vector256<sbyte> Prepare(Vector256<sbyte> q) => q;
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<int> Dot(Vector256<int> acc, Vector256<sbyte> q, Vector256<sbyte> k) =>
            acc + Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(Avx2.Abs(k), Avx2.Sign(q, k)), Vector256<short>.One);
        public static bool Offset => false;
    }

    /// <summary>The number of 32-byte chunks in a head: a constant for head size 64 (so the JIT unrolls and folds every offset), else read from hd.</summary>
    interface IChunks { static abstract int Fixed { get; } }
    struct TwoChunks : IChunks { public static int Fixed => 2; }
    struct AnyChunks : IChunks { public static int Fixed => 0; }

    /// <summary>
    /// dots[i · count + j] = Σ_d q8[i · hd + d] · keys[j · stride + i · hd + d], hd a multiple of 32. Position by
    /// position, every head of a position before the next, so the keys stream front to back (the hardware prefetcher
    /// keeps up with that order, not with one head's strided walk, nor with software prefetches of the keys ahead:
    /// both measured slower); four heads' dots are reduced together. The values of each position are asked for
    /// into L2 as its keys are read, so the weighted sums, head by head, find them there.
    /// </summary>
    static void Dots<TDot>(sbyte* q8, sbyte* keys, int* keySums, sbyte* values, int count, int hd, int heads, int stride, int scaleStride, int* dots) where TDot : struct, IKeyDot
    {
        if (hd == 64) Dots<TDot, TwoChunks>(q8, keys, keySums, values, count, hd, heads, stride, scaleStride, dots);
        else Dots<TDot, AnyChunks>(q8, keys, keySums, values, count, hd, heads, stride, scaleStride, dots);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void Dots<TDot, TChunks>(sbyte* q8, sbyte* keys, int* keySums, sbyte* values, int count, int hd, int heads, int stride, int scaleStride, int* dots)
        where TDot : struct, IKeyDot where TChunks : struct, IChunks
    {
        int chunks = TChunks.Fixed > 0 ? TChunks.Fixed : hd / 32;
        if (TChunks.Fixed > 0) hd = 32 * TChunks.Fixed;
        var qu = stackalloc Vector256<sbyte>[heads * chunks];
        for (int c = 0; c < heads * chunks; c++) qu[c] = TDot.Prepare(Vector256.Load(q8 + c * 32));
        long s = stride;
        int bytes = heads * hd;
        for (int j = 0; j < count; j++)
        {
            sbyte* row = keys + j * s;
            sbyte* vrow = values + j * s;
            for (int b = 0; b < bytes; b += 64) Sse.Prefetch1(vrow + b);
            int i = 0;
            for (; i + 4 <= heads; i += 4)
            {
                sbyte* k = row + i * hd;
                var qi = qu + i * chunks;
                Vector256<int> a0 = default, a1 = default, a2 = default, a3 = default;
                for (int c = 0; c < chunks; c++)
                {
                    a0 = TDot.Dot(a0, qi[c], Vector256.Load(k + 32 * c));
                    a1 = TDot.Dot(a1, qi[chunks + c], Vector256.Load(k + hd + 32 * c));
                    a2 = TDot.Dot(a2, qi[2 * chunks + c], Vector256.Load(k + 2 * hd + 32 * c));
                    a3 = TDot.Dot(a3, qi[3 * chunks + c], Vector256.Load(k + 3 * hd + 32 * c));
                }
                // Horizontal sums of four vectors at once: two rounds of vphaddd within 128-bit halves, then the halves added.
                var h = Avx2.HorizontalAdd(Avx2.HorizontalAdd(a0, a1), Avx2.HorizontalAdd(a2, a3));
                var sums = h.GetLower() + h.GetUpper();
                int* d = dots + (long)i * count + j;
                d[0] = sums.ToScalar(); d[count] = sums.GetElement(1); d[2 * count] = sums.GetElement(2); d[3 * count] = sums.GetElement(3);
            }
            for (; i < heads; i++)
            {
                sbyte* k = row + i * hd;
                Vector256<int> a = default;
                for (int c = 0; c < chunks; c++) a = TDot.Dot(a, qu[i * chunks + c], Vector256.Load(k + c * 32));
                dots[(long)i * count + j] = Vector256.Sum(a);
            }
        }
        if (TDot.Offset)
            for (int i = 0; i < heads; i++)
                for (int j = 0; j < count; j++) dots[(long)i * count + j] -= keySums[(long)i * scaleStride + j] << 7;
    }

    /// <summary>In place: scores[j] = dots[j] · factor · keyScales[j]; returns their maximum.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static float ScaleDots(int* dots, float* keyScales, float factor, int count)
    {
        float* scores = (float*)dots;
        int j = 0;
        float max = float.NegativeInfinity;
        if (Vector256.IsHardwareAccelerated && count >= 8)
        {
            var f = Vector256.Create(factor);
            var vmax = Vector256.Create(float.NegativeInfinity);
            for (; j + 8 <= count; j += 8)
            {
                var s = Vector256.ConvertToSingle(Vector256.Load(dots + j)) * f * Vector256.Load(keyScales + j);
                s.Store(scores + j);
                vmax = Vector256.Max(vmax, s);
            }
            for (int i = 0; i < 8; i++) max = MathF.Max(max, vmax[i]);
        }
        for (; j < count; j++)
        {
            scores[j] = dots[j] * factor * keyScales[j];
            max = MathF.Max(max, scores[j]);
        }
        return max;
    }

    /// <summary>
    /// weights[j] *= inv · valueScales[j] (the softmax's normalization and the value's scale in one factor); returns
    /// the largest weight and their sum (the integer weighted sum's scale).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static (float Max, float Sum) ScaleWeights(float* weights, float* valueScales, float inv, int count)
    {
        int j = 0;
        float max = 0, sum = 0;
        if (Vector256.IsHardwareAccelerated)
        {
            var vi = Vector256.Create(inv);
            Vector256<float> vmax = default, vsum = default;
            for (; j + 8 <= count; j += 8)
            {
                var w = Vector256.Load(weights + j) * (vi * Vector256.Load(valueScales + j));
                w.Store(weights + j);
                vmax = Vector256.MaxNative(vmax, w);
                vsum += w;
            }
            for (int i = 0; i < 8; i++) max = MathF.Max(max, vmax[i]);
            sum = Vector256.Sum(vsum);
        }
        for (; j < count; j++)
        {
            weights[j] *= inv * valueScales[j];
            max = MathF.Max(max, weights[j]);
            sum += weights[j];
        }
        return (max, sum);
    }

    /// <summary>How a cache element type widens to fp32: one value, or eight into a vector.</summary>
    interface IElement<T> where T : unmanaged
    {
        static abstract float Scalar(T x);
        static abstract Vector256<float> Widen(T* p);
        static abstract Vector512<float> Widen512(T* p);
    }

    /// <summary>bf16: vpmovzxwd + vpslld.</summary>
    struct Bf16 : IElement<ushort>
    {
        public static float Scalar(ushort x) => FromBf16(x);
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<float> Widen(ushort* p) => Avx2.ShiftLeftLogical(Avx2.ConvertToVector256Int32(p), 16).AsSingle();
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector512<float> Widen512(ushort* p) => Avx512F.ShiftLeftLogical(Avx512F.ConvertToVector512Int32(Vector256.Load(p)), 16).AsSingle();
    }

    /// <summary>int8: vpmovsxbd + vcvtdq2ps.</summary>
    struct Int8 : IElement<sbyte>
    {
        public static float Scalar(sbyte x) => x;
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<float> Widen(sbyte* p) => Avx.ConvertToVector256Single(Avx2.ConvertToVector256Int32(p));
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector512<float> Widen512(sbyte* p) => Avx512F.ConvertToVector512Single(Avx512F.ConvertToVector512Int32(Vector128.Load(p)));
    }

    /// <summary>
    /// o = Σ_j weights[j] · v_j over values [count, hd]: 512-bit or 256-bit for head size 64, else generic. Also asks
    /// for <paramref name="lines"/> cache lines from <paramref name="prefetch"/> into L2 (spread over the positions on
    /// the 512-bit path, at once on the others).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void WeightedSum<T, TE>(T* values, int stride, float* weights, int count, int hd, float* o, byte* prefetch, long lines) where T : unmanaged where TE : struct, IElement<T>
    {
        bool simd = Avx2.IsSupported && Fma.IsSupported && hd % 8 == 0;
        if (simd && hd == 64 && Avx512F.IsSupported)
        {
            WeightedSumHd64x512<T, TE>(values, stride, weights, count, o, prefetch, lines);
            return;
        }
        for (long l = 0; l < lines; l++) Sse.Prefetch1(prefetch + 64 * l);
        if (simd && hd == 64)
        {
            WeightedSumHd64<T, TE>(values, stride, weights, count, o);
            return;
        }
        new Span<float>(o, hd).Clear();
        for (int j = 0; j < count; j++)
        {
            float a = weights[j];
            T* v = values + (long)j * stride;
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
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void ScoresHd64<T, TE>(float* q, T* keys, long stride, int count, float scale, float* scores) where T : unmanaged where TE : struct, IElement<T>
    {
        var q0 = Vector256.Load(q); var q1 = Vector256.Load(q + 8); var q2 = Vector256.Load(q + 16); var q3 = Vector256.Load(q + 24);
        var q4 = Vector256.Load(q + 32); var q5 = Vector256.Load(q + 40); var q6 = Vector256.Load(q + 48); var q7 = Vector256.Load(q + 56);
        int j = 0;
        for (; j + 2 <= count; j += 2)
        {
            T* a = keys + j * stride, b = a + stride;
            scores[j] = Dot(a) * scale;
            scores[j + 1] = Dot(b) * scale;
        }
        if (j < count) scores[j] = Dot(keys + j * stride) * scale;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        float Dot(T* k)
        {
            var s = Fma.MultiplyAdd(q0, TE.Widen(k), Fma.MultiplyAdd(q1, TE.Widen(k + 8), Fma.MultiplyAdd(q2, TE.Widen(k + 16), q3 * TE.Widen(k + 24))));
            var t = Fma.MultiplyAdd(q4, TE.Widen(k + 32), Fma.MultiplyAdd(q5, TE.Widen(k + 40), Fma.MultiplyAdd(q6, TE.Widen(k + 48), q7 * TE.Widen(k + 56))));
            return Vector256.Sum(s + t);
        }
    }

    /// <summary>Head size 64: o = Σ_j weights[j] · v_j with the output in 8 registers across all positions.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void WeightedSumHd64<T, TE>(T* values, long stride, float* weights, int count, float* o) where T : unmanaged where TE : struct, IElement<T>
    {
        Vector256<float> o0 = default, o1 = default, o2 = default, o3 = default, o4 = default, o5 = default, o6 = default, o7 = default;
        for (int j = 0; j < count; j++)
        {
            var a = Vector256.Create(weights[j]);
            T* v = values + j * stride;
            o0 = Fma.MultiplyAdd(TE.Widen(v), a, o0); o1 = Fma.MultiplyAdd(TE.Widen(v + 8), a, o1);
            o2 = Fma.MultiplyAdd(TE.Widen(v + 16), a, o2); o3 = Fma.MultiplyAdd(TE.Widen(v + 24), a, o3);
            o4 = Fma.MultiplyAdd(TE.Widen(v + 32), a, o4); o5 = Fma.MultiplyAdd(TE.Widen(v + 40), a, o5);
            o6 = Fma.MultiplyAdd(TE.Widen(v + 48), a, o6); o7 = Fma.MultiplyAdd(TE.Widen(v + 56), a, o7);
        }
        o0.Store(o); o1.Store(o + 8); o2.Store(o + 16); o3.Store(o + 24);
        o4.Store(o + 32); o5.Store(o + 40); o6.Store(o + 48); o7.Store(o + 56);
    }

    /// <summary><see cref="WeightedSumHd64"/> with 16-wide vectors: four accumulators, each value widened and multiplied in three instructions.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void WeightedSumHd64x512<T, TE>(T* values, long stride, float* weights, int count, float* o, byte* prefetch, long lines) where T : unmanaged where TE : struct, IElement<T>
    {
        Vector512<float> o0 = default, o1 = default, o2 = default, o3 = default;
        for (int j = 0; j < count; j++)
        {
            if (j < lines) Sse.Prefetch1(prefetch + 64L * j);
            var a = Vector512.Create(weights[j]);
            T* v = values + j * stride;
            o0 = Avx512F.FusedMultiplyAdd(TE.Widen512(v), a, o0); o1 = Avx512F.FusedMultiplyAdd(TE.Widen512(v + 16), a, o1);
            o2 = Avx512F.FusedMultiplyAdd(TE.Widen512(v + 32), a, o2); o3 = Avx512F.FusedMultiplyAdd(TE.Widen512(v + 48), a, o3);
        }
        for (long l = count; l < lines; l++) Sse.Prefetch1(prefetch + 64 * l);
        o0.Store(o); o1.Store(o + 16); o2.Store(o + 32); o3.Store(o + 48);
    }

    /// <summary>
    /// <see cref="WeightedSum{T, TE}"/> over int8 values of head size 64 in integers, given the weights' largest value
    /// and sum (<see cref="ScaleWeights"/> returns them): the weights (all &gt;= 0) become
    /// int16 on one scale, two positions' values are interleaved byte by byte (vpunpcklbw/hbw) and widened to int16
    /// pairs, and vpmaddwd multiplies a pair of positions by their pair of weights into int32 sums, 64 dims by 2
    /// positions in 12 instructions where widening each value to fp32 took 24 (a C microbenchmark: 3.3 against 6.0 TSC
    /// cycles per position of a head). The scale is the largest that keeps every weight within int16 and every sum within
    /// int32 (Σ weights · 128 &lt; 2^31): a weight is off by at most half a step, 1/65534 of the largest weight, a
    /// 256th of the int8 values' own step.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization), SkipLocalsInit]
    static void WeightedSumInt8Hd64(sbyte* values, long stride, float* weights, int count, float wmax, float wsum, float* o, byte* prefetch, long lines)
    {
        if (!(wmax > 0)) { new Span<float>(o, 64).Clear(); return; }
        float scale = MathF.Min(32767f / wmax, 16_000_000f / wsum); // + half a step of rounding per weight: below 2^24
        short* w16 = stackalloc short[count + 1]; // every entry written below
        var vs = Vector512.Create(scale);
        int j = 0;
        for (; j + 16 <= count; j += 16)
            Avx512F.ConvertToVector256Int16(Vector512.ConvertToInt32(Vector512.Load(weights + j) * vs + Vector512.Create(0.5f))).Store(w16 + j);
        for (; j < count; j++) w16[j] = (short)(int)(weights[j] * scale + 0.5f);
        w16[count] = 0; // the partner of an odd last position

        Vector512<int> a0 = default, a1 = default, a2 = default, a3 = default;
        for (j = 0; j < count; j += 2)
        {
            if (j < lines) Sse.Prefetch1(prefetch + 64L * j);
            if (j + 1 < lines) Sse.Prefetch1(prefetch + 64L * (j + 1));
            sbyte* v = values + j * stride;
            var x = Vector512.Load(v);
            var y = j + 1 < count ? Vector512.Load(v + stride) : x; // weight 0 for the missing partner
            var wp = Vector512.Create(*(int*)(w16 + j)).AsInt16();
            var lo = Avx512BW.UnpackLow(x, y);   // per 128-bit lane L: dims 16L + 0..7, each (x, y)
            var hi = Avx512BW.UnpackHigh(x, y);  // dims 16L + 8..15
            a0 += Avx512BW.MultiplyAddAdjacent(Avx512BW.ConvertToVector512Int16(lo.GetLower()), wp); // dims 0-7, 16-23
            a1 += Avx512BW.MultiplyAddAdjacent(Avx512BW.ConvertToVector512Int16(lo.GetUpper()), wp); // dims 32-39, 48-55
            a2 += Avx512BW.MultiplyAddAdjacent(Avx512BW.ConvertToVector512Int16(hi.GetLower()), wp); // dims 8-15, 24-31
            a3 += Avx512BW.MultiplyAddAdjacent(Avx512BW.ConvertToVector512Int16(hi.GetUpper()), wp); // dims 40-47, 56-63
        }
        for (long l = j; l < lines; l++) Sse.Prefetch1(prefetch + 64 * l);
        var inv = Vector512.Create(1f / scale);
        var f0 = Vector512.ConvertToSingle(a0) * inv; var f1 = Vector512.ConvertToSingle(a1) * inv;
        var f2 = Vector512.ConvertToSingle(a2) * inv; var f3 = Vector512.ConvertToSingle(a3) * inv;
        f0.GetLower().Store(o); f2.GetLower().Store(o + 8); f0.GetUpper().Store(o + 16); f2.GetUpper().Store(o + 24);
        f1.GetLower().Store(o + 32); f3.GetLower().Store(o + 40); f1.GetUpper().Store(o + 48); f3.GetUpper().Store(o + 56);
    }

    /// <summary>scores[j] = exp(scores[j] − max); returns their sum.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
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
                var e = VectorMath.Exp(Vector256.Load(scores + j) - m);
                e.Store(scores + j);
                acc += e;
            }
            sum = Vector256.Sum(acc);
        }
        for (; j < count; j++) { scores[j] = MathF.Exp(scores[j] - max); sum += scores[j]; }
        return sum;
    }
}
