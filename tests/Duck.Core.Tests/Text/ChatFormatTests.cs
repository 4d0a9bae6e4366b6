// The chat template: markers encode to fixed tokens whatever surrounds them, rendering round-trips through
// Parse, Encode agrees with tokenizing the rendered text, and the loss mask covers exactly the replies.
using Duck.Core.Text;

namespace Duck.Core.Tests.Text;

public sealed class ChatFormatTests
{
    static readonly Gpt2Tokenizer Tokenizer = Gpt2Tokenizer.Shared;

    static readonly Conversation TwoTurns = new(
        ChatMessage.System("You are Duck."),
        ChatMessage.User("Hi Duck, what's your name?"),
        ChatMessage.Assistant("I'm Duck! A small ternary model."),
        ChatMessage.User("Show me a loop:\n  for (int i = 0; i < 3; i++) {}"),
        ChatMessage.Assistant("Sure:\n```csharp\nforeach (var x in xs) Console.WriteLine(x);\n```"));

    public static TheoryData<string> Neighbours => new() { "", "hello", "hello!", "x  y", "1234", "...", "'s", "\t{", "é" };

    [Theory]
    [MemberData(nameof(Neighbours))]
    public void MarkerTokens_AnyNeighbouringText_EncodeToTheSameSequence(string text)
    {
        foreach (var role in new[] { ChatRole.System, ChatRole.User, ChatRole.Assistant })
        {
            var marker = ChatFormat.MarkerTokens(role);
            int[] afterLine = Tokenizer.Encode(text + "\n" + ChatFormat.Marker(role) + text);
            int[] afterEnd = Tokenizer.Encode(text + ChatFormat.EndOfTurnText + ChatFormat.Marker(role) + text);

            int[] expectedAfterLine = [.. Tokenizer.Encode(text + "\n"), .. marker, .. Tokenizer.Encode(text)];
            int[] expectedAfterEnd = [.. Tokenizer.Encode(text), ChatFormat.EndOfTurnToken, .. marker, .. Tokenizer.Encode(text)];
            Assert.Equal(expectedAfterLine, afterLine);
            Assert.Equal(expectedAfterEnd, afterEnd);
        }
    }

    [Fact]
    public void MarkerTokens_Roles_AreDistinctAndEndWithNewline()
    {
        var user = ChatFormat.MarkerTokens(ChatRole.User);
        var assistant = ChatFormat.MarkerTokens(ChatRole.Assistant);
        var system = ChatFormat.MarkerTokens(ChatRole.System);

        Assert.Equal("<|user|>\n", Tokenizer.Decode(user));
        Assert.NotEqual(user, assistant);
        Assert.NotEqual(user, system);
        Assert.All(new[] { user, assistant, system }, m => Assert.Equal(Tokenizer.Encode("\n"), m.TakeLast(1)));
        Assert.DoesNotContain(ChatFormat.EndOfTurnToken, user.Concat(assistant).Concat(system));
    }

    [Fact]
    public void Render_TwoTurns_WritesMarkersAndEndOfTurn()
    {
        string text = ChatFormat.Render(new Conversation(ChatMessage.User(" Hello "), ChatMessage.Assistant("Hey!")));

        Assert.Equal("<|user|>\nHello\n<|assistant|>\nHey!<|endoftext|>", text);
    }

    [Fact]
    public void Parse_RenderedConversation_RoundTrips()
    {
        string text = ChatFormat.Render(TwoTurns);

        Assert.Equal(TwoTurns, ChatFormat.Parse(text));
    }

    [Theory]
    [InlineData("Hello", "expected a marker")]
    [InlineData("<|user|>\nHi\n<|assistant|>\nHey", "no closing <|endoftext|>")]
    [InlineData("<|user|>\nHi", "not followed by a marker")]
    [InlineData("<|user|>\nHi\n<|user|>\nAgain\n<|assistant|>\nHey<|endoftext|>", "message 2 is user")]
    public void Parse_MalformedText_ThrowsFormatException(string text, string expected)
    {
        var e = Assert.Throws<FormatException>(() => ChatFormat.Parse(text));

        Assert.Contains(expected, e.Message);
    }

    [Fact]
    public void Encode_TwoTurns_MatchesTokenizingTheRenderedText()
    {
        var (tokens, _) = ChatFormat.Encode(TwoTurns);

        Assert.Equal(Tokenizer.Encode(ChatFormat.Render(TwoTurns)), tokens);
    }

