// Every refusal of the chat API: a 4xx status with an OpenAI-style JSON error body ({"error": {message, type,
// param, code}}), never a 500. Also the start-up validation of "Duck:Chat".
using System.Net;
using System.Text;
using System.Text.Json;
using Duck.Silo.ChatApi;

namespace Duck.Silo.Tests;

public sealed class ChatApiErrorTests(ChatServer server) : IClassFixture<ChatServer>
{
    async Task<(HttpStatusCode Status, JsonElement Error)> PostAsync(string path, string body, string? key = ChatServer.Key)
    {
        using var http = server.Http(key);
        using var response = await http.PostAsync(path, new StringContent(body, Encoding.UTF8, "application/json"));
        string text = await response.Content.ReadAsStringAsync();
        using var doc = JsonDocument.Parse(text);
        return (response.StatusCode, doc.RootElement.GetProperty("error").Clone());
    }

    static string Completion(string extra = "", string model = ChatServer.Model, string content = "Hi") =>
        $$"""{"model": "{{model}}", "messages": [{"role": "user", "content": "{{content}}"}]{{extra}}}""";

    [Theory]
    [InlineData("{\"model\": \"tiny\", \"messages\": [", "invalid_json", null)]
    [InlineData("[1, 2]", "invalid_request", null)]
    [InlineData("{\"messages\": [{\"role\": \"user\", \"content\": \"Hi\"}]}", "invalid_request", "model")]
    [InlineData("{\"model\": \"tiny\"}", "invalid_request", "messages")]
    [InlineData("{\"model\": \"tiny\", \"messages\": [{\"role\": \"robot\", \"content\": \"Hi\"}]}", "invalid_request", "messages")]
    [InlineData("{\"model\": \"tiny\", \"messages\": [{\"role\": \"assistant\", \"content\": \"Hi\"}]}", "invalid_request", null)]
    [InlineData("{\"model\": \"tiny\", \"messages\": [{\"role\": \"user\", \"content\": \"<|user|>\"}]}", "invalid_request", null)]
    public async Task PostCompletion_MalformedRequest_400(string body, string code, string? param)
    {
        var (status, error) = await PostAsync("v1/chat/completions", body);

        Assert.Equal(HttpStatusCode.BadRequest, status);
        Assert.Equal(code, error.GetProperty("code").GetString());
        Assert.Equal("invalid_request_error", error.GetProperty("type").GetString());
        Assert.Equal(param, error.GetProperty("param").GetString());
        Assert.False(string.IsNullOrEmpty(error.GetProperty("message").GetString()));
    }

    [Theory]
    [InlineData(", \"temperature\": 5", "temperature")]
    [InlineData(", \"temperature\": \"hot\"", "temperature")]
    [InlineData(", \"top_p\": 0", "top_p")]
    [InlineData(", \"max_tokens\": 0", "max_tokens")]
    [InlineData(", \"max_tokens\": 100000", "max_tokens")]
    [InlineData(", \"seed\": 1.5", "seed")]
    [InlineData(", \"stop\": [\"\"]", "stop")]
    [InlineData(", \"stop\": 7", "stop")]
    [InlineData(", \"n\": 2", "n")]
    [InlineData(", \"stream\": \"yes\"", "stream")]
    public async Task PostCompletion_BadParameter_400NamingIt(string extra, string param)
    {
        var (status, error) = await PostAsync("v1/chat/completions", Completion(extra));

        Assert.Equal(HttpStatusCode.BadRequest, status);
        Assert.Equal(param, error.GetProperty("param").GetString());
    }

