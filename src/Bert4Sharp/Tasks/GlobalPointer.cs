namespace Bert4Sharp.Tasks;

using Bert4Sharp.Layers;
using Bert4Sharp.Runtime;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

/// <summary>Options of a <see cref="GlobalPointer"/> or <see cref="EfficientGlobalPointer"/> head (bert4keras's arguments).</summary>
public sealed record GlobalPointerOptions
{
    /// <summary>Number of span types (entity types; bert4keras's <c>heads</c>).</summary>
    public required int Types { get; init; }

    /// <summary>Size d of each query and key (bert4keras's <c>head_size</c>); even when <see cref="Rope"/> is on.</summary>
    public int HeadSize { get; init; } = 64;

    /// <summary>Rotate queries and keys by their position (RoPE) so scores see the relative distance end − start.</summary>
    public bool Rope { get; init; } = true;

    /// <summary>Mask the lower triangle (start &gt; end) to −∞. Off for pointers between two different spans (GPLinker's head/tail pairs).</summary>
    public bool TrilMask { get; init; } = true;

    /// <summary>Dense layers with bias.</summary>
    public bool UseBias { get; init; } = true;
}

/// <summary>
/// The base of both GlobalPointer heads (Su, kexue.fm/archives/8373): hidden states (B, T, H) and an optional mask
/// (B, T) → scores (B, types, T, T), where scores[b, α, i, j] rates "tokens i..j form a span of type α". Cells whose
/// row or column is padding, and (with <see cref="GlobalPointerOptions.TrilMask"/>) cells with i &gt; j, are −∞.
/// Train with <see cref="GlobalPointerLoss"/>; decode with <see cref="GlobalPointerDecoding"/> (score &gt; 0).
/// </summary>
public abstract class GlobalPointerHead : nn.Module<Tensor, Tensor?, Tensor>
{
    private protected GlobalPointerHead(string name, int hidden, GlobalPointerOptions options) : base(name)
    {
        ArgumentNullException.ThrowIfNull(options);
        if (hidden < 1) throw new ArgumentOutOfRangeException(nameof(hidden), $"hidden size must be positive, got {hidden}");
        if (options.Types < 1) throw new ArgumentOutOfRangeException(nameof(options), $"GlobalPointerOptions.Types must be at least 1, got {options.Types}");
        if (options.HeadSize < 1 || (options.Rope && options.HeadSize % 2 != 0))
            throw new ArgumentOutOfRangeException(nameof(options), $"GlobalPointerOptions.HeadSize must be positive (and even with RoPE), got {options.HeadSize}");
        Hidden = hidden;
        Options = options;
    }

    /// <summary>The input width H.</summary>
    public int Hidden { get; }

    /// <summary>The options the head was built with.</summary>
    public GlobalPointerOptions Options { get; }

    /// <summary>A Keras <c>lecun_normal</c> draw (truncated normal, std √(1/fan_in)) and a zero bias.</summary>
    private protected static Linear NewDense(int input, int output, bool bias)
    {
        var layer = nn.Linear(input, output, bias);
        using (torch.no_grad())
        {
            double std = Math.Sqrt(1.0 / input) / 0.87962566103423978;   // Keras: the truncation at ±2σ shrinks the std by this factor
            nn.init.trunc_normal_(layer.weight!, 0, std, -2 * std, 2 * std);
            if (layer.bias is not null) nn.init.zeros_(layer.bias);
        }
        return layer;
    }

    /// <summary>Checks the input and returns the boolean mask (B, T), or null.</summary>
    private protected Tensor? CheckInput(Tensor hidden, Tensor? mask)
    {
        if (hidden.dim() != 3 || hidden.shape[2] != Hidden)
            throw new ArgumentException($"{GetName()}: hidden states must be (B, T, {Hidden}), got ({string.Join(", ", hidden.shape)})", nameof(hidden));
        if (!hidden.is_floating_point())
            throw new ArgumentException($"{GetName()}: hidden states must be floating point, got {hidden.dtype}", nameof(hidden));
        if (mask is null) return null;
        if (mask.dim() != 2 || mask.shape[0] != hidden.shape[0] || mask.shape[1] != hidden.shape[1])
            throw new ArgumentException($"{GetName()}: mask must be (B, T) = ({hidden.shape[0]}, {hidden.shape[1]}), got ({string.Join(", ", mask.shape)})", nameof(mask));
        return mask.dtype == ScalarType.Bool ? mask.alias() : mask.ne(0);
    }

