namespace Bert4Sharp.Layers;

using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

/// <summary>How positions enter attention (absolute schemes live in <see cref="Embeddings"/>).</summary>
public enum AttentionPosition
{
    /// <summary>Nothing inside attention (absolute positions were added to the embeddings).</summary>
    None,
    /// <summary>Rotary embedding on queries and keys (RoFormer, RoFormerV2, GAU-α).</summary>
    Rotary,
    /// <summary>
    /// NEZHA's "typical" relative positions (Shaw et al.): a fixed sinusoidal table indexed by the key−query
    /// distance clipped to ±<see cref="AttentionOptions.MaxRelativePosition"/>, added to the keys in the scores
    /// and to the values in the output.
    /// </summary>
    TypicalRelative,
    /// <summary>T5's learned bias per head and bucketed distance, added to the scores (<see cref="RelativePositionBias"/>).</summary>
    RelativeBuckets,
    /// <summary>
    /// ALiBi (Press et al., "Train Short, Test Long"): no position parameters; scores get −mₕ·|i − j|, with head
    /// slopes mₕ the geometric sequence 2^(−8h/n) (interleaved as the paper's code for n not a power of two).
    /// </summary>
    Alibi,
    /// <summary>
    /// 2D rotary positions (kexue.fm/archives/8397): for a grid position (row, column) the first half of each
    /// query/key is rotated by the row and the second half by the column, so scores depend on (Δrow, Δcolumn).
    /// Needs position ids (B, T, 2) in <see cref="PositionContext.PositionIds"/>.
    /// </summary>
    Rotary2D,
    /// <summary>
    /// Transformer-XL / XLNet relative positions (Dai et al. 2019, §3.3): scores get qᵢ·W_R·R(i − j) + u·kⱼ + v·W_R·R(i − j)
    /// with R a sinusoid of the distance, a per-layer projection W_R and learned per-head vectors u, v
    /// (<see cref="XlRelativePosition"/>).
    /// </summary>
    XlRelative,
    /// <summary>
    /// DeBERTa's disentangled attention (He et al. 2021, with DeBERTa-v2's shared projections): scores get
    /// content→position qᵢ·K_r[δ(i, j)] and position→content kⱼ·Q_r[δ(i, j)], δ = clip(i − j, −k, k − 1) + k, where
    /// K_r, Q_r are the model's relative embeddings (2k, H) projected by the layer's own key and query weights;
    /// the scale is 1/√(3·dk).
    /// </summary>
    Disentangled,
}

/// <summary>
/// The position tables of one forward pass, built once and handed to every layer through
/// <see cref="AttentionContext"/>: rotary (sin, cos) and NEZHA tables are made on first use for a width and then
/// reused by every later layer; T5's bias is computed by the model before the first block. Queries sit at
/// positions <see cref="Past"/> .. <see cref="Past"/> + <see cref="Length"/> − 1 and keys at 0 .. Past + Length − 1.
/// </summary>
public sealed class PositionContext : IDisposable
{
    readonly Dictionary<long, (Tensor Sin, Tensor Cos)> rotary = [];
    readonly Dictionary<(long, int), Tensor> relative = [];
    readonly Dictionary<int, Tensor> alibi = [];
    readonly Dictionary<long, (Tensor Table, Tensor Index)> xl = [];
    readonly Dictionary<int, Tensor> disentangled = [];

    /// <summary>Positions for <paramref name="length"/> new tokens after <paramref name="past"/> cached ones.</summary>
    public PositionContext(long length, long past, Device device, ScalarType dtype)
    {
        Length = length;
        Past = past;
        Device = device;
        DType = dtype;
    }

    /// <summary>New tokens (queries).</summary>
    public long Length { get; }
    /// <summary>Cached positions before them.</summary>
    public long Past { get; }
    /// <summary>Device of the tables.</summary>
    public Device Device { get; }
    /// <summary>Floating type of the tables.</summary>
    public ScalarType DType { get; }

    /// <summary>Self-attention score bias (1, h, Tq, Tk) of a bucketed relative scheme, set by the model (and owned by its dispose scope); null otherwise.</summary>
    public Tensor? Bias { get; set; }

