// Turns the Brown corpus's tagged form ("The/at jury/nn ``/`` deserves/vbz ''/'' ./.") back into readable text:
// tags stripped, `` and '' as ", punctuation re-attached, paragraphs kept as blank-line-separated blocks.
// Not a general detokenizer: the rules fit Brown's tokenization (contractions mostly whole; split ones like n't, 's re-attached).
using System.Text;

namespace Duck.Core.Data;

/// <summary>Plain text from whitespace-separated word/tag tokens.</summary>
public static class TaggedText
{
    static readonly HashSet<string> NoSpaceBefore = new(StringComparer.OrdinalIgnoreCase) {".", ",", ";", ":", "?", "!", ")", "]", "}", "'", "%", "...",
        "'s", "n't", "'re", "'ve", "'ll", "'d", "'m", "''" };
    static readonly HashSet<string> NoSpaceAfter = ["(", "[", "{", "``", "$"];

    /// <summary>
    /// The plain text of one tagged document. Blocks separated by blank lines become paragraphs joined by "\n\n";
    /// the lines (sentences) of a block are joined by spaces, except headline lines (every tag ends in -hl), which
    /// stay paragraphs of their own.
    /// </summary>
    public static string Detag(string tagged)
    {
        var paragraphs = new List<string>();
        var block = new List<string>();
        foreach (string rawLine in tagged.Split('\n'))
        {
            string line = rawLine.Trim();
            if (line.Length == 0)
            {
                Flush();
                continue;
            }
            string[] tokens = line.Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries);
            if (tokens.All(t => TagOf(t).EndsWith("-hl", StringComparison.Ordinal)))
            {
                Flush();
                paragraphs.Add(Join(tokens.Select(WordOf)));
                continue;
            }
            block.AddRange(tokens.Select(WordOf));
        }
        Flush();
        return string.Join("\n\n", paragraphs.Where(p => p.Length > 0));

        void Flush()
        {
            if (block.Count > 0) paragraphs.Add(Join(block));
            block.Clear();
        }
    }

    /// <summary>The word of a "word/tag" token: everything before the last '/' (words may contain '/', e.g. "1/2/cd").</summary>
    public static string WordOf(string token)
    {
        int slash = token.LastIndexOf('/');
        return slash <= 0 ? token : token[..slash];
    }

    static string TagOf(string token)
    {
        int slash = token.LastIndexOf('/');
        return slash < 0 ? "" : token[(slash + 1)..];
    }

    /// <summary>Joins words with single spaces, re-attaching punctuation, turning `` and '' into " and dropping Brown's doubled stops.</summary>
    public static string Join(IEnumerable<string> words)
    {
        var sb = new StringBuilder();
        bool glueNext = true; // no space before the first word
        string previous = "";
        foreach (string word in words)
        {
            if (IsRepeatedStop(previous, word)) continue;
            previous = word;
            bool glue = glueNext || NoSpaceBefore.Contains(word);
            if (!glue) sb.Append(' ');
            sb.Append(word is "``" or "''" ? "\"" : word);
            glueNext = NoSpaceAfter.Contains(word);
        }
        return sb.ToString();
    }

    // Brown doubles a sentence-final ; ? ! : ("war/nn ;/. ;/.") and adds a period after abbreviations ("Jr./np ./.").
    static bool IsRepeatedStop(string previous, string word) =>
        word is ";" or "?" or "!" or ":" ? previous == word
        : word == "." && previous.Length > 1 && previous.EndsWith('.');
}
