// Chat serving on Azure Blob storage, against a real Azurite: the model is deployed to a blob container (as
// `duck cluster deploy --models azure:...` does) and loaded from it, sessions persist there, and a session whose
// silo is killed continues on the other silo with its history read back from the blobs.
using Azure.Storage.Blobs;
using Duck.Core.Checkpoints;
using Duck.Tests.Shared;

namespace Duck.Grains.Tests.Chat;

[Collection(AzuriteCollection.Name)]
public class ChatAzureTests(AzuriteFixture azurite)
{
    [Fact]
    public async Task KillSilo_SessionOnAzureStorage_ContinuesWithItsHistory()
    {
        string container = AzuriteFixture.NewContainerName("chat");
        string? previous = Environment.GetEnvironmentVariable(CheckpointStores.ConnectionStringVariable);
        Environment.SetEnvironmentVariable(CheckpointStores.ConnectionStringVariable, azurite.ConnectionString);
        try
        {
            string local = Path.Combine(ChatCluster.ModelsFolder(), ChatCluster.Model + ".gguf");
            await CheckpointStores.Open($"azure:{container}/models").WriteAsync(ChatCluster.Model + ".gguf", await File.ReadAllBytesAsync(local));
            await using var cluster = await ChatCluster.StartAsync(2, $"azure:{container}/models", $"azure:{container}/state");
            var session = cluster.Client.GetGrain<IChatSessionGrain>("azure-session");
            await session.CreateAsync(new ChatSessionSpec { Model = ChatCluster.Model, Settings = new() { Temperature = 0, MaxTokens = 6 } });
            var (reply, _) = await ChatCluster.ReadAsync(session.SendAsync("Hi"));
            string silo = (await session.GetAsync())!.Silo;

            await cluster.KillSiloAsync(cluster.Silos.Single(s => s.SiloAddress.ToString() == silo));
            var deadline = DateTime.UtcNow.AddSeconds(30);
            while (true)
            {
                try { await ChatCluster.ReadAsync(session.SendAsync("Again")); break; }
                catch (Exception) when (DateTime.UtcNow < deadline) { await Task.Delay(250); }
            }
            var info = await session.GetAsync();
            var blobs = new List<string>();
            await foreach (var blob in new BlobContainerClient(azurite.ConnectionString, container).GetBlobsAsync()) blobs.Add(blob.Name);

            Assert.NotEqual(silo, info!.Silo);
            Assert.Equal(["Hi", reply.Trim(), "Again"], info.Messages.Take(3).Select(m => m.Content));
            Assert.Contains(blobs, b => b.StartsWith("state/grains/chat-session/"));
        }
        finally
        {
            Environment.SetEnvironmentVariable(CheckpointStores.ConnectionStringVariable, previous);
        }
    }
}
