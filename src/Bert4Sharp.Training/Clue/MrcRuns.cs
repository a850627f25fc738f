namespace Bert4Sharp.Training;

using System.Globalization;
using Bert4Sharp.Models;
using Bert4Sharp.Tasks;
using Bert4Sharp.Tasks.Clue;
using Bert4Sharp.Tokenization;
using TorchSharp;

/// <summary>
/// CMRC2018 span extraction with a <see cref="SpanExtractor"/> (<c>b4s clue train cmrc2018</c>): the official train split is
/// not staged, so it trains on trial (1,002 questions, less any whose context or question is also in dev) and scores dev
/// with <see cref="CmrcMetric"/>; predictions are the CMRC submission format, one JSON object <c>{question id: answer}</c>.
/// </summary>
public sealed class MrcRuns : IClueRun
{
    const int DefaultMaxLength = 256;     // from scratch: shorter windows train faster; a pretrained encoder would use 512
    const int DefaultDocStride = 128;
    const int DefaultMaxQuestionLength = 64;
    const int DefaultMaxAnswerLength = 64;
    /// <summary>Dev questions scored at the evaluations during training (model selection); the final score uses the whole dev set (or the limit).</summary>
    const int DevDuringTraining = 400;

    /// <inheritdoc/>
    public string Task => "cmrc2018";

    /// <inheritdoc/>
    public string Description => "CMRC2018 span extraction: start/end pointer head over [CLS] question [SEP] context-window [SEP]; trains on trial, EM/F1 on dev";

    /// <inheritdoc/>
    public string DefaultInput(string dataDirectory) => Path.Combine(dataDirectory, "cmrc2018", "cmrc2018_dev.json");   // no test split is staged

