namespace Bert4Sharp.Layers;

using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

/// <summary>How attention scores become weights.</summary>
public enum AttentionKernel
{
    /// <summary>Standard softmax.</summary>
    Softmax,
    /// <summary>relu(a)² / n, n = number of real keys (FLASH, arXiv:2202.10447).</summary>
    SquaredRelu,
    /// <summary>softmax(a · log n / log 512), n = max(real keys, 16): entropy-invariant softmax (kexue.fm/archives/8823), GAU-α.</summary>
    SoftmaxPlus,
}

/// <summary>Options of <see cref="GatedAttentionUnit"/>.</summary>
/// <param name="HiddenSize">Input and output width.</param>
/// <param name="Units">Width of the gate u and values v (the intermediate size).</param>
/// <param name="KeySize">Width of the shared query/key projection.</param>
/// <param name="Activation">Activation on the input projection (swish in GAU-α).</param>
/// <param name="Kernel">Score normalisation.</param>
/// <param name="UseBias">Biases (false in GAU-α).</param>
/// <param name="Rotary">Rotary positions on q and k.</param>
/// <param name="Dropout">Dropout on attention weights (training only).</param>
public sealed record GauOptions(int HiddenSize, int Units, int KeySize, string Activation = "swish", AttentionKernel Kernel = AttentionKernel.SoftmaxPlus,
    bool UseBias = false, bool Rotary = true, double Dropout = 0);

/// <summary>
/// Gated attention unit (Hua et al., "Transformer Quality in Linear Time"; bert4keras
/// <c>GatedAttentionUnit</c>; kexue.fm/archives/8934): one projection gives u, v and a shared qk; q and k are
/// qk scaled per dimension; out = o(u ⊙ (A·v)). Single head. Parameters <c>i_dense</c>, <c>o_dense</c>,
/// <c>q_gamma</c>, <c>k_gamma</c> (and betas with biases).
/// </summary>
public sealed class GatedAttentionUnit : nn.Module<Tensor, Tensor?, Tensor>
{
    readonly GauOptions options;
#pragma warning disable IDE0044
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

    /// <summary>Applies the unit to (B, T, H); <paramref name="mask"/> is additive (B, 1, 1, T) as elsewhere.</summary>
    public override Tensor forward(Tensor x, Tensor? mask)
    {
        using var scope = torch.NewDisposeScope();
        long t = x.shape[1];
        var h = Activations.Apply(options.Activation, Dense.Apply(i_dense, x));           // (B, T, 2U + S)
        var parts = h.split([options.Units, options.Units, options.KeySize], -1);
        Tensor u = parts[0], v = parts[1], qk = parts[2];
        var q = qk * q_gamma;
        var k = qk * k_gamma;
        if (q_beta is not null) { q = q + q_beta; k = k + k_beta!; }
        if (options.Rotary)
        {
            var (sin, cos) = RotaryEmbedding.Tables(t, options.KeySize, x.device, x.dtype);
            q = RotaryEmbedding.Apply(q, sin, cos);
            k = RotaryEmbedding.Apply(k, sin, cos);
        }
        var a = q.matmul(k.transpose(-1, -2)) / Math.Sqrt(options.KeySize);                // (B, T, T)
        var bias = mask?.squeeze(1);                                                      // (B, 1, T)
        if (bias is not null) a = a + bias;
        // Number of real keys per row (for the length-aware kernels).
        var n = bias is null ? torch.full([1, 1, 1], (double)t, dtype: x.dtype, device: x.device) : (bias == 0).to(x.dtype).sum(-1, keepdim: true);
        var weights = options.Kernel switch
        {
            AttentionKernel.Softmax => a.softmax(-1),
            AttentionKernel.SquaredRelu => nn.functional.relu(a).square() / n,
            _ => (a * (n.clamp_min(16).log() / Math.Log(512))).softmax(-1),
        };
        if (training && options.Dropout > 0) weights = nn.functional.dropout(weights, options.Dropout, true);
        return Dense.Apply(o_dense, u * weights.matmul(v)).MoveToOuterDisposeScope();
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
        using var scope = torch.NewDisposeScope();
        var y = gau.forward(x, mask);
        if (training && dropout > 0) y = nn.functional.dropout(y, dropout, true);
        return norm.forward(x + y).MoveToOuterDisposeScope();
    }
}
