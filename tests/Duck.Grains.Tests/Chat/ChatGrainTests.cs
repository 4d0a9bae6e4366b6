// The chat grains on an in-process cluster with a tiny random model: replies come from the model (equal to the
// engine's own greedy generation), sessions persist their history and reuse their KV cache across turns, a session
// survives the death of its silo, and the caller's mistakes come back as ChatException.
using Duck.Core.Text;
using Duck.Grains.Chat;
using Duck.Inference.Engine;
using Orleans.TestingHost;

namespace Duck.Grains.Tests.Chat;

public sealed class ChatGrainTests : IAsyncLifetime
{
    readonly string models = ChatCluster.ModelsFolder();
    InProcessTestCluster cluster = null!;
    IClusterClient Client => cluster.Client;

    static readonly ChatGenerationSettings Greedy = new() { Temperature = 0, MaxTokens = 8 };

    public async Task InitializeAsync() => cluster = await ChatCluster.StartAsync(2, models);

    public async Task DisposeAsync() => await cluster.DisposeAsync();

    [Fact]
    public async Task CompleteAsync_Greedy_SameTextAsTheEngineAlone()
    {
        using var model = InferenceModel.Load(Path.Combine(models, ChatCluster.Model + ".gguf"));
        model.KvCacheType = new Duck.Grains.Chat.ChatServingOptions().KvCache; // as the server's sessions
        int[] prompt = ChatFormat.PromptForReply([ChatMessage.User("Hello there")]);
        var options = new SamplingOptions
        {
            Temperature = 0, MaxTokens = 8, TopK = 40, TopP = 0.95f, RepetitionPenalty = 1.1f, StopSequences = ChatFormat.StopSequences,
        };
        string expected = string.Concat(TextGenerator.Generate(new InferenceSession(model), prompt, options, new GenerationStats()));

        var (text, usage) = await ChatCluster.ReadAsync(Client.GetGrain<IChatCompletionGrain>(Guid.NewGuid())
            .CompleteAsync(new ChatCompletionRequest { Model = ChatCluster.Model, Messages = [new("user", "Hello there")], Settings = Greedy }));

        Assert.Equal(expected, text);
        Assert.Equal(prompt.Length, usage.PromptTokens);
        Assert.InRange(usage.CompletionTokens, 1, 8);
    }

    [Fact]
    public async Task SendAsync_SecondTurn_StoresHistoryAndPrefillsOnlyNewTokens()
    {
        var session = Client.GetGrain<IChatSessionGrain>("two-turns");
        await session.CreateAsync(new ChatSessionSpec { Model = ChatCluster.Model, SystemPrompt = "You are Duck.", Settings = Greedy });

        var (reply1, one) = await ChatCluster.ReadAsync(session.SendAsync("Hi"));
        var (reply2, two) = await ChatCluster.ReadAsync(session.SendAsync("Tell me more"));
        var info = await session.GetAsync();

        Assert.Equal(0, one.CachedTokens);
        // Turn 2 continues turn 1's tokens as sampled: the cache holds turn 1's prompt and every reply token that was
        // run through the model (all but the last one sampled), so only the rest is prefilled.
        Assert.Equal(one.PromptTokens + one.CompletionTokens - 1, two.CachedTokens);
        Assert.True(two.PromptTokens > one.PromptTokens);
        Assert.Equal(["user", "assistant", "user", "assistant"], info!.Messages.Select(m => m.Role));
        Assert.True(info.CachedTokens >= two.PromptTokens && info.CacheBytes > 0, $"{info.CachedTokens} tokens, {info.CacheBytes} B cached");
        Assert.Equal(["Hi", reply1.Trim(), "Tell me more", reply2.Trim()], info.Messages.Select(m => m.Content));
    }

