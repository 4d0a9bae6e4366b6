// A ternary weight matrix [rows, cols] in the engine's in-memory layout: 2-bit codes t+1 ∈ {0,1,2}, rows padded
// to a multiple of 256 columns, and within each 256-column block byte m (0..63) holding column 64·l + m at
// bits 2l. One 64-byte (or two 32-byte) loads then give 64 (32) consecutive columns per shift, so kernels read
// activations contiguously. Native, 64-byte aligned memory. Not the file format (TQ2_0/TQ1_0 are repacked into this).
using System.Runtime.InteropServices;

namespace Duck.Inference.Kernels;

/// <summary>Packed ternary weights with one per-tensor scale (gamma).</summary>
public sealed unsafe class PackedTernary : IDisposable
{
    /// <summary>Columns per packed block.</summary>
    public const int BlockColumns = 256;

    byte* data;

    /// <summary>Output features (rows of the PyTorch [out, in] matrix).</summary>
    public int Rows { get; }
    /// <summary>Input features (logical row length).</summary>
    public int Cols { get; }
    /// <summary>Row length rounded up to a multiple of 256; padding columns hold t = 0.</summary>
    public int PaddedCols { get; }
    /// <summary>Bytes per packed row: PaddedCols / 4.</summary>
    public int RowBytes => PaddedCols / 4;
    /// <summary>The per-tensor scale: effective weight = t · Scale.</summary>
    public float Scale { get; set; }
    /// <summary>Bytes of packed data.</summary>
    public long SizeBytes => (long)Rows * RowBytes;

    /// <summary>Allocates a matrix of zeros (every code 1).</summary>
    public PackedTernary(int rows, int cols, float scale)
    {
        if (rows <= 0 || cols <= 0) throw new ArgumentException($"ternary matrix shape [{rows}, {cols}] must be positive");
        Rows = rows;
        Cols = cols;
        PaddedCols = RoundUp(cols);
        Scale = scale;
        data = (byte*)NativeMemory.AlignedAlloc((nuint)SizeBytes, 64);
        new Span<byte>(data, checked((int)SizeBytes)).Fill(0x55); // code 1 (t = 0) in all four slots
    }

    /// <summary>Rounds a column count up to a whole number of 256-column blocks.</summary>
    public static int RoundUp(int cols) => (cols + BlockColumns - 1) / BlockColumns * BlockColumns;

    /// <summary>The first byte of a packed row.</summary>
    public byte* RowPointer(int row) => data + (long)row * RowBytes;

    /// <summary>The packed bytes of a row.</summary>
    public Span<byte> RowBytesSpan(int row) => new(RowPointer(row), RowBytes);

    /// <summary>Byte index within a row and bit shift of a column.</summary>
    public static (int Byte, int Shift) Locate(int col) => ((col >> 8) * 64 + (col & 63), ((col >> 6) & 3) * 2);

    /// <summary>The ternary value t ∈ {-1,0,1} at (row, col).</summary>
    public int Get(int row, int col)
    {
        var (b, s) = Locate(col);
        return ((RowPointer(row)[b] >> s) & 3) - 1;
    }

    /// <summary>Writes one row from ternary values (length Cols); padding stays 0.</summary>
    public void SetRow(int row, ReadOnlySpan<sbyte> t)
    {
        if (t.Length != Cols) throw new ArgumentException($"row has {t.Length} values, expected {Cols}");
        var dst = RowBytesSpan(row);
        dst.Fill(0x55);
        for (int c = 0; c < t.Length; c++)
        {
            if (t[c] is < -1 or > 1) throw new ArgumentException($"value {t[c]} at column {c} is not ternary");
            var (b, s) = Locate(c);
            dst[b] = (byte)((dst[b] & ~(3 << s)) | ((t[c] + 1) << s));
        }
    }

    /// <summary>Dequantized row: t · Scale (length Cols).</summary>
    public void DequantizeRow(int row, Span<float> y)
    {
        for (int c = 0; c < Cols; c++) y[c] = Get(row, c) * Scale;
    }

    public void Dispose()
    {
        if (data != null) NativeMemory.AlignedFree(data);
        data = null;
    }
}
