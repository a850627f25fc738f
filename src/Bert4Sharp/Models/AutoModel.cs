namespace Bert4Sharp.Models;

using Bert4Sharp.Checkpoints;
using Bert4Sharp.Tokenization;
using static TorchSharp.torch;

/// <summary>Options of <see cref="AutoModel.Load(string, AutoModelOptions?)"/>.</summary>
public sealed record AutoModelOptions
{
    /// <summary>Model family (bert, albert, electra, roformer, roformer_v2, nezha, gau_alpha, roberta, gpt, gpt2, gpt2_ml, t5, mt5); default: the config's <c>model_type</c>.</summary>
    public string? Family { get; init; }
    /// <summary>What to build; default: <see cref="Application.Seq2Seq"/> for T5, <see cref="Application.LanguageModel"/> for GPT families, else <see cref="Application.Encoder"/>.</summary>
    public Application? Application { get; init; }
    /// <summary>Strictness, vocabulary surgery, bert4keras options, device.</summary>
    public BuildOptions Build { get; init; } = new();
    /// <summary>The config file, when it is not in the model's directory.</summary>
    public string? ConfigPath { get; init; }
    /// <summary>The vocabulary (vocab.txt or a SentencePiece model), when it is not in the model's directory.</summary>
    public string? VocabularyPath { get; init; }
    /// <summary>Lower-case before WordPiece (uncased checkpoints, the Chinese ones).</summary>
    public bool LowerCase { get; init; } = true;
    /// <summary>WordPiece end token; null for none (GPT-style vocabularies whose prompts must not end in [SEP]).</summary>
    public string? EndToken { get; init; } = "[SEP]";
    /// <summary>For a hub model id (<c>org/name</c>): the branch, tag or commit (default main).</summary>
    public string Revision { get; init; } = "main";
    /// <summary>For a hub model id: endpoint, token, cache and offline mode (default: the HF_* environment variables).</summary>
    public Hub.HubOptions? Hub { get; init; }
    /// <summary>
    /// Read the checkpoint's weights (default). False: build the architecture from the config alone, with initial
    /// weights and without opening any weights file: for a directory whose encoder another engine runs (an exported
    /// ONNX graph, int8 included), where only the model's shape is needed, e.g. to rebuild a task head around it.
    /// </summary>
    public bool Weights { get; init; } = true;
}

/// <summary>A loaded model with what came with it.</summary>
/// <param name="Model">The model, in evaluation mode, on its device.</param>
/// <param name="Report">What loading found (names, skipped slots, unused heads).</param>
/// <param name="WordPiece">The WordPiece tokenizer when the directory has vocab.txt.</param>
/// <param name="SentencePiece">The SentencePiece tokenizer when it has spiece.model (T5/mT5, CPM).</param>
public sealed record LoadedModel(TransformerModel Model, LoadReport Report, BertWordPieceTokenizer? WordPiece, SpTokenizer? SentencePiece)
{
    /// <summary>The config the model was built from (after what the checkpoint implied).</summary>
    public TransformerConfig Config => Model.Config;
    /// <summary>The family.</summary>
    public ModelFamily Family => Model.Family;
}

