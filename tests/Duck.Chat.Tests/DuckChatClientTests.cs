// Duck's IChatClient implementations against the real server: over HTTP, and over an external Orleans client
// connected to the silo's gateway. Both return the engine's greedy reply with usage and a finish reason, and both
// hold server-kept conversations (ChatOptions.ConversationId) whose follow-up turns reuse the KV cache.
using System.Net;
using Duck.Client;
using ChatFormat = Duck.Core.Text.ChatFormat;
using Duck.Inference.Engine;
using Microsoft.Extensions.AI;
using Microsoft.Extensions.DependencyInjection;
using Orleans.Configuration;

namespace Duck.Silo.Tests;

public sealed class DuckChatClientTests(ChatServer server) : IClassFixture<ChatServer>
{
    static readonly ChatOptions Greedy = new() { Temperature = 0, MaxOutputTokens = 8 };
    static readonly Microsoft.Extensions.AI.ChatMessage[] Hello = [new(ChatRole.System, "You are Duck."), new(ChatRole.User, "Hello there")];

    string Expected()
    {
        using var model = InferenceModel.Load(server.ModelPath);
        model.KvCacheType = new Duck.Grains.Chat.ChatServingOptions().KvCache; // as the server's sessions
        int[] prompt = ChatFormat.PromptForReply([Duck.Core.Text.ChatMessage.System("You are Duck."), Duck.Core.Text.ChatMessage.User("Hello there")]);
        var options = new SamplingOptions { Temperature = 0, MaxTokens = 8, TopK = 40, TopP = 0.95f, RepetitionPenalty = 1.1f, StopSequences = ChatFormat.StopSequences };
        return string.Concat(TextGenerator.Generate(new InferenceSession(model), prompt, options, new GenerationStats()));
    }

    [Fact]
    public async Task HttpClient_GetResponse_EngineReplyWithUsage()
    {
        using IChatClient client = new DuckHttpChatClient(server.BaseUrl, ChatServer.Model, ChatServer.Key);

        var response = await client.GetResponseAsync(Hello, Greedy);

        Assert.Equal(Expected(), response.Text);
        Assert.NotNull(response.Usage);
        Assert.InRange(response.Usage.OutputTokenCount ?? 0, 1, 8);
        Assert.NotNull(response.FinishReason);
    }

    [Fact]
    public async Task HttpClient_Streaming_UpdatesJoinToTheReply()
    {
        using IChatClient client = new DuckHttpChatClient(server.BaseUrl, ChatServer.Model, ChatServer.Key);
        var text = new System.Text.StringBuilder();

        await foreach (var update in client.GetStreamingResponseAsync(Hello, Greedy)) text.Append(update.Text);

        Assert.Equal(Expected(), text.ToString());
    }

    [Fact]
    public async Task HttpClient_UnknownModel_DuckApiException404()
    {
        using IChatClient client = new DuckHttpChatClient(server.BaseUrl, "nope", ChatServer.Key);

        var e = await Assert.ThrowsAsync<DuckApiException>(() => client.GetResponseAsync(Hello, Greedy));

        Assert.Equal(404, e.Status);
        Assert.Equal("model_not_found", e.Code);
    }

    /// <summary>Two turns of a server-kept conversation: the second reuses the first's cached prompt.</summary>
    static async Task AssertConversationAsync(IChatClient client, string id)
    {
        var options = Greedy.Clone();
        options.ConversationId = id;

        var first = await client.GetResponseAsync([new(ChatRole.User, "Hi")], options);
        var second = await client.GetResponseAsync([new(ChatRole.User, "Tell me more")], options);

        Assert.True(second.Usage!.CachedInputTokenCount >= first.Usage!.InputTokenCount,
            $"turn 2 reused {second.Usage.CachedInputTokenCount} tokens; turn 1's prompt was {first.Usage.InputTokenCount}");
        Assert.True(second.Usage.InputTokenCount > first.Usage.InputTokenCount);
    }

    [Fact]
    public async Task HttpClient_Conversation_ServerKeepsHistoryAndCache()
    {
        using var client = new DuckHttpChatClient(server.BaseUrl, ChatServer.Model, ChatServer.Key);

        string id = await client.CreateConversationAsync("You are Duck.");

        await AssertConversationAsync(client, id);
    }

    [Fact]
    public async Task OrleansClient_GetResponse_EngineReplyWithUsage()
    {
        var builder = Host.CreateApplicationBuilder();
        builder.Logging.ClearProviders();
        builder.UseOrleansClient(c =>
        {
            c.UseStaticClustering(new IPEndPoint(IPAddress.Loopback, server.GatewayPort));
            c.Configure<ClusterOptions>(o => { o.ClusterId = server.ClusterId; o.ServiceId = "duck"; });
        });
        using var host = builder.Build();
        await host.StartAsync();
        using var client = new DuckOrleansChatClient(host.Services.GetRequiredService<IClusterClient>(), ChatServer.Model);

        var response = await client.GetResponseAsync(Hello, Greedy);
        var models = await client.ListModelsAsync();
        await AssertConversationAsync(client, await client.CreateConversationAsync("You are Duck."));
        await host.StopAsync();

        Assert.Equal(Expected(), response.Text);
        Assert.InRange(response.Usage?.OutputTokenCount ?? 0, 1, 8);
        Assert.Equal([ChatServer.Model], models);
    }
}
