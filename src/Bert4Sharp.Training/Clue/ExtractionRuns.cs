namespace Bert4Sharp.Training;

using Bert4Sharp.Models;
using Bert4Sharp.Tasks;
using Bert4Sharp.Tasks.Clue;
using Bert4Sharp.Tokenization;
using TorchSharp;

/// <summary>What the two GPLinker runs share: the pointer choice and the saved settings.</summary>
static class GpLinkerRun
{
    public const int DefaultMaxLength = 128;   // bert4keras's GPLinker examples

    /// <summary>The pointer a <c>--head</c> value names: gp (GlobalPointer, default) or egp (EfficientGlobalPointer).</summary>
    public static bool Efficient(string task, string? head) => head switch
    {
        null or "gp" => false,
        "egp" => true,
        _ => throw new ArgumentException($"{task} heads are gp (GPLinker on GlobalPointer) and egp (GPLinker on EfficientGlobalPointer), not '{head}'"),
    };

    public static string HeadName(bool efficient) => efficient ? "GPLinker-EfficientGlobalPointer" : "GPLinker-GlobalPointer";

    public static GpLinkerOptions Options(TaskModelFile task) => new()
    {
        Efficient = task.Head == HeadName(true),
        HeadSize = int.Parse(task.Setting("head_size", "64"), System.Globalization.CultureInfo.InvariantCulture),
    };

    public static Dictionary<string, string> Settings(GpLinkerOptions o) => new() { ["head_size"] = o.HeadSize.ToString(System.Globalization.CultureInfo.InvariantCulture) };
}

/// <summary>DuIE relation extraction with GPLinker (<c>b4s clue train duie [--head gp|egp]</c>): SPO F1 on dev, DuIE-format predictions.</summary>
public sealed class DuieRun : IClueRun
{
    /// <inheritdoc/>
    public string Task => "duie";

    /// <inheritdoc/>
    public string Description => "DuIE relation extraction (author subset: 2,000 train / 200 dev): GPLinker (entity + head/tail pointers); SPO F1 on dev";

    /// <inheritdoc/>
    public string DefaultInput(string dataDirectory) => Path.Combine(dataDirectory, "duie", "dev_data.json");

    /// <inheritdoc/>
    public RunResult Train(ClueRunOptions o, Action<string> log, ProgressDisplay progress, CancellationToken cancellation = default)
    {
        ClueRun.Begin(o);
        bool efficient = GpLinkerRun.Efficient(Task, o.Head);
        int maxLength = o.MaxLength ?? GpLinkerRun.DefaultMaxLength;
        string data = Path.Combine(o.DataDirectory, "duie");
        var predicates = ClueReaders.DuiePredicates(Path.Combine(data, "all_50_schemas")).Order(StringComparer.Ordinal).ToList();
        var train = ClueRun.Take(Read(Path.Combine(data, "train_data.json"), predicates, log), o);
        var dev = ClueRun.Take(Read(Path.Combine(data, "dev_data.json"), predicates, log), o);
        var devTexts = dev.Select(r => r.Text).ToHashSet();
        int overlap = train.Count(r => devTexts.Contains(r.Text));
        var (encoder, tokenizer, source) = ClueRun.Encoder(o);
        var options = new GpLinkerOptions { Efficient = efficient };
        log($"{train.Count:N0} training and {dev.Count:N0} dev texts ({overlap:N0} training texts also in dev, kept: the staged author split); {predicates.Count} predicates; encoder: {source}; head: {GpLinkerRun.HeadName(efficient)}");
        var examples = ToExamples(train, out int notFound);
        ToExamples(dev, out int devNotFound);
        log($"gold triples whose subject or object is not found in the text (left out of training / unreachable on dev): {notFound:N0} of {train.Sum(r => r.Spos.Count):N0} / {devNotFound:N0} of {dev.Sum(r => r.Spos.Count):N0}");
        var gold = dev.Select(r => (IEnumerable<SpoTriple>)r.Spos.Select(s => s.Triple).ToHashSet()).ToList();
        var baseline = ClueMetrics.SpoF1(gold, dev.Select(_ => (IEnumerable<SpoTriple>)[]).ToList());
        log($"trivial baseline (predict no triple): dev SPO F1 {baseline.F1:P2}");

        var model = new GpLinkerRelationExtractor(encoder, predicates, options);
        int dropped = 0;
        var (result, evaluation) = ClueRun.Fit(model, examples, batch =>
        {
            using var b = model.Prepare(tokenizer, batch, maxLength);
            dropped += b.Dropped;
            return new StepResult(model.Loss(b), b.Mask.sum().item<long>());
        }, () => Evaluate(model, tokenizer, dev, maxLength, log).Metrics, "f1", o, o.BatchSize ?? 16, log, progress, cancellation, e => e.Text.Length);
        var (metrics, predicted) = Evaluate(model, tokenizer, dev, maxLength, log);
        string dir = ClueRun.Save(model, encoder, tokenizer, new TaskModelFile(Task, GpLinkerRun.HeadName(efficient), predicates, maxLength, GpLinkerRun.Settings(options)), Path.Combine(o.Output, "model"));
        WritePredictions(Path.Combine(o.Output, "dev_predictions.json"), dev.Select(r => r.Text).ToList(), predicted);
        log($"{result.StopReason}: {result.Steps} steps; gold triples left out (subject or object off token boundaries or truncated), counted over every batch trained: {dropped:N0}");
        log($"{ClueRun.DescribeResult(evaluation, "SPO F1")}: {metrics["f1"]:P2} (precision {metrics["precision"]:P2}, recall {metrics["recall"]:P2}) vs {baseline.F1:P2} predicting nothing; model saved to {dir}");
        return new RunResult(result, metrics, o.Output);
    }

