// GGUF writer/reader: metadata and tensor round trip, alignment, and clear rejection of foreign, truncated
// and inconsistent files.
using Duck.Inference.Gguf;

namespace Duck.Inference.Tests;

public class GgufTests : IDisposable
{
    readonly string path = Path.Combine(Path.GetTempPath(), $"duck-gguf-{Guid.NewGuid():N}.gguf");

    public void Dispose() { if (File.Exists(path)) File.Delete(path); }

    void WriteSample()
    {
        var meta = new List<KeyValuePair<string, object>>
        {
            new("general.architecture", "bitnet"), new("a.u32", 7u), new("a.f32", 1.5f), new("a.bool", true),
            new("a.strings", new[] { "x", "Ġthe", "" }), new("a.ints", new[] { 1, -2, 3 }), new("a.i64", -5L),
        };
        var floats = new float[] { 1, 2, 3, 4, 5 };
        var tensors = new List<GgufTensorSpec>
        {
            new("one", [5], GgmlType.F32, s => s.Write(System.Runtime.InteropServices.MemoryMarshal.AsBytes(floats.AsSpan()))),
            new("two", [256, 2], GgmlType.TQ2_0, s => s.Write(Enumerable.Range(0, 132).Select(i => (byte)i).ToArray())),
        };
        using var f = File.Create(path);
        GgufWriter.Write(f, meta, tensors);
    }

    [Fact]
    public void WriteThenOpen_RoundTripsMetadataAndTensors()
    {
        WriteSample();
        using var g = GgufFile.Open(path);
        Assert.Equal("bitnet", g.Get<string>("general.architecture"));
        Assert.Equal(7u, g.Get<uint>("a.u32"));
        Assert.Equal(1.5f, g.Get<float>("a.f32"));
        Assert.True(g.Get<bool>("a.bool"));
        Assert.Equal(new[] { "x", "Ġthe", "" }, g.Get<string[]>("a.strings"));
        Assert.Equal(new[] { 1, -2, 3 }, g.Get<int[]>("a.ints"));
        Assert.Equal(-5L, g.Get<long>("a.i64"));
        var two = g.Require("two");
        Assert.Equal(new long[] { 256, 2 }, two.Dims);
        Assert.Equal(0, two.FileOffset % 32);
        Assert.Equal(Enumerable.Range(0, 132).Select(i => (byte)i).ToArray(), g.Data(two).ToArray());
        Assert.Equal(new float[] { 1, 2, 3, 4, 5 }, System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(g.Data(g.Require("one"))).ToArray());
    }

    [Fact]
    public void Open_ForeignFile_ThrowsNamingMagic()
    {
        File.WriteAllText(path, "this is certainly not a gguf model file");
        var e = Assert.Throws<InvalidDataException>(() => GgufFile.Open(path));
        Assert.Contains("magic", e.Message);
    }

    [Fact]
    public void Open_TruncatedData_ThrowsNamingTensor()
    {
        WriteSample();
        var bytes = File.ReadAllBytes(path);
        File.WriteAllBytes(path, bytes[..^40]);
        var e = Assert.Throws<InvalidDataException>(() => GgufFile.Open(path));
        Assert.Contains("'two'", e.Message);
    }

    [Fact]
    public void Open_TruncatedHeader_ThrowsTruncated()
    {
        WriteSample();
        var bytes = File.ReadAllBytes(path);
        File.WriteAllBytes(path, bytes[..60]);
        var e = Assert.Throws<InvalidDataException>(() => GgufFile.Open(path));
        Assert.Contains("truncated", e.Message);
    }

    [Fact]
    public void Open_WrongVersion_ThrowsNamingVersion()
    {
        WriteSample();
        var bytes = File.ReadAllBytes(path);
        bytes[4] = 2;
        File.WriteAllBytes(path, bytes);
        var e = Assert.Throws<InvalidDataException>(() => GgufFile.Open(path));
        Assert.Contains("version 2", e.Message);
    }

    [Fact]
    public void Open_MissingFile_ThrowsFileNotFound()
    {
        Assert.Throws<FileNotFoundException>(() => GgufFile.Open(path));
    }
}
