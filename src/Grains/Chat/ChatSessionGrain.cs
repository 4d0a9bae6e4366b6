// A conversation kept by the server: its spec and messages persist in the "duck" grain storage (a folder or Azure
// Blob); its KV cache lives in this activation, so a follow-up turn prefills only its new tokens, also when the
// context is full and the window moves past the oldest exchanges (their cache entries are dropped and the rest
// moves down: ChatPrompt.ShiftWindow, ContinuousBatcher.ShiftMinTokens). After a move or a silo's death the grain
// re-activates elsewhere from the stored messages and the next turn rebuilds the cache.
// One turn at a time: the stream's iterator interleaves with other calls (GetAsync answers during a reply), and a
// new message supersedes a reply still streaming (whose caller may be gone with its silo): that reply is cancelled,
// is not stored, and its stream ends with SessionBusy.
using System.Runtime.CompilerServices;
using System.Text;
using Duck.Inference.Engine;
using Microsoft.Extensions.Logging;
using Orleans.Runtime;

namespace Duck.Grains.Chat;

/// <summary>The stored part of a session.</summary>
[GenerateSerializer]
public sealed class ChatSessionState
{
    /// <summary>Null until the session is created.</summary>
    [Id(0)] public ChatSessionSpec? Spec { get; set; }
    /// <summary>User and assistant turns, alternating.</summary>
    [Id(1)] public List<ChatTurn> Messages { get; set; } = new();
    [Id(2)] public DateTime CreatedUtc { get; set; }
}

