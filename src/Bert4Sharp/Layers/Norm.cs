namespace Bert4Sharp.Layers;

using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

/// <summary>Normalisation variants (x-transformers style: one option, one small module).</summary>
public enum NormKind
{
    /// <summary>LayerNorm with gain and bias (BERT, ALBERT, ELECTRA, RoFormer).</summary>
    LayerNorm,
    /// <summary>Parameter-free RMS scaling, x / sqrt(mean(x²) + ε) (bert4keras <c>LayerNormalization(zero_mean=False, scale=False, offset=False)</c>, RoFormerV2).</summary>
    ScaleFree,
    /// <summary>RMSNorm with a gain (T5).</summary>
    Rms,
}

/// <summary>A normalisation layer over the last dimension; parameters are named <c>weight</c> and <c>bias</c> as in Hugging Face.</summary>
public sealed class Norm : nn.Module<Tensor, Tensor>
{
    readonly NormKind kind;
    readonly long[] shape;
    readonly double eps;
#pragma warning disable IDE0044 // TorchSharp registers these fields by name
    Parameter? weight;
    Parameter? bias;
#pragma warning restore IDE0044

    /// <summary>Creates a norm over <paramref name="dim"/> features.</summary>
    public Norm(long dim, NormKind kind, double eps, string name = "norm") : base(name)
    {
        this.kind = kind;
        this.eps = eps;
        shape = [dim];
        if (kind != NormKind.ScaleFree) weight = new Parameter(torch.ones(dim));
        if (kind == NormKind.LayerNorm) bias = new Parameter(torch.zeros(dim));
        RegisterComponents();
    }

    /// <inheritdoc/>
    public override Tensor forward(Tensor x)
    {
        if (kind == NormKind.LayerNorm) return nn.functional.layer_norm(x, shape, weight!, bias!, eps);
        using var scope = torch.NewDisposeScope();
        var y = x * (x.square().mean([-1L], keepdim: true) + eps).rsqrt();
        if (weight is not null) y = y * weight;
        return y.MoveToOuterDisposeScope();
    }
}