    /// <summary>DeBERTa's relative embeddings (2k, H) after their norm, set by the model (and owned by its dispose scope); null otherwise.</summary>
    public Tensor? RelativeEmbeddings { get; set; }

    /// <summary>
    /// Custom positions of the new tokens (bert4keras <c>custom_position_ids</c>): (B, T) for rotary, (B, T, 2) rows and
    /// columns for <see cref="AttentionPosition.Rotary2D"/>; null for Past .. Past + T − 1. Owned by the caller.
    /// </summary>
    public Tensor? PositionIds { get; init; }

    /// <summary>Rotary (sin, cos), each (Tq, d) — (B, 1, Tq, d) with custom position ids — for the query positions (keys are rotated as they enter the cache).</summary>
    public (Tensor Sin, Tensor Cos) Rotary(long dim)
    {
        if (rotary.TryGetValue(dim, out var t)) return t;
        if (PositionIds is { } ids)
        {
            if (ids.dim() != 2) throw new ArgumentException($"rotary positions take position ids (B, T), got shape [{string.Join(", ", ids.shape)}]");
            t = Detached(RotaryEmbedding.TablesAt(ids, dim, DType));
            rotary[dim] = t;
            return t;
        }
        var (sin, cos) = RotaryEmbedding.Tables(Past + Length, dim, Device, DType);
        if (Past > 0)
        {
            var (s, c) = (sin.narrow(0, Past, Length).contiguous(), cos.narrow(0, Past, Length).contiguous());
            sin.Dispose(); cos.Dispose();
            (sin, cos) = (s, c);
        }
        t = (sin.DetachFromDisposeScope(), cos.DetachFromDisposeScope());
        rotary[dim] = t;
        return t;
    }

    /// <summary>2D rotary (sin, cos), each (B, 1, Tq, d): the first d/2 dimensions by row, the last d/2 by column.</summary>
    /// <exception cref="ArgumentException">No (B, T, 2) position ids, or d not a multiple of 4.</exception>
    public (Tensor Sin, Tensor Cos) Rotary2D(long dim)
    {
        if (rotary.TryGetValue(-dim, out var t)) return t;
        if (PositionIds is not { } ids || ids.dim() != 3 || ids.shape[2] != 2)
            throw new ArgumentException("2D rotary positions need (row, column) position ids of shape (B, T, 2) (ModelInput.PositionIds)" +
                (PositionIds is null ? "" : $", got shape [{string.Join(", ", PositionIds.shape)}]"));
        if (dim % 4 != 0) throw new ArgumentException($"2D rotary positions need a key size divisible by 4 (two rotary halves of even width), got {dim}");
        using (var scope = torch.NewDisposeScope())
        {
            var (rs, rc) = RotaryEmbedding.TablesAt(ids.select(2, 0), dim / 2, DType);
            var (cs, cc) = RotaryEmbedding.TablesAt(ids.select(2, 1), dim / 2, DType);
            t = Detached((torch.cat([rs, cs], -1), torch.cat([rc, cc], -1)));
        }
        rotary[-dim] = t;
        return t;
    }

    /// <summary>ALiBi's bias (1, h, Tq, Tk): −slopeₕ·|query position − key position|, queries at Past .. Past + T − 1.</summary>
    public Tensor Alibi(int heads)
    {
        if (alibi.TryGetValue(heads, out var b)) return b;
        using (var scope = torch.NewDisposeScope())
        {
            var q = torch.arange(Past, Past + Length, device: Device).unsqueeze(1);          // (Tq, 1)
            var k = torch.arange(Past + Length, device: Device).unsqueeze(0);                // (1, Tk)
            var distance = (q - k).abs().to(ScalarType.Float64);
            var slopes = torch.tensor(AlibiSlopes(heads), device: Device).view(heads, 1, 1);
            b = (-(slopes * distance)).to(DType).unsqueeze(0).DetachFromDisposeScope();
        }
        alibi[heads] = b;
        return b;
    }