    /// <summary>Predicts a DuIE-format file (JSON lines with <c>text</c>); writes <c>{"text", "spo_list": [{"subject", "predicate", "object"}]}</c> lines, atomically.</summary>
    /// <exception cref="InvalidDataException">The directory holds a model for another task.</exception>
    public int Predict(string modelDirectory, string input, string output, Action<string> log, int? limit = null, IEncoder? engine = null)
    {
        var task = ClueRun.ReadTask(modelDirectory, Task);
        var (encoder, tokenizer) = ClueRun.LoadEncoder(modelDirectory, engine);
        var model = new GpLinkerRelationExtractor(encoder, task.Labels, GpLinkerRun.Options(task));
        ClueRun.LoadHead(model, modelDirectory, engine);
        var records = ClueRun.Take(Read(input, task.Labels.ToHashSet(), log), limit);
        var texts = records.Select(r => r.Text).ToList();
        var predicted = model.Predict(tokenizer, texts, task.MaxLength, out int capped);
        WritePredictions(output, texts, predicted);
        log($"{records.Count:N0} texts, {predicted.Sum(p => p.Count):N0} triples → {output}{(capped > 0 ? $" ({capped:N0} texts had more candidate entities or triples than the decoder keeps)" : "")}");
        return records.Count;
    }

    static List<DuieRecord> Read(string path, IReadOnlyCollection<string> predicates, Action<string> log)
    {
        var data = ClueReaders.Duie(path, predicates.ToHashSet(), new ClueReadOptions(DropUnknownLabels: true));
        log(data.Report.ToString());
        return [.. data.Records];
    }

    /// <summary>Training examples: each subject and object at its first occurrence in the text (case-insensitively when not found as written); triples with a part not found are counted and left out.</summary>
    static List<RelationExample> ToExamples(IReadOnlyList<DuieRecord> records, out int notFound)
    {
        int missing = 0;
        var examples = records.Select(r => new RelationExample(r.Text, [.. r.Spos.Select(s =>
        {
            int si = Find(r.Text, s.Subject), oi = Find(r.Text, s.Object);
            if (si < 0 || oi < 0) { missing++; return (RelationSpan?)null; }
            return new RelationSpan(si, si + s.Subject.Length, s.Predicate, oi, oi + s.Object.Length);
        }).Where(x => x is not null).Select(x => x!.Value)])).ToList();
        notFound = missing;
        return examples;

        static int Find(string text, string part)
        {
            if (part.Length == 0) return -1;
            int i = text.IndexOf(part, StringComparison.Ordinal);
            return i >= 0 ? i : text.IndexOf(part, StringComparison.OrdinalIgnoreCase);
        }
    }

