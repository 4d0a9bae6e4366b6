// BitNet b1.58 activation quantization per token (row): s = (1 / max(max|x|, 1e-5)) · 127, xq = clamp(round_half_even(x·s),
// -128, 127). Writes int8 rows padded with zeros to the weight's padded width, plus the per-row scale and code sum
// the ternary kernels need, and for batches the lookup kernel's tables (every signed sum of three consecutive
// values). Not the weight quantizer (Absmean).
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Duck.Inference.Kernels;

/// <summary>Int8 activations of T rows, reusable across calls (grows as needed).</summary>
public sealed class QuantizedActivations
{
    /// <summary>Int8 values, row-major [Rows, PaddedCols].</summary>
    public sbyte[] Values = [];
    /// <summary>Per-row s = 127 / max|x|.</summary>
    public float[] Scales = [];
    /// <summary>Per-row sum of the int8 values (the kernels subtract it to turn codes t+1 back into t).</summary>
    public int[] Sums = [];
    public int Rows;
    public int PaddedCols;
    /// <summary>Groups of three columns per lookup table row (3 · ceil(cols / 9)), or 0 when the batch gets no tables.</summary>
    public int TableGroups;
    int cols, version;
    /// <summary>
    /// Whether <see cref="Prepare"/> sets up tables for batches of <see cref="TernaryMatMul.LookupMinTokens"/> rows or
    /// more where the lookup path exists; the forward pass turns it off for models on another path.
    /// </summary>
    public bool LookupTables { get; set; } = true;
    /// <summary>Memory the lookup kernel asks for while it multiplies this batch (the next attention's caches), or null.</summary>
    public PrefetchPlan? Prefetch { get; set; }

    /// <summary>Quantizes <paramref name="rows"/> rows of <paramref name="cols"/> floats (row stride <paramref name="cols"/>).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public void Quantize(ReadOnlySpan<float> x, int rows, int cols)
    {
        Prepare(rows, cols);
        QuantizeRows(x, cols, 0, rows);
    }

    /// <summary>Sizes the buffers for rows × cols; then <see cref="QuantizeRows"/> fills any row ranges (in parallel if wanted).</summary>
    public void Prepare(int rows, int cols)
    {
        int padded = PackedTernary.RoundUp(cols);
        Rows = rows;
        PaddedCols = padded;
        if (Values.Length < rows * padded) Values = GC.AllocateUninitializedArray<sbyte>(rows * padded, pinned: true);
        if (Scales.Length < rows) { Scales = new float[rows]; Sums = new int[rows]; }
        TableGroups = LookupTables && rows >= TernaryMatMul.LookupMinTokens && TernaryMatMul.IsSupported(KernelPath.Avx512Lookup)
            ? 3 * ((cols + PackedTernary.WordColumns - 1) / PackedTernary.WordColumns) : 0;
        this.cols = cols;
        Interlocked.Increment(ref version);
    }

    /// <summary>Quantizes rows [start, end) after <see cref="Prepare"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public void QuantizeRows(ReadOnlySpan<float> x, int cols, int start, int end)
    {
        for (int r = start; r < end; r++)
        {
            var q = Values.AsSpan(r * PaddedCols, PaddedCols);
            Scales[r] = QuantizeRow(x.Slice(r * cols, cols), q[..cols], out Sums[r]);
            q[cols..].Clear();
        }
        Interlocked.Increment(ref version); // tables built before no longer match
    }

    // The lookup tables live per thread: every thread of a product builds all of them into its own buffer, which
    // then stays in its own cache. Shared tables, written by one core and read by both, measured 2.5-3x slower to
    // build inside a forward pass (each store took the line back from the other core) than this redundant work costs.
    [ThreadStatic] static short[]? threadTables;
    [ThreadStatic] static int threadStart, threadVersion;
    [ThreadStatic] static QuantizedActivations? threadOwner;

    /// <summary>
    /// For <see cref="KernelPath.Avx512Lookup"/>: per row and group of three columns, the 27 sums Σ t_j·xq_j over
    /// t ∈ {-1,0,1}³ at index 9(t0+1) + 3(t1+1) + (t2+1), as 32 int16 (one 64-byte aligned 512-bit vector), laid out
    /// [row / 4][group][row % 4][32]; built on this thread's first call after the rows were quantized. Requires
    /// <see cref="TableGroups"/> &gt; 0. Valid until this thread asks again for another batch.
    /// </summary>
    internal unsafe short* ThreadTables()
    {
        if (TableGroups == 0) throw new InvalidOperationException("this batch has no lookup tables");
        if (threadTables is null || threadOwner != this || threadVersion != Volatile.Read(ref version))
        {
            long length = (long)(Rows + 3) / 4 * 4 * TableGroups * 32;
            if (threadTables is null || threadTables.Length < length + 32)
            {
                threadTables = GC.AllocateUninitializedArray<short>(checked((int)length + 32), pinned: true);
                threadStart = (int)((64 - (nint)Unsafe.AsPointer(ref threadTables[0]) % 64) % 64 / sizeof(short));
            }
            short* tables = (short*)Unsafe.AsPointer(ref threadTables[threadStart]);
            for (int r = 0; r < Rows; r++) BuildTables(r, tables);
            (threadOwner, threadVersion) = (this, Volatile.Read(ref version));
        }
        return (short*)Unsafe.AsPointer(ref threadTables[threadStart]);
    }

