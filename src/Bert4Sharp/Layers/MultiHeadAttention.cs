namespace Bert4Sharp.Layers;

using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

/// <summary>How positions enter attention.</summary>
public enum AttentionPosition
{
    /// <summary>Nothing inside attention (absolute positions were added to the embeddings).</summary>
    None,
    /// <summary>Rotary embedding on queries and keys (RoFormer, RoFormerV2).</summary>
    Rotary,
    /// <summary>
    /// NEZHA's "typical" relative positions (Shaw et al.): a fixed sinusoidal table indexed by the key−query
    /// distance clipped to ±<see cref="AttentionOptions.MaxRelativePosition"/>, added to the keys in the scores
    /// and to the values in the output.
    /// </summary>
    TypicalRelative,
}

/// <summary>Options of <see cref="MultiHeadAttention"/>.</summary>
/// <param name="HiddenSize">Input and output width.</param>
/// <param name="Heads">Number of heads.</param>
/// <param name="HeadSize">Width of each head's values (and keys unless <paramref name="KeySize"/> is set).</param>
/// <param name="KeySize">Width of each head's queries/keys when it differs from <paramref name="HeadSize"/>.</param>
/// <param name="UseBias">Biases on the projections (false for RoFormerV2).</param>
/// <param name="Position">Position scheme inside attention.</param>
/// <param name="RotateValues">Rotary also on values (RoFormer <c>rotary_value</c>).</param>
/// <param name="Dropout">Dropout on attention probabilities (training only).</param>
/// <param name="MaxRelativePosition">Clipping distance for <see cref="AttentionPosition.TypicalRelative"/> (64 in NEZHA).</param>
public sealed record AttentionOptions(int HiddenSize, int Heads, int HeadSize, int? KeySize = null, bool UseBias = true,
    AttentionPosition Position = AttentionPosition.None, bool RotateValues = false, double Dropout = 0, int MaxRelativePosition = 64)
{
    /// <summary>Width of each head's queries and keys.</summary>
    public int QueryKeySize => KeySize ?? HeadSize;
}

/// <summary>
/// Multi-head self-attention with one fused QKV projection (one GEMM over all tokens) and PyTorch's
/// scaled-dot-product attention kernel. Parameters: <c>qkv</c> (rows: queries, keys, values) and <c>output</c>.
/// </summary>
public sealed class MultiHeadAttention : nn.Module<Tensor, Tensor?, Tensor>
{
    readonly AttentionOptions options;
#pragma warning disable IDE0044
    Linear qkv;
    Linear output;
#pragma warning restore IDE0044

    /// <summary>Creates the layer.</summary>
    /// <exception cref="ArgumentException">Non-positive sizes, or an odd head size with rotary positions.</exception>
    public MultiHeadAttention(AttentionOptions options, string name = "attention") : base(name)
    {
        if (options.Heads <= 0 || options.HeadSize <= 0 || options.QueryKeySize <= 0)
            throw new ArgumentException($"heads and head sizes must be positive, got {options.Heads}, {options.HeadSize}, {options.QueryKeySize}");
        if (options.Position is AttentionPosition.Rotary or AttentionPosition.TypicalRelative && options.QueryKeySize % 2 != 0)
            throw new ArgumentException($"sinusoidal positions need an even key size, got {options.QueryKeySize}");
        if (options.Position == AttentionPosition.TypicalRelative && options.QueryKeySize != options.HeadSize)
            throw new ArgumentException($"typical relative positions need key size = head size, got {options.QueryKeySize} and {options.HeadSize}");
        this.options = options;
        int qk = options.Heads * options.QueryKeySize, v = options.Heads * options.HeadSize;
        qkv = nn.Linear(options.HiddenSize, 2 * qk + v, hasBias: options.UseBias);
        output = nn.Linear(v, options.HiddenSize, hasBias: options.UseBias);
        RegisterComponents();
    }

    /// <summary>The options.</summary>
    public AttentionOptions Options => options;

    /// <summary>Attention of <paramref name="x"/> (B, T, H) to itself; <paramref name="mask"/> is additive, broadcastable to (B, heads, T, T).</summary>
    public override Tensor forward(Tensor x, Tensor? mask) => Forward(x, mask, null, out _, false);

    /// <summary>
    /// Attention that appends this call's keys and values to <paramref name="cache"/> (slot <paramref name="layer"/>)
    /// and attends over all of them; queries sit after the cached positions (rotary tables shift accordingly).
    /// <paramref name="mask"/> must cover the cached keys too: (…, T, past + T).
    /// </summary>
    public Tensor ForwardCached(Tensor x, Tensor? mask, Models.KeyValueCache cache, int layer) => Forward(x, mask, null, out _, false, cache, layer);

