// A ternary weight matrix [rows, cols] in the engine's in-memory layout: 2-bit codes t+1 ∈ {0,1,2}, rows padded
// to a multiple of 256 columns, and within each 256-column block byte m (0..63) holding column 64·l + m at
// bits 2l. One 64-byte (or two 32-byte) loads then give 64 (32) consecutive columns per shift, so kernels read
// activations contiguously. Native, 64-byte aligned memory. Not the file format (TQ2_0/TQ1_0 are repacked into this).
// A second layout, built on first use where AVX-512BW exists, serves the table-lookup kernel (TernaryMatMul.Lookup):
// each 16-bit word holds three base-3 indexes of three columns each (1.78 bits per weight), 32 rows per 64-byte
// vector, rows padded to whole quads of 32-row tiles.
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace Duck.Inference.Kernels;

/// <summary>Packed ternary weights with one per-tensor scale (gamma).</summary>
public sealed unsafe class PackedTernary : IDisposable
{
    /// <summary>Columns per packed block.</summary>
    public const int BlockColumns = 256;
    /// <summary>Columns per lookup word: three groups of three, each group an index 9(t0+1) + 3(t1+1) + (t2+1) in 0..26.</summary>
    public const int WordColumns = 9;
    /// <summary>Rows per lookup tile: the 32 16-bit lanes of a 512-bit vector.</summary>
    public const int TileRows = 32;

    byte* data;
    nint triples; // the lookup layout, or 0 until first needed
    readonly Lock triplesLock = new();

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

    /// <summary>Lookup words per row: ceil(Cols / 9), the padding columns holding t = 0.</summary>
    public int Words => (Cols + WordColumns - 1) / WordColumns;
    /// <summary>Lookup tiles: rows rounded up to a whole number of 4-tile quads (128 rows), padding rows all zero.</summary>
    public int Tiles => (Rows + 4 * TileRows - 1) / (4 * TileRows) * 4;
    /// <summary>Bytes of the lookup layout.</summary>
    public long LookupBytes => (long)Tiles * Words * 64;

    /// <summary>
    /// The lookup layout [tile][word][32 lanes] of 16-bit words, lane r of tile k being row 32k + r; built from the
    /// codes on first use (thread-safe) and dropped by <see cref="SetRow"/>.
    /// </summary>
    public ushort* Triples
    {
        get
        {
            nint p = Volatile.Read(ref triples);
            return p != 0 ? (ushort*)p : BuildTriples();
        }
    }

    /// <summary>Builds the lookup layout now rather than on the first batched product.</summary>
    public void PrepareLookup() => _ = Triples;

    ushort* BuildTriples()
    {
        lock (triplesLock)
        {
            if (triples != 0) return (ushort*)triples;
            int words = Words, tiles = Tiles;
            var p = (ushort*)NativeMemory.AlignedAlloc((nuint)LookupBytes, 64);
            Parallel.For(0, tiles, tile =>
            {
                var t = new sbyte[Math.Max(PaddedCols, words * WordColumns)]; // padding columns stay 0
                for (int lane = 0; lane < TileRows; lane++)
                {
                    int row = tile * TileRows + lane;
                    if (row < Rows) DecodeRow(row, t);
                    else Array.Clear(t);
                    ushort* dst = p + (long)tile * words * TileRows + lane;
                    for (int wd = 0, c = 0; wd < words; wd++, c += WordColumns)
                        dst[wd * TileRows] = (ushort)(
                            (9 * t[c] + 3 * t[c + 1] + t[c + 2] + 13)
                            | (9 * t[c + 3] + 3 * t[c + 4] + t[c + 5] + 13) << 5
                            | (9 * t[c + 6] + 3 * t[c + 7] + t[c + 8] + 13) << 10);
                }
            });
            Volatile.Write(ref triples, (nint)p);
            return p;
        }
    }

    /// <summary>Ternary values of a row into the first PaddedCols entries of <paramref name="t"/> (padding columns are 0).</summary>
    void DecodeRow(int row, Span<sbyte> t)
    {
        byte* src = RowPointer(row);
        var three = Vector128.Create((byte)3);
        for (int b = 0; b < PaddedCols / BlockColumns; b++)
            for (int l = 0; l < 4; l++)
                for (int m = 0; m < 64; m += 16)
                {
                    var codes = (Vector128.Load(src + b * 64 + m) >>> (2 * l)) & three;
                    (codes.AsSByte() - Vector128<sbyte>.One).CopyTo(t[(b * BlockColumns + 64 * l + m)..]);
                }
    }

    void DropTriples()
    {
        nint p = Interlocked.Exchange(ref triples, 0);
        if (p != 0) NativeMemory.AlignedFree((void*)p);
    }

    /// <summary>Writes one row from ternary values (length Cols); padding stays 0.</summary>
    public void SetRow(int row, ReadOnlySpan<sbyte> t)
    {
        if (t.Length != Cols) throw new ArgumentException($"row has {t.Length} values, expected {Cols}");
        DropTriples();
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
        DropTriples();
    }
}