/// <summary>
/// The one way in: a model directory or weights file → config + weights + tokenizer + family, on the chosen
/// device. Weights in any format <see cref="Checkpoint.Open(string)"/> reads (safetensors, sharded, torch.save,
/// TensorFlow bundles, ONNX graphs) and in every naming users meet: Hugging Face full-model names, base-model names
/// without the prefix (sentence-transformers, ONNX exports), bert4keras TensorFlow names. Strict by default.
/// </summary>
public static class AutoModel
{
    /// <summary>
    /// Loads <paramref name="path"/>: a directory with a config (config.json, bert_config.json, albert_config*.json),
    /// weights and a vocabulary, a weights file whose directory has the config, or a Hugging Face hub model id
    /// (<c>org/name</c>, <see cref="Hub.HubClient"/>) that is not a local path.
    /// </summary>
    /// <exception cref="Hub.HubException">A hub id that cannot be fetched (offline without it, no access, a failed check).</exception>
    /// <exception cref="FileNotFoundException">No such path, or no config.</exception>
    /// <exception cref="CheckpointMismatchException">Strict loading found missing, unexpected or mis-shaped weights.</exception>
    /// <exception cref="InvalidDataException">The vocabulary does not fit the model.</exception>
    public static LoadedModel Load(string path, AutoModelOptions? options = null)
    {
        options ??= new();
        // "org/name" that is not a local path: the Hugging Face hub's snapshot (downloaded into its cache when missing).
        if (Hub.HubClient.LooksLikeRepoId(path)) path = Hub.HubClient.Download(path, options.Revision, options.Hub);
        string directory = Directory.Exists(path) ? path
            : File.Exists(path) ? Path.GetDirectoryName(Path.GetFullPath(path))!
            : throw new FileNotFoundException($"{path}: no such model directory or weights file", path);
        string configPath = options.ConfigPath ?? FindConfig(directory);
        var config = TransformerConfig.Load(configPath);
        string familyName = options.Family ?? config.ModelType
            ?? throw new ArgumentException($"{configPath} has no model_type; pass the family (--family in the CLI): {string.Join(", ", ModelFamily.All.Keys.Order())})");
        var family = ModelFamily.Get(familyName);
        var application = options.Application ?? DefaultApplication(family);
        using var checkpoint = options.Weights ? Checkpoint.Open(path) : null;
        var model = TransformerModels.Build(config, checkpoint, family, application, options.Build, out var report);
        report ??= new LoadReport(CheckpointNaming.HuggingFace, [], [], [], [], [], 0);     // nothing read: nothing loaded, nothing missing
        var (wordPiece, sentencePiece) = Tokenizers(directory, options, model.Config.VocabSize);
        return new LoadedModel(model, report, wordPiece, sentencePiece);
    }

    static string FindConfig(string directory)
    {
        try { return TransformerConfig.FindIn(directory); }
        catch (FileNotFoundException e) when (Directory.EnumerateFiles(directory, "*.onnx").Any())
        {
            throw new FileNotFoundException($"{e.Message}. An ONNX graph carries weights but no architecture config: put the model's Hugging Face config.json beside it (Optimum and transformers.js exports have one) or pass the config path", e);
        }
    }

    /// <summary>What a family is built for when the caller does not say.</summary>
    public static Application DefaultApplication(ModelFamily family) => family.Applications is { Count: > 0 } a ? a[0] : Application.Encoder;

    static (BertWordPieceTokenizer?, SpTokenizer?) Tokenizers(string directory, AutoModelOptions options, int vocabSize)
    {
        string? vocab = options.VocabularyPath
            ?? new[] { "vocab.txt", "spiece.model", "sentencepiece.model" }.Select(n => Path.Combine(directory, n)).FirstOrDefault(File.Exists);
        if (vocab is null) return (null, null);
        if (!File.Exists(vocab)) throw new FileNotFoundException($"{vocab}: vocabulary not found", vocab);
        if (vocab.EndsWith(".model", StringComparison.OrdinalIgnoreCase)) return (null, SpTokenizer.FromFile(vocab));
        // A word-level model (WoBERT) records its segmenter in tokenizer_config.json: tokenise as it was trained.
        string? preName = PreTokenization.Read(directory);
        var wp = BertWordPieceTokenizer.FromFile(vocab, PreTokenization.Apply(new BertWordPieceOptions { LowerCase = options.LowerCase, EndToken = options.EndToken }, preName));
        if (wp.Vocabulary.Count != vocabSize && options.Build.KeepTokens is null && options.Build.CompoundTokens is null)
            throw new InvalidDataException($"{vocab} has {wp.Vocabulary.Count} tokens but the model's vocab_size is {vocabSize}; pass the model's own vocabulary");
        return (wp, null);
    }
}
