namespace Bert4Sharp.Training;

using Bert4Sharp.Models;
using Bert4Sharp.Tokenization;
using TorchSharp;
using static TorchSharp.torch;

/// <summary>A pretraining sequence: token ids ([CLS] … [SEP] … [SEP]) and, for whole-word masking, the word each token belongs to.</summary>
/// <param name="Ids">Token ids.</param>
/// <param name="WordIds">Per token, the index of its word (tokens of one word share it; special tokens get −1); null for token-level masking.</param>
public sealed record PretrainingSequence(int[] Ids, int[]? WordIds);

/// <summary>Options of <see cref="MaskedLanguageModeling"/> (BERT's 15 % with 80/10/10).</summary>
public sealed record MaskingOptions
{
    /// <summary>Share of words (or tokens) chosen for prediction.</summary>
    public double MaskRate { get; init; } = 0.15;
    /// <summary>Of the chosen tokens, the share replaced by [MASK].</summary>
    public double MaskTokenShare { get; init; } = 0.8;
    /// <summary>Of the chosen tokens, the share replaced by a random token (the rest stay as they are).</summary>
    public double RandomTokenShare { get; init; } = 0.1;

    /// <summary>Checks ranges.</summary>
    public void Validate()
    {
        if (!(MaskRate > 0 && MaskRate < 1)) throw new ArgumentOutOfRangeException(nameof(MaskRate), $"MaskRate must be in (0, 1), got {MaskRate}");
        if (!(MaskTokenShare >= 0 && RandomTokenShare >= 0 && MaskTokenShare + RandomTokenShare <= 1))
            throw new ArgumentOutOfRangeException(nameof(MaskTokenShare), $"MaskTokenShare ({MaskTokenShare}) and RandomTokenShare ({RandomTokenShare}) must be ≥ 0 and sum to ≤ 1");
    }
}

/// <summary>
/// Masked-language-model pretraining data and loss, as bert4keras's pretraining scripts do it: texts are
/// tokenised (and segmented into words with jieba for whole-word masking), packed into sequences of up to a
/// maximum length, and masked dynamically at every step (a word is chosen with the mask rate, then each of
/// its tokens becomes [MASK] 80 %, a random token 10 %, itself 10 %). The loss and accuracy count only the
/// chosen positions, and the MLM head runs only there.
/// </summary>
public sealed class MaskedLanguageModeling
{
    readonly BertWordPieceTokenizer tokenizer;
    readonly JiebaSegmenter? segmenter;
    readonly MaskingOptions options;
    readonly int[] randomPool;

    /// <summary>Creates the objective; with a <paramref name="segmenter"/>, whole words are masked.</summary>
    public MaskedLanguageModeling(BertWordPieceTokenizer tokenizer, JiebaSegmenter? segmenter = null, MaskingOptions? options = null)
    {
        this.tokenizer = tokenizer;
        this.segmenter = segmenter;
        this.options = options ?? new();
        this.options.Validate();
        var special = new HashSet<int> { tokenizer.StartId, tokenizer.EndId, tokenizer.PaddingId, tokenizer.MaskId, tokenizer.UnknownId };
        randomPool = Enumerable.Range(0, tokenizer.Vocabulary.Count)
            .Where(i => !special.Contains(i) && !tokenizer.Vocabulary.IdToToken(i).StartsWith("[unused", StringComparison.Ordinal)).ToArray();
    }

    /// <summary>Whether whole words are masked.</summary>
    public bool WholeWord => segmenter is not null;

    /// <summary>
    /// Packs texts into sequences of at most <paramref name="maxLength"/> tokens: [CLS] text [SEP] text [SEP] …;
    /// a text longer than the room left starts a new sequence (and is truncated when longer than a whole one).
    /// Streams: texts are read as the sequences are consumed.
    /// </summary>
    public IEnumerable<PretrainingSequence> Pack(IEnumerable<string> texts, int maxLength)
    {
        if (maxLength < 3) throw new ArgumentOutOfRangeException(nameof(maxLength), $"maxLength must be ≥ 3, got {maxLength}");
        var ids = new List<int> { tokenizer.StartId };
        var words = new List<int> { -1 };
        int nextWord = 0;
        foreach (string text in texts)
        {
            var (tIds, tWords) = Tokenize(text, maxLength - 2);
            if (tIds.Count == 0) continue;
            if (ids.Count + tIds.Count + 1 > maxLength && ids.Count > 1)
            {
                yield return Finish();
                ids = [tokenizer.StartId];
                words = [-1];
                nextWord = 0;
            }
            int offset = nextWord;
            ids.AddRange(tIds);
            words.AddRange(tWords.Select(w => w + offset));
            nextWord += tWords.Count == 0 ? 0 : tWords.Max() + 1;
            ids.Add(tokenizer.EndId);
            words.Add(-1);
        }
        if (ids.Count > 1) yield return Finish();

        PretrainingSequence Finish() => new([.. ids], WholeWord ? [.. words] : null);
    }

