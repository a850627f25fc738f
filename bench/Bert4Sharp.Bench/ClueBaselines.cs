namespace Bert4Sharp.Bench;

using System.Diagnostics;
using System.Globalization;
using System.Text.Encodings.Web;
using System.Text.Json;
using Bert4Sharp.Tasks.Clue;
using Microsoft.ML;
using Microsoft.ML.Trainers;
using Microsoft.ML.Transforms.Text;

/// <summary>
/// The peer baselines of the CLUE classification tasks — what a .NET user would pick today: ML.NET's
/// <c>FeaturizeText</c> with character 1–3-grams (word n-grams off: Chinese has no spaces, so ML.NET's word tokenizer
/// would see a whole sentence as one "word") and a maximum-entropy classifier (SDCA and/or L-BFGS), next to the majority
/// class of train, scored on dev.
///   dotnet run -c Release --project bench/Bert4Sharp.Bench -- clue-baselines [--data DIR] [--output results.json]
///       [--trainer lbfgs|sdca|both] [--tasks afqmc,tnews,...] [--threads N] [--lbfgs-iterations N] [--sdca-iterations N] [--l1 X] [--l2 X]
/// Inputs: a sentence pair is "sentence1 ‖ sentence2" (one bag, so the model cannot compare the two sides: a known
/// weakness of this baseline on matching tasks); CSL is "abstract ‖ keywords"; CLUEWSC2020 is
/// "span1 ‖ span2 ‖ text"; TNEWS is the title only (not DataCLUE's keywords). CMNLI has only its dev staged: it is
/// carved 80/20 by <see cref="ClueSplits.CarveByPremise{T}"/> exactly as `b4s clue train cmnli` carves it (no held-out sentence in train). OCNLI's
/// label "-" rows are dropped and counted.
/// </summary>
static class ClueBaselines
{
    /// <summary>The seven classification tasks, in CLUE order.</summary>
    public static readonly string[] Tasks = ["afqmc", "tnews", "iflytek", "ocnli", "cmnli", "csl", "cluewsc2020"];

    /// <summary>Separator between the parts of one input text.</summary>
    public const string Separator = " ‖ ";

    /// <summary>One input text and its label.</summary>
    public sealed record Example(string Text, string Label);

    /// <summary>A task's train and dev examples, and what was dropped or carved (for the log).</summary>
    public sealed record TaskData(string Task, IReadOnlyList<Example> Train, IReadOnlyList<Example> Dev, string Notes);

    /// <summary>One ML.NET model's dev accuracy and training time.</summary>
    public sealed record TrainerResult(string Trainer, double Accuracy, double TrainSeconds);

    /// <summary>One task's line of the table.</summary>
    public sealed record Result(string Task, int TrainCount, int DevCount, int Classes, string MajorityLabel, double MajorityAccuracy,
        IReadOnlyList<TrainerResult> MlNet, string Notes);

    /// <summary>Which ML.NET trainer(s) to run.</summary>
    public enum Trainer { Sdca, Lbfgs, Both }

    /// <summary>Options of the ML.NET side.</summary>
    /// <param name="Trainer">Maximum-entropy trainer(s).</param>
    /// <param name="Threads">ML.NET trainer threads (SDCA with more than one thread is not bit-reproducible).</param>
    /// <param name="Seed">MLContext seed.</param>
    /// <param name="SdcaIterations">SDCA's passes over the data (null: ML.NET's heuristic).</param>
    /// <param name="LbfgsIterations">L-BFGS iterations at most (ML.NET's default is unbounded, with tolerance 1e-7: many minutes on AFQMC).</param>
    /// <param name="L1">L1 weight of both trainers (ML.NET's L-BFGS default 1 left CSL and CLUEWSC at the majority class).</param>
    /// <param name="L2">L2 weight of both trainers.</param>
    public sealed record Options(Trainer Trainer = Trainer.Lbfgs, int Threads = 1, int Seed = 1, int? SdcaIterations = null, int LbfgsIterations = 100,
        double L1 = 0, double L2 = 1e-3);

