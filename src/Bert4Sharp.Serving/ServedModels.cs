namespace Bert4Sharp.Serving;

using Bert4Sharp.Embeddings;
using Bert4Sharp.Models;
using Bert4Sharp.Onnx;
using Bert4Sharp.Runtime;
using Bert4Sharp.Tokenization;

/// <summary>A model the server loads: a name clients use, a directory, an engine.</summary>
/// <param name="Name">The id in requests and <c>/v1/models</c>.</param>
/// <param name="Directory">The model directory.</param>
/// <param name="Engine"><c>torch</c> or <c>onnx</c>.</param>
/// <param name="Precision">TorchSharp engine only: what the model computes in.</param>
public sealed record ModelSpec(string Name, string Directory, string Engine = "torch", Precision Precision = Precision.Fp32);

/// <summary>Options of <c>b4s serve</c>.</summary>
public sealed record ServeOptions
{
    /// <summary>The models served (at least one; names unique).</summary>
    public required IReadOnlyList<ModelSpec> Models { get; init; }
    /// <summary>Largest request body in bytes (413 above it).</summary>
    public long MaxBodyBytes { get; init; } = 1 << 20;
    /// <summary>Texts per embeddings request at most.</summary>
    public int MaxInputs { get; init; } = 2048;
    /// <summary>Tokens per request at most (all inputs together, or prompt + max_tokens).</summary>
    public int MaxTokensPerRequest { get; init; } = 65_536;
    /// <summary>Tokens one completion may generate at most.</summary>
    public int MaxNewTokens { get; init; } = 512;
    /// <summary>Requests in progress at most; beyond it, 429 with Retry-After.</summary>
    public int MaxConcurrentRequests { get; init; } = 32;
    /// <summary>Texts per forward pass of the embedding micro-batcher (1: no batching across requests).</summary>
    public int MaxBatch { get; init; } = 64;
    /// <summary>How long the micro-batcher waits for more requests (0: none; it still takes everything that queued while the previous forward pass ran, which measured best at every load).</summary>
    public TimeSpan MaxBatchDelay { get; init; } = TimeSpan.Zero;

    /// <summary>Checks the values; names the option.</summary>
    /// <exception cref="ArgumentException">No model, a name twice, or a limit out of range.</exception>
    public void Validate()
    {
        if (Models.Count == 0) throw new ArgumentException("serve needs at least one model");
        var dup = Models.GroupBy(m => m.Name).FirstOrDefault(g => g.Count() > 1);
        if (dup is not null) throw new ArgumentException($"two models are named '{dup.Key}'; give them names with --model NAME=DIR");
        if (MaxBodyBytes < 1024) throw new ArgumentException($"--max-body-bytes must be at least 1024, got {MaxBodyBytes}");
        if (MaxConcurrentRequests < 1) throw new ArgumentException($"--max-concurrent must be at least 1, got {MaxConcurrentRequests}");
        if (MaxBatch < 1) throw new ArgumentException($"--max-batch must be at least 1, got {MaxBatch}");
        if (MaxBatchDelay < TimeSpan.Zero) throw new ArgumentException($"--max-batch-delay-ms must be at least 0, got {MaxBatchDelay.TotalMilliseconds}");
        if (MaxInputs < 1 || MaxTokensPerRequest < 1 || MaxNewTokens < 1) throw new ArgumentException("the request limits (inputs, tokens per request, new tokens) must be at least 1");
    }
}

