// A memory-mapped, validated view of a GGUF v3 file: metadata, tensor infos and zero-copy access to each
// tensor's bytes. Every size and offset is checked against the file so a truncated or foreign file fails with
// an InvalidDataException naming the problem. Not a model: interpreting tensors is InferenceModel's job.
using System.IO.MemoryMappedFiles;
using System.Text;

namespace Duck.Inference.Gguf;

/// <summary>One tensor's description: ggml dims (ne0 first), type, and the absolute byte range in the file.</summary>
public sealed record GgufTensorInfo(string Name, long[] Dims, GgmlType Type, long FileOffset, long SizeBytes)
{
    /// <summary>Inner dimension (ne0): the row length.</summary>
    public long Ne0 => Dims[0];
    /// <summary>Product of the outer dimensions: the row count.</summary>
    public long Rows => Dims.Skip(1).Aggregate(1L, (a, b) => a * b);
}

/// <summary>An open GGUF file. Dispose to unmap. Read-only and safe to share between threads.</summary>
public sealed unsafe class GgufFile : IDisposable
{
    const long MaxCount = 1L << 24;

    readonly MemoryMappedFile? map;
    readonly MemoryMappedViewAccessor? view;
    readonly byte* basePtr;
    readonly long length;
    readonly Dictionary<string, GgufTensorInfo> tensorsByName = new();

    /// <summary>The path the file was opened from.</summary>
    public string Path { get; }
    /// <summary>Total file size in bytes.</summary>
    public long FileBytes => length;
    /// <summary>Metadata by key; arrays come back as typed arrays (string[], int[], float[], ...).</summary>
    public IReadOnlyDictionary<string, object> Metadata { get; }
    /// <summary>Tensors in file order.</summary>
    public IReadOnlyList<GgufTensorInfo> Tensors { get; }
    /// <summary>The data alignment (general.alignment, default 32).</summary>
    public int Alignment { get; }

    GgufFile(string path)
    {
        Path = path;
        var info = new FileInfo(path);
        if (!info.Exists) throw new FileNotFoundException($"model file '{path}' does not exist", path);
        length = info.Length;
        if (length < 24) throw new InvalidDataException($"{path}: {length} bytes is too short for a GGUF header (truncated or not a GGUF file)");
        map = MemoryMappedFile.CreateFromFile(path, FileMode.Open, null, 0, MemoryMappedFileAccess.Read);
        try
        {
            view = map.CreateViewAccessor(0, length, MemoryMappedFileAccess.Read);
            byte* p = null;
            view.SafeMemoryMappedViewHandle.AcquirePointer(ref p);
            basePtr = p + view.PointerOffset;
            var (metadata, tensors, alignment) = Parse();
            Metadata = metadata;
            Tensors = tensors;
            Alignment = alignment;
        }
        catch
        {
            Dispose();
            throw;
        }
    }

    /// <summary>Opens and validates a GGUF file; <see cref="InvalidDataException"/> when it is truncated, foreign or inconsistent.</summary>
    public static GgufFile Open(string path) => new(path);

    /// <summary>The tensor of that name, or null.</summary>
    public GgufTensorInfo? Find(string name) => tensorsByName.GetValueOrDefault(name);

    /// <summary>The tensor of that name; <see cref="InvalidDataException"/> naming it when missing.</summary>
    public GgufTensorInfo Require(string name) =>
        Find(name) ?? throw new InvalidDataException($"{Path}: tensor '{name}' is missing");

    /// <summary>A pointer to a tensor's first byte, valid until Dispose.</summary>
    public byte* DataPointer(GgufTensorInfo tensor) => basePtr + tensor.FileOffset;

    /// <summary>A tensor's bytes (tensors over 2 GiB must use <see cref="DataPointer"/>).</summary>
    public ReadOnlySpan<byte> Data(GgufTensorInfo tensor) => new(basePtr + tensor.FileOffset, checked((int)tensor.SizeBytes));

