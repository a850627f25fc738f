namespace Bert4Sharp.Cli;

using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using Bert4Sharp.Explain;
using Bert4Sharp.Models;
using Bert4Sharp.Runtime;
using Bert4Sharp.Tasks.Clue;
using Bert4Sharp.Training;
using Spectre.Console;

/// <summary>
/// <c>b4s explain</c>: integrated gradients (<see cref="IntegratedGradients"/>) for a task model from <c>b4s clue train</c>
/// (task.json with a classifier head) or for a masked-LM model (text with [MASK]); a token table on the console and an
/// HTML page or PNG heatmap (docs/explain.md).
/// </summary>
internal static class ExplainCommand
{
    public static Command Create()
    {
        var model = new Option<string>("--model") { Description = "A classifier directory from `b4s clue train` (<output>/model: task.json, head.safetensors) or a masked-LM model directory (config + weights + vocab.txt)", Required = true };
        var text = new Argument<string[]>("text") { Arity = ArgumentArity.OneOrMore, Description = "The texts to explain, each on its own (for a masked-LM model: with [MASK]); the output holds one row per text" };
        var pair = new Option<string?>("--pair") { Description = "Text B of a sentence-pair classifier" };
        var output = new Option<string?>("--output") { Description = "Write the explanation: FILE.html (the text coloured by attribution) or FILE.png (heatmap)" };
        var target = new Option<string?>("--target") { Description = "Label to explain (classifier; default: the predicted one) or token (masked LM; default: the top prediction)" };
        var mask = new Option<int>("--mask") { Description = "Which [MASK] of the text to explain (0: the first)", DefaultValueFactory = _ => 0 };
        var baseline = new Option<string>("--baseline") { Description = "The path's start for content tokens: zero (zero embedding), pad ([PAD]'s row) or mask ([MASK]'s row); [CLS]/[SEP]/[MASK] keep their own", DefaultValueFactory = _ => "zero" };
        baseline.AcceptOnlyFromAmong("zero", "pad", "mask");
        var steps = new Option<int>("--steps") { Description = "Gauss–Legendre nodes or Riemann intervals", DefaultValueFactory = _ => 32 };
        var method = new Option<string>("--method") { Description = "gauss (Gauss–Legendre) or riemann (see --rule)", DefaultValueFactory = _ => "gauss" };
        method.AcceptOnlyFromAmong("gauss", "riemann");
        var rule = new Option<string>("--rule") { Description = "Riemann rule: right (the paper's), left, midpoint or trapezoid", DefaultValueFactory = _ => "right" };
        rule.AcceptOnlyFromAmong("right", "left", "midpoint", "trapezoid");
        var score = new Option<string>("--score") { Description = "What is explained: probability (softmax, as the post) or logit", DefaultValueFactory = _ => "probability" };
        score.AcceptOnlyFromAmong("probability", "logit");
        var batch = new Option<int>("--batch") { Description = "Interpolation points per forward/backward pass", DefaultValueFactory = _ => 16 };
        var tolerance = new Option<double>("--tolerance") { Description = "Completeness tolerance: |Σ attributions − (f(x) − f(x′))| relative to |f(x) − f(x′)|", DefaultValueFactory = _ => 0.05 };
        var strict = new Option<bool>("--strict") { Description = "Fail (exit 1) when the completeness gap is above the tolerance instead of warning" };
        var labelNames = new Option<string?>("--label-names") { Description = "Label names: a TNEWS-style labels.json ({\"label\", \"label_des\"} per line) or one name per line in label order" };
        var threads = new Option<int?>("--threads") { Description = "CPU threads for libtorch" };
        var json = new Option<bool>("--json") { Description = "Machine-readable output" };
        var cmd = new Command("explain", "Integrated gradients: which tokens raise or lower a classifier's class (or a [MASK] prediction); table, HTML or PNG")
            { text, model, pair, output, target, mask, baseline, steps, method, rule, score, batch, tolerance, strict, labelNames, threads, json };
        cmd.SetAction(CliErrors.Wrap(r =>
        {
            if (r.GetValue(threads) is int t) TorchInfo.SetThreads(t);
            string dir = r.GetValue(model)!;
            var inputs = r.GetValue(text)!;
            string? file = r.GetValue(output);
            string kind = file is null ? "" : Path.GetExtension(file).ToLowerInvariant();
            if (file is not null && kind is not (".html" or ".htm" or ".png"))
                throw new ArgumentException($"--output must end in .html or .png, got '{file}'");
            if (!Directory.Exists(dir)) throw new DirectoryNotFoundException($"{dir} does not exist: give a model directory (a `b4s clue train` <output>/model, or a masked-LM model)");
            var options = new IntegratedGradientsOptions
            {
                Steps = r.GetValue(steps), BatchSize = r.GetValue(batch), Tolerance = r.GetValue(tolerance),
                Method = r.GetValue(method) == "gauss" ? IntegrationMethod.GaussLegendre : r.GetValue(rule) switch
                {
                    "left" => IntegrationMethod.RiemannLeft, "midpoint" => IntegrationMethod.RiemannMidpoint, "trapezoid" => IntegrationMethod.RiemannTrapezoid, _ => IntegrationMethod.RiemannRight,
                },
                Baseline = r.GetValue(baseline) switch { "pad" => IntegrationBaseline.Padding, "mask" => IntegrationBaseline.Mask, _ => IntegrationBaseline.Zero },
                Score = r.GetValue(score) == "logit" ? AttributionScore.Logit : AttributionScore.Probability,
            };
            if (options.Steps < 1) throw new ArgumentException($"--steps must be at least 1, got {options.Steps}");
            if (options.BatchSize < 1) throw new ArgumentException($"--batch must be at least 1, got {options.BatchSize}");
            var explained = new List<TokenAttributions>();
            string what;
            if (File.Exists(Path.Combine(dir, "task.json")))
            {
                if (r.GetValue(mask) != 0) throw new ArgumentException("--mask applies to masked-LM models; this is a classifier (task.json)");
                using var classifier = TextClassifier.Load(dir);
                IReadOnlyList<string>? names = r.GetValue(labelNames) is string ln ? LabelNames(ln, classifier.Labels) : null;
                int? index = null;
                if (r.GetValue(target) is string label)
                {
                    int i = IndexOf(classifier.Labels, label);
                    if (i < 0 && names is not null) i = IndexOf(names, label);
                    index = i >= 0 ? i : throw new ArgumentException($"--target '{label}' is not a label of this model; labels: {string.Join(", ", classifier.Labels.Select((l, k) => names is null ? l : $"{l} ({names[k]})"))}");
                }
                foreach (string input in inputs)
                    explained.Add(IntegratedGradients.Explain(classifier.Model, classifier.Tokenizer, input, r.GetValue(pair), index, names ?? classifier.Labels, options with { MaxLength = classifier.Options.MaxLength }));
                what = $"{classifier.Options.Task} classifier";
            }
            else
            {
                if (r.GetValue(pair) is not null) throw new ArgumentException($"--pair applies to sentence-pair classifiers; {dir} has no task.json, so it is read as a masked-LM model");
                if (r.GetValue(labelNames) is not null) throw new ArgumentException($"--label-names applies to classifiers; {dir} has no task.json, so it is read as a masked-LM model");
                var pipeline = TransformerPipeline.Load(dir, null, Application.MaskedLM);
                foreach (string input in inputs)
                    explained.Add(IntegratedGradients.ExplainMask(pipeline.Model, pipeline.Tokenizer, input, r.GetValue(target), r.GetValue(mask), options));
                what = "masked LM";
            }
            if (file is not null)
            {
                var a = explained[0];
                string title = $"Integrated gradients: {what}, {a.Method} {a.Steps} steps, {a.Baseline} baseline";
                if (kind == ".png")
                {
                    var drawn = AttributionHeatmap.Save(file, explained, title);
                    if (!drawn.Characters) Console.Error.WriteLine($"b4s: note: no installed font has every token's glyph ({drawn.Font} tried), so the heatmap cells show token indices; write .html for the characters (CJK: install e.g. fonts-wqy-microhei)");
                }
                else AttributionHtml.Write(file, explained, title);
            }
            if (r.GetValue(json)) CliErrors.WriteJson(explained.Select(a => new
            {
                text = a.Text, pair = a.Pair, tokens = a.Tokens, attributions = a.Scores, norms = a.Norms, predicted = a.Predicted, predicted_probability = a.PredictedProbability,
                target = a.Target, target_probability = a.TargetProbability, score = a.Score.ToString().ToLowerInvariant(), input_score = a.InputScore, baseline_score = a.BaselineScore,
                sum = a.Sum, gap = a.Gap, relative_gap = a.RelativeGap, tolerance = a.Tolerance, complete = a.Complete, method = a.Method.ToString(), steps = a.Steps,
                baseline = a.Baseline.ToString(), seconds = a.Elapsed.TotalSeconds, output = file,
            }).ToList());
            else foreach (var a in explained) Print(a);
            if (file is not null && !r.GetValue(json)) Console.WriteLine($"wrote {file}");
            int incomplete = explained.Count(a => !a.Complete);
            if (incomplete > 0)
            {
                var worst = explained.MaxBy(a => a.RelativeGap)!;
                string message = $"{incomplete} of {explained.Count} explanations have a completeness gap above the tolerance {worst.Tolerance:P1} (worst {worst.RelativeGap:P2}): use more --steps or --method gauss";
                if (r.GetValue(strict)) { Console.Error.WriteLine("b4s: error: " + message); return CliErrors.Failure; }
                Console.Error.WriteLine("b4s: warning: " + message);
            }
            return CliErrors.Ok;
        }));
        return cmd;
    }

