namespace Bert4Sharp.Models;

using Bert4Sharp.Layers;
using static TorchSharp.torch;

/// <summary>
/// The research kit's config keys applied to any family's architecture (docs/attention.md): <c>attention_kernel</c>
/// (+ <c>attention_kernel_options</c>), <c>attention_position</c> (+ <c>max_relative_positions</c>), <c>absolute_position</c>,
/// <c>norm_placement</c> and <c>residual_attention_scores</c>. A family stays a name table; these keys only swap the seams of its layers.
/// </summary>
public static class ArchitectureOverrides
{
    /// <summary><paramref name="arch"/> with the overrides <paramref name="c"/> asks for.</summary>
    /// <exception cref="ArgumentException">A combination the layers cannot run (named, with what to change).</exception>
    public static ArchitectureOptions Apply(ArchitectureOptions arch, TransformerConfig c, string family)
    {
        if (c.AttentionKernel is { } name)
        {
            // Kernels without state are shared instances (and the ONNX exporter knows the plain ones); the others are made per layer.
            var made = AttentionKernelFactory.Create(name, c.AttentionKernelOptions, new KernelShape(1, 4, 4));
            IAttentionKernel? shared = made is nn.Module ? null : made;
            (made as IDisposable)?.Dispose();
            string? perLayer = shared is null ? name : null;
            if (arch.Gau is { } gau) arch = arch with { Gau = gau with { Kernel = shared, KernelName = perLayer, KernelOptions = c.AttentionKernelOptions } };
            else arch = arch with { Layer = WithKernel(arch.Layer, shared, perLayer, c.AttentionKernelOptions) };
            if (arch.Decoder is { } dec) arch = arch with { Decoder = dec with { Layer = WithKernel(dec.Layer, shared, perLayer, c.AttentionKernelOptions) } };
        }
        if (c.AttentionPositionScheme is { } scheme)
        {
            if (arch.Gau is not null) throw new ArgumentException($"{family}: attention_position applies to multi-head attention blocks; gated attention units use rotary positions");
            var position = scheme switch
            {
                "none" => AttentionPosition.None,
                "rotary" => AttentionPosition.Rotary,
                "rotary_2d" => AttentionPosition.Rotary2D,
                "alibi" => AttentionPosition.Alibi,
                "typical_relative" => AttentionPosition.TypicalRelative,
                "t5_buckets" => AttentionPosition.RelativeBuckets,
                "xl_relative" => AttentionPosition.XlRelative,
                "deberta" => AttentionPosition.Disentangled,
                _ => throw new ArgumentException($"{family}: attention_position must be one of {string.Join(", ", TransformerConfig.AttentionPositionSchemes)}, got '{scheme}'"),
            };
            if (arch.RelativeBias is not null || arch.Decoder is not null) throw new ArgumentException($"{family}: attention_position replaces positions of encoder-only and decoder-only models, not T5's buckets");
            var attention = arch.Layer.Attention with { Position = position, MaxRelativePosition = c.MaxRelativePositions ?? 64 };
            arch = arch with
            {
                Layer = arch.Layer with { Attention = attention },
                RelativeBias = position == AttentionPosition.RelativeBuckets ? new RelativeBiasOptions(c.RelativeAttentionNumBuckets, c.RelativeAttentionMaxDistance) : null,
            };
        }
        if (c.AbsolutePositionScheme is { } absolute)
        {
            var e = arch.Embeddings;
            if (absolute is "learned" or "hierarchical" && c.MaxPositionEmbeddings <= 0)
                throw new ArgumentException($"{family}: absolute_position '{absolute}' needs a learned table: set max_position_embeddings above 0");
            arch = arch with
            {
                Embeddings = absolute switch
                {
                    "learned" => e with { MaxPositions = c.MaxPositionEmbeddings, SinusoidalPositions = false, HierarchicalAlpha = null },
                    "hierarchical" => e with { MaxPositions = c.MaxPositionEmbeddings, SinusoidalPositions = false, HierarchicalAlpha = 0.4 },   // bert4keras's α
                    "sinusoidal" => e with { MaxPositions = 0, SinusoidalPositions = true, HierarchicalAlpha = null },
                    "none" => e with { MaxPositions = 0, SinusoidalPositions = false, HierarchicalAlpha = null, PositionsFromPadding = null },
                    _ => throw new ArgumentException($"{family}: absolute_position must be one of {string.Join(", ", TransformerConfig.AbsolutePositionSchemes)}, got '{absolute}'"),
                },
            };
        }
        if (c.NormPlacementScheme is { } placement)
        {
            if (arch.Gau is not null || arch.Decoder is not null) throw new ArgumentException($"{family}: norm_placement applies to encoder-only and decoder-only models of multi-head attention blocks");
            int n = arch.Layers;
            arch = placement switch
            {
                "post" => arch with { Layer = arch.Layer with { Placement = NormPlacement.Post, ResidualScale = 1 }, FinalNorm = false, DeepNormBeta = null },
                "pre" => arch with { Layer = arch.Layer with { Placement = NormPlacement.Pre, ResidualScale = 1 }, FinalNorm = true, DeepNormBeta = null },
                "deepnorm" => arch with
                {
                    Layer = arch.Layer with { Placement = NormPlacement.Post, ResidualScale = Math.Pow(2.0 * n, 0.25) },
                    FinalNorm = false, DeepNormBeta = Math.Pow(8.0 * n, -0.25),
                },
                _ => throw new ArgumentException($"{family}: norm_placement must be one of {string.Join(", ", TransformerConfig.NormPlacementSchemes)}, got '{placement}'"),
            };
        }
        if (c.ResidualAttentionScores is bool residual) arch = arch with { ResidualAttentionScores = residual };
        return arch;
    }

