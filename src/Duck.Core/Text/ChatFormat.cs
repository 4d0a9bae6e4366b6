// The one chat template of Duck models, for training (Encode with its loss mask) and for serving (PromptForReply,
// StopSequences). A conversation renders as
//     <|system|>\n{system}\n<|user|>\n{user}\n<|assistant|>\n{reply}<|endoftext|><|user|>\n...
// The markers are ordinary text, not new tokens: the vocabulary stays GPT-2's 50257. Each marker starts a text
// segment (at the start, after a newline or after <|endoftext|>) and ends with a newline, so GPT-2's pre-tokenizer
// always cuts around it and it encodes to the same few tokens whatever the neighbouring text. The reply ends with
// the end-of-text token 50256, which the model learns to emit to end its turn. Message content is trimmed.
namespace Duck.Core.Text;

/// <summary>Renders, encodes and parses conversations in Duck's chat format.</summary>
public static class ChatFormat
{
    public const string SystemMarker = "<|system|>\n";
    public const string UserMarker = "<|user|>\n";
    public const string AssistantMarker = "<|assistant|>\n";
    /// <summary>The text of the end-of-turn token, as <see cref="Gpt2Tokenizer"/> recognizes it.</summary>
    public const string EndOfTurnText = "<|endoftext|>";
    /// <summary>Ends the assistant's turn: GPT-2's end-of-text.</summary>
    public const int EndOfTurnToken = Gpt2Tokenizer.EndOfText;

    /// <summary>Text no message may contain, because it would be read as a marker or an end of turn.</summary>
    public static IReadOnlyList<string> ReservedText { get; } = ["<|system|>", "<|user|>", "<|assistant|>", EndOfTurnText];

    /// <summary>The same template in the Jinja form GGUF files carry (tokenizer.chat_template), for other runtimes.</summary>
    public const string JinjaTemplate =
        "{% for message in messages %}{% if message['role'] == 'assistant' %}<|assistant|>\n{{ message['content'] | trim }}<|endoftext|>" +
        "{% else %}<|{{ message['role'] }}|>\n{{ message['content'] | trim }}\n{% endif %}{% endfor %}" +
        "{% if add_generation_prompt %}<|assistant|>\n{% endif %}";

    /// <summary>Text that ends a reply when the model writes it instead of the end-of-turn token (it starts a new turn).</summary>
    public static IReadOnlyList<string> StopSequences { get; } = ["<|user|>", "<|assistant|>", "<|system|>"];

    static readonly Lazy<(int[] System, int[] User, int[] Assistant, int[] NewLine)> tokens = new(() =>
    {
        var t = Gpt2Tokenizer.Shared;
        return (t.Encode(SystemMarker), t.Encode(UserMarker), t.Encode(AssistantMarker), t.Encode("\n"));
    });

    /// <summary>The marker text that opens a message of <paramref name="role"/>.</summary>
    public static string Marker(ChatRole role) => role switch
    {
        ChatRole.System => SystemMarker,
        ChatRole.User => UserMarker,
        ChatRole.Assistant => AssistantMarker,
        _ => throw new ArgumentOutOfRangeException(nameof(role), role, "unknown chat role"),
    };

    /// <summary>The fixed token ids of the marker of <paramref name="role"/>, newline included.</summary>
    public static IReadOnlyList<int> MarkerTokens(ChatRole role) => role switch
    {
        ChatRole.System => tokens.Value.System,
        ChatRole.User => tokens.Value.User,
        ChatRole.Assistant => tokens.Value.Assistant,
        _ => throw new ArgumentOutOfRangeException(nameof(role), role, "unknown chat role"),
    };

    /// <summary>The conversation as text; it must end with an assistant turn.</summary>
    public static string Render(Conversation conversation)
    {
        Check(conversation.Messages, endsWithAssistant: true);
        return RenderMessages(conversation.Messages);
    }

    /// <summary>The history (ending with a user turn) as text, followed by the assistant marker where the reply begins.</summary>
    public static string RenderPrompt(IReadOnlyList<ChatMessage> history)
    {
        Check(history, endsWithAssistant: false);
        return RenderMessages(history) + AssistantMarker;
    }

    static string RenderMessages(IReadOnlyList<ChatMessage> messages)
    {
        var text = new System.Text.StringBuilder();
        foreach (var m in messages)
            text.Append(Marker(m.Role)).Append(m.Content.Trim()).Append(m.Role == ChatRole.Assistant ? EndOfTurnText : "\n");
        return text.ToString();
    }

    /// <summary>Token ids of <see cref="Render"/>'s text, and the loss mask: true exactly on the assistant's reply
    /// tokens and the end-of-turn token that closes each reply; false on markers, system and user text.</summary>
    public static (int[] Tokens, bool[] IsAssistantToken) Encode(Conversation conversation)
    {
        Check(conversation.Messages, endsWithAssistant: true);
        var ids = new List<int>();
        var mask = new List<bool>();
        EncodeMessages(conversation.Messages, ids, mask);
        return (ids.ToArray(), mask.ToArray());
    }

