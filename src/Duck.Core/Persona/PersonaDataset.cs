// Reads and validates a persona file: JSONL, one OpenAI-style conversation per line,
// {"messages":[{"role":"system"|"user"|"assistant","content":"..."}, ...]}. The schema is documented in
// persona/README.md. Every bad line is reported with its line number, so users can fix their own files.
// Not the chat template (Text.ChatFormat) and not fine-tuning.
using System.Text.Json;
using Duck.Core.Text;

namespace Duck.Core.Persona;

/// <summary>Loads persona conversations from JSONL.</summary>
public static class PersonaDataset
{
    /// <summary>At most this many line errors are listed in one exception.</summary>
    public const int MaxReportedErrors = 20;

    /// <summary>The conversations of a JSONL file, in file order. Throws InvalidDataException listing every bad line.</summary>
    public static IReadOnlyList<Conversation> Load(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"persona file {path} does not exist", path);
        using var reader = new StreamReader(path);
        return Read(reader, path);
    }

    /// <summary>The conversations of JSONL text; <paramref name="source"/> names it in errors. Blank lines are skipped.</summary>
    public static IReadOnlyList<Conversation> Read(TextReader reader, string source)
    {
        var conversations = new List<Conversation>();
        var errors = new List<string>();
        int lineNumber = 0, errorCount = 0;
        for (string? line = reader.ReadLine(); line is not null; line = reader.ReadLine())
        {
            lineNumber++;
            if (string.IsNullOrWhiteSpace(line)) continue;
            var (conversation, error) = ParseLine(line);
            if (conversation is not null) { conversations.Add(conversation); continue; }
            if (++errorCount <= MaxReportedErrors) errors.Add($"{source}:{lineNumber}: {error}");
        }
        if (errorCount > MaxReportedErrors) errors.Add($"... and {errorCount - MaxReportedErrors} more bad lines");
        if (errors.Count > 0)
            throw new InvalidDataException($"{errorCount} bad line(s) in {source}; each line must be {{\"messages\":[{{\"role\":\"user\",\"content\":\"...\"}}, ...]}} (see persona/README.md):\n" + string.Join("\n", errors));
        if (conversations.Count == 0) throw new InvalidDataException($"{source} holds no conversations");
        return conversations;
    }

    /// <summary>One line as a conversation, or the reason it is not one.</summary>
    public static (Conversation? Conversation, string? Error) ParseLine(string line)
    {
        JsonDocument document;
        try { document = JsonDocument.Parse(line); }
        catch (JsonException e) { return (null, $"not JSON ({e.Message})"); }
        using (document)
        {
            var root = document.RootElement;
            if (root.ValueKind != JsonValueKind.Object) return (null, $"expected a JSON object, found {Kind(root)}");
            if (!root.TryGetProperty("messages", out var array)) return (null, "missing \"messages\"");
            if (array.ValueKind != JsonValueKind.Array) return (null, $"\"messages\" must be an array, found {Kind(array)}");
            var messages = new List<ChatMessage>();
            foreach (var item in array.EnumerateArray())
            {
                var (message, error) = ParseMessage(item, messages.Count + 1);
                if (message is null) return (null, error);
                messages.Add(message);
            }
            string? problem = Conversation.FindProblem(messages);
            return problem is null ? (new Conversation(messages), null) : (null, problem);
        }
    }

    static (ChatMessage? Message, string? Error) ParseMessage(JsonElement item, int index)
    {
        string where = $"message {index}";
        if (item.ValueKind != JsonValueKind.Object) return (null, $"{where}: expected an object, found {Kind(item)}");
        if (!item.TryGetProperty("role", out var role) || role.ValueKind != JsonValueKind.String)
            return (null, $"{where}: missing \"role\" string");
        if (!item.TryGetProperty("content", out var content) || content.ValueKind != JsonValueKind.String)
            return (null, $"{where}: missing \"content\" string");
        ChatRole? parsed = role.GetString() switch
        {
            "system" => ChatRole.System,
            "user" => ChatRole.User,
            "assistant" => ChatRole.Assistant,
            _ => null,
        };
        if (parsed is null) return (null, $"{where}: unknown role \"{role.GetString()}\" (expected system, user or assistant)");
        return (new ChatMessage(parsed.Value, content.GetString()!), null);
    }

    static string Kind(JsonElement e) => e.ValueKind.ToString().ToLowerInvariant();

    /// <summary>One conversation as a JSONL line (the inverse of <see cref="ParseLine"/>).</summary>
    public static string ToJsonLine(Conversation conversation) => JsonSerializer.Serialize(new
    {
        messages = conversation.Messages.Select(m => new { role = ChatMessage.RoleName(m.Role), content = m.Content }),
    });
}