    /// <summary>(B, types, T, d) queries or keys rotated by position, when RoPE is on.</summary>
    private protected static Tensor MaybeRope(Tensor x, Tensor? sin, Tensor? cos) => sin is null ? x : RotaryEmbedding.Apply(x, sin, cos!);

    /// <summary>(sin, cos) tables for T positions of width d, or nulls without RoPE.</summary>
    private protected (Tensor? Sin, Tensor? Cos) RopeTables(Tensor hidden)
    {
        if (!Options.Rope) return (null, null);
        var (sin, cos) = RotaryEmbedding.Tables(hidden.shape[1], Options.HeadSize, hidden.device, hidden.dtype);
        return (sin, cos);
    }

    /// <summary>Padding rows and columns and (optionally) the lower triangle of <paramref name="scores"/> (B, types, T, T) set to −∞.</summary>
    private protected Tensor MaskScores(Tensor scores, Tensor? mask)
    {
        long t = scores.shape[^1];
        Tensor? keep = null;
        if (mask is not null)
            keep = mask.view(mask.shape[0], 1, t, 1).logical_and(mask.view(mask.shape[0], 1, 1, t));   // (B, 1, T, T)
        if (Options.TrilMask)
        {
            var upper = torch.ones(t, t, ScalarType.Bool, scores.device).triu();                         // start ≤ end
            keep = keep is null ? upper : keep.logical_and(upper);
        }
        return keep is null ? scores : scores.MaskedFill(keep.logical_not(), double.NegativeInfinity);
    }
}

/// <summary>
/// GlobalPointer (bert4keras <c>GlobalPointer</c>): one dense layer H → types·2d gives each type its own query and key
/// (q = the first d of the type's 2d slice, k = the rest); scores = (RoPE q)·(RoPE k)ᵀ / √d per type. Parameters
/// <c>dense.weight</c> [types·2d, H] and <c>dense.bias</c>.
/// </summary>
public sealed class GlobalPointer : GlobalPointerHead
{
#pragma warning disable IDE0044
    Linear dense;
#pragma warning restore IDE0044

    /// <summary>A new head over hidden states of width <paramref name="hidden"/>.</summary>
    public GlobalPointer(int hidden, GlobalPointerOptions options) : base("global_pointer", hidden, options)
    {
        dense = NewDense(hidden, options.Types * options.HeadSize * 2, options.UseBias);
        RegisterComponents();
    }

    /// <summary>Scores (B, types, T, T) for hidden states (B, T, H) and an optional mask (B, T) (nonzero = real token).</summary>
    public override Tensor forward(Tensor hidden, Tensor? mask)
    {
        using var scope = torch.NewDisposeScope();
        var keep = CheckInput(hidden, mask);
        long b = hidden.shape[0], t = hidden.shape[1];
        int d = Options.HeadSize;
        var h = Dense.Apply(dense, hidden).view(b, t, Options.Types, 2 * d).permute(0, 2, 1, 3);   // (B, types, T, 2d)
        var (sin, cos) = RopeTables(hidden);
        var q = MaybeRope(h[TensorIndex.Ellipsis, ..d], sin, cos);                                  // (B, types, T, d)
        var k = MaybeRope(h[TensorIndex.Ellipsis, d..], sin, cos);
        var scores = q.matmul(k.transpose(-1, -2)).div_(Math.Sqrt(d));                              // (B, types, T, T)
        return MaskScores(scores, keep).MoveToOuterDisposeScope();
    }
}

