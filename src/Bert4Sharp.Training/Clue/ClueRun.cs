namespace Bert4Sharp.Training;

using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.Json.Serialization;
using Bert4Sharp.Checkpoints;
using Bert4Sharp.Models;
using Bert4Sharp.Runtime;
using Bert4Sharp.Tasks;
using Bert4Sharp.Tokenization;
using TorchSharp;
using static TorchSharp.torch;

/// <summary>Options of every <c>b4s clue train &lt;task&gt;</c> run (<see cref="IClueRun.Train"/>).</summary>
public sealed record ClueRunOptions
{
    /// <summary>The staged data (<c>../shared/data</c>); each task reads its own folder under it.</summary>
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
    /// <summary>The task's head when it has several (CLUENER: <c>crf</c>, <c>gp</c>, <c>egp</c>); null: the task's default.</summary>
    public string? Head { get; init; }
    /// <summary>Linear warm-up steps of the learning rate.</summary>
    public long WarmupSteps { get; init; } = 100;
    /// <summary>Time budget in minutes (null: the epochs).</summary>
    public double? Minutes { get; init; }
    /// <summary>Epochs at most.</summary>
    public int Epochs { get; init; } = 10;
    /// <summary>Optimizer steps at most (null: no limit).</summary>
    public long? MaxSteps { get; init; }
    /// <summary>Use only the first this many training and dev examples (smoke tests, quick looks; null: all).</summary>
    public int? Limit { get; init; }
    /// <summary>Seed of initialisation, shuffling and dropout.</summary>
    public int Seed { get; init; } = 42;
    /// <summary>Tokens per input (null: the task's default).</summary>
    public int? MaxLength { get; init; }
    /// <summary>Examples per batch (null: the task's default).</summary>
    public int? BatchSize { get; init; }
    /// <summary>Learning rate (default: 2e-5 for a pretrained encoder, 3e-4 from scratch).</summary>
    public double? LearningRate { get; init; }
    /// <summary>Evaluate on dev every this many steps (and at each epoch end).</summary>
    public long EvalEverySteps { get; init; } = 200;
    /// <summary>Early stopping: stop after this many dev evaluations without improvement (null: never).</summary>
    public int? Patience { get; init; }
    /// <summary>Continue an interrupted run; replace a finished one.</summary>
    public bool Resume { get; init; }
    /// <summary>Replace a previous run's output.</summary>
    public bool Overwrite { get; init; }
    /// <summary>What the encoder computes in (<see cref="PrecisionPolicy"/>); heads stay in fp32.</summary>
    public Precision Precision { get; init; } = Precision.Fp32;

    /// <summary>The precision this run resolves to on <paramref name="device"/> (training: fp16 gets loss scaling).</summary>
    public PrecisionPlan PrecisionPlan(Device device) => PrecisionPolicy.Resolve(Precision, device, training: true);

    /// <summary>The learning rate this run uses.</summary>
    public double EffectiveLearningRate => LearningRate ?? (Model is null ? 3e-4 : 2e-5);
}

/// <summary>
/// What a saved task model says about itself (<c>task.json</c> beside the encoder's Hugging Face files,
/// <c>vocab.txt</c> and <c>head.safetensors</c>).
/// </summary>
/// <param name="Task">The CLUE task the model was trained for (<c>predict</c> refuses another).</param>
/// <param name="Head">The head, in the task's own words (e.g. <c>GlobalPointer</c>, <c>classifier</c>).</param>
/// <param name="Labels">The label set in index order (entity types, class labels, predicates …).</param>
/// <param name="MaxLength">Tokens per input.</param>
/// <param name="Settings">Anything else the task needs to rebuild its head (tag scheme, pooling, stride …).</param>
public sealed record TaskModelFile(string Task, string Head, IReadOnlyList<string> Labels, int MaxLength, IReadOnlyDictionary<string, string>? Settings = null)
{
    /// <summary>A setting, or <paramref name="fallback"/> when absent.</summary>
    public string Setting(string name, string fallback) => Settings is not null && Settings.TryGetValue(name, out var v) ? v : fallback;
}

