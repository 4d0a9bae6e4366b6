// The GPT-2 tokenizer wrapper: literal <|endoftext|> always becomes token 50256, however many words came before.
using Duck.Core.Text;

namespace Duck.Core.Tests.Text;

public sealed class Gpt2TokenizerTests
{
    [Fact]
    public void Encode_EndOfTextAfterManyDistinctWords_StillOneToken()
    {
        var tokenizer = Gpt2Tokenizer.Shared;
        // Enough distinct pre-tokens to push <|endoftext|> out of Microsoft.ML.Tokenizers' LRU cache.
        for (int i = 0; i < 20_000; i++) tokenizer.Encode($" qz{i}wv");

        int[] ids = tokenizer.Encode("hello<|endoftext|>world<|endoftext|>");

        Assert.Equal([.. tokenizer.Encode("hello"), Gpt2Tokenizer.EndOfText, .. tokenizer.Encode("world"), Gpt2Tokenizer.EndOfText], ids);
    }

    [Theory]
    [InlineData("")]
    [InlineData("<|endoftext|>")]
    [InlineData("a<|endoftext|><|endoftext|>b")]
    [InlineData("Hello, world! It's 2 o'clock.\n\n  Indented")]
    public void Decode_EncodedText_RoundTrips(string text)
    {
        var tokenizer = Gpt2Tokenizer.Shared;

        Assert.Equal(text, tokenizer.Decode(tokenizer.Encode(text)));
    }
}
