namespace Bert4Sharp.Layers;

using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

/// <summary>
/// Transformer-XL / XLNet relative positions of one layer (Dai et al. 2019, §3.3). The full score is
/// <c>qᵢ·kⱼ + qᵢ·W_R·R(i − j) + u·kⱼ + v·W_R·R(i − j)</c>, all times the layer's scale: content, content→position,
/// global content bias and global position bias. R is a fixed sinusoid of the distance
/// (<see cref="PositionContext.XlRelative"/>), W_R this layer's projection of it, u and v learned per head.
/// The last three terms depend on i and j only through the content and i − j, so they enter the kernel as a score
/// bias (<see cref="AttentionCall.PositionBias"/>). Parameters <c>proj</c> (h·dk, H) = W_R, <c>content_bias</c> (h, dk)
/// = u, <c>position_bias</c> (h, dk) = v.
/// </summary>
public sealed class XlRelativePosition : nn.Module
{
    readonly int heads, keySize, hidden;
#pragma warning disable IDE0044
    Linear proj;
    Parameter content_bias;
    Parameter position_bias;
#pragma warning restore IDE0044

    /// <summary>Creates the projection and the two bias vectors (zero; the family's initialisation draws them).</summary>
    public XlRelativePosition(int hidden, int heads, int keySize, string name = "relative") : base(name)
    {
        if (hidden % 2 != 0) throw new ArgumentException($"Transformer-XL positions need an even hidden size (the sinusoid's width), got {hidden}");
        (this.hidden, this.heads, this.keySize) = (hidden, heads, keySize);
        proj = nn.Linear(hidden, (long)heads * keySize, hasBias: false);
        content_bias = new Parameter(torch.zeros(heads, keySize));
        position_bias = new Parameter(torch.zeros(heads, keySize));
        RegisterComponents();
    }

    /// <summary>
    /// The score bias (B, h, Tq, Tk) for queries (B, h, Tq, dk) and keys (B, h, Tk, dk) (keys including any cached ones;
    /// queries at positions Past .. Past + Tq − 1), already times <paramref name="scale"/>.
    /// </summary>
    public Tensor Bias(Tensor query, Tensor key, PositionContext positions, double scale)
    {
        using var scope = torch.NewDisposeScope();
        long b = query.shape[0], tq = query.shape[2], tk = key.shape[2];
        var (table, index) = positions.XlRelative(hidden);                                   // (L, H), (Tq, Tk); L = Tq + Tk − 1
        var r = Dense.Apply(proj, table.to(query.dtype)).view(-1, heads, keySize).transpose(0, 1);   // (h, L, dk): W_R·R for every distance
        var v = position_bias.to(query.dtype).view(1, heads, 1, keySize);
        var u = content_bias.to(key.dtype).view(heads, keySize, 1);
        var byDistance = (query + v).matmul(r.transpose(-1, -2));                            // (B, h, Tq, L): (qᵢ + v)·W_R·R(r)
        var positional = byDistance.gather(-1, index.expand(b, heads, tq, tk));              // (B, h, Tq, Tk): r = i − j
        var content = key.matmul(u).transpose(-1, -2);                                        // (B, h, 1, Tk): u·kⱼ
        return ((positional + content) * scale).MoveToOuterDisposeScope();
    }
}

/// <summary>
/// DeBERTa's disentangled attention terms (He et al. 2021, eq. 4; DeBERTa-v2's <c>share_att_key</c>: the relative
/// embeddings are projected by the layer's own query and key weights).
/// </summary>
public static class DisentangledAttention
{
    /// <summary>
    /// The score bias (B, h, Tq, Tk) = (qᵢ·K_r[δ(i, j)] + kⱼ·Q_r[δ(i, j)])·scale: content→position and position→content.
    /// <paramref name="query"/> (B, h, Tq, dk), <paramref name="key"/> (B, h, Tk, dk), projected relative embeddings
    /// <paramref name="relativeQuery"/> and <paramref name="relativeKey"/> (h, 2k, dk), <paramref name="index"/> δ (Tq, Tk).
    /// </summary>
    public static Tensor Bias(Tensor query, Tensor key, Tensor relativeQuery, Tensor relativeKey, Tensor index, double scale)
    {
        using var scope = torch.NewDisposeScope();
        long b = query.shape[0], h = query.shape[1], tq = query.shape[2], tk = key.shape[2];
        var c2p = query.matmul(relativeKey.transpose(-1, -2)).gather(-1, index.expand(b, h, tq, tk));            // (B, h, Tq, 2k) → (B, h, Tq, Tk)
        var p2c = key.matmul(relativeQuery.transpose(-1, -2)).gather(-1, index.t().expand(b, h, tk, tq));        // (B, h, Tk, 2k) → (B, h, Tk, Tq)
        return ((c2p + p2c.transpose(-1, -2)) * scale).MoveToOuterDisposeScope();
    }
}
