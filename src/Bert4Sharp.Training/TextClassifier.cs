namespace Bert4Sharp.Training;

using System.Globalization;
using System.Text.Json;
using Bert4Sharp.Models;
using Bert4Sharp.Tasks;
using Bert4Sharp.Tokenization;
using TorchSharp;
using static TorchSharp.torch;

/// <summary>A text or text pair, with its label string when known (null: unlabelled, e.g. a test file).</summary>
/// <param name="Text">The text (text A of a pair).</param>
/// <param name="Pair">Text B, or null for single-text classification (<c>[CLS] a [SEP] b [SEP]</c>, segment ids 0/1).</param>
/// <param name="Label">The label as the data spells it, or null.</param>
/// <param name="Id">The record's id in the source file (submission files carry it), or null.</param>
public sealed record TextExample(string Text, string? Pair = null, string? Label = null, string? Id = null);

/// <summary>How a <see cref="TextClassifier"/> is built and trained (the training loop's options are <see cref="ClueRunOptions"/>).</summary>
public sealed record TextClassifierOptions
{
    /// <summary>The task name written to <c>task.json</c> (a saved model is refused by another task's loader).</summary>
    public string Task { get; init; } = "text-classification";
    /// <summary>How the encoder's hidden states become one vector.</summary>
    public Pooling Pooling { get; init; } = Pooling.First;
    /// <summary>Weight the cross-entropy by inverse class frequency in the training data (<see cref="TextClassifier.InverseFrequencyWeights"/>).</summary>
    public bool ClassWeights { get; init; }
    /// <summary>Tokens per input (pairs are truncated from the longer text).</summary>
    public int MaxLength { get; init; } = 128;
    /// <summary>Examples per batch.</summary>
    public int BatchSize { get; init; } = 32;
    /// <summary>Dropout before the dense layer.</summary>
    public double Dropout { get; init; } = 0.1;
    /// <summary>The labels in index order; null: the distinct training labels, sorted (numerically when all are integers).</summary>
    public IReadOnlyList<string>? Labels { get; init; }
}

/// <summary>A predicted label and the probability of every label (in <see cref="TextClassifier.Labels"/> order).</summary>
public sealed record ClassPrediction(string Label, int Index, IReadOnlyList<float> Probabilities);

/// <summary>What <see cref="TextClassifier.Train"/> did: the trained classifier, the trainer's result and the dev evaluations.</summary>
public sealed record TextClassifierTraining(TextClassifier Classifier, TrainingResult Result, EvaluationCallback Evaluation);

/// <summary>
/// Text (pair) classification in the C# API: a <see cref="SequenceClassifier"/> with its tokenizer and label strings.
/// <see cref="Train"/> runs the same loop as <c>b4s clue train</c> (<see cref="ClueRun.Fit"/>), <see cref="Save"/> writes a
/// task model directory and <see cref="Load"/> reads it back; <see cref="Predict(string, string?)"/> returns label + probabilities.
/// </summary>
/// <example><code>
/// var t = TextClassifier.Train(train, dev, new ClueRunOptions { DataDirectory = "", Output = "run", Config = "c.json", Minutes = 2 },
///     new TextClassifierOptions { ClassWeights = true }, Console.WriteLine);
/// t.Classifier.Save("run/model");
/// var p = TextClassifier.Load("run/model").Predict("今天天气怎么样", "明天天气如何");
/// </code></example>
public sealed class TextClassifier : IDisposable
{
    /// <summary>The head name a saved classifier's task.json carries.</summary>
    public const string HeadName = "classifier";

    internal TextClassifier(SequenceClassifier model, BertWordPieceTokenizer tokenizer, IReadOnlyList<string> labels, TextClassifierOptions options)
    {
        Model = model;
        Tokenizer = tokenizer;
        Labels = labels;
        Options = options;
    }

    /// <summary>The encoder and its head.</summary>
    public SequenceClassifier Model { get; }
    /// <summary>The tokenizer.</summary>
    public BertWordPieceTokenizer Tokenizer { get; }
    /// <summary>The label strings in index order.</summary>
    public IReadOnlyList<string> Labels { get; }
    /// <summary>The options it was built with (<see cref="TextClassifierOptions.Labels"/> filled in).</summary>
    public TextClassifierOptions Options { get; }

