namespace Bert4Sharp.Layers;

using TorchSharp;
using static TorchSharp.torch;

/// <summary>Options of <see cref="EncoderLayer"/>.</summary>
/// <param name="Attention">Attention options.</param>
/// <param name="IntermediateSize">Feed-forward inner width.</param>
/// <param name="Activation">Feed-forward activation.</param>
/// <param name="Norm">Norm kind.</param>
/// <param name="Eps">Norm epsilon.</param>
/// <param name="UseBias">Feed-forward biases.</param>
/// <param name="Dropout">Dropout on sub-layer outputs (training only).</param>
/// <param name="GatedFeedForward">GLU feed-forward (act(x·A) ⊙ x·B).</param>
/// <param name="Condition">Conditional LayerNorm (both norms of the block), or null.</param>
/// <param name="Placement">Where the two norms sit.</param>
public sealed record EncoderLayerOptions(AttentionOptions Attention, int IntermediateSize, string Activation, NormKind Norm, double Eps,
    bool UseBias = true, double Dropout = 0, bool GatedFeedForward = false, ConditionOptions? Condition = null,
    NormPlacement Placement = NormPlacement.Post);

/// <summary>Where a block's two norms sit.</summary>
public enum NormPlacement
{
    /// <summary>BERT: <c>x = norm₁(x + attention(x))</c>, <c>x = norm₂(x + ffn(x))</c>.</summary>
    Post,
    /// <summary>
    /// GPT2-ML (bert4keras <c>gpt2_ml</c>): <c>y = x + attention(x)</c>, <c>x = norm₂(y + ffn(norm₁(y)))</c>: the
    /// attention residual has no norm, the feed-forward reads a normed copy and the sum is normed again.
    /// </summary>
    AroundFeedForward,
}

/// <summary>
/// One Transformer block with two norms, by default BERT's post-norm: <c>x = norm(x + attention(x))</c>,
/// <c>x = norm(x + ffn(x))</c> (<see cref="NormPlacement"/> for GPT2-ML's). Parameters <c>attention</c>,
/// <c>attention_norm</c>, <c>ffn</c>, <c>ffn_norm</c>.
/// </summary>
public sealed class EncoderLayer : nn.Module<Tensor, Tensor?, Tensor>
{
    readonly double dropout;
    readonly NormPlacement placement;
#pragma warning disable IDE0044
    MultiHeadAttention attention;
    Norm attention_norm;
    FeedForward ffn;
    Norm ffn_norm;
#pragma warning restore IDE0044

    /// <summary>Creates the block.</summary>
    public EncoderLayer(EncoderLayerOptions o, string name = "layer") : base(name)
    {
        dropout = o.Dropout;
        placement = o.Placement;
        attention = new MultiHeadAttention(o.Attention);
        attention_norm = new Norm(o.Attention.HiddenSize, o.Norm, o.Eps, o.Condition);
        ffn = new FeedForward(o.Attention.HiddenSize, o.IntermediateSize, o.Activation, o.UseBias, o.GatedFeedForward);
        ffn_norm = new Norm(o.Attention.HiddenSize, o.Norm, o.Eps, o.Condition);
        RegisterComponents();
    }

    /// <inheritdoc/>
    public override Tensor forward(Tensor x, Tensor? mask) => Forward(x, mask, null, null, out _, false);

    /// <summary>
    /// The block with the options that need more inputs: a condition (B, C) for conditional LayerNorm, and
    /// RealFormer residual scores (previous in, this block's out, when <paramref name="residual"/>).
    /// </summary>
    public Tensor Forward(Tensor x, Tensor? mask, Tensor? condition, Tensor? previousScores, out Tensor? scores, bool residual,
        Models.KeyValueCache? cache = null, int layer = 0)
    {
        using var scope = torch.NewDisposeScope();
        scores = null;
        Tensor a;
        if (cache is not null)
        {
            if (residual) throw new NotSupportedException("a key/value cache with residual attention scores is not supported");
            a = attention.ForwardCached(x, mask, cache, layer);
        }
        else if (residual)
        {
            a = attention.ForwardResidual(x, mask, previousScores, out var s);
            scores = s.MoveToOuterDisposeScope();
        }
        else a = attention.forward(x, mask);
        if (training && dropout > 0) a = nn.functional.dropout(a, dropout, true);
        Tensor f;
        if (placement == NormPlacement.AroundFeedForward)
        {
            x = x + a;
            f = ffn.forward(attention_norm.Forward(x, condition));
        }
        else
        {
            x = attention_norm.Forward(x + a, condition);
            f = ffn.forward(x);
        }
        if (training && dropout > 0) f = nn.functional.dropout(f, dropout, true);
        return ffn_norm.Forward(x + f, condition).MoveToOuterDisposeScope();
    }
}
