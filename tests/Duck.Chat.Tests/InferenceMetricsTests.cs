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
        var seen = new System.Collections.Concurrent.ConcurrentDictionary<string, List<double>>();
        using var listener = new MeterListener();
        listener.InstrumentPublished = (instrument, l) => { if (instrument.Meter.Name == Duck.Grains.DuckMetrics.MeterName && instrument.Name.StartsWith("duck.inference.")) l.EnableMeasurementEvents(instrument); };
        listener.SetMeasurementEventCallback<double>((i, v, _, _) => { lock (seen) seen.GetOrAdd(i.Name, _ => []).Add(v); });
        listener.SetMeasurementEventCallback<int>((i, v, _, _) => { lock (seen) seen.GetOrAdd(i.Name, _ => []).Add(v); });
        listener.SetMeasurementEventCallback<long>((i, v, _, _) => { lock (seen) seen.GetOrAdd(i.Name, _ => []).Add(v); });
        listener.Start();
        var client = new ChatClient(ChatServer.Model, new ApiKeyCredential(ChatServer.Key), new OpenAIClientOptions { Endpoint = new Uri(server.BaseUrl, "v1") });

        await client.CompleteChatAsync([new UserChatMessage("Hello metrics")], new ChatCompletionOptions { Temperature = 0, MaxOutputTokenCount = 6 });

        // The meter is process-wide and other test classes run requests at the same time: their +1 may be seen before
        // their -1, so wait (bounded) for every request in flight to leave the queue; a leak of this one stays above 0.
        double QueueDepth() { lock (seen) return seen["duck.inference.queue_depth"].Sum(); }
        var deadline = DateTime.UtcNow.AddSeconds(20);
        while (QueueDepth() != 0 && DateTime.UtcNow < deadline) await Task.Delay(50);
        listener.RecordObservableInstruments();
        lock (seen)
        {
            Assert.Contains(seen["duck.inference.time_to_first_token"], ms => ms > 0);
            Assert.Contains(seen["duck.inference.tokens_per_second"], tps => tps > 0);
            // The served model's batcher: a decode rate means a second token, so at least one decode pass, of one token or more.
            Assert.Contains(seen["duck.inference.decode_passes"], passes => passes >= 1);
            Assert.True(seen["duck.inference.decoded_tokens"].Max() >= seen["duck.inference.decode_passes"].Max());
            // The prompt ran through the batcher too, and its passes took time.
            Assert.Contains(seen["duck.inference.prefilled_tokens"], tokens => tokens >= 1);
            Assert.Contains(seen["duck.inference.busy_time"], seconds => seconds > 0);
        }
        Assert.Equal(0, QueueDepth());
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