    /// <summary>A metadata value of the expected type; <see cref="InvalidDataException"/> naming the key otherwise.</summary>
    public T Get<T>(string key)
    {
        if (!Metadata.TryGetValue(key, out var v)) throw new InvalidDataException($"{Path}: metadata key '{key}' is missing");
        if (v is T t) return t;
        try { return (T)Convert.ChangeType(v, typeof(T), System.Globalization.CultureInfo.InvariantCulture); }
        catch (Exception e) when (e is InvalidCastException or FormatException or OverflowException)
        {
            throw new InvalidDataException($"{Path}: metadata key '{key}' holds {v.GetType().Name}, expected {typeof(T).Name}");
        }
    }

    public void Dispose()
    {
        if (view is not null)
        {
            if (basePtr != null) view.SafeMemoryMappedViewHandle.ReleasePointer();
            view.Dispose();
        }
        map?.Dispose();
    }

    (Dictionary<string, object>, List<GgufTensorInfo>, int) Parse()
    {
        long pos = 0;
        uint magic = ReadU32(ref pos, "magic");
        if (magic != GgufWriter.Magic)
            throw new InvalidDataException($"{Path}: not a GGUF file (magic 0x{magic:X8}, expected 0x{GgufWriter.Magic:X8} \"GGUF\")");
        uint version = ReadU32(ref pos, "version");
        if (version != GgufWriter.Version)
            throw new InvalidDataException($"{Path}: GGUF version {version} is not supported (this build reads version {GgufWriter.Version})");
        long tensorCount = ReadCount(ref pos, "tensor count");
        long kvCount = ReadCount(ref pos, "metadata count");
        var metadata = new Dictionary<string, object>();
        for (long i = 0; i < kvCount; i++)
        {
            string key = ReadString(ref pos, $"metadata key #{i}");
            var type = (GgufValueType)ReadU32(ref pos, $"type of '{key}'");
            metadata[key] = ReadValue(ref pos, type, key);
        }
        int alignment = metadata.TryGetValue("general.alignment", out var a) ? Convert.ToInt32(a) : GgufWriter.DefaultAlignment;
        if (alignment <= 0 || (alignment & (alignment - 1)) != 0)
            throw new InvalidDataException($"{Path}: general.alignment {alignment} is not a power of two");
        var raw = new List<(string Name, long[] Dims, GgmlType Type, long Offset)>();
        for (long i = 0; i < tensorCount; i++)
        {
            string name = ReadString(ref pos, $"tensor name #{i}");
            uint nDims = ReadU32(ref pos, $"dims of '{name}'");
            if (nDims is 0 or > 4) throw new InvalidDataException($"{Path}: tensor '{name}' has {nDims} dimensions (1..4 allowed)");
            var dims = new long[nDims];
            for (int d = 0; d < nDims; d++)
            {
                dims[d] = (long)ReadU64(ref pos, $"dim {d} of '{name}'");
                if (dims[d] <= 0 || dims[d] > (1L << 40)) throw new InvalidDataException($"{Path}: tensor '{name}' dimension {d} is {dims[d]}");
            }
            var type = (GgmlType)ReadU32(ref pos, $"type of '{name}'");
            if (!GgmlTypes.IsKnown(type)) throw new InvalidDataException($"{Path}: tensor '{name}' has unsupported ggml type {(uint)type}");
            long offset = (long)ReadU64(ref pos, $"offset of '{name}'");
            raw.Add((name, dims, type, offset));
        }
        long dataStart = GgufWriter.Align(pos, alignment);
        var tensors = new List<GgufTensorInfo>();
        foreach (var (name, dims, type, offset) in raw)
        {
            long rows = dims.Skip(1).Aggregate(1L, (x, y) => x * y);
            long size = GgmlTypes.TensorBytes(type, dims[0], rows);
            if (offset < 0 || offset % alignment != 0)
                throw new InvalidDataException($"{Path}: tensor '{name}' offset {offset} is not aligned to {alignment}");
            if (dataStart + offset + size > length)
                throw new InvalidDataException($"{Path}: tensor '{name}' ({size} bytes at data offset {offset}) extends past the end of the {length}-byte file (truncated?)");
            var info = new GgufTensorInfo(name, dims, type, dataStart + offset, size);
            if (!tensorsByName.TryAdd(name, info)) throw new InvalidDataException($"{Path}: duplicate tensor '{name}'");
            tensors.Add(info);
        }
        return (metadata, tensors, alignment);
    }