    [Fact]
    public async Task SendAsync_ReplyOfRandomTokens_NextTurnReusesItsTokensAsSampled()
    {
        // Sampling the random model's whole vocabulary writes a reply whose text, trimmed and encoded again, splits
        // into other tokens than the ones sampled; the next turn still finds every token it ran in the cache.
        var session = Client.GetGrain<IChatSessionGrain>("random-tokens");
        await session.CreateAsync(new ChatSessionSpec
        {
            Model = ChatCluster.Model, Settings = new ChatGenerationSettings { Temperature = 1, TopK = 0, TopP = 1, Seed = 3, MaxTokens = 8 },
        });
        var (_, one) = await ChatCluster.ReadAsync(session.SendAsync("Hi"));
        var (_, two) = await ChatCluster.ReadAsync(session.SendAsync("And then?"));

        Assert.Equal(8, one.CompletionTokens);
        Assert.Equal(one.PromptTokens + one.CompletionTokens - 1, two.CachedTokens);
        Assert.Equal(two.PromptTokens, two.CachedTokens + 1 + 1 + ChatFormat.MarkerTokens(ChatRole.User).Count
            + Gpt2Tokenizer.Shared.Encode("And then?").Length + 1 + ChatFormat.MarkerTokens(ChatRole.Assistant).Count);
    }

    [Fact]
    public async Task KillSilo_HoldingTheSession_NextTurnSucceedsElsewhereWithFullHistory()
    {
        var session = Client.GetGrain<IChatSessionGrain>("survivor");
        await session.CreateAsync(new ChatSessionSpec { Model = ChatCluster.Model, Settings = Greedy });
        var (reply1, _) = await ChatCluster.ReadAsync(session.SendAsync("Hi"));
        string silo = (await session.GetAsync())!.Silo;

        await cluster.KillSiloAsync(cluster.Silos.Single(s => s.SiloAddress.ToString() == silo));
        var deadline = DateTime.UtcNow.AddSeconds(30);
        ChatUsage? usage = null;
        while (usage is null)
        {
            try { usage = (await ChatCluster.ReadAsync(session.SendAsync("Still there?"))).Usage; }
            catch (Exception) when (DateTime.UtcNow < deadline) { await Task.Delay(250); } // until the death is declared
        }
        var info = await session.GetAsync();

        Assert.NotEqual(silo, info!.Silo);
        Assert.Equal(0, usage.CachedTokens); // the cache was rebuilt from the stored history
        Assert.Equal(["Hi", reply1.Trim(), "Still there?"], info.Messages.Take(3).Select(m => m.Content));
        Assert.Equal(4, info.Messages.Length);
    }

    [Fact]
    public async Task SendAsync_PastTheContext_EveryTurnSucceedsAndMostReuseTheCache()
    {
        var session = Client.GetGrain<IChatSessionGrain>("long");
        await session.CreateAsync(new ChatSessionSpec { Model = ChatCluster.Model, Settings = Greedy });

        var usages = new List<ChatUsage>();
        for (int i = 0; i < 10; i++) usages.Add((await ChatCluster.ReadAsync(session.SendAsync($"Tell me more, {i}"))).Usage);
        var info = await session.GetAsync();

        Assert.Equal(20, info!.Messages.Length);
        int total = usages.Sum(u => u.PromptTokens);
        Assert.True(total > 64 * 4, $"prompts of {total} tokens in all: the conversation never filled the 64-token context");
        int rebuilt = usages.Skip(1).Count(u => u.CachedTokens < u.PromptTokens / 2);
        Assert.True(rebuilt <= 5, $"{rebuilt} of 9 follow-up turns prefilled most of their prompt again: {string.Join(", ", usages.Select(u => $"{u.CachedTokens}/{u.PromptTokens}"))}");
    }