    /// <summary>
    /// Trains a classifier on <paramref name="train"/>, evaluating accuracy on <paramref name="dev"/> (<see cref="ClueRun.Fit"/>:
    /// Adam, warm-up, early stopping, return to the best-on-dev weights). Checkpoints go to <see cref="ClueRunOptions.Output"/>;
    /// call <see cref="Save"/> to keep the model. <see cref="ClueRunOptions.DataDirectory"/>, <see cref="ClueRunOptions.Head"/>,
    /// <see cref="ClueRunOptions.MaxLength"/> and <see cref="ClueRunOptions.BatchSize"/> are not read (see <paramref name="options"/>).
    /// </summary>
    /// <exception cref="ArgumentException">A training or dev example without a label, or with one outside <see cref="TextClassifierOptions.Labels"/>.</exception>
    public static TextClassifierTraining Train(IReadOnlyList<TextExample> train, IReadOnlyList<TextExample> dev, ClueRunOptions run, TextClassifierOptions options,
        Action<string> log, ProgressDisplay progress = ProgressDisplay.Lines, CancellationToken cancellation = default)
    {
        ClueRun.Begin(run);
        var labels = options.Labels ?? SortLabels(train.Select(x => x.Label ?? throw new ArgumentException($"training example '{x.Text}' has no label")));
        options = options with { Labels = labels };
        var trainSet = Indexed(train, labels, "training");
        var devSet = Indexed(dev, labels, "dev");
        var (encoder, tokenizer, source) = ClueRun.Encoder(run);
        log($"encoder: {source}; head: {options.Pooling} pooling → dense to {labels.Count} labels; {options.MaxLength} tokens per input");
        var model = new SequenceClassifier(encoder, labels.Count, options.Dropout, options.Pooling);
        model.to(encoder.Device);                                                               // the head lives where the encoder does
        var classifier = new TextClassifier(model, tokenizer, labels, options);
        Tensor? weights = null;
        if (options.ClassWeights)
        {
            var w = InverseFrequencyWeights(trainSet.Select(x => x.Label), labels.Count);
            weights = torch.tensor(w.Select(v => (float)v).ToArray(), device: encoder.Device);
            log("class weights (inverse training frequency): " + string.Join(", ", labels.Select((l, i) => $"{l} {w[i].ToString("G3", CultureInfo.InvariantCulture)}")));
        }
        using var weightsLifetime = weights;
        var (result, evaluation) = ClueRun.Fit(model, trainSet, batch =>
        {
            var (ids, segments, mask, target) = FineTuning.Batch(tokenizer, batch, options.MaxLength, encoder.Device);
            var logits = model.forward(ids, segments, mask);                                    // (B, labels)
            return new StepResult(nn.functional.cross_entropy(logits, target, weights), mask.sum().item<long>());
        }, () => FineTuning.Evaluate(model, tokenizer, devSet, options.MaxLength), "accuracy", run, options.BatchSize, log, progress, cancellation,
            LabelledText.CharacterLength);
        return new TextClassifierTraining(classifier, result, evaluation);
    }

    /// <summary>The label and probabilities of one text or text pair.</summary>
    public ClassPrediction Predict(string text, string? pair = null) => Predict([new TextExample(text, pair)])[0];

    /// <summary>
    /// Labels and probabilities of many examples (their labels are ignored), in batches of similar length, in input order.
    /// <paramref name="logits"/> computes (ids, segments, mask) → (B, labels) on another engine (e.g. this classifier
    /// exported to ONNX and run by ONNX Runtime); null: this model.
    /// </summary>
    public IReadOnlyList<ClassPrediction> Predict(IReadOnlyList<TextExample> examples, Func<Tensor, Tensor, Tensor, Tensor>? logits = null)
    {
        bool wasTraining = Model.training;
        Model.eval();
        var device = Model.Encoder.Device;
        var predictions = new ClassPrediction[examples.Count];
        // Batches of similar length (little padding); results go back to the input order.
        var order = Enumerable.Range(0, examples.Count).OrderBy(i => examples[i].Text.Length + (examples[i].Pair?.Length ?? 0)).ToArray();
        int batch = Math.Max(Options.BatchSize, 64);
        using (torch.no_grad())
            for (int i = 0; i < order.Length; i += batch)
            {
                using var scope = torch.NewDisposeScope();
                var rows = order.AsSpan(i, Math.Min(batch, order.Length - i)).ToArray();
                var (ids, segments, mask) = FineTuning.Inputs(Tokenizer, rows.Select(r => (examples[r].Text, examples[r].Pair)), Options.MaxLength, device);
                var p = nn.functional.softmax(logits is null ? Model.forward(ids, segments, mask) : logits(ids, segments, mask), -1).to(ScalarType.Float32).cpu();   // (b, labels)
                float[] flat = p.data<float>().ToArray();
                for (int r = 0; r < rows.Length; r++)
                {
                    var row = flat.AsSpan(r * Labels.Count, Labels.Count).ToArray();
                    int best = 0;
                    for (int k = 1; k < row.Length; k++) if (row[k] > row[best]) best = k;
                    predictions[rows[r]] = new ClassPrediction(Labels[best], best, row);
                }
            }
        if (wasTraining) Model.train();
        return predictions;
    }