/// <summary>One CLUE-family task as <c>b4s clue</c> runs it: training with dev evaluation, and prediction in the submission format.</summary>
public interface IClueRun
{
    /// <summary>The name on the command line (<c>afqmc</c>, <c>cluener</c>, …).</summary>
    string Task { get; }

    /// <summary>One line: the head, the metric, the data used.</summary>
    string Description { get; }

    /// <summary>
    /// Trains on the task's training data, evaluates on dev with the task's metric (the best evaluation is chosen on dev,
    /// so it is an optimistic estimate), saves the best model under <c>output/model</c> and writes the dev predictions
    /// in the submission format under <c>output/</c>.
    /// </summary>
    RunResult Train(ClueRunOptions options, Action<string> log, ProgressDisplay progress, CancellationToken cancellation = default);

    /// <summary>The file <c>predict</c> reads when no input is given: the task's unlabelled test split when staged, else its dev split.</summary>
    string DefaultInput(string dataDirectory);

    /// <summary>
    /// Predicts a file in the task's input format with a model <see cref="Train"/> saved; writes the submission format
    /// atomically; returns the records predicted (the first <paramref name="limit"/> when given). With an
    /// <paramref name="engine"/> (e.g. ONNX Runtime on the exported encoder) the encoder runs there and only the head in
    /// TorchSharp; the directory then needs no encoder weights (a <c>b4s export onnx</c> copy of the model).
    /// </summary>
    int Predict(string modelDirectory, string input, string output, Action<string> log, int? limit = null, IEncoder? engine = null);
}

/// <summary>What every CLUE run shares: the encoder (pretrained or random), the training loop with dev evaluation and the return to the best weights, and the saved task model.</summary>
public static class ClueRun
{
    /// <summary>
    /// What every run does first: refuses an output directory holding another run (unless resuming or overwriting) and
    /// seeds torch, so initialisation, shuffling and dropout repeat.
    /// </summary>
    public static void Begin(ClueRunOptions o)
    {
        TrainingOutput.EnsureUsable(o.Output, o.Resume, o.Overwrite);
        torch.manual_seed(o.Seed);
    }

    /// <summary>The encoder and its tokenizer: pretrained weights from <see cref="ClueRunOptions.Model"/>, or a random one from <see cref="ClueRunOptions.Config"/>.</summary>
    /// <returns>The encoder, the tokenizer and a description for the log.</returns>
    public static (TransformerModel Encoder, BertWordPieceTokenizer Tokenizer, string Source) Encoder(ClueRunOptions o)
    {
        var (encoder, tokenizer, source) = LoadEncoder(o);
        o.PrecisionPlan(encoder.Device).Apply(encoder);     // before any head is built around it: heads stay fp32
        return (encoder, tokenizer, source);
    }

    static (TransformerModel Encoder, BertWordPieceTokenizer Tokenizer, string Source) LoadEncoder(ClueRunOptions o)
    {
        if (o.Model is not null)
        {
            var loaded = AutoModel.Load(o.Model, new AutoModelOptions { Family = o.Family, Application = Application.Encoder });
            return (loaded.Model, loaded.WordPiece ?? throw new FileNotFoundException($"{o.Model}: no vocab.txt (a CLUE run needs a WordPiece vocabulary)"), $"pretrained weights from {o.Model}");
        }
        string config = o.Config ?? throw new ArgumentException("give a pretrained model (--model) or a config for random initialisation (--config)");
        var c = TransformerConfig.Load(config);
        string family = o.Family ?? c.ModelType ?? "roformer_v2";
        string vocab = o.Vocabulary ?? Path.Combine(Path.GetDirectoryName(Path.GetFullPath(config))!, "vocab.txt");
        var tokenizer = BertWordPieceTokenizer.FromFile(vocab, new BertWordPieceOptions { LowerCase = true });
        var encoder = TransformerModels.Create(c with { VocabSize = tokenizer.Vocabulary.Count }, family, Application.Encoder);
        return (encoder, tokenizer, $"random initialisation ({family}, {c.NumHiddenLayers} × {c.HiddenSize}, {encoder.parameters().Sum(p => p.numel()) / 1e6:F1} M parameters)");
    }

