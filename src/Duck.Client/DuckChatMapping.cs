// Microsoft.Extensions.AI messages and options in Duck's terms (ChatTurn, ChatGenerationSettings), shared by the
// HTTP and Orleans chat clients. Only text content is supported; other roles or content are an ArgumentException.
using Duck.Grains;
using Microsoft.Extensions.AI;

namespace Duck.Client;

static class DuckChatMapping
{
    public static ChatTurn[] Turns(IEnumerable<ChatMessage> messages) => messages.Select(m =>
    {
        string role = m.Role == ChatRole.System ? "system" : m.Role == ChatRole.User ? "user" : m.Role == ChatRole.Assistant ? "assistant"
            : throw new ArgumentException($"Duck chat models take system, user and assistant messages, not '{m.Role}'");
        return new ChatTurn(role, m.Text);
    }).ToArray();

    /// <summary>The message a server-kept conversation receives: the text of the last user message.</summary>
    public static string LastUserText(IEnumerable<ChatMessage> messages) =>
        messages.LastOrDefault(m => m.Role == ChatRole.User)?.Text
        ?? throw new ArgumentException("a turn of a server-kept conversation (ChatOptions.ConversationId) needs a user message");

    public static ChatGenerationSettings Settings(ChatOptions? o) => o is null ? new() : new()
    {
        Temperature = o.Temperature, TopP = o.TopP, TopK = o.TopK, MaxTokens = o.MaxOutputTokens,
        Seed = o.Seed is long seed ? unchecked((int)seed) : null, Stop = o.StopSequences?.ToArray(),
    };

    public static ChatFinishReason FinishReason(string reason) => reason == "length" ? ChatFinishReason.Length : ChatFinishReason.Stop;

    public static UsageDetails Usage(int prompt, int completion, int cached) => new()
    {
        InputTokenCount = prompt, OutputTokenCount = completion, TotalTokenCount = prompt + completion, CachedInputTokenCount = cached,
    };
}
