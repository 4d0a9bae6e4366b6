// The byte layout of what travels between grains: a packet of named tensors, each fp32, fp16, 2-bit ternary with
// per-row scales, or a subset of rows (the embedding) in one of those. Magic "DPKT", version 1, little-endian.
// A packet is split into chunks of at most Payloads.MaxChunkBytes by Chunking. Not the quantizer: see TernaryCodec.
using System.Runtime.InteropServices;
using System.Text;

namespace Duck.Grains;

/// <summary>How one tensor of a packet is encoded.</summary>
public enum EntryKind : byte
{
    Fp32 = 0,
    Fp16 = 1,
    /// <summary>[rows] fp32 scales, then 2-bit codes of the row-major values: value = scale[row] * t.</summary>
    Ternary = 2,
}

/// <summary>Writes a packet.</summary>
public sealed class TensorPacketWriter
{
    public const uint Magic = 0x544B5044; // "DPKT"
    public const byte Version = 1;
    readonly MemoryStream stream;
    readonly BinaryWriter writer;
    int count;

    public TensorPacketWriter(int capacity = 0)
    {
        stream = new MemoryStream(capacity);
        writer = new BinaryWriter(stream, Encoding.UTF8, leaveOpen: true);
        writer.Write(Magic);
        writer.Write(Version);
        writer.Write(0); // entry count, patched in ToArray
    }

    void Header(string name, EntryKind kind, long rows, long columns, int[]? rowIds)
    {
        writer.Write(name);
        writer.Write((byte)kind);
        writer.Write(rows);
        writer.Write(columns);
        writer.Write(rowIds?.Length ?? -1);
        if (rowIds is not null) writer.Write(MemoryMarshal.AsBytes(rowIds.AsSpan()));
        count++;
    }

    /// <summary>A [rows, columns] tensor (or, with <paramref name="rowIds"/>, only those rows of it, values holding rowIds.Length rows) as fp32.</summary>
    public void WriteFp32(string name, long rows, long columns, ReadOnlySpan<float> values, int[]? rowIds = null)
    {
        Header(name, EntryKind.Fp32, rows, columns, rowIds);
        writer.Write(MemoryMarshal.AsBytes(values));
    }

    /// <summary>As <see cref="WriteFp32"/>, rounded to fp16.</summary>
    public void WriteFp16(string name, long rows, long columns, ReadOnlySpan<float> values, int[]? rowIds = null)
    {
        Header(name, EntryKind.Fp16, rows, columns, rowIds);
        var half = new Half[values.Length];
        for (int i = 0; i < values.Length; i++) half[i] = (Half)values[i];
        writer.Write(MemoryMarshal.AsBytes(half.AsSpan()));
    }

    /// <summary>Ternary values with one scale per sent row (scales.Length rows of <paramref name="columns"/>).</summary>
    public void WriteTernary(string name, long rows, long columns, ReadOnlySpan<float> scales, ReadOnlySpan<sbyte> ternary, int[]? rowIds = null)
    {
        var packed = new byte[TernaryCodec.PackedBytes(ternary.Length)];
        TernaryCodec.Pack(ternary, packed);
        WritePackedTernary(name, rows, columns, scales, packed, rowIds);
    }

    /// <summary>As <see cref="WriteTernary"/>, with the codes already packed (<see cref="TernaryCodec.Pack"/>'s layout).</summary>
    public void WritePackedTernary(string name, long rows, long columns, ReadOnlySpan<float> scales, ReadOnlySpan<byte> packed, int[]? rowIds = null)
    {
        long values = (rowIds?.Length ?? rows) * columns;
        if (packed.Length != TernaryCodec.PackedBytes(values)) throw new ArgumentException($"tensor '{name}': {packed.Length} packed bytes for {values} values");
        Header(name, EntryKind.Ternary, rows, columns, rowIds);
        writer.Write(scales.Length);
        writer.Write(MemoryMarshal.AsBytes(scales));
        writer.Write(packed);
    }

    /// <summary>The packet. When the writer was created with exactly its size (<see cref="Bytes"/>), its own buffer, not a copy.</summary>
    public byte[] ToArray()
    {
        writer.Flush();
        var bytes = stream.Length == stream.Capacity ? stream.GetBuffer() : stream.ToArray();
        BitConverter.TryWriteBytes(bytes.AsSpan(5, 4), count);
        return bytes;
    }

    /// <summary>Bytes of a packet's header (before its entries).</summary>
    public const int HeaderBytes = 9;

