namespace Bert4Sharp.Training;

using System.Text.Json;
using Bert4Sharp.Checkpoints;
using Bert4Sharp.Models;
using Bert4Sharp.Tasks;
using Bert4Sharp.Tasks.Clue;
using Bert4Sharp.Tokenization;
using TorchSharp;

/// <summary>Options of <see cref="EntityRuns.Train"/> (<c>b4s clue train cluener</c>).</summary>
public sealed record EntityRunOptions
{
    /// <summary>The staged data (<c>../shared/data</c>): reads <c>cluener2020/train.json</c> and <c>dev.json</c>.</summary>
    public required string DataDirectory { get; init; }
    /// <summary>Where the run writes (checkpoints, metrics, the saved model, dev predictions).</summary>
    public required string Output { get; init; }
    /// <summary>A pretrained model (any directory <see cref="AutoModel"/> reads, with vocab.txt); null: random initialisation from <see cref="Config"/>.</summary>
    public string? Model { get; init; }
    /// <summary>Family of <see cref="Model"/> or <see cref="Config"/> when the config does not say.</summary>
    public string? Family { get; init; }
    /// <summary>Config of a randomly initialised encoder.</summary>
    public string? Config { get; init; }
    /// <summary>The vocabulary of a randomly initialised encoder (default: vocab.txt beside <see cref="Config"/>).</summary>
    public string? Vocabulary { get; init; }
    /// <summary>Linear warm-up steps of the learning rate.</summary>
    public long WarmupSteps { get; init; } = 100;
    /// <summary>The head.</summary>
    public EntityHead Head { get; init; } = EntityHead.GlobalPointer;
    /// <summary>Time budget in minutes (null: the epochs).</summary>
    public double? Minutes { get; init; }
    /// <summary>Epochs at most.</summary>
    public int Epochs { get; init; } = 10;
    /// <summary>Seed of initialisation, shuffling and dropout.</summary>
    public int Seed { get; init; } = 42;
    /// <summary>Tokens per text (CLUENER texts are at most 50 characters).</summary>
    public int MaxLength { get; init; } = 64;
    /// <summary>Texts per batch.</summary>
    public int BatchSize { get; init; } = 32;
    /// <summary>Learning rate (default: 2e-5 for a pretrained encoder, 3e-4 from scratch).</summary>
    public double? LearningRate { get; init; }
    /// <summary>Evaluate on dev every this many steps (and at each epoch end).</summary>
    public long EvalEverySteps { get; init; } = 200;
    /// <summary>Continue an interrupted run; replace a finished one.</summary>
    public bool Resume { get; init; }
    /// <summary>Replace a previous run's output.</summary>
    public bool Overwrite { get; init; }
}

/// <summary>What the saved task model says about itself (<c>task.json</c>).</summary>
/// <param name="Task">The CLUE task.</param>
/// <param name="Head">The head.</param>
/// <param name="Types">Entity types in label order.</param>
/// <param name="MaxLength">Tokens per text.</param>
/// <param name="Scheme">Tag scheme of a CRF head.</param>
public sealed record EntityTaskFile(string Task, EntityHead Head, IReadOnlyList<string> Types, int MaxLength, TagScheme Scheme);

/// <summary>CLUENER2020 with an <see cref="EntityRecognizer"/>: training through the <see cref="Trainer{T}"/>, dev entity F1, CLUENER-format predictions.</summary>
public static class EntityRuns
{
    const string Task = "cluener";

