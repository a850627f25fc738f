namespace Bert4Sharp.Data;

using System.Text.Json;

/// <summary>How a text dataset file is laid out.</summary>
public enum TextFormat
{
    /// <summary>One JSON object per line; fields are keys.</summary>
    JsonLines,
    /// <summary>Tab-separated columns; fields are column indices.</summary>
    Tsv,
    /// <summary>The whole line is the text.</summary>
    Lines,
}

/// <summary>Reads the text fields of line-oriented dataset files (CLUE JSON lines, TSV, plain text).</summary>
public static class TextRecords
{
    /// <summary>
    /// For each of the first <paramref name="limit"/> non-empty lines, the requested fields in order,
    /// skipping empty or missing ones. A line that does not parse raises an error naming file and line.
    /// </summary>
    /// <exception cref="InvalidDataException">A JSON line is malformed.</exception>
    public static IEnumerable<string> Read(string path, TextFormat format, IReadOnlyList<string> fields, int limit = int.MaxValue)
    {
        int record = 0, lineNo = 0;
        foreach (string raw in File.ReadLines(path))
        {
            lineNo++;
            string line = raw.TrimEnd('\r');
            if (line.Length == 0) continue;
            if (record++ >= limit) yield break;
            foreach (var t in Fields(path, lineNo, line, format, fields))
                if (!string.IsNullOrEmpty(t)) yield return t;
        }
    }

    /// <summary>One text of a corpus: the file it came from (relative to the data root), its running index there, the text.</summary>
    public sealed record CorpusText(string Source, int Index, string Text);

    /// <summary>
    /// Reads a corpus described by a JSON spec (<c>{"sources": [{"file", "format": jsonl|tsv|lines, "fields", "limit"}]}</c>,
    /// e.g. tests/reference/corpus.json), with files relative to <paramref name="dataRoot"/>.
    /// </summary>
    public static List<CorpusText> ReadCorpus(string specPath, string dataRoot)
    {
        using var spec = JsonDocument.Parse(File.ReadAllBytes(specPath));
        var list = new List<CorpusText>();
        foreach (var src in spec.RootElement.GetProperty("sources").EnumerateArray())
        {
            string file = src.GetProperty("file").GetString()!;
            string? name = src.GetProperty("format").GetString();
            var format = ParseFormat(name) ?? throw new InvalidDataException($"{specPath}: unknown format '{name}' for {file} (jsonl, tsv or lines)");
            var fields = src.GetProperty("fields").EnumerateArray().Select(f => f.ToString()).ToList();
            int index = 0;
            foreach (var t in Read(Path.Combine(dataRoot, file), format, fields, src.GetProperty("limit").GetInt32()))
                list.Add(new CorpusText(file, index++, t));
        }
        return list;
    }

    /// <summary>The format a recipe or command names: <c>jsonl</c>, <c>tsv</c> or <c>lines</c>; null for any other name.</summary>
    public static TextFormat? ParseFormat(string? name) => name switch
    {
        "jsonl" => TextFormat.JsonLines, "tsv" => TextFormat.Tsv, "lines" => TextFormat.Lines, _ => null,
    };

    static List<string?> Fields(string path, int lineNo, string line, TextFormat format, IReadOnlyList<string> fields)
    {
        switch (format)
        {
            case TextFormat.JsonLines:
                try
                {
                    using var doc = JsonDocument.Parse(line);
                    return fields.Select(k => doc.RootElement.ValueKind == JsonValueKind.Object && doc.RootElement.TryGetProperty(k, out var v) && v.ValueKind == JsonValueKind.String ? v.GetString() : null).ToList();
                }
                catch (JsonException e) { throw new InvalidDataException($"{path} line {lineNo}: not valid JSON ({e.Message})", e); }
            case TextFormat.Tsv:
            {
                var cols = line.Split('\t');
                return fields.Select(f => int.TryParse(f, out int c) && c >= 0 && c < cols.Length ? cols[c] : null).ToList();
            }
            default:
                return [line];
        }
    }
}
