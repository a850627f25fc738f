namespace Bert4Sharp.Embeddings;

using Bert4Sharp.Runtime;
using TorchSharp;
using static TorchSharp.torch;

/// <summary>
/// The training objectives of sentence vectors from Su Jianlin's posts: SimCSE (unsupervised: the same sentence twice
/// through dropout is the positive, the rest of the batch the negatives; supervised: an entailed hypothesis is the
/// positive, a contradicted one a hard negative) and CoSENT (a ranking loss on the cosines of labelled pairs).
/// Every function takes pooled vectors (not normalised) and returns a scalar loss.
/// </summary>
public static class EmbeddingLosses
{
    /// <summary>
    /// Unsupervised SimCSE (Gao et al. 2021): row i of <paramref name="first"/> and <paramref name="second"/> (B, H) are
    /// two dropout views of sentence i; the loss is the cross-entropy of cos(first_i, second_j) / τ over j with target i.
    /// </summary>
    /// <param name="first">The first view (B, H).</param>
    /// <param name="second">The second view (B, H).</param>
    /// <param name="temperature">τ (the paper's 0.05, a scale of 20 in the blog's code).</param>
    public static Tensor SimCse(Tensor first, Tensor second, double temperature = 0.05)
    {
        CheckPair(first, second);
        using var scope = torch.NewDisposeScope();
        var sim = CosineMatrix(first, second) / temperature;                                        // (B, B)
        var target = torch.arange(first.shape[0], dtype: ScalarType.Int64, device: first.device);    // (B)
        return nn.functional.cross_entropy(sim, target).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Supervised SimCSE: each anchor (B, H) against every positive and every hard negative of the batch (B, 2B),
    /// cross-entropy with its own positive as the target.
    /// </summary>
    public static Tensor SupervisedSimCse(Tensor anchor, Tensor positive, Tensor negative, double temperature = 0.05)
    {
        CheckPair(anchor, positive);
        CheckPair(anchor, negative);
        using var scope = torch.NewDisposeScope();
        var sim = CosineMatrix(anchor, torch.cat([positive, negative], 0)) / temperature;          // (B, 2B)
        var target = torch.arange(anchor.shape[0], dtype: ScalarType.Int64, device: anchor.device);
        return nn.functional.cross_entropy(sim, target).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// CoSENT (Su Jianlin, "CoSENT（一）"): log(1 + Σ exp(λ(cos_j − cos_i))) over every pair of pairs (i, j) of the batch
    /// whose gold scores say i is more similar than j — only the order of the cosines is trained, so the loss fits
    /// the Spearman evaluation and works with 0/1 labels and graded scores alike.
    /// </summary>
    /// <param name="first">First sentences (B, H).</param>
    /// <param name="second">Second sentences (B, H).</param>
    /// <param name="scores">Gold similarity (B), any scale; only the order matters.</param>
    /// <param name="scale">λ (20 in the post).</param>
    public static Tensor CoSent(Tensor first, Tensor second, Tensor scores, double scale = 20)
    {
        CheckPair(first, second);
        if (scores.dim() != 1 || scores.shape[0] != first.shape[0])
            throw new ArgumentException($"CoSENT needs one score per pair: {first.shape[0]} pairs, scores of shape [{string.Join(", ", scores.shape)}]");
        using var scope = torch.NewDisposeScope();
        var cos = nn.functional.cosine_similarity(first, second, dim: 1, eps: 1e-8) * scale;          // (B)
        var diff = cos.unsqueeze(0) - cos.unsqueeze(1);                                               // (B, B): [i, j] = λcos_j − λcos_i
        var s = scores.to(cos.dtype).to(cos.device);
        var ordered = s.unsqueeze(1) > s.unsqueeze(0);                                                // [i, j]: pair i should rank above j
        var terms = diff.MaskedFill(ordered.logical_not(), double.NegativeInfinity).flatten();
        return torch.logsumexp(torch.cat([torch.zeros(1, dtype: cos.dtype, device: cos.device), terms]), 0).MoveToOuterDisposeScope();
    }

    /// <summary>cos(a_i, b_j) for every i, j: (B, H) × (N, H) → (B, N).</summary>
    public static Tensor CosineMatrix(Tensor a, Tensor b)
    {
        using var scope = torch.NewDisposeScope();
        var an = nn.functional.normalize(a, p: 2, dim: -1, eps: 1e-8);
        var bn = nn.functional.normalize(b, p: 2, dim: -1, eps: 1e-8);
        return an.matmul(bn.T).MoveToOuterDisposeScope();
    }

    static void CheckPair(Tensor a, Tensor b)
    {
        if (a.dim() != 2 || b.dim() != 2 || a.shape[0] != b.shape[0] || a.shape[1] != b.shape[1])
            throw new ArgumentException($"expected two (B, H) tensors of the same shape, got [{string.Join(", ", a.shape)}] and [{string.Join(", ", b.shape)}]");
        if (a.shape[0] < 2) throw new ArgumentException("a contrastive batch needs at least two examples (the others are the negatives)");
    }
}
