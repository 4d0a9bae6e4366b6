// The DUCKTOK shard format: round trip, and rejection of truncated, corrupted and foreign files with messages that
// name the file and the sizes involved.
using Duck.Core.Data;

namespace Duck.Core.Tests.Data;

public sealed class TokenShardTests : IDisposable
{
    readonly string folder = Directory.CreateTempSubdirectory("duck-shard-").FullName;

    public void Dispose() => Directory.Delete(folder, recursive: true);

    static ushort[] SomeTokens(int count) => Enumerable.Range(0, count).Select(i => (ushort)(i * 31 % 50257)).ToArray();

    string WriteShard(int count = 1000)
    {
        string path = Path.Combine(folder, "a.tok");
        TokenShard.Write(path, SomeTokens(count), documentCount: 3);
        return path;
    }

    [Fact]
    public void Open_WrittenShard_RoundTripsTokensAndCounts()
    {
        string path = Path.Combine(folder, "a.tok");

        long sizeBytes = TokenShard.Write(path, SomeTokens(1000), documentCount: 3);
        var shard = TokenShard.Open(path);

        Assert.Equal(64 + 2000, sizeBytes);
        Assert.Equal(sizeBytes, new FileInfo(path).Length);
        Assert.Equal(1000, shard.TokenCount);
        Assert.Equal(3, shard.DocumentCount);
        Assert.Equal(50257, shard.VocabSize);
        Assert.Equal(SomeTokens(1000), shard.Tokens.ToArray());
        Assert.Equal(["a.tok"], Directory.GetFiles(folder).Select(Path.GetFileName));
    }

    [Fact]
    public void Open_EmptyShard_HasNoTokens()
    {
        string path = Path.Combine(folder, "empty.tok");
        TokenShard.Write(path, [], documentCount: 0);

        var shard = TokenShard.Open(path);

        Assert.Equal(0, shard.TokenCount);
    }

    [Fact]
    public void Open_TruncatedFile_ThrowsNamingFileAndSizes()
    {
        string path = WriteShard();
        using (var fs = new FileStream(path, FileMode.Open)) fs.SetLength(1500);

        var e = Assert.Throws<InvalidDataException>(() => TokenShard.Open(path));

        Assert.Contains(path, e.Message);
        Assert.Contains("1500 bytes", e.Message);
        Assert.Contains("2064 bytes", e.Message);
        Assert.Contains("truncated", e.Message);
    }

    [Fact]
    public void Open_FlippedDataByte_ThrowsCorrupted()
    {
        string path = WriteShard();
        byte[] bytes = File.ReadAllBytes(path);
        bytes[700] ^= 0x10;
        File.WriteAllBytes(path, bytes);

        var e = Assert.Throws<InvalidDataException>(() => TokenShard.Open(path));

        Assert.Contains(path, e.Message);
        Assert.Contains("checksum", e.Message);
        Assert.Contains("corrupted", e.Message);
    }

    [Fact]
    public void Open_FlippedHeaderByte_ThrowsHeaderChecksum()
    {
        string path = WriteShard();
        byte[] bytes = File.ReadAllBytes(path);
        bytes[32] ^= 0x01; // the document count
        File.WriteAllBytes(path, bytes);

        var e = Assert.Throws<InvalidDataException>(() => TokenShard.Open(path));

        Assert.Contains("header checksum", e.Message);
    }

    [Fact]
    public void Open_ForeignFile_ThrowsNotAShard()
    {
        string path = Path.Combine(folder, "model.safetensors");
        File.WriteAllBytes(path, new byte[200]);

        var e = Assert.Throws<InvalidDataException>(() => TokenShard.Open(path));

        Assert.Contains("not a Duck token shard", e.Message);
        Assert.Contains(path, e.Message);
    }

    [Fact]
    public void Open_ShorterThanHeader_ThrowsNamingSize()
    {
        string path = Path.Combine(folder, "tiny.tok");
        File.WriteAllBytes(path, new byte[10]);

        var e = Assert.Throws<InvalidDataException>(() => TokenShard.Open(path));

        Assert.Contains("10 bytes", e.Message);
    }

    [Fact]
    public void Write_TokenOutsideVocabulary_ThrowsNamingTokenAndPosition()
    {
        ushort[] tokens = [1, 2, 60000, 3];

        var e = Assert.Throws<InvalidDataException>(() => TokenShard.Write(Path.Combine(folder, "bad.tok"), tokens, 1));

        Assert.Contains("token 60000 at position 2", e.Message);
        Assert.Empty(Directory.GetFiles(folder));
    }
}
