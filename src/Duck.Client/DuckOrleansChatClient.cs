// IChatClient straight through an Orleans client (or inside a silo): each request is a one-shot completion grain
// placed on a silo of the cluster, streaming the reply; with ChatOptions.ConversationId, the turn goes to that
// conversation's session grain instead. For applications that already hold an IClusterClient.
using System.Runtime.CompilerServices;
using Duck.Grains;
using Microsoft.Extensions.AI;

namespace Duck.Client;

/// <summary>A Duck cluster as an <see cref="IChatClient"/>, over Orleans.</summary>
public sealed class DuckOrleansChatClient(IGrainFactory grains, string model) : IChatClient
{
    public async Task<ChatResponse> GetResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null, CancellationToken cancellationToken = default) =>
        await GetStreamingResponseAsync(messages, options, cancellationToken).ToChatResponseAsync(cancellationToken);

    public async IAsyncEnumerable<ChatResponseUpdate> GetStreamingResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null,
        [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        string modelId = options?.ModelId ?? model;
        var settings = DuckChatMapping.Settings(options);
        string id = "chatcmpl-" + Guid.NewGuid().ToString("N");
        var chunks = options?.ConversationId is { } conversation
            ? grains.GetGrain<IChatSessionGrain>(conversation).SendAsync(DuckChatMapping.LastUserText(messages), settings)
            : grains.GetGrain<IChatCompletionGrain>(Guid.NewGuid()).CompleteAsync(new ChatCompletionRequest { Model = modelId, Messages = DuckChatMapping.Turns(messages), Settings = settings });
        await foreach (var chunk in chunks.WithCancellation(cancellationToken))
        {
            if (chunk.Usage is { } u)
                yield return new ChatResponseUpdate(ChatRole.Assistant, [new UsageContent(DuckChatMapping.Usage(u.PromptTokens, u.CompletionTokens, u.CachedTokens))])
                {
                    FinishReason = DuckChatMapping.FinishReason(u.FinishReason), ModelId = modelId, ResponseId = id, MessageId = id,
                };
            else if (chunk.Text.Length > 0) // empty chunks are the server's keep-alives
                yield return new ChatResponseUpdate(ChatRole.Assistant, chunk.Text) { ModelId = modelId, ResponseId = id, MessageId = id };
        }
    }

    /// <summary>
    /// Starts a conversation kept by the cluster (a session grain) and returns its id: pass it as
    /// <see cref="ChatOptions.ConversationId"/> and send only the new user message each turn.
    /// </summary>
    public async Task<string> CreateConversationAsync(string? systemPrompt = null, ChatOptions? defaults = null)
    {
        string id = "sess_" + Guid.NewGuid().ToString("N");
        await grains.GetGrain<IChatSessionGrain>(id).CreateAsync(new ChatSessionSpec { Model = defaults?.ModelId ?? model, SystemPrompt = systemPrompt, Settings = DuckChatMapping.Settings(defaults) });
        return id;
    }

    /// <summary>The models the cluster serves.</summary>
    public Task<string[]> ListModelsAsync() => grains.GetGrain<IChatCompletionGrain>(Guid.NewGuid()).ListModelsAsync();

    public object? GetService(Type serviceType, object? serviceKey = null) =>
        serviceKey is null && serviceType == typeof(ChatClientMetadata) ? new ChatClientMetadata("duck", null, model)
        : serviceKey is null && serviceType.IsInstanceOfType(this) ? this : null;

    public void Dispose() { }
}