    /// <summary>Token ids of the history (ending with a user turn) up to and including the assistant marker:
    /// what the model reads before it writes its reply.</summary>
    public static int[] PromptForReply(IReadOnlyList<ChatMessage> history)
    {
        Check(history, endsWithAssistant: false);
        var ids = new List<int>();
        EncodeMessages(history, ids, new List<bool>());
        ids.AddRange(tokens.Value.Assistant);
        return ids.ToArray();
    }

    /// <summary>
    /// The next prompt of a conversation whose previous prompt and reply are known as tokens: those tokens as they
    /// were (the reply as the model wrote it, not re-encoded from its stored text), the end of turn, the new user
    /// message and the assistant marker. A server keeps its KV cache valid this way: re-encoding a reply (trimmed,
    /// from text) can cut it into different tokens than the model sampled, and every token after the first
    /// difference would be prefilled again.
    /// </summary>
    public static int[] ContinuePrompt(IReadOnlyList<int> promptAndReply, string userMessage)
    {
        var ids = new List<int>(promptAndReply.Count + 32);
        ids.AddRange(promptAndReply);
        ids.Add(EndOfTurnToken);
        ids.AddRange(tokens.Value.User);
        ids.AddRange(Gpt2Tokenizer.Shared.Encode(userMessage.Trim()));
        ids.AddRange(tokens.Value.NewLine);
        ids.AddRange(tokens.Value.Assistant);
        return ids.ToArray();
    }

    /// <summary>
    /// Where each user turn begins in encoded conversation tokens: the indexes of the user marker's tokens. Message
    /// text cannot hold the marker (it is reserved), and a marker always encodes to the same tokens, so these are
    /// exactly the turn boundaries.
    /// </summary>
    public static List<int> UserTurnStarts(IReadOnlyList<int> ids)
    {
        var marker = tokens.Value.User;
        var starts = new List<int>();
        for (int i = 0; i + marker.Length <= ids.Count; i++)
        {
            int k = 0;
            while (k < marker.Length && ids[i + k] == marker[k]) k++;
            if (k == marker.Length) starts.Add(i);
        }
        return starts;
    }

    static void EncodeMessages(IReadOnlyList<ChatMessage> messages, List<int> ids, List<bool> mask)
    {
        var tokenizer = Gpt2Tokenizer.Shared;
        foreach (var m in messages)
        {
            bool reply = m.Role == ChatRole.Assistant;
            Add(ids, mask, MarkerTokens(m.Role), false);
            Add(ids, mask, tokenizer.Encode(m.Content.Trim()), reply);
            Add(ids, mask, reply ? [EndOfTurnToken] : tokens.Value.NewLine, reply);
        }
    }

    static void Add(List<int> ids, List<bool> mask, IReadOnlyList<int> part, bool value)
    {
        ids.AddRange(part);
        for (int i = 0; i < part.Count; i++) mask.Add(value);
    }

    /// <summary>The conversation that <see cref="Render"/> wrote; throws FormatException naming the character offset otherwise.</summary>
    public static Conversation Parse(string rendered)
    {
        var messages = new List<ChatMessage>();
        int p = 0;
        while (p < rendered.Length)
        {
            var role = RoleAt(rendered, p) ?? throw new FormatException($"expected a marker ({string.Join(", ", StopSequences)}) at character {p}, found \"{Excerpt(rendered, p)}\"");
            int start = p + Marker(role).Length;
            int end;
            if (role == ChatRole.Assistant)
            {
                end = rendered.IndexOf(EndOfTurnText, start, StringComparison.Ordinal);
                if (end < 0) throw new FormatException($"the assistant turn at character {p} has no closing {EndOfTurnText}");
                p = end + EndOfTurnText.Length;
            }
            else
            {
                end = rendered.IndexOf("\n<|", start, StringComparison.Ordinal);
                while (end >= 0 && RoleAt(rendered, end + 1) is null) end = rendered.IndexOf("\n<|", end + 1, StringComparison.Ordinal);
                if (end < 0) throw new FormatException($"the {ChatMessage.RoleName(role)} turn at character {p} is not followed by a marker");
                p = end + 1;
            }
            messages.Add(new ChatMessage(role, rendered[start..end]));
        }
        string? problem = Conversation.FindProblem(messages);
        if (problem is not null) throw new FormatException($"not a valid conversation: {problem}");
        return new Conversation(messages);
    }

    static ChatRole? RoleAt(string text, int p) =>
        string.CompareOrdinal(text, p, SystemMarker, 0, SystemMarker.Length) == 0 ? ChatRole.System :
        string.CompareOrdinal(text, p, UserMarker, 0, UserMarker.Length) == 0 ? ChatRole.User :
        string.CompareOrdinal(text, p, AssistantMarker, 0, AssistantMarker.Length) == 0 ? ChatRole.Assistant : null;

    static string Excerpt(string text, int p) => text.Substring(p, Math.Min(20, text.Length - p)).Replace("\n", "\\n");

    static void Check(IReadOnlyList<ChatMessage> messages, bool endsWithAssistant)
    {
        string? problem = Conversation.FindProblem(messages, endsWithAssistant);
        if (problem is not null) throw new ArgumentException($"not a valid {(endsWithAssistant ? "conversation" : "chat history")}: {problem}");
    }
}
