// `duck data prepare`: turns the Brown corpus (or the user's .txt files) into GPT-2 token shards for training, one per
// worker, plus a validation shard and data.json. Wiring only: the work is Duck.Core.Data.DataPreparer.
using System.CommandLine;
using System.Diagnostics;
using Duck.Core.Data;

namespace Duck.Coordinator;

public static class DataCommands
{
    public static void Register(RootCommand root)
    {
        var data = new Command("data", "Prepare training data.");
        data.Subcommands.Add(PrepareCommand());
        root.Subcommands.Add(data);
    }

    static Command PrepareCommand()
    {
        var defaults = new DataPrepareOptions();
        var outOption = new Option<string>("--out") { Description = "Output folder for the shards and data.json.", DefaultValueFactory = _ => defaults.OutputFolder };
        var inputOption = new Option<string?>("--input") { Description = "Your own .txt file or folder (all *.txt, one document per file) instead of the Brown corpus." };
        var shardsOption = new Option<int>("--shards") { Description = "Number of training shards, one per worker.", DefaultValueFactory = _ => defaults.Shards };
        var valOption = new Option<double>("--val-fraction") { Description = "Fraction of documents held out for validation (at least one).", DefaultValueFactory = _ => defaults.ValFraction };
        var seedOption = new Option<ulong>("--seed") { Description = "Seed of the document-level train/validation split.", DefaultValueFactory = _ => defaults.Seed };
        var jsonOption = new Option<bool>("--json") { Description = "Print one JSON object instead of a summary." };
        var command = new Command("prepare", "Tokenize a corpus (GPT-2 BPE) into training shards and a validation shard.");
        foreach (Option o in new Option[] { outOption, inputOption, shardsOption, valOption, seedOption, jsonOption }) command.Options.Add(o);

        command.SetAction((ParseResult pr, CancellationToken ct) =>
        {
            var options = new DataPrepareOptions
            {
                OutputFolder = pr.GetValue(outOption) ?? defaults.OutputFolder,
                InputPath = pr.GetValue(inputOption),
                Shards = pr.GetValue(shardsOption),
                ValFraction = pr.GetValue(valOption),
                Seed = pr.GetValue(seedOption),
            };
            bool json = pr.GetValue(jsonOption);
            Check(options);
            var clock = Stopwatch.StartNew();
            DataPrepareResult result;
            try { result = DataPreparer.Prepare(options, json ? null : Console.Error.WriteLine, ct); }
            catch (Exception e) when (e is ArgumentException or InvalidDataException or IOException or UnauthorizedAccessException)
            {
                throw new UserErrorException(e.Message);
            }
            Report(result, json, clock.Elapsed);
            return Task.FromResult(0);
        });
        return command;
    }

    /// <summary>The user errors that need no work to detect.</summary>
    static void Check(DataPrepareOptions options)
    {
        if (options.Shards < 1) throw new UserErrorException($"--shards must be at least 1, got {options.Shards}");
        if (!(options.ValFraction > 0 && options.ValFraction < 1))
            throw new UserErrorException($"--val-fraction must be between 0 and 1 (exclusive), got {options.ValFraction}");
        if (options.InputPath is { } input && !File.Exists(input) && !Directory.Exists(input))
            throw new UserErrorException($"--input {input}: no such file or folder");
        if (File.Exists(options.OutputFolder))
            throw new UserErrorException($"--out {options.OutputFolder} is a file, not a folder");
    }

    static void Report(DataPrepareResult result, bool json, TimeSpan elapsed)
    {
        var m = result.Manifest;
        string Relative(string path) => Path.GetRelativePath(Directory.GetCurrentDirectory(), path);
        if (json)
        {
            Cli.WriteJson(new
            {
                documents = m.Documents,
                train_tokens = m.TrainTokens,
                val_tokens = m.ValTokens,
                shards = result.ShardPaths.Select(Relative).ToArray(),
                val_path = Relative(result.ValPath),
                @out = Relative(result.OutputFolder),
                reused = result.Reused,
            });
            return;
        }
        Console.WriteLine($"{(result.Reused ? "up to date" : "prepared")}: {m.Documents} documents from {m.Source} ({m.SourcePath}) in {elapsed.TotalSeconds:F1} s");
        Console.WriteLine($"  train: {m.TrainTokens:N0} tokens, {m.TrainDocuments} documents in {m.Shards.Count} shard(s)");
        foreach (var s in m.Shards) Console.WriteLine($"    {Relative(Path.Combine(result.OutputFolder, s.File))}  {s.Tokens:N0} tokens, {s.Documents} documents");
        Console.WriteLine($"  val:   {m.ValTokens:N0} tokens, {m.ValDocuments} documents in {Relative(result.ValPath)}");
        Console.WriteLine($"  manifest: {Relative(Path.Combine(result.OutputFolder, DataManifest.FileName))}");
    }
}
