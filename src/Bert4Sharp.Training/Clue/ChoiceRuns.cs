namespace Bert4Sharp.Training;

using Bert4Sharp.Models;
using Bert4Sharp.Tasks;
using Bert4Sharp.Tasks.Clue;
using Bert4Sharp.Tokenization;
using TorchSharp;

/// <summary>What the C3 and CHID runs share: training a <see cref="MultipleChoice"/> model with dev accuracy, baselines, saving and loading.</summary>
static class ChoiceRun
{
    /// <summary>A question to train or score: its sequences, and what the submission line and the metrics need.</summary>
    internal sealed record Item(ChoiceQuestion Question, object Id, string Subset, int Choices);

    internal static int Length(Item item) => item.Question.Options.Max(o => o.Ids.Length);

    /// <summary>Trains, evaluates every dev subset and all of dev together, saves the model and the dev predictions.</summary>
    internal static RunResult Train(string task, ClueRunOptions o, List<Item> train, List<Item> dev, MultipleChoice model, BertWordPieceTokenizer tokenizer,
        int maxLength, int batchSize, string answerField, Action<string> log, ProgressDisplay progress, CancellationToken cancellation)
    {
        if (train.Count == 0 || dev.Count == 0) throw new InvalidDataException($"{task}: {train.Count} training and {dev.Count} dev questions: both must be non-empty (check --data and --limit)");
        if (train.Concat(dev).FirstOrDefault(x => x.Choices == 0) is { } empty) throw new InvalidDataException($"{task}: question {empty.Id} ({empty.Subset}) has no choices");
        var subsets = dev.Select(d => d.Subset).Distinct().ToList();
        // Baselines: uniform guessing (mean over questions of 1/#choices), and always answering the position most often right in train.
        int majority = train.GroupBy(t => t.Question.Answer).OrderByDescending(g => g.Count()).ThenBy(g => g.Key).First().Key;
        double chance = dev.Average(d => 1.0 / d.Choices);
        double positional = dev.Average(d => d.Question.Answer == majority ? 1.0 : 0.0);
        log($"dev baselines: chance {chance:P2} (mean of 1/#choices), always option {majority} (most often right in train) {positional:P2}");
        log($"{train.Count:N0} training questions ({train.Sum(t => t.Choices):N0} sequences), {dev.Count:N0} dev questions; {batchSize} questions a batch, at most {maxLength} tokens a sequence");
        int truncated = train.Concat(dev).Sum(t => t.Question.Options.Count(s => s.Ids.Length >= maxLength));
        log($"sequences at the {maxLength}-token limit, i.e. cut or exactly filling it (train + dev): {truncated:N0}");

        var (result, evaluation) = ClueRun.Fit(model, train, batch =>
        {
            using var b = model.Prepare([.. batch.Select(x => x.Question)], tokenizer.PaddingId);
            return new StepResult(model.Loss(b), b.Mask.sum().item<long>());
        }, () => Evaluate(model, tokenizer, dev, subsets, batchSize).Metrics, "accuracy", o, batchSize, log, progress, cancellation, Length);
        var (metrics, predicted) = Evaluate(model, tokenizer, dev, subsets, batchSize);
        string dir = ClueRun.Save(model, model.Encoder, tokenizer, new TaskModelFile(task, "MultipleChoice", [], maxLength,
            new Dictionary<string, string> { ["pooling"] = model.Options.Pooling.ToString() }), Path.Combine(o.Output, "model"));
        ClueRun.WriteJsonLines(Path.Combine(o.Output, "dev_predictions.json"), dev.Select((d, i) => subsets.Count > 1
            ? (object)new Dictionary<string, object> { ["id"] = d.Id, [answerField] = predicted[i], ["subset"] = d.Subset }
            : new Dictionary<string, object> { ["id"] = d.Id, [answerField] = predicted[i] }));
        log($"{result.StopReason}: {result.Steps} steps");
        string parts = subsets.Count > 1 ? " (" + string.Join(", ", subsets.Select(s => $"{s} {metrics["accuracy_" + s]:P2}")) + ")" : "";
        log($"{ClueRun.DescribeResult(evaluation, "accuracy")}: {metrics["accuracy"]:P2}{parts}; chance {chance:P2}, majority position {positional:P2}; model saved to {dir}");
        return new RunResult(result, metrics, o.Output);
    }

