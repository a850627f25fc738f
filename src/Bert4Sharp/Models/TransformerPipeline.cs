namespace Bert4Sharp.Models;

using Bert4Sharp.Tasks;
using Bert4Sharp.Tokenization;
using Bert4Sharp.Runtime;
using TorchSharp;
using static TorchSharp.torch;

/// <summary>Sentence vectors of <see cref="TransformerPipeline.Encode"/>.</summary>
/// <param name="Texts">The inputs.</param>
/// <param name="Tokens">Tokens per text.</param>
/// <param name="First">The first token's ([CLS]) final hidden state per text.</param>
/// <param name="Mean">Mean of the final hidden states over real tokens per text.</param>
/// <param name="Pooled">The pooler's output per text, when the model has a pooler.</param>
public sealed record SentenceVectors(IReadOnlyList<string> Texts, IReadOnlyList<IReadOnlyList<string>> Tokens,
    IReadOnlyList<float[]> First, IReadOnlyList<float[]> Mean, IReadOnlyList<float[]>? Pooled);

/// <summary>One candidate of <see cref="TransformerPipeline.FillMask"/>.</summary>
/// <param name="Position">Index of the mask among the text's masks.</param>
/// <param name="Token">Predicted token.</param>
/// <param name="Id">Its id.</param>
/// <param name="Probability">Softmax probability.</param>
/// <param name="Text">The text with this token in place of the mask.</param>
public sealed record FillMaskCandidate(int Position, string Token, int Id, float Probability, string Text);

/// <summary>
/// A model ready to use: WordPiece tokenizer + encoder. <c>Load("dir")</c> goes through <see cref="AutoModel"/>
/// (config, weights in any format and naming, vocab.txt); <see cref="Create(IEncoder, BertWordPieceTokenizer)"/>
/// wraps any <see cref="IEncoder"/>, e.g. an ONNX Runtime session.
/// </summary>
public sealed class TransformerPipeline
{
    TransformerPipeline(IEncoder encoder, BertWordPieceTokenizer tokenizer)
    {
        Encoder = encoder;
        Tokenizer = tokenizer;
    }

    /// <summary>The encoder (any engine).</summary>
    public IEncoder Encoder { get; }

    /// <summary>The TorchSharp model behind the encoder.</summary>
    /// <exception cref="InvalidOperationException">The encoder is another engine.</exception>
    public TransformerModel Model => Encoder as TransformerModel
        ?? throw new InvalidOperationException($"this pipeline runs on {Encoder.Engine}, not on a TorchSharp model");

    /// <summary>The tokenizer.</summary>
    public BertWordPieceTokenizer Tokenizer { get; }

    /// <summary>Loads a model directory or weights file through <see cref="AutoModel.Load(string, AutoModelOptions?)"/>; it must come with vocab.txt.</summary>
    /// <exception cref="FileNotFoundException">No config or vocabulary.</exception>
    public static TransformerPipeline Load(string path, string? family = null, Application application = Application.Encoder,
        BuildOptions? options = null, string? vocabularyPath = null, bool lowerCase = true)
    {
        var loaded = AutoModel.Load(path, new AutoModelOptions { Family = family, Application = application, Build = options ?? new(), VocabularyPath = vocabularyPath, LowerCase = lowerCase });
        var tokenizer = loaded.WordPiece ?? throw new FileNotFoundException($"{path}: no vocab.txt beside the model (pass the vocabulary path)");
        return new TransformerPipeline(loaded.Model, tokenizer);
    }

    /// <summary>Wraps an encoder (a TorchSharp model or another engine) and its tokenizer.</summary>
    public static TransformerPipeline Create(IEncoder encoder, BertWordPieceTokenizer tokenizer) => new(encoder, tokenizer);

    /// <summary>
    /// Writes config.json, model.safetensors (Hugging Face names), vocab.txt and, when the tokenizer has a named word
    /// pre-tokenizer (WoBERT's jieba), tokenizer_config.json recording it, so <see cref="Load"/> (or HF) can read the
    /// directory back and tokenise as before.
    /// </summary>
    public IReadOnlyList<string> SavePretrained(string directory)
    {
        var files = WeightLoader.SavePretrained(Model, directory).ToList();
        string vocab = Path.Combine(directory, "vocab.txt");
        Tokenizer.Vocabulary.Save(vocab);
        files.Add(vocab);
        if (Tokenizer.Options.PreTokenizerName is { } pre and not "none")
        {
            PreTokenization.Write(directory, pre);
            files.Add(Path.Combine(directory, PreTokenization.ConfigFileName));
        }
        return files;
    }

