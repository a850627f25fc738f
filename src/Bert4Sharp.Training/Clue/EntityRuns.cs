namespace Bert4Sharp.Training;

using Bert4Sharp.Models;
using Bert4Sharp.Tasks;
using Bert4Sharp.Tasks.Clue;
using Bert4Sharp.Tokenization;
using TorchSharp;

/// <summary>CLUENER2020 with an <see cref="EntityRecognizer"/> (<c>b4s clue train cluener --head crf|gp|egp</c>): entity F1 on dev, CLUENER-format predictions.</summary>
public sealed class EntityRuns : IClueRun
{
    const int DefaultMaxLength = 64;   // CLUENER texts are at most 50 characters

    /// <inheritdoc/>
    public string Task => "cluener";

    /// <inheritdoc/>
    public string Description => "CLUENER2020 named entities: GlobalPointer (default), EfficientGlobalPointer or CRF head; entity F1 on dev";

    /// <inheritdoc/>
    public string DefaultInput(string dataDirectory) => Path.Combine(dataDirectory, "cluener2020", "test.json");

    /// <summary>The head a <c>--head</c> value names (null: GlobalPointer).</summary>
    /// <exception cref="ArgumentException">Not crf, gp or egp.</exception>
    public static EntityHead ParseHead(string? head) => head switch
    {
        null or "gp" => EntityHead.GlobalPointer,
        "egp" => EntityHead.EfficientGlobalPointer,
        "crf" => EntityHead.Crf,
        _ => throw new ArgumentException($"cluener heads are crf, gp (GlobalPointer) and egp (EfficientGlobalPointer), not '{head}'"),
    };

    /// <inheritdoc/>
    public RunResult Train(ClueRunOptions o, Action<string> log, ProgressDisplay progress, CancellationToken cancellation = default)
    {
        ClueRun.Begin(o);
        var head = ParseHead(o.Head);
        int maxLength = o.MaxLength ?? DefaultMaxLength;
        string data = Path.Combine(o.DataDirectory, "cluener2020");
        var train = ClueRun.Take(Read(Path.Combine(data, "train.json"), log), o);
        var dev = ClueRun.Take(Read(Path.Combine(data, "dev.json"), log), o);
        var (encoder, tokenizer, source) = ClueRun.Encoder(o);
        log($"{train.Count:N0} training and {dev.Count:N0} dev texts; encoder: {source}; head: {head}");
        var types = ClueReaders.NerTypes.Order(StringComparer.Ordinal).ToList();
        var model = new EntityRecognizer(encoder, types, new EntityRecognizerOptions { Head = head });
        int dropped = 0;
        var (result, evaluation) = ClueRun.Fit(model, train.Select(ToExample).ToList(), batch =>
        {
            using var b = model.Prepare(tokenizer, batch, maxLength);
            dropped += b.Dropped;
            return new StepResult(model.Loss(b), b.Mask.sum().item<long>());
        }, () => Evaluate(model, tokenizer, dev, maxLength).Metrics, "f1", o, o.BatchSize ?? 32, log, progress, cancellation, e => e.Text.Length);
        var (metrics, devPredicted) = Evaluate(model, tokenizer, dev, maxLength);
        string dir = ClueRun.Save(model, encoder, tokenizer, new TaskModelFile(Task, head.ToString(), types, maxLength,
            new Dictionary<string, string> { ["scheme"] = model.Options.Scheme.ToString() }), Path.Combine(o.Output, "model"));
        WritePredictions(Path.Combine(o.Output, "dev_predictions.json"), dev.Select(r => (r.Id, r.Text)).ToList(), devPredicted);
        log($"{result.StopReason}: {result.Steps} steps; gold spans left out (off token boundaries, or overlapping for the CRF), counted over every batch trained: {dropped:N0}");
        log($"{ClueRun.DescribeResult(evaluation, "entity F1")}: {metrics["f1"]:P2} (precision {metrics["precision"]:P2}, recall {metrics["recall"]:P2}); model saved to {dir}");
        return new RunResult(result, metrics, o.Output);
    }