    /// <summary>
    /// ALiBi head slopes: for n a power of two, 2^(−8/n), 2^(−16/n), …, 2^(−8); otherwise the slopes of the power of
    /// two below n followed by every other slope of twice that power (the paper's reference code).
    /// </summary>
    public static double[] AlibiSlopes(int heads)
    {
        if (heads <= 0) throw new ArgumentException($"heads must be positive, got {heads}");
        static double[] PowerOfTwo(int n) => [.. Enumerable.Range(1, n).Select(i => Math.Pow(2, -8.0 * i / n))];
        int p = 1 << (int)Math.Floor(Math.Log2(heads));
        if (p == heads) return PowerOfTwo(heads);
        return [.. PowerOfTwo(p), .. PowerOfTwo(2 * p).Where((_, i) => i % 2 == 0).Take(heads - p)];
    }

    /// <summary>
    /// Transformer-XL's relative sinusoid and where each (query, key) pair reads it: the table (Tq + Tk − 1, d) holds
    /// [sin(r·ω), cos(r·ω)] (XL's layout: all sines, then all cosines; ωⱼ = 10000^(−2j/d)) for the distances
    /// r = query − key from −(Tq − 1) to Tk − 1, and the index (Tq, Tk) is the row of r(i, j) = Past + i − j.
    /// </summary>
    public (Tensor Table, Tensor Index) XlRelative(long dim)
    {
        if (xl.TryGetValue(dim, out var t)) return t;
        if (dim % 2 != 0) throw new ArgumentException($"Transformer-XL positions need an even width, got {dim}");
        using (var scope = torch.NewDisposeScope())
        {
            long tq = Length, tk = Past + Length;
            var distance = torch.arange(-(tq - 1), tk, dtype: ScalarType.Float64, device: Device);                  // (L)
            var inv = torch.pow(10000.0, torch.arange(0, dim, 2, dtype: ScalarType.Float64, device: Device) / dim).reciprocal();
            var angle = distance.unsqueeze(1) * inv;                                                               // (L, d/2)
            var table = torch.cat([angle.sin(), angle.cos()], 1).to(DType);                                        // (L, d)
            var index = Past + torch.arange(tq, device: Device).unsqueeze(1) - torch.arange(tk, device: Device) + (tq - 1);   // (Tq, Tk)
            t = (table.DetachFromDisposeScope(), index.DetachFromDisposeScope());
        }
        xl[dim] = t;
        return t;
    }

    /// <summary>DeBERTa's relative index δ (Tq, Tk) = clip(query − key + k, 0, 2k − 1) with queries at Past + i, for span k.</summary>
    public Tensor DisentangledIndex(int span)
    {
        if (disentangled.TryGetValue(span, out var d)) return d;
        if (span < 1) throw new ArgumentException($"the relative span must be positive, got {span}");
        using (var scope = torch.NewDisposeScope())
        {
            var q = torch.arange(Past, Past + Length, device: Device).unsqueeze(1);
            var k = torch.arange(Past + Length, device: Device).unsqueeze(0);
            d = (q - k + span).clamp(0, 2 * span - 1).DetachFromDisposeScope();
        }
        disentangled[span] = d;
        return d;
    }

    static (Tensor, Tensor) Detached((Tensor Sin, Tensor Cos) t) => (t.Sin.DetachFromDisposeScope(), t.Cos.DetachFromDisposeScope());

    /// <summary>
    /// NEZHA/bert4keras relative table (T, T, d): row i of a (2m+1, d) sinusoid [sin θ₀, cos θ₀, sin θ₁, …] with
    /// θⱼ = i / 10000^(2j/d), gathered at clip(key − query, −m, m) + m; computed in float64, then cast.
    /// </summary>
    /// <exception cref="NotSupportedException">With cached positions (NEZHA decodes without a cache).</exception>
    public Tensor TypicalRelative(long dim, int maxDistance)
    {
        if (Past > 0) throw new NotSupportedException("a key/value cache with typical relative positions is not supported");
        if (relative.TryGetValue((dim, maxDistance), out var r)) return r;
        using (var scope = torch.NewDisposeScope())
        {
            long t = Length;
            var table = Embeddings.Sinusoid(torch.arange(2 * maxDistance + 1, dtype: ScalarType.Float64), dim).to(DType, Device);   // (2m+1, d)
            var idx = torch.arange(t, device: Device);
            var dist = (idx.unsqueeze(0) - idx.unsqueeze(1)).clamp(-maxDistance, maxDistance) + maxDistance;                    // (T, T): key − query
            r = table.index_select(0, dist.flatten()).view(t, t, dim).DetachFromDisposeScope();
        }
        relative[(dim, maxDistance)] = r;
        return r;
    }

