namespace Bert4Sharp.Cli;

using System.CommandLine;
using System.Text.Json;
using Bert4Sharp.Checkpoints;
using Spectre.Console;

/// <summary><c>b4s inspect &lt;path&gt;</c>: format, one row per tensor, totals, and the config beside it.</summary>
internal static class InspectCommand
{
    static readonly string[] ConfigNames = ["config.json", "bert_config.json", "albert_config.json"];
    static readonly string[] ConfigKeys =
    [
        "model_type", "architectures", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
        "embedding_size", "vocab_size", "max_position_embeddings", "type_vocab_size", "hidden_act",
    ];

    public static Command Create()
    {
        var path = new Argument<string>("path") { Description = "Checkpoint file (.safetensors, .bin/.pt, .onnx), TensorFlow prefix/.index/checkpoint file, or model directory" };
        var json = new Option<bool>("--json") { Description = "Machine-readable output" };
        var cmd = new Command("inspect", "List the tensors of a checkpoint (safetensors, PyTorch .bin/.pt, TensorFlow bundle, ONNX model)") { path, json };
        cmd.SetAction(CliErrors.Wrap(r => Run(r.GetValue(path)!, r.GetValue(json))));
        return cmd;
    }

    static int Run(string path, bool json)
    {
        using var ck = Checkpoint.Open(path);
        var config = FindConfig(path);
        var rows = ck.Entries.Select(e => new
        {
            name = e.Name, dtype = e.DType.DisplayName(), shape = e.Shape, bytes = e.ByteCount,
            state = e.State.ToString().ToLowerInvariant(), note = e.Note,
        }).ToList();
        var totals = new
        {
            tensors = ck.Entries.Count,
            bytes = ck.Entries.Sum(e => e.ByteCount),
            parameters = ck.Entries.Where(e => e.State != TensorState.Slot).Sum(e => e.ElementCount),
            by_state = ck.Entries.GroupBy(e => e.State.ToString().ToLowerInvariant()).ToDictionary(g => g.Key, g => g.Count()),
        };
        if (json)
        {
            CliErrors.WriteJson(new
            {
                path = ck.Path, format = ck.Format.ToString(), metadata = ck.Metadata, notes = ck.Notes,
                tensors = rows, totals, config = config?.Summary, config_path = config?.Path,
            });
            return CliErrors.Ok;
        }
        AnsiConsole.MarkupLine($"[bold]{Markup.Escape(ck.Path)}[/]  format: [bold]{ck.Format}[/]");
        foreach (var (k, v) in ck.Metadata.Take(20)) AnsiConsole.MarkupLine($"  {Markup.Escape(k)}: {Markup.Escape(v)}");
        foreach (var n in ck.Notes) AnsiConsole.MarkupLine($"[yellow]note:[/] {Markup.Escape(n)}");
        var table = new Table().Border(TableBorder.Simple)
            .AddColumn("name").AddColumn("dtype").AddColumn("shape").AddColumn(new TableColumn("bytes").RightAligned()).AddColumn("state");
        foreach (var e in ck.Entries)
        {
            string state = e.State switch
            {
                TensorState.Ok => "[green]ok[/]",
                TensorState.Slot => "[grey]slot[/]",
                TensorState.Truncated => "[red]truncated[/]",
                _ => "[red]missing[/]",
            };
            table.AddRow(Markup.Escape(e.Name), e.DType.DisplayName(), Markup.Escape(e.ShapeText), e.ByteCount.ToString("N0"), state);
        }
        AnsiConsole.Write(table);
        AnsiConsole.MarkupLine($"[bold]{totals.tensors}[/] tensors, {totals.bytes:N0} bytes, {totals.parameters:N0} parameters (slots excluded); " +
            string.Join(", ", totals.by_state.Select(kv => $"{kv.Value} {kv.Key}")));
        if (config is not null)
        {
            AnsiConsole.MarkupLine($"config: [bold]{Markup.Escape(config.Path)}[/]");
            foreach (var (k, v) in config.Summary) AnsiConsole.MarkupLine($"  {Markup.Escape(k)}: {Markup.Escape(v)}");
        }
        return CliErrors.Ok;
    }

    sealed record ConfigSummary(string Path, Dictionary<string, string> Summary);

    static ConfigSummary? FindConfig(string path)
    {
        string dir = Directory.Exists(path) ? path : System.IO.Path.GetDirectoryName(System.IO.Path.GetFullPath(path)) ?? ".";
        var candidates = ConfigNames.Select(n => System.IO.Path.Combine(dir, n)).Where(File.Exists)
            .Concat(Directory.GetFiles(dir, "*config*.json").Order(StringComparer.Ordinal)).Distinct().ToList();
        foreach (var c in candidates)
        {
            try
            {
                using var doc = JsonDocument.Parse(File.ReadAllBytes(c));
                if (doc.RootElement.ValueKind != JsonValueKind.Object) continue;
                var summary = new Dictionary<string, string>();
                foreach (var k in ConfigKeys)
                    if (doc.RootElement.TryGetProperty(k, out var v)) summary[k] = v.ToString();
                if (summary.Count > 0) return new ConfigSummary(c, summary);
            }
            catch (JsonException) { }
        }
        return null;
    }
}
