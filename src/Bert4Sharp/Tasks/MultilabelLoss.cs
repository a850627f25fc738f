namespace Bert4Sharp.Tasks;

using Bert4Sharp.Runtime;
using TorchSharp;
using static TorchSharp.torch;

/// <summary>
/// The multilabel categorical cross-entropy of Su (kexue.fm/archives/7359, 8888, 9064; bert4keras's
/// <c>multilabel_categorical_crossentropy</c> and <c>sparse_multilabel_categorical_crossentropy</c>): for each row of
/// class scores s, <c>log(1 + Σ_neg e^{s_i}) + log(1 + Σ_pos e^{−s_j})</c>. It pushes positive scores above 0 and
/// negative ones below 0, so prediction is <c>s &gt; 0</c>, with no threshold to tune and no imbalance between the
/// few positives and the many negatives. Scores of −∞ are excluded (neither positive nor negative): masked cells of a
/// <see cref="GlobalPointer"/> score matrix are −∞.
/// </summary>
public static class MultilabelLoss
{
    /// <summary>The clip bert4keras applies (Keras's <c>K.epsilon()</c>) to 1 − Σ_pos e^s / Σ_all e^s in the sparse form.</summary>
    public const double SparseEpsilon = 1e-7;

    /// <summary>
    /// Dense form. <paramref name="scores"/> (..., C) are logits (no sigmoid or softmax); <paramref name="labels"/>
    /// (..., C), same shape, hold the probability in [0, 1] that each class is a target (1 for a positive, 0 for a
    /// negative; soft labels weight both sums). Entries whose score is −∞ are excluded. Returns the per-row loss (...).
    /// </summary>
    public static Tensor Dense(Tensor scores, Tensor labels)
    {
        if (!scores.shape.SequenceEqual(labels.shape))
            throw new ArgumentException($"labels must have the scores' shape ({Shape(scores)}), got {Shape(labels)}", nameof(labels));
        if (!scores.is_floating_point())
            throw new ArgumentException($"scores must be floating point, got {scores.dtype}", nameof(scores));
        using var scope = torch.NewDisposeScope();
        var y = labels.to(scores.dtype);
        var keep = scores.ne(double.NegativeInfinity);
        var ninf = torch.full_like(scores, double.NegativeInfinity);
        var neg = torch.where(keep, scores, ninf) + torch.log(1 - y);   // negatives: s_i (positives add log 0 = −∞)
        var pos = torch.where(keep, -scores, ninf) + torch.log(y);      // positives: −s_j
        var zeros = torch.zeros_like(scores[TensorIndex.Ellipsis, ..1]);          // the "1 +" inside each log
        var loss = torch.logsumexp(torch.cat([neg, zeros], -1), -1) + torch.logsumexp(torch.cat([pos, zeros], -1), -1);
        return loss.MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Sparse form: the positives are given by index. <paramref name="scores"/> (..., C); <paramref name="positives"/>
    /// (..., P) int64 class indices in [0, C) (each at most once in a row). With <paramref name="maskZero"/> index 0 is
    /// padding (rows with fewer positives are padded with 0, as bert4keras's <c>mask_zero=True</c>): it is never a
    /// positive, and class 0 is never a negative either. The negative sum is computed as log(Σ_all e^s) + log(1 −
    /// Σ_pos e^s / Σ_all e^s), the ratio's complement clipped to [<see cref="SparseEpsilon"/>, 1] as bert4keras does,
    /// so memory stays O(C + P). Returns the per-row loss (...).
    /// </summary>
    public static Tensor Sparse(Tensor scores, Tensor positives, bool maskZero = false)
    {
        if (!scores.is_floating_point())
            throw new ArgumentException($"scores must be floating point, got {scores.dtype}", nameof(scores));
        if (positives.dtype != ScalarType.Int64)
            throw new ArgumentException($"positives must be int64 class indices, got {positives.dtype}", nameof(positives));
        if (positives.dim() != scores.dim() || !positives.shape[..^1].SequenceEqual(scores.shape[..^1]))
            throw new ArgumentException($"positives (..., P) must match the scores' leading dims ({Shape(scores)}), got {Shape(positives)}", nameof(positives));
        long classes = scores.shape[^1];
        if (positives.numel() > 0)
        {
            long lo = positives.min().item<long>(), hi = positives.max().item<long>();
            if (lo < 0 || hi >= classes)
                throw new ArgumentOutOfRangeException(nameof(positives), $"positive indices must lie in [0, {classes}), found {(lo < 0 ? lo : hi)}");
        }
        using var scope = torch.NewDisposeScope();
        var zeros = torch.zeros_like(scores[TensorIndex.Ellipsis, ..1]);
        var all = torch.cat([scores, zeros], -1);                                  // (..., C + 1): the appended 0 is the "1 +"
        var picked = all.gather(-1, positives);                                    // (..., P) positive scores
        var pad = maskZero ? positives.eq(0) : null;
        if (maskZero)   // class 0 out of the negatives too
            all = torch.cat([torch.full_like(zeros, double.NegativeInfinity), all[TensorIndex.Ellipsis, 1..]], -1);
        // log(1 + Σ_pos e^{−s}); padding contributes e^{−∞}
        var negPicked = pad is null ? -picked : (-picked).MaskedFill(pad, double.NegativeInfinity);
        var posLoss = torch.logsumexp(torch.cat([negPicked, zeros], -1), -1);
        // log(1 + Σ_neg e^{s}) = log Σ_all + log(1 − Σ_pos / Σ_all)
        var allLoss = torch.logsumexp(all, -1);
        var posPicked = pad is null ? picked : picked.MaskedFill(pad, double.NegativeInfinity);
        var ratio = torch.logsumexp(posPicked, -1) - allLoss;
        var negLoss = allLoss + torch.log(torch.clamp(1 - torch.exp(ratio), SparseEpsilon, 1));
        return (posLoss + negLoss).MoveToOuterDisposeScope();
    }

    static string Shape(Tensor t) => "(" + string.Join(", ", t.shape) + ")";
}