    /// <inheritdoc/>
    public void Dispose()
    {
        foreach (var (s, c) in rotary.Values) { s.Dispose(); c.Dispose(); }
        foreach (var r in relative.Values) r.Dispose();
        foreach (var b in alibi.Values) b.Dispose();
        foreach (var (table, index) in xl.Values) { table.Dispose(); index.Dispose(); }
        foreach (var d in disentangled.Values) d.Dispose();
        xl.Clear();
        disentangled.Clear();
        rotary.Clear();
        relative.Clear();
        alibi.Clear();
    }
}

/// <summary>
/// T5's relative position bias (Raffel et al.): a learned scalar per head and bucket of the key − query
/// distance, shared by every layer of a stack (Hugging Face keeps it in the first block). Parameter <c>weight</c>
/// (buckets, heads).
/// </summary>
public sealed class RelativePositionBias : nn.Module
{
    readonly bool bidirectional;
    readonly int buckets, maxDistance;
#pragma warning disable IDE0044
    Parameter weight;
#pragma warning restore IDE0044

    /// <summary>Creates the bias table.</summary>
    public RelativePositionBias(int heads, int buckets, int maxDistance, bool bidirectional, string name = "relative_bias") : base(name)
    {
        if (buckets < 2 || maxDistance < 1) throw new ArgumentException($"relative buckets must be ≥ 2 and the distance ≥ 1, got {buckets} and {maxDistance}");
        this.bidirectional = bidirectional;
        this.buckets = buckets;
        this.maxDistance = maxDistance;
        weight = new Parameter(torch.zeros(buckets, heads));
        RegisterComponents();
    }

    /// <summary>The bias (1, heads, T, past + T) for <paramref name="length"/> queries after <paramref name="past"/> cached positions.</summary>
    public Tensor Forward(long length, long past, Device device)
    {
        using var scope = torch.NewDisposeScope();
        var query = torch.arange(past, past + length, device: device).unsqueeze(1);       // (T, 1)
        var key = torch.arange(past + length, device: device).unsqueeze(0);               // (1, past + T)
        var bucket = Bucket(key - query, bidirectional, buckets, maxDistance);
        var values = weight.index_select(0, bucket.flatten()).view(length, past + length, -1);   // (T, past + T, heads)
        return values.permute(2, 0, 1).unsqueeze(0).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// T5's bucket of a relative position (key − query): exact buckets for small distances, logarithmic ones
    /// up to <paramref name="maxDistance"/>, one shared bucket beyond; bidirectional halves the buckets by sign.
    /// </summary>
    public static Tensor Bucket(Tensor relative, bool bidirectional, int numBuckets, int maxDistance)
    {
        using var scope = torch.NewDisposeScope();
        var buckets = torch.zeros_like(relative);
        if (bidirectional)
        {
            numBuckets /= 2;
            buckets = buckets + (relative > 0).to(ScalarType.Int64) * numBuckets;
            relative = relative.abs();
        }
        else relative = -torch.minimum(relative, torch.zeros_like(relative));
        int maxExact = numBuckets / 2;
        var isSmall = relative < maxExact;
        var large = maxExact + ((relative.to(ScalarType.Float32) / maxExact).log() / Math.Log((double)maxDistance / maxExact) * (numBuckets - maxExact)).to(ScalarType.Int64);
        large = torch.minimum(large, torch.full_like(large, numBuckets - 1));
        return (buckets + torch.where(isSmall, relative, large)).MoveToOuterDisposeScope();
    }
}
