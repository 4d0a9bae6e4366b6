// The chat HTTP API of a silo. OpenAI-compatible: GET /v1/models, POST /v1/chat/completions (JSON or server-sent
// events in OpenAI's chunk format ending with "data: [DONE]"). Duck Chat sessions, where the server keeps the
// conversation: POST /v1/sessions, GET and DELETE /v1/sessions/{id}, POST /v1/sessions/{id}/messages (JSON or SSE).
// Every /v1 request passes the Bearer key check and the in-flight limit; every refusal is an OpenAI-style JSON
// error. Replies come from the chat grains; closing the connection cancels the reply.
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;
using Duck.Grains;
using Duck.Grains.Chat;

namespace Duck.Silo.ChatApi;

public static partial class ChatEndpoints
{
    static readonly JsonSerializerOptions Json = new() { PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower };

    [GeneratedRegex("^[A-Za-z0-9_-]{1,64}$")]
    private static partial Regex SessionId();

    public static WebApplication MapDuckChatApi(this WebApplication app)
    {
        var o = app.Services.GetRequiredService<ChatApiOptions>();
        app.Logger.LogInformation("chat API: models {Models}, {Keys} API key(s), {Threads} threads per model, batch <= {Batch}, max_tokens {Default} (<= {Limit}), body <= {Bytes} B, <= {Concurrent} requests in flight",
            o.Models, o.ApiKeys.Length, o.Threads == 0 ? Environment.ProcessorCount : o.Threads, o.MaxBatchSize, o.DefaultMaxTokens, o.MaxTokensLimit, o.MaxRequestBytes, o.MaxConcurrentRequests);
        app.MapGet("/v1/models", ctx => Run(ctx, ListModelsAsync));
        app.MapPost("/v1/chat/completions", ctx => Run(ctx, CompleteAsync));
        app.MapPost("/v1/sessions", ctx => Run(ctx, CreateSessionAsync));
        app.MapGet("/v1/sessions/{id}", ctx => Run(ctx, GetSessionAsync));
        app.MapDelete("/v1/sessions/{id}", ctx => Run(ctx, DeleteSessionAsync));
        app.MapPost("/v1/sessions/{id}/messages", ctx => Run(ctx, SendMessageAsync));
        app.MapFallback("/v1/{**rest}", ctx => Run(ctx, c => throw new ApiError(404, "not_found", $"no endpoint {c.Request.Method} {c.Request.Path}")));
        return app;
    }

    /// <summary>Key check, in-flight limit and error mapping around one handler.</summary>
    static async Task Run(HttpContext ctx, Func<HttpContext, Task> handler)
    {
        var options = ctx.RequestServices.GetRequiredService<ChatApiOptions>();
        var gate = ctx.RequestServices.GetRequiredService<ChatRequestGate>();
        bool entered = false;
        try
        {
            CheckKey(ctx, options);
            if (!(entered = gate.TryEnter())) throw new ApiError(429, "rate_limit_exceeded", $"this silo is serving {options.MaxConcurrentRequests} chat requests already; retry shortly");
            await handler(ctx);
        }
        catch (Exception e) when (!ctx.Response.HasStarted && !ctx.RequestAborted.IsCancellationRequested)
        {
            var error = e switch
            {
                ApiError a => a,
                ChatException c => ApiError.From(c),
                // The cluster is changing (a silo died, a grain is moving): the request may succeed when retried.
                TimeoutException or Orleans.Runtime.OrleansException => new ApiError(503, "unavailable", $"the cluster could not serve the request ({e.GetType().Name}: {e.Message}); retry"),
                _ => new ApiError(500, "server_error", $"{e.GetType().Name}: {e.Message}"),
            };
            if (error.Status >= 500) ctx.RequestServices.GetRequiredService<ILogger<ApiError>>().LogError(e, "chat request {Path} failed", ctx.Request.Path);
            ctx.Response.StatusCode = error.Status;
            await ctx.Response.WriteAsJsonAsync(error.Body, Json);
        }
        catch (Exception) when (ctx.RequestAborted.IsCancellationRequested) { /* the caller went away */ }
        finally { if (entered) gate.Exit(); }
    }

