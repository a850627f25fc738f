namespace Bert4Sharp.Training;

using System.Text.Json;
using System.Text.Json.Serialization;
using Bert4Sharp.Models;
using Bert4Sharp.Runtime;
using Bert4Sharp.Tokenization;

/// <summary>Optimizer section of a recipe.</summary>
[JsonUnmappedMemberHandling(JsonUnmappedMemberHandling.Disallow)]
public sealed record OptimizerRecipe
{
    /// <summary><c>adam</c> (AdamW with weight decay; LAMB with <see cref="LayerAdaptation"/>), <c>lion</c> or <c>adafactor</c>.</summary>
    [JsonPropertyName("name")] public string Name { get; init; } = "adam";
    /// <summary>Peak learning rate.</summary>
    [JsonPropertyName("learning_rate")] public double LearningRate { get; init; } = 1e-4;
    /// <summary>Decoupled weight decay (norms and biases excluded).</summary>
    [JsonPropertyName("weight_decay")] public double WeightDecay { get; init; } = 0.01;
    /// <summary>Linear warm-up steps (0 for none).</summary>
    [JsonPropertyName("warmup_steps")] public long WarmupSteps { get; init; }
    /// <summary>With warm-up: the step where the linear decay reaches <see cref="FinalLearningRateMultiplier"/>; null keeps the peak after warm-up.</summary>
    [JsonPropertyName("decay_steps")] public long? DecaySteps { get; init; }
    /// <summary>Learning-rate multiplier at <see cref="DecaySteps"/>.</summary>
    [JsonPropertyName("final_lr_multiplier")] public double FinalLearningRateMultiplier { get; init; } = 0.1;
    /// <summary>Global gradient-norm clipping (null for none).</summary>
    [JsonPropertyName("clip_norm")] public double? ClipNorm { get; init; } = 1.0;
    /// <summary>LAMB-style layer adaptation.</summary>
    [JsonPropertyName("layer_adaptation")] public bool LayerAdaptation { get; init; }
    /// <summary>Gradient accumulation steps.</summary>
    [JsonPropertyName("gradient_accumulation")] public int GradientAccumulation { get; init; } = 1;
    /// <summary>EMA momentum (null for none); evaluation then uses the EMA weights.</summary>
    [JsonPropertyName("ema")] public double? Ema { get; init; }

    /// <summary>Builds the optimizer over named parameters, with dynamic loss scaling when <paramref name="precision"/> needs it (fp16).</summary>
    public Optimizer Create(IEnumerable<(string, TorchSharp.Modules.Parameter)> parameters, PrecisionPlan? precision = null)
    {
        PiecewiseLinearSchedule? schedule = null;
        if (WarmupSteps < 0) throw new ArgumentOutOfRangeException("optimizer.warmup_steps", $"optimizer.warmup_steps must be ≥ 0, got {WarmupSteps}");
        if (DecaySteps is long d)
            schedule = PiecewiseLinearSchedule.WarmupLinearDecay(WarmupSteps, d, FinalLearningRateMultiplier);
        else if (WarmupSteps > 0)
            schedule = new PiecewiseLinearSchedule(new Dictionary<long, double> { [WarmupSteps] = 1.0 });
        var options = new OptimizerOptions
        {
            LearningRate = LearningRate, WeightDecay = WeightDecay, LayerAdaptation = LayerAdaptation, Schedule = schedule,
            ClipGradientNorm = ClipNorm, GradientAccumulationSteps = GradientAccumulation, EmaMomentum = Ema,
            LossScaling = DynamicLossScale.For(precision),
        };
        return Name.ToLowerInvariant() switch
        {
            "adam" or "adamw" or "lamb" => new Adam(parameters, Name.Equals("lamb", StringComparison.OrdinalIgnoreCase) ? options with { LayerAdaptation = true } : options),
            "lion" => new Lion(parameters, options),
            "adafactor" => new AdaFactor(parameters, options),
            _ => throw new ArgumentException($"optimizer.name '{Name}' is unknown; use adam, lamb, lion or adafactor"),
        };
    }
}

/// <summary>One text source of a pretraining corpus.</summary>
[JsonUnmappedMemberHandling(JsonUnmappedMemberHandling.Disallow)]
public sealed record CorpusSourceRecipe
{
    /// <summary>A file (relative to the recipe), or <c>builtin:tang-poems</c> for the chinese-poetry npm package's Tang poems (fetched and cached).</summary>
    [JsonPropertyName("file")] public string File { get; init; } = "";
    /// <summary><c>jsonl</c>, <c>tsv</c> or <c>lines</c>.</summary>
    [JsonPropertyName("format")] public string Format { get; init; } = "lines";
    /// <summary>JSON keys or TSV column numbers holding text.</summary>
    [JsonPropertyName("fields")] public IReadOnlyList<string> Fields { get; init; } = [];
    /// <summary>At most this many records.</summary>
    [JsonPropertyName("limit")] public int? Limit { get; init; }
}

