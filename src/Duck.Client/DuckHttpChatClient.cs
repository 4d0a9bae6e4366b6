// IChatClient over Duck's OpenAI-compatible HTTP API (POST /v1/chat/completions, server-sent events), for .NET
// applications that use Microsoft.Extensions.AI with other chat models too; with ChatOptions.ConversationId, over
// the Duck Chat session API (the server keeps the conversation and its KV cache). A refusal of the server becomes a
// DuckApiException carrying its status and OpenAI error code.
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Runtime.CompilerServices;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.Extensions.AI;

namespace Duck.Client;

/// <summary>The server refused a request: HTTP <see cref="Status"/>, OpenAI error <see cref="Code"/>.</summary>
public sealed class DuckApiException(int status, string? code, string message) : Exception(message)
{
    public int Status => status;
    public string? Code => code;
}

/// <summary>A Duck server (any silo's HTTP address) as an <see cref="IChatClient"/>.</summary>
public sealed class DuckHttpChatClient : IChatClient
{
    readonly HttpClient http;
    readonly bool ownsHttp;
    readonly string model;

    /// <param name="endpoint">The silo's base address, e.g. http://127.0.0.1:8080/.</param>
    /// <param name="apiKey">Sent as a Bearer token when not null.</param>
    public DuckHttpChatClient(Uri endpoint, string model, string? apiKey = null, HttpClient? httpClient = null)
    {
        ownsHttp = httpClient is null;
        http = httpClient ?? new HttpClient { Timeout = Timeout.InfiniteTimeSpan };
        http.BaseAddress ??= endpoint;
        if (apiKey is not null) http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", apiKey);
        this.model = model;
    }

    public async Task<ChatResponse> GetResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null, CancellationToken cancellationToken = default) =>
        await GetStreamingResponseAsync(messages, options, cancellationToken).ToChatResponseAsync(cancellationToken);

    public async IAsyncEnumerable<ChatResponseUpdate> GetStreamingResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null,
        [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        string modelId = options?.ModelId ?? model;
        var body = Body(modelId, messages, options);
        string path = "v1/chat/completions";
        if (options?.ConversationId is { } conversation)
        {
            // A server-kept conversation (Duck Chat session): only the new user message travels.
            body.Remove("messages");
            body.Remove("model");
            body["content"] = DuckChatMapping.LastUserText(messages);
            path = $"v1/sessions/{Uri.EscapeDataString(conversation)}/messages";
        }
        using var request = new HttpRequestMessage(HttpMethod.Post, path) { Content = new StringContent(body.ToJsonString(), Encoding.UTF8, "application/json") };
        using var response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, cancellationToken);
        if (!response.IsSuccessStatusCode) throw await ErrorAsync(response, cancellationToken);
        using var reader = new StreamReader(await response.Content.ReadAsStreamAsync(cancellationToken));
        string? line;
        ChatFinishReason? finish = null;
        while ((line = await reader.ReadLineAsync(cancellationToken)) is not null)
        {
            if (!line.StartsWith("data: ", StringComparison.Ordinal)) continue;
            string data = line[6..];
            if (data == "[DONE]") yield break;
            var chunk = JsonNode.Parse(data)!;
            if (chunk["error"] is { } error) throw new DuckApiException(500, (string?)error["code"], (string?)error["message"] ?? data);
            string id = (string?)chunk["id"] ?? "";
            foreach (var choice in chunk["choices"]?.AsArray() ?? [])
            {
                if ((string?)choice!["finish_reason"] is { } reason) finish = DuckChatMapping.FinishReason(reason);
                if ((string?)choice["delta"]?["content"] is { Length: > 0 } text)
                    yield return new ChatResponseUpdate(ChatRole.Assistant, text) { ModelId = modelId, ResponseId = id, MessageId = id };
            }
            if (chunk["usage"] is JsonObject usage)
                yield return new ChatResponseUpdate(ChatRole.Assistant, [new UsageContent(DuckChatMapping.Usage(
                    (int)usage["prompt_tokens"]!, (int)usage["completion_tokens"]!, (int?)usage["prompt_tokens_details"]?["cached_tokens"] ?? 0))])
                { FinishReason = finish, ModelId = modelId, ResponseId = id, MessageId = id };
        }
        throw new DuckApiException(502, null, "the reply stream ended without [DONE]");
    }

    static JsonObject Body(string modelId, IEnumerable<ChatMessage> messages, ChatOptions? options)
    {
        var settings = DuckChatMapping.Settings(options);
        var body = new JsonObject
        {
            ["model"] = modelId, ["stream"] = true,
            ["messages"] = new JsonArray(DuckChatMapping.Turns(messages).Select(t => (JsonNode)new JsonObject { ["role"] = t.Role, ["content"] = t.Content }).ToArray()),
        };
        if (settings.Temperature is { } temperature) body["temperature"] = temperature;
        if (settings.TopP is { } topP) body["top_p"] = topP;
        if (settings.TopK is { } topK) body["top_k"] = topK;
        if (settings.MaxTokens is { } maxTokens) body["max_tokens"] = maxTokens;
        if (settings.Seed is { } seed) body["seed"] = seed;
        if (settings.Stop is { } stop) body["stop"] = new JsonArray(stop.Select(s => (JsonNode)s).ToArray());
        return body;
    }

    static async Task<DuckApiException> ErrorAsync(HttpResponseMessage response, CancellationToken ct)
    {
        string text = await response.Content.ReadAsStringAsync(ct);
        try
        {
            var error = JsonNode.Parse(text)?["error"];
            return new DuckApiException((int)response.StatusCode, (string?)error?["code"], (string?)error?["message"] ?? text);
        }
        catch (JsonException) { return new DuckApiException((int)response.StatusCode, null, $"HTTP {(int)response.StatusCode}: {text}"); }
    }

    /// <summary>
    /// Starts a conversation kept by the server (POST /v1/sessions) and returns its id: pass it as
    /// <see cref="ChatOptions.ConversationId"/> and send only the new user message each turn.
    /// </summary>
    public async Task<string> CreateConversationAsync(string? systemPrompt = null, ChatOptions? defaults = null, CancellationToken ct = default)
    {
        var body = Body(defaults?.ModelId ?? model, [], defaults);
        body.Remove("messages");
        body.Remove("stream");
        if (systemPrompt is not null) body["system"] = systemPrompt;
        using var response = await http.PostAsync("v1/sessions", new StringContent(body.ToJsonString(), Encoding.UTF8, "application/json"), ct);
        if (!response.IsSuccessStatusCode) throw await ErrorAsync(response, ct);
        return (string)(await response.Content.ReadFromJsonAsync<JsonObject>(ct))!["id"]!;
    }

    /// <summary>The models the server lists at GET /v1/models.</summary>
    public async Task<string[]> ListModelsAsync(CancellationToken ct = default)
    {
        using var response = await http.GetAsync("v1/models", ct);
        if (!response.IsSuccessStatusCode) throw await ErrorAsync(response, ct);
        var list = await response.Content.ReadFromJsonAsync<JsonObject>(ct);
        return list?["data"]?.AsArray().Select(m => (string)m!["id"]!).ToArray() ?? [];
    }

    public object? GetService(Type serviceType, object? serviceKey = null) =>
        serviceKey is null && serviceType == typeof(ChatClientMetadata) ? new ChatClientMetadata("duck", http.BaseAddress, model)
        : serviceKey is null && serviceType.IsInstanceOfType(this) ? this : null;

    public void Dispose()
    {
        if (ownsHttp) http.Dispose();
    }
}
