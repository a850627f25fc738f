namespace Bert4Sharp.Layers;

using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

/// <summary>Options of <see cref="MultiHeadAttention"/>.</summary>
/// <param name="HiddenSize">Input and output width.</param>
/// <param name="Heads">Number of heads.</param>
/// <param name="HeadSize">Width of each head's values (and keys unless <paramref name="KeySize"/> is set).</param>
/// <param name="KeySize">Width of each head's queries/keys when it differs from <paramref name="HeadSize"/>.</param>
/// <param name="UseBias">Biases on the projections (false for RoFormerV2 and T5).</param>
/// <param name="Position">Position scheme inside attention.</param>
/// <param name="RotateValues">Rotary also on values (RoFormer <c>rotary_value</c>).</param>
/// <param name="Dropout">Dropout on attention probabilities (training only).</param>
/// <param name="MaxRelativePosition">Clipping distance for <see cref="AttentionPosition.TypicalRelative"/> (64 in NEZHA) and DeBERTa's span k for <see cref="AttentionPosition.Disentangled"/>.</param>
/// <param name="Kernel">How scores become mixed values; null = softmax (or <paramref name="KernelName"/>).</param>
/// <param name="Scale">Factor on q·kᵀ; null = 1/√key size (T5 uses 1).</param>
/// <param name="Cross">Cross attention: queries from the input, keys and values from <see cref="AttentionContext.Memory"/>.</param>
/// <param name="KernelName">A kernel made per layer by <see cref="AttentionKernelFactory"/> (config <c>attention_kernel</c>), used when <paramref name="Kernel"/> is null.</param>
/// <param name="KernelOptions">Its settings (config <c>attention_kernel_options</c>).</param>
public sealed record AttentionOptions(int HiddenSize, int Heads, int HeadSize, int? KeySize = null, bool UseBias = true,
    AttentionPosition Position = AttentionPosition.None, bool RotateValues = false, double Dropout = 0, int MaxRelativePosition = 64,
    IAttentionKernel? Kernel = null, double? Scale = null, bool Cross = false, string? KernelName = null, AttentionKernelOptions? KernelOptions = null)
{
    /// <summary>Width of each head's queries and keys.</summary>
    public int QueryKeySize => KeySize ?? HeadSize;
}

/// <summary>
/// The one multi-head attention of every family. Self attention projects q, k, v with one fused GEMM
/// (<c>qkv</c>, rows: queries, keys, values); cross attention projects <c>q</c> from the input and <c>kv</c> from the
/// encoder memory. Positions come from the context (rotary, NEZHA tables, T5 bias), the score → output step from
/// the kernel (<see cref="IAttentionKernel"/>). Parameters <c>qkv</c> or <c>q</c> + <c>kv</c>, and <c>output</c>.
/// </summary>
public sealed class MultiHeadAttention : nn.Module
{
    readonly AttentionOptions options;
    readonly IAttentionKernel kernel;
#pragma warning disable IDE0044
    Linear? qkv;
    Linear? q;
    Linear? kv;
    Linear output;
    XlRelativePosition? relative;
#pragma warning restore IDE0044