/// <summary>
/// Efficient GlobalPointer (bert4keras <c>EfficientGlobalPointer</c>, kexue.fm/archives/8877): one projection
/// <c>p_dense</c> H → 2d shared by all types (q = its even features, k = its odd ones), scores = (RoPE q)·(RoPE k)ᵀ/√d,
/// plus a per-type bias from <c>q_dense</c> 2d → 2·types applied to p (before RoPE) and halved: type α adds its
/// feature 2α at the end token j and its feature 2α+1 at the start token i. Parameters <c>p_dense.*</c> [2d, H] and
/// <c>q_dense.*</c> [2·types, 2d].
/// </summary>
public sealed class EfficientGlobalPointer : GlobalPointerHead
{
#pragma warning disable IDE0044
    Linear p_dense;
    Linear q_dense;
#pragma warning restore IDE0044

    /// <summary>A new head over hidden states of width <paramref name="hidden"/>.</summary>
    public EfficientGlobalPointer(int hidden, GlobalPointerOptions options) : base("efficient_global_pointer", hidden, options)
    {
        p_dense = NewDense(hidden, options.HeadSize * 2, options.UseBias);
        q_dense = NewDense(options.HeadSize * 2, options.Types * 2, options.UseBias);
        RegisterComponents();
    }

    /// <summary>Scores (B, types, T, T) for hidden states (B, T, H) and an optional mask (B, T) (nonzero = real token).</summary>
    public override Tensor forward(Tensor hidden, Tensor? mask)
    {
        using var scope = torch.NewDisposeScope();
        var keep = CheckInput(hidden, mask);
        int d = Options.HeadSize;
        var p = Dense.Apply(p_dense, hidden);                                                         // (B, T, 2d)
        var (sin, cos) = RopeTables(hidden);
        var q = MaybeRope(p[TensorIndex.Ellipsis, TensorIndex.Slice(0, null, 2)].unsqueeze(1), sin, cos);   // (B, 1, T, d)
        var k = MaybeRope(p[TensorIndex.Ellipsis, TensorIndex.Slice(1, null, 2)].unsqueeze(1), sin, cos);
        var shared = q.matmul(k.transpose(-1, -2)).div_(Math.Sqrt(d));                                // (B, 1, T, T)
        var bias = Dense.Apply(q_dense, p).transpose(1, 2).div(2);                                    // (B, 2·types, T)
        var endBias = bias[.., TensorIndex.Slice(0, null, 2)].unsqueeze(2);                           // (B, types, 1, T): at j
        var startBias = bias[.., TensorIndex.Slice(1, null, 2)].unsqueeze(3);                         // (B, types, T, 1): at i
        return MaskScores(shared + endBias + startBias, keep).MoveToOuterDisposeScope();
    }
}

/// <summary>A span of one type: tokens <see cref="Start"/>..<see cref="End"/> (inclusive) are an entity of <see cref="Type"/>.</summary>
public readonly record struct GlobalPointerSpan(int Type, int Start, int End);

/// <summary>Which form of <see cref="MultilabelLoss"/> <see cref="GlobalPointerLoss"/> uses.</summary>
public enum GlobalPointerLossForm
{
    /// <summary>Dense labels (B, types, T·T): bert4keras's GlobalPointer NER example.</summary>
    Dense,

    /// <summary>
    /// Positive indices start·T + end padded with 0, <c>mask_zero</c> on (GPLinker): memory O(spans) instead of
    /// O(T²) labels. The cell (0, 0) (the [CLS] pair) is then never a negative, and cannot be a gold span.
    /// </summary>
    Sparse,
}

/// <summary>How <see cref="GlobalPointerLoss"/> reduces the per-(batch, type) losses to a scalar.</summary>
public enum GlobalPointerReduction
{
    /// <summary>Mean over batch·types (bert4keras's GlobalPointer NER example).</summary>
    MeanOverRows,

    /// <summary>Sum over types, mean over the batch (bert4keras's GPLinker example).</summary>
    SumTypesMeanBatch,
}

