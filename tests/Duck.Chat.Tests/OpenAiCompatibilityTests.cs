// The OpenAI-compatible endpoints through the official OpenAI .NET client, unchanged: non-streaming and streaming
// completions give the engine's own greedy reply with usage counts, the model list names the served model, and a
// wrong key fails the way the client expects (401).
using System.ClientModel;
using Duck.Core.Text;
using Duck.Inference.Engine;
using OpenAI;
using OpenAI.Chat;

namespace Duck.Silo.Tests;

public sealed class OpenAiCompatibilityTests(ChatServer server) : IClassFixture<ChatServer>
{
    ChatClient Client(string key = ChatServer.Key) =>
        new(ChatServer.Model, new ApiKeyCredential(key), new OpenAIClientOptions { Endpoint = new Uri(server.BaseUrl, "v1") });

    static readonly ChatCompletionOptions Greedy = new() { Temperature = 0, MaxOutputTokenCount = 8 };

    /// <summary>What the engine alone answers, greedily, with the server's default sampling settings.</summary>
    (string Text, int PromptTokens) Expected(string message)
    {
        using var model = InferenceModel.Load(server.ModelPath);
        model.KvCacheType = new Duck.Grains.Chat.ChatServingOptions().KvCache; // as the server's sessions
        int[] prompt = ChatFormat.PromptForReply([Duck.Core.Text.ChatMessage.User(message)]);
        var options = new SamplingOptions { Temperature = 0, MaxTokens = 8, TopK = 40, TopP = 0.95f, RepetitionPenalty = 1.1f, StopSequences = ChatFormat.StopSequences };
        return (string.Concat(TextGenerator.Generate(new InferenceSession(model), prompt, options, new GenerationStats())), prompt.Length);
    }

    [Fact]
    public async Task CompleteChat_OpenAiClient_EngineReplyAndUsage()
    {
        var (expected, promptTokens) = Expected("Hello there");

        ChatCompletion completion = await Client().CompleteChatAsync([new UserChatMessage("Hello there")], Greedy);

        Assert.Equal(expected, string.Concat(completion.Content.Select(p => p.Text)));
        Assert.Equal(promptTokens, completion.Usage.InputTokenCount);
        Assert.InRange(completion.Usage.OutputTokenCount, 1, 8);
        Assert.Equal(completion.Usage.InputTokenCount + completion.Usage.OutputTokenCount, completion.Usage.TotalTokenCount);
        Assert.Equal(ChatMessageRole.Assistant, completion.Role);
    }

    [Fact]
    public async Task CompleteChatStreaming_OpenAiClient_SameTextAndFinalUsage()
    {
        var (expected, promptTokens) = Expected("Hello there");
        var text = new System.Text.StringBuilder();
        ChatTokenUsage? usage = null;
        ChatFinishReason? finish = null;
        int updates = 0;

        await foreach (var update in Client().CompleteChatStreamingAsync([new UserChatMessage("Hello there")], Greedy))
        {
            updates++;
            foreach (var part in update.ContentUpdate) text.Append(part.Text);
            usage ??= update.Usage;
            finish ??= update.FinishReason;
        }

        Assert.Equal(expected, text.ToString());
        Assert.NotNull(usage);
        Assert.Equal(promptTokens, usage.InputTokenCount);
        Assert.NotNull(finish);
        Assert.True(updates >= 3, $"{updates} updates: expected the role, text and final chunks separately");
    }

    [Fact]
    public async Task GetModels_OpenAiClient_ListsTheServedModel()
    {
        var models = new OpenAI.Models.OpenAIModelClient(new ApiKeyCredential(ChatServer.Key), new OpenAIClientOptions { Endpoint = new Uri(server.BaseUrl, "v1") });

        var list = await models.GetModelsAsync();

        Assert.Contains(ChatServer.Model, list.Value.Select(m => m.Id));
    }

    [Fact]
    public async Task CompleteChat_WrongKey_ClientResultException401()
    {
        var e = await Assert.ThrowsAsync<ClientResultException>(() => Client("wrong-key-999").CompleteChatAsync([new UserChatMessage("Hi")], Greedy));

        Assert.Equal(401, e.Status);
    }

    [Fact]
    public async Task CompleteChat_UnknownModel_ClientResultException404()
    {
        var client = new ChatClient("no-such-model", new ApiKeyCredential(ChatServer.Key), new OpenAIClientOptions { Endpoint = new Uri(server.BaseUrl, "v1") });

        var e = await Assert.ThrowsAsync<ClientResultException>(() => client.CompleteChatAsync([new UserChatMessage("Hi")], Greedy));

        Assert.Equal(404, e.Status);
    }
}
