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
    readonly MemoryStream stream = new();
    readonly BinaryWriter writer;
    int count;

    public TensorPacketWriter()
    {
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
        Header(name, EntryKind.Ternary, rows, columns, rowIds);
        writer.Write(scales.Length);
        writer.Write(MemoryMarshal.AsBytes(scales));
        var packed = new byte[TernaryCodec.PackedBytes(ternary.Length)];
        TernaryCodec.Pack(ternary, packed);
        writer.Write(packed);
    }

    public byte[] ToArray()
    {
        writer.Flush();
        var bytes = stream.ToArray();
        BitConverter.TryWriteBytes(bytes.AsSpan(5, 4), count);
        return bytes;
    }
}

/// <summary>Reads a packet into dense fp32 tensors.</summary>
public static class TensorPacketReader
{
    /// <summary>Calls <paramref name="visit"/>(name, rows, columns, rowIds or null, decoded values of the sent rows) per entry.</summary>
    public static void Read(byte[] packet, Action<string, long, long, int[]?, float[]> visit)
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
            int[]? ids = idCount < 0 ? null : MemoryMarshal.Cast<byte, int>(reader.ReadBytes(idCount * 4)).ToArray();
            long sentRows = ids?.Length ?? rows;
            var values = new float[checked(sentRows * columns)];
            switch (kind)
            {
                case EntryKind.Fp32:
                    MemoryMarshal.Cast<byte, float>(reader.ReadBytes(values.Length * 4)).CopyTo(values);
                    break;
                case EntryKind.Fp16:
                    var half = MemoryMarshal.Cast<byte, Half>(reader.ReadBytes(values.Length * 2));
                    for (int i = 0; i < values.Length; i++) values[i] = (float)half[i];
                    break;
                case EntryKind.Ternary:
                    int scaleCount = reader.ReadInt32();
                    if (scaleCount < 1 || sentRows % scaleCount != 0)
                        throw new InvalidDataException($"tensor '{name}': {scaleCount} scales for {sentRows} rows");
                    var scales = MemoryMarshal.Cast<byte, float>(reader.ReadBytes(scaleCount * 4)).ToArray();
                    var packed = reader.ReadBytes(TernaryCodec.PackedBytes(values.Length));
                    long perScale = sentRows / scaleCount * columns;
                    for (int s = 0; s < scaleCount; s++)
                        TernaryCodec.Unpack(packed, s * perScale, scales[s], values.AsSpan((int)(s * perScale), (int)perScale));
                    break;
                default:
                    throw new InvalidDataException($"tensor '{name}': unknown entry kind {(byte)kind}");
            }
            visit(name, rows, columns, ids, values);
        }
    }
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

    /// <summary>Concatenates chunks in index order; throws when one is missing.</summary>
    public static byte[] Join(IReadOnlyList<byte[]?> chunks)
    {
        for (int i = 0; i < chunks.Count; i++)
            if (chunks[i] is null) throw new InvalidDataException($"chunk {i} of {chunks.Count} is missing");
        var result = new byte[chunks.Sum(c => (long)c!.Length)];
        long at = 0;
        foreach (var c in chunks) { c!.CopyTo(result, at); at += c!.Length; }
        return result;
    }
}
