namespace Bert4Sharp.Layers;

using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

/// <summary>Options of <see cref="GatedAttentionUnit"/>.</summary>
/// <param name="HiddenSize">Input and output width.</param>
/// <param name="Units">Width of the gate u and values v (the intermediate size).</param>
/// <param name="KeySize">Width of the shared query/key projection.</param>
/// <param name="Activation">Activation on the input projection (swish in GAU-α).</param>
/// <param name="Kernel">Score normalisation; null = softmax_plus (GAU-α).</param>
/// <param name="UseBias">Biases (false in GAU-α).</param>
/// <param name="Rotary">Rotary positions on q and k.</param>
/// <param name="Dropout">Dropout on attention weights (training only).</param>
/// <param name="KernelName">A kernel made by <see cref="AttentionKernelFactory"/> (config <c>attention_kernel</c>), used when <paramref name="Kernel"/> is null.</param>
/// <param name="KernelOptions">Its settings.</param>
public sealed record GauOptions(int HiddenSize, int Units, int KeySize, string Activation = "swish", IAttentionKernel? Kernel = null,
    bool UseBias = false, bool Rotary = true, double Dropout = 0, string? KernelName = null, AttentionKernelOptions? KernelOptions = null);

/// <summary>
/// Gated attention unit (Hua et al., "Transformer Quality in Linear Time"; bert4keras
/// <c>GatedAttentionUnit</c>; kexue.fm/archives/8934): one projection gives u, v and a shared qk; q and k are
/// qk scaled per dimension; out = o(u ⊙ (A·v)). Single head. Parameters <c>i_dense</c>, <c>o_dense</c>,
/// <c>q_gamma</c>, <c>k_gamma</c> (and betas with biases).
/// </summary>
public sealed class GatedAttentionUnit : nn.Module
{
    readonly GauOptions options;
#pragma warning disable IDE0044
    IAttentionKernel kernel;                                                                // a module kernel registers as "kernel"
    Linear i_dense;
    Linear o_dense;
    Parameter q_gamma;
    Parameter k_gamma;
    Parameter? q_beta;
    Parameter? k_beta;
#pragma warning restore IDE0044

    /// <summary>Creates the unit.</summary>
    public GatedAttentionUnit(GauOptions options, string name = "gau") : base(name)
    {
        Activations.Check(options.Activation);
        if (options.Rotary && options.KeySize % 2 != 0) throw new ArgumentException($"rotary positions need an even key size, got {options.KeySize}");
        this.options = options;
        kernel = options.Kernel ?? (options.KernelName is { } kn
            ? AttentionKernelFactory.Create(kn, options.KernelOptions, new KernelShape(1, options.KeySize, options.Units))
            : AttentionKernels.SoftmaxPlus);
        i_dense = nn.Linear(options.HiddenSize, 2 * options.Units + options.KeySize, hasBias: options.UseBias);
        o_dense = nn.Linear(options.Units, options.HiddenSize, hasBias: options.UseBias);
        q_gamma = new Parameter(torch.ones(options.KeySize));
        k_gamma = new Parameter(torch.ones(options.KeySize));
        if (options.UseBias)
        {
            q_beta = new Parameter(torch.zeros(options.KeySize));
            k_beta = new Parameter(torch.zeros(options.KeySize));
        }
        RegisterComponents();
    }

    /// <summary>Applies the unit to (B, T, H) with the positions and mask of <paramref name="ctx"/>.</summary>
    public Tensor Forward(Tensor x, AttentionContext ctx)
    {
        using var scope = torch.NewDisposeScope();
        var h = Activations.Apply(options.Activation, Dense.Apply(i_dense, x));           // (B, T, 2U + S)
        var parts = h.split([options.Units, options.Units, options.KeySize], -1);
        Tensor u = parts[0], v = parts[1], qk = parts[2];
        var q = qk * q_gamma;
        var k = qk * k_gamma;
        if (q_beta is not null) { q = q + q_beta; k = k + k_beta!; }
        if (options.Rotary)
        {
            var (sin, cos) = ctx.Positions.Rotary(options.KeySize);
            q = RotaryEmbedding.Apply(q, sin, cos);
            k = RotaryEmbedding.Apply(k, sin, cos);
        }
        // One head: (B, T, S) → (B, 1, T, S) for the kernel, whose masks are (B, 1, Tq, Tk).
        var call = new AttentionCall
        {
            Query = q.unsqueeze(1), Key = k.unsqueeze(1), Value = v.unsqueeze(1), Scale = 1.0 / Math.Sqrt(options.KeySize),
            Mask = ctx.Mask, Causal = ctx.Causal, Dropout = training ? options.Dropout : 0,
        };
        var mixed = kernel.Attend(call).squeeze(1);                                         // (B, T, U)
        return Dense.Apply(o_dense, u * mixed).MoveToOuterDisposeScope();
    }
}

/// <summary>A GAU block, post-norm: <c>x = norm(x + gau(x))</c>. Parameters <c>gau</c>, <c>norm</c>.</summary>
public sealed class GauLayer : nn.Module<Tensor, Tensor?, Tensor>
{
    readonly double dropout;
#pragma warning disable IDE0044
    GatedAttentionUnit gau;
    Norm norm;
#pragma warning restore IDE0044

    /// <summary>Creates the block.</summary>
    public GauLayer(GauOptions options, NormKind normKind, double eps, double dropout, string name = "gau_layer") : base(name)
    {
        this.dropout = dropout;
        gau = new GatedAttentionUnit(options);
        norm = new Norm(options.HiddenSize, normKind, eps);
        RegisterComponents();
    }

    /// <inheritdoc/>
    public override Tensor forward(Tensor x, Tensor? mask)
    {
        var ctx = AttentionContext.For(x, mask);
        using var positions = ctx.Positions;
        return Forward(x, ctx);
    }

    /// <summary>The block with the model's context (positions computed once per forward).</summary>
    public Tensor Forward(Tensor x, AttentionContext ctx)
    {
        if (ctx.Condition is not null) throw new ArgumentException("GAU blocks take no condition");
        using var scope = torch.NewDisposeScope();
        var y = gau.Forward(x, ctx);
        if (training && dropout > 0) y = nn.functional.dropout(y, dropout, true);
        return norm.forward(x + y).MoveToOuterDisposeScope();
    }
}
