// Data preparation end to end on a tiny tagged corpus written by the test (and once on the real Brown corpus):
// document-level split, token totals, shard balance, determinism, reuse, and the user-input paths.
using Duck.Core.Data;
using Duck.Core.Text;

namespace Duck.Core.Tests.Data;

public sealed class DataPreparerTests : IDisposable
{
    readonly string root = Directory.CreateTempSubdirectory("duck-data-").FullName;

    public void Dispose() => Directory.Delete(root, recursive: true);

    /// <summary>Twelve Brown-style files ca01..ca12 of different lengths; returns the folder.</summary>
    string WriteTinyCorpus()
    {
        string corpus = Path.Combine(root, "corpus");
        Directory.CreateDirectory(corpus);
        for (int d = 1; d <= 12; d++)
        {
            var paragraphs = Enumerable.Range(0, d).Select(p =>
                $"\tDocument/nn {d}/cd says/vbz ``/`` paragraph/nn {p}/cd ''/'' ,/, and/cc it/pps is/bez short/jj ./.");
            File.WriteAllText(Path.Combine(corpus, $"ca{d:D2}"), "\n\n" + string.Join("\n\n\n", paragraphs) + "\n\n");
        }
        File.WriteAllText(Path.Combine(corpus, "README"), "not a document");
        return corpus;
    }

    DataPrepareOptions Options(string corpus, string outName, int shards = 1) => new()
    {
        BrownCorpusPath = corpus,
        OutputFolder = Path.Combine(root, outName),
        Shards = shards,
        ValFraction = 0.2,
        AllowNpmInstall = false,
    };

    static int DocumentTokens(SourceDocument d) => Gpt2Tokenizer.Shared.Encode(d.Text).Length + 1;

    [Fact]
    public void ReadDocuments_TinyCorpus_RecoversTextPerFile()
    {
        string corpus = WriteTinyCorpus();

        var docs = BrownCorpus.ReadDocuments(corpus);

        Assert.Equal(12, docs.Count);
        Assert.Equal("ca02", docs[1].Name);
        Assert.Equal("Document 2 says \"paragraph 0\", and it is short.\n\nDocument 2 says \"paragraph 1\", and it is short.", docs[1].Text);
    }

    [Fact]
    public void Prepare_TinyCorpus_SplitsByDocumentAndKeepsEveryToken()
    {
        string corpus = WriteTinyCorpus();
        var docs = BrownCorpus.ReadDocuments(corpus);

        var result = DataPreparer.Prepare(Options(corpus, "out"));
        var train = TokenShard.Open(result.ShardPaths[0]);
        var val = TokenShard.Open(result.ValPath);

        var m = result.Manifest;
        Assert.Equal((12, 10, 2), (m.Documents, m.TrainDocuments, m.ValDocuments));
        Assert.Equal(docs.Sum(DocumentTokens), train.TokenCount + val.TokenCount);
        Assert.Equal((m.TrainTokens, m.ValTokens), (train.TokenCount, val.TokenCount));
        Assert.Equal(2, val.Tokens.Count((ushort)Gpt2Tokenizer.EndOfText));
        Assert.Equal(Gpt2Tokenizer.EndOfText, val.Tokens[^1]);
        // The validation shard is exactly the held-out documents, whole.
        string valText = Gpt2Tokenizer.Shared.Decode(val.Tokens.ToArray().Select(t => (int)t));
        foreach (string name in m.ValDocumentNames) Assert.Contains(docs.Single(d => d.Name == name).Text + "<|endoftext|>", valText);
        string trainText = Gpt2Tokenizer.Shared.Decode(train.Tokens.ToArray().Select(t => (int)t));
        foreach (string name in m.ValDocumentNames) Assert.DoesNotContain(docs.Single(d => d.Name == name).Text + "<|endoftext|>", trainText);
        Assert.True(File.Exists(Path.Combine(result.OutputFolder, "data.json")));
    }

    [Fact]
    public void Prepare_ThreeShards_BalancedByTokensAndDocumentAligned()
    {
        string corpus = WriteTinyCorpus();
        var docs = BrownCorpus.ReadDocuments(corpus);
        var trainDocs = docs.Select(DocumentTokens).ToList();

        var result = DataPreparer.Prepare(Options(corpus, "sharded", shards: 3));
        var shards = result.ShardPaths.Select(TokenShard.Open).ToList();

        Assert.Equal(3, shards.Count);
        Assert.Equal(result.Manifest.TrainTokens, shards.Sum(s => s.TokenCount));
        Assert.Equal(10, shards.Sum(s => s.DocumentCount));
        Assert.All(shards, s => Assert.Equal(s.DocumentCount, s.Tokens.Count((ushort)Gpt2Tokenizer.EndOfText)));
        Assert.All(shards, s => Assert.Equal(Gpt2Tokenizer.EndOfText, s.Tokens[^1]));
        long spread = shards.Max(s => s.TokenCount) - shards.Min(s => s.TokenCount);
        Assert.True(spread <= trainDocs.Max(), $"shard sizes {string.Join(", ", shards.Select(s => s.TokenCount))} differ by more than one document");
    }

