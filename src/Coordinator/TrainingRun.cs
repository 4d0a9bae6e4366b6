// Wiring shared by `duck train`, `duck eval` and `duck bench train`: opening prepared data, locating a run's
// checkpoints, and the run folder's metrics log. Keeps the command handlers short.
using System.Text.Json;
using System.Text.Json.Nodes;
using Duck.Core.Checkpoints;
using Duck.Core.Data;
using Duck.Core.Model;
using Duck.Model;

namespace Duck.Coordinator;

public static class TrainingRun
{
    public const string MetricsFile = "metrics.jsonl";
    public const string ChartFile = "loss.svg";
    public const string CheckpointFolder = "checkpoints";

    /// <summary>The prepared data set in <paramref name="folder"/>, with a message saying how to make it when absent.</summary>
    public static (DataManifest Manifest, string Folder) OpenData(string folder)
    {
        if (!File.Exists(Path.Combine(folder, DataManifest.FileName)))
            throw new UserErrorException($"no prepared data in '{folder}' ({DataManifest.FileName} missing); run `duck data prepare --out {folder}` first");
        return (DataManifest.Read(folder), folder);
    }

    public static TokenShard OpenTrainShard(DataManifest manifest, string folder, int shard = 0)
    {
        if (shard < 0 || shard >= manifest.Shards.Count)
            throw new UserErrorException($"data in '{folder}' has {manifest.Shards.Count} training shard(s); shard {shard} does not exist");
        return TokenShard.Open(Path.Combine(folder, manifest.Shards[shard].File));
    }

    public static TokenShard OpenValidationShard(DataManifest manifest, string folder) =>
        TokenShard.Open(Path.Combine(folder, manifest.Validation.File));

    /// <summary>A checkpoint folder, a run folder (its newest checkpoint) or "azure:container[/prefix]", verified.</summary>
    public static Task<LoadedCheckpoint> LoadCheckpointAsync(string path, CancellationToken ct) => CheckpointLocator.LoadAsync(path, ct);

    /// <summary>Builds the model a checkpoint describes and loads its weights.</summary>
    public static DuckTransformer ModelFrom(LoadedCheckpoint checkpoint)
    {
        var config = checkpoint.Manifest.Model.Deserialize<ModelConfig>()
                     ?? throw new InvalidDataException($"{checkpoint.Name}: manifest has no model config");
        var model = new DuckTransformer(config.Validate());
        var weights = Safetensors.Read(checkpoint.Files[Trainer.ModelFile], $"{checkpoint.Name}/{Trainer.ModelFile}");
        ModelWeights.Load(model, weights.Tensors, $"{checkpoint.Name}/{Trainer.ModelFile}");
        return model;
    }

    /// <summary>Appends one event to the run's metrics log (JSON lines, the same objects `--json` prints).</summary>
    public static void AppendMetric(string runFolder, object line) =>
        File.AppendAllText(Path.Combine(runFolder, MetricsFile), JsonSerializer.Serialize(line, Cli.JsonLine) + "\n");

    /// <summary>Train and validation curves from a run's metrics log.</summary>
    public static (List<(double, double)> Train, List<(double, double)> Val) ReadCurves(string runFolder)
    {
        string file = Path.Combine(runFolder, MetricsFile);
        if (!File.Exists(file)) throw new UserErrorException($"'{runFolder}' is not a run folder ({MetricsFile} missing)");
        var train = new List<(double, double)>();
        var val = new List<(double, double)>();
        foreach (var line in File.ReadLines(file))
        {
            if (string.IsNullOrWhiteSpace(line)) continue;
            var o = JsonNode.Parse(line)!.AsObject();
            double step = o["step"]!.GetValue<double>();
            if (o["loss"] is { } loss) train.Add((step, loss.GetValue<double>()));
            if (o["val_loss"] is { } v) val.Add((step, v.GetValue<double>()));
        }
        return (train, val);
    }

    /// <summary>Writes the loss chart of the given runs (train solid, validation dashed) to <paramref name="outFile"/>.</summary>
    public static void WriteChart(string outFile, IReadOnlyList<(string Name, string Folder)> runs)
    {
        var series = new List<ChartSeries>();
        foreach (var (name, folder) in runs)
        {
            var (train, val) = ReadCurves(folder);
            series.Add(new ChartSeries($"{name} train", Smooth(train)));
            series.Add(new ChartSeries($"{name} val", val, Dashed: true));
        }
        File.WriteAllText(outFile, LossChart.Render("Duck training loss", series));
    }

    /// <summary>A running mean over about 2% of the points, so the train curve is readable.</summary>
    static List<(double, double)> Smooth(List<(double X, double Y)> points)
    {
        int w = Math.Max(1, points.Count / 50);
        var result = new List<(double, double)>(points.Count);
        double sum = 0;
        for (int i = 0; i < points.Count; i++)
        {
            sum += points[i].Y;
            if (i >= w) sum -= points[i - w].Y;
            result.Add((points[i].X, sum / Math.Min(i + 1, w)));
        }
        return result;
    }
}