/// <summary>Base of the recipes: common loading and validation.</summary>
public abstract record Recipe
{
    /// <summary>Directory of the recipe file (relative paths resolve against it).</summary>
    [JsonIgnore] public string BaseDirectory { get; init; } = Environment.CurrentDirectory;

    /// <summary>
    /// <c>fp32</c> (default: the same numbers on every CPU), <c>bf16</c>, <c>fp16</c> or <c>auto</c> (bf16 only where the
    /// hardware has it natively); see <see cref="PrecisionPolicy"/>.
    /// </summary>
    [JsonPropertyName("precision")] public string Precision { get; init; } = "fp32";

    /// <summary>The plan for <see cref="Precision"/> on <paramref name="device"/>, for training.</summary>
    public PrecisionPlan PrecisionPlan(TorchSharp.torch.Device device) => PrecisionPolicy.Resolve(PrecisionPolicy.Parse(Precision), device, training: true);

    /// <summary>Checks the keys every recipe has.</summary>
    protected void ValidateCommon()
    {
        try { PrecisionPolicy.Parse(Precision); }
        catch (ArgumentException e) { throw new ArgumentException($"'precision': {e.Message}", e); }
    }

    /// <summary>A path from the recipe, resolved against <see cref="BaseDirectory"/>.</summary>
    public string Resolve(string path) => Path.IsPathRooted(path) ? path : Path.GetFullPath(Path.Combine(BaseDirectory, path));

    /// <summary>Reads a recipe; unknown keys, wrong types and impossible values fail with the key named.</summary>
    public static T Load<T>(string path) where T : Recipe
    {
        if (!System.IO.File.Exists(path)) throw new FileNotFoundException($"{path}: recipe not found", path);
        T recipe;
        try
        {
            recipe = JsonSerializer.Deserialize<T>(System.IO.File.ReadAllBytes(path), new JsonSerializerOptions { ReadCommentHandling = JsonCommentHandling.Skip, AllowTrailingCommas = true })
                ?? throw new InvalidDataException($"{path}: the recipe is null");
        }
        catch (JsonException e)
        {
            string where = string.IsNullOrEmpty(e.Path) || e.Path == "$" ? "" : $" at '{e.Path.TrimStart('$', '.')}'";
            string what = e.Message.Contains("could not be mapped", StringComparison.Ordinal) ? "unknown key" : "bad value";
            throw new InvalidDataException($"{path}: {what}{where}: {e.Message}", e);
        }
        recipe = recipe with { BaseDirectory = Path.GetDirectoryName(Path.GetFullPath(path))! };
        try { recipe.Validate(); }
        catch (ArgumentException e) { throw new InvalidDataException($"{path}: {e.Message}", e); }
        return recipe;
    }

    /// <summary>Checks values; throws <see cref="ArgumentException"/> naming the key.</summary>
    public abstract void Validate();

    internal static void Require(bool ok, string message) { if (!ok) throw new ArgumentException(message); }

    /// <summary>
    /// Every key of a recipe's <c>config</c> object must be one <see cref="TransformerConfig"/> reads
    /// (<see cref="TransformerConfig.KnownKeys"/>): a misspelt key would otherwise fall back to the BERT-base default.
    /// </summary>
    internal static void RequireKnownConfigKeys(JsonElement config)
    {
        if (config.ValueKind != JsonValueKind.Object) return;
        foreach (var p in config.EnumerateObject())
            if (!TransformerConfig.KnownKeys.Contains(p.Name, StringComparer.Ordinal))
                throw new ArgumentException($"unknown key 'config.{p.Name}'; the closest key a model config takes is '{Closest(p.Name, TransformerConfig.KnownKeys)}' (an unknown key would silently fall back to the BERT-base default)");
    }

    /// <summary>The candidate with the smallest edit distance (case-insensitive; ties: the first in order).</summary>
    internal static string Closest(string key, IEnumerable<string> candidates) =>
        candidates.MinBy(c => EditDistance(key.ToLowerInvariant(), c.ToLowerInvariant())) ?? "";

