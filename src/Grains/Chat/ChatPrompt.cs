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

    /// <summary>Reply room a prompt must leave: min(maxTokens, context/2) tokens.</summary>
    static int Budget(int maxTokens, int context) => context - Math.Min(Math.Max(1, maxTokens), context / 2);

    static int[] Encode(List<ChatMessage> history)
    {
        string? problem = Conversation.FindProblem(history, endsWithAssistant: false);
        if (problem is not null) throw new ChatException(ChatErrorKind.InvalidRequest, $"messages: {problem}");
        return ChatFormat.PromptForReply(history);
    }

    static ChatException TooLong(int length, int context, int maxTokens) => new(ChatErrorKind.ContextLengthExceeded,
        $"the prompt is {length} tokens; the model's context window of {context} tokens leaves at most {Budget(maxTokens, context)} for it with max_tokens {maxTokens}");

    /// <summary>The prompt tokens of a whole history (ending with a user turn) that must leave room for the reply.</summary>
    public static int[] Build(List<ChatMessage> history, int maxTokens, int context)
    {
        int[] prompt = Encode(history);
        return prompt.Length <= Budget(maxTokens, context) ? prompt : throw TooLong(prompt.Length, context, maxTokens);
    }

    /// <summary>
    /// The prompt of a conversation seen through a window that leaves out its first <paramref name="skip"/> stored
    /// exchanges. When the prompt no longer leaves room for the reply, the window moves on until the prompt takes at
    /// most half of its budget, so the prompt's start (and the KV cache built on it) stays the same for several turns
    /// rather than changing, and being prefilled anew, on every turn.
    /// </summary>
    public static (int[] Prompt, int Skip) BuildWindow(Func<int, List<ChatMessage>> historyFrom, int exchanges, int skip, int maxTokens, int context)
    {
        int budget = Budget(maxTokens, context), target = Math.Max(1, budget / 2);
        int[] prompt = Encode(historyFrom(skip));
        if (prompt.Length <= budget) return (prompt, skip);
        while (skip < exchanges)
        {
            prompt = Encode(historyFrom(++skip));
            if (prompt.Length <= target) return (prompt, skip);
        }
        return prompt.Length <= budget ? (prompt, skip) : throw TooLong(prompt.Length, context, maxTokens);
    }

    /// <summary>Rejects a new session message the chat template cannot carry (empty, or holding reserved text).</summary>
    public static void Check(string message)
    {
        string? problem = Conversation.FindProblem([ChatMessage.User(message)], endsWithAssistant: false);
        if (problem is not null) throw new ChatException(ChatErrorKind.InvalidRequest, $"messages: {problem}");
    }

    /// <summary>
    /// The next prompt continuing the previous prompt and reply as tokens (ChatFormat.ContinuePrompt), or null when
    /// it would not leave room for the reply (the caller then uses the window's prompt from the stored text).
    /// </summary>
    public static int[]? Continue(IReadOnlyList<int> promptAndReply, string message, int maxTokens, int context)
    {
        int[] prompt = ChatFormat.ContinuePrompt(promptAndReply, message);
        return prompt.Length <= Budget(maxTokens, context) ? prompt : null;
    }

    /// <summary>
    /// When a continued prompt leaves no room for the reply: the same tokens with the oldest exchanges after the
    /// system part left out, until the prompt takes at most half of its budget (as <see cref="BuildWindow"/>), and the
    /// number of exchanges left out; null when even the new message alone does not fit. The tokens kept are those the
    /// model read and wrote, so the batcher moves their KV cache down instead of prefilling them again.
    /// </summary>
    public static (int[] Prompt, int Dropped)? ShiftWindow(IReadOnlyList<int> promptAndReply, string message, int maxTokens, int context)
    {
        int[] full = ChatFormat.ContinuePrompt(promptAndReply, message);
        int budget = Budget(maxTokens, context), target = Math.Max(1, budget / 2);
        var starts = ChatFormat.UserTurnStarts(full); // the last one is the new message's
        for (int k = 1; k < starts.Count; k++)
        {
            int length = full.Length - (starts[k] - starts[0]);
            if (length <= target || (k == starts.Count - 1 && length <= budget))
                return ([.. full.AsSpan(0, starts[0]), .. full.AsSpan(starts[k])], k);
        }
        return null;
    }

    /// <summary>The stored exchanges after the first <paramref name="skip"/> as prompt messages: an exchange whose reply
    /// was empty is left out (an empty turn is not a valid message).</summary>
    public static List<ChatMessage> History(string? systemPrompt, IReadOnlyList<ChatTurn> turns, string message, int skip = 0)
    {
        var history = new List<ChatMessage>();
        if (!string.IsNullOrWhiteSpace(systemPrompt)) history.Add(ChatMessage.System(systemPrompt));
        for (int i = 2 * skip; i + 1 < turns.Count; i += 2)
            if (!string.IsNullOrWhiteSpace(turns[i + 1].Content)) { history.Add(ToMessage(turns[i])); history.Add(ToMessage(turns[i + 1])); }
        history.Add(ChatMessage.User(message));
        return history;
    }

    /// <summary>Longest silence in a reply stream before an empty keep-alive chunk.</summary>
    public static readonly TimeSpan KeepAlive = TimeSpan.FromSeconds(10);

    /// <summary>Runs one generation on the model's batcher and yields its text, then the usage; the reply text collects in <paramref name="reply"/>.</summary>
    public static async IAsyncEnumerable<ChatChunk> StreamAsync(ServedModel model, InferenceSession session, int[] prompt, SamplingOptions sampling,
        StringBuilder reply, [EnumeratorCancellation] CancellationToken ct = default, Action<Task<GenerationSummary>>? started = null)
    {
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(ct);
        var modelTag = new KeyValuePair<string, object?>("model", model.Name);
        long submitted = System.Diagnostics.Stopwatch.GetTimestamp();
        var stream = model.Batcher.Submit(session, prompt, sampling, stop.Token);
        started?.Invoke(stream.Completion);
        bool queued = true; // counted in the queue depth until its first text (or its end)
        DuckMetrics.QueueDepth.Add(1, modelTag);
        try
        {
            // Each pull of a grain's stream is a call that times out (30 s by default); while the batcher is busy with
            // others' prompts, an empty chunk every KeepAlive tells the caller the reply is still coming.
            var reader = stream.Text;
            var more = reader.WaitToReadAsync(ct).AsTask();
            while (true)
            {
                if (!more.IsCompleted)
                {
                    bool silent = false;
                    try { await more.WaitAsync(KeepAlive, ct); }
                    catch (TimeoutException) { silent = true; }
                    if (silent)
                    {
                        yield return new ChatChunk("");
                        continue;
                    }
                }
                if (!await more) break;
                if (queued) { queued = false; DuckMetrics.QueueDepth.Add(-1, modelTag); }
                while (reader.TryRead(out var piece))
                {
                    reply.Append(piece);
                    yield return new ChatChunk(piece);
                }
                more = reader.WaitToReadAsync(ct).AsTask();
            }
            var summary = await stream.Completion;
            double seconds = System.Diagnostics.Stopwatch.GetElapsedTime(submitted).TotalSeconds - summary.TimeToFirstTokenMs / 1000;
            if (summary.GeneratedTokens > 0) DuckMetrics.TimeToFirstToken.Record(summary.TimeToFirstTokenMs, modelTag);
            if (summary.GeneratedTokens > 1 && seconds > 0) DuckMetrics.InferenceTokensPerSecond.Record((summary.GeneratedTokens - 1) / seconds, modelTag);
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
            if (queued) DuckMetrics.QueueDepth.Add(-1, modelTag);
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