    [Fact]
    public async Task SendAsync_WindowMovesOn_TurnPrefillsOnlyItsNewMessage()
    {
        // 256-token context, 16-token replies: the window moves every few turns, keeping the system prompt and the
        // newest exchanges, whose KV cache moves down; no turn prefills more than its own message and markers.
        var session = Client.GetGrain<IChatSessionGrain>("window");
        await session.CreateAsync(new ChatSessionSpec
        {
            Model = ChatCluster.LongModel, SystemPrompt = "You are Duck, a friendly duck.", Settings = new ChatGenerationSettings { Temperature = 0, MaxTokens = 16 },
        });
        int newPart = 1 + ChatFormat.MarkerTokens(ChatRole.User).Count + 1 + ChatFormat.MarkerTokens(ChatRole.Assistant).Count; // end of turn, markers, newline

        var usages = new List<(ChatUsage Usage, int MessageTokens)>();
        for (int i = 0; i < 14; i++)
        {
            string message = $"Tell me more about ponds, please, {i}";
            usages.Add(((await ChatCluster.ReadAsync(session.SendAsync(message))).Usage, Gpt2Tokenizer.Shared.Encode(message).Length));
        }

        string all = string.Join(", ", usages.Select(u => $"{u.Usage.CachedTokens}/{u.Usage.PromptTokens}"));
        int moves = usages.Zip(usages.Skip(1)).Count(p => p.Second.Usage.PromptTokens < p.First.Usage.PromptTokens);
        Assert.True(moves >= 2, $"the window moved {moves} times: {all}");
        // A reply cut by a stop sequence is continued from its stored text (rare for greedy replies): allow one.
        int prefilledMore = usages.Skip(1).Count(u => u.Usage.PromptTokens - u.Usage.CachedTokens > newPart + u.MessageTokens + 1);
        Assert.True(prefilledMore <= 1, $"{prefilledMore} follow-up turns prefilled more than their new message: {all}");
        Assert.Equal(28, (await session.GetAsync())!.Messages.Length);
    }

    [Fact]
    public async Task DeleteAsync_ThenGet_Null()
    {
        var session = Client.GetGrain<IChatSessionGrain>("deleted");
        await session.CreateAsync(new ChatSessionSpec { Model = ChatCluster.Model, Settings = Greedy });

        Assert.True(await session.DeleteAsync());

        Assert.Null(await session.GetAsync());
        var e = await Assert.ThrowsAsync<ChatException>(() => ChatCluster.ReadAsync(session.SendAsync("Hi")));
        Assert.Equal(ChatErrorKind.SessionNotFound, e.Kind);
    }

    [Fact]
    public async Task CreateAsync_UnknownModel_ModelNotFound()
    {
        var e = await Assert.ThrowsAsync<ChatException>(() =>
            Client.GetGrain<IChatSessionGrain>("nomodel").CreateAsync(new ChatSessionSpec { Model = "nope" }));

        Assert.Equal(ChatErrorKind.ModelNotFound, e.Kind);
        Assert.Contains("tiny", e.Message);
    }

    [Fact]
    public async Task CompleteAsync_PromptLongerThanTheContext_ContextLengthExceeded()
    {
        string longMessage = string.Join(" ", Enumerable.Repeat("duck", 80));

        var e = await Assert.ThrowsAsync<ChatException>(() => ChatCluster.ReadAsync(Client.GetGrain<IChatCompletionGrain>(Guid.NewGuid())
            .CompleteAsync(new ChatCompletionRequest { Model = ChatCluster.Model, Messages = [new("user", longMessage)] })));

        Assert.Equal(ChatErrorKind.ContextLengthExceeded, e.Kind);
    }

    [Fact]
    public void Normalize_SystemAndRepeatedRoles_OneSystemTurnThenAlternating()
    {
        var messages = ChatCompletionGrain.Normalize([new("user", "a"), new("system", "s"), new("user", "b"), new("assistant", "c"), new("user", "d")]);

        Assert.Equal([ChatMessage.System("s"), ChatMessage.User("a\nb"), ChatMessage.Assistant("c"), ChatMessage.User("d")], messages);
    }
}