    static int EditDistance(string a, string b)
    {
        var row = Enumerable.Range(0, b.Length + 1).ToArray();
        for (int i = 1; i <= a.Length; i++)
        {
            int diagonal = row[0];
            row[0] = i;
            for (int j = 1; j <= b.Length; j++)
            {
                int above = row[j];
                row[j] = Math.Min(Math.Min(row[j] + 1, row[j - 1] + 1), diagonal + (a[i - 1] == b[j - 1] ? 0 : 1));
                diagonal = above;
            }
        }
        return row[b.Length];
    }
}

/// <summary><c>b4s pretrain</c>: masked-LM pretraining of an encoder from scratch.</summary>
[JsonUnmappedMemberHandling(JsonUnmappedMemberHandling.Disallow)]
public sealed record PretrainRecipe : Recipe
{
    /// <summary>Model family (<c>roformer_v2</c>, <c>bert</c>, …).</summary>
    [JsonPropertyName("family")] public string Family { get; init; } = "roformer_v2";
    /// <summary>The model config (config.json fields); <c>vocab_size</c> is taken from the vocabulary. Not used with <see cref="InitModel"/>.</summary>
    [JsonPropertyName("config")] public JsonElement Config { get; init; }
    /// <summary>vocab.txt (default with <see cref="InitModel"/>: the model's).</summary>
    [JsonPropertyName("vocab")] public string Vocab { get; init; } = "";
    /// <summary>
    /// Continue pretraining this masked-LM model directory (config.json, weights, vocab.txt) instead of starting from random
    /// weights, e.g. a WoBERT model made by <c>b4s vocab build --model</c>; null starts from scratch with <see cref="Config"/>.
    /// </summary>
    [JsonPropertyName("init_model")] public string? InitModel { get; init; }
    /// <summary>
    /// Word pre-tokenizer: <c>jieba</c> (WoBERT: dictionary words stay whole) or <c>none</c>; null: what <see cref="InitModel"/>'s
    /// tokenizer_config.json records, else none. The saved model records it.
    /// </summary>
    [JsonPropertyName("pre_tokenize")] public string? PreTokenize { get; init; }
    /// <summary>Text sources.</summary>
    [JsonPropertyName("corpus")] public IReadOnlyList<CorpusSourceRecipe> Corpus { get; init; } = [];
    /// <summary>Records held out for evaluation (taken from the start of the shuffled corpus).</summary>
    [JsonPropertyName("held_out")] public int HeldOut { get; init; } = 1000;
    /// <summary>Tokens per packed sequence.</summary>
    [JsonPropertyName("max_length")] public int MaxLength { get; init; } = 128;
    /// <summary>Whole-word masking with jieba.</summary>
    [JsonPropertyName("whole_word_masking")] public bool WholeWordMasking { get; init; } = true;
    /// <summary>Sequences per batch.</summary>
    [JsonPropertyName("batch_size")] public int BatchSize { get; init; } = 32;
    /// <summary>Optimizer.</summary>
    [JsonPropertyName("optimizer")] public OptimizerRecipe Optimizer { get; init; } = new();
    /// <summary>Epoch limit.</summary>
    [JsonPropertyName("epochs")] public int Epochs { get; init; } = 1000;
    /// <summary>Step limit.</summary>
    [JsonPropertyName("max_steps")] public long? MaxSteps { get; init; }
    /// <summary>Wall-clock limit of one run, in minutes.</summary>
    [JsonPropertyName("minutes")] public double? Minutes { get; init; }
    /// <summary>Evaluate on the held-out sequences every this many steps.</summary>
    [JsonPropertyName("eval_every")] public long EvalEvery { get; init; } = 200;
    /// <summary>Checkpoint every this many steps.</summary>
    [JsonPropertyName("checkpoint_every")] public long CheckpointEvery { get; init; } = 200;
    /// <summary>Metric record every this many steps.</summary>
    [JsonPropertyName("log_every")] public int LogEvery { get; init; } = 20;
    /// <summary>Seed.</summary>
    [JsonPropertyName("seed")] public int Seed { get; init; } = 42;
    /// <summary>Output directory (checkpoint, metrics, curves, and the final model under <c>model/</c>).</summary>
    [JsonPropertyName("output")] public string Output { get; init; } = "runs/pretrain";

