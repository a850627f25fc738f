using System.Text.Json;

namespace Bert4Sharp.Tests.Tokenization;

/// <summary>Real sentences from ../shared/data, as tests/reference/corpus.json describes (same rule as the Python scripts).</summary>
public static class TestCorpus
{
    public sealed record Sentence(string Source, int Index, string Text);

    static List<Sentence>? cached;

    /// <summary>All corpus sentences; skips the calling test when ../shared/data is absent.</summary>
    public static IReadOnlyList<Sentence> Load()
    {
        string data = TestPaths.SharedOrSkip("data");
        if (cached is not null) return cached;
        using var spec = JsonDocument.Parse(File.ReadAllBytes(Path.Combine(TestPaths.RepoRoot, "tests", "reference", "corpus.json")));
        var list = new List<Sentence>();
        foreach (var src in spec.RootElement.GetProperty("sources").EnumerateArray())
        {
            string file = src.GetProperty("file").GetString()!;
            string format = src.GetProperty("format").GetString()!;
            int limit = src.GetProperty("limit").GetInt32();
            var fields = src.GetProperty("fields").EnumerateArray().ToList();
            int record = 0, index = 0;
            foreach (string raw in File.ReadLines(Path.Combine(data, file)))
            {
                string line = raw.TrimEnd('\r');
                if (line.Length == 0) continue;
                if (record++ >= limit) break;
                IEnumerable<string?> texts = format switch
                {
                    "jsonl" => Json(line, fields.Select(f => f.GetString()!)),
                    "tsv" => fields.Select(f => { var cols = line.Split('\t'); int c = f.GetInt32(); return c < cols.Length ? cols[c] : null; }),
                    _ => [line],
                };
                foreach (var t in texts)
                    if (!string.IsNullOrEmpty(t)) list.Add(new Sentence(file, index++, t));
            }
        }
        return cached = list;
    }

    static IEnumerable<string?> Json(string line, IEnumerable<string> keys)
    {
        using var doc = JsonDocument.Parse(line);
        return keys.Select(k => doc.RootElement.TryGetProperty(k, out var v) && v.ValueKind == JsonValueKind.String ? v.GetString() : null).ToList();
    }
}
