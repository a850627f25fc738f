namespace Bert4Sharp.Cli;

using System.CommandLine;
using System.Text.Json;
using Spectre.Console;

/// <summary>
/// <c>b4s embed</c>: texts (one a line, or JSON lines) → sentence vectors as JSON lines <c>{"id":…, "embedding":[…]}</c>,
/// through the same model options as <c>b4s index</c> and <c>b4s search</c> (<see cref="SentenceModelOptions"/>).
/// </summary>
internal static class EmbedCommand
{
    public static Command Create()
    {
        var m = new SentenceModelOptions();
        var input = new Option<string>("--input") { Description = "Texts: one per line, or JSON lines with the text under --field and an optional id (.jsonl/.ndjson)", Required = true };
        var output = new Option<string>("--output") { Description = "JSON lines to write, one {\"id\":…, \"embedding\":[…]} per text in input order (written atomically)", Required = true };
        var format = new Option<string>("--format") { Description = "auto (by extension), lines or jsonl", DefaultValueFactory = _ => "auto" };
        format.AcceptOnlyFromAmong("auto", "lines", "jsonl");
        var field = new Option<string>("--field") { Description = "JSON lines: the field holding the text", DefaultValueFactory = _ => "text" };
        var json = new Option<bool>("--json") { Description = "Machine-readable summary" };
        var cmd = new Command("embed", $"Sentence vectors of texts as JSON lines; default model: {DefaultModel.Description}") { input, output, format, field, json };
        m.AddTo(cmd);
        cmd.SetAction(CliErrors.Wrap(r =>
        {
            string inputPath = r.GetValue(input)!, outputPath = r.GetValue(output)!;
            var entries = SearchCommands.ReadInput(inputPath, r.GetValue(format)!, r.GetValue(field)!);
            if (entries.Count == 0) throw new InvalidDataException($"{inputPath}: no texts (empty lines are skipped)");
            var (encoder, modelName) = m.Load(r);
            var sw = System.Diagnostics.Stopwatch.StartNew();
            var result = SentenceModelOptions.Embed(encoder, entries.Select(e => e.Text).ToList(), SentenceModelOptions.Interactive(r.GetValue(json)));
            Write(outputPath, entries, result.Vectors);
            double seconds = sw.Elapsed.TotalSeconds;
            if (r.GetValue(json))
                CliErrors.WriteJson(new { output = Path.GetFullPath(outputPath), count = entries.Count, dimensions = encoder.Dimensions, truncated = result.Truncated, model = modelName, engine = encoder.Encoder.Engine, seconds });
            else
                AnsiConsole.MarkupLine($"embedded {entries.Count} texts ({encoder.Dimensions} dimensions, {result.Truncated} truncated, model {Markup.Escape(modelName)} on {Markup.Escape(encoder.Encoder.Engine)}) into {Markup.Escape(outputPath)} in {seconds:F1} s");
            return CliErrors.Ok;
        }));
        return cmd;
    }

    /// <summary>One JSON line per text: the id as the input wrote it (else the line number), then the vector. Temp file, then rename.</summary>
    static void Write(string path, IReadOnlyList<SearchCommands.InputEntry> entries, float[][] vectors)
    {
        string full = Path.GetFullPath(path);
        string dir = Path.GetDirectoryName(full)!;
        if (!Directory.Exists(dir)) throw new DirectoryNotFoundException($"{path}: the output's directory {dir} does not exist");
        string temp = Path.Combine(dir, $".{Path.GetFileName(full)}.{Guid.NewGuid():N}.tmp");
        try
        {
            using (var stream = new FileStream(temp, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 16))
            {
                var writer = new Utf8JsonWriter(stream);
                for (int i = 0; i < entries.Count; i++)
                {
                    writer.WriteStartObject();
                    writer.WritePropertyName("id");
                    if (entries[i].Id is { } id) id.WriteTo(writer);
                    else writer.WriteNumberValue(entries[i].Line);
                    writer.WriteStartArray("embedding");
                    foreach (float v in vectors[i]) writer.WriteNumberValue(v);
                    writer.WriteEndArray();
                    writer.WriteEndObject();
                    writer.Flush();
                    stream.WriteByte((byte)'\n');
                    writer.Reset();
                }
            }
            File.Move(temp, full, overwrite: true);
        }
        finally
        {
            if (File.Exists(temp)) File.Delete(temp);
        }
    }
}
