namespace Bert4Sharp.Layers;

using System.Text.Json.Serialization;
using TorchSharp;
using static TorchSharp.torch;

/// <summary>
/// Settings of the research kernels (config key <c>attention_kernel_options</c>, next to <c>attention_kernel</c>);
/// each kernel reads the ones it needs and ignores the rest. Unknown keys are refused when the config is read.
/// </summary>
[JsonUnmappedMemberHandling(JsonUnmappedMemberHandling.Disallow)]
public sealed record AttentionKernelOptions
{
    /// <summary>Performer: random features m.</summary>
    [JsonPropertyName("features")] public int Features { get; init; } = 256;
    /// <summary>Performer: orthogonal (FAVOR+) rather than i.i.d. Gaussian projections.</summary>
    [JsonPropertyName("orthogonal")] public bool Orthogonal { get; init; } = true;
    /// <summary>Performer: draw a new projection every this many training-mode calls of a layer (0 = never).</summary>
    [JsonPropertyName("redraw_interval")] public int RedrawInterval { get; init; } = 1000;
    /// <summary>
    /// Performer: the constant added to every random feature (10⁻⁴ in the official code and performer-pytorch, which
    /// keeps denominators away from zero but biases the estimate: the error then stops falling as features grow; 0 for
    /// the unbiased estimator).
    /// </summary>
    [JsonPropertyName("feature_epsilon")] public double FeatureEpsilon { get; init; } = 1e-4;
    /// <summary>Nyströmformer: landmarks (segment means of queries and keys).</summary>
    [JsonPropertyName("landmarks")] public int Landmarks { get; init; } = 64;
    /// <summary>Nyströmformer: iterations of the Moore–Penrose pseudo-inverse (6 in the paper).</summary>
    [JsonPropertyName("pinv_iterations")] public int PinvIterations { get; init; } = 6;
    /// <summary>Nyströmformer: length of the depthwise convolution over values added to the output (33 in the paper; 0 = none).</summary>
    [JsonPropertyName("conv_kernel")] public int ConvKernel { get; init; } = 33;
    /// <summary>Chunk length: FLASH's group size, and the block of the causal prefix sums of linear and Performer attention.</summary>
    [JsonPropertyName("chunk_size")] public int ChunkSize { get; init; } = 128;
    /// <summary>Synthesizer: the longest sequence (rows and columns of the synthetic score matrices).</summary>
    [JsonPropertyName("max_length")] public int MaxLength { get; init; } = 512;
    /// <summary>Factorised random Synthesizer: rank of R = R₁R₂ᵀ.</summary>
    [JsonPropertyName("rank")] public int Rank { get; init; } = 8;
    /// <summary>Synthesizer mixture: the parts whose logits are mixed by learned weights (random, factorized, dense, softmax).</summary>
    [JsonPropertyName("components")] public IReadOnlyList<string> Components { get; init; } = ["random", "softmax"];
    /// <summary>Seed of the kernel's random draws (Performer projections, Synthesizer init); null = from TorchSharp's generator.</summary>
    [JsonPropertyName("seed")] public long? Seed { get; init; }

    /// <summary>Throws on values no kernel can use.</summary>
    /// <exception cref="ArgumentException">Names the option and the value.</exception>
    public void Validate()
    {
        static void Positive(int v, string name) { if (v <= 0) throw new ArgumentException($"attention_kernel_options.{name} must be positive, got {v}"); }
        Positive(Features, "features");
        Positive(Landmarks, "landmarks");
        Positive(PinvIterations, "pinv_iterations");
        Positive(ChunkSize, "chunk_size");
        Positive(MaxLength, "max_length");
        Positive(Rank, "rank");
        if (!(FeatureEpsilon >= 0)) throw new ArgumentException($"attention_kernel_options.feature_epsilon must be ≥ 0, got {FeatureEpsilon}");
        if (RedrawInterval < 0) throw new ArgumentException($"attention_kernel_options.redraw_interval must be ≥ 0, got {RedrawInterval}");
        if (ConvKernel < 0 || (ConvKernel > 0 && ConvKernel % 2 == 0)) throw new ArgumentException($"attention_kernel_options.conv_kernel must be 0 or odd, got {ConvKernel}");
        if (Components.Count == 0) throw new ArgumentException("attention_kernel_options.components is empty");
        foreach (var c in Components)
            if (!SynthesizerKernel.Parts.Contains(c)) throw new ArgumentException($"attention_kernel_options.components: unknown part '{c}' (known: {string.Join(", ", SynthesizerKernel.Parts)})");
    }
}