    /// <summary>Creates the layer.</summary>
    /// <exception cref="ArgumentException">Non-positive sizes, an odd key size with sinusoidal positions, or positions on cross attention.</exception>
    public MultiHeadAttention(AttentionOptions options, string name = "attention") : base(name)
    {
        if (options.Heads <= 0 || options.HeadSize <= 0 || options.QueryKeySize <= 0)
            throw new ArgumentException($"heads and head sizes must be positive, got {options.Heads}, {options.HeadSize}, {options.QueryKeySize}");
        if (options.Position is AttentionPosition.Rotary or AttentionPosition.TypicalRelative && options.QueryKeySize % 2 != 0)
            throw new ArgumentException($"sinusoidal positions need an even key size, got {options.QueryKeySize}");
        if (options.Position == AttentionPosition.TypicalRelative && options.QueryKeySize != options.HeadSize)
            throw new ArgumentException($"typical relative positions need key size = head size, got {options.QueryKeySize} and {options.HeadSize}");
        if (options.Position == AttentionPosition.Rotary2D && options.QueryKeySize % 4 != 0)
            throw new ArgumentException($"2D rotary positions need a key size divisible by 4, got {options.QueryKeySize}");
        if (options.Cross && options.Position != AttentionPosition.None)
            throw new ArgumentException($"cross attention takes no positions, got {options.Position}");
        this.options = options;
        // Research kernels with parameters are modules: RegisterComponents registers this field's value as "kernel".
        kernel = options.Kernel ?? (options.KernelName is { } kn
            ? AttentionKernelFactory.Create(kn, options.KernelOptions, new KernelShape(options.Heads, options.QueryKeySize, options.HeadSize))
            : AttentionKernels.Softmax);
        if (kernel is LinearKernel or PerformerKernel or NystromKernel or FlashKernel && options.Position is AttentionPosition.Alibi or AttentionPosition.RelativeBuckets
                or AttentionPosition.TypicalRelative or AttentionPosition.XlRelative or AttentionPosition.Disentangled)
            throw new ArgumentException($"the {kernel.Name} kernel never forms the score matrix, so it cannot take {options.Position} positions (a score bias); use rotary, rotary_2d or absolute positions");
        int qk = options.Heads * options.QueryKeySize, v = options.Heads * options.HeadSize;
        if (options.Cross)
        {
            q = nn.Linear(options.HiddenSize, qk, hasBias: options.UseBias);
            kv = nn.Linear(options.HiddenSize, qk + v, hasBias: options.UseBias);
        }
        else qkv = nn.Linear(options.HiddenSize, 2 * qk + v, hasBias: options.UseBias);
        output = nn.Linear(v, options.HiddenSize, hasBias: options.UseBias);
        if (options.Position == AttentionPosition.XlRelative) relative = new XlRelativePosition(options.HiddenSize, options.Heads, options.QueryKeySize);
        RegisterComponents();
    }

    /// <summary>The options.</summary>
    public AttentionOptions Options => options;

