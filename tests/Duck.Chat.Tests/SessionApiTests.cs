// The Duck Chat session API over HTTP: create a session, post messages (JSON and streamed), read the history with
// the replies as they were sent, reuse the KV cache on the second turn, delete.
using System.Net;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;

namespace Duck.Silo.Tests;

public sealed class SessionApiTests(ChatServer server) : IClassFixture<ChatServer>
{
    static StringContent Json(string body) => new(body, Encoding.UTF8, "application/json");

    /// <summary>The text deltas and the usage of an SSE reply; asserts it ends with [DONE].</summary>
    static async Task<(string Text, JsonElement Usage)> ReadEventsAsync(HttpResponseMessage response)
    {
        Assert.Equal("text/event-stream", response.Content.Headers.ContentType?.MediaType);
        var lines = (await response.Content.ReadAsStringAsync()).Split('\n').Where(l => l.StartsWith("data: ")).Select(l => l[6..]).ToList();
        Assert.Equal("[DONE]", lines[^1]);
        var text = new StringBuilder();
        JsonElement usage = default;
        foreach (var line in lines.SkipLast(1))
        {
            using var doc = JsonDocument.Parse(line);
            var root = doc.RootElement;
            if (root.TryGetProperty("usage", out var u)) usage = u.Clone();
            foreach (var choice in root.GetProperty("choices").EnumerateArray())
                if (choice.GetProperty("delta").TryGetProperty("content", out var c)) text.Append(c.GetString());
        }
        return (text.ToString(), usage);
    }

    [Fact]
    public async Task Session_TwoTurnsThenDelete_HistoryKeptCacheReusedThenGone()
    {
        using var http = server.Http();
        using var created = await http.PostAsync("v1/sessions", Json("""{"model": "tiny", "system": "You are Duck.", "temperature": 0, "max_tokens": 6}"""));
        Assert.Equal(HttpStatusCode.Created, created.StatusCode);
        string id = (await created.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("id").GetString()!;

        var first = await (await http.PostAsync($"v1/sessions/{id}/messages", Json("""{"content": "Hi"}"""))).Content.ReadFromJsonAsync<JsonElement>();
        using var streamed = await http.PostAsync($"v1/sessions/{id}/messages", Json("""{"content": "Go on", "stream": true}"""));
        var (secondText, secondUsage) = await ReadEventsAsync(streamed);
        var session = await http.GetFromJsonAsync<JsonElement>($"v1/sessions/{id}");
        using var deleted = await http.DeleteAsync($"v1/sessions/{id}");
        using var after = await http.GetAsync($"v1/sessions/{id}");

        string firstText = first.GetProperty("message").GetProperty("content").GetString()!;
        var messages = session.GetProperty("messages").EnumerateArray().Select(m => (m.GetProperty("role").GetString(), m.GetProperty("content").GetString())).ToArray();
        Assert.Equal([("user", "Hi"), ("assistant", firstText.Trim()), ("user", "Go on"), ("assistant", secondText.Trim())], messages);
        int firstPrompt = first.GetProperty("usage").GetProperty("prompt_tokens").GetInt32();
        Assert.True(secondUsage.GetProperty("prompt_tokens_details").GetProperty("cached_tokens").GetInt32() >= firstPrompt);
        Assert.Equal("tiny", session.GetProperty("model").GetString());
        Assert.Equal(HttpStatusCode.OK, deleted.StatusCode);
        Assert.Equal(HttpStatusCode.NotFound, after.StatusCode);
    }

    [Fact]
    public async Task PostCompletion_Stream_ChunksInOpenAiFormatEndingWithDone()
    {
        using var http = server.Http();

        using var response = await http.PostAsync("v1/chat/completions", Json("""{"model": "tiny", "messages": [{"role": "user", "content": "Hi"}], "stream": true, "max_tokens": 4}"""));
        var (_, usage) = await ReadEventsAsync(response);

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.InRange(usage.GetProperty("completion_tokens").GetInt32(), 1, 4);
    }
}