    /// <summary>Accuracy on all of dev and on each subset (<c>accuracy_d</c>, <c>accuracy_m</c> for C3), with the predictions.</summary>
    static (IReadOnlyDictionary<string, double> Metrics, int[] Predicted) Evaluate(MultipleChoice model, BertWordPieceTokenizer tokenizer, List<Item> dev,
        List<string> subsets, int batchSize)
    {
        var predicted = model.Predict([.. dev.Select(d => d.Question)], tokenizer.PaddingId, batchSize);
        var metrics = new Dictionary<string, double> { ["accuracy"] = ClueMetrics.Accuracy(dev.Select(d => d.Question.Answer).ToList(), predicted) };
        if (subsets.Count > 1)
            foreach (string s in subsets)
            {
                var idx = Enumerable.Range(0, dev.Count).Where(i => dev[i].Subset == s).ToList();
                metrics["accuracy_" + s] = ClueMetrics.Accuracy(idx.Select(i => dev[i].Question.Answer).ToList(), idx.Select(i => predicted[i]).ToList());
            }
        return (metrics, predicted);
    }

    /// <summary>Loads a model the run of <paramref name="task"/> saved.</summary>
    internal static (MultipleChoice Model, BertWordPieceTokenizer Tokenizer, TaskModelFile Task) Load(string modelDirectory, string task, IEncoder? engine = null)
    {
        var file = ClueRun.ReadTask(modelDirectory, task);
        var (encoder, tokenizer) = ClueRun.LoadEncoder(modelDirectory, engine);
        var model = new MultipleChoice(encoder, new MultipleChoiceOptions { Pooling = Enum.Parse<Pooling>(file.Setting("pooling", nameof(Pooling.First))) });
        ClueRun.LoadHead(model, modelDirectory, engine);
        return (model, tokenizer, file);
    }

    internal static void Report<T>(ClueData<T> data, Action<string> log) => log(data.Report.ToString());
}

/// <summary>
/// C3 (<c>b4s clue train c3</c>): each choice scored as <c>[CLS] passage [SEP] question [SEP] choice [SEP]</c> by a
/// <see cref="MultipleChoice"/> head, trained on d-train + m-train, accuracy on d-dev, m-dev and both; C3 submission lines
/// <c>{"id": question index in the file, "label": choice index}</c>.
/// </summary>
public sealed class C3Runs : IClueRun
{
    const int DefaultMaxLength = 256, DefaultBatchSize = 8;

    /// <inheritdoc/>
    public string Task => "c3";

    /// <inheritdoc/>
    public string Description => "C3 multiple-choice reading: each choice with passage and question → one score, softmax over the choices; accuracy on dev (d, m, both)";

    /// <inheritdoc/>
    /// <remarks>No unlabelled C3 test is staged (the labelled tests are held out): the dialogue dev file.</remarks>
    public string DefaultInput(string dataDirectory) => Path.Combine(dataDirectory, "c3", "c3-d-dev.json");