    /// <summary>Saves the encoder (Hugging Face layout), vocab.txt, head.safetensors and task.json to <paramref name="directory"/>.</summary>
    public string Save(string directory) => ClueRun.Save(Model, Model.Encoder, Tokenizer, new TaskModelFile(Options.Task, HeadName, Labels, Options.MaxLength,
        new Dictionary<string, string>
        {
            ["pooling"] = Options.Pooling.ToString(),
            ["dropout"] = Options.Dropout.ToString("R", CultureInfo.InvariantCulture),
            ["class_weights"] = Options.ClassWeights ? "inverse-frequency" : "none",
        }), directory);

    /// <summary>Loads a classifier <see cref="Save"/> wrote.</summary>
    /// <param name="directory">The saved model directory.</param>
    /// <param name="task">The task it must have been trained for (null: any).</param>
    /// <param name="engine">A second engine for the encoder at inference (the directory then needs no encoder weights); null: TorchSharp.</param>
    /// <exception cref="InvalidDataException">No task.json, one for another task, or a model without a classifier head.</exception>
    public static TextClassifier Load(string directory, string? task = null, IEncoder? engine = null)
    {
        task ??= TaskName(directory);
        var file = ClueRun.ReadTask(directory, task);
        if (file.Head != HeadName) throw new InvalidDataException($"{directory}: task.json says head '{file.Head}', not a text classifier's '{HeadName}'");
        if (!Enum.TryParse<Pooling>(file.Setting("pooling", nameof(Pooling.First)), out var pooling))
            throw new InvalidDataException($"{directory}/task.json: unknown pooling '{file.Setting("pooling", "")}'");
        double dropout = double.Parse(file.Setting("dropout", "0.1"), CultureInfo.InvariantCulture);
        var (encoder, tokenizer) = ClueRun.LoadEncoder(directory, engine);
        var model = new SequenceClassifier(encoder, file.Labels.Count, dropout, pooling);
        model.to(encoder.Device);
        ClueRun.LoadHead(model, directory, engine);
        return new TextClassifier(model, tokenizer, file.Labels, new TextClassifierOptions
        {
            Task = task, Pooling = pooling, Dropout = dropout, MaxLength = file.MaxLength, Labels = file.Labels,
            ClassWeights = file.Setting("class_weights", "none") != "none",
        });
    }

    /// <summary>
    /// Inverse-frequency class weights: <c>w_c = N / (K · n_c)</c> for the K classes present among the N labels (so the
    /// weights average 1 over the training examples); a class absent from training gets 0 (it never is a target).
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">A label outside [0, <paramref name="classes"/>).</exception>
    public static double[] InverseFrequencyWeights(IEnumerable<int> labels, int classes)
    {
        var counts = new long[classes];
        foreach (int l in labels)
        {
            if (l < 0 || l >= classes) throw new ArgumentOutOfRangeException(nameof(labels), $"label index {l} is outside [0, {classes})");
            counts[l]++;
        }
        long n = counts.Sum();
        int present = counts.Count(c => c > 0);
        return [.. counts.Select(c => c == 0 ? 0.0 : (double)n / (present * c))];
    }

    /// <summary>Distinct labels sorted numerically when all are integers, else ordinally.</summary>
    public static IReadOnlyList<string> SortLabels(IEnumerable<string> labels)
    {
        var distinct = labels.Distinct(StringComparer.Ordinal).ToList();
        return distinct.All(l => long.TryParse(l, NumberStyles.Integer, CultureInfo.InvariantCulture, out _))
            ? [.. distinct.OrderBy(l => long.Parse(l, CultureInfo.InvariantCulture))]
            : [.. distinct.Order(StringComparer.Ordinal)];
    }

    internal static List<LabelledText> Indexed(IReadOnlyList<TextExample> data, IReadOnlyList<string> labels, string what)
    {
        var index = labels.Select((l, i) => (l, i)).ToDictionary(x => x.l, x => x.i, StringComparer.Ordinal);
        return [.. data.Select((x, k) => x.Label is null
            ? throw new ArgumentException($"{what} example {k} ('{x.Text}') has no label")
            : index.TryGetValue(x.Label, out int i) ? new LabelledText(x.Text, x.Pair, i)
            : throw new ArgumentException($"{what} example {k} has label '{x.Label}', which is not one of the {labels.Count} labels ({string.Join(", ", labels.Take(20))})"))];
    }

    static string TaskName(string directory)
    {
        string path = Path.Combine(directory, "task.json");
        if (!File.Exists(path)) throw new InvalidDataException($"{directory} has no task.json: give a directory TextClassifier.Save or `b4s clue train` wrote");
        try
        {
            using var doc = JsonDocument.Parse(File.ReadAllText(path));
            return doc.RootElement.ValueKind == JsonValueKind.Object && doc.RootElement.TryGetProperty("Task", out var t) && t.ValueKind == JsonValueKind.String
                ? t.GetString()! : throw new InvalidDataException($"{path}: no \"Task\" string");
        }
        catch (JsonException e) { throw new InvalidDataException($"{path}: not a task file ({e.Message})", e); }
    }

    /// <inheritdoc/>
    public void Dispose() => Model.Dispose();
}
