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
public sealed record EncoderLayerOptions(AttentionOptions Attention, int IntermediateSize, string Activation, NormKind Norm, double Eps,
    bool UseBias = true, double Dropout = 0, bool GatedFeedForward = false);

/// <summary>
/// One post-norm Transformer block, BERT's: <c>x = norm(x + attention(x))</c>, <c>x = norm(x + ffn(x))</c>.
/// Parameters <c>attention</c>, <c>attention_norm</c>, <c>ffn</c>, <c>ffn_norm</c>.
/// </summary>
public sealed class EncoderLayer : nn.Module<Tensor, Tensor?, Tensor>
{
    readonly double dropout;
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
        attention = new MultiHeadAttention(o.Attention);
        attention_norm = new Norm(o.Attention.HiddenSize, o.Norm, o.Eps);
        ffn = new FeedForward(o.Attention.HiddenSize, o.IntermediateSize, o.Activation, o.UseBias, o.GatedFeedForward);
        ffn_norm = new Norm(o.Attention.HiddenSize, o.Norm, o.Eps);
        RegisterComponents();
    }

    /// <summary>The block with RealFormer residual attention scores (see <see cref="MultiHeadAttention.ForwardResidual"/>).</summary>
    public Tensor ForwardResidual(Tensor x, Tensor? mask, Tensor? previousScores, out Tensor scores)
    {
        using var scope = torch.NewDisposeScope();
        var a = attention.ForwardResidual(x, mask, previousScores, out scores);
        scores.MoveToOuterDisposeScope();
        if (training && dropout > 0) a = nn.functional.dropout(a, dropout, true);
        x = attention_norm.forward(x + a);
        var f = ffn.forward(x);
        if (training && dropout > 0) f = nn.functional.dropout(f, dropout, true);
        return ffn_norm.forward(x + f).MoveToOuterDisposeScope();
    }

    /// <inheritdoc/>
    public override Tensor forward(Tensor x, Tensor? mask)
    {
        using var scope = torch.NewDisposeScope();
        var a = attention.forward(x, mask);
        if (training && dropout > 0) a = nn.functional.dropout(a, dropout, true);
        x = attention_norm.forward(x + a);
        var f = ffn.forward(x);
        if (training && dropout > 0) f = nn.functional.dropout(f, dropout, true);
        return ffn_norm.forward(x + f).MoveToOuterDisposeScope();
    }
}
