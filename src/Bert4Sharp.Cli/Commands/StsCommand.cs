namespace Bert4Sharp.Cli;

using System.CommandLine;
using System.Globalization;
using Bert4Sharp.Embeddings;
using Bert4Sharp.Models;
using Bert4Sharp.Tasks;
using Bert4Sharp.Training;

/// <summary>
/// <c>b4s sts</c>: the SimCSE post's similarity table (Spearman on ATEC, BQ, LCQMC, PAWSX, STS-B) for a model, and
/// <c>b4s sts train</c>: SimCSE / supervised SimCSE / CoSENT training (docs/embeddings.md).
/// </summary>
internal static class StsCommand
{
    static Option<string> DataOption() => new("--data") { Description = "The staged datasets", DefaultValueFactory = _ => Path.Combine("..", "shared", "data") };

    public static Command Create()
    {
        var model = new Option<string>("--model") { Description = "Model directory (config + weights + vocab.txt)", Required = true };
        var data = DataOption();
        var pooling = new Option<string>("--pooling") { Description = "Poolings, comma-separated: first (pooler, else [CLS]), cls, mean, max, first-last-avg", DefaultValueFactory = _ => "cls,mean,first-last-avg" };
        var whitening = new Option<string>("--whitening") { Description = "Whitening settings, comma-separated: 0 = none, k = BERT-whitening keeping k dimensions (fitted on each task's own sentences)", DefaultValueFactory = _ => "0" };
        var wrd = new Option<bool>("--wrd") { Description = "Also score pairs by Word Mover's and Word Rotator's Distance over the final token states (exact transport)" };
        var tasks = new Option<string>("--tasks") { Description = "Tasks, comma-separated", DefaultValueFactory = _ => string.Join(",", StsTask.All.Select(t => t.Name.ToLowerInvariant())) };
        var limit = new Option<int?>("--limit") { Description = "Only the first N pairs of each task (a quick look)" };
        var maxLength = new Option<int>("--max-length") { Description = "Tokens per sentence", DefaultValueFactory = _ => 64 };
        var batch = new Option<int>("--batch-size") { Description = "Sentences per forward pass", DefaultValueFactory = _ => 64 };
        var json = new Option<string?>("--json") { Description = "Also write the rows as JSON" };
        var label = new Option<string?>("--label") { Description = "Prefix of every row name in the table (e.g. the model's name)" };
        var cmd = new Command("sts", "Spearman correlation of cosine similarity on the Chinese STS tasks (ATEC, BQ, LCQMC, PAWSX, STS-B), as in the SimCSE post's table")
            { model, data, pooling, whitening, wrd, tasks, limit, maxLength, batch, json, label };
        cmd.Subcommands.Add(Train());
        cmd.SetAction(CliErrors.Wrap(r =>
        {
            var options = new StsBenchmarkOptions
            {
                Poolings = [.. Split(r.GetValue(pooling)!).Select(StsBenchmark.ParsePooling)],
                Whitening = [.. Split(r.GetValue(whitening)!).Select(w => int.TryParse(w, CultureInfo.InvariantCulture, out int k) && k >= 0 ? k
                    : throw new ArgumentException($"--whitening: '{w}' is not a number of dimensions (0 = no whitening)"))],
                WordMover = r.GetValue(wrd), Tasks = [.. Split(r.GetValue(tasks)!).Select(StsTask.Get)], Limit = r.GetValue(limit),
            };
            string dataDir = RequireData(r.GetValue(data)!);
            var encoder = SentenceEncoder.Load(r.GetValue(model)!, new SentenceEncoderOptions { MaxLength = r.GetValue(maxLength), BatchSize = r.GetValue(batch) }, whitening: false);
            Console.WriteLine($"model: {r.GetValue(model)} ({encoder.Encoder.Engine}, hidden {encoder.Encoder.HiddenSize}); Spearman × 100 on the {options.Split} splits");
            var rows = StsBenchmark.Run(encoder, dataDir, options, Console.WriteLine);
            if (r.GetValue(label) is string prefix) rows = [.. rows.Select(x => x with { Method = $"{prefix}, {x.Method}" })];
            Console.WriteLine();
            Console.Write(StsBenchmark.Markdown(rows, options.Tasks));
            static double? Finite(double v) => double.IsFinite(v) ? v : null;   // ρ is NaN when a side is constant (e.g. --limit over one label)
            if (r.GetValue(json) is string path)
                ClueRun.WriteJson(path, new { model = r.GetValue(model), split = options.Split, limit = options.Limit,
                    rows = rows.Select(x => new { method = x.Method, scores = x.Scores.ToDictionary(kv => kv.Key, kv => Finite(kv.Value)), average = Finite(x.Average) }) });
            return CliErrors.Ok;
        }));
        return cmd;
    }