    /// <inheritdoc/>
    public RunResult Train(ClueRunOptions o, Action<string> log, ProgressDisplay progress, CancellationToken cancellation = default)
    {
        ClueRun.Begin(o);
        int maxLength = o.MaxLength ?? DefaultMaxLength;
        string data = Path.Combine(o.DataDirectory, "c3");
        var (encoder, tokenizer, source) = ClueRun.Encoder(o);
        log($"encoder: {source}");
        List<(C3Record Record, int Index, string Subset)> Read(string file, string subset)
        {
            var d = ClueReaders.C3(Path.Combine(data, file));
            ChoiceRun.Report(d, log);
            return ClueRun.Take(d.Records.Select((r, i) => (r, i, subset)), o);
        }
        var trainRecords = Read("c3-d-train.json", "d").Concat(Read("c3-m-train.json", "m")).ToList();
        var devRecords = Read("c3-d-dev.json", "d").Concat(Read("c3-m-dev.json", "m")).ToList();

        // Dev is the official split, so nothing is removed; the overlap with train is reported.
        var trainPassages = trainRecords.Select(r => Passage(r.Record)).ToHashSet();
        var trainQuestions = trainRecords.Select(r => (Passage(r.Record), r.Record.Question)).ToHashSet();
        log($"dev overlap with train: {devRecords.Count(r => trainPassages.Contains(Passage(r.Record))):N0} of {devRecords.Count:N0} dev questions have a passage seen in train, "
            + $"{devRecords.Count(r => trainQuestions.Contains((Passage(r.Record), r.Record.Question))):N0} the same passage and question (kept: dev is the official split)");

        var pieces = new Dictionary<string, int[]>();
        var train = trainRecords.Select(r => ToItem(r.Record, r.Index, r.Subset, tokenizer, maxLength, pieces)).ToList();
        var dev = devRecords.Select(r => ToItem(r.Record, r.Index, r.Subset, tokenizer, maxLength, pieces)).ToList();
        var model = new MultipleChoice(encoder);
        return ChoiceRun.Train(Task, o, train, dev, model, tokenizer, maxLength, o.BatchSize ?? DefaultBatchSize, "label", log, progress, cancellation);
    }

    /// <summary>Predicts a C3-format file (answers may be absent); writes JSON lines <c>{"id": question index in file order, "label": choice index}</c>, atomically.</summary>
    /// <exception cref="InvalidDataException">The directory holds a model for another task.</exception>
    public int Predict(string modelDirectory, string input, string output, Action<string> log, int? limit = null, IEncoder? engine = null)
    {
        var (model, tokenizer, task) = ChoiceRun.Load(modelDirectory, Task, engine);
        var d = ClueReaders.C3(input);
        ChoiceRun.Report(d, log);
        var pieces = new Dictionary<string, int[]>();
        var items = d.Records.Take(limit ?? int.MaxValue).Select((r, i) => ToItem(r, i, "", tokenizer, task.MaxLength, pieces)).ToList();
        var predicted = model.Predict([.. items.Select(x => x.Question)], tokenizer.PaddingId, DefaultBatchSize);
        ClueRun.WriteJsonLines(output, items.Select((x, i) => (object)new { id = x.Id, label = predicted[i] }));
        log($"{items.Count:N0} questions → {output}");
        return items.Count;
    }

    /// <summary>The passage: the document's lines joined with <c>|</c> (the tokenizer drops line breaks; the bar keeps the turns apart).</summary>
    static string Passage(C3Record r) => string.Join("|", r.Context);

    static ChoiceRun.Item ToItem(C3Record r, int index, string subset, BertWordPieceTokenizer tokenizer, int maxLength, Dictionary<string, int[]> cache)
    {
        int[] Cached(string text) => cache.TryGetValue(text, out var ids) ? ids : cache[text] = ChoiceInputs.Pieces(tokenizer, text);
        var passage = Cached(Passage(r));
        var question = ChoiceInputs.Pieces(tokenizer, r.Question);
        var options = r.Choices.Select(c => ChoiceInputs.Pair(passage, question, ChoiceInputs.Pieces(tokenizer, c), maxLength, tokenizer.StartId, tokenizer.EndId)).ToList();
        return new ChoiceRun.Item(new ChoiceQuestion(options, r.AnswerIndex), index, subset, r.Choices.Count);
    }
}

/// <summary>
/// CHID, FewCLUE few-shot (<c>b4s clue train chid</c>): the <c>#idiom#</c> blank filled with each of the 7 candidates
/// (a window of context around it; the candidate's tokens in segment 1), each filled text scored by a
/// <see cref="MultipleChoice"/> head, 7-way softmax; accuracy on dev; FewCLUE submission lines <c>{"id", "answer"}</c>.
/// </summary>
public sealed class ChidRuns : IClueRun
{
    const int DefaultMaxLength = 128, DefaultBatchSize = 8;

