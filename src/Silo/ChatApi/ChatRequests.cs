// Reading chat requests: the body with its size limit, JSON parsing, and typed fields with OpenAI's names and
// ranges. Every mistake becomes an ApiError (400/413) naming the field; nothing here throws anything else for
// bad input. Also ApiError itself and how errors map to OpenAI-style JSON bodies. Not the endpoints.
using System.Text.Json;
using Duck.Grains;
using Microsoft.AspNetCore.Http.Features;

namespace Duck.Silo.ChatApi;

/// <summary>A request the API refuses, with its HTTP status and OpenAI error fields.</summary>
public sealed class ApiError(int status, string code, string message, string? param = null) : Exception(message)
{
    public int Status => status;
    public string Code => code;
    public string? Param => param;
    public string Type => status switch
    {
        401 => "authentication_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        >= 500 => "server_error",
        _ => "invalid_request_error",
    };

    public object Body => new { Error = new { Message, Type, Param, Code } };

    public static ApiError Invalid(string message, string? param = null) => new(400, "invalid_request", message, param);

    public static ApiError From(ChatException e) => e.Kind switch
    {
        ChatErrorKind.ModelNotFound => new(404, "model_not_found", e.Message, "model"),
        ChatErrorKind.SessionNotFound => new(404, "session_not_found", e.Message),
        ChatErrorKind.SessionBusy => new(409, "session_busy", e.Message),
        ChatErrorKind.ContextLengthExceeded => new(400, "context_length_exceeded", e.Message, "messages"),
        ChatErrorKind.Overloaded => new(429, "rate_limit_exceeded", e.Message),
        _ => new(400, "invalid_request", e.Message),
    };
}

static class ChatRequests
{
    /// <summary>The JSON object of the body; 413 beyond <paramref name="maxBytes"/>, 400 when it is not a JSON object.</summary>
    public static async Task<JsonElement> ReadObjectAsync(HttpContext ctx, int maxBytes)
    {
        if (ctx.Request.ContentLength > maxBytes) throw TooLarge(maxBytes);
        if (ctx.Features.Get<IHttpMaxRequestBodySizeFeature>() is { IsReadOnly: false } limit) limit.MaxRequestBodySize = maxBytes;
        var buffer = new MemoryStream();
        try
        {
            var chunk = new byte[16384];
            int n;
            while ((n = await ctx.Request.Body.ReadAsync(chunk, ctx.RequestAborted)) > 0)
            {
                if (buffer.Length + n > maxBytes) throw TooLarge(maxBytes);
                buffer.Write(chunk, 0, n);
            }
        }
        catch (BadHttpRequestException e) when (e.StatusCode == 413) { throw TooLarge(maxBytes); }
        try
        {
            using var doc = JsonDocument.Parse(buffer.ToArray());
            if (doc.RootElement.ValueKind != JsonValueKind.Object) throw ApiError.Invalid($"the request body must be a JSON object, got {doc.RootElement.ValueKind}");
            return doc.RootElement.Clone();
        }
        catch (JsonException e) { throw new ApiError(400, "invalid_json", $"the request body is not valid JSON: {e.Message}"); }
    }

    static ApiError TooLarge(int maxBytes) => new(413, "request_too_large", $"the request body exceeds {maxBytes} bytes");

    public static string RequiredString(JsonElement o, string name) =>
        OptionalString(o, name) is { Length: > 0 } s ? s : throw ApiError.Invalid($"'{name}' is required and must be a non-empty string", name);

    public static string? OptionalString(JsonElement o, string name)
    {
        if (!o.TryGetProperty(name, out var v) || v.ValueKind == JsonValueKind.Null) return null;
        return v.ValueKind == JsonValueKind.String ? v.GetString() : throw ApiError.Invalid($"'{name}' must be a string, got {v.ValueKind}", name);
    }

    public static bool Bool(JsonElement o, string name)
    {
        if (!o.TryGetProperty(name, out var v) || v.ValueKind == JsonValueKind.Null) return false;
        return v.ValueKind switch
        {
            JsonValueKind.True => true,
            JsonValueKind.False => false,
            _ => throw ApiError.Invalid($"'{name}' must be true or false, got {v.ValueKind}", name),
        };
    }