    public static int Run(string[] args)
    {
        string? data = null, output = null;
        var tasks = Tasks.ToList();
        var options = new Options();
        for (int i = 0; i < args.Length; i++)
        {
            string Next() => i + 1 < args.Length ? args[++i] : throw new ArgumentException($"{args[i]} needs a value");
            switch (args[i])
            {
                case "--data": data = Next(); break;
                case "--output": output = Next(); break;
                case "--tasks": tasks = [.. Next().Split(',', StringSplitOptions.RemoveEmptyEntries)]; break;
                case "--sdca-iterations": options = options with { SdcaIterations = int.Parse(Next(), CultureInfo.InvariantCulture) }; break;
                case "--lbfgs-iterations": options = options with { LbfgsIterations = int.Parse(Next(), CultureInfo.InvariantCulture) }; break;
                case "--l1": options = options with { L1 = double.Parse(Next(), CultureInfo.InvariantCulture) }; break;
                case "--l2": options = options with { L2 = double.Parse(Next(), CultureInfo.InvariantCulture) }; break;
                case "--threads": options = options with { Threads = int.Parse(Next(), CultureInfo.InvariantCulture) }; break;
                case "--trainer":
                    options = options with
                    {
                        Trainer = Next() switch
                        {
                            "sdca" => Trainer.Sdca, "lbfgs" => Trainer.Lbfgs, "both" => Trainer.Both,
                            var t => throw new ArgumentException($"--trainer {t}: use sdca, lbfgs or both"),
                        },
                    };
                    break;
                default: throw new ArgumentException($"unknown option {args[i]} (clue-baselines [--data DIR] [--output FILE] [--trainer lbfgs|sdca|both] [--tasks a,b] [--threads N] [--lbfgs-iterations N] [--sdca-iterations N] [--l1 X] [--l2 X])");
            }
        }
        foreach (var t in tasks)
            if (!Tasks.Contains(t)) throw new ArgumentException($"clue-baselines: unknown task '{t}'; known: {string.Join(", ", Tasks)}");
        data ??= DefaultDataDirectory();

        Console.WriteLine($"ML.NET {MlNetVersion()}: FeaturizeText (char 1-3-grams, word n-grams off, L2 norm) + maximum entropy; {options.Threads} trainer thread(s); data {data}");
        Console.WriteLine($"{"task",-12} {"train",7} {"dev",6} {"classes",7} {"majority",9} {string.Join(" ", TrainerNames(options.Trainer).Select(n => $"{n,9} {"seconds",8}"))}");
        var results = new List<Result>();
        foreach (var task in tasks)
        {
            var d = Load(task, data);
            var r = Evaluate(d, options);
            results.Add(r);
            Console.WriteLine($"{r.Task,-12} {r.TrainCount,7} {r.DevCount,6} {r.Classes,7} {r.MajorityAccuracy,9:P1} {string.Join(" ", r.MlNet.Select(m => $"{m.Accuracy,9:P1} {m.TrainSeconds,8:F1}"))}");
            if (r.Notes.Length > 0) Console.WriteLine($"  {r.Notes}");
        }
        if (output is not null)
        {
            var report = new
            {
                mlnet = MlNetVersion()?.ToString(),
                featurizer = "FeaturizeText: char n-grams 1-3 (all lengths, marker characters), word n-grams off, lower case, L2 norm",
                cpu = CpuModel(),
                processors = Environment.ProcessorCount,
                trainer_threads = options.Threads,
                lbfgs_iterations = options.LbfgsIterations,
                sdca_iterations = options.SdcaIterations,
                l1 = options.L1,
                l2 = options.L2,
                results,
            };
            Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(output))!);
            File.WriteAllText(output, JsonSerializer.Serialize(report, new JsonSerializerOptions
            {
                WriteIndented = true, PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower, Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
            }));
            Console.WriteLine($"wrote {output}");
        }
        return 0;
    }

    static string? MlNetVersion() =>
        typeof(MLContext).Assembly.GetCustomAttributes(typeof(System.Reflection.AssemblyInformationalVersionAttribute), false)
            .OfType<System.Reflection.AssemblyInformationalVersionAttribute>().FirstOrDefault()?.InformationalVersion.Split('+')[0];

    static IEnumerable<string> TrainerNames(Trainer t) => t switch { Trainer.Sdca => ["sdca"], Trainer.Lbfgs => ["lbfgs"], _ => ["sdca", "lbfgs"] };

    /// <summary>$B4S_SHARED/data, else shared/data beside or above the working directory.</summary>
    internal static string DefaultDataDirectory()
    {
        string? shared = Environment.GetEnvironmentVariable("B4S_SHARED");
        if (shared is not null) return Path.Combine(shared, "data");
        for (var d = new DirectoryInfo(Environment.CurrentDirectory); d is not null; d = d.Parent)
            if (Directory.Exists(Path.Combine(d.FullName, "shared", "data"))) return Path.Combine(d.FullName, "shared", "data");
        throw new DirectoryNotFoundException("no CLUE data: pass --data DIR (the staged shared/data) or set B4S_SHARED");
    }

    /// <summary>The CPU's model name from /proc/cpuinfo (or "unknown").</summary>
    public static string CpuModel()
    {
        try
        {
            foreach (var line in File.ReadLines("/proc/cpuinfo"))
                if (line.StartsWith("model name", StringComparison.Ordinal)) return line[(line.IndexOf(':') + 1)..].Trim();
        }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
        return "unknown";
    }

    /// <summary>Reads a task's train and dev through <see cref="ClueReaders"/> (staged files as <see cref="ClueTasks"/> lists them) into input texts.</summary>
    public static TaskData Load(string task, string dataDir)
    {
        string F(string split) => Path.Combine(dataDir, ClueTasks.Get(task).Split(split)?.File ?? throw new InvalidOperationException($"{task} has no staged {split} split"));
        static string Pair(SentencePairRecord r) => r.Sentence1 + Separator + r.Sentence2;
        static Example Ex(string text, string? label) => new(text, label ?? throw new InvalidDataException("a labelled split has a record without a label"));
        var drop = new ClueReadOptions(DropUnknownLabels: true);
        switch (task)
        {
            case "afqmc":
                return new(task, [.. ClueReaders.AfqmcCsv(F("train")).Records.Select(r => Ex(Pair(r), r.Label))],
                    [.. ClueReaders.AfqmcJson(F("dev")).Records.Select(r => Ex(Pair(r), r.Label))], "");
            case "tnews":
            {
                var labels = ClueReaders.TnewsLabels(Path.Combine(dataDir, "tnews", "labels.json"));
                return new(task, [.. ClueReaders.Tnews(F("train"), labels).Records.Select(r => Ex(r.Sentence, r.Label))],
                    [.. ClueReaders.Tnews(F("dev"), labels).Records.Select(r => Ex(r.Sentence, r.Label))], "title only (DataCLUE keywords not used)");
            }
            case "iflytek":
                return new(task, [.. ClueReaders.Iflytek(F("train")).Records.Select(r => Ex(r.Sentence, r.Label))],
                    [.. ClueReaders.Iflytek(F("dev")).Records.Select(r => Ex(r.Sentence, r.Label))], "FewCLUE subsets");
            case "ocnli":
            {
                var train = ClueReaders.Ocnli(F("train"), drop);
                var dev = ClueReaders.Ocnli(F("dev"), drop);
                return new(task, [.. train.Records.Select(r => Ex(Pair(r), r.Label))], [.. dev.Records.Select(r => Ex(Pair(r), r.Label))],
                    $"dropped label '-': {train.Report.DroppedUnknownLabel} train, {dev.Report.DroppedUnknownLabel} dev");
            }
            case "cmnli":
            {
                var all = ClueReaders.CmnliTsv(F("dev"), drop);
                var carve = ClueSplits.CarveByPremise(all.Records, r => r.Sentence1, r => r.Sentence2);
                return new(task, [.. carve.Train.Select(r => Ex(Pair(r), r.Label))], [.. carve.Dev.Select(r => Ex(Pair(r), r.Label))],
                    $"only dev staged: carved 80/20 by SHA-256 of the normalised premise, as b4s clue train cmnli ({all.Records.Count} rows, {all.Report.DroppedUnknownLabel} dropped for unknown labels; " +
                    $"{carve.CrossSideRemoved} training pairs removed for sharing a sentence with the held-out ones)");
            }
            case "csl":
                static string Csl(CslRecord r) => r.Abstract + Separator + string.Join("，", r.Keywords);
                return new(task, [.. ClueReaders.Csl(F("train")).Records.Select(r => Ex(Csl(r), r.Label))],
                    [.. ClueReaders.Csl(F("dev")).Records.Select(r => Ex(Csl(r), r.Label))], "FewCLUE subsets");
            case "cluewsc2020":
                static string Wsc(WscRecord r) => r.Span1.Text + Separator + r.Span2.Text + Separator + r.Text;
                return new(task, [.. ClueReaders.Wsc(F("train")).Records.Select(r => Ex(Wsc(r), r.Label))],
                    [.. ClueReaders.Wsc(F("dev")).Records.Select(r => Ex(Wsc(r), r.Label))], "");
            default:
                throw new ArgumentException($"clue-baselines: unknown task '{task}'; known: {string.Join(", ", Tasks)}");
        }
    }

    /// <summary>The most frequent train label (ties: the ordinally smallest) and its accuracy on dev.</summary>
    public static (string Label, double Accuracy) Majority(IReadOnlyList<Example> train, IReadOnlyList<Example> dev)
    {
        if (train.Count == 0 || dev.Count == 0) throw new ArgumentException("the majority baseline needs train and dev examples");
        string label = train.GroupBy(e => e.Label).OrderByDescending(g => g.Count()).ThenBy(g => g.Key, StringComparer.Ordinal).First().Key;
        return (label, (double)dev.Count(e => e.Label == label) / dev.Count);
    }

    /// <summary>The majority class and the ML.NET model(s) on one task.</summary>
    public static Result Evaluate(TaskData d, Options options)
    {
        var (label, majority) = Majority(d.Train, d.Dev);
        var ml = new List<TrainerResult>();
        foreach (var name in TrainerNames(options.Trainer))
            ml.Add(TrainAndScore(d.Train, d.Dev, name == "sdca" ? Trainer.Sdca : Trainer.Lbfgs, options));
        return new Result(d.Task, d.Train.Count, d.Dev.Count, d.Train.Select(e => e.Label).Distinct().Count(), label, majority, ml, d.Notes);
    }

    sealed class Row
    {
        public string Text { get; set; } = "";
        public string Label { get; set; } = "";
    }

    sealed class Prediction
    {
        public string Label { get; set; } = "";
        public string PredictedLabel { get; set; } = "";
    }

    /// <summary>Trains FeaturizeText + one maximum-entropy trainer on <paramref name="train"/>; dev accuracy (a dev label never seen in train counts as wrong) and training seconds.</summary>
    public static TrainerResult TrainAndScore(IReadOnlyList<Example> train, IReadOnlyList<Example> dev, Trainer trainer, Options options)
    {
        if (trainer == Trainer.Both) throw new ArgumentException("one trainer at a time", nameof(trainer));
        var ctx = new MLContext(seed: options.Seed);
        var trainView = ctx.Data.LoadFromEnumerable(train.Select(e => new Row { Text = e.Text, Label = e.Label }));
        var devView = ctx.Data.LoadFromEnumerable(dev.Select(e => new Row { Text = e.Text, Label = e.Label }));
        var featurize = new TextFeaturizingEstimator.Options
        {
            WordFeatureExtractor = null,
            CharFeatureExtractor = new WordBagEstimator.Options { NgramLength = 3, UseAllLengths = true },
            CaseMode = TextNormalizingEstimator.CaseMode.Lower,
            KeepPunctuations = true,
            KeepNumbers = true,
            Norm = TextFeaturizingEstimator.NormFunction.L2,
        };
        IEstimator<ITransformer> head = trainer == Trainer.Sdca
            ? ctx.MulticlassClassification.Trainers.SdcaMaximumEntropy(new SdcaMaximumEntropyMulticlassTrainer.Options
            {
                LabelColumnName = "LabelKey", FeatureColumnName = "Features", NumberOfThreads = options.Threads,
                MaximumNumberOfIterations = options.SdcaIterations,
                L1Regularization = (float)options.L1, L2Regularization = (float)options.L2,
            })
            : ctx.MulticlassClassification.Trainers.LbfgsMaximumEntropy(new LbfgsMaximumEntropyMulticlassTrainer.Options
            {
                LabelColumnName = "LabelKey", FeatureColumnName = "Features", NumberOfThreads = options.Threads,
                MaximumNumberOfIterations = options.LbfgsIterations,
                L1Regularization = (float)options.L1, L2Regularization = (float)options.L2,
            });
        var pipeline = ctx.Transforms.Conversion.MapValueToKey("LabelKey", nameof(Row.Label))
            .Append(ctx.Transforms.Text.FeaturizeText("Features", featurize, nameof(Row.Text)))
            .Append(head)
            .Append(ctx.Transforms.Conversion.MapKeyToValue(nameof(Prediction.PredictedLabel)));
        var sw = Stopwatch.StartNew();
        var model = pipeline.Fit(trainView);
        double seconds = sw.Elapsed.TotalSeconds;
        var predictions = ctx.Data.CreateEnumerable<Prediction>(model.Transform(devView), reuseRowObject: false).ToList();
        int correct = predictions.Count(p => p.PredictedLabel == p.Label);
        return new TrainerResult(trainer == Trainer.Sdca ? "sdca" : "lbfgs", (double)correct / dev.Count, seconds);
    }
}
