namespace Bert4Sharp.Layers;

using Bert4Sharp.Runtime;
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

/// <summary>The condition of a conditional LayerNorm.</summary>
/// <param name="Size">Width of the condition vector.</param>
/// <param name="HiddenUnits">Optional dense layer applied to the condition first.</param>
/// <param name="HiddenActivation">Its activation.</param>
public sealed record ConditionOptions(int Size, int? HiddenUnits = null, string HiddenActivation = "linear");

/// <summary>A normalisation layer over the last dimension; parameters are named <c>weight</c> and <c>bias</c> as in Hugging Face.</summary>
public sealed class Norm : nn.Module<Tensor, Tensor>
{
    readonly NormKind kind;
    readonly long[] shape;
    readonly double eps;
#pragma warning disable IDE0044 // TorchSharp registers these fields by name
    Parameter? weight;
    Parameter? bias;
    Linear? condition_hidden;
    Linear? condition_weight;
    Linear? condition_bias;
#pragma warning restore IDE0044
    readonly string conditionActivation = "linear";

    /// <summary>Creates a norm over <paramref name="dim"/> features.</summary>
    public Norm(long dim, NormKind kind, double eps, string name = "norm") : this(dim, kind, eps, null, name) { }

    /// <summary>
    /// Creates a norm whose gain and bias are shifted by a condition vector (conditional LayerNorm, bert4keras
    /// <c>layer_norm_cond</c>, kexue.fm/archives/7124): γ + c·W_γ, β + c·W_β with W initialised to zero, so a
    /// fresh conditional norm equals the unconditional one; <c>c</c> optionally passes a dense layer first.
    /// </summary>
    public Norm(long dim, NormKind kind, double eps, ConditionOptions? condition, string name = "norm") : base(name)
    {
        this.kind = kind;
        this.eps = eps;
        shape = [dim];
        if (kind != NormKind.ScaleFree) weight = new Parameter(torch.ones(dim));
        if (kind == NormKind.LayerNorm) bias = new Parameter(torch.zeros(dim));
        if (condition is not null)
        {
            if (kind == NormKind.ScaleFree) throw new ArgumentException("a parameter-free norm has no gain or bias to condition");
            long c = condition.Size;
            if (condition.HiddenUnits is int hu)
            {
                condition_hidden = nn.Linear(c, hu);
                conditionActivation = condition.HiddenActivation;
                Activations.Check(conditionActivation);
                c = hu;
            }
            condition_weight = nn.Linear(c, dim, hasBias: false);
            using (torch.no_grad()) condition_weight.weight!.zero_();
            if (bias is not null)
            {
                condition_bias = nn.Linear(c, dim, hasBias: false);
                using (torch.no_grad()) condition_bias.weight!.zero_();
            }
        }
        RegisterComponents();
    }

    /// <summary>Normalises <paramref name="x"/> (B, T, D), conditioned on <paramref name="condition"/> (B, C) when the norm is conditional.</summary>
    /// <exception cref="ArgumentException">A condition was given to an unconditional norm or vice versa.</exception>
    public Tensor Forward(Tensor x, Tensor? condition)
    {
        if (condition_weight is null)
        {
            if (condition is not null) throw new ArgumentException("this model was not built with a condition (BuildOptions.Condition)");
            return forward(x);
        }
        if (condition is null) throw new ArgumentException("this model was built for conditional LayerNorm: pass a condition (B, C)");
        using var scope = torch.NewDisposeScope();
        var c = condition.unsqueeze(1).to(x.dtype);                                       // (B, 1, C)
        if (condition_hidden is not null) c = Activations.Apply(conditionActivation, Dense.Apply(condition_hidden, c));
        var wide = PrecisionPolicy.Widen(x);
        var y = kind == NormKind.LayerNorm ? nn.functional.layer_norm(wide, shape, null, null, eps) : wide * (wide.square().mean([-1L], keepdim: true) + eps).rsqrt();
        y = y * PrecisionPolicy.Widen(weight! + Dense.Apply(condition_weight, c));
        if (bias is not null) y = y + PrecisionPolicy.Widen(bias + Dense.Apply(condition_bias!, c));
        return y.to(x.dtype).MoveToOuterDisposeScope();
    }

    /// <inheritdoc/>
    public override Tensor forward(Tensor x)
    {
        if (kind == NormKind.LayerNorm && !PrecisionPolicy.IsHalf(x.dtype)) return nn.functional.layer_norm(x, shape, weight!, bias!, eps);
        // 16-bit inputs are normalised in fp32 (the mean of squares is where bf16's 8-bit mantissa hurts) and rounded back.
        using var scope = torch.NewDisposeScope();
        var wide = PrecisionPolicy.Widen(x);
        Tensor y;
        if (kind == NormKind.LayerNorm)
            y = nn.functional.layer_norm(wide, shape, PrecisionPolicy.Widen(weight!), PrecisionPolicy.Widen(bias!), eps);
        else
        {
            y = wide * (wide.square().mean([-1L], keepdim: true) + eps).rsqrt();
            if (weight is not null) y = y * PrecisionPolicy.Widen(weight);
        }
        return y.to(x.dtype).MoveToOuterDisposeScope();
    }
}
