namespace Bert4Sharp.Cli;

using System.CommandLine;
using Bert4Sharp.Embeddings;
using Bert4Sharp.Runtime;
using Bert4Sharp.Tasks;
using Spectre.Console;

/// <summary>
/// The options every embedding command shares (<c>b4s embed</c>, <c>b4s index</c>, <c>b4s search</c>) and the one place
/// that turns them into a <see cref="SentenceEncoder"/>: model directory or the embedded default, engine, pooling,
/// whitening, normalisation, maximum length, batch size, threads.
/// </summary>
internal sealed class SentenceModelOptions
{
    public Option<string?> Model { get; } = new("--model")
    {
        Description = $"Model directory (config + weights + vocab.txt; model.onnx for --engine onnx). Default: {DefaultModel.Description}",
    };
    public Option<string?> Engine { get; } = new("--engine")
    {
        Description = "torch (TorchSharp, any checkpoint) or onnx (ONNX Runtime on the directory's model.onnx). Default: onnx for the embedded model, torch for --model",
    };
    public Option<string?> Pooling { get; } = new("--pooling")
    {
        Description = "mean, first (pooler, else [CLS]), cls, max, first-last-avg. Default: the model's sentence_encoder.json (b4s sts train writes it), else mean",
    };
    public Option<string?> Whitening { get; } = new("--whitening")
    {
        Description = "A whitening file (b4s whiten writes one); default: the model directory's whitening.safetensors when present",
    };
    public Option<bool> NoNormalize { get; } = new("--no-normalize") { Description = "Keep the raw lengths (default: unit vectors, dot = cosine)" };
    public Option<int?> MaxLength { get; } = new("--max-length") { Description = "Tokens per text including [CLS] and [SEP] (default: the model's 512); longer texts are cut and counted" };
    public Option<int> BatchSize { get; } = new("--batch-size", "--batch") { Description = "Texts per forward pass", DefaultValueFactory = _ => 32 };
    public Option<int?> Threads { get; } = new("--threads") { Description = "CPU threads (libtorch or ONNX Runtime)" };
    public Option<string?> Precision { get; } = PrecisionOption.Create(training: false);

    public SentenceModelOptions()
    {
        Engine.AcceptOnlyFromAmong("torch", "onnx");
        Pooling.AcceptOnlyFromAmong("mean", "first", "cls", "max", "first-last-avg");
    }

    /// <summary>Adds the options to <paramref name="command"/>.</summary>
    public void AddTo(Command command)
    {
        foreach (var o in new Option[] { Model, Engine, Pooling, Whitening, NoNormalize, MaxLength, BatchSize, Threads, Precision }) command.Options.Add(o);
    }

    /// <summary>The model's name (for index manifests): the model directory's name, or the default's.</summary>
    public string ModelName(ParseResult r) =>
        r.GetValue(Model) is { } dir ? Path.GetFileName(Path.TrimEndingDirectorySeparator(Path.GetFullPath(dir))) : DefaultModel.Name;

    /// <summary>The model directory asked for (extracting the embedded default when none) and its name.</summary>
    public (string Directory, string Name, bool IsDefault) ModelDirectory(ParseResult r)
    {
        if (r.GetValue(Model) is { } dir)
            return Directory.Exists(dir) ? (dir, ModelName(r), false) : throw new DirectoryNotFoundException($"{dir}: model directory not found");
        return (DefaultModel.Ensure(), DefaultModel.Name, true);
    }