    static double? Number(JsonElement o, string name, double min, double max, bool minExclusive = false)
    {
        if (!o.TryGetProperty(name, out var v) || v.ValueKind == JsonValueKind.Null) return null;
        if (v.ValueKind != JsonValueKind.Number || !v.TryGetDouble(out double d) || double.IsNaN(d) || d > max || (minExclusive ? d <= min : d < min))
            throw ApiError.Invalid($"'{name}' must be a number in {(minExclusive ? "(" : "[")}{min}, {max}], got {v.GetRawText()}", name);
        return d;
    }

    static int? Integer(JsonElement o, string name, long min, long max)
    {
        if (!o.TryGetProperty(name, out var v) || v.ValueKind == JsonValueKind.Null) return null;
        if (v.ValueKind != JsonValueKind.Number || !v.TryGetInt64(out long n) || n < min || n > max)
            throw ApiError.Invalid($"'{name}' must be an integer in [{min}, {max}], got {v.GetRawText()}", name);
        return (int)n;
    }

    /// <summary>The sampling fields (OpenAI's, plus Duck's top_k and repetition_penalty); n, when present, must be 1.</summary>
    public static ChatGenerationSettings Settings(JsonElement o, ChatApiOptions options)
    {
        if (Integer(o, "n", 1, 1000) is > 1) throw ApiError.Invalid("only n = 1 is supported", "n");
        int? maxTokens = Integer(o, "max_completion_tokens", 1, options.MaxTokensLimit) ?? Integer(o, "max_tokens", 1, options.MaxTokensLimit);
        return new ChatGenerationSettings
        {
            Temperature = (float?)Number(o, "temperature", 0, 2),
            TopP = (float?)Number(o, "top_p", 0, 1, minExclusive: true),
            TopK = Integer(o, "top_k", 0, 100_000),
            RepetitionPenalty = (float?)Number(o, "repetition_penalty", 0, 10, minExclusive: true),
            MaxTokens = maxTokens,
            Seed = Seed(o),
            Stop = Stop(o),
        };
    }

    /// <summary>OpenAI seeds are 64-bit; the sampler's are 32-bit, so a larger seed is folded (same seed, same reply).</summary>
    static int? Seed(JsonElement o)
    {
        if (!o.TryGetProperty("seed", out var v) || v.ValueKind == JsonValueKind.Null) return null;
        if (v.ValueKind != JsonValueKind.Number || !v.TryGetInt64(out long seed)) throw ApiError.Invalid($"'seed' must be an integer, got {v.GetRawText()}", "seed");
        return unchecked((int)(seed ^ (seed >> 32)));
    }

    static string[]? Stop(JsonElement o)
    {
        if (!o.TryGetProperty("stop", out var v) || v.ValueKind == JsonValueKind.Null) return null;
        string[] stops = v.ValueKind switch
        {
            JsonValueKind.String => [v.GetString()!],
            JsonValueKind.Array when v.EnumerateArray().All(e => e.ValueKind == JsonValueKind.String) => v.EnumerateArray().Select(e => e.GetString()!).ToArray(),
            _ => throw ApiError.Invalid("'stop' must be a string or an array of strings", "stop"),
        };
        if (stops.Length > 4 || stops.Any(s => s.Length == 0)) throw ApiError.Invalid("'stop' holds at most 4 non-empty strings", "stop");
        return stops;
    }

    /// <summary>OpenAI's messages: role system/developer/user/assistant, content a string or an array of text parts.</summary>
    public static ChatTurn[] Messages(JsonElement o)
    {
        if (!o.TryGetProperty("messages", out var v) || v.ValueKind != JsonValueKind.Array || v.GetArrayLength() == 0)
            throw ApiError.Invalid("'messages' is required and must be a non-empty array", "messages");
        var turns = new List<ChatTurn>();
        int i = 0;
        foreach (var m in v.EnumerateArray())
        {
            string where = $"messages[{i++}]";
            if (m.ValueKind != JsonValueKind.Object) throw ApiError.Invalid($"{where} must be an object", "messages");
            string role = m.TryGetProperty("role", out var r) && r.ValueKind == JsonValueKind.String ? r.GetString()! : throw ApiError.Invalid($"{where}.role is required", "messages");
            role = role switch
            {
                "system" or "developer" => "system",
                "user" or "assistant" => role,
                _ => throw ApiError.Invalid($"{where}.role '{role}' is not supported (system, developer, user, assistant)", "messages"),
            };
            turns.Add(new ChatTurn(role, Content(m, where)));
        }
        return turns.ToArray();
    }

    static string Content(JsonElement m, string where)
    {
        if (!m.TryGetProperty("content", out var c)) throw ApiError.Invalid($"{where}.content is required", "messages");
        if (c.ValueKind == JsonValueKind.String) return c.GetString()!;
        if (c.ValueKind != JsonValueKind.Array) throw ApiError.Invalid($"{where}.content must be a string or an array of text parts", "messages");
        var text = new System.Text.StringBuilder();
        foreach (var part in c.EnumerateArray())
        {
            if (part.ValueKind != JsonValueKind.Object || !part.TryGetProperty("type", out var t) || t.GetString() != "text"
                || !part.TryGetProperty("text", out var s) || s.ValueKind != JsonValueKind.String)
                throw ApiError.Invalid($"{where}.content: only text parts ({{\"type\": \"text\", \"text\": ...}}) are supported", "messages");
            text.Append(s.GetString());
        }
        return text.ToString();
    }
}
