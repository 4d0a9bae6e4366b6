// Reads the user's own text as documents for `duck data prepare --input`: a folder gives one document per *.txt file
// (recursively), a single file is cut at blank lines into documents of at least MinDocumentChars characters.
// Not a format converter: input must be UTF-8 text.
using System.Text;

namespace Duck.Core.Data;

/// <summary>Documents from user-supplied .txt files.</summary>
public static class TextDocuments
{
    /// <summary>A single input file is cut into documents of at least this many characters (whole paragraphs).</summary>
    public const int MinDocumentChars = 1000;

    /// <summary>
    /// The documents under <paramref name="path"/>: every *.txt file of a folder (names are relative paths), or the
    /// paragraphs of one file packed into documents (names "file#0001"). Empty files are skipped.
    /// </summary>
    public static IReadOnlyList<SourceDocument> Read(string path)
    {
        if (Directory.Exists(path))
        {
            string root = Path.GetFullPath(path);
            return Directory.EnumerateFiles(root, "*.txt", SearchOption.AllDirectories)
                .Select(f => Path.GetRelativePath(root, f).Replace('\\', '/'))
                .Order(StringComparer.Ordinal)
                .Select(name => new SourceDocument(name, Normalize(File.ReadAllText(Path.Combine(root, name), Encoding.UTF8))))
                .Where(d => d.Text.Length > 0)
                .ToList();
        }
        if (File.Exists(path)) return SplitFile(Path.GetFileName(path), File.ReadAllText(path, Encoding.UTF8));
        throw new FileNotFoundException($"input {path} is neither a file nor a folder", path);
    }

    /// <summary>Cuts one text into documents of whole paragraphs, each at least <see cref="MinDocumentChars"/> long (the last may be shorter).</summary>
    public static IReadOnlyList<SourceDocument> SplitFile(string name, string text)
    {
        var paragraphs = Normalize(text).Split("\n\n", StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        var documents = new List<SourceDocument>();
        var current = new StringBuilder();
        foreach (string paragraph in paragraphs)
        {
            if (current.Length > 0) current.Append("\n\n");
            current.Append(paragraph);
            if (current.Length >= MinDocumentChars) Emit();
        }
        if (current.Length > 0) Emit();
        return documents;

        void Emit()
        {
            documents.Add(new SourceDocument($"{name}#{documents.Count + 1:D4}", current.ToString()));
            current.Clear();
        }
    }

    /// <summary>LF line ends, no trailing spaces, at most one blank line between paragraphs, trimmed.</summary>
    static string Normalize(string text)
    {
        var lines = text.Replace("\r\n", "\n").Replace('\r', '\n').Split('\n').Select(l => l.TrimEnd());
        var sb = new StringBuilder();
        int blank = 0;
        foreach (string line in lines)
        {
            if (line.Length == 0) { blank++; continue; }
            if (sb.Length > 0) sb.Append(blank > 0 ? "\n\n" : "\n");
            sb.Append(line);
            blank = 0;
        }
        return sb.ToString();
    }
}