    static void CheckKey(HttpContext ctx, ChatApiOptions options)
    {
        if (options.ApiKeys.Length == 0) return;
        string header = ctx.Request.Headers.Authorization.ToString();
        if (!header.StartsWith("Bearer ", StringComparison.OrdinalIgnoreCase))
            throw new ApiError(401, "missing_api_key", "no API key: send the header 'Authorization: Bearer KEY'");
        var given = Encoding.UTF8.GetBytes(header["Bearer ".Length..].Trim());
        if (!options.ApiKeys.Any(k => CryptographicOperations.FixedTimeEquals(Encoding.UTF8.GetBytes(k), given)))
            throw new ApiError(401, "invalid_api_key", "the API key is not valid");
    }

    static async Task ListModelsAsync(HttpContext ctx)
    {
        var names = await ctx.RequestServices.GetRequiredService<ChatModelHost>().ListAsync(ctx.RequestAborted);
        await ctx.Response.WriteAsJsonAsync(new { Object = "list", Data = names.Select(n => new { Id = n, Object = "model", Created = 0, OwnedBy = "duck" }) }, Json);
    }

    static async Task CompleteAsync(HttpContext ctx)
    {
        var options = ctx.RequestServices.GetRequiredService<ChatApiOptions>();
        var body = await ChatRequests.ReadObjectAsync(ctx, options.MaxRequestBytes);
        var request = new ChatCompletionRequest
        {
            Model = ChatRequests.RequiredString(body, "model"), Messages = ChatRequests.Messages(body), Settings = ChatRequests.Settings(body, options),
        };
        bool stream = ChatRequests.Bool(body, "stream");
        var grain = ctx.RequestServices.GetRequiredService<IGrainFactory>().GetGrain<IChatCompletionGrain>(Guid.NewGuid());
        await ReplyAsync(ctx, grain.CompleteAsync(request), stream, request.Model, "chatcmpl-" + Guid.NewGuid().ToString("N"),
            (text, usage, id, created) => new
            {
                Id = id, Object = "chat.completion", Created = created, Model = request.Model,
                Choices = new[] { new { Index = 0, Message = new { Role = "assistant", Content = text }, FinishReason = usage.FinishReason, Logprobs = (object?)null } },
                Usage = Usage(usage),
            });
    }

    static object Usage(ChatUsage u) => new
    {
        PromptTokens = u.PromptTokens, CompletionTokens = u.CompletionTokens, TotalTokens = u.PromptTokens + u.CompletionTokens,
        PromptTokensDetails = new { CachedTokens = u.CachedTokens },
    };

    /// <summary>
    /// Writes a reply: one JSON object, or SSE chunks (role, text deltas, finish reason, usage, [DONE]). The first
    /// chunk is awaited before anything is written, so errors before the reply starts get their status code.
    /// </summary>
    static async Task ReplyAsync(HttpContext ctx, IAsyncEnumerable<ChatChunk> chunks, bool stream, string model, string id,
        Func<string, ChatUsage, string, long, object> complete)
    {
        long created = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
        await using var e = chunks.GetAsyncEnumerator(ctx.RequestAborted);
        bool more = await e.MoveNextAsync();
        if (!stream)
        {
            var text = new StringBuilder();
            ChatUsage? usage = null;
            for (; more; more = await e.MoveNextAsync()) { text.Append(e.Current.Text); usage ??= e.Current.Usage; }
            await ctx.Response.WriteAsJsonAsync(complete(text.ToString(), usage ?? throw new InvalidOperationException("the reply ended without usage"), id, created), Json);
            return;
        }
        ctx.Response.ContentType = "text/event-stream";
        ctx.Response.Headers.CacheControl = "no-cache";
        object Chunk(object delta, string? finish) => new { Id = id, Object = "chat.completion.chunk", Created = created, Model = model, Choices = new[] { new { Index = 0, Delta = delta, FinishReason = finish } } };
        await SendAsync(ctx, Chunk(new { Role = "assistant", Content = "" }, null));
        try
        {
            for (; more; more = await e.MoveNextAsync())
            {
                if (e.Current.Usage is { } usage)
                {
                    await SendAsync(ctx, Chunk(new { }, usage.FinishReason));
                    await SendAsync(ctx, new { Id = id, Object = "chat.completion.chunk", Created = created, Model = model, Choices = Array.Empty<object>(), Usage = Usage(usage) });
                }
                else if (e.Current.Text.Length > 0) await SendAsync(ctx, Chunk(new { Content = e.Current.Text }, null));
            }
        }
        catch (Exception ex) when (!ctx.RequestAborted.IsCancellationRequested)
        {
            // Headers are gone: report the failure in-band, as OpenAI does.
            var error = ex is ChatException c ? ApiError.From(c) : new ApiError(500, "server_error", $"{ex.GetType().Name}: {ex.Message}");
            await SendAsync(ctx, error.Body);
        }
        await ctx.Response.WriteAsync("data: [DONE]\n\n", ctx.RequestAborted);
    }