    [Fact]
    public void Prepare_TwiceIntoDifferentFolders_WritesIdenticalShards()
    {
        string corpus = WriteTinyCorpus();

        var first = DataPreparer.Prepare(Options(corpus, "one", shards: 2));
        var second = DataPreparer.Prepare(Options(corpus, "two", shards: 2));

        Assert.Equal(first.Manifest.ValDocumentNames, second.Manifest.ValDocumentNames);
        foreach (var (a, b) in first.ShardPaths.Append(first.ValPath).Zip(second.ShardPaths.Append(second.ValPath)))
            Assert.Equal(File.ReadAllBytes(a), File.ReadAllBytes(b));
    }

    [Fact]
    public void Prepare_UnchangedThenChangedInput_ReusesThenRebuilds()
    {
        string corpus = WriteTinyCorpus();
        var options = Options(corpus, "cached");
        var first = DataPreparer.Prepare(options);

        var again = DataPreparer.Prepare(options);
        File.AppendAllText(Path.Combine(corpus, "ca03"), "\tNew/jj sentence/nn ./.\n");
        var changed = DataPreparer.Prepare(options);

        Assert.False(first.Reused);
        Assert.True(again.Reused);
        Assert.Equal(first.Manifest.CreatedUtc, again.Manifest.CreatedUtc);
        Assert.False(changed.Reused);
        Assert.True(changed.Manifest.TrainTokens + changed.Manifest.ValTokens > first.Manifest.TrainTokens + first.Manifest.ValTokens);
    }

    [Fact]
    public void Prepare_MoreShardsThanTrainingDocuments_ThrowsNamingCounts()
    {
        string corpus = WriteTinyCorpus();

        var e = Assert.Throws<ArgumentException>(() => DataPreparer.Prepare(Options(corpus, "x", shards: 11)));

        Assert.Contains("10 for training", e.Message);
        Assert.Contains("11 shards", e.Message);
    }

    [Fact]
    public void Prepare_TextFolder_OneDocumentPerTxtFile()
    {
        string input = Path.Combine(root, "texts");
        Directory.CreateDirectory(Path.Combine(input, "sub"));
        File.WriteAllText(Path.Combine(input, "a.txt"), "Alpha text.\r\n");
        File.WriteAllText(Path.Combine(input, "sub", "b.txt"), "Beta text.");
        File.WriteAllText(Path.Combine(input, "c.txt"), "Gamma text.");
        File.WriteAllText(Path.Combine(input, "ignored.md"), "Not text.");

        var result = DataPreparer.Prepare(new DataPrepareOptions { InputPath = input, OutputFolder = Path.Combine(root, "t"), ValFraction = 0.1 });

        Assert.Equal((3, 2, 1), (result.Manifest.Documents, result.Manifest.TrainDocuments, result.Manifest.ValDocuments));
        Assert.Equal("text", result.Manifest.Source);
        int expectedTokens = new[] { "Alpha text.", "Beta text.", "Gamma text." }.Sum(t => Gpt2Tokenizer.Shared.Encode(t).Length + 1);
        Assert.Equal(expectedTokens, result.Manifest.TrainTokens + result.Manifest.ValTokens);
    }

    [Fact]
    public void SplitFile_ManyParagraphs_PacksWholeParagraphsIntoDocuments()
    {
        string paragraph = new string('x', 400) + ".";
        string text = string.Join("\n\n", Enumerable.Repeat(paragraph, 7));

        var docs = TextDocuments.SplitFile("book.txt", text);

        Assert.Equal(["book.txt#0001", "book.txt#0002", "book.txt#0003"], docs.Select(d => d.Name));
        Assert.Equal(string.Join("\n\n", Enumerable.Repeat(paragraph, 3)), docs[0].Text);
        Assert.Equal(paragraph, docs[2].Text);
    }

    [Fact]
    public void Prepare_EmptyTextFolder_ThrowsEmptyCorpus()
    {
        string input = Path.Combine(root, "empty");
        Directory.CreateDirectory(input);

        var e = Assert.Throws<InvalidDataException>(() => DataPreparer.Prepare(new DataPrepareOptions { InputPath = input, OutputFolder = Path.Combine(root, "e") }));

        Assert.Contains("empty corpus", e.Message);
    }

    [Fact]
    public void Locate_FolderWithoutBrownFiles_ThrowsNamingFolder()
    {
        var e = Assert.Throws<DirectoryNotFoundException>(() => BrownCorpus.Locate(root, allowNpmInstall: false));

        Assert.Contains(root, e.Message);
        Assert.Contains("ca01", e.Message);
    }

    [Fact]
    public void Prepare_RealBrownCorpus_500DocumentsAndKnownTokenTotal()
    {
        string corpus = BrownCorpus.Locate(allowNpmInstall: false);

        var result = DataPreparer.Prepare(new DataPrepareOptions { BrownCorpusPath = corpus, OutputFolder = Path.Combine(root, "brown"), Shards = 2 });

        var m = result.Manifest;
        Assert.Equal((500, 475, 25), (m.Documents, m.TrainDocuments, m.ValDocuments));
        Assert.Equal(1_302_429, m.TrainTokens + m.ValTokens);
        Assert.StartsWith("The Fulton County Grand Jury said Friday an investigation of Atlanta's recent primary election produced \"no evidence\"",
            BrownCorpus.ReadDocuments(corpus)[0].Text);
    }
}