    /// <summary>
    /// Attention of <paramref name="x"/> (B, T, H) to itself (or, for cross attention, to the context's memory).
    /// With a cache, this call's keys and values are appended to slot <paramref name="layer"/> and queries sit
    /// after the cached positions; cross-attention keys are computed once and kept in <see cref="KeyValueCache.Cross"/>.
    /// </summary>
    public Tensor Forward(Tensor x, AttentionContext ctx, int layer)
    {
        using var scope = torch.NewDisposeScope();
        long b = x.shape[0], t = x.shape[1];
        int h = options.Heads, dk = options.QueryKeySize, dv = options.HeadSize;
        Tensor qh, kh, vh;
        if (options.Cross)
        {
            var memory = ctx.Memory ?? throw new ArgumentException("cross attention needs the encoder memory in the context");
            qh = Heads(Dense.Apply(q!, x), h, dk);                                             // (B, h, T, dk)
            if (ctx.Cache?.Cross?[layer] is { } fixedKv) (kh, vh) = fixedKv;
            else
            {
                var parts = Dense.Apply(kv!, memory).split([h * dk, h * dv], -1);               // (B, S, h·dk), (B, S, h·dv)
                (kh, vh) = (Heads(parts[0], h, dk), Heads(parts[1], h, dv));
                ctx.Cache?.Cross?.Set(layer, kh, vh);
            }
            var call = new AttentionCall { Query = qh, Key = kh, Value = vh, Scale = Scale, Mask = ctx.MemoryMask, Dropout = Dropout };
            return Merge(kernel.Attend(call)).MoveToOuterDisposeScope();
        }
        var proj = Dense.Apply(qkv!, x).split([h * dk, h * dk, h * dv], -1);                  // (B, T, 2·h·dk + h·dv) → three
        (qh, kh, vh) = (Heads(proj[0], h, dk), Heads(proj[1], h, dk), Heads(proj[2], h, dv));
        if (options.Position is AttentionPosition.Rotary or AttentionPosition.Rotary2D)
        {
            var (sin, cos) = options.Position == AttentionPosition.Rotary ? ctx.Positions.Rotary(dk) : ctx.Positions.Rotary2D(dk);
            qh = RotaryEmbedding.Apply(qh, sin, cos);
            kh = RotaryEmbedding.Apply(kh, sin, cos);
            if (options.RotateValues) vh = RotaryEmbedding.Apply(vh, sin, cos);
        }
        if (ctx.Cache is { } cache)
        {
            if (cache[layer] is { } past) { kh = torch.cat([past.Key, kh], 2); vh = torch.cat([past.Value, vh], 2); }
            cache.Set(layer, kh, vh);
        }
        Tensor? typical = options.Position == AttentionPosition.TypicalRelative ? ctx.Positions.TypicalRelative(dk, options.MaxRelativePosition) : null;
        var self = new AttentionCall
        {
            Query = qh, Key = kh, Value = vh, Scale = Scale, Mask = ctx.Mask, MaskIsCausal = ctx.MaskIsCausal && ctx.Cache is null, Causal = ctx.Causal, Dropout = Dropout,
            PositionBias = options.Position switch
            {
                AttentionPosition.RelativeBuckets => ctx.Positions.Bias ?? throw new InvalidOperationException("relative-bucket attention needs the model's position bias in the context"),
                AttentionPosition.Alibi => ctx.Positions.Alibi(h),
                AttentionPosition.XlRelative => relative!.Bias(qh, kh, ctx.Positions, Scale),
                AttentionPosition.Disentangled => Disentangled(qh, kh, ctx.Positions),
                _ => null,
            },
            RelativeKeys = typical, RelativeValues = typical,
            PreviousScores = ctx.ResidualScores ? ctx.Scores : null, KeepScores = ctx.ResidualScores,
        };
        var o = Merge(kernel.Attend(self));
        if (ctx.ResidualScores) ctx.Scores = self.Scores!.MoveToOuterDisposeScope();
        return o.MoveToOuterDisposeScope();

        Tensor Merge(Tensor heads) => Dense.Apply(output, heads.transpose(1, 2).reshape(b, t, h * dv));   // (B, h, T, dv) → (B, T, H)
    }

    /// <summary>
    /// DeBERTa's two position terms (<see cref="DisentangledAttention"/>): the model's relative embeddings (2k, H) go
    /// through this layer's fused projection and its query and key parts are kept.
    /// </summary>
    Tensor Disentangled(Tensor qh, Tensor kh, PositionContext positions)
    {
        using var scope = torch.NewDisposeScope();
        var table = positions.RelativeEmbeddings ?? throw new InvalidOperationException("disentangled attention needs the model's relative embeddings in the context");
        int h = options.Heads, dk = options.QueryKeySize;
        long rows = table.shape[0];
        var p = Dense.Apply(qkv!, table.to(qh.dtype)).split([h * dk, h * dk, h * options.HeadSize], -1);     // (2k, h·dk) ×2, values unused
        var (qr, kr) = (p[0].view(rows, h, dk).transpose(0, 1), p[1].view(rows, h, dk).transpose(0, 1));    // (h, 2k, dk)
        return DisentangledAttention.Bias(qh, kh, qr, kr, positions.DisentangledIndex(options.MaxRelativePosition), Scale).MoveToOuterDisposeScope();
    }

    /// <summary>1/√dk (1/√(3·dk) with DeBERTa's three terms) unless the options set it.</summary>
    double Scale => options.Scale ?? 1.0 / Math.Sqrt(options.QueryKeySize * (options.Position == AttentionPosition.Disentangled ? 3.0 : 1.0));

    double Dropout => training ? options.Dropout : 0;

    /// <summary>(B, T, h·d) → (B, h, T, d).</summary>
    static Tensor Heads(Tensor x, int h, int d) => x.view(x.shape[0], x.shape[1], h, d).transpose(1, 2);
}
