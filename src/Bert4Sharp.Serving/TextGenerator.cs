namespace Bert4Sharp.Serving;

using Bert4Sharp.Generation;
using Bert4Sharp.Models;
using Bert4Sharp.Onnx;
using Bert4Sharp.Onnx.Export;
using Bert4Sharp.Runtime;
using Bert4Sharp.Tokenization;

/// <summary>
/// A generative model directory behind one API, on either engine: GPT / GPT-2 / GPT2-ML (decoder-only, WordPiece, one
/// shared <see cref="ICausalLanguageModel"/>) or T5 / mT5 (SentencePiece; a per-prompt language model over the encoded
/// prompt). <c>b4s generate</c> and <c>b4s serve</c> load through it.
/// </summary>
public sealed class TextGenerator : IDisposable
{
    readonly ICausalLanguageModel? shared;                       // decoder-only models: one for every prompt
    readonly Func<IReadOnlyList<int>, ICausalLanguageModel>? perPrompt;   // encoder–decoders: the encoder runs per prompt
    readonly Func<string, IReadOnlyList<int>> encode;
    readonly IDisposable? owned;

    TextGenerator(ICausalLanguageModel? shared, Func<IReadOnlyList<int>, ICausalLanguageModel>? perPrompt, Func<string, IReadOnlyList<int>> encode,
        Func<IEnumerable<int>, string> decode, IReadOnlyList<int> decoderStart, int? endId, long maxLength, string engine, IDisposable? owned)
    {
        this.shared = shared;
        this.perPrompt = perPrompt;
        this.encode = encode;
        Decode = decode;
        DecoderStart = decoderStart;
        EndId = endId;
        MaxLength = maxLength;
        Engine = engine;
        this.owned = owned;
    }

    /// <summary>Ids → text.</summary>
    public Func<IEnumerable<int>, string> Decode { get; }
    /// <summary>The end token, or null.</summary>
    public int? EndId { get; }
    /// <summary>What an encoder–decoder's decoder starts from (empty for decoder-only models).</summary>
    public IReadOnlyList<int> DecoderStart { get; }
    /// <summary>Longest sequence (prompt + generated tokens, for decoder-only models) the model takes.</summary>
    public long MaxLength { get; }
    /// <summary>torch or onnx.</summary>
    public string Engine { get; }
    /// <summary>Whether the prompt goes to an encoder (T5) rather than being continued.</summary>
    public bool IsEncoderDecoder => perPrompt is not null;

    /// <summary>Whether <paramref name="directory"/> holds a generative model: an exported decoder graph, or a config whose family generates.</summary>
    public static bool IsGenerative(string directory, string? family = null)
    {
        if (File.Exists(Path.Combine(directory, OnnxExport.DecoderFileName))) return true;
        string? type = family;
        if (type is null)
        {
            try { type = TransformerConfig.Load(TransformerConfig.FindIn(directory)).ModelType; }
            catch (Exception e) when (e is FileNotFoundException or InvalidDataException or ArgumentException) { return false; }
        }
        return type is "gpt" or "gpt2" or "gpt2_ml" or "t5" or "mt5";
    }

    /// <summary>Loads <paramref name="directory"/> on the TorchSharp engine (<c>torch</c>, any checkpoint) or ONNX Runtime (<c>onnx</c>, a <c>b4s export onnx</c> directory).</summary>
    /// <exception cref="ArgumentException">Not a generative family, or a torch-only option with the onnx engine.</exception>
    /// <exception cref="FileNotFoundException">The tokenizer file is missing.</exception>
    public static TextGenerator Load(string directory, string engine = "torch", string? family = null, Precision precision = Precision.Fp32, Action<string>? log = null)
    {
        if (Hub.HubClient.LooksLikeRepoId(directory)) directory = Hub.HubClient.Download(directory);       // org/name from the hub
        if (!Directory.Exists(directory)) throw new DirectoryNotFoundException($"{directory}: model directory not found");
        return engine switch
        {
            "onnx" => LoadOnnx(directory, family, precision),
            "torch" => LoadTorch(directory, family, precision, log ?? Console.Error.WriteLine),
            _ => throw new ArgumentException($"engine '{engine}' is unknown; use torch or onnx"),
        };
    }