/// <summary>A loaded model and what it can do.</summary>
public abstract class ServedModel : IDisposable
{
    /// <summary>The id clients use.</summary>
    public required string Name { get; init; }
    /// <summary>torch or onnx.</summary>
    public required string Engine { get; init; }
    /// <summary>embedding or generation (for <c>/v1/models</c> and the page).</summary>
    public abstract string Kind { get; }
    /// <summary>Loads a model as what its directory holds: a generative family, else a sentence encoder.</summary>
    public static ServedModel Load(ModelSpec spec, ServeOptions options)
    {
        if (!Directory.Exists(spec.Directory)) throw new DirectoryNotFoundException($"{spec.Directory}: model directory not found (model '{spec.Name}')");
        if (spec.Engine == "onnx") PrecisionPolicy.RequireFp32ForOnnx(spec.Precision);
        if (File.Exists(Path.Combine(spec.Directory, "task.json"))) return TaskModel.Load(spec);
        return TextGenerator.IsGenerative(spec.Directory)
            ? new GenerationModel(TextGenerator.Load(spec.Directory, spec.Engine, null, spec.Precision)) { Name = spec.Name, Engine = spec.Engine }
            : EmbeddingModel.Create(spec, options);
    }

    /// <inheritdoc/>
    public abstract void Dispose();
}

/// <summary>A sentence encoder (embeddings, batched across requests) and, when it has an MLM head, fill-mask.</summary>
public sealed class EmbeddingModel : ServedModel
{
    readonly TransformerPipeline? masked;
    readonly object maskedLock = new();

    EmbeddingModel(SentenceEncoder encoder, TransformerPipeline? masked, ServeOptions options)
    {
        Encoder = encoder;
        this.masked = masked;
        Batcher = new MicroBatcher<string, float[]>(texts => encoder.Embed(texts).Vectors, options.MaxBatch, options.MaxBatchDelay);
    }

    /// <inheritdoc/>
    public override string Kind => "embedding";
    /// <summary>The encoder.</summary>
    public SentenceEncoder Encoder { get; }
    /// <summary>The micro-batcher every embeddings request goes through.</summary>
    public MicroBatcher<string, float[]> Batcher { get; }
    /// <summary>Whether fill-mask is available (an MLM head in the checkpoint or the graph).</summary>
    public bool CanFillMask => masked is not null;

    internal static EmbeddingModel Create(ModelSpec spec, ServeOptions options)
    {
        string dir = spec.Directory;
        if (spec.Engine == "onnx")
        {
            var sentence = OnnxRuntimeEncoder.LoadSentenceEncoder(dir);
            var onnx = (OnnxRuntimeEncoder)sentence.Encoder;
            return new EmbeddingModel(sentence, onnx.HasMaskedLanguageModelHead ? TransformerPipeline.Create(onnx, sentence.Tokenizer) : null, options) { Name = spec.Name, Engine = spec.Engine };
        }
        // One TorchSharp model for both: with its MLM head when the checkpoint has one (fill-mask), else the encoder.
        TransformerPipeline pipeline;
        bool mlm = true;
        try { pipeline = TransformerPipeline.Load(dir, null, Application.MaskedLM); }
        catch (CheckpointMismatchException) { pipeline = TransformerPipeline.Load(dir, null, Application.Encoder); mlm = false; }
        pipeline.Model.eval();
        PrecisionPolicy.ApplyForInference(spec.Precision, pipeline.Model, pipeline.Model.Device, Console.Error.WriteLine);
        var encoder = SentenceEncoder.FromDirectory(pipeline.Model, pipeline.Tokenizer, dir);
        return new EmbeddingModel(encoder, mlm ? pipeline : null, options) { Name = spec.Name, Engine = spec.Engine };
    }

    /// <summary>Fill-mask candidates (serialised: the pipeline is not re-entrant across its tokenizer state).</summary>
    public IReadOnlyList<FillMaskCandidate> FillMask(string text, int topK)
    {
        lock (maskedLock) return masked!.FillMask(text, topK);
    }

    /// <inheritdoc/>
    public override void Dispose()
    {
        Batcher.Dispose();
        (Encoder.Encoder as IDisposable)?.Dispose();
    }
}