    static async Task SendAsync(HttpContext ctx, object payload)
    {
        await ctx.Response.WriteAsync("data: " + JsonSerializer.Serialize(payload, Json) + "\n\n", ctx.RequestAborted);
        await ctx.Response.Body.FlushAsync(ctx.RequestAborted);
    }

    static IChatSessionGrain Session(HttpContext ctx, string id)
    {
        if (!SessionId().IsMatch(id)) throw new ApiError(404, "session_not_found", $"session '{id}' does not exist");
        return ctx.RequestServices.GetRequiredService<IGrainFactory>().GetGrain<IChatSessionGrain>(id);
    }

    static object SessionBody(ChatSessionInfo s) => new
    {
        s.Id, Object = "chat.session", s.Spec.Model, System = s.Spec.SystemPrompt, Created = new DateTimeOffset(s.CreatedUtc, TimeSpan.Zero).ToUnixTimeSeconds(),
        Messages = s.Messages.Select(m => new { m.Role, m.Content }), s.Silo, s.CachedTokens, s.CacheBytes,
    };

    static async Task CreateSessionAsync(HttpContext ctx)
    {
        var options = ctx.RequestServices.GetRequiredService<ChatApiOptions>();
        var body = await ChatRequests.ReadObjectAsync(ctx, options.MaxRequestBytes);
        var spec = new ChatSessionSpec
        {
            Model = ChatRequests.RequiredString(body, "model"), SystemPrompt = ChatRequests.OptionalString(body, "system"), Settings = ChatRequests.Settings(body, options),
        };
        var info = await Session(ctx, "sess_" + Guid.NewGuid().ToString("N")).CreateAsync(spec);
        ctx.Response.StatusCode = 201;
        await ctx.Response.WriteAsJsonAsync(SessionBody(info), Json);
    }

    static async Task GetSessionAsync(HttpContext ctx)
    {
        string id = (string)ctx.GetRouteValue("id")!;
        var info = await Session(ctx, id).GetAsync() ?? throw new ApiError(404, "session_not_found", $"session '{id}' does not exist");
        await ctx.Response.WriteAsJsonAsync(SessionBody(info), Json);
    }

    static async Task DeleteSessionAsync(HttpContext ctx)
    {
        string id = (string)ctx.GetRouteValue("id")!;
        if (!await Session(ctx, id).DeleteAsync()) throw new ApiError(404, "session_not_found", $"session '{id}' does not exist");
        await ctx.Response.WriteAsJsonAsync(new { Id = id, Object = "chat.session.deleted", Deleted = true }, Json);
    }

    static async Task SendMessageAsync(HttpContext ctx)
    {
        var options = ctx.RequestServices.GetRequiredService<ChatApiOptions>();
        string id = (string)ctx.GetRouteValue("id")!;
        var session = Session(ctx, id);
        var body = await ChatRequests.ReadObjectAsync(ctx, options.MaxRequestBytes);
        string content = ChatRequests.RequiredString(body, "content");
        var overrides = ChatRequests.Settings(body, options);
        bool stream = ChatRequests.Bool(body, "stream");
        string model = (await session.GetAsync())?.Spec.Model ?? throw new ApiError(404, "session_not_found", $"session '{id}' does not exist");
        await ReplyAsync(ctx, session.SendAsync(content, overrides), stream, model, "msg-" + Guid.NewGuid().ToString("N"),
            (text, usage, replyId, created) => new
            {
                Id = replyId, Object = "chat.session.reply", Created = created, Model = model, SessionId = id,
                Message = new { Role = "assistant", Content = text }, FinishReason = usage.FinishReason, Usage = Usage(usage),
            });
    }
}