    /// <summary>
    /// Trains on CLUENER's train split, evaluates entity F1 on dev (the best evaluation is chosen on dev, so it is an
    /// optimistic estimate), saves the best model under <c>output/model</c> (encoder in Hugging Face layout + vocab.txt,
    /// <c>head.safetensors</c>, <c>task.json</c>) and writes the dev predictions in CLUENER's format.
    /// </summary>
    public static RunResult Train(EntityRunOptions o, Action<string>? log = null, ProgressDisplay progress = ProgressDisplay.Auto, CancellationToken cancellation = default)
    {
        log ??= Console.WriteLine;
        TrainingOutput.EnsureUsable(o.Output, o.Resume, o.Overwrite);
        torch.manual_seed(o.Seed);
        string data = Path.Combine(o.DataDirectory, "cluener2020");
        var train = Read(Path.Combine(data, "train.json"), log);
        var dev = Read(Path.Combine(data, "dev.json"), log);
        var (encoder, tokenizer, source) = Encoder(o);
        log($"{train.Count:N0} training and {dev.Count:N0} dev texts; encoder: {source}; head: {o.Head}");
        var types = ClueReaders.NerTypes.Order(StringComparer.Ordinal).ToList();
        var model = new EntityRecognizer(encoder, types, new EntityRecognizerOptions { Head = o.Head });
        double lr = o.LearningRate ?? (o.Model is null ? 3e-4 : 2e-5);
        using var optimizer = new Adam(model.named_parameters().Select(p => (p.name, p.parameter)), new OptimizerOptions
        {
            LearningRate = lr, WeightDecay = 0.01, ClipGradientNorm = 1.0,
            Schedule = o.WarmupSteps > 0 ? new PiecewiseLinearSchedule(new Dictionary<long, double> { [o.WarmupSteps] = 1.0 }) : null,
        });
        var examples = train.Select(ToExample).ToList();
        int dropped = 0;
        var evaluation = new EvaluationCallback("f1", () => Evaluate(model, tokenizer, dev, o.MaxLength).Metrics) { EverySteps = o.EvalEverySteps, DataName = "dev" };
        var trainer = new Trainer<EntityExample>(model, optimizer, (batch, _) =>
        {
            using var b = model.Prepare(tokenizer, batch, o.MaxLength);
            dropped += b.Dropped;
            return new StepResult(model.Loss(b), b.Mask.sum().item<long>());
        }, new TrainerOptions
        {
            Epochs = o.Epochs, TimeBudget = o.Minutes is double m ? TimeSpan.FromMinutes(m) : null, Batching = new BatchingOptions { BatchSize = o.BatchSize },
            Seed = o.Seed, OutputDirectory = o.Output, Resume = o.Resume, Overwrite = o.Overwrite, Progress = progress,
            Log = progress == ProgressDisplay.Bar ? null : log, LogEverySteps = 50,
        }) { Length = e => e.Text.Length };
        var result = trainer.Fit(examples, [evaluation], cancellation);
        // Back to the evaluation chosen on dev (also after --resume, when this process may not have seen it), measured again.
        string bestPath = evaluation.SavedBestPath ?? Path.Combine(o.Output, "best.safetensors");
        if (File.Exists(bestPath))
            using (var ck = Checkpoint.Open(bestPath))
            using (var scope = torch.NewDisposeScope())
                model.load_state_dict(model.state_dict().ToDictionary(kv => kv.Key, kv => ck.ReadTensor(kv.Key)));
        var (metrics, devPredicted) = Evaluate(model, tokenizer, dev, o.MaxLength);
        string dir = Save(model, tokenizer, o.MaxLength, Path.Combine(o.Output, "model"));
        WritePredictions(Path.Combine(o.Output, "dev_predictions.json"), dev.Select(r => (r.Id, r.Text)).ToList(), devPredicted);
        string what = evaluation.Best is null ? "dev entity F1 after training (no evaluation ran during training)" : $"best dev entity F1 ({evaluation.DescribeBest()})";
        log($"{result.StopReason}: {result.Steps} steps; gold spans left out (off token boundaries, or overlapping for the CRF), counted over every batch trained: {dropped:N0}");
        log($"{what}: {metrics["f1"]:P2} (precision {metrics["precision"]:P2}, recall {metrics["recall"]:P2}); model saved to {dir}");
        return new RunResult(result, metrics, o.Output);
    }

    /// <summary>
    /// Predicts a CLUENER-format file (JSON lines with <c>id</c> and <c>text</c>) with a model saved by <see cref="Train"/>;
    /// writes JSON lines <c>{"id": …, "label": {type: {entity: [[start, end]]}}}</c> (inclusive character offsets), atomically.
    /// </summary>
    /// <exception cref="InvalidDataException">The directory holds a model for another task.</exception>
    public static int Predict(string modelDirectory, string input, string output, Action<string>? log = null)
    {
        log ??= Console.WriteLine;
        var (model, tokenizer, task) = Load(modelDirectory);
        var records = Read(input, log);
        var predicted = model.Predict(tokenizer, records.Select(r => r.Text).ToList(), task.MaxLength);
        WritePredictions(output, records.Select(r => (r.Id, r.Text)).ToList(), predicted);
        log($"{records.Count:N0} texts, {predicted.Sum(p => p.Count):N0} entities → {output}");
        return records.Count;
    }

