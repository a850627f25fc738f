namespace Bert4Sharp.Training;

using Bert4Sharp.Runtime;
using Bert4Sharp.Tokenization;
using TorchSharp;
using static TorchSharp.torch;

/// <summary>
/// Losses of the generative objectives: GPT-style next-token prediction and bert4keras's UniLM seq2seq loss
/// (predict only the target segment). Logits are (B, T, V) from a causal or UniLM model; positions t predict
/// token t + 1.
/// </summary>
public static class LanguageModeling
{
    /// <summary>Mean next-token cross entropy over real tokens (<paramref name="attentionMask"/> 1; all when null).</summary>
    public static Tensor CausalLoss(Tensor logits, Tensor ids, Tensor? attentionMask = null) =>
        ShiftedLoss(logits, ids, attentionMask is null ? null : attentionMask.narrow(1, 1, ids.shape[1] - 1));

    /// <summary>
    /// UniLM seq2seq loss (bert4keras <c>CrossEntropy</c> of its seq2seq examples): next-token cross entropy
    /// only where the predicted token is in segment 1 (the target), padding excluded.
    /// </summary>
    public static Tensor UniLmLoss(Tensor logits, Tensor ids, Tensor segments, Tensor? attentionMask = null)
    {
        var target = segments.narrow(1, 1, ids.shape[1] - 1).ne(0);
        if (attentionMask is not null) target = target.logical_and(attentionMask.narrow(1, 1, ids.shape[1] - 1).ne(0));
        return ShiftedLoss(logits, ids, target);
    }

    /// <summary>
    /// The trainer step of GPT-style training on token sequences: pad the batch, next-token loss over real
    /// tokens. <paramref name="logits"/> maps ids (B, T) to logits (B, T, V), e.g. <c>gpt2.forward</c>.
    /// </summary>
    public static Func<IReadOnlyList<int[]>, StepContext, StepResult> CausalStep(Func<Tensor, Tensor> logits, int padId = 0) => (batch, _) =>
    {
        var (ids, mask) = Pad(batch, padId);
        return new StepResult(CausalLoss(logits(ids), ids, mask), mask.sum().ToInt64());
    };

    /// <summary>Pads token sequences into (B, T) int64 ids (with <paramref name="padId"/>) and a 1/0 attention mask.</summary>
    public static (Tensor Ids, Tensor Mask) Pad(IReadOnlyList<int[]> sequences, int padId = 0, Device? device = null)
    {
        return SequencePadding.Pad(sequences, padId, device);
    }

    /// <summary>
    /// Per-token perplexity of a causal LM (<paramref name="logits"/>: ids (B, T) → (B, T, V)) on
    /// <paramref name="sequences"/>: exp of the mean next-token cross entropy over every predicted token.
    /// </summary>
    public static double Perplexity(Func<Tensor, Tensor> logits, IReadOnlyList<int[]> sequences, int batchSize = 64)
    {
        using var noGrad = torch.no_grad();
        double nll = 0;
        long n = 0;
        for (int i = 0; i < sequences.Count; i += batchSize)
        {
            using var scope = torch.NewDisposeScope();
            var (ids, mask) = Pad(sequences.Skip(i).Take(batchSize).ToList());
            long count = mask.narrow(1, 1, ids.shape[1] - 1).sum().ToInt64();
            nll += CausalLoss(logits(ids), ids, mask).ToDouble() * count;
            n += count;
        }
        return Math.Exp(nll / Math.Max(1, n));
    }

    static Tensor ShiftedLoss(Tensor logits, Tensor ids, Tensor? keep)
    {
        using var scope = torch.NewDisposeScope();
        long t = ids.shape[1];
        if (t < 2) throw new ArgumentException($"next-token prediction needs sequences of at least 2 tokens, got {t}");
        var pred = logits.narrow(1, 0, t - 1).reshape(-1, logits.shape[^1]).to(ScalarType.Float32);
        var labels = ids.narrow(1, 1, t - 1).reshape(-1);
        if (keep is not null) labels = labels.MaskedFill(keep.reshape(-1).logical_not(), -100);
        return nn.functional.cross_entropy(pred, labels, ignore_index: -100).MoveToOuterDisposeScope();
    }
}