    (List<int> Ids, List<int> Words) Tokenize(string text, int max)
    {
        var enc = tokenizer.Encode(text, maxLength: max + 2);
        var ids = enc.Ids.Skip(1).Take(enc.Count - 2).ToList();                           // without [CLS] … [SEP]
        var spans = enc.Offsets.Skip(1).Take(enc.Count - 2).ToList();
        var words = new List<int>(ids.Count);
        if (segmenter is null) { for (int i = 0; i < ids.Count; i++) words.Add(i); return (ids, words); }
        // Word index of every character, then of every token (by its first character).
        var wordOfChar = new int[text.Length];
        int pos = 0, w = 0;
        foreach (string word in segmenter.Cut(text))
        {
            for (int k = 0; k < word.Length && pos < text.Length; k++) wordOfChar[pos++] = w;
            w++;
        }
        int fallback = w;
        foreach (var s in spans) words.Add(s.IsEmpty || s.Start >= text.Length ? fallback++ : wordOfChar[s.Start]);
        // Renumber densely from 0 so packing can offset them.
        var map = new Dictionary<int, int>();
        for (int i = 0; i < words.Count; i++) words[i] = map.TryGetValue(words[i], out int m) ? m : map[words[i]] = map.Count;
        return (ids, words);
    }

    /// <summary>
    /// Masks a batch dynamically with <paramref name="random"/> and pads it: input ids, the original ids at
    /// chosen positions (−100 elsewhere) and the attention mask, all (B, T).
    /// </summary>
    public (Tensor Input, Tensor Labels, Tensor AttentionMask) Mask(IReadOnlyList<PretrainingSequence> batch, Random random, Device? device = null)
    {
        var inputs = new List<int[]>(batch.Count);
        var targets = new List<int[]>(batch.Count);
        foreach (var seq in batch)
        {
            var input = seq.Ids.ToArray();
            var labels = Enumerable.Repeat(-100, seq.Ids.Length).ToArray();
            inputs.Add(input);
            targets.Add(labels);
            var chosenWords = new Dictionary<int, bool>();
            bool any = false;
            for (int i = 0; i < seq.Ids.Length; i++)
            {
                int id = seq.Ids[i];
                if (id == tokenizer.StartId || id == tokenizer.EndId || id == tokenizer.PaddingId) continue;
                int word = seq.WordIds?[i] ?? i;
                if (word < 0) continue;
                if (!chosenWords.TryGetValue(word, out bool chosen)) chosenWords[word] = chosen = random.NextDouble() < options.MaskRate;
                if (!chosen) continue;
                any = true;
                labels[i] = id;
                double r = random.NextDouble();
                if (r < options.MaskTokenShare) input[i] = tokenizer.MaskId;
                else if (r < options.MaskTokenShare + options.RandomTokenShare) input[i] = randomPool[random.Next(randomPool.Length)];
            }
            if (!any)
            {
                // Every sequence predicts at least one word, so no batch has an empty loss.
                var candidates = Enumerable.Range(0, seq.Ids.Length)
                    .Where(i => seq.Ids[i] != tokenizer.StartId && seq.Ids[i] != tokenizer.EndId && (seq.WordIds?[i] ?? i) >= 0).ToList();
                if (candidates.Count > 0)
                {
                    int pick = candidates[random.Next(candidates.Count)];
                    int word = seq.WordIds?[pick] ?? pick;
                    foreach (int i in candidates.Where(i => (seq.WordIds?[i] ?? i) == word))
                    {
                        labels[i] = seq.Ids[i];
                        input[i] = tokenizer.MaskId;
                    }
                }
            }
        }
        var (ids, mask) = SequencePadding.Pad(inputs, tokenizer.PaddingId, device);
        return (ids, SequencePadding.PadValues(targets, -100, device), mask);
    }

    /// <summary>
    /// One training step's loss for <paramref name="model"/> (built with <see cref="Application.MaskedLM"/>):
    /// masks the batch, encodes, runs the MLM head on the chosen positions only, and returns the mean cross
    /// entropy with the accuracy at those positions.
    /// </summary>
    public StepResult Step(TransformerModel model, IReadOnlyList<PretrainingSequence> batch, StepContext context)
    {
        var device = model.TokenEmbeddings.device;
        var (input, labels, attention) = Mask(batch, context.Random, device);
        var (loss, correct, count) = Loss(model, input, labels, attention);
        return new StepResult(loss, attention.sum().item<long>(), new Dictionary<string, double> { ["mlm_accuracy"] = (double)correct / Math.Max(1, count) },
            Weight: count);                                                               // the loss is a mean over the masked tokens
    }

    /// <summary>MLM loss on given inputs: mean cross entropy over positions whose label is not −100, with the count of correct argmax predictions.</summary>
    public static (Tensor Loss, long Correct, long Count) Loss(TransformerModel model, Tensor input, Tensor labels, Tensor attention)
    {
        bool compute = model.ComputeLogits;
        model.ComputeLogits = false;
        try
        {
            using var output = model.forward(input, null, attention);
            var flat = labels.flatten();
            var chosen = flat.ne(-100).nonzero().squeeze(1);                                  // flat indices of the chosen positions
            var flatLabels = flat.index_select(0, chosen);
            var hidden = output.LastHiddenState.reshape(-1, output.LastHiddenState.shape[^1]).index_select(0, chosen);
            var logits = model.LanguageModelLogits(hidden).to(ScalarType.Float32);
            var loss = nn.functional.cross_entropy(logits, flatLabels);
            long correct = logits.argmax(-1).eq(flatLabels).sum().item<long>();
            return (loss, correct, flatLabels.shape[0]);
        }
        finally { model.ComputeLogits = compute; }
    }
}