    /// <inheritdoc/>
    public RunResult Train(ClueRunOptions o, Action<string> log, ProgressDisplay progress, CancellationToken cancellation = default)
    {
        ClueRun.Begin(o);
        var options = new SpanExtractorOptions
        {
            MaxLength = o.MaxLength ?? DefaultMaxLength, DocStride = DefaultDocStride, MaxQuestionLength = DefaultMaxQuestionLength, MaxAnswerLength = DefaultMaxAnswerLength,
        };
        string data = Path.Combine(o.DataDirectory, "cmrc2018");
        var trial = Labelled(Read(Path.Combine(data, "cmrc2018_trial.json"), log), "cmrc2018_trial.json", log);
        var devAll = Labelled(Read(Path.Combine(data, "cmrc2018_dev.json"), log), "cmrc2018_dev.json", log);

        // Held-out hygiene: no training question whose paragraph or question text is also in dev.
        var devContexts = devAll.Select(r => r.Context).ToHashSet(StringComparer.Ordinal);
        var devQuestions = devAll.Select(r => r.Question).ToHashSet(StringComparer.Ordinal);
        int sameContext = trial.Count(r => devContexts.Contains(r.Context)), sameQuestion = trial.Count(r => devQuestions.Contains(r.Question));
        var kept = trial.Where(r => !devContexts.Contains(r.Context) && !devQuestions.Contains(r.Question)).ToList();
        var train = ClueRun.Take(kept, o);
        var dev = ClueRun.Take(devAll, o);
        log($"dedupe: {sameContext:N0} trial questions share their context with dev, {sameQuestion:N0} their question text; {trial.Count - kept.Count:N0} removed");

        var (examples, notAtStart, foundBySearch, notFound) = TrainingExamples(train);
        log($"{train.Count:N0} training questions (trial); first answers not at their answer_start: {notAtStart:N0} ({foundBySearch:N0} found by searching the context, nearest first; {notFound:N0} dropped: text not in the context)");

        var (encoder, tokenizer, source) = ClueRun.Encoder(o);
        var windows = new List<SpanWindow>();
        int lost = 0;
        for (int i = 0; i < examples.Count; i++)
        {
            var (w, answerLost) = SpanWindows.Split(tokenizer, examples[i], i, options);
            if (answerLost) { lost++; continue; }      // no window holds the answer whole: nothing to learn its span from
            windows.AddRange(w);
        }
        int positive = windows.Count(w => w.StartLabel > 0);
        log($"windows of {options.MaxLength} tokens, doc stride {options.DocStride}, questions ≤ {options.MaxQuestionLength} tokens: {windows.Count:N0} training windows ({positive:N0} hold their answer, {windows.Count - positive:N0} point at [CLS]); questions dropped, answer in no window whole (on no token, or longer than a window): {lost:N0}");

        var devExamples = dev.Select(r => new SpanExample(r.Question, r.Context)).ToList();
        var devWindows = devExamples.SelectMany((e, i) => SpanWindows.Split(tokenizer, e, i, options).Windows).ToList();
        int early = Math.Min(DevDuringTraining, dev.Count);
        var earlyWindows = devWindows.Where(w => w.Example < early).ToList();
        log($"{dev.Count:N0} dev questions in {devWindows.Count:N0} windows (evaluations during training score the first {early:N0}); encoder: {source}");

        // Trivial baselines: the empty answer, and the context's first k characters (k = the median gold answer length in training).
        int k = examples.Count == 0 ? 1 : examples.Select(e => e.AnswerEnd - e.AnswerStart).Order().ElementAt(examples.Count / 2);
        var first = CmrcMetric.Evaluate(dev, dev.ToDictionary(r => r.Id, r => r.Context[..Math.Min(k, r.Context.Length)]));
        var empty = CmrcMetric.Evaluate(dev, new Dictionary<string, string>());
        log($"baselines on dev: empty answer EM {empty.ExactMatch:F2} F1 {empty.F1:F2}; the context's first {k} characters EM {first.ExactMatch:F2} F1 {first.F1:F2}");

        var model = new SpanExtractor(encoder, options);
        var (result, evaluation) = ClueRun.Fit(model, windows, batch =>
        {
            using var b = model.Prepare(batch, tokenizer.PaddingId);
            return new StepResult(model.Loss(b), b.Mask.sum().item<long>());
        }, () => Evaluate(model, tokenizer, dev.Take(early).ToList(), devExamples.Take(early).ToList(), earlyWindows).Metrics,
            "f1", o, o.BatchSize ?? 16, log, progress, cancellation, w => w.Ids.Length);

        var (metrics, predicted) = Evaluate(model, tokenizer, dev, devExamples, devWindows);
        string dir = ClueRun.Save(model, encoder, tokenizer, new TaskModelFile(Task, "span", ["start", "end"], options.MaxLength, new Dictionary<string, string>
        {
            ["doc_stride"] = Str(options.DocStride), ["max_question_length"] = Str(options.MaxQuestionLength), ["max_answer_length"] = Str(options.MaxAnswerLength),
        }), Path.Combine(o.Output, "model"));
        ClueRun.WriteJson(Path.Combine(o.Output, "dev_predictions.json"), predicted);
        log($"{result.StopReason}: {result.Steps} steps");
        log($"{ClueRun.DescribeResult(evaluation, "F1 (first " + early + " dev questions)")}; all {dev.Count:N0} dev questions: EM {metrics["em"]:F2} F1 {metrics["f1"]:F2} (baseline, first {k} characters: EM {first.ExactMatch:F2} F1 {first.F1:F2}); model saved to {dir}");
        return new RunResult(result, metrics, o.Output);
    }

    /// <summary>Predicts a CMRC2018-format file (SQuAD JSON); writes <c>{question id: answer text}</c> atomically.</summary>
    /// <exception cref="InvalidDataException">The directory holds a model for another task.</exception>
    public int Predict(string modelDirectory, string input, string output, Action<string> log, int? limit = null, IEncoder? engine = null)
    {
        var (model, tokenizer, _) = Load(modelDirectory, engine);
        var records = ClueRun.Take(Read(input, log), limit);
        var answers = model.Predict(tokenizer, records.Select(r => new SpanExample(r.Question, r.Context)).ToList());
        var predictions = new Dictionary<string, string>();
        for (int i = 0; i < records.Count; i++) predictions[records[i].Id] = answers[i].Text;
        ClueRun.WriteJson(output, predictions);
        log($"{records.Count:N0} questions ({answers.Count(a => a.Start < 0):N0} with an empty context) → {output}");
        return records.Count;
    }

