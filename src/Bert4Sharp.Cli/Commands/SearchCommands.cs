namespace Bert4Sharp.Cli;

using System.CommandLine;
using System.Text.Json;
using System.Text.Json.Nodes;
using Bert4Sharp.Search;
using Spectre.Console;

/// <summary>
/// <c>b4s index</c> (texts → embeddings → a <see cref="VectorIndex"/> directory) and <c>b4s search</c> (a query →
/// its nearest texts). Both embed through <see cref="SentenceModelOptions"/> (the sentence encoder; without --model the
/// embedded all-MiniLM-L6-v2).
/// </summary>
internal static class SearchCommands
{
    public static Command Index()
    {
        var m = new SentenceModelOptions();
        var input = new Option<string>("--input") { Description = "Texts: one per line, or JSON lines {\"id\":…, \"text\":…, other fields = metadata} (.jsonl/.ndjson)", Required = true };
        var field = new Option<string>("--field") { Description = "JSON lines: the field holding the text", DefaultValueFactory = _ => "text" };
        var output = new Option<string>("--output") { Description = "Index directory to write (vectors.usearch, store.duckdb, manifest.json)", Required = true };
        var format = new Option<string>("--format") { Description = "auto (by extension), lines or jsonl", DefaultValueFactory = _ => "auto" };
        format.AcceptOnlyFromAmong("auto", "lines", "jsonl");
        var connectivity = new Option<int>("--connectivity") { Description = "HNSW M (edges per node)", DefaultValueFactory = _ => 16 };
        var expansionAdd = new Option<int>("--expansion-add") { Description = "HNSW efConstruction", DefaultValueFactory = _ => 128 };
        var expansionSearch = new Option<int>("--expansion-search") { Description = "HNSW ef at search time (stored in the manifest)", DefaultValueFactory = _ => 128 };
        var json = new Option<bool>("--json") { Description = "Machine-readable output" };
        var cmd = new Command("index", $"Embed texts and build a vector index (USearch HNSW + DuckDB); default model: {DefaultModel.Description}") { input, output, format, field, connectivity, expansionAdd, expansionSearch, json };
        m.AddTo(cmd);
        cmd.SetAction(CliErrors.Wrap(r =>
        {
            string inputPath = r.GetValue(input)!, outputDir = r.GetValue(output)!;
            var entries = ReadInput(inputPath, r.GetValue(format)!, r.GetValue(field)!);
            if (entries.Count == 0) throw new InvalidDataException($"{inputPath}: no texts (empty lines are skipped)");
            var (encoder, modelName) = m.Load(r);
            var sw = System.Diagnostics.Stopwatch.StartNew();
            var embedded = SentenceModelOptions.Embed(encoder, entries.Select(e => e.Text).ToList(), SentenceModelOptions.Interactive(r.GetValue(json)));
            VectorIndex? index = null;
            try
            {
                index = VectorIndex.Create(outputDir, new VectorIndexOptions(encoder.Dimensions, modelName,
                    r.GetValue(connectivity), r.GetValue(expansionAdd), r.GetValue(expansionSearch)));
                index.Add(entries.Select((e, i) => new VectorEntry(e.Key, e.Text, e.Metadata, embedded.Vectors[i])).ToList());
                index.Save();
                if (r.GetValue(json))
                    CliErrors.WriteJson(new { index = index.Directory, count = index.Count, dimensions = index.Dimensions, model = index.Model, truncated = embedded.Truncated, seconds = sw.Elapsed.TotalSeconds });
                else
                    AnsiConsole.MarkupLine($"indexed {index.Count} texts ({index.Dimensions} dimensions, model {Markup.Escape(index.Model)}, {embedded.Truncated} truncated) into {Markup.Escape(index.Directory)} in {sw.Elapsed.TotalSeconds:F1} s");
            }
            finally
            {
                index?.Dispose();
            }
            return CliErrors.Ok;
        }));
        return cmd;
    }

