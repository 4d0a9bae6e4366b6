// Writes a GGUF v3 file: header, metadata key-values (scalars, strings, arrays), tensor infos, then the tensor
// data, each tensor aligned to general.alignment (32). Streams the data through callbacks, so a large model is
// never held twice in memory. Not a reader (GgufFile) and not the Duck export logic (GgufExporter).
using System.Text;

namespace Duck.Inference.Gguf;

/// <summary>One tensor to write: ggml dims (ne0 = inner dimension first), type, and a callback writing exactly its bytes.</summary>
public sealed record GgufTensorSpec(string Name, long[] Dims, GgmlType Type, Action<Stream> WriteData)
{
    /// <summary>The data size the dims and type imply.</summary>
    public long SizeBytes => GgmlTypes.TensorBytes(Type, Dims[0], Dims.Skip(1).Aggregate(1L, (a, b) => a * b));
}

/// <summary>Serializes GGUF v3.</summary>
public static class GgufWriter
{
    public const uint Magic = 0x46554747; // "GGUF" little-endian
    public const uint Version = 3;
    public const int DefaultAlignment = 32;

    /// <summary>
    /// Writes the file. Metadata values may be string, bool, byte, sbyte, short, ushort, int, uint, long, ulong,
    /// float, double, or arrays string[], int[], uint[], float[]. general.alignment is added when absent.
    /// </summary>
    public static void Write(Stream output, IReadOnlyList<KeyValuePair<string, object>> metadata, IReadOnlyList<GgufTensorSpec> tensors)
        => Write(output, metadata, tensors, headerOnly: false);

    /// <summary>The bytes before the tensor data (header, metadata, infos, padding): the file size minus the aligned data.</summary>
    public static long HeaderBytes(IReadOnlyList<KeyValuePair<string, object>> metadata, IReadOnlyList<GgufTensorSpec> tensors)
    {
        var probe = new MemoryStream();
        Write(probe, metadata, tensors, headerOnly: true);
        return probe.Length;
    }

    static void Write(Stream output, IReadOnlyList<KeyValuePair<string, object>> metadata, IReadOnlyList<GgufTensorSpec> tensors, bool headerOnly)
    {
        var meta = metadata.ToList();
        if (!meta.Any(kv => kv.Key == "general.alignment"))
            meta.Insert(0, new("general.alignment", (uint)DefaultAlignment));
        int alignment = Convert.ToInt32(meta.First(kv => kv.Key == "general.alignment").Value);
        var names = new HashSet<string>();
        foreach (var t in tensors)
            if (!names.Add(t.Name)) throw new ArgumentException($"duplicate tensor name '{t.Name}'");

        var w = new BinaryWriter(output, Encoding.UTF8, leaveOpen: true);
        w.Write(Magic);
        w.Write(Version);
        w.Write((ulong)tensors.Count);
        w.Write((ulong)meta.Count);
        foreach (var (key, value) in meta)
        {
            WriteString(w, key);
            WriteValue(w, key, value);
        }
        long offset = 0;
        var offsets = new long[tensors.Count];
        for (int i = 0; i < tensors.Count; i++)
        {
            var t = tensors[i];
            WriteString(w, t.Name);
            w.Write((uint)t.Dims.Length);
            foreach (long d in t.Dims) w.Write((ulong)d);
            w.Write((uint)t.Type);
            w.Write((ulong)offset);
            offsets[i] = offset;
            offset = Align(offset + t.SizeBytes, alignment);
        }
        w.Flush();
        long headerEnd = output.Position;
        Pad(output, Align(headerEnd, alignment) - headerEnd);
        if (headerOnly) return;
        long dataStart = output.Position;
        for (int i = 0; i < tensors.Count; i++)
        {
            long before = output.Position;
            tensors[i].WriteData(output);
            long written = output.Position - before;
            if (written != tensors[i].SizeBytes)
                throw new InvalidOperationException($"tensor '{tensors[i].Name}': wrote {written} bytes, expected {tensors[i].SizeBytes}");
            long next = i + 1 < tensors.Count ? offsets[i + 1] : Align(offsets[i] + written, alignment);
            Pad(output, dataStart + next - output.Position);
        }
    }

    /// <summary>Rounds up to a multiple of the alignment.</summary>
    public static long Align(long value, int alignment) => (value + alignment - 1) / alignment * alignment;

    static void Pad(Stream s, long count)
    {
        for (long i = 0; i < count; i++) s.WriteByte(0);
    }

    static void WriteString(BinaryWriter w, string s)
    {
        byte[] bytes = Encoding.UTF8.GetBytes(s);
        w.Write((ulong)bytes.Length);
        w.Write(bytes);
    }

    static void WriteValue(BinaryWriter w, string key, object value)
    {
        switch (value)
        {
            case string s: w.Write((uint)GgufValueType.String); WriteString(w, s); break;
            case bool b: w.Write((uint)GgufValueType.Bool); w.Write(b ? (byte)1 : (byte)0); break;
            case byte v: w.Write((uint)GgufValueType.UInt8); w.Write(v); break;
            case sbyte v: w.Write((uint)GgufValueType.Int8); w.Write(v); break;
            case ushort v: w.Write((uint)GgufValueType.UInt16); w.Write(v); break;
            case short v: w.Write((uint)GgufValueType.Int16); w.Write(v); break;
            case uint v: w.Write((uint)GgufValueType.UInt32); w.Write(v); break;
            case int v: w.Write((uint)GgufValueType.Int32); w.Write(v); break;
            case ulong v: w.Write((uint)GgufValueType.UInt64); w.Write(v); break;
            case long v: w.Write((uint)GgufValueType.Int64); w.Write(v); break;
            case float v: w.Write((uint)GgufValueType.Float32); w.Write(v); break;
            case double v: w.Write((uint)GgufValueType.Float64); w.Write(v); break;
            case string[] a:
                w.Write((uint)GgufValueType.Array); w.Write((uint)GgufValueType.String); w.Write((ulong)a.Length);
                foreach (var s in a) WriteString(w, s);
                break;
            case int[] a:
                w.Write((uint)GgufValueType.Array); w.Write((uint)GgufValueType.Int32); w.Write((ulong)a.Length);
                foreach (var v in a) w.Write(v);
                break;
            case uint[] a:
                w.Write((uint)GgufValueType.Array); w.Write((uint)GgufValueType.UInt32); w.Write((ulong)a.Length);
                foreach (var v in a) w.Write(v);
                break;
            case float[] a:
                w.Write((uint)GgufValueType.Array); w.Write((uint)GgufValueType.Float32); w.Write((ulong)a.Length);
                foreach (var v in a) w.Write(v);
                break;
            default: throw new ArgumentException($"metadata '{key}': unsupported value type {value?.GetType().Name ?? "null"}");
        }
    }
}