    [Fact]
    public void Encode_TwoTurns_MasksExactlyTheRepliesAndTheirEndOfTurn()
    {
        var (tokens, mask) = ChatFormat.Encode(TwoTurns);

        var masked = tokens.Where((_, i) => mask[i]).ToArray();
        int[] expected = [.. Tokenizer.Encode("I'm Duck! A small ternary model."), ChatFormat.EndOfTurnToken,
                          .. Tokenizer.Encode("Sure:\n```csharp\nforeach (var x in xs) Console.WriteLine(x);\n```"), ChatFormat.EndOfTurnToken];
        Assert.Equal(tokens.Length, mask.Length);
        Assert.Equal(expected, masked);
        Assert.True(mask[^1]);
        Assert.Equal(ChatFormat.EndOfTurnToken, tokens[^1]);
        // The assistant marker just before each reply is not trained on.
        int firstReply = Array.IndexOf(mask, true);
        Assert.Equal(ChatFormat.MarkerTokens(ChatRole.Assistant), tokens[(firstReply - ChatFormat.MarkerTokens(ChatRole.Assistant).Count)..firstReply]);
    }

    [Fact]
    public void PromptForReply_History_EndsWithAssistantMarkerAndPrefixesTheConversation()
    {
        var history = TwoTurns.Messages.Take(4).ToArray();

        int[] prompt = ChatFormat.PromptForReply(history);

        var (full, _) = ChatFormat.Encode(TwoTurns);
        Assert.Equal(full.Take(prompt.Length), prompt);
        Assert.Equal(ChatFormat.MarkerTokens(ChatRole.Assistant), prompt.TakeLast(ChatFormat.MarkerTokens(ChatRole.Assistant).Count));
        Assert.Equal(Tokenizer.Encode(ChatFormat.RenderPrompt(history)), prompt);
    }

    [Fact]
    public void ContinuePrompt_PromptAndReplyTokens_EqualsThePromptOfTheLongerHistory()
    {
        // TwoTurns: system, user, assistant, user, assistant. Continue after the first exchange with the second user turn.
        var m = TwoTurns.Messages;
        int[] first = ChatFormat.PromptForReply(m.Take(2).ToArray());
        int[] reply = Tokenizer.Encode(m[2].Content.Trim());

        int[] next = ChatFormat.ContinuePrompt([.. first, .. reply], "  " + m[3].Content + " ");

        Assert.Equal(ChatFormat.PromptForReply(m.Take(4).ToArray()), next);
    }

    [Fact]
    public void UserTurnStarts_EncodedHistory_AreWhereEachUserTurnBegins()
    {
        var m = TwoTurns.Messages; // system, user, assistant, user, assistant
        int[] ids = ChatFormat.PromptForReply(m.Take(4).ToArray());
        int[] beforeFirst = ChatFormat.PromptForReply(m.Take(2).ToArray());
        int firstUser = beforeFirst.Length - ChatFormat.MarkerTokens(ChatRole.Assistant).Count
            - Tokenizer.Encode(m[1].Content.Trim()).Length - 1 - ChatFormat.MarkerTokens(ChatRole.User).Count;
        int secondUser = beforeFirst.Length + Tokenizer.Encode(m[2].Content.Trim()).Length + 1;

        Assert.Equal([firstUser, secondUser], ChatFormat.UserTurnStarts(ids));
        Assert.Empty(ChatFormat.UserTurnStarts(ChatFormat.MarkerTokens(ChatRole.User).Take(2).ToArray()));
    }

    [Fact]
    public void PromptForReply_HistoryEndingWithAssistant_Throws()
    {
        var e = Assert.Throws<ArgumentException>(() => ChatFormat.PromptForReply(TwoTurns.Messages));

        Assert.Contains("does not end with a user turn", e.Message);
    }

    [Fact]
    public void Render_ContentWithMarkerText_Throws()
    {
        var c = new Conversation(ChatMessage.User("say <|endoftext|> now"), ChatMessage.Assistant("No."));

        var e = Assert.Throws<ArgumentException>(() => ChatFormat.Render(c));

        Assert.Contains("reserved text \"<|endoftext|>\"", e.Message);
    }
}
