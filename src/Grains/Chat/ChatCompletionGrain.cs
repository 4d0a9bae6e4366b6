// A one-shot completion (OpenAI's /v1/chat/completions): the caller sends the whole history, the grain prefills it
// into a fresh KV cache on the calling silo's batcher and streams the reply. One activation per request (a fresh
// Guid), placed locally and deactivated when done, so no grain serializes the traffic. Not a conversation store.
using System.Runtime.CompilerServices;
using System.Text;
using Duck.Core.Text;
using Duck.Inference.Engine;
using Orleans.Placement;

namespace Duck.Grains.Chat;

[PreferLocalPlacement]
public sealed class ChatCompletionGrain(ChatModelHost host) : Grain, IChatCompletionGrain
{
    public Task<string[]> ListModelsAsync() => host.ListAsync();

    public IAsyncEnumerable<ChatChunk> CompleteAsync(ChatCompletionRequest request) => CompleteCoreAsync(request);

    async IAsyncEnumerable<ChatChunk> CompleteCoreAsync(ChatCompletionRequest request, [EnumeratorCancellation] CancellationToken ct = default)
    {
        try
        {
            var model = await host.GetAsync(request.Model);
            int context = model.Model.Config.ContextLength;
            int[] prompt = ChatPrompt.Build(Normalize(request.Messages), request.Settings.MaxTokens ?? host.Options.DefaultMaxTokens, context);
            var sampling = ChatPrompt.Sampling(request.Settings, host.Options, context - prompt.Length);
            await foreach (var chunk in ChatPrompt.StreamAsync(model, new InferenceSession(model.Model), prompt, sampling, new StringBuilder(), ct))
                yield return chunk;
        }
        finally { DeactivateOnIdle(); }
    }

    /// <summary>
    /// OpenAI histories in Duck's template: every system message joins one leading system turn, and consecutive
    /// messages of one role join into one turn (the template alternates user and assistant).
    /// </summary>
    internal static List<ChatMessage> Normalize(IReadOnlyList<ChatTurn> turns)
    {
        var messages = turns.Select(ChatPrompt.ToMessage).ToList();
        var result = new List<ChatMessage>();
        var system = messages.Where(m => m.Role == ChatRole.System).Select(m => m.Content.Trim()).Where(c => c.Length > 0).ToArray();
        if (system.Length > 0) result.Add(ChatMessage.System(string.Join("\n", system)));
        foreach (var m in messages.Where(m => m.Role != ChatRole.System))
        {
            if (result.Count > 0 && result[^1].Role == m.Role) result[^1] = result[^1] with { Content = result[^1].Content.TrimEnd() + "\n" + m.Content.Trim() };
            else result.Add(m);
        }
        if (result.Count == 0) throw new ChatException(ChatErrorKind.InvalidRequest, "messages must hold at least one user message");
        return result;
    }
}
