namespace Bert4Sharp.Layers;

using static TorchSharp.torch;

/// <summary>Cached keys and values of every layer, (B, heads, T, d) each, for incremental decoding.</summary>
public sealed class KeyValueCache : IDisposable
{
    internal readonly List<(Tensor Key, Tensor Value)?> Layers;

    /// <summary>An empty cache for <paramref name="layers"/> layers.</summary>
    public KeyValueCache(int layers) => Layers = Enumerable.Repeat<(Tensor, Tensor)?>(null, layers).ToList();

    /// <summary>A second cache travelling with this one (cross-attention keys and values of an encoder–decoder), reordered and disposed with it.</summary>
    public KeyValueCache? Cross { get; set; }

    /// <summary>Number of cached positions.</summary>
    public long Length => Layers.Count > 0 && Layers[0] is { } kv ? kv.Key.shape[2] : 0;

    /// <summary>Keys and values of <paramref name="layer"/>, or null when nothing is cached yet.</summary>
    internal (Tensor Key, Tensor Value)? this[int layer] => layer < Layers.Count ? Layers[layer] : throw new ArgumentOutOfRangeException(nameof(layer), $"the cache has {Layers.Count} layers, asked for layer {layer}");

    internal void Set(int layer, Tensor key, Tensor value)
    {
        if (Layers[layer] is { } old) { old.Key.Dispose(); old.Value.Dispose(); }
        Layers[layer] = (key.DetachFromDisposeScope(), value.DetachFromDisposeScope());
    }

    /// <summary>Keeps batch rows <paramref name="rows"/> (beam search reordering).</summary>
    public void Select(Tensor rows)
    {
        for (int i = 0; i < Layers.Count; i++)
            if (Layers[i] is { } kv) Set(i, kv.Key.index_select(0, rows), kv.Value.index_select(0, rows));
        Cross?.Select(rows);
    }

    /// <inheritdoc/>
    public void Dispose()
    {
        foreach (var kv in Layers) if (kv is { } t) { t.Key.Dispose(); t.Value.Dispose(); }
        Layers.Clear();
        Cross?.Dispose();
    }
}

/// <summary>
/// Everything a block needs besides its input: masks, position tables, the cache, the condition of a
/// conditional LayerNorm, RealFormer's running scores, and the encoder memory of a decoder. One record instead
/// of growing parameter lists; built once per forward by the model.
/// </summary>
public sealed class AttentionContext
{
    /// <summary>Additive self-attention mask, broadcastable to (B, heads, Tq, Tk), or null.</summary>
    public Tensor? Mask { get; init; }
    /// <summary><see cref="Mask"/> is exactly causal (no padding, no cache): kernels may use a fused causal path.</summary>
    public bool MaskIsCausal { get; init; }
    /// <summary>Self attention is causal (language model, decoder): see <see cref="AttentionCall.Causal"/>.</summary>
    public bool Causal { get; init; }
    /// <summary>Position tables of this forward.</summary>
    public required PositionContext Positions { get; init; }
    /// <summary>Key/value cache (self attention; <see cref="KeyValueCache.Cross"/> holds cross-attention keys), or null.</summary>
    public KeyValueCache? Cache { get; init; }
    /// <summary>Condition (B, C) of conditional LayerNorm, or null.</summary>
    public Tensor? Condition { get; init; }
    /// <summary>RealFormer: blocks add the previous block's pre-softmax scores and pass theirs on in <see cref="Scores"/>.</summary>
    public bool ResidualScores { get; init; }
    /// <summary>RealFormer's running scores (B, h, T, T), updated by each block.</summary>
    public Tensor? Scores { get; set; }
    /// <summary>Encoder states (B, S, H) that cross attention reads, or null.</summary>
    public Tensor? Memory { get; init; }
    /// <summary>Additive mask (B, 1, 1, S) over <see cref="Memory"/>, or null.</summary>
    public Tensor? MemoryMask { get; init; }

    /// <summary>A context with just a mask and fresh positions for <paramref name="x"/> (B, T, H): what a block run on its own needs.</summary>
    public static AttentionContext For(Tensor x, Tensor? mask) =>
        new() { Mask = mask, Positions = new PositionContext(x.shape[1], 0, x.device, x.dtype) };
}
