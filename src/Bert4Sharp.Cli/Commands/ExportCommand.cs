namespace Bert4Sharp.Cli;

using System.CommandLine;
using Bert4Sharp.Models;
using Bert4Sharp.Onnx.Export;
using Spectre.Console;

/// <summary><c>b4s export onnx</c>: a model directory → an ONNX Runtime directory (model.onnx + config + tokenizer files).</summary>
internal static class ExportCommand
{
    /// <summary>Files beside the weights that an ONNX directory needs to be used as a model (<c>--engine onnx</c>).</summary>
    static readonly string[] Companions = ["config.json", "vocab.txt", "spiece.model", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "sentence_encoder.json", "whitening.safetensors"];

    static readonly Dictionary<string, Application> Applications = new()
    {
        ["encoder"] = Application.Encoder, ["mlm"] = Application.MaskedLM, ["pretraining"] = Application.PreTraining,
        ["discriminator"] = Application.Discriminator, ["lm"] = Application.LanguageModel, ["unilm"] = Application.UniLM,
    };

    public static Command Create()
    {
        var model = new Option<string?>("--model") { Description = $"Model directory (any layout b4s loads). Default: {DefaultModel.Description}" };
        var output = new Option<string>("--output") { Description = "Directory to write: model.onnx, config.json and the tokenizer files", Required = true };
        var int8 = new Option<bool>("--int8") { Description = "Quantise the dense layers to int8 (dynamic, per output channel); embeddings, norms, softmax stay float32" };
        var opset = new Option<int>("--opset") { Description = $"ai.onnx opset, {OnnxExportOptions.MinOpset}–{OnnxExportOptions.MaxOpset}", DefaultValueFactory = _ => OnnxExportOptions.MinOpset };
        var standard = new Option<bool>("--standard") { Description = "Standard ONNX operators only (no com.microsoft fused attention/GELU): for runtimes other than ONNX Runtime" };
        var application = new Option<string?>("--application") { Description = "encoder, mlm, pretraining, discriminator, lm, unilm (default: encoder; lm for GPT families)" };
        application.AcceptOnlyFromAmong([.. Applications.Keys]);
        var family = new Option<string?>("--family") { Description = "Model family (default: the config's model_type)" };
        var noVerify = new Option<bool>("--no-verify") { Description = "Skip running the graph against the TorchSharp model" };
        var overwrite = new Option<bool>("--overwrite") { Description = "Replace an existing model.onnx in --output" };
        var onnx = new Command("onnx", "Write a model as an ONNX graph for ONNX Runtime (CPU or CUDA), checked against the TorchSharp model")
        {
            model, output, int8, opset, standard, application, family, noVerify, overwrite,
        };
        onnx.SetAction(CliErrors.Wrap(r =>
        {
            string source = r.GetValue(model) ?? DefaultModel.Ensure();
            if (!Directory.Exists(source)) throw new DirectoryNotFoundException($"{source}: model directory not found");
            string target = r.GetValue(output)!;
            if (Path.GetFullPath(target).TrimEnd('/') == Path.GetFullPath(source).TrimEnd('/'))
                throw new ArgumentException($"--output {target} is the model directory itself; write the export to another directory");
            string file = Path.Combine(target, "model.onnx");
            if (File.Exists(file) && !r.GetValue(overwrite)) throw new IOException($"{file} exists; pass --overwrite to replace it");
            // b4s clue train's task models (task.json): the encoder; its head runs in TorchSharp on the graph's states.
            var taskFile = File.Exists(Path.Combine(source, "task.json")) ? Training.ClueRun.ReadTask(source, null) : null;
            var options = new AutoModelOptions
            {
                Family = r.GetValue(family),
                Application = r.GetValue(application) is { } a ? Applications[a] : taskFile is not null ? Application.Encoder : null,
                Build = new BuildOptions { Device = TorchSharp.torch.CPU },
            };
            // A fine-tuned classifier (b4s clue train / TextClassifier: task.json with the classifier head) exports with its head.
            using var classifier = taskFile?.Head == Training.TextClassifier.HeadName ? Training.TextClassifier.Load(source) : null;
            if (classifier is not null && (r.GetValue(family) is not null || r.GetValue(application) is not null))
                throw new ArgumentException($"{source} is a fine-tuned classifier (task.json); it exports as it was trained, without --family or --application");
            var encoder = classifier?.Model.Encoder ?? AutoModel.Load(source, options).Model;
            var exportOptions = new OnnxExportOptions { Opset = r.GetValue(opset), Fused = !r.GetValue(standard), Int8 = r.GetValue(int8) };
            Directory.CreateDirectory(target);
            var sw = System.Diagnostics.Stopwatch.StartNew();
            var result = classifier is not null ? OnnxExport.Save(classifier.Model, file, exportOptions) : OnnxExport.Save(encoder, file, exportOptions);
            double seconds = sw.Elapsed.TotalSeconds;
            foreach (var name in Companions.Concat(["task.json", "head.safetensors"]))
            {
                string from = Path.Combine(source, name);
                if (name == "config.json") encoder.Config.Save(Path.Combine(target, name), encoder.Family.Name);   // the config the model was built from
                else if (File.Exists(from)) File.Copy(from, Path.Combine(target, name), overwrite: true);
            }
            string what = classifier is not null ? $"{encoder.Family.Name} classifier ({classifier.Labels.Count} labels, {classifier.Model.Pooling} pooling)" : $"{encoder.Family.Name} ({encoder.Application})";
            AnsiConsole.MarkupLine($"{Markup.Escape(what)} → [bold]{Markup.Escape(file)}[/]: {result.Bytes / 1048576.0:F1} MiB, opset {exportOptions.Opset}, {(exportOptions.Fused ? "ONNX Runtime fused operators" : "standard operators only")}, {seconds:F1} s");
            AnsiConsole.MarkupLine($"outputs: {string.Join(", ", result.Outputs.Where(o => !o.StartsWith("present.", StringComparison.Ordinal)))}{(result.Outputs.Any(o => o.StartsWith("present.", StringComparison.Ordinal)) ? " + the key/value cache (past_key_values.N → present.N)" : "")}");
            if (result.DecoderPath is { } decoderPath) AnsiConsole.MarkupLine($"decoder (key/value cache): [bold]{Markup.Escape(decoderPath)}[/]; its cross-attention keys and values, once per input: [bold]{Markup.Escape(result.CrossPath!)}[/]");
            var fused = result.Operators.Where(o => o.Key.StartsWith("com.microsoft.", StringComparison.Ordinal)).Select(o => $"{o.Key["com.microsoft.".Length..]} ×{o.Value}");
            AnsiConsole.MarkupLine($"nodes: {result.Operators.Values.Sum()}{(exportOptions.Fused ? $"; fused: {string.Join(", ", fused)}" : "")}");
            if (result.Quantization is { } q)
                AnsiConsole.MarkupLine($"int8: {q.MatMuls} dense layers ({q.BiasesFused} with their bias), weights {q.FloatBytesBefore / 1048576.0:F1} → {q.Int8BytesAfter / 1048576.0:F1} MiB");
            if (!r.GetValue(noVerify))
            {
                var table = new Table().Border(TableBorder.Simple).AddColumn("output").AddColumn("max |ORT − torch|").AddColumn("max |torch|").AddColumn("relative");
                foreach (var c in classifier is not null ? OnnxExport.Verify(classifier.Model, file) : OnnxExport.Verify(encoder, file))
                    table.AddRow(c.Output, c.MaxAbsDiff.ToString("G3"), c.MaxAbsExpected.ToString("G3"), (c.MaxAbsDiff / Math.Max(c.MaxAbsExpected, 1e-30)).ToString("G3"));
                AnsiConsole.MarkupLine("checked on random ids (batch 2 × 16, one row half padding):");
                AnsiConsole.Write(table);
            }
            string use = taskFile?.Task is { } taskName
                ? $"b4s clue predict {taskName} --model {target} --engine onnx   (the head runs in TorchSharp on the graph's hidden states{(classifier is not null ? "; the graph's logits output is the classifier's own" : "")})"
                : classifier is not null
                ? $"new OnnxRuntimeEncoder(\"{target}\").Run([\"logits\"], ids, segments, mask), or TextClassifier.Predict(examples, logits) in C#"
                : encoder.Application is Application.LanguageModel or Application.UniLM && !result.Outputs.Contains("present.0.key")
                ? $"{encoder.Family.Name} decodes without a key/value cache, so this graph gives full-sequence logits; generate with the torch engine"
                : encoder.Application is Application.LanguageModel or Application.UniLM or Application.Seq2Seq
                ? $"b4s generate --model {target} --engine onnx \"prompt\"   (or new {(encoder.Application == Application.Seq2Seq ? "OnnxSeq2SeqModel" : "OnnxCausalLanguageModel")}(\"{target}\") in C#)"
                : $"b4s embed --model {target} --engine onnx \"text\"   (or new OnnxRuntimeEncoder(\"{target}\") in C#)";
            AnsiConsole.MarkupLine($"use it: {Markup.Escape(use)}");
            return CliErrors.Ok;
        }));
        return new Command("export", "Export a model for deployment") { onnx };
    }
}