    // Digit vectors of the table index: lane i holds t_j = digit j of i in base 3, minus 1 (lanes 27..31 zero).
    static readonly short[] Digits = MakeDigits();

    static short[] MakeDigits()
    {
        var d = new short[96];
        for (int i = 0; i < 27; i++) { d[i] = (short)(i / 9 - 1); d[32 + i] = (short)(i / 3 % 3 - 1); d[64 + i] = (short)(i % 3 - 1); }
        return d;
    }

    // The same digits as byte pairs for vpmaddubsw: Pairs01 lane i = (t0, t1), Pairs12 lane i = (0, t2); then
    // Offsets lane i = 128 · (t0 + t1 + t2), what the +128 on each column's code adds to entry i.
    static readonly sbyte[] DigitPairs = MakeDigitPairs();
    static readonly short[] DigitOffsets = MakeDigitOffsets();

    static sbyte[] MakeDigitPairs()
    {
        var p = new sbyte[128];
        for (int i = 0; i < 27; i++)
        {
            p[2 * i] = (sbyte)(i / 9 - 1); p[2 * i + 1] = (sbyte)(i / 3 % 3 - 1);
            p[64 + 2 * i + 1] = (sbyte)(i % 3 - 1);
        }
        return p;
    }

    static short[] MakeDigitOffsets()
    {
        var o = new short[32];
        for (int i = 0; i < 27; i++) o[i] = (short)(128 * (i / 9 - 1 + i / 3 % 3 - 1 + i % 3 - 1));
        return o;
    }

    /// <summary>
    /// Row r's tables: entry i of group g = Σ_j digit_j(i)·xq[3g + j], columns past the row counting as 0. Whole
    /// groups take two vpmaddubsw: the codes offset to unsigned (x + 128, broadcast as byte pairs (x0, x1) and
    /// (x1, x2)) times the signed digit pairs, less the offset's share; exact, as no pair sum exceeds 2 · 255.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    unsafe void BuildTables(int r, short* tables)
    {
        fixed (short* d = Digits)
        fixed (sbyte* pairs = DigitPairs)
        fixed (short* offsets = DigitOffsets)
        fixed (sbyte* q = &Values[r * PaddedCols])
        {
            short* dst = tables + ((long)(r >> 2) * TableGroups * 4 + (r & 3)) * 32;
            int g = 0, full = cols / 3;
            if (Avx512BW.IsSupported)
            {
                var p01 = Vector512.Load(pairs); var p12 = Vector512.Load(pairs + 64); var off = Vector512.Load(offsets);
                for (; g < full; g++, dst += 128)
                {
                    byte* x = (byte*)q + 3 * g;
                    var u01 = Vector512.Create((ushort)(*(ushort*)x ^ 0x8080)).AsByte();
                    var u12 = Vector512.Create((ushort)(*(ushort*)(x + 1) ^ 0x8080)).AsByte();
                    (Avx512BW.MultiplyAddAdjacent(u01, p01)
                        + Avx512BW.MultiplyAddAdjacent(u12, p12) - off).Store(dst);
                }
            }
            var d0 = Vector512.Load(d); var d1 = Vector512.Load(d + 32); var d2 = Vector512.Load(d + 64);
            for (; g < full; g++, dst += 128)
            {
                sbyte* x = q + 3 * g;
                (d0 * Vector512.Create((short)x[0]) + d1 * Vector512.Create((short)x[1]) + d2 * Vector512.Create((short)x[2])).Store(dst);
            }
            for (; g < TableGroups; g++, dst += 128)
            {
                int c = 3 * g;
                short x0 = c < cols ? q[c] : (short)0, x1 = c + 1 < cols ? q[c + 1] : (short)0, x2 = c + 2 < cols ? q[c + 2] : (short)0;
                (d0 * Vector512.Create(x0) + d1 * Vector512.Create(x1) + d2 * Vector512.Create(x2)).Store(dst);
            }
        }
    }