    /// <inheritdoc/>
    public string Task => "chid";

    /// <inheritdoc/>
    public string Description => "CHID (FewCLUE) idiom cloze: the blank filled with each candidate → one score, 7-way softmax; accuracy on dev";

    /// <inheritdoc/>
    /// <remarks>The labelled test_public is held out and no unlabelled test is staged: dev.</remarks>
    public string DefaultInput(string dataDirectory) => Path.Combine(dataDirectory, "chid", "dev_few_all.json");

    /// <inheritdoc/>
    public RunResult Train(ClueRunOptions o, Action<string> log, ProgressDisplay progress, CancellationToken cancellation = default)
    {
        ClueRun.Begin(o);
        int maxLength = o.MaxLength ?? DefaultMaxLength;
        string data = Path.Combine(o.DataDirectory, "chid");
        var (encoder, tokenizer, source) = ClueRun.Encoder(o);
        log($"encoder: {source}");
        var trainData = ClueReaders.Chid(Path.Combine(data, "train_few_all.json"));
        var devData = ClueReaders.Chid(Path.Combine(data, "dev_few_all.json"));
        ChoiceRun.Report(trainData, log);
        ChoiceRun.Report(devData, log);
        var trainRecords = ClueRun.Take(trainData.Records, o);
        var devRecords = ClueRun.Take(devData.Records, o);
        int unanswered = trainRecords.Count(r => r.Answer is null) + devRecords.Count(r => r.Answer is null);
        if (unanswered > 0) throw new InvalidDataException($"{unanswered} CHID train/dev records have no answer: train and dev must be labelled");
        var trainContents = trainRecords.Select(r => r.Content).ToHashSet();
        log($"dev overlap with train: {devRecords.Count(r => trainContents.Contains(r.Content)):N0} of {devRecords.Count:N0} dev contents appear in train (kept: dev is the official split)");
        var train = trainRecords.Select((r, i) => ToItem(r, i, tokenizer, maxLength)).ToList();
        var dev = devRecords.Select((r, i) => ToItem(r, i, tokenizer, maxLength)).ToList();
        var model = new MultipleChoice(encoder);
        return ChoiceRun.Train(Task, o, train, dev, model, tokenizer, maxLength, o.BatchSize ?? DefaultBatchSize, "answer", log, progress, cancellation);
    }

    /// <summary>Predicts a CHID (FewCLUE) file (answers may be absent); writes JSON lines <c>{"id": …, "answer": candidate index}</c>, atomically.</summary>
    /// <exception cref="InvalidDataException">The directory holds a model for another task.</exception>
    public int Predict(string modelDirectory, string input, string output, Action<string> log, int? limit = null, IEncoder? engine = null)
    {
        var (model, tokenizer, task) = ChoiceRun.Load(modelDirectory, Task, engine);
        var d = ClueReaders.Chid(input);
        ChoiceRun.Report(d, log);
        var items = d.Records.Take(limit ?? int.MaxValue).Select((r, i) => ToItem(r, i, tokenizer, task.MaxLength)).ToList();
        var predicted = model.Predict([.. items.Select(x => x.Question)], tokenizer.PaddingId, DefaultBatchSize);
        ClueRun.WriteJsonLines(output, items.Select((x, i) => (object)new { id = x.Id, answer = predicted[i] }));
        log($"{items.Count:N0} blanks → {output}");
        return items.Count;
    }

    static ChoiceRun.Item ToItem(ChidRecord r, int index, BertWordPieceTokenizer tokenizer, int maxLength) =>
        new(new ChoiceQuestion([.. r.Candidates.Select(c => ChoiceInputs.Cloze(tokenizer, r.Content, c, maxLength))], r.Answer ?? -1),
            r.Id is int id ? id : index, "", r.Candidates.Count);
}
