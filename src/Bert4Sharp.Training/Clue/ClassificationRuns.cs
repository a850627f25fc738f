namespace Bert4Sharp.Training;

using System.Globalization;
using System.Text;
using Bert4Sharp.Data;
using Bert4Sharp.Models;
using Bert4Sharp.Tasks;
using Bert4Sharp.Tasks.Clue;

/// <summary>
/// The CLUE classification tasks (<c>b4s clue train afqmc|tnews|iflytek|ocnli|cmnli|csl|cluewsc2020</c>): a
/// <see cref="TextClassifier"/> over <c>[CLS] a [SEP] (b [SEP])</c>, accuracy on dev beside the majority-class accuracy,
/// CLUE submission lines <c>{"id": …, "label": "…"}</c>. <c>--head</c> takes a pooling (<c>first</c> (default), <c>cls</c>,
/// <c>mean</c>, <c>max</c>, <c>first-last-avg</c>) and/or <c>weighted</c> (inverse-frequency class weights), comma-separated.
/// </summary>
public sealed class ClassificationRun : IClueRun
{
    readonly string folder;
    readonly int maxLength;
    readonly Func<string, string>? trainFile;
    readonly Func<string, string> devFile;
    readonly Func<string, string> defaultInput;
    readonly Func<string, IReadOnlyList<string>> labels;
    readonly Func<string, ClueReadOptions, (List<TextExample> Examples, ClueReadReport Report)> read;

    ClassificationRun(string task, string folder, string description, int maxLength, string? train, string dev, string? test,
        Func<string, IReadOnlyList<string>> labels, Func<string, ClueReadOptions, (List<TextExample>, ClueReadReport)> read)
    {
        Task = task;
        this.folder = folder;
        Description = description;
        this.maxLength = maxLength;
        trainFile = train is null ? null : d => Path.Combine(d, folder, train);
        devFile = d => Path.Combine(d, folder, dev);
        defaultInput = d => Path.Combine(d, folder, test ?? dev);
        this.labels = labels;
        this.read = read;
    }

    static readonly IReadOnlyList<string> NliLabels = ["entailment", "neutral", "contradiction"];

    /// <summary>The seven runs, in CLUE order.</summary>
    public static IReadOnlyList<ClassificationRun> All { get; } =
    [
        new("afqmc", "afqmc", "AFQMC question-pair similarity: sentence-pair classifier; accuracy on dev (train CSV, dev JSON)", 64, "train.csv", "dev.json", "test.json",
            _ => ["0", "1"], (p, o) => Pairs(p.EndsWith(".csv", StringComparison.OrdinalIgnoreCase) ? ClueReaders.AfqmcCsv(p, o) : ClueReaders.AfqmcJson(p, o))),
        new("tnews", "tnews", "TNEWS news titles, 15 classes (labels.json): classifier; accuracy on dev (DataCLUE 10k/2k resample)", 64, "train.json", "dev.json", null,
            d => TextClassifier.SortLabels(ClueReaders.TnewsLabels(Path.Combine(d, "tnews", "labels.json"))),
            (p, o) => Sentences(ClueReaders.Tnews(p, TnewsLabelsBeside(p), o))),
        new("iflytek", "iflytek", "IFLYTEK app descriptions, 119 classes: classifier; accuracy on dev (FewCLUE splits)", 128, "train_few_all.json", "dev_few_all.json", null,
            _ => TextClassifier.SortLabels(ClueReaders.IflytekLabels), (p, o) => Sentences(ClueReaders.Iflytek(p, o))),
        new("ocnli", "ocnli", "OCNLI inference: sentence-pair classifier; accuracy on dev (train 10k; label '-' dropped)", 128, "train.10k.json", "dev.json", "test.json",
            _ => NliLabels, (p, o) => Pairs(ClueReaders.Ocnli(p, o))),
        new("cmnli", "cmnli", "CMNLI inference: sentence-pair classifier; accuracy on a held-out 20% of the staged dev (split by premise)", 128, null, "dev.txt", null,
            _ => NliLabels, (p, o) => Pairs(ClueReaders.CmnliTsv(p, o))),
        new("csl", "csl", "CSL keyword recognition: classifier over keywords [SEP] abstract; accuracy on dev (FewCLUE splits)", 256, "train_few_all.json", "dev_few_all.json", null,
            _ => ["0", "1"], (p, o) =>
            {
                var d = ClueReaders.Csl(p, o);
                return ([.. d.Records.Select(r => new TextExample(string.Join(KeywordSeparator, r.Keywords), r.Abstract, r.Label, r.Id))], d.Report);
            }),
        new("cluewsc2020", "cluewsc2020", "CLUEWSC2020 coreference: both spans marked [[…]] in the text, classifier; accuracy on dev", 128, "train.json", "dev.json", "test.json",
            _ => ["false", "true"], (p, o) =>
            {
                var d = ClueReaders.Wsc(p, o);
                return ([.. d.Records.Select(r => new TextExample(ClueClassificationData.MarkSpans(r.Text, r.Span1, r.Span2), null, r.Label,
                    r.Idx?.ToString(CultureInfo.InvariantCulture)))], d.Report);
            }),
    ];