    /// <inheritdoc/>
    public override void Validate()
    {
        ValidateCommon();
        Require(InitModel is not null || Config.ValueKind == JsonValueKind.Object, "'config' must be an object of config.json fields (or give 'init_model' to continue a pretrained model)");
        RequireKnownConfigKeys(Config);
        Require(InitModel is not null || Vocab.Length > 0, "'vocab' (path to vocab.txt) is required");
        Require(PreTokenization.IsKnown(PreTokenize), $"'pre_tokenize' must be {PreTokenization.Jieba} or none, got '{PreTokenize}'");
        Require(Corpus.Count > 0, "'corpus' needs at least one source");
        foreach (var c in Corpus)
        {
            Require(c.File.Length > 0, "every corpus source needs 'file'");
            Require(c.Format is "jsonl" or "tsv" or "lines", $"corpus format '{c.Format}' is unknown (jsonl, tsv, lines)");
            Require(c.Format == "lines" || c.Fields.Count > 0, $"corpus source '{c.File}' in format {c.Format} needs 'fields'");
        }
        Require(MaxLength is >= 8 and <= 4096, $"'max_length' must be in [8, 4096], got {MaxLength}");
        Require(BatchSize >= 1, $"'batch_size' must be ≥ 1, got {BatchSize}");
        Require(HeldOut >= 0, $"'held_out' must be ≥ 0, got {HeldOut}");
        Require(Epochs >= 1, $"'epochs' must be ≥ 1, got {Epochs}");
        Require(MaxSteps is null or >= 1, $"'max_steps' must be ≥ 1, got {MaxSteps}");
        Require(Minutes is null or > 0, $"'minutes' must be > 0, got {Minutes}");
        Require(EvalEvery >= 1 && CheckpointEvery >= 1 && LogEvery >= 1, "'eval_every', 'checkpoint_every' and 'log_every' must be ≥ 1");
        Require(Optimizer.LearningRate > 0, $"'optimizer.learning_rate' must be > 0, got {Optimizer.LearningRate}");
    }
}

/// <summary>A labelled dataset file of a fine-tuning recipe.</summary>
[JsonUnmappedMemberHandling(JsonUnmappedMemberHandling.Disallow)]
public sealed record LabelledDataRecipe
{
    /// <summary>JSON-lines file (relative to the recipe).</summary>
    [JsonPropertyName("file")] public string File { get; init; } = "";
    /// <summary>Key of the text.</summary>
    [JsonPropertyName("text")] public string Text { get; init; } = "sentence";
    /// <summary>Key of the second text for pairs, or null.</summary>
    [JsonPropertyName("text_pair")] public string? TextPair { get; init; }
    /// <summary>Key of the label (string or number).</summary>
    [JsonPropertyName("label")] public string Label { get; init; } = "label";
    /// <summary>At most this many records.</summary>
    [JsonPropertyName("limit")] public int? Limit { get; init; }
}

/// <summary><c>b4s train</c>: fine-tune a text classifier.</summary>
[JsonUnmappedMemberHandling(JsonUnmappedMemberHandling.Disallow)]
public sealed record TrainRecipe : Recipe
{
    /// <summary>Only <c>classification</c> for now.</summary>
    [JsonPropertyName("task")] public string Task { get; init; } = "classification";
    /// <summary>Pretrained model directory (config.json, weights, vocab.txt); null to start from random weights with <see cref="Config"/>.</summary>
    [JsonPropertyName("model")] public string? Model { get; init; }
    /// <summary>Family of the model.</summary>
    [JsonPropertyName("family")] public string Family { get; init; } = "roformer_v2";
    /// <summary>Config for random initialisation (ignored with <see cref="Model"/>).</summary>
    [JsonPropertyName("config")] public JsonElement Config { get; init; }
    /// <summary>vocab.txt (default: the model directory's).</summary>
    [JsonPropertyName("vocab")] public string? Vocab { get; init; }
    /// <summary>
    /// Word pre-tokenizer: <c>jieba</c> (a WoBERT model) or <c>none</c>; null: what the model directory's tokenizer_config.json
    /// records, else none.
    /// </summary>
    [JsonPropertyName("pre_tokenize")] public string? PreTokenize { get; init; }
    /// <summary>Training data.</summary>
    [JsonPropertyName("train")] public LabelledDataRecipe Train { get; init; } = new();
    /// <summary>Evaluation data.</summary>
    [JsonPropertyName("dev")] public LabelledDataRecipe Dev { get; init; } = new();
    /// <summary>What to do with a line that does not parse: <c>stop</c> or <c>skip</c> (reported).</summary>
    [JsonPropertyName("on_bad_line")] public string OnBadLine { get; init; } = "stop";
    /// <summary>Tokens per example.</summary>
    [JsonPropertyName("max_length")] public int MaxLength { get; init; } = 64;
    /// <summary>Examples per batch.</summary>
    [JsonPropertyName("batch_size")] public int BatchSize { get; init; } = 32;
    /// <summary>Epochs.</summary>
    [JsonPropertyName("epochs")] public int Epochs { get; init; } = 3;
    /// <summary>Optimizer.</summary>
    [JsonPropertyName("optimizer")] public OptimizerRecipe Optimizer { get; init; } = new() { LearningRate = 2e-5 };
    /// <summary>Early stopping patience in evaluations (null for none).</summary>
    [JsonPropertyName("patience")] public int? Patience { get; init; }
    /// <summary>FGM adversarial training ε on the token embeddings (null for none).</summary>
    [JsonPropertyName("fgm_epsilon")] public double? FgmEpsilon { get; init; }
    /// <summary>Gradient penalty ε on the token embeddings (null for none).</summary>
    [JsonPropertyName("gradient_penalty")] public double? GradientPenalty { get; init; }
    /// <summary><c>first</c> (pooler or [CLS]) or <c>mean</c> (mean of the final hidden states over real tokens).</summary>
    [JsonPropertyName("pooling")] public string Pooling { get; init; } = "first";
    /// <summary>Virtual adversarial training ε on the token embeddings (null for none).</summary>
    [JsonPropertyName("vat_epsilon")] public double? VatEpsilon { get; init; }
    /// <summary>Gaussian noise σ on the token embeddings during training (null for none).</summary>
    [JsonPropertyName("embedding_noise")] public double? EmbeddingNoise { get; init; }
    /// <summary>Evaluate every this many steps besides epoch ends (null: epoch ends only).</summary>
    [JsonPropertyName("eval_every")] public long? EvalEvery { get; init; }
    /// <summary>Metric record (<c>metrics.jsonl</c>) and progress line every this many steps.</summary>
    [JsonPropertyName("log_every")] public int LogEvery { get; init; } = 20;
    /// <summary>Seed.</summary>
    [JsonPropertyName("seed")] public int Seed { get; init; } = 42;
    /// <summary>Output directory.</summary>
    [JsonPropertyName("output")] public string Output { get; init; } = "runs/train";