/// <summary>A generative model: completions and chat completions.</summary>
public sealed class GenerationModel(TextGenerator generator) : ServedModel
{
    /// <inheritdoc/>
    public override string Kind => "generation";
    /// <summary>The generator.</summary>
    public TextGenerator Generator { get; } = generator;
    /// <summary>Decoding loops running now.</summary>
    public int ActiveDecodes => active;
    /// <summary>Decoding loops stopped because the client went away.</summary>
    public long CancelledDecodes => Interlocked.Read(ref cancelled);

    int active;
    long cancelled;

    internal void Started() => Interlocked.Increment(ref active);
    internal void Ended(bool wasCancelled)
    {
        Interlocked.Decrement(ref active);
        if (wasCancelled) Interlocked.Increment(ref cancelled);
    }

    /// <inheritdoc/>
    public override void Dispose() => Generator.Dispose();
}

/// <summary>
/// A task model <c>b4s clue train</c> (or <c>TextClassifier.Save</c>) wrote: a text classifier (AFQMC, TNEWS, IFLYTEK,
/// OCNLI, CMNLI, CSL, CLUEWSC or any TextClassifier) or a CLUENER entity recognizer. Calls are serialised per model.
/// </summary>
public sealed class TaskModel : ServedModel
{
    readonly object gate = new();
    readonly Training.TextClassifier? classifier;
    readonly Tasks.EntityRecognizer? recognizer;
    readonly BertWordPieceTokenizer? tokenizer;
    readonly int maxLength;

    TaskModel(Training.TextClassifier? classifier, Tasks.EntityRecognizer? recognizer, BertWordPieceTokenizer? tokenizer, int maxLength, string task)
    {
        this.classifier = classifier;
        this.recognizer = recognizer;
        this.tokenizer = tokenizer;
        this.maxLength = maxLength;
        Task = task;
    }

    /// <inheritdoc/>
    public override string Kind => recognizer is null ? "classification" : "ner";
    /// <summary>The task the model was trained for.</summary>
    public string Task { get; }
    /// <summary>The classifier's labels or the recognizer's entity types.</summary>
    public IReadOnlyList<string> Labels => classifier?.Labels ?? recognizer!.Types;

    internal static TaskModel Load(ModelSpec spec)
    {
        if (spec.Engine != "torch") throw new ArgumentException($"model '{spec.Name}': task models run on the torch engine");
        var file = Training.ClueRun.ReadTask(spec.Directory, null);
        if (file.Task == "cluener")
        {
            var (model, tokenizer, task) = Training.EntityRuns.Load(spec.Directory);
            model.eval();
            return new TaskModel(null, model, tokenizer, task.MaxLength, file.Task) { Name = spec.Name, Engine = spec.Engine };
        }
        if (file.Head != "classifier")
            throw new ArgumentException($"model '{spec.Name}': {spec.Directory} holds a {file.Task} model with a '{file.Head}' head; the server serves text classifiers and CLUENER recognizers");
        var classifier = Training.TextClassifier.Load(spec.Directory);
        classifier.Model.eval();
        return new TaskModel(classifier, null, null, classifier.Options.MaxLength, file.Task) { Name = spec.Name, Engine = spec.Engine };
    }

    /// <summary>Labels with probabilities for texts (and optional second texts of a pair).</summary>
    public IReadOnlyList<Training.ClassPrediction> Classify(IReadOnlyList<string> texts, IReadOnlyList<string>? pairs)
    {
        if (classifier is null) throw new InvalidOperationException("not a classifier");
        lock (gate) return classifier.Predict([.. texts.Select((t, i) => new Training.TextExample(t, pairs?[i]))]);
    }

    /// <summary>Entity spans [Start, End) in UTF-16 units of each text.</summary>
    public IReadOnlyList<IReadOnlyList<Tasks.EntitySpan>> Recognize(IReadOnlyList<string> texts)
    {
        if (recognizer is null) throw new InvalidOperationException("not an entity recognizer");
        lock (gate) return recognizer.Predict(tokenizer!, texts, maxLength);
    }

    /// <inheritdoc/>
    public override void Dispose()
    {
        classifier?.Dispose();
        recognizer?.Dispose();
    }
}