    static (IReadOnlyDictionary<string, double> Metrics, IReadOnlyList<IReadOnlyList<RelationSpan>> Predicted) Evaluate(GpLinkerRelationExtractor model,
        BertWordPieceTokenizer tokenizer, IReadOnlyList<DuieRecord> dev, int maxLength, Action<string> log)
    {
        var predicted = model.Predict(tokenizer, dev.Select(r => r.Text).ToList(), maxLength, out int capped);
        if (capped > 0) log($"decoding: {capped:N0} of {dev.Count:N0} dev texts had more candidate entities or triples than the decoder keeps ({model.Options.MaxSpans} entities per type, best first; {model.Options.MaxSpans} triples)");
        var score = ClueMetrics.SpoF1(dev.Select(r => (IEnumerable<SpoTriple>)r.Spos.Select(s => s.Triple).ToList()).ToList(),
            dev.Select((r, i) => (IEnumerable<SpoTriple>)predicted[i].Select(p => Triple(r.Text, p)).ToList()).ToList());
        return (new Dictionary<string, double> { ["f1"] = score.F1, ["precision"] = score.Precision, ["recall"] = score.Recall }, predicted);
    }

    static SpoTriple Triple(string text, RelationSpan p) => new(text[p.SubjectStart..p.SubjectEnd], p.Predicate, text[p.ObjectStart..p.ObjectEnd]);

    static void WritePredictions(string path, IReadOnlyList<string> texts, IReadOnlyList<IReadOnlyList<RelationSpan>> predicted) =>
        ClueRun.WriteJsonLines(path, texts.Select((t, i) => (object)new
        {
            text = t,
            spo_list = predicted[i].Select(p => Triple(t, p)).Distinct().Select(x => new { subject = x.Subject, predicate = x.Predicate, @object = x.Object }).ToArray(),
        }));
}

/// <summary>DuEE event extraction with GPLinker (<c>b4s clue train duee [--head gp|egp]</c>): argument and event F1 on a held-out part of dev, DuEE-format predictions.</summary>
public sealed class DueeRun : IClueRun
{
    const char Separator = '\t';   // "event type<TAB>role" in task.json's labels

    /// <inheritdoc/>
    public string Task => "duee";

    /// <inheritdoc/>
    public string Description => "DuEE 1.0 event extraction: GPLinker (argument + head/tail link pointers, clique search); train absent, so sample + 2/3 of dev train and the other 1/3 of dev evaluates; argument F1";

    /// <inheritdoc/>
    public string DefaultInput(string dataDirectory) => Path.Combine(dataDirectory, "duee", "dev.json");

    /// <summary>Every third dev record (index 0, 3, 6 …) is held out for evaluation; the rest of dev and the sample train.</summary>
    public static bool HeldOut(int devIndex) => devIndex % 3 == 0;

