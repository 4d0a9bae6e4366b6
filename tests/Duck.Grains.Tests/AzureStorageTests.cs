// The cluster on Azure Blob storage, against a real Azurite: grain state and checkpoints of a short job land in one
// blob container (as `duck cluster train --storage azure` with DUCK_STORAGE_CONNECTION_STRING on the silos), and
// the checkpoint holds what `duck eval --checkpoint azure:...` loads: manifest, model and optimizer files.
using System.Text.Json;
using Azure.Storage.Blobs;
using Duck.Core.Checkpoints;
using Duck.Core.Model;
using Duck.Model;
using Duck.Tests.Shared;

namespace Duck.Grains.Tests;

[Collection(AzuriteCollection.Name)]
public class AzureStorageTests(AzuriteFixture azurite)
{
    [Fact]
    public async Task Submit_AzureStorage_CheckpointAndGrainStateLandInTheBlobContainer()
    {
        string container = AzuriteFixture.NewContainerName("cluster");
        string? previous = Environment.GetEnvironmentVariable(CheckpointStores.ConnectionStringVariable);
        Environment.SetEnvironmentVariable(CheckpointStores.ConnectionStringVariable, azurite.ConnectionString);
        try
        {
            await using var cluster = await TestClusters.StartAsync(2, stateStore: $"azure:{container}/state");
            var spec = TestData.Job(TestData.PrepareFolder(), steps: 6, GradientCompression.Ternary) with
                { CheckpointStore = $"azure:{container}/checkpoints", CheckpointEvery = 3 };

            await cluster.Client.GetGrain<ITrainingJobGrain>("azure").SubmitAsync(spec);
            var done = await TestClusters.WaitAsync(cluster.Client, "azure", TimeSpan.FromSeconds(90));

            Assert.True(done.State == JobState.Completed, done.Reason);
            var blobs = new List<string>();
            await foreach (var blob in new BlobContainerClient(azurite.ConnectionString, container).GetBlobsAsync())
                blobs.Add(blob.Name);
            Assert.Contains(blobs, b => b.StartsWith("state/grains/job/"));
            Assert.Contains(blobs, b => b.StartsWith("state/grains/ps/"));
            var latest = await new CheckpointManager(CheckpointStores.Open(spec.CheckpointStore)).LoadLatestAsync();
            Assert.Equal(6, latest!.Manifest.Step);
            Assert.Contains(blobs, b => b == $"checkpoints/{latest.Name}/{Trainer.ModelFile}");
            Assert.Contains(blobs, b => b == $"checkpoints/{latest.Name}/{Trainer.OptimizerFile}");
            // What `duck eval` does with it: the model from the manifest's config, the weights, a finite validation loss.
            using var model = new DuckTransformer(latest.Manifest.Model.Deserialize<ModelConfig>()!.Validate());
            ModelWeights.Load(model, Safetensors.Read(latest.Files[Trainer.ModelFile], "model").Tensors, "model");
            double loss = Trainer.Evaluate(model, new ShardValidation(JobData.OpenValidationShard(spec.DataFolder)), spec.BatchSize, spec.SequenceLength, spec.EvalBatches);
            Assert.True(Math.Abs(loss - done.ValLoss!.Value) < 1e-3, $"eval {loss}, job {done.ValLoss}");
        }
        finally
        {
            Environment.SetEnvironmentVariable(CheckpointStores.ConnectionStringVariable, previous);
        }
    }
}