    /// <summary>Quantizes one row; returns s and the sum of the int8 values. Vectorized; equal to <see cref="QuantizeRowScalar"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static float QuantizeRow(ReadOnlySpan<float> x, Span<sbyte> q, out int sum)
    {
        if (Avx512F.IsSupported && x.Length % 16 == 0 && q.Length >= x.Length) return QuantizeRow512(x, q, out sum);
        if (!Vector256.IsHardwareAccelerated || x.Length < 32) return QuantizeRowScalar(x, q, out sum);
        int n = x.Length, i = 0;
        var vmax = Vector256<float>.Zero;
        for (; i + 8 <= n; i += 8) vmax = Vector256.Max(vmax, Vector256.Abs(Vector256.Create(x.Slice(i, 8))));
        float amax = 0;
        for (int k = 0; k < 8; k++) amax = MathF.Max(amax, vmax[k]);
        for (; i < n; i++) amax = MathF.Max(amax, MathF.Abs(x[i]));
        float s = 1f / MathF.Max(amax, 1e-5f) * 127f; // as the trainer: reciprocal, then × 127
        var vs = Vector256.Create(s);
        var lo = Vector256.Create(-128f);
        var hi = Vector256.Create(127f);
        var acc = Vector256<int>.Zero;
        i = 0;
        for (; i + 32 <= n; i += 32)
        {
            var a = Vector256.ConvertToInt32(Vector256.Clamp(Vector256.Round(Vector256.Create(x.Slice(i, 8)) * vs), lo, hi));
            var b = Vector256.ConvertToInt32(Vector256.Clamp(Vector256.Round(Vector256.Create(x.Slice(i + 8, 8)) * vs), lo, hi));
            var c = Vector256.ConvertToInt32(Vector256.Clamp(Vector256.Round(Vector256.Create(x.Slice(i + 16, 8)) * vs), lo, hi));
            var d = Vector256.ConvertToInt32(Vector256.Clamp(Vector256.Round(Vector256.Create(x.Slice(i + 24, 8)) * vs), lo, hi));
            acc += a + b + c + d;
            Vector256.Narrow(Vector256.Narrow(a, b), Vector256.Narrow(c, d)).CopyTo(q.Slice(i, 32));
        }
        sum = Vector256.Sum(acc);
        for (; i < n; i++)
        {
            int v = (int)Math.Clamp(MathF.Round(x[i] * s, MidpointRounding.ToEven), -128f, 127f);
            q[i] = (sbyte)v;
            sum += v;
        }
        return s;
    }

    /// <summary>
    /// 16 values per step for lengths divisible by 16 (a 64-wide attention head as much as a 768-wide row): the small
    /// rows of the KV cache and the attention query are quantized hundreds of times per layer of a batched decode.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static unsafe float QuantizeRow512(ReadOnlySpan<float> x, Span<sbyte> q, out int sum)
    {
        int n = x.Length;
        fixed (float* xp = x)
        fixed (sbyte* qp = q)
        {
            // The Native min, max and conversion skip .NET's NaN and overflow fix-ups (finite rows; the rounded values
            // are whole numbers within int8 when converted); the maximum is reduced by halves, not lane by lane.
            var vmax = Vector512<float>.Zero;
            for (int i = 0; i < n; i += 16) vmax = Vector512.MaxNative(vmax, Vector512.Abs(Vector512.Load(xp + i)));
            var half = Vector256.MaxNative(vmax.GetLower(), vmax.GetUpper());
            var m = Vector128.MaxNative(half.GetLower(), half.GetUpper());
            m = Vector128.MaxNative(m, Vector128.Shuffle(m, Vector128.Create(2, 3, 0, 1)));
            m = Vector128.MaxNative(m, Vector128.Shuffle(m, Vector128.Create(1, 0, 3, 2)));
            float amax = m.ToScalar();
            float s = 1f / MathF.Max(amax, 1e-5f) * 127f; // as the trainer: reciprocal, then × 127
            var vs = Vector512.Create(s);
            var lo = Vector512.Create(-128f);
            var hi = Vector512.Create(127f);
            var acc = Vector512<int>.Zero;
            for (int i = 0; i < n; i += 16)
            {
                var v = Vector512.ConvertToInt32Native(Vector512.ClampNative(Vector512.Round(Vector512.Load(xp + i) * vs), lo, hi));
                acc += v;
                Avx512F.ConvertToVector128SByte(v).Store(qp + i);
            }
            sum = Vector512.Sum(acc);
            return s;
        }
    }

    /// <summary>The oracle: s = (1 / max(max|x|, 1e-5)) · 127, q = clamp(round_half_even(x·s), -128, 127).</summary>
    public static float QuantizeRowScalar(ReadOnlySpan<float> x, Span<sbyte> q, out int sum)
    {
        float amax = 0;
        foreach (float v in x) amax = MathF.Max(amax, MathF.Abs(v));
        float s = 1f / MathF.Max(amax, 1e-5f) * 127f; // as the trainer: reciprocal, then × 127
        sum = 0;
        for (int j = 0; j < x.Length; j++)
        {
            int v = (int)Math.Clamp(MathF.Round(x[j] * s, MidpointRounding.ToEven), -128f, 127f);
            q[j] = (sbyte)v;
            sum += v;
        }
        return s;
    }
}
