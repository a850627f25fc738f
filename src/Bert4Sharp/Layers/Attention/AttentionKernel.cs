namespace Bert4Sharp.Layers;

using Bert4Sharp.Runtime;
using TorchSharp;
using static TorchSharp.torch;

/// <summary>
/// One attention call as a kernel sees it: projected, position-rotated queries, keys and values plus what
/// else the scores need. Shapes: <see cref="Query"/> (B, h, Tq, dk), <see cref="Key"/> (B, h, Tk, dk),
/// <see cref="Value"/> (B, h, Tk, dv); masks and biases broadcast to (B, h, Tq, Tk).
/// </summary>
public sealed class AttentionCall
{
    /// <summary>Queries (B, h, Tq, dk).</summary>
    public required Tensor Query { get; init; }
    /// <summary>Keys (B, h, Tk, dk).</summary>
    public required Tensor Key { get; init; }
    /// <summary>Values (B, h, Tk, dv).</summary>
    public required Tensor Value { get; init; }
    /// <summary>Factor on q·kᵀ: 1/√dk for most models, 1 for T5 (its query weights carry the scale).</summary>
    public double Scale { get; init; } = 1;
    /// <summary>Additive visibility mask (0 where a query may see a key, the most negative float elsewhere), or null.</summary>
    public Tensor? Mask { get; init; }
    /// <summary><see cref="Mask"/> is exactly the causal mask over Tq = Tk positions (fused kernels may skip it and mask by position).</summary>
    public bool MaskIsCausal { get; init; }
    /// <summary>
    /// Causal attention (a language model, a decoder's self attention): query i sits at key position Tk − Tq + i and
    /// sees keys up to it, with or without a cache or padding. <see cref="Mask"/> already says so for kernels that form
    /// scores; kernels that never do (linear, Performer, FLASH) read it here.
    /// </summary>
    public bool Causal { get; init; }
    /// <summary>Additive score bias from the position scheme (T5's bucketed relative bias), added after scaling, or null.</summary>
    public Tensor? PositionBias { get; init; }
    /// <summary>NEZHA-style relative key table (Tq, Tk, dk): scores get q·rᵀ before scaling; null for none.</summary>
    public Tensor? RelativeKeys { get; init; }
    /// <summary>NEZHA-style relative value table (Tq, Tk, dv): outputs get Σ w·r; null for none.</summary>
    public Tensor? RelativeValues { get; init; }
    /// <summary>RealFormer: the previous layer's pre-softmax scores, added to these ones.</summary>
    public Tensor? PreviousScores { get; init; }
    /// <summary>Keep the pre-softmax scores (with <see cref="PreviousScores"/> added) in <see cref="Scores"/>.</summary>
    public bool KeepScores { get; init; }
    /// <summary>Dropout on the weights (0 outside training).</summary>
    public double Dropout { get; init; }
    /// <summary>Set by the kernel when <see cref="KeepScores"/>: the pre-softmax scores (B, h, Tq, Tk).</summary>
    public Tensor? Scores { get; set; }

    /// <summary>Number of keys each query may see (…, Tq, 1), from the mask (all keys without one).</summary>
    public static Tensor VisibleKeys(Tensor scores, Tensor? mask) => mask is null
        ? torch.full([1, 1, 1, 1], (double)scores.shape[^1], dtype: scores.dtype, device: scores.device)
        : (mask == 0).to(scores.dtype).sum(-1, keepdim: true);
}

/// <summary>
/// The seam where scores become mixed values (bert4keras <c>pay_attention_to</c>, x-transformers <c>Attend</c>):
/// projections and positions stay in <see cref="MultiHeadAttention"/> and <see cref="GatedAttentionUnit"/>; a new
/// kernel (linear, Performer, Nyström, …) implements this interface and nothing else changes.
/// </summary>
public interface IAttentionKernel
{
    /// <summary>Name used in configs, docs and errors.</summary>
    string Name { get; }

    /// <summary>The attention output (B, h, Tq, dv) of one call.</summary>
    Tensor Attend(AttentionCall call);
}

/// <summary>
/// Kernels that form explicit scores (B, h, Tq, Tk) and normalise them: they differ only in
/// <see cref="Weights"/>. Scores are <c>(q·kᵀ + q·Rₖᵀ)·scale + position bias + previous scores</c>; the output is
/// <c>w·v + w·Rᵥ</c>.
/// </summary>
public abstract class ScoreKernel : IAttentionKernel
{
    /// <inheritdoc/>
    public abstract string Name { get; }

    /// <summary>Weights (…, Tq, Tk) from scores and the additive visibility mask.</summary>
    public abstract Tensor Weights(Tensor scores, Tensor? mask);