    /// <summary>
    /// Trains <paramref name="model"/> with Adam (weight decay 0.01, gradient clipping 1, linear warm-up), evaluates
    /// <paramref name="evaluate"/> on dev every <see cref="ClueRunOptions.EvalEverySteps"/> and at each epoch end, stops
    /// early after <see cref="ClueRunOptions.Patience"/> evaluations without improvement, and finally loads the weights of
    /// the best evaluation back (also after <c>--resume</c>, when this process may not have seen it).
    /// </summary>
    /// <param name="model">The task model; parameters named <c>encoder.*</c> are the Transformer.</param>
    /// <param name="train">Training examples.</param>
    /// <param name="step">Batch → loss and token count (runs inside the trainer's dispose scope).</param>
    /// <param name="evaluate">Dev metrics (run under no_grad in evaluation mode by the callback).</param>
    /// <param name="metric">The main metric among those <paramref name="evaluate"/> returns.</param>
    /// <param name="o">The run's options.</param>
    /// <param name="batchSize">Examples per batch.</param>
    /// <param name="log">Log lines.</param>
    /// <param name="progress">Progress display.</param>
    /// <param name="cancellation">Stops training between steps.</param>
    /// <param name="length">Example length for bucketing, or null.</param>
    /// <returns>The trainer's result and the evaluation callback (its history and best record).</returns>
    public static (TrainingResult Result, EvaluationCallback Evaluation) Fit<T>(nn.Module model, IReadOnlyList<T> train, Func<IReadOnlyList<T>, StepResult> step,
        Func<IReadOnlyDictionary<string, double>> evaluate, string metric, ClueRunOptions o, int batchSize, Action<string> log, ProgressDisplay progress,
        CancellationToken cancellation, Func<T, int>? length = null) =>
        FitWithContext(model, train, (batch, _) => step(batch), evaluate, metric, o, batchSize, log, progress, cancellation, length);

    /// <summary>
    /// <see cref="Fit{T}(nn.Module, IReadOnlyList{T}, Func{IReadOnlyList{T}, StepResult}, Func{IReadOnlyDictionary{string, double}}, string, ClueRunOptions, int, Action{string}, ProgressDisplay, CancellationToken, Func{T, int}?)"/>
    /// with a step that also reads the trainer's <see cref="StepContext"/> (the step number and its seeded generator, e.g.
    /// for BERT-of-Theseus's per-batch replacement draws). Only parameters that require gradients are optimized.
    /// </summary>
    public static (TrainingResult Result, EvaluationCallback Evaluation) FitWithContext<T>(nn.Module model, IReadOnlyList<T> train, Func<IReadOnlyList<T>, StepContext, StepResult> step,
        Func<IReadOnlyDictionary<string, double>> evaluate, string metric, ClueRunOptions o, int batchSize, Action<string> log, ProgressDisplay progress,
        CancellationToken cancellation, Func<T, int>? length = null)
    {
        var plan = o.PrecisionPlan(model.parameters().First().device);
        using var optimizer = new Adam(model.named_parameters().Select(p => (p.name, p.parameter)), new OptimizerOptions
        {
            LearningRate = o.EffectiveLearningRate, WeightDecay = 0.01, ClipGradientNorm = 1.0,
            Schedule = o.WarmupSteps > 0 ? new PiecewiseLinearSchedule(new Dictionary<long, double> { [o.WarmupSteps] = 1.0 }) : null,
            LossScaling = DynamicLossScale.For(plan),
        });
        var evaluation = new EvaluationCallback(metric, evaluate) { EverySteps = o.EvalEverySteps, Patience = o.Patience, DataName = "dev" };
        var trainer = new Trainer<T>(model, optimizer, step, new TrainerOptions
        {
            Epochs = o.Epochs, MaxSteps = o.MaxSteps, TimeBudget = o.Minutes is double m ? TimeSpan.FromMinutes(m) : null, Batching = new BatchingOptions { BatchSize = batchSize },
            Seed = o.Seed, OutputDirectory = o.Output, Resume = o.Resume, Overwrite = o.Overwrite, Progress = progress,
            Log = progress == ProgressDisplay.Bar ? null : log, LogEverySteps = 50, Precision = plan,
        }) { Length = length };
        var result = trainer.Fit(train, [evaluation], cancellation);
        string bestPath = evaluation.SavedBestPath ?? Path.Combine(o.Output, "best.safetensors");
        if (File.Exists(bestPath))
            using (var ck = Checkpoint.Open(bestPath))
            using (var scope = torch.NewDisposeScope())
                model.load_state_dict(model.state_dict().ToDictionary(kv => kv.Key, kv => ck.ReadTensor(kv.Key)));
        return (result, evaluation);
    }