    /// <inheritdoc/>
    public override void Validate()
    {
        ValidateCommon();
        Require(Task == "classification", $"'task' '{Task}' is unknown (classification)");
        Require(Model is not null || Config.ValueKind == JsonValueKind.Object, "give 'model' (a pretrained directory) or 'config' (random initialisation)");
        Require(Model is not null || Vocab is not null, "random initialisation needs 'vocab'");
        RequireKnownConfigKeys(Config);
        Require(Train.File.Length > 0 && Dev.File.Length > 0, "'train.file' and 'dev.file' are required");
        Require(OnBadLine is "stop" or "skip", $"'on_bad_line' must be stop or skip, got '{OnBadLine}'");
        Require(PreTokenization.IsKnown(PreTokenize), $"'pre_tokenize' must be {PreTokenization.Jieba} or none, got '{PreTokenize}'");
        Require(MaxLength is >= 4 and <= 4096, $"'max_length' must be in [4, 4096], got {MaxLength}");
        Require(BatchSize >= 1, $"'batch_size' must be ≥ 1, got {BatchSize}");
        Require(Epochs >= 1, $"'epochs' must be ≥ 1, got {Epochs}");
        Require(Optimizer.LearningRate > 0, $"'optimizer.learning_rate' must be > 0, got {Optimizer.LearningRate}");
        Require(FgmEpsilon is null or > 0, $"'fgm_epsilon' must be > 0, got {FgmEpsilon}");
        Require(GradientPenalty is null or > 0, $"'gradient_penalty' must be > 0, got {GradientPenalty}");
        Require(Patience is null or >= 1, $"'patience' must be ≥ 1, got {Patience}");
        Require(Pooling is "first" or "mean", $"'pooling' must be first or mean, got '{Pooling}'");
        Require(VatEpsilon is null or > 0, $"'vat_epsilon' must be > 0, got {VatEpsilon}");
        Require(EmbeddingNoise is null or > 0, $"'embedding_noise' must be > 0, got {EmbeddingNoise}");
        Require(LogEvery >= 1, $"'log_every' must be ≥ 1, got {LogEvery}");
    }

    /// <summary>The model config of a random initialisation, with vocab_size from the vocabulary.</summary>
    internal TransformerConfig RandomConfig(int vocabSize) => RecipeConfig.Parse(Config, vocabSize);
}

static class RecipeConfig
{
    /// <summary>The recipe's <c>config</c> object as a model config, with vocab_size from the vocabulary.</summary>
    internal static TransformerConfig Parse(JsonElement config, int vocabSize)
    {
        var fields = JsonSerializer.Deserialize<Dictionary<string, JsonElement>>(config.GetRawText())!;
        fields["vocab_size"] = JsonSerializer.SerializeToElement(vocabSize);
        return TransformerConfig.FromJson(JsonSerializer.SerializeToUtf8Bytes(fields), "recipe 'config'");
    }
}
