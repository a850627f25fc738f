namespace Bert4Sharp.Layers;

using TorchSharp;
using static TorchSharp.torch;

/// <summary>Options of <see cref="TransformerBlock"/>.</summary>
/// <param name="Attention">Self-attention options.</param>
/// <param name="IntermediateSize">Feed-forward inner width.</param>
/// <param name="Activation">Feed-forward activation.</param>
/// <param name="Norm">Norm kind.</param>
/// <param name="Eps">Norm epsilon.</param>
/// <param name="UseBias">Feed-forward biases.</param>
/// <param name="Dropout">Dropout on sub-layer outputs (training only).</param>
/// <param name="GatedFeedForward">GLU feed-forward (act(x·A) ⊙ x·B).</param>
/// <param name="Condition">Conditional LayerNorm (every norm of the block), or null.</param>
/// <param name="Placement">Where the norms sit.</param>
/// <param name="CrossAttention">A decoder block: cross attention to the encoder memory between self attention and the feed-forward.</param>
/// <param name="ResidualScale">
/// Post-norm only: α in <c>x = norm(α·x + f(x))</c>. DeepNorm (Wang et al., "DeepNet: Scaling Transformers to 1,000
/// Layers") sets α = (2N)^¼ for an N-layer encoder and scales the initial value/output/feed-forward weights by β = (8N)^−¼.
/// </param>
public sealed record BlockOptions(AttentionOptions Attention, int IntermediateSize, string Activation, NormKind Norm, double Eps,
    bool UseBias = true, double Dropout = 0, bool GatedFeedForward = false, ConditionOptions? Condition = null,
    NormPlacement Placement = NormPlacement.Post, bool CrossAttention = false, double ResidualScale = 1);

/// <summary>Where a block's norms sit.</summary>
public enum NormPlacement
{
    /// <summary>BERT: <c>x = norm₁(x + attention(x))</c>, <c>x = norm₂(x + ffn(x))</c>.</summary>
    Post,
    /// <summary>GPT-2, T5: <c>x = x + attention(norm₁(x))</c>, <c>x = x + ffn(norm₂(x))</c>; the model ends with a final norm.</summary>
    Pre,
    /// <summary>
    /// GPT2-ML (bert4keras <c>gpt2_ml</c>): <c>y = x + attention(x)</c>, <c>x = norm₂(y + ffn(norm₁(y)))</c>: the
    /// attention residual has no norm, the feed-forward reads a normed copy and the sum is normed again.
    /// </summary>
    AroundFeedForward,
}

/// <summary>
/// The one Transformer block: self attention (+ cross attention in a decoder) and a feed-forward, each a
/// residual branch, with the norms placed by <see cref="NormPlacement"/>. Parameters <c>attention</c>,
/// <c>attention_norm</c>, <c>cross_attention</c>, <c>cross_attention_norm</c>, <c>ffn</c>, <c>ffn_norm</c>.
/// </summary>
public sealed class TransformerBlock : nn.Module<Tensor, Tensor?, Tensor>
{
    readonly double dropout;
    readonly NormPlacement placement;
    readonly double residualScale;
#pragma warning disable IDE0044
    MultiHeadAttention attention;
    Norm attention_norm;
    MultiHeadAttention? cross_attention;
    Norm? cross_attention_norm;
    FeedForward ffn;
    Norm ffn_norm;
#pragma warning restore IDE0044

    /// <summary>Creates the block.</summary>
    public TransformerBlock(BlockOptions o, string name = "block") : base(name)
    {
        if (o.CrossAttention && o.Placement != NormPlacement.Pre) throw new ArgumentException("decoder blocks with cross attention are pre-norm");
        if (o.ResidualScale != 1 && o.Placement != NormPlacement.Post) throw new ArgumentException($"a residual scale (DeepNorm α) belongs to post-norm blocks, not {o.Placement}");
        if (!(o.ResidualScale > 0)) throw new ArgumentException($"the residual scale must be positive, got {o.ResidualScale}");
        residualScale = o.ResidualScale;
        dropout = o.Dropout;
        placement = o.Placement;
        int hidden = o.Attention.HiddenSize;
        attention = new MultiHeadAttention(o.Attention);
        attention_norm = new Norm(hidden, o.Norm, o.Eps, o.Condition);
        if (o.CrossAttention)
        {
            // Cross attention stays softmax: the research kernels (config attention_kernel) are about self attention.
            cross_attention = new MultiHeadAttention(o.Attention with { Cross = true, Position = AttentionPosition.None, Kernel = null, KernelName = null }, "cross_attention");
            cross_attention_norm = new Norm(hidden, o.Norm, o.Eps, o.Condition);
        }
        ffn = new FeedForward(hidden, o.IntermediateSize, o.Activation, o.UseBias, o.GatedFeedForward);
        ffn_norm = new Norm(hidden, o.Norm, o.Eps, o.Condition);
        RegisterComponents();
    }

    /// <summary>The block alone on (B, T, H) with an additive mask (positions from 0).</summary>
    public override Tensor forward(Tensor x, Tensor? mask)
    {
        var ctx = AttentionContext.For(x, mask);
        using var positions = ctx.Positions;
        return Forward(x, ctx, 0);
    }

    /// <summary>The block as layer <paramref name="layer"/> of a model (the layer picks its cache slot).</summary>
    public Tensor Forward(Tensor x, AttentionContext ctx, int layer)
    {
        using var scope = torch.NewDisposeScope();
        var c = ctx.Condition;
        switch (placement)
        {
            case NormPlacement.Pre:
                x = x + Drop(attention.Forward(attention_norm.Forward(x, c), ctx, layer));
                if (cross_attention is not null) x = x + Drop(cross_attention.Forward(cross_attention_norm!.Forward(x, c), ctx, layer));
                x = x + Drop(ffn.forward(ffn_norm.Forward(x, c)));
                break;
            case NormPlacement.AroundFeedForward:
                x = x + Drop(attention.Forward(x, ctx, layer));
                x = ffn_norm.Forward(x + Drop(ffn.forward(attention_norm.Forward(x, c))), c);
                break;
            default:                                                                      // post-norm; DeepNorm: α·x
                x = attention_norm.Forward(Residual(x) + Drop(attention.Forward(x, ctx, layer)), c);
                x = ffn_norm.Forward(Residual(x) + Drop(ffn.forward(x)), c);
                break;
        }
        if (ctx.ResidualScores) ctx.Scores?.MoveToOuterDisposeScope();                 // RealFormer's scores live as long as the model's forward
        return x.MoveToOuterDisposeScope();
    }

    Tensor Residual(Tensor x) => residualScale == 1 ? x : x * residualScale;

    Tensor Drop(Tensor x) => training && dropout > 0 ? nn.functional.dropout(x, dropout, true) : x;
}
