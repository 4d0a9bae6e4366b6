// Duck's token shard file: a 64-byte little-endian header (magic "DUCKTOK\0", format version, token type, vocabulary,
// token and document counts, xxHash64 of the data, CRC-32 of the header) followed by the tokens as uint16.
// The reader loads the whole file and rejects foreign, truncated or corrupted files. Not a streaming format.
using System.Buffers.Binary;
using System.IO.Hashing;
using System.Runtime.InteropServices;
using System.Text;
using Duck.Core.Text;

namespace Duck.Core.Data;

/// <summary>A validated, in-memory token shard: the tokens of whole documents, each followed by &lt;|endoftext|&gt;.</summary>
public sealed class TokenShard
{
    /// <summary>The format version this build writes and reads.</summary>
    public const uint FormatVersion = 1;
    /// <summary>Header size; the tokens start at this offset.</summary>
    public const int HeaderBytes = 64;
    /// <summary>Token type code for little-endian uint16 tokens (the only type, since vocab 50257 &lt; 65536).</summary>
    public const ushort TokenTypeUInt16 = 1;
    static ReadOnlySpan<byte> Magic => "DUCKTOK\0"u8;

    readonly ushort[] tokens;

    TokenShard(string path, ushort[] tokens, long documentCount, int vocabSize)
    {
        Path = path;
        this.tokens = tokens;
        DocumentCount = documentCount;
        VocabSize = vocabSize;
    }

    /// <summary>The file this shard was read from ("(memory)" for <see cref="FromTokens"/>).</summary>
    public string Path { get; }
    /// <summary>Number of tokens, end-of-text separators included.</summary>
    public long TokenCount => tokens.Length;
    /// <summary>Number of documents the shard holds.</summary>
    public long DocumentCount { get; }
    /// <summary>Vocabulary the ids were written for; every token is below it.</summary>
    public int VocabSize { get; }
    /// <summary>The token ids.</summary>
    public ReadOnlySpan<ushort> Tokens => tokens;
    /// <summary>The token ids, storable in fields and closures.</summary>
    public ReadOnlyMemory<ushort> Memory => tokens;

    /// <summary>A shard over tokens already in memory (tests, small experiments); no file involved.</summary>
    public static TokenShard FromTokens(ushort[] tokens, long documentCount = 1, int vocabSize = Gpt2Tokenizer.VocabSize)
    {
        CheckTokens(tokens, vocabSize, "(memory)");
        return new TokenShard("(memory)", tokens, documentCount, vocabSize);
    }

    /// <summary>Writes a shard atomically (a temporary file in the same folder, then a rename); returns the size in bytes.</summary>
    public static long Write(string path, ReadOnlySpan<ushort> tokens, long documentCount, int vocabSize = Gpt2Tokenizer.VocabSize)
    {
        CheckTokens(tokens, vocabSize, path);
        var data = MemoryMarshal.AsBytes(tokens);
        Span<byte> header = stackalloc byte[HeaderBytes];
        header.Clear();
        Magic.CopyTo(header);
        BinaryPrimitives.WriteUInt32LittleEndian(header[8..], FormatVersion);
        BinaryPrimitives.WriteUInt16LittleEndian(header[12..], TokenTypeUInt16);
        BinaryPrimitives.WriteUInt32LittleEndian(header[16..], (uint)vocabSize);
        BinaryPrimitives.WriteInt64LittleEndian(header[24..], tokens.Length);
        BinaryPrimitives.WriteInt64LittleEndian(header[32..], documentCount);
        BinaryPrimitives.WriteUInt64LittleEndian(header[40..], XxHash64.HashToUInt64(data));
        BinaryPrimitives.WriteUInt32LittleEndian(header[48..], Crc32.HashToUInt32(header[..48]));

        string full = System.IO.Path.GetFullPath(path);
        string temp = $"{full}.tmp-{Guid.NewGuid():N}";
        try
        {
            using (var fs = new FileStream(temp, FileMode.CreateNew, FileAccess.Write))
            {
                fs.Write(header);
                fs.Write(data);
                fs.Flush(flushToDisk: true);
            }
            File.Move(temp, full, overwrite: true);
        }
        finally
        {
            if (File.Exists(temp)) File.Delete(temp);
        }
        return HeaderBytes + data.Length;
    }