    /// <inheritdoc/>
    public RunResult Train(ClueRunOptions o, Action<string> log, ProgressDisplay progress, CancellationToken cancellation = default)
    {
        ClueRun.Begin(o);
        bool efficient = GpLinkerRun.Efficient(Task, o.Head);
        int maxLength = o.MaxLength ?? GpLinkerRun.DefaultMaxLength;
        string data = Path.Combine(o.DataDirectory, "duee");
        var schema = ClueReaders.DueeSchema(Path.Combine(data, "event_schema.json"));
        var labels = Labels(schema);
        var sample = Read(Path.Combine(data, "sample_data.json"), schema, log);
        var dev = Read(Path.Combine(data, "dev.json"), schema, log);
        var eval = ClueRun.Take(dev.Where((_, i) => HeldOut(i)), o);
        var evalTexts = eval.Select(r => r.Text).ToHashSet();
        var devTrain = dev.Where((_, i) => !HeldOut(i)).ToList();
        var candidates = sample.Concat(devTrain).ToList();
        var train = ClueRun.Take(candidates.Where(r => !evalTexts.Contains(r.Text)), o);
        log($"train: {sample.Count:N0} sample + {devTrain.Count:N0} dev records (dev indices not ≡ 0 mod 3), {candidates.Count(r => evalTexts.Contains(r.Text)):N0} removed because their text is also held out; " +
            $"using {train.Count:N0} for training and {eval.Count:N0} held-out dev records (indices ≡ 0 mod 3) for evaluation; {labels.Count} (event type, role) labels");
        var (encoder, tokenizer, source) = ClueRun.Encoder(o);
        var options = new GpLinkerOptions { Efficient = efficient };
        log($"encoder: {source}; head: {GpLinkerRun.HeadName(efficient)}");
        var gold = eval.Select(r => (IReadOnlyList<IReadOnlyList<EventArgument>>)r.Events.Select(e => e.Tuples()).ToList()).ToList();
        var baseline = ClueMetrics.DueeF1(gold, eval.Select(_ => (IReadOnlyList<IReadOnlyList<EventArgument>>)[]).ToList());
        log($"trivial baseline (predict no event): argument F1 {baseline.Argument.F1:P2}, event F1 {baseline.Event.F1:P2}");

        var model = new GpLinkerEventExtractor(encoder, labels, ClueMetrics.TriggerRole, options);
        int dropped = 0;
        var (result, evaluation) = ClueRun.Fit(model, train.Select(ToExample).ToList(), batch =>
        {
            using var b = model.Prepare(tokenizer, batch, maxLength);
            dropped += b.Dropped;
            return new StepResult(model.Loss(b), b.Mask.sum().item<long>());
        }, () => Evaluate(model, tokenizer, eval, gold, maxLength, log).Metrics, "f1", o, o.BatchSize ?? 16, log, progress, cancellation, e => e.Text.Length);
        var (metrics, predicted) = Evaluate(model, tokenizer, eval, gold, maxLength, log);
        string dir = ClueRun.Save(model, encoder, tokenizer, new TaskModelFile(Task, GpLinkerRun.HeadName(efficient),
            [.. model.Labels.Select(l => l.EventType + Separator + l.Role)], maxLength, GpLinkerRun.Settings(options)), Path.Combine(o.Output, "model"));
        WritePredictions(Path.Combine(o.Output, "dev_predictions.json"), eval, predicted);
        log($"{result.StopReason}: {result.Steps} steps; gold arguments left out (off token boundaries or truncated), counted over every batch trained: {dropped:N0}");
        log($"{ClueRun.DescribeResult(evaluation, "argument F1")}: {metrics["f1"]:P2} (precision {metrics["precision"]:P2}, recall {metrics["recall"]:P2}; event F1 {metrics["event_f1"]:P2}) vs {baseline.Argument.F1:P2} predicting nothing; model saved to {dir}");
        return new RunResult(result, metrics, o.Output);
    }

    /// <summary>Predicts a DuEE-format file (JSON lines with <c>id</c> and <c>text</c>); writes <c>{"id", "event_list": [{"event_type", "arguments": [{"role", "argument"}]}]}</c> lines, atomically.</summary>
    /// <exception cref="InvalidDataException">The directory holds a model for another task.</exception>
    public int Predict(string modelDirectory, string input, string output, Action<string> log, int? limit = null, IEncoder? engine = null)
    {
        var task = ClueRun.ReadTask(modelDirectory, Task);
        var labels = task.Labels.Select(l => l.Split(Separator) is [var type, var role] ? (type, role)
            : throw new InvalidDataException($"{modelDirectory}/task.json: label '{l}' is not 'event type<TAB>role'")).ToList();
        var (encoder, tokenizer) = ClueRun.LoadEncoder(modelDirectory, engine);
        var model = new GpLinkerEventExtractor(encoder, labels, ClueMetrics.TriggerRole, GpLinkerRun.Options(task));
        ClueRun.LoadHead(model, modelDirectory, engine);
        var schema = labels.GroupBy(l => l.type).ToDictionary(g => g.Key, g => (IReadOnlySet<string>)g.Select(l => l.role).Where(r => r != ClueMetrics.TriggerRole).ToHashSet());
        var records = ClueRun.Take(Read(input, schema, log), limit);
        var predicted = model.Predict(tokenizer, records.Select(r => r.Text).ToList(), task.MaxLength, out int capped);
        WritePredictions(output, records, predicted);
        log($"{records.Count:N0} texts, {predicted.Sum(p => p.Count):N0} events → {output}{(capped > 0 ? $" ({capped:N0} texts had more candidate arguments than the decoder keeps)" : "")}");
        return records.Count;
    }