    /// <summary>Bytes of one entry as the writer lays it out: <paramref name="sentRows"/> rows of <paramref name="columns"/>
    /// values (with their ids when <paramref name="byRows"/>), and for ternary one scale per sent row.</summary>
    public static long Bytes(string name, EntryKind kind, long sentRows, long columns, bool byRows, int scales = 0)
    {
        int nameBytes = Encoding.UTF8.GetByteCount(name);
        long header = LengthPrefixBytes(nameBytes) + nameBytes + 1 + 8 + 8 + 4 + (byRows ? sentRows * 4 : 0);
        long values = sentRows * columns;
        return header + kind switch
        {
            EntryKind.Fp32 => values * 4,
            EntryKind.Fp16 => values * 2,
            _ => 4 + scales * 4L + TernaryCodec.PackedBytes(values),
        };
    }

    /// <summary>BinaryWriter's 7-bit length prefix of a string of that many bytes.</summary>
    static int LengthPrefixBytes(int length)
    {
        int bytes = 1;
        for (uint rest = (uint)length >> 7; rest != 0; rest >>= 7) bytes++;
        return bytes;
    }
}

/// <summary>One tensor of a packet as it lies in the packet: for ternary, its scales and packed codes; otherwise its raw
/// fp32 or fp16 bytes.</summary>
public readonly ref struct PacketEntry
{
    public string Name { get; init; }
    public EntryKind Kind { get; init; }
    public long Rows { get; init; }
    public long Columns { get; init; }
    /// <summary>The rows sent, or null for the whole tensor.</summary>
    public int[]? RowIds { get; init; }
    public ReadOnlySpan<float> Scales { get; init; }
    public ReadOnlySpan<byte> Payload { get; init; }
    /// <summary>Values sent: (RowIds.Length or Rows) x Columns.</summary>
    public long Count => (RowIds?.Length ?? Rows) * Columns;

    /// <summary>Decodes values [first, first + output.Length) of the entry; with <paramref name="add"/>, adds them to output.</summary>
    public void Decode(long first, Span<float> output, bool add = false)
    {
        switch (Kind)
        {
            case EntryKind.Fp32:
                var f = MemoryMarshal.Cast<byte, float>(Payload).Slice((int)first, output.Length);
                if (!add) f.CopyTo(output);
                else for (int i = 0; i < output.Length; i++) output[i] += f[i];
                break;
            case EntryKind.Fp16:
                var h = MemoryMarshal.Cast<byte, Half>(Payload).Slice((int)first, output.Length);
                for (int i = 0; i < output.Length; i++) output[i] = (add ? output[i] : 0) + (float)h[i];
                break;
            default:
                long perScale = Count / Scales.Length;
                int done = 0;
                while (done < output.Length)
                {
                    long at = first + done;
                    int s = (int)(at / perScale);
                    int n = (int)Math.Min(output.Length - done, (s + 1) * perScale - at);
                    TernaryCodec.Unpack(Payload, at, Scales[s], output.Slice(done, n), add);
                    done += n;
                }
                break;
        }
    }
}

/// <summary>Reads a packet.</summary>
public static class TensorPacketReader
{
    public delegate void EntryVisitor(in PacketEntry entry);

    /// <summary>Calls <paramref name="visit"/> once per entry with the entry as it lies in the packet (no decoding).</summary>
    public static void ReadEntries(byte[] packet, EntryVisitor visit)
    {
        using var reader = new BinaryReader(new MemoryStream(packet, writable: false), Encoding.UTF8);
        if (packet.Length < 9 || reader.ReadUInt32() != TensorPacketWriter.Magic)
            throw new InvalidDataException("not a Duck tensor packet (bad magic)");
        byte version = reader.ReadByte();
        if (version != TensorPacketWriter.Version)
            throw new InvalidDataException($"tensor packet version {version} is not supported (this build reads {TensorPacketWriter.Version})");
        int count = reader.ReadInt32();
        for (int e = 0; e < count; e++)
        {
            string name = reader.ReadString();
            var kind = (EntryKind)reader.ReadByte();
            long rows = reader.ReadInt64(), columns = reader.ReadInt64();
            int idCount = reader.ReadInt32();
            int[]? ids = idCount < 0 ? null : MemoryMarshal.Cast<byte, int>(Take(reader, packet, idCount * 4L)).ToArray();
            long sentRows = ids?.Length ?? rows;
            long values = checked(sentRows * columns);
            ReadOnlySpan<float> scales = default;
            ReadOnlySpan<byte> payload;
            switch (kind)
            {
                case EntryKind.Fp32: payload = Take(reader, packet, values * 4); break;
                case EntryKind.Fp16: payload = Take(reader, packet, values * 2); break;
                case EntryKind.Ternary:
                    int scaleCount = reader.ReadInt32();
                    if (scaleCount < 1 || sentRows % scaleCount != 0)
                        throw new InvalidDataException($"tensor '{name}': {scaleCount} scales for {sentRows} rows");
                    scales = MemoryMarshal.Cast<byte, float>(Take(reader, packet, scaleCount * 4L));
                    payload = Take(reader, packet, TernaryCodec.PackedBytes(values));
                    break;
                default:
                    throw new InvalidDataException($"tensor '{name}': unknown entry kind {(byte)kind}");
            }
            visit(new PacketEntry { Name = name, Kind = kind, Rows = rows, Columns = columns, RowIds = ids, Scales = scales, Payload = payload });
        }
    }