    /// <summary>Between CSL keywords in text A (the full-width semicolon).</summary>
    public const string KeywordSeparator = "；";

    /// <inheritdoc/>
    public string Task { get; }

    /// <inheritdoc/>
    public string Description { get; }

    /// <inheritdoc/>
    public string DefaultInput(string dataDirectory) => defaultInput(dataDirectory);

    /// <summary>A <c>--head</c> value: pooling and class weighting.</summary>
    /// <exception cref="ArgumentException">An unknown word.</exception>
    public static (Pooling Pooling, bool ClassWeights) ParseHead(string? head)
    {
        var pooling = Pooling.First;
        bool weighted = false;
        foreach (string word in (head ?? "").Split([',', '+'], StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
            switch (word)
            {
                case "weighted": weighted = true; break;
                case "first": pooling = Pooling.First; break;
                case "cls": pooling = Pooling.Cls; break;
                case "mean": pooling = Pooling.Mean; break;
                case "max": pooling = Pooling.Max; break;
                case "first-last-avg": pooling = Pooling.FirstLastAverage; break;
                default: throw new ArgumentException($"classification heads are a pooling (first, cls, mean, max, first-last-avg) and/or 'weighted' (inverse-frequency class weights), comma-separated; not '{word}'");
            }
        return (pooling, weighted);
    }

    /// <summary>
    /// The task's training and dev examples as <c>b4s clue train</c> uses them (malformed lines skipped and counted, unknown
    /// labels dropped; CMNLI's staged dev carved 80/20 by premise).
    /// </summary>
    public (IReadOnlyList<TextExample> Train, IReadOnlyList<TextExample> Dev) Splits(string dataDirectory, Action<string> log)
    {
        var readOptions = new ClueReadOptions(MalformedPolicy.SkipAndCount, DropUnknownLabels: true);
        if (trainFile is { } tf) return (Read(tf(dataDirectory), readOptions, log), Read(devFile(dataDirectory), readOptions, log));
        var all = Read(devFile(dataDirectory), readOptions, log);
        var split = ClueSplits.CarveByPremise(all, x => x.Text, x => x.Pair);
        log($"{Task}: only dev is staged; carved 80/20 by a SHA-256 hash of the normalised premise (seed-independent, the same premise never on both sides): " +
            $"{split.Train.Count:N0} train, {split.Dev.Count:N0} dev; {split.CrossSideRemoved:N0} training pairs removed because one of their sentences occurs in dev");
        return (split.Train, split.Dev);
    }

    /// <inheritdoc/>
    public RunResult Train(ClueRunOptions o, Action<string> log, ProgressDisplay progress, CancellationToken cancellation = default)
    {
        var (pooling, weighted) = ParseHead(o.Head);
        var labelSet = labels(o.DataDirectory);
        var (allTrain, allDev) = Splits(o.DataDirectory, log);
        List<TextExample> train = ClueRun.Take(allTrain, o), dev = ClueRun.Take(allDev, o);
        if (trainFile is not null)
        {
            var overlap = HeldOutSplit.Disjoint(train, dev, PairText).Overlap;
            log(overlap > 0
                ? $"note: {overlap:N0} dev examples have the text of a training example (exact match after normalisation); dev is used as given"
                : "no dev example has the text of a training example (exact match after normalisation)");
        }
        log($"{train.Count:N0} training and {dev.Count:N0} dev examples, {labelSet.Count} labels");
        string majority = train.GroupBy(x => x.Label).OrderByDescending(g => g.Count()).ThenBy(g => g.Key, StringComparer.Ordinal).First().Key!;
        double majorityAccuracy = dev.Count == 0 ? 0 : (double)dev.Count(x => x.Label == majority) / dev.Count;
        var options = new TextClassifierOptions
        {
            Task = Task, Pooling = pooling, ClassWeights = weighted, MaxLength = o.MaxLength ?? maxLength, BatchSize = o.BatchSize ?? 32, Labels = labelSet,
        };
        var trained = TextClassifier.Train(train, dev, o, options, log, progress, cancellation);
        using var classifier = trained.Classifier;
        var predicted = classifier.Predict(dev);
        double accuracy = ClueMetrics.Accuracy(dev.Select(x => x.Label!).ToList(), predicted.Select(p => p.Label).ToList());
        string dir = classifier.Save(Path.Combine(o.Output, "model"));
        WritePredictions(Path.Combine(o.Output, "dev_predictions.json"), dev, predicted);
        var metrics = new Dictionary<string, double> { ["accuracy"] = accuracy, ["majority_accuracy"] = majorityAccuracy };
        log($"{trained.Result.StopReason}: {trained.Result.Steps} steps");
        log($"{ClueRun.DescribeResult(trained.Evaluation, "accuracy")}: {accuracy:P2}; majority class ('{majority}') on dev: {majorityAccuracy:P2}; model saved to {dir}");
        return new RunResult(trained.Result, metrics, o.Output);
    }

    /// <inheritdoc/>
    public int Predict(string modelDirectory, string input, string output, Action<string> log, int? limit = null, IEncoder? engine = null)
    {
        using var classifier = TextClassifier.Load(modelDirectory, Task, engine);
        var records = ClueRun.Take(Read(input, ClueReadOptions.Default, log), limit);
        var predicted = classifier.Predict(records);
        WritePredictions(output, records, predicted);
        log($"{records.Count:N0} examples → {output} ({string.Join(", ", predicted.GroupBy(p => p.Label).OrderByDescending(g => g.Count()).Take(5).Select(g => $"'{g.Key}'×{g.Count()}"))})");
        return records.Count;
    }

    List<TextExample> Read(string path, ClueReadOptions options, Action<string> log)
    {
        var (examples, report) = read(path, options);
        log(report.ToString());
        return examples;
    }

    /// <summary>labels.json beside a TNEWS file, when there is one (a file elsewhere is read without a label check).</summary>
    static IReadOnlySet<string>? TnewsLabelsBeside(string path)
    {
        string labels = Path.Combine(Path.GetDirectoryName(Path.GetFullPath(path))!, "labels.json");
        return File.Exists(labels) ? ClueReaders.TnewsLabels(labels) : null;
    }

    static string PairText(TextExample x) => x.Pair is null ? x.Text : x.Text + "\t" + x.Pair;

    static (List<TextExample>, ClueReadReport) Pairs(ClueData<SentencePairRecord> d) =>
        ([.. d.Records.Select(r => new TextExample(r.Sentence1, r.Sentence2, r.Label, r.Id))], d.Report);

    static (List<TextExample>, ClueReadReport) Sentences(ClueData<SentenceRecord> d) =>
        ([.. d.Records.Select(r => new TextExample(r.Sentence, null, r.Label, r.Id))], d.Report);

    static void WritePredictions(string path, IReadOnlyList<TextExample> examples, IReadOnlyList<ClassPrediction> predicted) =>
        ClueRun.WriteJsonLines(path, examples.Select((x, i) => (object)new { id = ClueRun.SubmissionId(x.Id, i), label = predicted[i].Label }));
}

/// <summary>The data preparation of the classification runs that is more than reading: CLUEWSC span marking (the CMNLI split is <see cref="ClueSplits.CarveByPremise{T}"/>).</summary>
public static class ClueClassificationData
{
    /// <summary>Opens a marked span.</summary>
    public const string Open = "[[";
    /// <summary>Closes a marked span.</summary>
    public const string Close = "]]";

    /// <summary>
    /// The CLUEWSC text with both spans wrapped in <c>[[ ]]</c> (as in Su's CLUE baseline: the same markers for the
    /// noun and the pronoun, in text order). Span indices are code points, as in the files.
    /// </summary>
    /// <exception cref="ArgumentException">A span's text is not at its index, or the spans overlap.</exception>
    public static string MarkSpans(string text, WscSpan span1, WscSpan span2)
    {
        (int Start, int End) Locate(WscSpan s, string name)
        {
            int u = ClueText.Utf16Index(text, s.Index);
            if (u < 0 || u + s.Text.Length > text.Length || string.CompareOrdinal(text, u, s.Text, 0, s.Text.Length) != 0)
                throw new ArgumentException($"{name} '{s.Text}' is not at code point {s.Index} of '{text}'");
            return (u, u + s.Text.Length);
        }
        var a = Locate(span1, "span1");
        var b = Locate(span2, "span2");
        if (a.Start > b.Start) (a, b) = (b, a);
        if (a.End > b.Start) throw new ArgumentException($"span1 and span2 overlap in '{text}'");
        return string.Concat(text[..a.Start], Open, text[a.Start..a.End], Close, text[a.End..b.Start], Open, text[b.Start..b.End], Close, text[b.End..]);
    }
}
