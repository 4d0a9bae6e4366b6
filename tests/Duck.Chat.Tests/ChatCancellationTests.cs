// Cancellation end to end, through real Kestrel on loopback and the chat grains: a caller that goes away mid-reply
// stops the generation on the server (the batcher's counters stop), and a new session message supersedes a reply
// still being generated (the old reply ends with 409 session_busy and is not stored). Replies are long (thousands of
// tokens, see LongReplyChatServer) so that an unstopped one would still be running; waits poll with generous bounds.
using System.Net;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;

namespace Duck.Silo.Tests;

public sealed class ChatCancellationTests(LongReplyChatServer server) : IClassFixture<LongReplyChatServer>
{
    const int MaxTokens = LongReplyChatServer.MaxTokens;
    static readonly TimeSpan Patience = TimeSpan.FromSeconds(30);

    /// <summary>
    /// A client whose disposed responses close their connection, as a caller that goes away does; by default HttpClient
    /// keeps reading up to 1 MiB of an unfinished response to reuse the connection, thousands of chunks here.
    /// </summary>
    HttpClient Caller()
    {
        var client = new HttpClient(new SocketsHttpHandler { MaxResponseDrainSize = 0 }) { BaseAddress = server.BaseUrl };
        client.DefaultRequestHeaders.Authorization = new("Bearer", ChatServer.Key);
        return client;
    }

    static StringContent Json(string body) => new(body, Encoding.UTF8, "application/json");

    static string LongCompletion(bool stream) =>
        $$"""{"model": "tiny", "messages": [{"role": "user", "content": "Tell me everything"}], "temperature": 0, "max_tokens": {{MaxTokens}}, "stream": {{(stream ? "true" : "false")}}}""";

    /// <summary>Sends a streamed request and returns once its first text delta has arrived, with the unread rest.</summary>
    static async Task<(HttpResponseMessage Response, StreamReader Events)> StartStreamAsync(HttpClient http, string path, string body, CancellationToken ct)
    {
        var response = await http.SendAsync(new HttpRequestMessage(HttpMethod.Post, path) { Content = Json(body) }, HttpCompletionOption.ResponseHeadersRead, ct);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var events = new StreamReader(await response.Content.ReadAsStreamAsync(ct));
        while (await events.ReadLineAsync(ct) is { } line)
        {
            if (!line.StartsWith("data: {")) continue;
            using var doc = JsonDocument.Parse(line[6..]);
            if (doc.RootElement.GetProperty("choices").EnumerateArray().Any(c => c.GetProperty("delta").TryGetProperty("content", out var t) && t.GetString() is { Length: > 0 }))
                return (response, events);
        }
        throw new InvalidOperationException("the stream ended before its first text");
    }

    async Task WaitUntilAsync(Func<bool> condition, string what)
    {
        var clock = System.Diagnostics.Stopwatch.StartNew();
        while (!condition())
        {
            if (clock.Elapsed > Patience) Assert.Fail($"not within {Patience.TotalSeconds} s: {what} (batcher: {server.ActiveGenerations} generations, {server.DecodedTokens} tokens decoded)");
            await Task.Delay(50);
        }
    }

    /// <summary>Aborts the request after its first text and asserts that the server stops generating its reply.</summary>
    async Task AbortAfterFirstTextAsync(HttpClient http, string path, string body)
    {
        await WaitUntilAsync(() => server.ActiveGenerations == 0, "the batcher is idle before the request");
        long before = server.DecodedTokens;
        using var cts = new CancellationTokenSource();
        var (response, events) = await StartStreamAsync(http, path, body, cts.Token);

        cts.Cancel();
        events.Dispose();
        response.Dispose();

        await WaitUntilAsync(() => server.ActiveGenerations == 0, "the aborted reply's generation ends");
        long decoded = server.DecodedTokens - before;
        Assert.True(decoded < MaxTokens - 1, $"the generation ran to the end ({decoded} tokens decoded) instead of stopping when its caller left");
    }

    [Fact]
    public async Task PostCompletion_LongReplyNotAborted_RunsToMaxTokens()
    {
        using var http = server.Http();

        using var response = await http.PostAsync("v1/chat/completions", Json(LongCompletion(stream: false)));
        var body = await response.Content.ReadFromJsonAsync<JsonElement>();

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal(MaxTokens, body.GetProperty("usage").GetProperty("completion_tokens").GetInt32());
        Assert.Equal("length", body.GetProperty("choices")[0].GetProperty("finish_reason").GetString());
    }

