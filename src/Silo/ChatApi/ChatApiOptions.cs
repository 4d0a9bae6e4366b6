// Chat serving settings of a silo, bound from "Duck:Chat" (appsettings.json, DUCK_ environment variables,
// --Duck:Chat:Key=value) and validated at start with the offending key named; AddDuckChat wires the model host
// (Duck.Grains.Chat) and the API's limits. Not the endpoints: see ChatEndpoints.cs.
using Duck.Grains.Chat;

namespace Duck.Silo.ChatApi;

/// <summary>Everything under "Duck:Chat": the serving settings the model host reads (Models, Threads, MaxBatchSize,
/// DefaultMaxTokens, MaxTokensLimit, CacheFolder, KvCache, CacheShiftMinTokens) and the HTTP API's own.</summary>
public sealed record ChatApiOptions : ChatServingOptions
{
    /// <summary>Accepted Bearer keys. Empty means no key is asked for, which only localhost clustering (the embedded default) allows.</summary>
    public string[] ApiKeys { get; init; } = [];
    /// <summary>Largest request body in bytes (413 beyond).</summary>
    public int MaxRequestBytes { get; init; } = 1 << 20;
    /// <summary>Chat requests served at once by this silo (429 beyond).</summary>
    public int MaxConcurrentRequests { get; init; } = 128;

    /// <summary>Throws naming the key of the first impossible value.</summary>
    public ChatApiOptions Validate(bool keysRequired)
    {
        string S = ChatApiHosting.Section;
        if (string.IsNullOrWhiteSpace(Models)) throw new ArgumentException($"{S}:Models is empty; give a folder or azure:container[/prefix]");
        if (!Enum.IsDefined(KvCache)) throw new ArgumentException($"{S}:KvCache must be Bf16 or Int8, got {KvCache}");
        if (Threads < 0) throw new ArgumentException($"{S}:Threads must be >= 0 (0: all cores), got {Threads}");
        if (MaxBatchSize < 1) throw new ArgumentException($"{S}:MaxBatchSize must be >= 1, got {MaxBatchSize}");
        if (CacheShiftMinTokens < 0) throw new ArgumentException($"{S}:CacheShiftMinTokens must be >= 0 (0: off), got {CacheShiftMinTokens}");
        if (MaxTokensLimit < 1) throw new ArgumentException($"{S}:MaxTokensLimit must be >= 1, got {MaxTokensLimit}");
        if (DefaultMaxTokens < 1 || DefaultMaxTokens > MaxTokensLimit)
            throw new ArgumentException($"{S}:DefaultMaxTokens must be in 1..{S}:MaxTokensLimit ({MaxTokensLimit}), got {DefaultMaxTokens}");
        if (MaxRequestBytes < 1024) throw new ArgumentException($"{S}:MaxRequestBytes must be >= 1024, got {MaxRequestBytes}");
        if (MaxConcurrentRequests < 1) throw new ArgumentException($"{S}:MaxConcurrentRequests must be >= 1, got {MaxConcurrentRequests}");
        if (ApiKeys.Any(k => string.IsNullOrWhiteSpace(k) || k.Length < 8))
            throw new ArgumentException($"{S}:ApiKeys holds an empty or short key; keys need at least 8 characters");
        if (keysRequired && ApiKeys.Length == 0)
            throw new ArgumentException($"{S}:ApiKeys is empty: outside localhost clustering the chat API needs at least one key (--{S}:ApiKeys:0=KEY)");
        return this;
    }
}

public static class ChatApiHosting
{
    public const string Section = "Duck:Chat";

    /// <summary>Binds and validates "Duck:Chat" (unknown keys are an error) and registers the model host and the API's services.</summary>
    public static WebApplicationBuilder AddDuckChat(this WebApplicationBuilder builder)
    {
        var section = builder.Configuration.GetSection(Section);
        var known = typeof(ChatApiOptions).GetProperties().Where(p => p.CanWrite).Select(p => p.Name).ToHashSet(StringComparer.OrdinalIgnoreCase);
        foreach (var child in section.GetChildren())
            if (!known.Contains(child.Key)) throw new ArgumentException($"unknown configuration key {Section}:{child.Key}; known keys: {string.Join(", ", known)}");
        ChatApiOptions options;
        try { options = section.Get<ChatApiOptions>() ?? new ChatApiOptions(); }
        catch (InvalidOperationException e) { throw new ArgumentException($"{Section}: {e.Message}"); }
        string clustering = builder.Configuration["Duck:Silo:Clustering"] ?? "localhost";
        options.Validate(keysRequired: !clustering.Equals("localhost", StringComparison.OrdinalIgnoreCase));
        builder.Services.AddSingleton(options);
        builder.Services.AddSingleton(new ChatRequestGate(options.MaxConcurrentRequests));
        builder.Services.AddDuckChatServing(options);
        return builder;
    }
}

/// <summary>Counts chat requests in flight; a request beyond the limit is refused (429) rather than queued.</summary>
public sealed class ChatRequestGate(int limit)
{
    int inFlight;

    public bool TryEnter()
    {
        if (Interlocked.Increment(ref inFlight) <= limit) return true;
        Interlocked.Decrement(ref inFlight);
        return false;
    }

    public void Exit() => Interlocked.Decrement(ref inFlight);
}