    void Need(long pos, long bytes, string what)
    {
        if (bytes < 0 || pos + bytes > length)
            throw new InvalidDataException($"{Path}: truncated GGUF: {what} needs {bytes} bytes at offset {pos} but the file has {length}");
    }

    uint ReadU32(ref long pos, string what) { Need(pos, 4, what); uint v = *(uint*)(basePtr + pos); pos += 4; return v; }
    ulong ReadU64(ref long pos, string what) { Need(pos, 8, what); ulong v = *(ulong*)(basePtr + pos); pos += 8; return v; }

    long ReadCount(ref long pos, string what)
    {
        ulong n = ReadU64(ref pos, what);
        if (n > MaxCount) throw new InvalidDataException($"{Path}: {what} {n} is implausible (corrupt header)");
        return (long)n;
    }

    string ReadString(ref long pos, string what)
    {
        ulong n = ReadU64(ref pos, what);
        if (n > (ulong)(length - pos)) throw new InvalidDataException($"{Path}: truncated GGUF: {what} claims {n} bytes at offset {pos}");
        string s = Encoding.UTF8.GetString(basePtr + pos, (int)n);
        pos += (long)n;
        return s;
    }

    object ReadValue(ref long pos, GgufValueType type, string key)
    {
        switch (type)
        {
            case GgufValueType.UInt8: Need(pos, 1, key); return basePtr[pos++];
            case GgufValueType.Int8: Need(pos, 1, key); return (sbyte)basePtr[pos++];
            case GgufValueType.Bool: Need(pos, 1, key); return basePtr[pos++] != 0;
            case GgufValueType.UInt16: Need(pos, 2, key); pos += 2; return *(ushort*)(basePtr + pos - 2);
            case GgufValueType.Int16: Need(pos, 2, key); pos += 2; return *(short*)(basePtr + pos - 2);
            case GgufValueType.UInt32: return ReadU32(ref pos, key);
            case GgufValueType.Int32: return (int)ReadU32(ref pos, key);
            case GgufValueType.Float32: { uint u = ReadU32(ref pos, key); return BitConverter.UInt32BitsToSingle(u); }
            case GgufValueType.UInt64: return ReadU64(ref pos, key);
            case GgufValueType.Int64: return (long)ReadU64(ref pos, key);
            case GgufValueType.Float64: return BitConverter.UInt64BitsToDouble(ReadU64(ref pos, key));
            case GgufValueType.String: return ReadString(ref pos, key);
            case GgufValueType.Array: return ReadArray(ref pos, key);
            default: throw new InvalidDataException($"{Path}: metadata '{key}' has unknown value type {(uint)type}");
        }
    }

    object ReadArray(ref long pos, string key)
    {
        var elem = (GgufValueType)ReadU32(ref pos, $"array type of '{key}'");
        long n = ReadCount(ref pos, $"array length of '{key}'");
        if (n > length - pos) throw new InvalidDataException($"{Path}: truncated GGUF: array '{key}' claims {n} elements at offset {pos}");
        switch (elem)
        {
            case GgufValueType.String:
            {
                var a = new string[n];
                for (long i = 0; i < n; i++) a[i] = ReadString(ref pos, $"{key}[{i}]");
                return a;
            }
            case GgufValueType.Array: throw new InvalidDataException($"{Path}: nested array in '{key}' is not supported");
            default:
            {
                var a = new object[n];
                for (long i = 0; i < n; i++) a[i] = ReadValue(ref pos, elem, key);
                return elem switch
                {
                    GgufValueType.Int32 => a.Cast<int>().ToArray(),
                    GgufValueType.UInt32 => a.Cast<uint>().ToArray(),
                    GgufValueType.Float32 => a.Cast<float>().ToArray(),
                    GgufValueType.Int64 => a.Cast<long>().ToArray(),
                    GgufValueType.UInt8 => a.Cast<byte>().ToArray(),
                    GgufValueType.Bool => a.Cast<bool>().ToArray(),
                    _ => a,
                };
            }
        }
    }
}