    /// <summary>Loads a model <see cref="Train"/> saved.</summary>
    /// <exception cref="InvalidDataException">No task.json, or one for another task.</exception>
    public static (SpanExtractor Model, BertWordPieceTokenizer Tokenizer, TaskModelFile Task) Load(string modelDirectory, IEncoder? engine = null)
    {
        var task = ClueRun.ReadTask(modelDirectory, "cmrc2018");
        var (encoder, tokenizer) = ClueRun.LoadEncoder(modelDirectory, engine);
        var options = new SpanExtractorOptions
        {
            MaxLength = task.MaxLength,
            DocStride = Int(task, "doc_stride", DefaultDocStride),
            MaxQuestionLength = Int(task, "max_question_length", DefaultMaxQuestionLength),
            MaxAnswerLength = Int(task, "max_answer_length", DefaultMaxAnswerLength),
        };
        var model = new SpanExtractor(encoder, options);
        ClueRun.LoadHead(model, modelDirectory, engine);
        return (model, tokenizer, task);
    }

    static string Str(int v) => v.ToString(CultureInfo.InvariantCulture);

    static int Int(TaskModelFile task, string name, int fallback)
    {
        string v = task.Setting(name, Str(fallback));
        return int.TryParse(v, NumberStyles.Integer, CultureInfo.InvariantCulture, out int n) && n > 0
            ? n : throw new InvalidDataException($"task.json setting {name} is '{v}', not a positive integer");
    }

    /// <summary>The questions with a gold answer (training and scoring need one); the others are counted in the log.</summary>
    static List<CmrcRecord> Labelled(List<CmrcRecord> records, string file, Action<string> log)
    {
        var labelled = records.Where(r => r.Answers.Count > 0).ToList();
        if (labelled.Count < records.Count) log($"{file}: {records.Count - labelled.Count:N0} questions without a gold answer left out");
        return labelled;
    }

    static List<CmrcRecord> Read(string path, Action<string> log)
    {
        var data = ClueReaders.Cmrc2018(path);
        log(data.Report.ToString());
        return [.. data.Records];
    }

    /// <summary>
    /// The first gold answer of each record as a UTF-16 range: at its <c>answer_start</c> (code points) when the text is
    /// there, else at the occurrence of the text nearest to it; records whose answer text is nowhere in the context are dropped.
    /// </summary>
    internal static (List<SpanExample> Examples, int NotAtStart, int FoundBySearch, int NotFound) TrainingExamples(IReadOnlyList<CmrcRecord> records)
    {
        var list = new List<SpanExample>(records.Count);
        int notAtStart = 0, found = 0, notFound = 0;
        foreach (var r in records)
        {
            var a = r.Answers[0];
            int u = ClueText.Utf16Index(r.Context, a.Start);
            if (u >= 0 && a.Text.Length > 0 && u + a.Text.Length <= r.Context.Length && string.CompareOrdinal(r.Context, u, a.Text, 0, a.Text.Length) == 0)
            {
                list.Add(new SpanExample(r.Question, r.Context, u, u + a.Text.Length));
                continue;
            }
            notAtStart++;
            int best = -1;
            for (int at = a.Text.Length == 0 ? -1 : r.Context.IndexOf(a.Text, StringComparison.Ordinal); at >= 0; at = r.Context.IndexOf(a.Text, at + 1, StringComparison.Ordinal))
                if (best < 0 || Math.Abs(at - u) < Math.Abs(best - u)) best = at;
            if (best < 0) { notFound++; continue; }
            found++;
            list.Add(new SpanExample(r.Question, r.Context, best, best + a.Text.Length));
        }
        return (list, notAtStart, found, notFound);
    }

    /// <summary>EM and F1 (percent) on <paramref name="dev"/>, with the predictions <c>{id: text}</c> they were computed from.</summary>
    static (IReadOnlyDictionary<string, double> Metrics, Dictionary<string, string> Predicted) Evaluate(SpanExtractor model, BertWordPieceTokenizer tokenizer,
        IReadOnlyList<CmrcRecord> dev, IReadOnlyList<SpanExample> examples, IReadOnlyList<SpanWindow> windows)
    {
        var answers = SpanDecoding.Merge(examples, windows, model.WindowLogits(windows, tokenizer.PaddingId), model.Options.MaxAnswerLength);
        var predicted = new Dictionary<string, string>();
        for (int i = 0; i < dev.Count; i++) predicted[dev[i].Id] = answers[i].Text;
        var score = CmrcMetric.Evaluate(dev, predicted);
        return (new Dictionary<string, double> { ["em"] = score.ExactMatch, ["f1"] = score.F1, ["average"] = score.Average }, predicted);
    }
}