    /// <summary>The first <see cref="ClueRunOptions.Limit"/> records (all without a limit).</summary>
    public static List<T> Take<T>(IEnumerable<T> records, ClueRunOptions o) => Take(records, o.Limit);

    /// <summary>The first <paramref name="limit"/> records (all when null).</summary>
    public static List<T> Take<T>(IEnumerable<T> records, int? limit) => [.. limit is int n ? records.Take(n) : records];

    /// <summary>"best dev F1 (step 800 (epoch 2 of 10), chosen on dev)" or, when no evaluation ran, "dev F1 after training".</summary>
    public static string DescribeResult(EvaluationCallback evaluation, string metricName) =>
        evaluation.Best is null ? $"dev {metricName} after training (no evaluation ran during training)" : $"best dev {metricName} ({evaluation.DescribeBest()})";

    /// <summary>
    /// Saves a task model: the encoder in Hugging Face layout, <c>vocab.txt</c>, every parameter outside <c>encoder.*</c>
    /// in <c>head.safetensors</c>, and <c>task.json</c> (plus the word pre-tokenizer in <c>tokenizer_config.json</c> when the
    /// tokenizer has one, e.g. a WoBERT encoder's jieba, so <c>b4s clue predict</c> and <c>b4s explain</c> tokenise as training did).
    /// </summary>
    public static string Save(nn.Module model, TransformerModel encoder, BertWordPieceTokenizer tokenizer, TaskModelFile task, string directory)
    {
        TransformerPipeline.Create(encoder, tokenizer).SavePretrained(directory);
        using (var scope = torch.NewDisposeScope())
            SafetensorsWriter.Write(Path.Combine(directory, "head.safetensors"), model.named_parameters()
                .Where(p => !p.name.StartsWith("encoder.", StringComparison.Ordinal)).Select(p => TensorSource.From(p.name, p.parameter.detach().cpu())).ToList());
        AtomicFile.WriteAllText(Path.Combine(directory, "task.json"), JsonSerializer.Serialize(task, JsonOptions));
        return directory;
    }

    /// <summary>Reads <c>task.json</c> of a saved task model and checks it belongs to <paramref name="task"/> (null: any task).</summary>
    /// <exception cref="InvalidDataException">No task.json, or one for another task.</exception>
    public static TaskModelFile ReadTask(string modelDirectory, string? task)
    {
        string taskPath = Path.Combine(modelDirectory, "task.json");
        if (!File.Exists(taskPath)) throw new InvalidDataException($"{modelDirectory} has no task.json: give the model directory that `b4s clue train {task ?? "<task>"}` saved (<output>/model)");
        TaskModelFile? file;
        try { file = JsonSerializer.Deserialize<TaskModelFile>(File.ReadAllText(taskPath), JsonOptions); }
        catch (JsonException e) { throw new InvalidDataException($"{taskPath}: not a task file ({e.Message})", e); }
        if (file is null || file.Task is null || file.Labels is null) throw new InvalidDataException($"{taskPath}: missing task, head or labels");
        if (task is not null && file.Task != task) throw new InvalidDataException($"{modelDirectory} holds a model for '{file.Task}', not for '{task}': use `b4s clue predict {file.Task}` or a model trained for {task}");
        return file;
    }

