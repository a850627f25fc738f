namespace Bert4Sharp.Models;

using System.Text.Json;
using Bert4Sharp.Checkpoints;
using Bert4Sharp.Tokenization;
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
/// A model directory ready to use: tokenizer + model. <c>Load("dir")</c> finds the config
/// (config.json, bert_config.json, albert_config*.json), the weights (any format) and vocab.txt.
/// </summary>
public sealed class TransformerPipeline
{
    TransformerPipeline(TransformerModel model, BertWordPieceTokenizer tokenizer)
    {
        Model = model;
        Tokenizer = tokenizer;
    }

    /// <summary>The model.</summary>
    public TransformerModel Model { get; }

    /// <summary>The tokenizer.</summary>
    public BertWordPieceTokenizer Tokenizer { get; }

    /// <summary>Loads a model directory. The family defaults to the config's <c>model_type</c>.</summary>
    /// <exception cref="FileNotFoundException">No config or vocabulary in the directory.</exception>
    public static TransformerPipeline Load(string directory, string? family = null, Application application = Application.Encoder,
        BuildOptions? options = null, string? vocabularyPath = null, bool lowerCase = true)
    {
        if (!Directory.Exists(directory)) throw new DirectoryNotFoundException($"{directory}: model directory not found");
        string config = TransformerConfig.FindIn(directory);
        var cfg = TransformerConfig.Load(config);
        family ??= cfg.ModelType ?? throw new ArgumentException($"{config} has no model_type; pass the family (bert, albert, electra, roformer, roformer_v2)");
        string vocab = vocabularyPath ?? Path.Combine(directory, "vocab.txt");
        var tokenizer = BertWordPieceTokenizer.FromFile(vocab, new BertWordPieceOptions { LowerCase = lowerCase });
        using var ck = Checkpoint.Open(directory);
        var model = TransformerModels.Build(cfg, ck, ModelFamily.Get(family), application, options, out _);
        if (tokenizer.Vocabulary.Count != model.Config.VocabSize)
            throw new InvalidDataException($"{vocab} has {tokenizer.Vocabulary.Count} tokens but the model's vocab_size is {model.Config.VocabSize}");
        return new TransformerPipeline(model, tokenizer);
    }

    /// <summary>Wraps an existing model and tokenizer.</summary>
    public static TransformerPipeline Create(TransformerModel model, BertWordPieceTokenizer tokenizer) => new(model, tokenizer);

    /// <summary>Writes config.json, model.safetensors (Hugging Face names) and vocab.txt, so <see cref="Load"/> (or HF) can read the directory back.</summary>
    public IReadOnlyList<string> SavePretrained(string directory)
    {
        var files = WeightLoader.SavePretrained(Model, directory).ToList();
        string vocab = Path.Combine(directory, "vocab.txt");
        Tokenizer.Vocabulary.Save(vocab);
        files.Add(vocab);
        return files;
    }

    /// <summary>Encodes texts in one padded batch (or batches of <paramref name="batchSize"/>) and returns sentence vectors.</summary>
    /// <exception cref="ArgumentException">Empty input.</exception>
    public SentenceVectors Encode(IReadOnlyList<string> texts, int? maxLength = null, int batchSize = 32)
    {
        if (texts.Count == 0) throw new ArgumentException("no texts to encode", nameof(texts));
        var emb = Model.Architecture.Embeddings;
        maxLength ??= emb.MaxPositions == 0 ? null : emb.HierarchicalAlpha is null ? emb.MaxPositions : emb.MaxPositions * emb.MaxPositions;
        var first = new List<float[]>();
        var mean = new List<float[]>();
        var pooled = new List<float[]>();
        var tokens = new List<IReadOnlyList<string>>();
        var device = Model.parameters().First().device;
        for (int b = 0; b < texts.Count; b += batchSize)
        {
            var chunk = texts.Skip(b).Take(batchSize).ToList();
            using var scope = torch.NewDisposeScope();
            using var noGrad = torch.no_grad();
            using var batch = Tokenizer.EncodeBatch(chunk, maxLength, device);
            using var output = Model.forward(batch.InputIds, batch.SegmentIds, batch.AttentionMask);
            var h = output.LastHiddenState;                                                  // (B, T, H)
            var m = batch.AttentionMask.unsqueeze(-1).to(h.dtype);
            var avg = (h * m).sum(1) / m.sum(1);                                             // (B, H)
            var cls = h.select(1, 0);
            for (int i = 0; i < chunk.Count; i++)
            {
                first.Add(cls[i].cpu().data<float>().ToArray());
                mean.Add(avg[i].cpu().data<float>().ToArray());
                if (output.Pooled is not null) pooled.Add(output.Pooled[i].cpu().data<float>().ToArray());
                tokens.Add(batch.Items[i].Tokens);
            }
        }
        return new SentenceVectors(texts, tokens, first, mean, pooled.Count > 0 ? pooled : null);
    }

    /// <summary>Top-<paramref name="topK"/> tokens for every mask token in <paramref name="text"/> (needs <see cref="Application.MaskedLM"/>).</summary>
    /// <exception cref="ArgumentException">No mask in the text, or the model has no MLM head.</exception>
    public IReadOnlyList<FillMaskCandidate> FillMask(string text, int topK = 5)
    {
        if (Model.Application is not (Application.MaskedLM or Application.PreTraining))
            throw new ArgumentException($"fill-mask needs a model built with Application.MaskedLM, this one is {Model.Application}");
        if (topK < 1) throw new ArgumentOutOfRangeException(nameof(topK), $"topK must be at least 1, got {topK}");
        var e = Tokenizer.Encode(text);
        var positions = Enumerable.Range(0, e.Count).Where(i => e.Ids[i] == Tokenizer.MaskId).ToList();
        if (positions.Count == 0) throw new ArgumentException($"the text has no {Tokenizer.Options.MaskingToken}: '{text}'");
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        var device = Model.parameters().First().device;
        var ids = torch.tensor(e.Ids.Select(i => (long)i).ToArray(), device: device).unsqueeze(0);
        var segs = torch.tensor(e.SegmentIds.Select(i => (long)i).ToArray(), device: device).unsqueeze(0);
        using var output = Model.forward(ids, segs, null);
        var result = new List<FillMaskCandidate>();
        for (int k = 0; k < positions.Count; k++)
        {
            var probs = output.Logits![0, positions[k]].softmax(-1);
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