    /// <summary>
    /// RealFormer residual attention (He et al., arXiv:2012.11747): the pre-softmax scores get the previous
    /// layer's scores added, and the sum (B, heads, T, T) is passed on through <paramref name="scores"/>.
    /// </summary>
    public Tensor ForwardResidual(Tensor x, Tensor? mask, Tensor? previousScores, out Tensor scores)
    {
        var o = Forward(x, mask, previousScores, out var s, true);
        scores = s!;
        return o;
    }

    Tensor Forward(Tensor x, Tensor? mask, Tensor? previousScores, out Tensor? scores, bool wantScores, Models.KeyValueCache? cache = null, int layer = 0)
    {
        scores = null;
        using var scope = torch.NewDisposeScope();
        long b = x.shape[0], t = x.shape[1];
        int h = options.Heads, dk = options.QueryKeySize, dv = options.HeadSize;
        var proj = Dense.Apply(qkv, x);                                                        // (B, T, 2·h·dk + h·dv)
        var parts = proj.split([h * dk, h * dk, h * dv], -1);
        var q = parts[0].view(b, t, h, dk).transpose(1, 2);                               // (B, h, T, dk)
        var k = parts[1].view(b, t, h, dk).transpose(1, 2);
        var v = parts[2].view(b, t, h, dv).transpose(1, 2);                               // (B, h, T, dv)
        long past = cache?.Layers[layer] is { } kvPast ? kvPast.Key.shape[2] : 0;
        if (options.Position == AttentionPosition.Rotary)
        {
            var (sin, cos) = RotaryEmbedding.Tables(past + t, dk, x.device, x.dtype);
            if (past > 0) { sin = sin.narrow(0, past, t); cos = cos.narrow(0, past, t); }
            q = RotaryEmbedding.Apply(q, sin, cos);
            k = RotaryEmbedding.Apply(k, sin, cos);
            if (options.RotateValues) v = RotaryEmbedding.Apply(v, sin, cos);
        }
        if (cache is not null)
        {
            if (options.Position == AttentionPosition.TypicalRelative) throw new NotSupportedException("a key/value cache with typical relative positions is not supported");
            if (cache.Layers[layer] is { } kv)
            {
                k = torch.cat([kv.Key, k], 2);
                v = torch.cat([kv.Value, v], 2);
            }
            cache.Set(layer, k, v);
        }
        double p = training ? options.Dropout : 0;
        Tensor o;
        if (wantScores)
        {
            if (options.Position == AttentionPosition.TypicalRelative) throw new NotSupportedException("residual attention scores with typical relative positions are not supported");
            var a = q.matmul(k.transpose(-1, -2)) / Math.Sqrt(dk);                             // (B, h, T, T)
            if (previousScores is not null) a = a + previousScores;
            scores = a.MoveToOuterDisposeScope();
            var w = (mask is null ? a : a + mask).softmax(-1);
            if (p > 0) w = nn.functional.dropout(w, p, true);
            o = w.matmul(v);
        }
        else if (options.Position == AttentionPosition.TypicalRelative)
        {
            var r = RelativeTable(t, dk, options.MaxRelativePosition, x.device, x.dtype);   // (T, T, dk)
            var a = q.matmul(k.transpose(-1, -2)) + torch.einsum("bhjd,jkd->bhjk", q, r);    // (B, h, T, T)
            a = a / Math.Sqrt(dk);
            if (mask is not null) a = a + mask;
            a = a.softmax(-1);
            if (p > 0) a = nn.functional.dropout(a, p, true);
            o = a.matmul(v) + torch.einsum("bhjk,jkd->bhjd", a, r);
        }
        else o = nn.functional.scaled_dot_product_attention(q, k, v, mask, p, false);   // (B, h, T, dv)
        o = o.transpose(1, 2).reshape(b, t, h * dv);                                      // (B, T, h·dv)
        return Dense.Apply(output, o).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// NEZHA/bert4keras relative table: row i of a (2m+1, d) sinusoid [sin θ₀, cos θ₀, sin θ₁, …] with
    /// θⱼ = i / 10000^(2j/d), gathered at clip(key − query, −m, m) + m. Computed in float64, then cast.
    /// </summary>
    static Tensor RelativeTable(long t, long d, int m, Device device, ScalarType dtype)
    {
        using var scope = torch.NewDisposeScope();
        var rows = torch.arange(2 * m + 1, dtype: ScalarType.Float64).unsqueeze(1);
        var inv = torch.pow(10000.0, torch.arange(0, d, 2, dtype: ScalarType.Float64) / d).reciprocal();
        var angle = rows * inv.unsqueeze(0);                                                   // (2m+1, d/2)
        var table = torch.stack([angle.sin(), angle.cos()], -1).reshape(2 * m + 1, d).to(dtype, device);
        var idx = torch.arange(t, device: device);
        var dist = (idx.unsqueeze(0) - idx.unsqueeze(1)).clamp(-m, m) + m;                      // (T, T): key − query
        return table.index_select(0, dist.flatten()).view(t, t, d).MoveToOuterDisposeScope();
    }
}