    /// <summary>Reads and validates a shard; <see cref="InvalidDataException"/> naming the file when it is foreign, truncated or corrupted.</summary>
    public static TokenShard Open(string path)
    {
        using var fs = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16);
        long fileBytes = fs.Length;
        if (fileBytes < HeaderBytes)
            throw new InvalidDataException($"{path}: file is {fileBytes} bytes, shorter than the {HeaderBytes}-byte token shard header (truncated or not a token shard)");
        Span<byte> header = stackalloc byte[HeaderBytes];
        fs.ReadExactly(header);
        if (!header[..8].SequenceEqual(Magic))
            throw new InvalidDataException($"{path}: not a Duck token shard (magic '{Printable(header[..8])}', expected 'DUCKTOK\\0')");
        uint version = BinaryPrimitives.ReadUInt32LittleEndian(header[8..]);
        if (version != FormatVersion)
            throw new InvalidDataException($"{path}: token shard format version {version} is not supported (this build reads {FormatVersion}); re-run `duck data prepare`");
        uint headerCrc = BinaryPrimitives.ReadUInt32LittleEndian(header[48..]), actualCrc = Crc32.HashToUInt32(header[..48]);
        if (headerCrc != actualCrc)
            throw new InvalidDataException($"{path}: header checksum {actualCrc:x8} does not match the stored {headerCrc:x8} (corrupted header); re-run `duck data prepare`");
        ushort tokenType = BinaryPrimitives.ReadUInt16LittleEndian(header[12..]);
        if (tokenType != TokenTypeUInt16)
            throw new InvalidDataException($"{path}: token type {tokenType} is not supported (only {TokenTypeUInt16} = uint16)");
        int vocabSize = (int)BinaryPrimitives.ReadUInt32LittleEndian(header[16..]);
        long tokenCount = BinaryPrimitives.ReadInt64LittleEndian(header[24..]);
        long documentCount = BinaryPrimitives.ReadInt64LittleEndian(header[32..]);
        ulong dataHash = BinaryPrimitives.ReadUInt64LittleEndian(header[40..]);
        long expectedBytes = HeaderBytes + 2 * tokenCount;
        if (tokenCount < 0 || fileBytes != expectedBytes)
            throw new InvalidDataException($"{path}: file is {fileBytes} bytes but its header promises {tokenCount} tokens = {expectedBytes} bytes ({(fileBytes < expectedBytes ? "truncated" : "trailing garbage")}); re-run `duck data prepare`");
        if (tokenCount > Array.MaxLength)
            throw new InvalidDataException($"{path}: {tokenCount} tokens exceed the {Array.MaxLength} one shard can hold in memory; prepare more shards");

        var tokens = new ushort[tokenCount];
        fs.ReadExactly(MemoryMarshal.AsBytes(tokens.AsSpan()));
        ulong actualHash = XxHash64.HashToUInt64(MemoryMarshal.AsBytes(tokens.AsSpan()));
        if (actualHash != dataHash)
            throw new InvalidDataException($"{path}: token data checksum {actualHash:x16} does not match the header's {dataHash:x16} (corrupted); re-run `duck data prepare`");
        CheckTokens(tokens, vocabSize, path);
        return new TokenShard(path, tokens, documentCount, vocabSize);
    }

    static void CheckTokens(ReadOnlySpan<ushort> tokens, int vocabSize, string path)
    {
        if (vocabSize is <= 0 or > 65536) throw new ArgumentOutOfRangeException(nameof(vocabSize), vocabSize, $"{path}: vocabulary {vocabSize} does not fit uint16 tokens");
        if (vocabSize == 65536) return;
        int bad = tokens.IndexOfAnyInRange((ushort)vocabSize, ushort.MaxValue);
        if (bad >= 0) throw new InvalidDataException($"{path}: token {tokens[bad]} at position {bad} is outside the vocabulary of {vocabSize}");
    }

    static string Printable(ReadOnlySpan<byte> bytes) =>
        string.Concat(Encoding.Latin1.GetString(bytes).Select(c => c is >= ' ' and <= '~' ? c.ToString() : $"\\x{(int)c:x2}"));
}