    static TextGenerator LoadOnnx(string dir, string? family, Precision precision)
    {
        if (family is not null) throw new ArgumentException("--family applies to the torch engine; the onnx engine runs the graph as exported");
        PrecisionPolicy.RequireFp32ForOnnx(precision);
        var config = TransformerConfig.Load(TransformerConfig.FindIn(dir));
        if (File.Exists(Path.Combine(dir, OnnxExport.DecoderFileName)))
        {
            // An exported encoder–decoder (T5, mT5): SentencePiece in, the decoder graph with its cache.
            string spm = Path.Combine(dir, "spiece.model");
            if (!File.Exists(spm)) throw new FileNotFoundException($"{dir}: no spiece.model beside the T5 graphs (b4s export onnx copies it from the model directory)", spm);
            var sp = SpTokenizer.FromFile(spm);
            var seq2seq = new OnnxSeq2SeqModel(dir);
            return new TextGenerator(null, ids => seq2seq.Prepare(ids), t => sp.Encode(t), sp.Decode, [config.DecoderStartTokenId ?? 0],
                config.EosTokenId ?? sp.EndId, config.MaxPositionEmbeddings, "onnx", seq2seq);
        }
        string vocab = Path.Combine(dir, "vocab.txt");
        if (!File.Exists(vocab)) throw new FileNotFoundException($"{dir}: no vocab.txt beside model.onnx (b4s export onnx copies it from the model directory)", vocab);
        var tk = BertWordPieceTokenizer.FromFile(vocab, new BertWordPieceOptions { EndToken = null });
        var lm = new OnnxCausalLanguageModel(dir);
        return new TextGenerator(lm, null, t => tk.Encode(t).Ids, tk.Decode, [], config.EosTokenId ?? (tk.EndId >= 0 ? tk.EndId : null), config.MaxPositionEmbeddings, "onnx", lm);
    }

    static TextGenerator LoadTorch(string dir, string? family, Precision precision, Action<string> log)
    {
        // GPT-style prompts are [CLS] text with no end token; T5 reads its input through SentencePiece.
        var loaded = AutoModel.Load(dir, new AutoModelOptions { Family = family, EndToken = null });
        var model = loaded.Model;
        model.eval();
        PrecisionPolicy.ApplyForInference(precision, model, model.Device, log);
        var config = loaded.Config;
        if (model.Application == Application.Seq2Seq)
        {
            var sp = loaded.SentencePiece ?? throw new FileNotFoundException($"{dir}: no spiece.model for the T5 model");
            return new TextGenerator(null, ids => new Seq2SeqLanguageModel(model, ids), t => sp.Encode(t), sp.Decode, [config.DecoderStartTokenId ?? 0],
                config.EosTokenId ?? sp.EndId, model.MaxLength, "torch", null);
        }
        if (model.Application != Application.LanguageModel)
            throw new ArgumentException($"'{loaded.Family.Name}' is not a generative family; use gpt2, gpt, gpt2_ml, t5 or mt5");
        var tk = loaded.WordPiece ?? throw new FileNotFoundException($"{dir}: no vocab.txt for the {loaded.Family.Name} model");
        return new TextGenerator(new CausalLanguageModel(model), null, t => tk.Encode(t).Ids, tk.Decode, [],
            config.EosTokenId ?? (tk.EndId >= 0 ? tk.EndId : null), model.MaxLength, "torch", null);
    }

    /// <summary>The prompt's ids as the model reads them (decoder-only: the ids decoding continues).</summary>
    public IReadOnlyList<int> Tokenize(string prompt) => encode(prompt);

    /// <summary>
    /// A decoding session for one prompt: the language model to drive and the ids to start from (the prompt for a
    /// decoder-only model, the decoder start for T5). Dispose it when decoding ends.
    /// </summary>
    /// <exception cref="ArgumentException">An empty prompt for an encoder–decoder.</exception>
    public GenerationSession Start(string prompt)
    {
        var ids = encode(prompt);
        if (perPrompt is not null)
        {
            if (ids.Count == 0) throw new ArgumentException("the prompt is empty");
            var lm = perPrompt(ids);
            return new GenerationSession(lm, [.. DecoderStart], ids.Count, lm as IDisposable);
        }
        return new GenerationSession(shared!, [.. ids], ids.Count, null);
    }

    /// <inheritdoc/>
    public void Dispose() => owned?.Dispose();
}

/// <summary>One prompt's decoding state.</summary>
/// <param name="Model">The language model to decode with.</param>
/// <param name="Start">The ids decoding continues from.</param>
/// <param name="PromptTokens">Tokens in the prompt (usage accounting).</param>
/// <param name="Owned">What the session releases (T5's encoded prompt), or null.</param>
public sealed record GenerationSession(ICausalLanguageModel Model, List<int> Start, int PromptTokens, IDisposable? Owned) : IDisposable
{
    /// <inheritdoc/>
    public void Dispose() => Owned?.Dispose();
}