    /// <inheritdoc/>
    public virtual Tensor Attend(AttentionCall c)
    {
        using var scope = torch.NewDisposeScope();
        // Scores and their normalisation in fp32 whatever the compute type (docs/training.md, "Mixed precision"): a
        // 16-bit softmax loses the small weights, and fp16 scores plus the mask's −65,504 overflow to −∞.
        var s = PrecisionPolicy.Widen(c.Query.matmul(c.Key.transpose(-1, -2)));            // (B, h, Tq, Tk)
        if (c.RelativeKeys is { } rk) s = s + torch.einsum("bhjd,jkd->bhjk", c.Query, rk);
        if (c.Scale != 1) s = s * c.Scale;
        if (c.PositionBias is { } pb) s = s + pb;
        if (c.PreviousScores is { } prev) s = s + prev;
        if (c.KeepScores) c.Scores = s.MoveToOuterDisposeScope();
        var w = Weights(s, c.Mask);
        if (c.Dropout > 0) w = nn.functional.dropout(w, c.Dropout, true);
        w = w.to(c.Value.dtype);
        var o = w.matmul(c.Value);                                                         // (B, h, Tq, dv)
        if (c.RelativeValues is { } rv) o = o + torch.einsum("bhjk,jkd->bhjd", w, rv);
        return o.MoveToOuterDisposeScope();
    }
}

/// <summary>softmax(scores + mask); runs PyTorch's fused scaled-dot-product kernel whenever nothing needs the scores.</summary>
public sealed class SoftmaxKernel : ScoreKernel
{
    /// <inheritdoc/>
    public override string Name => "softmax";

    /// <inheritdoc/>
    public override Tensor Weights(Tensor scores, Tensor? mask) => (mask is null ? scores : scores + mask).softmax(-1);

    /// <inheritdoc/>
    public override Tensor Attend(AttentionCall c)
    {
        // The fused kernel scales by 1/√dk itself (TorchSharp 0.107 takes no other scale): any other scale, and
        // everything that needs the scores, takes the explicit path.
        bool defaultScale = Math.Abs(c.Scale * Math.Sqrt(c.Query.shape[^1]) - 1) < 1e-12;
        if (!defaultScale || c.KeepScores || c.PreviousScores is not null || c.RelativeKeys is not null || c.RelativeValues is not null) return base.Attend(c);
        using var scope = torch.NewDisposeScope();
        // A plain causal mask goes to the fused kernel as is_causal (it skips the masked half; measured 10-15 % of a
        // small GPT-2's training step), anything else as an additive bias.
        if (c.MaskIsCausal && c.PositionBias is null)
            return nn.functional.scaled_dot_product_attention(c.Query, c.Key, c.Value, null, c.Dropout, true).MoveToOuterDisposeScope();
        var bias = c.PositionBias is null ? c.Mask : c.Mask is null ? c.PositionBias : c.PositionBias + c.Mask;
        return nn.functional.scaled_dot_product_attention(c.Query, c.Key, c.Value, bias, c.Dropout, false).MoveToOuterDisposeScope();
    }
}

/// <summary>relu(scores)² / n with n the number of visible keys (FLASH, Hua et al., arXiv:2202.10447).</summary>
public sealed class SquaredReluKernel : ScoreKernel
{
    /// <inheritdoc/>
    public override string Name => "squared_relu";

    /// <inheritdoc/>
    public override Tensor Weights(Tensor scores, Tensor? mask)
    {
        using var scope = torch.NewDisposeScope();
        var a = mask is null ? scores : scores + mask;
        return (nn.functional.relu(a).square() / AttentionCall.VisibleKeys(scores, mask)).MoveToOuterDisposeScope();
    }
}

/// <summary>
/// softmax(scores · log n / log 512), n = max(visible keys, 16): the entropy-invariant softmax of GAU-α
/// (kexue.fm/archives/8823), so attention stays as sharp at any length as at the training length 512.
/// </summary>
public sealed class SoftmaxPlusKernel : ScoreKernel
{
    /// <inheritdoc/>
    public override string Name => "softmax_plus";

    /// <inheritdoc/>
    public override Tensor Weights(Tensor scores, Tensor? mask)
    {
        using var scope = torch.NewDisposeScope();
        var a = mask is null ? scores : scores + mask;
        var n = AttentionCall.VisibleKeys(scores, mask);
        return (a * (n.clamp_min(16).log() / Math.Log(512))).softmax(-1).MoveToOuterDisposeScope();
    }
}

/// <summary>The built-in kernels.</summary>
public static class AttentionKernels
{
    /// <summary>Softmax (fused SDPA when possible).</summary>
    public static readonly IAttentionKernel Softmax = new SoftmaxKernel();
    /// <summary>Squared ReLU over visible keys.</summary>
    public static readonly IAttentionKernel SquaredRelu = new SquaredReluKernel();
    /// <summary>GAU-α's length-aware softmax.</summary>
    public static readonly IAttentionKernel SoftmaxPlus = new SoftmaxPlusKernel();
    /// <summary>Linear attention, φ = elu + 1.</summary>
    public static readonly IAttentionKernel Linear = new LinearKernel();
}