    /// <summary>The sentence encoder the options describe, and the model's name (for manifests and messages).</summary>
    /// <exception cref="ArgumentException">A bad value, or a whitening of another width than the model's.</exception>
    public (SentenceEncoder Encoder, string ModelName) Load(ParseResult r)
    {
        int batch = r.GetValue(BatchSize);
        var (dir, name, isDefault) = ModelDirectory(r);
        var saved = SentenceEncoderOptions.Read(dir);                    // how the model was trained to be pooled, when it says
        var options = new SentenceEncoderOptions
        {
            Pooling = r.GetValue(Pooling) is string p ? StsBenchmark.ParsePooling(p) : saved?.Pooling ?? Tasks.Pooling.Mean,
            Normalize = !r.GetValue(NoNormalize) && (saved?.Normalize ?? true),
            BatchSize = batch > 0 ? batch : throw new ArgumentException($"--batch-size must be at least 1, got {batch}"),
            MaxLength = r.GetValue(MaxLength) is int m ? (m >= 3 ? m : throw new ArgumentException($"--max-length must be at least 3 ([CLS], one token, [SEP]), got {m}")) : saved?.MaxLength,
        };
        string engine = r.GetValue(Engine) ?? (isDefault ? "onnx" : "torch");
        int? threads = r.GetValue(Threads) is int t ? (t > 0 ? t : throw new ArgumentException($"--threads must be at least 1, got {t}")) : null;
        string? whiteningFile = r.GetValue(Whitening);
        if (whiteningFile is not null && !File.Exists(whiteningFile)) throw new FileNotFoundException($"{whiteningFile}: whitening file not found", whiteningFile);

        SentenceEncoder encoder;
        if (engine == "onnx")
        {
            PrecisionOption.RefuseForOnnx(r.GetValue(Precision));
            encoder = Onnx.OnnxRuntimeEncoder.LoadSentenceEncoder(dir, options, new Onnx.OnnxEncoderOptions { Threads = threads ?? 0 }, whitening: whiteningFile is null);
        }
        else
        {
            if (threads is int n) TorchInfo.SetThreads(n);
            encoder = SentenceEncoder.Load(dir, options, whitening: whiteningFile is null);
            if (encoder.Encoder is TorchSharp.torch.nn.Module module) PrecisionOption.ApplyForInference(r.GetValue(Precision), module, encoder.Encoder.Device);
        }
        if (whiteningFile is not null)
        {
            var w = Embeddings.Whitening.Load(whiteningFile);
            if (w.InputDimensions != encoder.Encoder.HiddenSize)
                throw new ArgumentException($"{whiteningFile}: the whitening was fitted on {w.InputDimensions}-dimensional vectors but {name} gives {encoder.Encoder.HiddenSize}: fit it again on this model (b4s whiten)");
            encoder = encoder.With(w);
        }
        return (encoder, name);
    }

    /// <summary>Whether to draw a progress bar (an interactive terminal and no --json).</summary>
    public static bool Interactive(bool json) => !json && AnsiConsole.Profile.Capabilities.Interactive && !Console.IsOutputRedirected;

    /// <summary>
    /// Embeds <paramref name="texts"/> in slices of at most <paramref name="slice"/> texts (memory stays bounded; each slice
    /// is length-sorted inside), with a progress bar in texts/s when <paramref name="interactive"/>. Empty texts are refused
    /// by the encoder; the caller names lines before this.
    /// </summary>
    public static EmbeddingResult Embed(SentenceEncoder encoder, IReadOnlyList<string> texts, bool interactive, int slice = 8192)
    {
        var vectors = new float[texts.Count][];
        var tokens = new int[texts.Count];
        int truncated = 0;
        void Run(Action<int> report)
        {
            for (int start = 0; start < texts.Count; start += slice)
            {
                int count = Math.Min(slice, texts.Count - start);
                int offset = start;
                var part = encoder.Embed(texts.Skip(start).Take(count).ToList(), new Progress(done => report(offset + done)));
                part.Vectors.CopyTo(vectors, start);
                part.TokenCounts.CopyTo(tokens, start);
                truncated += part.Truncated;
            }
        }
        if (!interactive) Run(_ => { });
        else
            AnsiConsole.Progress()
                .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new TextsPerSecondColumn(), new RemainingTimeColumn())
                .Start(ctx =>
                {
                    var task = ctx.AddTask("embedding", maxValue: texts.Count);
                    Run(done => task.Value = done);
                });
        return new EmbeddingResult(vectors, tokens, truncated);
    }

    /// <summary>Reports synchronously (System.Progress posts to the thread pool, which would reorder the bar's updates).</summary>
    sealed class Progress(Action<int> report) : IProgress<int>
    {
        public void Report(int value) => report(value);
    }

    /// <summary>Texts per second of a progress task.</summary>
    sealed class TextsPerSecondColumn : ProgressColumn
    {
        public override Spectre.Console.Rendering.IRenderable Render(Spectre.Console.Rendering.RenderOptions options, ProgressTask task, TimeSpan deltaTime) =>
            new Markup($"{task.Speed ?? 0:F0} texts/s");
    }
}