    [Fact]
    public async Task PostCompletion_StreamAbortedAfterFirstChunk_GenerationStops()
    {
        using var http = Caller();

        await AbortAfterFirstTextAsync(http, "v1/chat/completions", LongCompletion(stream: true));
    }

    [Fact]
    public async Task SessionMessage_StreamAbortedAfterFirstChunk_GenerationStopsNothingStoredNextTurnWorks()
    {
        using var http = Caller();
        string id = await CreateSessionAsync(http);

        await AbortAfterFirstTextAsync(http, $"v1/sessions/{id}/messages", $$"""{"content": "Tell me everything", "stream": true}""");
        var afterAbort = await HistoryAsync(http, id);
        using var next = await http.PostAsync($"v1/sessions/{id}/messages", Json("""{"content": "Short then", "max_tokens": 4}"""));
        var reply = await next.Content.ReadFromJsonAsync<JsonElement>();

        Assert.Empty(afterAbort);
        Assert.Equal(HttpStatusCode.OK, next.StatusCode);
        Assert.Equal([("user", "Short then"), ("assistant", reply.GetProperty("message").GetProperty("content").GetString()!.Trim())], await HistoryAsync(http, id));
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task SessionMessage_NewMessageWhileReplying_OldReply409NotStoredNewReplyStored(bool stream)
    {
        using var http = server.Http();
        string id = await CreateSessionAsync(http);
        await WaitUntilAsync(() => server.ActiveGenerations == 0, "the batcher is idle before the request");
        string first = $$"""{"content": "Tell me everything", "stream": {{(stream ? "true" : "false")}}}""";
        HttpResponseMessage? oldStream = null;
        StreamReader? oldEvents = null;
        Task<HttpResponseMessage>? oldJson = null;
        if (stream) (oldStream, oldEvents) = await StartStreamAsync(http, $"v1/sessions/{id}/messages", first, CancellationToken.None);
        else
        {
            oldJson = http.PostAsync($"v1/sessions/{id}/messages", Json(first));
            await WaitUntilAsync(() => server.ActiveGenerations > 0, "the first reply is being generated");
        }

        using var second = await http.PostAsync($"v1/sessions/{id}/messages", Json("""{"content": "Never mind", "max_tokens": 4}"""));
        var secondReply = await second.Content.ReadFromJsonAsync<JsonElement>();
        JsonElement oldError;
        if (stream)
        {
            using var s = oldStream!;
            var rest = (await oldEvents!.ReadToEndAsync()).Split('\n').Where(l => l.StartsWith("data: ")).Select(l => l[6..]).ToList();
            Assert.Equal("[DONE]", rest[^1]);
            oldError = JsonDocument.Parse(rest[^2]).RootElement.GetProperty("error");
        }
        else
        {
            using var old = await oldJson!;
            Assert.Equal(HttpStatusCode.Conflict, old.StatusCode);
            oldError = (await old.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("error");
        }

        Assert.Equal(HttpStatusCode.OK, second.StatusCode);
        Assert.Equal("session_busy", oldError.GetProperty("code").GetString());
        Assert.Equal([("user", "Never mind"), ("assistant", secondReply.GetProperty("message").GetProperty("content").GetString()!.Trim())], await HistoryAsync(http, id));
        await WaitUntilAsync(() => server.ActiveGenerations == 0, "the superseded reply's generation ends");
    }

    static async Task<string> CreateSessionAsync(HttpClient http)
    {
        using var created = await http.PostAsync("v1/sessions", Json($$"""{"model": "tiny", "temperature": 0, "max_tokens": {{MaxTokens}}}"""));
        Assert.Equal(HttpStatusCode.Created, created.StatusCode);
        return (await created.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("id").GetString()!;
    }

    static async Task<(string?, string?)[]> HistoryAsync(HttpClient http, string id) =>
        (await http.GetFromJsonAsync<JsonElement>($"v1/sessions/{id}")).GetProperty("messages").EnumerateArray()
            .Select(m => (m.GetProperty("role").GetString(), m.GetProperty("content").GetString())).ToArray();
}