/// <summary>What a kernel is built for: the head layout of its attention layer.</summary>
/// <param name="Heads">Heads (1 for a gated attention unit).</param>
/// <param name="KeySize">Query/key width per head.</param>
/// <param name="ValueSize">Value width per head.</param>
public sealed record KernelShape(int Heads, int KeySize, int ValueSize);

/// <summary>
/// Kernels by their config names. Stateless ones are shared instances; the research kernels with parameters or
/// random projections (Performer, Nyströmformer's convolution, Synthesizers) are modules made per layer and
/// registered under the layer as <c>kernel</c>.
/// </summary>
public static class AttentionKernelFactory
{
    /// <summary>Every name <see cref="Create"/> accepts.</summary>
    public static readonly IReadOnlyList<string> Names =
        ["softmax", "squared_relu", "softmax_plus", "linear", "performer", "nystrom", "flash", "synthesizer_dense", "synthesizer_random", "synthesizer_factorized", "synthesizer_mixture"];

    /// <summary>The kernel <paramref name="name"/> for a layer of <paramref name="shape"/>.</summary>
    /// <exception cref="ArgumentException">Unknown name (lists the known ones) or bad options.</exception>
    public static IAttentionKernel Create(string name, AttentionKernelOptions? options, KernelShape shape)
    {
        var o = options ?? new AttentionKernelOptions();
        o.Validate();
        return name switch
        {
            "softmax" => AttentionKernels.Softmax,
            "squared_relu" => AttentionKernels.SquaredRelu,
            "softmax_plus" => AttentionKernels.SoftmaxPlus,
            "linear" => AttentionKernels.Linear,
            "performer" => new PerformerKernel(shape, o),
            "nystrom" => new NystromKernel(shape, o),
            "flash" => new FlashKernel(o.ChunkSize),
            "synthesizer_dense" => new SynthesizerKernel(shape, o, ["dense"]),
            "synthesizer_random" => new SynthesizerKernel(shape, o, ["random"]),
            "synthesizer_factorized" => new SynthesizerKernel(shape, o, ["factorized"]),
            "synthesizer_mixture" => new SynthesizerKernel(shape, o, o.Components),
            _ => throw new ArgumentException($"unknown attention kernel '{name}'; known: {string.Join(", ", Names)}"),
        };
    }

    /// <summary>Throws if <paramref name="name"/> is unknown or the options are bad, before any weights are built.</summary>
    public static void Check(string name, AttentionKernelOptions? options)
    {
        if (!Names.Contains(name)) throw new ArgumentException($"unknown attention kernel '{name}'; known: {string.Join(", ", Names)}");
        options?.Validate();
    }
}

/// <summary>
/// What kernels that never form the (Tq, Tk) score matrix (linear, Performer, Nyström, FLASH) can take from a call:
/// no mask, key padding (one mask row for every query), or causal attention with padding (the last query sees every
/// unpadded key). Score biases (ALiBi, T5 buckets, NEZHA tables, RealFormer) need the matrix and are refused.
/// </summary>
internal static class KernelMasks
{
    /// <summary>(B or 1, 1, Tk, 1) with 1 at keys that may be seen and 0 at padding, or null; and whether the call is causal.</summary>
    public static (Tensor? KeyKeep, bool Causal) Resolve(AttentionCall c, string kernel)
    {
        if (c.PositionBias is not null || c.RelativeKeys is not null || c.RelativeValues is not null || c.PreviousScores is not null || c.KeepScores)
            throw new NotSupportedException($"the {kernel} kernel never forms the score matrix, so it takes no score bias (ALiBi, T5 buckets, NEZHA relative positions) " +
                "and no RealFormer residual scores; use rotary or absolute positions with it");
        bool causal = c.Causal || c.MaskIsCausal;
        if (c.Mask is not { } mask) return (null, causal);
        Tensor row;
        if (causal) row = mask.select(-2, -1);                                                // (B, 1, Tk): the last query's view
        else if (mask.shape[^2] == 1) row = mask.squeeze(-2);
        else throw new NotSupportedException($"the {kernel} kernel takes key padding and causal masks, not a ({mask.shape[^2]}, {mask.shape[^1]}) mask that differs by query " +
            "(UniLM or a custom mask); use a score kernel (softmax, squared_relu, softmax_plus, synthesizer_*) for it");
        return ((row == 0).to(c.Key.dtype).unsqueeze(-1), causal);
    }
}