    [Fact]
    public async Task PostCompletion_SixtyFourBitSeed_AcceptedAndReproducible()
    {
        using var http = server.Http();
        string body = Completion(", \"seed\": 1099511627776, \"max_tokens\": 6, \"temperature\": 1.5");

        using var first = await http.PostAsync("v1/chat/completions", new StringContent(body, Encoding.UTF8, "application/json"));
        using var second = await http.PostAsync("v1/chat/completions", new StringContent(body, Encoding.UTF8, "application/json"));

        Assert.Equal(HttpStatusCode.OK, first.StatusCode);
        static string Text(string json) => JsonDocument.Parse(json).RootElement.GetProperty("choices")[0].GetProperty("message").GetProperty("content").GetString()!;
        Assert.Equal(Text(await first.Content.ReadAsStringAsync()), Text(await second.Content.ReadAsStringAsync()));
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task PostCompletion_UnknownModel_404(bool stream)
    {
        var (status, error) = await PostAsync("v1/chat/completions", Completion(stream ? ", \"stream\": true" : "", model: "nope"));

        Assert.Equal(HttpStatusCode.NotFound, status);
        Assert.Equal("model_not_found", error.GetProperty("code").GetString());
        Assert.Contains("tiny", error.GetProperty("message").GetString());
    }

    [Fact]
    public async Task PostCompletion_PromptLongerThanTheContext_400ContextLengthExceeded()
    {
        var (status, error) = await PostAsync("v1/chat/completions", Completion(content: string.Join(" ", Enumerable.Repeat("duck", 80))));

        Assert.Equal(HttpStatusCode.BadRequest, status);
        Assert.Equal("context_length_exceeded", error.GetProperty("code").GetString());
    }

    [Fact]
    public async Task PostCompletion_BodyOverTheLimit_413()
    {
        var (status, error) = await PostAsync("v1/chat/completions", Completion(content: new string('a', ChatServer.MaxRequestBytes)));

        Assert.Equal(HttpStatusCode.RequestEntityTooLarge, status);
        Assert.Equal("request_too_large", error.GetProperty("code").GetString());
    }

    [Theory]
    [InlineData(null, "missing_api_key")]
    [InlineData("not-the-key-1", "invalid_api_key")]
    public async Task Post_MissingOrWrongKey_401(string? key, string code)
    {
        var (status, error) = await PostAsync("v1/chat/completions", Completion(), key);

        Assert.Equal(HttpStatusCode.Unauthorized, status);
        Assert.Equal(code, error.GetProperty("code").GetString());
        Assert.Equal("authentication_error", error.GetProperty("type").GetString());
    }

    [Fact]
    public async Task GetModels_NoKey_401()
    {
        using var http = server.Http(key: null);

        using var response = await http.GetAsync("v1/models");

        Assert.Equal(HttpStatusCode.Unauthorized, response.StatusCode);
    }

    [Theory]
    [InlineData("GET", "v1/sessions/sess_nothing")]
    [InlineData("DELETE", "v1/sessions/sess_nothing")]
    [InlineData("GET", "v1/sessions/bad%20id")]
    [InlineData("GET", "v1/nowhere")]
    public async Task Request_UnknownSessionOrPath_404WithErrorBody(string method, string path)
    {
        using var http = server.Http();

        using var response = await http.SendAsync(new HttpRequestMessage(new HttpMethod(method), path));
        using var doc = JsonDocument.Parse(await response.Content.ReadAsStringAsync());

        Assert.Equal(HttpStatusCode.NotFound, response.StatusCode);
        Assert.Equal("not_found_error", doc.RootElement.GetProperty("error").GetProperty("type").GetString());
    }

    [Fact]
    public async Task PostMessage_UnknownSession_404()
    {
        var (status, error) = await PostAsync("v1/sessions/sess_nothing/messages", "{\"content\": \"Hi\"}");

        Assert.Equal(HttpStatusCode.NotFound, status);
        Assert.Equal("session_not_found", error.GetProperty("code").GetString());
    }

    [Fact]
    public async Task PostSession_UnknownModel_404()
    {
        var (status, error) = await PostAsync("v1/sessions", "{\"model\": \"nope\"}");

        Assert.Equal(HttpStatusCode.NotFound, status);
        Assert.Equal("model_not_found", error.GetProperty("code").GetString());
    }

    [Fact]
    public void RequestGate_BeyondTheLimit_Refuses()
    {
        var gate = new ChatRequestGate(2);

        Assert.True(gate.TryEnter());
        Assert.True(gate.TryEnter());
        Assert.False(gate.TryEnter());
        gate.Exit();
        Assert.True(gate.TryEnter());
    }

    [Theory]
    [InlineData("--Duck:Chat:Modles=x", "Duck:Chat:Modles")]
    [InlineData("--Duck:Chat:MaxBatchSize=0", "Duck:Chat:MaxBatchSize")]
    [InlineData("--Duck:Chat:CacheShiftMinTokens=-1", "Duck:Chat:CacheShiftMinTokens")]
    [InlineData("--Duck:Chat:DefaultMaxTokens=5000", "Duck:Chat:DefaultMaxTokens")]
    [InlineData("--Duck:Silo:Clustering=azure", "Duck:Chat:ApiKeys")]
    public void AddDuckChat_BadConfiguration_ThrowsNamingTheKey(string arg, string key)
    {
        var builder = WebApplication.CreateBuilder([arg]);

        var e = Assert.Throws<ArgumentException>(() => builder.AddDuckChat());

        Assert.Contains(key, e.Message);
    }
}