    /// <summary>
    /// Predicts a CLUENER-format file (JSON lines with <c>id</c> and <c>text</c>); writes JSON lines
    /// <c>{"id": …, "label": {type: {entity: [[start, end]]}}}</c> (inclusive character offsets), atomically.
    /// </summary>
    /// <exception cref="InvalidDataException">The directory holds a model for another task.</exception>
    public int Predict(string modelDirectory, string input, string output, Action<string> log, int? limit = null, IEncoder? engine = null)
    {
        var (model, tokenizer, task) = Load(modelDirectory, engine);
        var records = ClueRun.Take(Read(input, log), limit);
        var predicted = model.Predict(tokenizer, records.Select(r => r.Text).ToList(), task.MaxLength);
        WritePredictions(output, records.Select(r => (r.Id, r.Text)).ToList(), predicted);
        log($"{records.Count:N0} texts, {predicted.Sum(p => p.Count):N0} entities → {output}");
        return records.Count;
    }

    /// <summary>Loads a model <see cref="Train"/> saved.</summary>
    /// <exception cref="InvalidDataException">No task.json, or one for another task.</exception>
    public static (EntityRecognizer Model, BertWordPieceTokenizer Tokenizer, TaskModelFile Task) Load(string modelDirectory, IEncoder? engine = null)
    {
        var task = ClueRun.ReadTask(modelDirectory, "cluener");
        var (encoder, tokenizer) = ClueRun.LoadEncoder(modelDirectory, engine);
        var options = new EntityRecognizerOptions
        {
            Head = Enum.Parse<EntityHead>(task.Head),
            Scheme = Enum.Parse<TagScheme>(task.Setting("scheme", nameof(TagScheme.Bio))),
        };
        var model = new EntityRecognizer(encoder, task.Labels, options);
        ClueRun.LoadHead(model, modelDirectory, engine);
        return (model, tokenizer, task);
    }

    /// <summary>CLUENER JSON lines through the CLUE reader (test files have ids and texts only); entities of a type outside
    /// CLUENER's ten are dropped with their record and counted (they would stop training mid-run).</summary>
    static List<NerRecord> Read(string path, Action<string> log)
    {
        var data = ClueReaders.Cluener(path, new ClueReadOptions(DropUnknownLabels: true));
        log(data.Report.ToString());
        return [.. data.Records];
    }

    static EntityExample ToExample(NerRecord r) =>
        new(r.Text, [.. r.Entities().Select(e => new EntitySpan(ClueText.Utf16Index(r.Text, e.Start), ClueText.Utf16Index(r.Text, e.End + 1), e.Type))]);

    /// <summary>A predicted span [Start, End) in UTF-16 units as CLUENER counts it: inclusive code points.</summary>
    static NerEntity ToNer(string text, EntitySpan s) =>
        new(s.Type, ClueText.CodePoints(text[..s.Start]), ClueText.CodePoints(text[..s.End]) - 1);

    /// <summary>Entity F1, precision and recall on <paramref name="dev"/>, with the predictions they were computed from.</summary>
    static (IReadOnlyDictionary<string, double> Metrics, IReadOnlyList<IReadOnlyList<EntitySpan>> Predicted) Evaluate(EntityRecognizer model,
        BertWordPieceTokenizer tokenizer, IReadOnlyList<NerRecord> dev, int maxLength)
    {
        var predicted = model.Predict(tokenizer, dev.Select(r => r.Text).ToList(), maxLength);
        var score = ClueMetrics.EntityF1(dev.Select(r => (IEnumerable<NerEntity>)r.Entities()).ToList(),
            dev.Select((r, i) => (IEnumerable<NerEntity>)predicted[i].Select(s => ToNer(r.Text, s)).ToList()).ToList());
        return (new Dictionary<string, double> { ["f1"] = score.F1, ["precision"] = score.Precision, ["recall"] = score.Recall }, predicted);
    }

    static void WritePredictions(string path, IReadOnlyList<(string? Id, string Text)> texts, IReadOnlyList<IReadOnlyList<EntitySpan>> predicted) =>
        ClueRun.WriteJsonLines(path, texts.Select((t, i) =>
        {
            var label = predicted[i].Select(s => (Ner: ToNer(t.Text, s), Surface: t.Text[s.Start..s.End]))
                .GroupBy(x => x.Ner.Type).ToDictionary(g => g.Key, g => g.GroupBy(x => x.Surface).ToDictionary(h => h.Key, h => h.Select(x => new[] { x.Ner.Start, x.Ner.End }).ToArray()));
            return (object)new { id = ClueRun.SubmissionId(t.Id, i), label };
        }));
}
