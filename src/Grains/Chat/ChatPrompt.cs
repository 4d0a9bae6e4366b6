// What the chat grains share: turning request messages and settings into engine prompts and sampling options
// (with the server's defaults and limits, errors as ChatException), and streaming one generation from the
// batcher as ChatChunks. Not the grains' state or placement.
using System.Runtime.CompilerServices;
using System.Text;
using Duck.Core.Text;
using Duck.Inference.Engine;

namespace Duck.Grains.Chat;

static class ChatPrompt
{
    public static ChatMessage ToMessage(ChatTurn turn) => new(turn.Role switch
    {
        "system" => ChatRole.System,
        "user" => ChatRole.User,
        "assistant" => ChatRole.Assistant,
        var other => throw new ChatException(ChatErrorKind.InvalidRequest, $"message role '{other}' is not one of system, user, assistant"),
    }, turn.Content ?? "");

    /// <summary>Sampling options of a reply that may use at most <paramref name="room"/> tokens of the context.</summary>
    public static SamplingOptions Sampling(ChatGenerationSettings s, ChatServingOptions o, int room)
    {
        int maxTokens = s.MaxTokens ?? o.DefaultMaxTokens;
        if (maxTokens < 1 || maxTokens > o.MaxTokensLimit)
            throw new ChatException(ChatErrorKind.InvalidRequest, $"max_tokens must be in 1..{o.MaxTokensLimit}, got {maxTokens}");
        try
        {
            return new SamplingOptions
            {
                Temperature = s.Temperature ?? 0.8f, TopP = s.TopP ?? 0.95f, TopK = s.TopK ?? 40, RepetitionPenalty = s.RepetitionPenalty ?? 1.1f,
                Seed = s.Seed, MaxTokens = Math.Min(maxTokens, room),
                StopSequences = (s.Stop ?? []).Concat(ChatFormat.StopSequences).Distinct().ToArray(),
            }.Validate();
        }
        catch (ArgumentException e) { throw new ChatException(ChatErrorKind.InvalidRequest, e.Message); }
    }

    /// <summary>
    /// The prompt tokens of <paramref name="history"/> (ending with a user turn) that leave room for the reply:
    /// at least min(maxTokens, context/2) tokens. With <paramref name="dropOldTurns"/> the oldest exchanges (after the
    /// system prompt) are left out until it fits; otherwise, or if the last message alone is too long, it is an error.
    /// </summary>
    public static int[] Build(List<ChatMessage> history, int maxTokens, int context, bool dropOldTurns)
    {
        string? problem = Conversation.FindProblem(history, endsWithAssistant: false);
        if (problem is not null) throw new ChatException(ChatErrorKind.InvalidRequest, $"messages: {problem}");
        int budget = context - Math.Min(Math.Max(1, maxTokens), context / 2);
        int first = history[0].Role == ChatRole.System ? 1 : 0;
        while (true)
        {
            int[] prompt = ChatFormat.PromptForReply(history);
            if (prompt.Length <= budget) return prompt;
            if (!dropOldTurns || history.Count - first < 3)
                throw new ChatException(ChatErrorKind.ContextLengthExceeded,
                    $"the prompt is {prompt.Length} tokens; the model's context window of {context} tokens leaves at most {budget} for it with max_tokens {maxTokens}");
            history.RemoveRange(first, 2);
        }
    }

    /// <summary>The stored exchanges as prompt messages: an exchange whose reply was empty is left out (an empty turn is not a valid message).</summary>
    public static List<ChatMessage> History(string? systemPrompt, IReadOnlyList<ChatTurn> turns, string message)
    {
        var history = new List<ChatMessage>();
        if (!string.IsNullOrWhiteSpace(systemPrompt)) history.Add(ChatMessage.System(systemPrompt));
        for (int i = 0; i + 1 < turns.Count; i += 2)
            if (!string.IsNullOrWhiteSpace(turns[i + 1].Content)) { history.Add(ToMessage(turns[i])); history.Add(ToMessage(turns[i + 1])); }
        history.Add(ChatMessage.User(message));
        return history;
    }

    /// <summary>Runs one generation on the model's batcher and yields its text, then the usage; the reply text collects in <paramref name="reply"/>.</summary>
    public static async IAsyncEnumerable<ChatChunk> StreamAsync(ServedModel model, InferenceSession session, int[] prompt, SamplingOptions sampling,
        StringBuilder reply, [EnumeratorCancellation] CancellationToken ct = default, Action<Task>? started = null)
    {
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(ct);
        var stream = model.Batcher.Submit(session, prompt, sampling, stop.Token);
        started?.Invoke(stream.Completion);
        try
        {
            await foreach (var piece in stream.Text.ReadAllAsync(ct))
            {
                reply.Append(piece);
                yield return new ChatChunk(piece);
            }
            var summary = await stream.Completion;
            yield return new ChatChunk("", new ChatUsage
            {
                PromptTokens = summary.PromptTokens, CompletionTokens = summary.GeneratedTokens, CachedTokens = summary.CachedTokens,
                FinishReason = summary.StopReason is StopReason.MaxTokens or StopReason.ContextFull ? "length" : "stop",
            });
        }
        finally
        {
            // The caller went away (or failed): end the generation at the next step and wait until the batcher lets go
            // of the session, so the next turn never races the batcher thread for it.
            stop.Cancel();
            try { await stream.Completion; } catch (Exception) { /* reported through the channel */ }
        }
    }

    /// <summary>Text safe to store as a reply: trimmed, with any reserved marker text removed.</summary>
    public static string CleanReply(string text)
    {
        foreach (var r in ChatFormat.ReservedText) text = text.Replace(r, "", StringComparison.Ordinal);
        return text.Trim();
    }
}