    /// <summary>Encodes texts in padded batches of <paramref name="batchSize"/> (truncated to the model's maximum length) and returns sentence vectors.</summary>
    /// <exception cref="ArgumentException">Empty input.</exception>
    public SentenceVectors Encode(IReadOnlyList<string> texts, int? maxLength = null, int batchSize = 32)
    {
        if (texts.Count == 0) throw new ArgumentException("no texts to encode", nameof(texts));
        long limit = Math.Min(maxLength ?? long.MaxValue, Encoder.MaxLength);
        int? truncate = limit >= int.MaxValue ? null : (int)limit;
        var first = new List<float[]>();
        var mean = new List<float[]>();
        var pooled = new List<float[]>();
        var tokens = new List<IReadOnlyList<string>>();
        for (int b = 0; b < texts.Count; b += batchSize)
        {
            var chunk = texts.Skip(b).Take(batchSize).ToList();
            using var scope = torch.NewDisposeScope();
            using var noGrad = torch.no_grad();
            using var batch = Tokenizer.EncodeBatch(chunk, truncate, Encoder.Device);
            using var output = Encoder.Encode(batch.InputIds, batch.SegmentIds, batch.AttentionMask);
            var cls = Pool.Apply(Pooling.Cls, output, batch.AttentionMask).cpu();             // (B, H)
            var avg = Pool.Apply(Pooling.Mean, output, batch.AttentionMask).cpu();
            var pool = output.Pooled?.cpu();
            for (int i = 0; i < chunk.Count; i++)
            {
                first.Add(cls[i].data<float>().ToArray());
                mean.Add(avg[i].data<float>().ToArray());
                if (pool is not null) pooled.Add(pool[i].data<float>().ToArray());
                tokens.Add(batch.Items[i].Tokens);
            }
        }
        return new SentenceVectors(texts, tokens, first, mean, pooled.Count > 0 ? pooled : null);
    }

    /// <summary>Top-<paramref name="topK"/> tokens for every mask token in <paramref name="text"/> (needs <see cref="Application.MaskedLM"/>).</summary>
    /// <exception cref="ArgumentException">No mask in the text, or the model has no MLM head.</exception>
    public IReadOnlyList<FillMaskCandidate> FillMask(string text, int topK = 5)
    {
        // The TorchSharp model's head, or another engine's (an exported MLM graph on ONNX Runtime).
        Func<Tensor, Tensor, Tensor> logits;
        if (Encoder is IMaskedLanguageModel { HasMaskedLanguageModelHead: true } other) logits = (i, s) => other.MaskedLanguageModelLogits(i, s, null);
        else if (Encoder is IMaskedLanguageModel) throw new ArgumentException($"fill-mask needs an MLM head; this {Encoder.Engine} graph has no logits output (export it with --application mlm)");
        else
        {
            var mlm = new Generation.TransformerMaskedLanguageModel(Model);                  // checks the model has an MLM head
            logits = (i, s) => mlm.MaskedLanguageModelLogits(i, s, null);
        }
        if (topK < 1) throw new ArgumentOutOfRangeException(nameof(topK), $"topK must be at least 1, got {topK}");
        var e = Tokenizer.Encode(text);
        var positions = Enumerable.Range(0, e.Count).Where(i => e.Ids[i] == Tokenizer.MaskId).ToList();
        if (positions.Count == 0) throw new ArgumentException($"the text has no {Tokenizer.Options.MaskingToken}: '{text}'");
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        var device = Encoder.Device;
        var ids = torch.tensor(e.Ids.Select(i => (long)i).ToArray(), device: device).unsqueeze(0);
        var segs = torch.tensor(e.SegmentIds.Select(i => (long)i).ToArray(), device: device).unsqueeze(0);
        var all = logits(ids, segs);                                                        // (1, T, V)
        var result = new List<FillMaskCandidate>();
        for (int k = 0; k < positions.Count; k++)
        {
            var probs = all[0, positions[k]].softmax(-1);
            var (values, indices) = probs.topk(Math.Min(topK, (int)probs.shape[0]));
            var span = e.Offsets[positions[k]];
            for (int j = 0; j < values.shape[0]; j++)
            {
                int id = (int)indices[j].item<long>();
                string token = Tokenizer.Vocabulary.IdToToken(id);
                string filled = text[..span.Start] + (token.StartsWith("##", StringComparison.Ordinal) ? token[2..] : token) + text[span.End..];
                result.Add(new FillMaskCandidate(k, token, id, values[j].item<float>(), filled));
            }
        }
        return result;
    }
}
