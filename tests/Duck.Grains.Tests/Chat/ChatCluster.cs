// Test scaffolding for the chat grains: a models folder holding tiny random models ("tiny", context 64, and
// "tiny-256", context 256, for conversations that outgrow a window) and in-process clusters whose silos serve
// them, wired like src/Silo, with fast failure detection.
using Duck.Grains.Chat;
using Duck.Inference.Tests;
using Orleans.Configuration;
using Orleans.Hosting;
using Orleans.TestingHost;

namespace Duck.Grains.Tests.Chat;

static class ChatCluster
{
    public const string Model = "tiny";
    public const string LongModel = "tiny-256";

    /// <summary>A fresh folder with tiny.gguf and tiny-256.gguf (random weights, seed 5).</summary>
    public static string ModelsFolder()
    {
        string folder = Directory.CreateTempSubdirectory("duck-chat-models-").FullName;
        File.Move(TestModels.WriteGguf(TestModels.Tiny(), seed: 5), Path.Combine(folder, Model + ".gguf"));
        File.Move(TestModels.WriteGguf(TestModels.Tiny() with { ContextLength = 256 }, seed: 5), Path.Combine(folder, LongModel + ".gguf"));
        return folder;
    }

    public static Task<InProcessTestCluster> StartAsync(int silos, string models, string? state = null) =>
        TestClusters.StartAsync(silos, state ?? Directory.CreateTempSubdirectory("duck-chat-state-").FullName,
            silo => silo.Services.AddDuckChatServing(new ChatServingOptions { Models = models, Threads = 1, DefaultMaxTokens = 8 }));

    /// <summary>The reply's text and its usage.</summary>
    public static async Task<(string Text, ChatUsage Usage)> ReadAsync(IAsyncEnumerable<ChatChunk> chunks)
    {
        var text = new System.Text.StringBuilder();
        ChatUsage? usage = null;
        await foreach (var c in chunks)
        {
            text.Append(c.Text);
            if (c.Usage is not null) usage = c.Usage;
        }
        return (text.ToString(), usage ?? throw new InvalidOperationException("the stream ended without usage"));
    }
}
