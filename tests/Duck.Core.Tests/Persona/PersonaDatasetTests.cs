// Persona JSONL validation: a good file loads, and each kind of bad line is reported with its line number.
using Duck.Core.Persona;
using Duck.Core.Text;

namespace Duck.Core.Tests.Persona;

public sealed class PersonaDatasetTests : IDisposable
{
    readonly string root = Directory.CreateTempSubdirectory("duck-persona-").FullName;

    public void Dispose() => Directory.Delete(root, recursive: true);

    const string Good1 = """{"messages":[{"role":"user","content":"Hi!"},{"role":"assistant","content":"Hey! What's on your mind?"}]}""";
    const string Good2 = """{"messages":[{"role":"system","content":"You are Duck."},{"role":"user","content":"How are you?"},{"role":"assistant","content":"Great, thanks!"},{"role":"user","content":"Bye"},{"role":"assistant","content":"Bye!"}]}""";

    string Write(params string[] lines)
    {
        string path = Path.Combine(root, "persona.jsonl");
        File.WriteAllLines(path, lines);
        return path;
    }

    [Fact]
    public void Load_GoodFile_ReturnsConversationsInOrder()
    {
        string path = Write(Good1, "", Good2);

        var conversations = PersonaDataset.Load(path);

        Assert.Equal(2, conversations.Count);
        Assert.Equal(new Conversation(ChatMessage.User("Hi!"), ChatMessage.Assistant("Hey! What's on your mind?")), conversations[0]);
        Assert.Equal(ChatRole.System, conversations[1].Messages[0].Role);
        Assert.Equal(5, conversations[1].Messages.Count);
    }

    [Fact]
    public void ToJsonLine_Conversation_ParsesBackToTheSame()
    {
        var c = PersonaDataset.ParseLine(Good2).Conversation!;

        Assert.Equal(c, PersonaDataset.ParseLine(PersonaDataset.ToJsonLine(c)).Conversation);
    }

    public static TheoryData<string, string> BadLines => new()
    {
        { "this is not json", "not JSON" },
        { "[1, 2]", "expected a JSON object, found array" },
        { """{"mesages":[]}""", "missing \"messages\"" },
        { """{"messages":"hi"}""", "\"messages\" must be an array" },
        { """{"messages":[]}""", "no messages" },
        { """{"messages":[{"role":"duck","content":"Quack"},{"role":"assistant","content":"Hi"}]}""", "message 1: unknown role \"duck\"" },
        { """{"messages":[{"role":"user"},{"role":"assistant","content":"Hi"}]}""", "message 1: missing \"content\" string" },
        { """{"messages":[{"content":"Hi"},{"role":"assistant","content":"Hi"}]}""", "message 1: missing \"role\" string" },
        { """{"messages":[{"role":"user","content":"Hi"},{"role":"assistant","content":"  "}]}""", "message 2 (assistant): empty content" },
        { """{"messages":[{"role":"user","content":"Hi"}]}""", "does not end with an assistant turn" },
        { """{"messages":[{"role":"user","content":"Hi"},{"role":"system","content":"Be Duck"},{"role":"assistant","content":"Hi"}]}""", "message 2 (system): a system message may only be the first message" },
        { """{"messages":[{"role":"assistant","content":"Hi"}]}""", "message 1 is assistant where user was expected" },
        { """{"messages":[{"role":"user","content":"a"},{"role":"user","content":"b"},{"role":"assistant","content":"c"}]}""", "message 2 is user where assistant was expected" },
        { """{"messages":[{"role":"system","content":"Be Duck"}]}""", "a system message alone" },
        { """{"messages":[{"role":"user","content":"<|user|> hi"},{"role":"assistant","content":"Hi"}]}""", "reserved text \"<|user|>\"" },
    };

    [Theory]
    [MemberData(nameof(BadLines))]
    public void Load_BadLine_ReportsItsLineNumberAndReason(string bad, string reason)
    {
        string path = Write(Good1, "", bad, Good2);

        var e = Assert.Throws<InvalidDataException>(() => PersonaDataset.Load(path));

        Assert.Contains($"{path}:3: ", e.Message);
        Assert.Contains(reason, e.Message);
        Assert.Contains("1 bad line(s)", e.Message);
    }

    [Fact]
    public void Load_ManyBadLines_ListsTheFirstAndCountsTheRest()
    {
        string path = Write(Enumerable.Range(0, 25).Select(_ => "nope").ToArray());

        var e = Assert.Throws<InvalidDataException>(() => PersonaDataset.Load(path));

        Assert.Contains($"{path}:20: not JSON", e.Message);
        Assert.DoesNotContain($"{path}:21:", e.Message);
        Assert.Contains("and 5 more bad lines", e.Message);
    }

    [Fact]
    public void Load_MissingFileOrEmptyFile_SaysSo()
    {
        Assert.Throws<FileNotFoundException>(() => PersonaDataset.Load(Path.Combine(root, "absent.jsonl")));
        var e = Assert.Throws<InvalidDataException>(() => PersonaDataset.Load(Write("", "  ")));
        Assert.Contains("holds no conversations", e.Message);
    }
}
