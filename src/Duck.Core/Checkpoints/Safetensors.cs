// Reads and writes the safetensors format (an 8-byte little-endian header length, a JSON header naming each
// tensor's dtype, shape and byte range, then the raw data) for F32 tensors, so that a PyTorch user can load
// Duck's checkpoints with `safetensors.torch.load_file`. Not a general tensor library.
using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace Duck.Core.Checkpoints;

/// <summary>A named F32 tensor: its shape and its row-major data.</summary>
public sealed record NamedTensor(string Name, long[] Shape, float[] Data)
{
    public long ElementCount => Shape.Aggregate(1L, (a, b) => a * b);
}

/// <summary>safetensors serialization of F32 tensors.</summary>
public static class Safetensors
{
    const long MaxHeaderBytes = 100L << 20;

    /// <summary>Writes the tensors (sorted by name, as the reference writer does) with optional string metadata.</summary>
    public static void Write(Stream output, IEnumerable<NamedTensor> tensors, IReadOnlyDictionary<string, string>? metadata = null)
    {
        var list = tensors.OrderBy(t => t.Name, StringComparer.Ordinal).ToList();
        var header = new JsonObject();
        if (metadata is { Count: > 0 })
            header["__metadata__"] = new JsonObject(metadata.Select(kv => KeyValuePair.Create(kv.Key, (JsonNode?)kv.Value)));
        long offset = 0;
        foreach (var t in list)
        {
            if (t.ElementCount != t.Data.Length)
                throw new ArgumentException($"tensor '{t.Name}': shape [{string.Join(", ", t.Shape)}] holds {t.ElementCount} values but data has {t.Data.Length}");
            long bytes = t.Data.Length * 4L;
            header[t.Name] = new JsonObject
            {
                ["dtype"] = "F32",
                ["shape"] = new JsonArray(t.Shape.Select(s => (JsonNode?)s).ToArray()),
                ["data_offsets"] = new JsonArray(offset, offset + bytes),
            };
            offset += bytes;
        }
        byte[] json = Encoding.UTF8.GetBytes(header.ToJsonString());
        int padded = (json.Length + 7) / 8 * 8; // the format recommends 8-byte alignment of the data
        Span<byte> lengthBytes = stackalloc byte[8];
        BitConverter.TryWriteBytes(lengthBytes, (ulong)padded);
        output.Write(lengthBytes);
        output.Write(json);
        for (int i = json.Length; i < padded; i++) output.WriteByte((byte)' ');
        foreach (var t in list)
            output.Write(MemoryMarshal.AsBytes(t.Data.AsSpan()));
    }

    /// <summary>Reads every tensor; throws <see cref="InvalidDataException"/> on a truncated or foreign file.</summary>
    public static (List<NamedTensor> Tensors, Dictionary<string, string> Metadata) Read(Stream input, string sourceName = "safetensors")
    {
        using var ms = new MemoryStream();
        input.CopyTo(ms);
        return Read(ms.GetBuffer().AsSpan(0, (int)ms.Length), sourceName);
    }

    public static (List<NamedTensor> Tensors, Dictionary<string, string> Metadata) Read(ReadOnlySpan<byte> file, string sourceName = "safetensors")
    {
        if (file.Length < 8) throw new InvalidDataException($"{sourceName}: file is {file.Length} bytes, too short for a safetensors header");
        ulong headerLength = BitConverter.ToUInt64(file[..8]);
        if (headerLength > (ulong)MaxHeaderBytes || 8 + (long)headerLength > file.Length)
            throw new InvalidDataException($"{sourceName}: header length {headerLength} does not fit in a {file.Length}-byte file (truncated or not safetensors)");
        JsonObject header;
        try { header = JsonNode.Parse(file.Slice(8, (int)headerLength))!.AsObject(); }
        catch (JsonException e) { throw new InvalidDataException($"{sourceName}: header is not valid JSON ({e.Message})"); }
        var data = file[(8 + (int)headerLength)..];
        var tensors = new List<NamedTensor>();
        var metadata = new Dictionary<string, string>();
        foreach (var (name, node) in header)
        {
            if (name == "__metadata__")
            {
                foreach (var (k, v) in node!.AsObject()) metadata[k] = v!.GetValue<string>();
                continue;
            }
            var o = node!.AsObject();
            string dtype = o["dtype"]!.GetValue<string>();
            if (dtype != "F32") throw new InvalidDataException($"{sourceName}: tensor '{name}' has dtype {dtype}; only F32 is supported");
            long[] shape = o["shape"]!.AsArray().Select(x => x!.GetValue<long>()).ToArray();
            var offsets = o["data_offsets"]!.AsArray();
            long begin = offsets[0]!.GetValue<long>(), end = offsets[1]!.GetValue<long>();
            long count = shape.Aggregate(1L, (a, b) => a * b);
            if (begin < 0 || end > data.Length || end - begin != count * 4)
                throw new InvalidDataException($"{sourceName}: tensor '{name}' byte range [{begin}, {end}) does not fit shape [{string.Join(", ", shape)}] in {data.Length} data bytes (truncated?)");
            var values = new float[count];
            MemoryMarshal.Cast<byte, float>(data[(int)begin..(int)end]).CopyTo(values);
            tensors.Add(new NamedTensor(name, shape, values));
        }
        return (tensors, metadata);
    }
}
