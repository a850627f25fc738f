namespace Bert4Sharp.Layers;

using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

/// <summary>
/// Synthesizer (Tay et al., "Rethinking Self-Attention in Transformer Models"; kexue.fm/archives/7430): attention
/// weights synthesised without query–key interaction, softmax(Σᵢ αᵢ·Sᵢ + mask)·v over the parts
/// <list type="bullet">
/// <item><c>random</c>: a learned matrix R (h, ℓ, ℓ), the same for every input;</item>
/// <item><c>factorized</c>: R = R₁R₂ᵀ with R₁, R₂ (h, ℓ, r);</item>
/// <item><c>dense</c>: per position, relu(q·W₁ + b₁)·W₂ + b₂ with W₁ (h, dk, dk), W₂ (h, dk, ℓ): the paper's two-layer
/// network of the token, whose first layer here follows the head's query projection;</item>
/// <item><c>softmax</c>: the usual scaled q·kᵀ.</item>
/// </list>
/// One part: α = 1 and fixed; a mixture learns one logit per part, α = softmax(logits) so the weights sum to 1 as the
/// paper asks (all equal at the start). Query i sits at position
/// Tk − Tq + i, so a cache works. ℓ bounds the sequence length. Parameters <c>random</c>, <c>left</c>, <c>right</c>,
/// <c>dense1</c>, <c>dense1_bias</c>, <c>dense2</c>, <c>dense2_bias</c>, <c>mix</c> as the parts need.
/// </summary>
public sealed class SynthesizerKernel : nn.Module, IAttentionKernel
{
    /// <summary>The parts a Synthesizer can mix.</summary>
    public static readonly IReadOnlyList<string> Parts = ["random", "factorized", "dense", "softmax"];

    readonly string[] parts;
    readonly int maxLength;
#pragma warning disable IDE0044
    Parameter? random;
    Parameter? left;
    Parameter? right;
    Parameter? dense1;
    Parameter? dense1_bias;
    Parameter? dense2;
    Parameter? dense2_bias;
    Parameter? mix;
#pragma warning restore IDE0044

    /// <summary>A kernel for heads of <paramref name="shape"/> mixing <paramref name="parts"/>.</summary>
    public SynthesizerKernel(KernelShape shape, AttentionKernelOptions o, IReadOnlyList<string> parts) : base("kernel")
    {
        if (parts.Count == 0 || parts.Distinct().Count() != parts.Count || parts.Any(p => !Parts.Contains(p)))
            throw new ArgumentException($"synthesizer parts must be distinct names from {string.Join(", ", Parts)}, got [{string.Join(", ", parts)}]");
        this.parts = [.. parts];
        maxLength = o.MaxLength;
        int h = shape.Heads, l = o.MaxLength, dk = shape.KeySize;
        var g = o.Seed is long s ? new Generator((ulong)s) : null;
        // Initial scales: random logits of order 1 / √ℓ (nearly uniform weights at the start), dense layers as nn.Linear (U(±1/√fan_in)).
        Tensor Uniform(long[] shape, double bound) => (torch.rand(shape, generator: g) * 2 - 1) * bound;
        if (parts.Contains("random")) random = new Parameter(torch.randn([h, l, l], generator: g) / Math.Sqrt(l));
        if (parts.Contains("factorized"))
        {
            left = new Parameter(torch.randn([h, l, o.Rank], generator: g) / Math.Sqrt(Math.Sqrt(l * (double)o.Rank)));
            right = new Parameter(torch.randn([h, l, o.Rank], generator: g) / Math.Sqrt(Math.Sqrt(l * (double)o.Rank)));
        }
        if (parts.Contains("dense"))
        {
            dense1 = new Parameter(Uniform([h, dk, dk], 1 / Math.Sqrt(dk)));
            dense1_bias = new Parameter(Uniform([h, 1, dk], 1 / Math.Sqrt(dk)));
            dense2 = new Parameter(Uniform([h, dk, l], 1 / Math.Sqrt(dk)));
            dense2_bias = new Parameter(Uniform([h, 1, l], 1 / Math.Sqrt(dk)));
        }
        if (parts.Count > 1) mix = new Parameter(torch.zeros(parts.Count));
        RegisterComponents();
    }

    /// <inheritdoc/>
    public string Name => parts.Length == 1 ? "synthesizer_" + parts[0] : "synthesizer_mixture";

    /// <summary>Mixture logits (one per part; the weights are their softmax), or null for a single part.</summary>
    public Tensor? Mix => mix;

    /// <inheritdoc/>
    public Tensor Attend(AttentionCall c)
    {
        using var scope = torch.NewDisposeScope();
        long tq = c.Query.shape[2], tk = c.Key.shape[2];
        if (tk > maxLength) throw new ArgumentException($"{Name}: {tk} positions, but the synthesizer's matrices have max_length {maxLength}; raise attention_kernel_options.max_length");
        if (c.RelativeKeys is not null || c.RelativeValues is not null) throw new NotSupportedException($"{Name} takes no NEZHA relative positions");
        long offset = tk - tq;                                                               // query i sits at position offset + i
        Tensor? logits = null;
        var alpha = mix?.softmax(0);
        for (int i = 0; i < parts.Length; i++)
        {
            var part = parts[i] switch
            {
                "random" => random!.narrow(1, offset, tq).narrow(2, 0, tk).unsqueeze(0),                       // (1, h, Tq, Tk)
                "factorized" => left!.narrow(1, offset, tq).matmul(right!.narrow(1, 0, tk).transpose(-1, -2)).unsqueeze(0),
                "dense" => nn.functional.relu(c.Query.matmul(dense1!) + dense1_bias!).matmul(dense2!.narrow(2, 0, tk)) + dense2_bias!.narrow(2, 0, tk),   // (B, h, Tq, Tk)
                _ => c.Query.matmul(c.Key.transpose(-1, -2)) * c.Scale,
            };
            var weighted = alpha is null ? part : part * alpha[i];
            logits = logits is null ? weighted : logits + weighted;
        }
        var s = Runtime.PrecisionPolicy.Widen(logits!);
        if (c.PositionBias is { } pb) s = s + pb;
        if (c.PreviousScores is { } prev) s = s + prev;
        if (c.KeepScores) c.Scores = s.MoveToOuterDisposeScope();
        var w = (c.Mask is null ? s : s + c.Mask).softmax(-1);
        if (c.Dropout > 0) w = nn.functional.dropout(w, c.Dropout, true);
        return w.to(c.Value.dtype).matmul(c.Value).MoveToOuterDisposeScope();
    }
}