    /// <summary>The (event type, role) labels: each type's trigger and roles.</summary>
    static List<(string, string)> Labels(IReadOnlyDictionary<string, IReadOnlySet<string>> schema) =>
        [.. schema.SelectMany(kv => kv.Value.Append(ClueMetrics.TriggerRole).Distinct().Select(r => (kv.Key, r)))];

    static List<DueeRecord> Read(string path, IReadOnlyDictionary<string, IReadOnlySet<string>> schema, Action<string> log)
    {
        var data = ClueReaders.Duee(path, schema, new ClueReadOptions(DropUnknownLabels: true));
        log(data.Report.ToString());
        return [.. data.Records];
    }

    /// <summary>The record's events as character spans (DuEE starts count code points).</summary>
    static EventExample ToExample(DueeRecord r) => new(r.Text, [.. r.Events.Select(e => (IReadOnlyList<EventSpan>)[.. e.Tuples().Select(a =>
    {
        int start = ClueText.Utf16Index(r.Text, a.Start);
        return new EventSpan(a.EventType, a.Role, start, start + a.Argument.Length);
    })])]);

    static List<EventArgument> Tuples(string text, IReadOnlyList<EventSpan> e) =>
        [.. e.Select(a => new EventArgument(a.EventType, a.Role, text[a.Start..a.End], ClueText.CodePoints(text[..a.Start])))];

    static (IReadOnlyDictionary<string, double> Metrics, IReadOnlyList<IReadOnlyList<IReadOnlyList<EventSpan>>> Predicted) Evaluate(GpLinkerEventExtractor model,
        BertWordPieceTokenizer tokenizer, IReadOnlyList<DueeRecord> eval, IReadOnlyList<IReadOnlyList<IReadOnlyList<EventArgument>>> gold, int maxLength, Action<string> log)
    {
        var predicted = model.Predict(tokenizer, eval.Select(r => r.Text).ToList(), maxLength, out int capped);
        if (capped > 0) log($"decoding: {capped:N0} of {eval.Count:N0} texts had more candidate arguments than the decoder keeps ({model.Options.MaxSpans}, best first)");
        var score = ClueMetrics.DueeF1(gold, eval.Select((r, i) => (IReadOnlyList<IReadOnlyList<EventArgument>>)predicted[i].Select(e => Tuples(r.Text, e)).ToList()).ToList());
        return (new Dictionary<string, double>
        {
            ["f1"] = score.Argument.F1, ["precision"] = score.Argument.Precision, ["recall"] = score.Argument.Recall,
            ["event_f1"] = score.Event.F1, ["event_precision"] = score.Event.Precision, ["event_recall"] = score.Event.Recall,
        }, predicted);
    }

    /// <summary>
    /// Submission lines. Each event becomes its type and its non-trigger (role, argument) pairs (deduplicated); an event
    /// whose pairs all appear in another event of the same type is subsumed by it (the larger one is kept).
    /// </summary>
    static void WritePredictions(string path, IReadOnlyList<DueeRecord> records, IReadOnlyList<IReadOnlyList<IReadOnlyList<EventSpan>>> predicted) =>
        ClueRun.WriteJsonLines(path, records.Select((r, i) =>
        {
            var kept = new List<(string Type, List<(string Role, string Argument)> Arguments)>();
            foreach (var e in predicted[i])
            {
                if (e.Count == 0) continue;
                var ev = (Type: e[0].EventType, Arguments: e.Where(a => a.Role != ClueMetrics.TriggerRole).Select(a => (a.Role, r.Text[a.Start..a.End])).Distinct().ToList());
                kept.RemoveAll(k => Within(k, ev));
                if (!kept.Any(k => Within(ev, k))) kept.Add(ev);
            }
            return (object)new
            {
                id = ClueRun.SubmissionId(r.Id, i),
                event_list = kept.Select(k => new { event_type = k.Type, arguments = k.Arguments.Select(a => new { role = a.Role, argument = a.Argument }).ToArray() }).ToArray(),
            };
        }));

    static bool Within((string Type, List<(string, string)> Arguments) a, (string Type, List<(string, string)> Arguments) b) =>
        a.Type == b.Type && a.Arguments.All(b.Arguments.Contains);
}