    static BlockOptions WithKernel(BlockOptions layer, IAttentionKernel? shared, string? perLayer, AttentionKernelOptions? options) =>
        layer with { Attention = layer.Attention with { Kernel = shared, KernelName = perLayer, KernelOptions = options } };

    /// <summary>
    /// The <c>initializer</c> key on top of the family's initialisation, for block weights only (embeddings, heads, norms,
    /// biases and research parameters keep theirs): <c>lecun</c> redraws every block matrix (out, in) from N(0, 1/in);
    /// <c>scaled_residual</c> multiplies each attention-output, feed-forward-output and GAU output matrix by 1/√(2N), N the number of
    /// blocks (decoder blocks included), so the residual stream's variance does not grow with depth.
    /// </summary>
    public static void Initialize(TransformerModel model, string scheme)
    {
        int blocks = model.Architecture.Layers + model.DecoderLayers;
        foreach (var (name, p) in model.named_parameters())
        {
            bool block = name.StartsWith("layers.", StringComparison.Ordinal) || name.StartsWith("decoder_layers.", StringComparison.Ordinal);
            if (!block || p.dim() != 2 || name.Contains("norm", StringComparison.Ordinal) || ModelFamily.IsResearchParameter(name)) continue;
            if (scheme == "lecun") p.normal_(0, 1 / Math.Sqrt(p.shape[1]));
            else if (scheme == "scaled_residual" && (name.EndsWith(".output.weight", StringComparison.Ordinal)
                || name.EndsWith(".ffn.outer.weight", StringComparison.Ordinal) || name.EndsWith(".o_dense.weight", StringComparison.Ordinal)))
                p.mul_(1 / Math.Sqrt(2.0 * blocks));
        }
    }

    /// <summary>
    /// DeepNet's β: the initial weights of every value projection, attention output and feed-forward layer times β
    /// (queries and keys keep theirs), on top of the family's initialisation.
    /// </summary>
    public static void ScaleDeepNormInit(TransformerModel model, double beta)
    {
        var a = model.Architecture.Layer.Attention;
        long qk = (long)a.Heads * a.QueryKeySize, v = (long)a.Heads * a.HeadSize;
        foreach (var (name, p) in model.named_parameters())
        {
            if (p.dim() != 2 || name.Contains(".kernel.", StringComparison.Ordinal)) continue;
            if (name.EndsWith(".attention.qkv.weight", StringComparison.Ordinal)) p.narrow(0, 2 * qk, v).mul_(beta);
            else if (name.EndsWith(".attention.output.weight", StringComparison.Ordinal) || name.Contains(".ffn.", StringComparison.Ordinal)) p.mul_(beta);
        }
    }
}