    /// <summary>
    /// The encoder and tokenizer of a saved task model (the head is built by the caller and filled by <see cref="LoadHead"/>).
    /// With a second <paramref name="engine"/> the encoder's weights are not read (the directory may hold only the exported
    /// graph): the TorchSharp encoder then gives the head its shape and the engine computes the hidden states.
    /// </summary>
    /// <exception cref="InvalidDataException">The engine's hidden width is not the config's.</exception>
    public static (TransformerModel Encoder, BertWordPieceTokenizer Tokenizer) LoadEncoder(string modelDirectory, IEncoder? engine = null)
    {
        var loaded = AutoModel.Load(modelDirectory, new AutoModelOptions { Application = Application.Encoder, Weights = engine is null, Build = new BuildOptions { Device = engine?.Device } });
        if (engine is not null && engine.HiddenSize != loaded.Model.HiddenSize)
            throw new InvalidDataException($"{modelDirectory}: the {engine.Engine} engine gives hidden states of width {engine.HiddenSize} but config.json says {loaded.Model.HiddenSize}; export this task model's encoder (b4s export onnx --model {modelDirectory})");
        return (loaded.Model, loaded.WordPiece ?? throw new FileNotFoundException($"{modelDirectory}: no vocab.txt"));
    }

    /// <summary>
    /// Copies <c>head.safetensors</c> into every parameter of <paramref name="model"/> outside <c>encoder.*</c>, switches it
    /// to evaluation mode and, given an <paramref name="engine"/>, makes it the model's <see cref="ITaskHead.Engine"/>.
    /// </summary>
    /// <exception cref="FileNotFoundException">No head.safetensors in the directory.</exception>
    public static void LoadHead(nn.Module model, string modelDirectory, IEncoder? engine = null)
    {
        string path = Path.Combine(modelDirectory, "head.safetensors");
        if (!File.Exists(path)) throw new FileNotFoundException($"{modelDirectory}: no head.safetensors (the task head's weights); give the directory b4s clue train saved (<output>/model) or its b4s export onnx copy", path);
        using (var head = Checkpoint.Open(path))
        using (torch.no_grad())
            foreach (var (name, p) in model.named_parameters().Where(p => !p.name.StartsWith("encoder.", StringComparison.Ordinal)))
                p.copy_(head.ReadTensor(name));
        model.eval();
        if (engine is not null)
            ((model as ITaskHead) ?? throw new ArgumentException($"{model.GetName()} is not a task head that can run its encoder on another engine")).Engine = engine;
    }

    /// <summary>Writes one JSON object per line, atomically, with Chinese left readable.</summary>
    public static void WriteJsonLines(string path, IEnumerable<object> lines) =>
        AtomicFile.WriteAllText(path, string.Concat(lines.Select(l => JsonSerializer.Serialize(l, LineOptions) + "\n")));

    /// <summary>Writes one JSON document, atomically, with Chinese left readable.</summary>
    public static void WriteJson(string path, object value) =>
        AtomicFile.WriteAllText(path, JsonSerializer.Serialize(value, new JsonSerializerOptions(LineOptions) { WriteIndented = true }) + "\n");

    /// <summary>The id a submission line carries: the record's id as a number when it is one, else as given, else the line index.</summary>
    public static object SubmissionId(string? id, int index) => int.TryParse(id, out int n) ? n : (object?)id ?? index;

    static readonly JsonSerializerOptions JsonOptions = new() { Converters = { new JsonStringEnumConverter() }, WriteIndented = true };
    static readonly JsonSerializerOptions LineOptions = new() { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };
}

/// <summary>The tasks <c>b4s clue</c> runs.</summary>
public static class ClueRuns
{
    /// <summary>Every task, in CLUE order.</summary>
    public static IReadOnlyList<IClueRun> All { get; } = [.. ClassificationRun.All, new EntityRuns(), new MrcRuns(), new C3Runs(), new ChidRuns(), new DuieRun(), new DueeRun()];

    /// <summary>The run of <paramref name="task"/> (<c>cluener2020</c> is also accepted for <c>cluener</c>).</summary>
    /// <exception cref="ArgumentException">Unknown task.</exception>
    public static IClueRun Get(string task)
    {
        string name = task == "cluener2020" ? "cluener" : task;
        return All.FirstOrDefault(r => r.Task == name)
            ?? throw new ArgumentException($"'{task}' is not a task b4s clue runs; known: {string.Join(", ", All.Select(r => r.Task))}");
    }
}