    static void Print(TokenAttributions a)
    {
        var inv = CultureInfo.InvariantCulture;
        double max = a.MaxMagnitude;
        var table = new Table().Border(TableBorder.Simple).AddColumn("#").AddColumn("token").AddColumn(new TableColumn("attribution").RightAligned())
            .AddColumn(new TableColumn("L2").RightAligned()).AddColumn("");
        for (int i = 0; i < a.Tokens.Count; i++)
        {
            double s = a.Scores[i];
            int n = max > 0 ? (int)Math.Round(12 * Math.Abs(s) / max) : 0;
            string bar = n == 0 ? "" : $"[{(s >= 0 ? "red" : "blue")}]{new string('█', n)}[/]";
            table.AddRow(i.ToString(inv), Markup.Escape(a.Tokens[i]), s.ToString("+0.00000;-0.00000;0", inv), a.Norms[i].ToString("F5", inv), bar);
        }
        AnsiConsole.Write(table);
        string mask = a.MaskPosition is int m ? $"[MASK] at token {m}: " : "";
        Console.WriteLine(string.Create(inv, $"{mask}predicted {a.Predicted} (p = {a.PredictedProbability:F4}); explained {a.Target} (p = {a.TargetProbability:F4}), f = {a.Score.ToString().ToLowerInvariant()}"));
        Console.WriteLine(a.DescribeCompleteness());
        Console.WriteLine(string.Create(inv, $"{a.Evaluations} gradient evaluations in {a.Elapsed.TotalSeconds:F2} s"));
    }

    static int IndexOf(IReadOnlyList<string> list, string value)
    {
        for (int i = 0; i < list.Count; i++) if (list[i] == value) return i;
        return -1;
    }

    /// <summary>"name (label)" for each label: from TNEWS-style JSON lines {label, label_des}, or one name per line in label order.</summary>
    static IReadOnlyList<string> LabelNames(string path, IReadOnlyList<string> labels)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"--label-names: {path} does not exist");
        var lines = File.ReadAllLines(path).Where(l => l.Trim().Length > 0).ToList();
        if (lines.Count > 0 && lines[0].TrimStart().StartsWith('{'))
        {
            var map = ClueReaders.TnewsLabelNames(path);
            return [.. labels.Select(l => map.TryGetValue(l, out var d) ? d : l)];
        }
        if (lines.Count != labels.Count) throw new InvalidDataException($"{path}: {lines.Count} names for a model with {labels.Count} labels");
        return lines;
    }
}
