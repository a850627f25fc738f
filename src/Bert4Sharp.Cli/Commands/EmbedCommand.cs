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

    /// <summary>
    /// <c>b4s whiten</c>: fits BERT-whitening on the model's pooled vectors of a corpus and writes it as
    /// <c>whitening.safetensors</c> (default: into the model directory, where every command then applies it).
    /// </summary>
    public static Command Whiten()
    {
        var m = new SentenceModelOptions();
        var input = new Option<string>("--input") { Description = "The corpus to fit on: one text per line, or JSON lines (--field)", Required = true };
        var format = new Option<string>("--format") { Description = "auto (by extension), lines or jsonl", DefaultValueFactory = _ => "auto" };
        format.AcceptOnlyFromAmong("auto", "lines", "jsonl");
        var field = new Option<string>("--field") { Description = "JSON lines: the field holding the text", DefaultValueFactory = _ => "text" };
        var dimensions = new Option<int?>("--dimensions") { Description = "Dimensions kept, k (default: all the corpus determines, up to the model's width)" };
        var output = new Option<string?>("--output") { Description = $"The whitening file (default: {Embeddings.Whitening.FileName} in --model's directory)" };
        var cmd = new Command("whiten", "Fit BERT-whitening (μ, W = UΛ^-1/2, first k columns) on a corpus's sentence vectors and save it beside the model") { input, format, field, dimensions, output };
        m.AddTo(cmd);
        cmd.SetAction(CliErrors.Wrap(r =>
        {
            string inputPath = r.GetValue(input)!;
            var entries = SearchCommands.ReadInput(inputPath, r.GetValue(format)!, r.GetValue(field)!);
            var (loaded, modelName) = m.Load(r);
            var encoder = loaded.With((Embeddings.Whitening?)null).With(loaded.Options with { Normalize = false });   // fitted on raw pooled vectors
            string target = r.GetValue(output) ?? Path.Combine(m.ModelDirectory(r).Directory, Embeddings.Whitening.FileName);
            var vectors = SentenceModelOptions.Embed(encoder, entries.Select(e => e.Text).ToList(), SentenceModelOptions.Interactive(false)).Vectors;
            var whitening = Embeddings.Whitening.Fit(vectors, r.GetValue(dimensions));
            whitening.Save(target);
            AnsiConsole.MarkupLine($"whitening of {Markup.Escape(modelName)} ({Markup.Escape(Embeddings.StsBenchmark.PoolingName(encoder.Options.Pooling))} pooling) fitted on {vectors.Length} texts, " +
                $"{whitening.InputDimensions} → {whitening.Dimensions} dimensions, written to {Markup.Escape(target)}");
            return CliErrors.Ok;
        }));
        return cmd;
    }

    /// <summary>One JSON line per text: the id as the input wrote it (else the line number), then the vector; written atomically.</summary>
    static void Write(string path, IReadOnlyList<SearchCommands.InputEntry> entries, float[][] vectors)
    {
        string full = Path.GetFullPath(path);
        string dir = Path.GetDirectoryName(full)!;
        if (!Directory.Exists(dir)) throw new DirectoryNotFoundException($"{path}: the output's directory {dir} does not exist");
        Checkpoints.AtomicFile.Write(full, stream =>
        {
            using var writer = new Utf8JsonWriter(stream);
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
        });
    }
}
