// The Duck meter's inference instruments are recorded by real chat traffic: a completion through the HTTP API
// (in-process silo) yields a time to first token, a decode rate, a queue depth that returns to zero, and the served
// model's decode passes and decoded tokens (their ratio is the mean batch), its prefilled tokens and busy time; the
// served model runs the batched kernel path.
using System.ClientModel;
using System.Diagnostics.Metrics;
using Microsoft.Extensions.DependencyInjection;
using OpenAI;
using OpenAI.Chat;

namespace Duck.Silo.Tests;

public sealed class InferenceMetricsTests(ChatServer server) : IClassFixture<ChatServer>
{
    [Fact]
    public async Task Completion_RecordsTimeToFirstTokenDecodeRateAndQueueDepth()
    {
        // The meter is process-wide and other test classes run requests on "tiny" at the same time (a listener started
        // between one's +1 and its -1 sees the sum go below 0), so this test serves a copy of the model under a name of
        // its own and counts only the measurements tagged with it.
        string model = $"metrics-{Guid.NewGuid():N}";
        File.Copy(server.ModelPath, Path.Combine(server.ModelsFolder, model + ".gguf"));
        var seen = new Dictionary<string, List<double>>();
        void Record(Instrument i, double v, ReadOnlySpan<KeyValuePair<string, object?>> tags)
        {
            foreach (var tag in tags)
                if (tag.Key == "model" && Equals(tag.Value, model))
                    lock (seen) { if (!seen.TryGetValue(i.Name, out var values)) seen[i.Name] = values = []; values.Add(v); }
        }
        using var listener = new MeterListener();
        listener.InstrumentPublished = (instrument, l) => { if (instrument.Meter.Name == Duck.Grains.DuckMetrics.MeterName && instrument.Name.StartsWith("duck.inference.")) l.EnableMeasurementEvents(instrument); };
        listener.SetMeasurementEventCallback<double>((i, v, tags, _) => Record(i, v, tags));
        listener.SetMeasurementEventCallback<int>((i, v, tags, _) => Record(i, v, tags));
        listener.SetMeasurementEventCallback<long>((i, v, tags, _) => Record(i, v, tags));
        listener.Start();
        var client = new ChatClient(model, new ApiKeyCredential(ChatServer.Key), new OpenAIClientOptions { Endpoint = new Uri(server.BaseUrl, "v1") });

        await client.CompleteChatAsync([new UserChatMessage("Hello metrics")], new ChatCompletionOptions { Temperature = 0, MaxOutputTokenCount = 6 });

        // The request's -1 is added by the grain's stream as it ends, which may come just after the reply reaches the
        // client: wait (bounded) for it; a leak stays at 1.
        double QueueDepth() { lock (seen) return seen.TryGetValue("duck.inference.queue_depth", out var values) ? values.Sum() : double.NaN; }
        var deadline = DateTime.UtcNow.AddSeconds(20);
        while (QueueDepth() != 0 && DateTime.UtcNow < deadline) await Task.Delay(50);
        listener.RecordObservableInstruments();
        lock (seen)
        {
            Assert.Equal([1.0, -1.0], seen["duck.inference.queue_depth"]);
            Assert.Contains(seen["duck.inference.time_to_first_token"], ms => ms > 0);
            Assert.Contains(seen["duck.inference.tokens_per_second"], tps => tps > 0);
            // The served model's batcher: a decode rate means a second token, so at least one decode pass, of one token or more.
            Assert.Contains(seen["duck.inference.decode_passes"], passes => passes >= 1);
            Assert.True(seen["duck.inference.decoded_tokens"].Max() >= seen["duck.inference.decode_passes"].Max());
            // The prompt ran through the batcher too, and its passes took time.
            Assert.Contains(seen["duck.inference.prefilled_tokens"], tokens => tokens >= 1);
            Assert.Contains(seen["duck.inference.busy_time"], seconds => seconds > 0);
        }
    }

    [Fact]
    public async Task ServedModel_RunsTheBatchedKernelPath()
    {
        var client = new ChatClient(ChatServer.Model, new ApiKeyCredential(ChatServer.Key), new OpenAIClientOptions { Endpoint = new Uri(server.BaseUrl, "v1") });
        await client.CompleteChatAsync([new UserChatMessage("Which kernel?")], new ChatCompletionOptions { Temperature = 0, MaxOutputTokenCount = 2 });
        var host = server.App.Services.GetRequiredService<Duck.Grains.Chat.ChatModelHost>();
        var served = Assert.Single(host.Loaded, m => m.Name == ChatServer.Model);
        Assert.Equal(Duck.Inference.Kernels.TernaryMatMul.BestBatched, served.Model.KernelPath);
    }
}