/// <summary>Options of <see cref="GlobalPointerLoss"/>.</summary>
public sealed record GlobalPointerLossOptions
{
    /// <summary>Dense or sparse labels.</summary>
    public GlobalPointerLossForm Form { get; init; } = GlobalPointerLossForm.Dense;

    /// <summary>The reduction to a scalar.</summary>
    public GlobalPointerReduction Reduction { get; init; } = GlobalPointerReduction.MeanOverRows;
}

/// <summary>
/// The GlobalPointer loss: <see cref="MultilabelLoss"/> over each (batch, type) row of T·T flattened scores, the gold
/// spans positive, every other finite cell negative, −∞ cells (padding, lower triangle) excluded.
/// </summary>
public static class GlobalPointerLoss
{
    /// <summary>The scalar loss for scores (B, types, T, T) and the gold spans of each batch item.</summary>
    public static Tensor Compute(Tensor scores, IReadOnlyList<IReadOnlyList<GlobalPointerSpan>> gold, GlobalPointerLossOptions? options = null)
    {
        options ??= new GlobalPointerLossOptions();
        using var scope = torch.NewDisposeScope();
        var rows = Rows(scores, gold, options.Form);                                                  // (B, types)
        var loss = options.Reduction == GlobalPointerReduction.MeanOverRows ? rows.mean() : rows.sum(1).mean();
        return loss.MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Per-(batch, type) losses (B, types). Gold spans are checked (batch count, type, positions inside T, not on a −∞
    /// cell, not (0, 0) in the sparse form); a span listed twice counts once.
    /// </summary>
    public static Tensor Rows(Tensor scores, IReadOnlyList<IReadOnlyList<GlobalPointerSpan>> gold, GlobalPointerLossForm form = GlobalPointerLossForm.Dense)
    {
        var sets = Check(scores, gold, form);
        long b = scores.shape[0], types = scores.shape[1], t = scores.shape[2];
        using var scope = torch.NewDisposeScope();
        var flat = scores.reshape(b, types, t * t);
        Tensor rows;
        if (form == GlobalPointerLossForm.Dense)
        {
            var labels = new float[b * types * t * t];
            for (int i = 0; i < b; i++)
                foreach (var s in sets[i])
                    labels[((i * types + s.Type) * t + s.Start) * t + s.End] = 1;
            rows = MultilabelLoss.Dense(flat, torch.tensor(labels, [b, types, t * t], device: scores.device));
        }
        else
        {
            int p = Math.Max(1, sets.Max(set => set.GroupBy(s => s.Type).Select(g => g.Count()).DefaultIfEmpty(0).Max()));
            var index = new long[b * types * p];                                                    // 0 = padding
            for (int i = 0; i < b; i++)
                foreach (var g in sets[i].GroupBy(s => s.Type))
                {
                    int n = 0;
                    foreach (var s in g) index[(i * types + g.Key) * p + n++] = (long)s.Start * t + s.End;
                }
            rows = MultilabelLoss.Sparse(flat, torch.tensor(index, [b, types, p], device: scores.device), maskZero: true);
        }
        return rows.MoveToOuterDisposeScope();
    }

    /// <summary>Validates the gold spans against the scores and returns them deduplicated, per batch item.</summary>
    static List<GlobalPointerSpan>[] Check(Tensor scores, IReadOnlyList<IReadOnlyList<GlobalPointerSpan>> gold, GlobalPointerLossForm form)
    {
        ArgumentNullException.ThrowIfNull(gold);
        if (scores.dim() != 4 || scores.shape[2] != scores.shape[3])
            throw new ArgumentException($"scores must be (B, types, T, T), got ({string.Join(", ", scores.shape)})", nameof(scores));
        long b = scores.shape[0], types = scores.shape[1], t = scores.shape[2];
        if (gold.Count != b)
            throw new ArgumentException($"gold has {gold.Count} batch items but the scores have {b}", nameof(gold));
        var sets = new List<GlobalPointerSpan>[b];
        var cells = new List<long>();
        for (int i = 0; i < b; i++)
        {
            sets[i] = [];
            var seen = new HashSet<GlobalPointerSpan>();
            foreach (var s in gold[i] ?? throw new ArgumentException($"gold[{i}] is null; pass an empty list for an item without spans", nameof(gold)))
            {
                if (s.Type < 0 || s.Type >= types)
                    throw new ArgumentOutOfRangeException(nameof(gold), $"gold[{i}] span {s}: unknown type {s.Type}; the head has {types} types (0..{types - 1})");
                if (s.Start < 0 || s.End < 0 || s.Start >= t || s.End >= t)
                    throw new ArgumentOutOfRangeException(nameof(gold), $"gold[{i}] span {s}: positions must lie in the sequence [0, {t}); clip or drop spans past the (truncated) input");
                if (form == GlobalPointerLossForm.Sparse && s.Start == 0 && s.End == 0)
                    throw new ArgumentException($"gold[{i}] span {s}: the sparse loss uses cell (0, 0) as padding (mask_zero); token 0 should be [CLS], never an entity", nameof(gold));
                if (seen.Add(s))
                {
                    sets[i].Add(s);
                    cells.Add(((i * types + s.Type) * t + s.Start) * t + s.End);
                }
            }
        }
        if (cells.Count > 0)
        {
            using var scope = torch.NewDisposeScope();
            var at = scores.detach().reshape(-1).index_select(0, torch.tensor(cells.ToArray(), device: scores.device)).cpu().to(ScalarType.Float64).data<double>().ToArray();
            for (int c = 0; c < at.Length; c++)
                if (double.IsNegativeInfinity(at[c]))
                {
                    long cell = cells[c];
                    long end = cell % t, start = cell / t % t, type = cell / (t * t) % types, item = cell / (t * t * types);
                    throw new ArgumentException($"gold[{item}] span (type {type}, {start}..{end}) lies on a masked cell (score −∞): past the sequence's mask, or start > end under the lower-triangle mask", nameof(gold));
                }
        }
        return sets;
    }
}

/// <summary>Decoding of GlobalPointer scores on plain arrays, so any engine producing the scores can share it.</summary>
public static class GlobalPointerDecoding
{
    /// <summary>
    /// Spans with score &gt; <paramref name="threshold"/> from row-major scores (batch, types, length, length), per
    /// batch item in type, start, end order (NumPy's <c>np.where</c> order). −∞ cells never qualify.
    /// </summary>
    public static List<GlobalPointerSpan>[] Decode(ReadOnlySpan<float> scores, int batch, int types, int length, float threshold = 0)
    {
        if (batch < 0 || types < 1 || length < 0)
            throw new ArgumentOutOfRangeException(nameof(types), $"need batch ≥ 0, types ≥ 1, length ≥ 0; got {batch}, {types}, {length}");
        long expected = (long)batch * types * length * length;
        if (scores.Length != expected)
            throw new ArgumentException($"scores hold {scores.Length} values but shape ({batch}, {types}, {length}, {length}) needs {expected}", nameof(scores));
        var result = new List<GlobalPointerSpan>[batch];
        int k = 0;
        for (int b = 0; b < batch; b++)
        {
            var list = result[b] = [];
            for (int ty = 0; ty < types; ty++)
                for (int i = 0; i < length; i++)
                    for (int j = 0; j < length; j++, k++)
                        if (scores[k] > threshold) list.Add(new GlobalPointerSpan(ty, i, j));
        }
        return result;
    }

    /// <summary>Copies scores (B, types, T, T) to the CPU as float32 and decodes them.</summary>
    public static List<GlobalPointerSpan>[] Decode(Tensor scores, float threshold = 0)
    {
        if (scores.dim() != 4 || scores.shape[2] != scores.shape[3])
            throw new ArgumentException($"scores must be (B, types, T, T), got ({string.Join(", ", scores.shape)})", nameof(scores));
        using var cpu = scores.detach().to(ScalarType.Float32, CPU).contiguous();
        return Decode(cpu.data<float>().ToArray(), (int)scores.shape[0], (int)scores.shape[1], (int)scores.shape[2], threshold);
    }
}