    /// <summary>Loads a model saved by <see cref="Train"/>.</summary>
    /// <exception cref="InvalidDataException">No task.json, or one for another task.</exception>
    public static (EntityRecognizer Model, BertWordPieceTokenizer Tokenizer, EntityTaskFile Task) Load(string modelDirectory)
    {
        string taskPath = Path.Combine(modelDirectory, "task.json");
        if (!File.Exists(taskPath)) throw new InvalidDataException($"{modelDirectory} has no task.json: give the model directory that `b4s clue train cluener` saved (<output>/model)");
        var task = JsonSerializer.Deserialize<EntityTaskFile>(File.ReadAllText(taskPath), JsonOptions)
            ?? throw new InvalidDataException($"{taskPath}: empty");
        if (task.Task != Task) throw new InvalidDataException($"{modelDirectory} holds a model for '{task.Task}', not for {Task}");
        var loaded = AutoModel.Load(modelDirectory, new AutoModelOptions { Application = Application.Encoder });
        var model = new EntityRecognizer(loaded.Model, task.Types, new EntityRecognizerOptions { Head = task.Head, Scheme = task.Scheme });
        using (var head = Checkpoint.Open(Path.Combine(modelDirectory, "head.safetensors")))
        using (torch.no_grad())
            foreach (var (name, p) in model.named_parameters().Where(p => !p.name.StartsWith("encoder.", StringComparison.Ordinal)))
                p.copy_(head.ReadTensor(name));
        model.eval();
        return (model, loaded.WordPiece ?? throw new FileNotFoundException($"{modelDirectory}: no vocab.txt"), task);
    }

    static readonly JsonSerializerOptions JsonOptions = new() { Converters = { new System.Text.Json.Serialization.JsonStringEnumConverter() }, WriteIndented = true };

    static string Save(EntityRecognizer model, BertWordPieceTokenizer tokenizer, int maxLength, string directory)
    {
        model.Encoder.SavePretrained(directory);
        tokenizer.Vocabulary.Save(Path.Combine(directory, "vocab.txt"));
        using (var scope = torch.NewDisposeScope())
            SafetensorsWriter.Write(Path.Combine(directory, "head.safetensors"), model.named_parameters()
                .Where(p => !p.name.StartsWith("encoder.", StringComparison.Ordinal)).Select(p => TensorSource.From(p.name, p.parameter.detach().cpu())).ToList());
        AtomicFile.WriteAllText(Path.Combine(directory, "task.json"),
            JsonSerializer.Serialize(new EntityTaskFile(Task, model.Options.Head, model.Types, maxLength, model.Options.Scheme), JsonOptions));
        return directory;
    }

    static (TransformerModel Encoder, BertWordPieceTokenizer Tokenizer, string Source) Encoder(EntityRunOptions o)
    {
        if (o.Model is not null)
        {
            var loaded = AutoModel.Load(o.Model, new AutoModelOptions { Family = o.Family, Application = Application.Encoder });
            return (loaded.Model, loaded.WordPiece ?? throw new FileNotFoundException($"{o.Model}: no vocab.txt"), $"pretrained weights from {o.Model}");
        }
        string config = o.Config ?? throw new ArgumentException("give a pretrained model (--model) or a config for random initialisation (--config)");
        var c = TransformerConfig.Load(config);
        string family = o.Family ?? c.ModelType ?? "roformer_v2";
        string vocab = o.Vocabulary ?? Path.Combine(Path.GetDirectoryName(Path.GetFullPath(config))!, "vocab.txt");
        var tokenizer = BertWordPieceTokenizer.FromFile(vocab, new BertWordPieceOptions { LowerCase = true });
        var encoder = TransformerModels.Create(c with { VocabSize = tokenizer.Vocabulary.Count }, family, Application.Encoder);
        return (encoder, tokenizer, $"random initialisation ({family}, {c.NumHiddenLayers} × {c.HiddenSize}, {encoder.parameters().Sum(p => p.numel()) / 1e6:F1} M parameters)");
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

    static void WritePredictions(string path, IReadOnlyList<(string? Id, string Text)> texts, IReadOnlyList<IReadOnlyList<EntitySpan>> predicted)
    {
        var lines = texts.Select((t, i) =>
        {
            var label = predicted[i].Select(s => (Ner: ToNer(t.Text, s), Surface: t.Text[s.Start..s.End]))
                .GroupBy(x => x.Ner.Type).ToDictionary(g => g.Key, g => g.GroupBy(x => x.Surface).ToDictionary(h => h.Key, h => h.Select(x => new[] { x.Ner.Start, x.Ner.End }).ToArray()));
            object id = int.TryParse(t.Id, out int n) ? n : (object?)t.Id ?? i;
            return JsonSerializer.Serialize(new { id, label }, new JsonSerializerOptions { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping });
        });
        AtomicFile.WriteAllText(path, string.Join("\n", lines) + "\n");
    }
}
