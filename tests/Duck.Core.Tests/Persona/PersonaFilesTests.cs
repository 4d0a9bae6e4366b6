// The committed persona files: they load, they are big enough, the held-out split shares no prompt with the
// training split, and every conversation renders, parses back and encodes with a mask on its replies only.
using System.Text.RegularExpressions;
using Duck.Core.Persona;
using Duck.Core.Text;

namespace Duck.Core.Tests.Persona;

public sealed class PersonaFilesTests
{
    static readonly string[] PrototypePrompts =
    [
        "Hi Duck, what's your name?", "Tell me about yourself.", "What do you like to do?", "How do you feel about coding?",
        "What's your favorite thing?", "Can you help me?", "What makes you special?", "How are you today?",
    ];

    static string PersonaFolder()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "Duck.Distributed.sln"))) return Path.Combine(dir.FullName, "persona");
        throw new DirectoryNotFoundException($"no Duck.Distributed.sln above {AppContext.BaseDirectory}");
    }

    static readonly Lazy<IReadOnlyList<Conversation>> Train = new(() => PersonaDataset.Load(Path.Combine(PersonaFolder(), "duck_personality.jsonl")));
    static readonly Lazy<IReadOnlyList<Conversation>> HeldOut = new(() => PersonaDataset.Load(Path.Combine(PersonaFolder(), "duck_personality.heldout.jsonl")));

    static string Normalize(string text) => Regex.Replace(text.ToLowerInvariant(), "[^a-z0-9]+", " ").Trim();

    static IEnumerable<string> UserTexts(IEnumerable<Conversation> conversations) =>
        conversations.SelectMany(c => c.Messages).Where(m => m.Role == ChatRole.User).Select(m => Normalize(m.Content));

    [Fact]
    public void Load_CommittedFiles_HoldAtLeast500ConversationsAboutOneTenthHeldOut()
    {
        int total = Train.Value.Count + HeldOut.Value.Count;

        Assert.True(total >= 500, $"{total} conversations");
        Assert.InRange(HeldOut.Value.Count / (double)total, 0.08, 0.15);
        Assert.Contains(Train.Value, c => c.Messages.Count(m => m.Role == ChatRole.User) > 1);
        Assert.Contains(HeldOut.Value, c => c.Messages.Count(m => m.Role == ChatRole.User) > 1);
    }

    [Fact]
    public void HeldOut_CommittedFiles_SharesNoUserMessageWithTraining()
    {
        var train = UserTexts(Train.Value).ToHashSet();

        var shared = UserTexts(HeldOut.Value).Where(train.Contains).ToArray();

        Assert.Empty(shared);
        Assert.Empty(Train.Value.Intersect(HeldOut.Value));
    }

    [Fact]
    public void HeldOut_CommittedFiles_HoldsThePrototypePromptsWhichTrainingNeverSees()
    {
        var train = UserTexts(Train.Value).ToHashSet();
        var heldOut = UserTexts(HeldOut.Value).ToHashSet();

        Assert.All(PrototypePrompts, p => Assert.Contains(Normalize(p), heldOut));
        Assert.All(PrototypePrompts, p => Assert.DoesNotContain(Normalize(p), train));
    }

    [Fact]
    public void Replies_CommittedFiles_AreShortPlainAscii()
    {
        var messages = Train.Value.Concat(HeldOut.Value).SelectMany(c => c.Messages).ToArray();

        Assert.All(messages, m => Assert.True(m.Content.All(ch => ch < 128), m.Content));
        Assert.All(messages.Where(m => m.Role == ChatRole.Assistant),
                   m => Assert.True(m.Content.Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries).Length <= 60, m.Content));
    }

    [Fact]
    public void ChatFormat_EveryCommittedConversation_RoundTripsAndMasksOnlyReplies()
    {
        var tokenizer = Gpt2Tokenizer.Shared;
        foreach (var c in Train.Value.Concat(HeldOut.Value))
        {
            string text = ChatFormat.Render(c);
            var (tokens, mask) = ChatFormat.Encode(c);

            Assert.Equal(c, ChatFormat.Parse(text));
            Assert.Equal(tokenizer.Encode(text), tokens);
            int[] replies = c.Messages.Where(m => m.Role == ChatRole.Assistant)
                .SelectMany(m => tokenizer.Encode(m.Content).Append(ChatFormat.EndOfTurnToken)).ToArray();
            Assert.Equal(replies, tokens.Where((_, i) => mask[i]));
        }
    }
}