    public static Command Search()
    {
        var query = new Argument<string>("query") { Description = "The text to search for" };
        var indexDir = new Option<string>("--index") { Description = "Index directory written by b4s index", Required = true };
        var m = new SentenceModelOptions();
        var k = new Option<int>("-k", "--top") { Description = "Number of hits", DefaultValueFactory = _ => 10 };
        var exact = new Option<bool>("--exact") { Description = "Exact (brute-force) search instead of HNSW" };
        var ef = new Option<int?>("--ef") { Description = "HNSW search expansion (default: the manifest's)" };
        var json = new Option<bool>("--json") { Description = "Machine-readable output" };
        var cmd = new Command("search", "Nearest texts of a query in a vector index (give the model options the index was built with)") { query, indexDir, k, exact, ef, json };
        m.AddTo(cmd);
        cmd.SetAction(CliErrors.Wrap(r =>
        {
            int top = r.GetValue(k);
            if (top <= 0) throw new ArgumentException($"-k must be at least 1, got {top}");
            string text = r.GetValue(query)!;
            if (string.IsNullOrWhiteSpace(text)) throw new ArgumentException("the query is empty");
            using var index = VectorIndex.Open(r.GetValue(indexDir)!, expectedModel: m.ModelName(r));
            if (r.GetValue(ef) is int e)
                index.ExpansionSearch = e > 0 ? e : throw new ArgumentException($"--ef must be positive, got {e}");
            var (encoder, _) = m.Load(r);
            if (encoder.Dimensions != index.Dimensions)
                throw new ArgumentException($"{index.Directory} holds {index.Dimensions}-dimensional vectors but these options give {encoder.Dimensions}: use the whitening the index was built with");
            var vector = encoder.Embed([text]).Vectors[0];
            var hits = r.GetValue(exact) ? index.SearchExact(vector, top) : index.Search(vector, top);
            if (r.GetValue(json))
            {
                CliErrors.WriteJson(hits.Select(h => new
                {
                    key = h.Key, score = h.Score, text = h.Text,
                    metadata = h.Metadata is null ? null : JsonNode.Parse(h.Metadata),
                }));
                return CliErrors.Ok;
            }
            var table = new Table().Border(TableBorder.Simple).AddColumn("#").AddColumn("score").AddColumn("key").AddColumn("text");
            for (int i = 0; i < hits.Count; i++)
                table.AddRow((i + 1).ToString(), hits[i].Score.ToString("F4"), Markup.Escape(hits[i].Key), Markup.Escape(hits[i].Text ?? ""));
            AnsiConsole.Write(table);
            return CliErrors.Ok;
        }));
        return cmd;
    }

    /// <summary>One input text: its key (the id, else the line number), the text, other JSON fields, and the id as written (null when none).</summary>
    internal sealed record InputEntry(string Key, string Text, string? Metadata, JsonNode? Id = null, int Line = 0);

    /// <summary>
    /// Reads the input file: plain text (one text per non-empty line, keyed by line number) or JSON lines (an object
    /// per line with a string under <paramref name="field"/> (default "text"), an optional string or integer "id" (default: the line number) and any other
    /// fields kept as metadata). A bad line is named by file and line.
    /// </summary>
    internal static List<InputEntry> ReadInput(string path, string format, string field = "text")
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"{path}: input file not found");
        bool jsonl = format == "jsonl" || (format == "auto" && Path.GetExtension(path).ToLowerInvariant() is ".jsonl" or ".ndjson");
        var entries = new List<InputEntry>();
        var keys = new Dictionary<string, int>(StringComparer.Ordinal);
        int lineNumber = 0;
        foreach (var line in File.ReadLines(path))
        {
            lineNumber++;
            if (string.IsNullOrWhiteSpace(line)) continue;
            InputEntry entry = jsonl ? ParseJsonLine(path, lineNumber, line, field) : new InputEntry(lineNumber.ToString(System.Globalization.CultureInfo.InvariantCulture), line, null, null, lineNumber);
            if (keys.TryGetValue(entry.Key, out int first))
                throw new InvalidDataException($"{path}:{lineNumber}: id '{entry.Key}' was already used on line {first}; ids must be unique");
            keys[entry.Key] = lineNumber;
            entries.Add(entry);
        }
        return entries;
    }

    static InputEntry ParseJsonLine(string path, int lineNumber, string line, string field)
    {
        JsonObject obj;
        try
        {
            obj = JsonNode.Parse(line) as JsonObject ?? throw new InvalidDataException($"{path}:{lineNumber}: expected a JSON object per line");
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{path}:{lineNumber}: not valid JSON ({e.Message})", e);
        }
        if (!obj.TryGetPropertyValue(field, out var textNode) || textNode is not JsonValue tv || !tv.TryGetValue(out string? text))
            throw new InvalidDataException($"{path}:{lineNumber}: field \"{field}\" (a string) is missing");
        if (string.IsNullOrWhiteSpace(text)) throw new InvalidDataException($"{path}:{lineNumber}: field \"{field}\" is empty");
        string key = lineNumber.ToString(System.Globalization.CultureInfo.InvariantCulture);
        if (obj.TryGetPropertyValue("id", out var idNode) && idNode is not null)
        {
            key = idNode is JsonValue iv && (iv.TryGetValue(out string? s) ? s : iv.TryGetValue(out long l) ? l.ToString(System.Globalization.CultureInfo.InvariantCulture) : null) is { Length: > 0 } k
                ? k : throw new InvalidDataException($"{path}:{lineNumber}: field \"id\" must be a non-empty string or an integer, got {idNode.ToJsonString()}");
        }
        var id = obj["id"]?.DeepClone();
        obj.Remove(field);
        obj.Remove("id");
        return new InputEntry(key, text, obj.Count == 0 ? null : obj.ToJsonString(), id, lineNumber);
    }
}
