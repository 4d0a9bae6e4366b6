// A chat conversation as plain data: roles, messages, and the structural rules every Duck conversation obeys
// (optional system message first, then user and assistant turns alternating). Not the token format (ChatFormat)
// and not the JSONL file format (Persona.PersonaDataset).
namespace Duck.Core.Text;

/// <summary>Who speaks a message.</summary>
public enum ChatRole { System, User, Assistant }

/// <summary>One message of a conversation.</summary>
public sealed record ChatMessage(ChatRole Role, string Content)
{
    public static ChatMessage System(string content) => new(ChatRole.System, content);
    public static ChatMessage User(string content) => new(ChatRole.User, content);
    public static ChatMessage Assistant(string content) => new(ChatRole.Assistant, content);

    /// <summary>The role as written in JSONL ("system", "user", "assistant").</summary>
    public static string RoleName(ChatRole role) => role switch
    {
        ChatRole.System => "system",
        ChatRole.User => "user",
        ChatRole.Assistant => "assistant",
        _ => throw new ArgumentOutOfRangeException(nameof(role), role, "unknown chat role"),
    };
}

/// <summary>An ordered list of messages, compared by value.</summary>
public sealed class Conversation : IEquatable<Conversation>
{
    public IReadOnlyList<ChatMessage> Messages { get; }

    public Conversation(IEnumerable<ChatMessage> messages) => Messages = messages.ToArray();
    public Conversation(params ChatMessage[] messages) : this((IEnumerable<ChatMessage>)messages) { }

    /// <summary>The reason the messages break the conversation rules, or null when they are fine.
    /// A full conversation ends with an assistant turn; a prompt (<paramref name="endsWithAssistant"/> false) ends with a user turn.</summary>
    public static string? FindProblem(IReadOnlyList<ChatMessage> messages, bool endsWithAssistant = true)
    {
        if (messages.Count == 0) return "no messages";
        for (int i = 0; i < messages.Count; i++)
        {
            var m = messages[i];
            string where = $"message {i + 1} ({ChatMessage.RoleName(m.Role)})";
            if (string.IsNullOrWhiteSpace(m.Content)) return $"{where}: empty content";
            string? marker = ChatFormat.ReservedText.FirstOrDefault(r => m.Content.Contains(r, StringComparison.Ordinal));
            if (marker is not null) return $"{where}: content contains the reserved text \"{marker}\"";
            if (m.Role == ChatRole.System && i != 0) return $"{where}: a system message may only be the first message";
        }
        int first = messages[0].Role == ChatRole.System ? 1 : 0;
        if (first == messages.Count) return "a system message alone: a conversation needs a user turn";
        for (int i = first; i < messages.Count; i++)
        {
            var expected = (i - first) % 2 == 0 ? ChatRole.User : ChatRole.Assistant;
            if (messages[i].Role != expected)
                return $"message {i + 1} is {ChatMessage.RoleName(messages[i].Role)} where {ChatMessage.RoleName(expected)} was expected (turns alternate user, assistant, starting with user)";
        }
        var last = endsWithAssistant ? ChatRole.Assistant : ChatRole.User;
        if (messages[^1].Role != last)
            return endsWithAssistant ? "the conversation does not end with an assistant turn" : "the chat history does not end with a user turn";
        return null;
    }

    public bool Equals(Conversation? other) => other is not null && Messages.SequenceEqual(other.Messages);
    public override bool Equals(object? obj) => Equals(obj as Conversation);
    public override int GetHashCode()
    {
        var hash = new HashCode();
        foreach (var m in Messages) hash.Add(m);
        return hash.ToHashCode();
    }

    public override string ToString() => string.Join(" | ", Messages.Select(m => $"{ChatMessage.RoleName(m.Role)}: {m.Content}"));
}
