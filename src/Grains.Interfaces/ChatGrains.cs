// The chat-serving grains and their messages: a session grain per conversation (history persisted, KV cache in
// memory) and a one-shot completion grain per stateless request (OpenAI's style: the caller sends the whole
// history). Replies stream as IAsyncEnumerable<ChatChunk>: text pieces, then one last chunk with the usage.
// Errors the caller can fix travel as ChatException with a ChatErrorKind. No grain code here.
namespace Duck.Grains;

/// <summary>Sampling settings of a reply; null fields take the server's defaults.</summary>
[GenerateSerializer, Immutable]
public sealed record ChatGenerationSettings
{
    /// <summary>The reply length a silo gives a request that does not say (Duck:Chat:DefaultMaxTokens unless configured).</summary>
    public const int DefaultMaxTokens = 128;

    /// <summary>0 is greedy.</summary>
    [Id(0)] public float? Temperature { get; init; }
    /// <summary>Nucleus mass in (0, 1].</summary>
    [Id(1)] public float? TopP { get; init; }
    /// <summary>Keep the k most likely tokens; 0 disables.</summary>
    [Id(2)] public int? TopK { get; init; }
    /// <summary>Most tokens in the reply.</summary>
    [Id(3)] public int? MaxTokens { get; init; }
    /// <summary>Sampling seed; null draws one.</summary>
    [Id(4)] public int? Seed { get; init; }
    /// <summary>Extra stop sequences (the chat markers always stop a reply).</summary>
    [Id(5)] public string[]? Stop { get; init; }
    /// <summary>Above 1 discourages repeats.</summary>
    [Id(6)] public float? RepetitionPenalty { get; init; }

    /// <summary>These settings with the fields of <paramref name="overrides"/> that are set taking precedence.</summary>
    public ChatGenerationSettings With(ChatGenerationSettings? overrides) => overrides is null ? this : new()
    {
        Temperature = overrides.Temperature ?? Temperature, TopP = overrides.TopP ?? TopP, TopK = overrides.TopK ?? TopK,
        MaxTokens = overrides.MaxTokens ?? MaxTokens, Seed = overrides.Seed ?? Seed, Stop = overrides.Stop ?? Stop,
        RepetitionPenalty = overrides.RepetitionPenalty ?? RepetitionPenalty,
    };
}

/// <summary>One message of a conversation; Role is "system", "user" or "assistant".</summary>
[GenerateSerializer, Immutable]
public sealed record ChatTurn([property: Id(0)] string Role, [property: Id(1)] string Content);

/// <summary>What a new session is: the model by name, an optional persona (system prompt) and default settings.</summary>
[GenerateSerializer, Immutable]
public sealed record ChatSessionSpec
{
    [Id(0)] public required string Model { get; init; }
    [Id(1)] public string? SystemPrompt { get; init; }
    [Id(2)] public ChatGenerationSettings Settings { get; init; } = new();
}

/// <summary>A session as stored: its spec, its messages (user and assistant turns), and where it runs now.</summary>
[GenerateSerializer, Immutable]
public sealed record ChatSessionInfo
{
    [Id(0)] public required string Id { get; init; }
    [Id(1)] public required ChatSessionSpec Spec { get; init; }
    [Id(2)] public required ChatTurn[] Messages { get; init; }
    [Id(3)] public DateTime CreatedUtc { get; init; }
    /// <summary>The silo holding the session's activation.</summary>
    [Id(4)] public string Silo { get; init; } = "";
    /// <summary>Tokens in the session's KV cache on that silo (0 after a re-activation, until the next turn).</summary>
    [Id(5)] public int CachedTokens { get; init; }
    /// <summary>Bytes of that KV cache (it grows with the tokens, up to the model's context window).</summary>
    [Id(6)] public long CacheBytes { get; init; }
}

/// <summary>Token counts and the end of one reply.</summary>
[GenerateSerializer, Immutable]
public sealed record ChatUsage
{
    [Id(0)] public int PromptTokens { get; init; }
    [Id(1)] public int CompletionTokens { get; init; }
    /// <summary>Prompt tokens found in the KV cache (not prefilled again).</summary>
    [Id(2)] public int CachedTokens { get; init; }
    /// <summary>OpenAI's finish reason: "stop" or "length".</summary>
    [Id(3)] public string FinishReason { get; init; } = "stop";
}

/// <summary>A piece of a streamed reply: text, or (last) the usage with empty text.</summary>
[GenerateSerializer, Immutable]
public sealed record ChatChunk([property: Id(0)] string Text, [property: Id(1)] ChatUsage? Usage = null);

/// <summary>A stateless completion: the whole history, ending with a user turn.</summary>
[GenerateSerializer, Immutable]
public sealed record ChatCompletionRequest
{
    [Id(0)] public required string Model { get; init; }
    [Id(1)] public required ChatTurn[] Messages { get; init; }
    [Id(2)] public ChatGenerationSettings Settings { get; init; } = new();
}

/// <summary>Why a chat request was refused.</summary>
public enum ChatErrorKind { InvalidRequest, ModelNotFound, SessionNotFound, SessionBusy, ContextLengthExceeded, Overloaded }

/// <summary>A chat request the caller can fix; <see cref="Kind"/> says how (the HTTP API maps it to a status code).</summary>
[GenerateSerializer]
public sealed class ChatException : Exception
{
    [Id(0)] public ChatErrorKind Kind { get; }

    public ChatException(ChatErrorKind kind, string message) : base(message) => Kind = kind;
}

/// <summary>One conversation kept by the server; key: the session id.</summary>
public interface IChatSessionGrain : IGrainWithStringKey
{
    /// <summary>Creates the session; ChatException (InvalidRequest) if it exists, (ModelNotFound) for an unknown model.</summary>
    Task<ChatSessionInfo> CreateAsync(ChatSessionSpec spec);

    /// <summary>The session with its whole history, or null when there is none.</summary>
    Task<ChatSessionInfo?> GetAsync();

    /// <summary>
    /// Adds a user message and streams the model's reply; the exchange joins the stored history once the reply is
    /// complete. One turn at a time: a new message supersedes a reply still streaming (that stream then fails with
    /// ChatException SessionBusy and its exchange is not stored). Disposing the enumerator early cancels the reply
    /// and nothing is stored.
    /// </summary>
    IAsyncEnumerable<ChatChunk> SendAsync(string message, ChatGenerationSettings? overrides = null);

    /// <summary>Deletes the session and its stored history; false when there was none.</summary>
    Task<bool> DeleteAsync();
}

/// <summary>A one-shot completion of a history sent whole; key: a fresh Guid per request (placed on the calling silo).</summary>
public interface IChatCompletionGrain : IGrainWithGuidKey
{
    /// <summary>Streams the reply to the request's history, then the usage.</summary>
    IAsyncEnumerable<ChatChunk> CompleteAsync(ChatCompletionRequest request);

    /// <summary>The names of the models this cluster serves.</summary>
    Task<string[]> ListModelsAsync();
}