    /// <summary>The next <paramref name="bytes"/> of the packet, in place; throws when the packet is shorter.</summary>
    static ReadOnlySpan<byte> Take(BinaryReader reader, byte[] packet, long bytes)
    {
        long at = reader.BaseStream.Position;
        if (bytes < 0 || at + bytes > packet.Length) throw new InvalidDataException($"tensor packet truncated: {bytes} bytes wanted at {at} of {packet.Length}");
        reader.BaseStream.Position = at + bytes;
        return packet.AsSpan((int)at, (int)bytes);
    }

    /// <summary>Calls <paramref name="visit"/>(name, rows, columns, rowIds or null, decoded values of the sent rows) per entry.</summary>
    public static void Read(byte[] packet, Action<string, long, long, int[]?, float[]> visit) =>
        ReadEntries(packet, (in PacketEntry entry) =>
        {
            var values = new float[entry.Count];
            entry.Decode(0, values);
            visit(entry.Name, entry.Rows, entry.Columns, entry.RowIds, values);
        });
}

/// <summary>Splits payloads into message-sized chunks and joins them back.</summary>
public static class Chunking
{
    public static int CountOf(long totalBytes, int chunkBytes = Payloads.MaxChunkBytes) => (int)Math.Max(1, (totalBytes + chunkBytes - 1) / chunkBytes);

    /// <summary>Chunk <paramref name="index"/> of <paramref name="payload"/>.</summary>
    public static byte[] Slice(byte[] payload, int index, int chunkBytes = Payloads.MaxChunkBytes)
    {
        int count = CountOf(payload.Length, chunkBytes);
        if (index < 0 || index >= count) throw new ArgumentOutOfRangeException(nameof(index), index, $"chunk index must be in 0..{count - 1}");
        int start = index * chunkBytes;
        return payload.AsSpan(start, Math.Min(chunkBytes, payload.Length - start)).ToArray();
    }

    /// <summary>At most this many chunk requests of one transfer are in flight: enough to hide the round trips, few enough
    /// that a long transfer (a full fp32 model is hundreds of chunks) does not queue them all behind one another
    /// within each call's timeout.</summary>
    public const int FetchWindow = 4;

    /// <summary>Fetches parts 0..<paramref name="count"/>-1 with up to <see cref="FetchWindow"/> requests in flight and joins
    /// them in order; null as soon as one part comes back null (stale).</summary>
    public static async Task<byte[]?> FetchAsync(int count, Func<int, Task<byte[]?>> fetch)
    {
        var parts = new byte[]?[count];
        for (int first = 0; first < count; first += FetchWindow)
        {
            int n = Math.Min(FetchWindow, count - first);
            var window = await Task.WhenAll(Enumerable.Range(first, n).Select(fetch));
            if (window.Any(part => part is null)) return null;
            window.CopyTo(parts, first);
        }
        return Join(parts);
    }

    /// <summary>Concatenates chunks in index order (a single chunk is returned as it is); throws when one is missing.</summary>
    public static byte[] Join(IReadOnlyList<byte[]?> chunks)
    {
        for (int i = 0; i < chunks.Count; i++)
            if (chunks[i] is null) throw new InvalidDataException($"chunk {i} of {chunks.Count} is missing");
        if (chunks.Count == 1) return chunks[0]!;
        var result = new byte[chunks.Sum(c => (long)c!.Length)];
        long at = 0;
        foreach (var c in chunks) { c!.CopyTo(result, at); at += c!.Length; }
        return result;
    }
}