    static Command Train()
    {
        var model = new Option<string>("--model") { Description = "The encoder to start from (config + weights + vocab.txt)", Required = true };
        var output = new Option<string>("--output") { Description = "Run directory; the trained model goes to <output>/model", Required = true };
        var objective = new Option<string>("--objective") { Description = "simcse (unsupervised), sup-simcse (NLI triples) or cosent (labelled pairs)", Required = true };
        var input = new Option<string?>("--input") { Description = "Training data: simcse one sentence a line; cosent 'sentence1<TAB>sentence2<TAB>score' lines. Default: see docs/embeddings.md (NLI / AFQMC sentences, OCNLI+CMNLI triples, STS-B train)" };
        var data = DataOption();
        var pooling = new Option<string>("--pooling") { Description = "The pooling trained (and saved with the model)", DefaultValueFactory = _ => "cls" };
        var minutes = new Option<double?>("--minutes") { Description = "Time budget" };
        var maxSteps = new Option<long?>("--max-steps") { Description = "Optimizer steps at most" };
        var epochs = new Option<int>("--epochs") { Description = "Epochs at most", DefaultValueFactory = _ => 1 };
        var batch = new Option<int>("--batch-size") { Description = "Sentences / triples / pairs per batch", DefaultValueFactory = _ => 64 };
        var lr = new Option<double>("--learning-rate") { Description = "Peak learning rate", DefaultValueFactory = _ => 1e-4 };
        var maxLength = new Option<int>("--max-length") { Description = "Tokens per sentence", DefaultValueFactory = _ => 64 };
        var seed = new Option<int>("--seed") { Description = "Seed", DefaultValueFactory = _ => 42 };
        var overwrite = new Option<bool>("--overwrite") { Description = "Replace a previous run in the output directory" };
        var cmd = new Command("train", "Train sentence vectors with SimCSE, supervised SimCSE or CoSENT; sentences of the STS evaluation sets are removed from the training data")
            { model, output, objective, input, data, pooling, minutes, maxSteps, epochs, batch, lr, maxLength, seed, overwrite };
        cmd.SetAction(CliErrors.Wrap(r =>
        {
            var kind = r.GetValue(objective)!.ToLowerInvariant() switch
            {
                "simcse" => EmbeddingObjective.SimCse, "sup-simcse" => EmbeddingObjective.SupervisedSimCse, "cosent" => EmbeddingObjective.CoSent,
                var other => throw new ArgumentException($"--objective: unknown '{other}' (simcse, sup-simcse or cosent)"),
            };
            string dataDir = RequireData(r.GetValue(data)!), outDir = Path.GetFullPath(r.GetValue(output)!);
            if (kind == EmbeddingObjective.SupervisedSimCse && r.GetValue(input) is not null)
                throw new ArgumentException("--input is not read by sup-simcse: its triples come from OCNLI train and CMNLI under --data");
            var encoder = SentenceEncoder.Load(r.GetValue(model)!, new SentenceEncoderOptions { Pooling = StsBenchmark.ParsePooling(r.GetValue(pooling)!), MaxLength = r.GetValue(maxLength) }, whitening: false);
            var o = new EmbeddingTrainingOptions
            {
                Output = outDir, Minutes = r.GetValue(minutes), MaxSteps = r.GetValue(maxSteps), Epochs = r.GetValue(epochs), BatchSize = r.GetValue(batch),
                LearningRate = r.GetValue(lr), MaxLength = r.GetValue(maxLength), Seed = r.GetValue(seed), Overwrite = r.GetValue(overwrite),
                Progress = Console.IsOutputRedirected ? ProgressDisplay.Lines : ProgressDisplay.Bar,
            };
            var held = EmbeddingTrainingData.EvaluationSentences(dataDir, Console.WriteLine);
            var result = kind switch
            {
                EmbeddingObjective.SimCse => SentenceEmbeddingTraining.SimCse(encoder, EmbeddingTrainingData.Sentences(r.GetValue(input), dataDir, held, Console.WriteLine), o, Console.WriteLine),
                EmbeddingObjective.SupervisedSimCse => SentenceEmbeddingTraining.SupervisedSimCse(encoder, EmbeddingTrainingData.NliTriples(dataDir, held, Console.WriteLine), o, Console.WriteLine),
                _ => SentenceEmbeddingTraining.CoSent(encoder, EmbeddingTrainingData.Pairs(r.GetValue(input), dataDir, held, Console.WriteLine), o, Console.WriteLine),
            };
            string saved = Path.Combine(outDir, "model");
            TransformerPipeline.Create(encoder.Encoder, encoder.Tokenizer).SavePretrained(saved);
            (encoder.Options with { MaxLength = null }).Save(saved);        // the training length is not an inference limit
            Console.WriteLine($"{result.Steps} steps in {result.Elapsed.TotalMinutes:F1} min ({result.StopReason}); final loss {result.Losses.TakeLast(25).DefaultIfEmpty(double.NaN).Average():F4} (mean of the last 25 steps); model → {saved}");
            return CliErrors.Ok;
        }));
        return cmd;
    }

    static string RequireData(string dir) => Directory.Exists(dir) ? dir
        : throw new DirectoryNotFoundException($"{Path.GetFullPath(dir)} does not exist: pass --data with the staged datasets (../shared/data)");

    static IEnumerable<string> Split(string list) => list.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
}