public sealed class ChatSessionGrain(
    [PersistentState("chat-session", DuckStorage.Name)] IPersistentState<ChatSessionState> state,
    ChatModelHost host, ILogger<ChatSessionGrain> logger) : Grain, IChatSessionGrain
{
    InferenceSession? cache;
    int turn; // the number of the newest turn; an older one finding a different number was superseded
    CancellationTokenSource? replying;
    Task<GenerationSummary>? replyDone; // the running generation: the next turn waits for the batcher to let go of the cache
    int window; // stored exchanges left out of the prompt because the context is full (see ChatPrompt.BuildWindow)
    // The last stored turn's prompt and reply as the model saw and wrote them, while the window has not moved: the
    // next prompt continues these tokens, so the KV cache holds all of it and only the new message is prefilled.
    (int[] Tokens, int Window, int Turns)? continuation;

    public override Task OnActivateAsync(CancellationToken ct)
    {
        if (state.State.Spec is not null) Log.ChatSessionActivated(logger, this.GetPrimaryKeyString(), state.State.Messages.Count);
        DuckMetrics.ActiveSessions.Add(1);
        return Task.CompletedTask;
    }

    public override Task OnDeactivateAsync(DeactivationReason reason, CancellationToken ct)
    {
        DuckMetrics.ActiveSessions.Add(-1);
        return Task.CompletedTask;
    }

    public async Task<ChatSessionInfo> CreateAsync(ChatSessionSpec spec)
    {
        if (state.State.Spec is not null) throw new ChatException(ChatErrorKind.InvalidRequest, $"session '{this.GetPrimaryKeyString()}' already exists");
        var model = await host.GetAsync(spec.Model);
        ChatPrompt.Sampling(spec.Settings, host.Options, model.Model.Config.ContextLength); // validates the settings
        if (spec.SystemPrompt is { } system && Duck.Core.Text.ChatFormat.ReservedText.FirstOrDefault(r => system.Contains(r, StringComparison.Ordinal)) is { } marker)
            throw new ChatException(ChatErrorKind.InvalidRequest, $"the system prompt contains the reserved text \"{marker}\"");
        state.State = new ChatSessionState { Spec = spec, CreatedUtc = DateTime.UtcNow };
        await state.WriteStateAsync();
        return Info();
    }

    public Task<ChatSessionInfo?> GetAsync() => Task.FromResult(state.State.Spec is null ? null : Info());

    public IAsyncEnumerable<ChatChunk> SendAsync(string message, ChatGenerationSettings? overrides = null) => SendCoreAsync(message, overrides);

    async IAsyncEnumerable<ChatChunk> SendCoreAsync(string message, ChatGenerationSettings? overrides, [EnumeratorCancellation] CancellationToken ct = default)
    {
        var spec = state.State.Spec ?? throw new ChatException(ChatErrorKind.SessionNotFound, $"session '{this.GetPrimaryKeyString()}' does not exist");
        int mine = ++turn;
        await SupersedeAsync();
        var cts = CancellationTokenSource.CreateLinkedTokenSource(ct);
        replying = cts;
        var model = await host.GetAsync(spec.Model);
        var settings = spec.Settings.With(overrides);
        int context = model.Model.Config.ContextLength;
        var turns = state.State.Messages;
        int maxTokens = settings.MaxTokens ?? host.Options.DefaultMaxTokens;
        ChatPrompt.Check(message ?? "");
        int[]? prompt = null;
        if (continuation is { } c && c.Window == window && c.Turns == turns.Count)
        {
            prompt = ChatPrompt.Continue(c.Tokens, message!, maxTokens, context);
            // Full: the window moves on over the same tokens. (Its count of left-out stored exchanges is approximate
            // when an empty reply was left out of the prompt earlier; it only seeds the next rebuild from text.)
            if (prompt is null && ChatPrompt.ShiftWindow(c.Tokens, message!, maxTokens, context) is { } moved)
                (prompt, window) = (moved.Prompt, Math.Min(window + moved.Dropped, turns.Count / 2));
        }
        if (prompt is null)
            (prompt, window) = ChatPrompt.BuildWindow(skip => ChatPrompt.History(spec.SystemPrompt, turns, message ?? "", skip),
                turns.Count / 2, Math.Min(window, turns.Count / 2), maxTokens, context);
        continuation = null;
        var sampling = ChatPrompt.Sampling(settings, host.Options, context - prompt.Length);
        cache ??= new InferenceSession(model.Model);
        var reply = new StringBuilder();
        ChatUsage? usage = null;
        await using var chunks = ChatPrompt.StreamAsync(model, cache, prompt, sampling, reply, cts.Token, done => replyDone = done).GetAsyncEnumerator();
        while (true)
        {
            // A newer message cancels this reply wherever it waits: that is SessionBusy for its caller, not a failure.
            try { if (!await chunks.MoveNextAsync()) break; }
            catch (OperationCanceledException) when (mine != turn) { throw Superseded(); }
            if (mine != turn) throw Superseded();
            if (chunks.Current.Usage is { } u) usage = u;
            else yield return chunks.Current;
        }
        if (mine != turn) throw Superseded();
        var generation = replyDone;
        state.State.Messages.Add(new ChatTurn("user", message!.Trim()));
        string stored = ChatPrompt.CleanReply(reply.ToString());
        state.State.Messages.Add(new ChatTurn("assistant", stored));
        await state.WriteStateAsync();
        // A reply cut by a stop sequence holds the stop's tokens, and an empty one is left out of prompts: those
        // turns continue from the stored text instead.
        if (mine == turn && generation is { IsCompletedSuccessfully: true } finished && stored.Length > 0
            && finished.Result.StopReason is StopReason.EndOfText or StopReason.MaxTokens)
            continuation = ([.. prompt, .. finished.Result.ReplyTokens], window, state.State.Messages.Count);
        yield return new ChatChunk("", usage);
    }

    /// <summary>Cancels a reply still running and waits until the batcher has let go of the KV cache.</summary>
    async Task SupersedeAsync()
    {
        if (replying is null) return;
        try { replying.Cancel(); } catch (ObjectDisposedException) { }
        if (replyDone is { } done) await done.ContinueWith(_ => { }, TaskScheduler.Default).ConfigureAwait(true);
        replying = null;
        replyDone = null;
    }

    ChatException Superseded() => new(ChatErrorKind.SessionBusy, $"session '{this.GetPrimaryKeyString()}': a newer message (or a delete) cancelled this reply");

    public async Task<bool> DeleteAsync()
    {
        if (state.State.Spec is null) return false;
        await state.ClearStateAsync();
        ++turn;
        await SupersedeAsync();
        state.State = new ChatSessionState();
        cache = null;
        window = 0;
        continuation = null;
        DeactivateOnIdle();
        return true;
    }

    ChatSessionInfo Info() => new()
    {
        Id = this.GetPrimaryKeyString(), Spec = state.State.Spec!, Messages = state.State.Messages.ToArray(),
        CreatedUtc = state.State.CreatedUtc, Silo = RuntimeIdentity, CachedTokens = cache?.Length ?? 0, CacheBytes = cache?.CacheBytes ?? 0,
    };
}
