namespace Bert4Sharp.Layers;

using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

/// <summary>Options of <see cref="Embeddings"/>.</summary>
/// <param name="VocabSize">Token rows.</param>
/// <param name="Width">Embedding width (smaller than the hidden size when factorised).</param>
/// <param name="MaxPositions">Rows of a learned absolute position table; 0 for none (rotary models).</param>
/// <param name="SegmentVocab">Rows of the segment table; 0 for none.</param>
/// <param name="Norm">Normalisation after the sum, or null.</param>
/// <param name="Eps">Its epsilon.</param>
/// <param name="ProjectTo">Hidden size to project to (ALBERT, ELECTRA), or null.</param>
/// <param name="Dropout">Dropout after the norm (training only).</param>
/// <param name="HierarchicalAlpha">
/// Hierarchical decomposition of the learned positions (Su, kexue.fm/archives/7947): position i·n + j gets
/// α·uᵢ + (1−α)·uⱼ with uₖ = (pₖ − α·p₀)/(1−α), which equals pₖ below n and reaches n² positions (bert4keras
/// <c>hierarchical_position</c>, α = 0.4). Null: plain table.
/// </param>
/// <param name="PositionsFromPadding">RoBERTa: position of a real token = pad + its rank among real tokens (1-based); padding sits at position pad.</param>
/// <param name="SinusoidalPositions">Add fixed sinusoidal positions (Vaswani et al.; bert4keras SinusoidalPositionEmbedding, interleaved sin/cos) instead of a learned table.</param>
/// <param name="ProjectBias">The projection has a bias (not in RoFormerV2).</param>
/// <param name="DropoutBeforeNorm">Dropout before the norm (RoFormerV2) instead of after (BERT).</param>
public sealed record EmbeddingOptions(int VocabSize, int Width, int MaxPositions, int SegmentVocab, NormKind? Norm, double Eps,
    int? ProjectTo = null, double Dropout = 0, bool DropoutBeforeNorm = false, bool ProjectBias = true, double? HierarchicalAlpha = null,
    bool SinusoidalPositions = false, int? PositionsFromPadding = null);

/// <summary>
/// token + position + segment embeddings, then norm, dropout and an optional projection to the hidden
/// size (factorised embeddings). Parameters <c>word</c>, <c>position</c>, <c>segment</c>, <c>norm</c>, <c>project</c>.
/// </summary>
public sealed class Embeddings : nn.Module<Tensor, Tensor?, Tensor>
{
    readonly EmbeddingOptions options;
#pragma warning disable IDE0044
    Embedding word;
    Embedding? position;
    Embedding? segment;
    Norm? norm;
    Linear? project;
#pragma warning restore IDE0044

    /// <summary>Creates the layer.</summary>
    public Embeddings(EmbeddingOptions options, string name = "embeddings") : base(name)
    {
        this.options = options;
        word = nn.Embedding(options.VocabSize, options.Width);
        if (options.MaxPositions > 0) position = nn.Embedding(options.MaxPositions, options.Width);
        if (options.SegmentVocab > 0) segment = nn.Embedding(options.SegmentVocab, options.Width);
        if (options.Norm is NormKind k) norm = new Norm(options.Width, k, options.Eps);
        if (options.ProjectTo is int h) project = nn.Linear(options.Width, h, hasBias: options.ProjectBias);
        RegisterComponents();
    }

    /// <summary>The token embedding matrix (V, E), tied to the MLM decoder.</summary>
    public Parameter TokenWeight => word.weight!;

    /// <summary>The options.</summary>
    public EmbeddingOptions Options => options;

    /// <summary>[sin θ₀, cos θ₀, sin θ₁, …] with θⱼ = p / 10000^(2j/d), for positions of any shape (float64).</summary>
    public static Tensor Sinusoid(Tensor positions, long dim)
    {
        using var scope = torch.NewDisposeScope();
        var inv = torch.pow(10000.0, torch.arange(0, dim, 2, dtype: ScalarType.Float64, device: positions.device) / dim).reciprocal();
        var angle = positions.unsqueeze(-1) * inv;                                      // (..., d/2)
        return torch.stack([angle.sin(), angle.cos()], -1).flatten(-2).MoveToOuterDisposeScope();
    }

    /// <summary>Ids outside [0, <paramref name="rows"/>) would crash inside the native embedding lookup: name them instead.</summary>
    internal static void CheckRange(Tensor ids, long rows, string what, string field)
    {
        if (ids.numel() == 0) return;
        var (min, max) = ids.aminmax();                                                 // one pass, one copy to the host
        using var both = torch.stack([min, max]).cpu();
        min.Dispose(); max.Dispose();
        var values = both.data<long>();
        long lo = values[0], hi = values[1];
        if (lo < 0 || hi >= rows)
            throw new ArgumentException($"{what} id {(lo < 0 ? lo : hi)} is outside [0, {rows}) ({field} of the model); the tokenizer or the segment ids do not match this model");
    }

    /// <summary>Maximum sequence length the position scheme supports (int.MaxValue without a table).</summary>
    public long MaxLength => position is null ? int.MaxValue
        : options.HierarchicalAlpha is null ? options.MaxPositions : (long)options.MaxPositions * options.MaxPositions;

    /// <summary>Position embeddings (T, E) for positions 0..T-1.</summary>
    /// <exception cref="ArgumentException">T exceeds <see cref="MaxLength"/>.</exception>
    public Tensor Positions(long t, Device device)
    {
        if (t > MaxLength)
            throw new ArgumentException($"the sequence needs {t} positions but the model has {MaxLength} (max_position_embeddings / n_positions = {options.MaxPositions}{(options.HierarchicalAlpha is null ? "" : ", squared by hierarchical decomposition")}); truncate the text (e.g. Encode(maxLength: {MaxLength})) or generate fewer tokens");
        using var scope = torch.NewDisposeScope();
        var pos = torch.arange(t, device: device);
        if (options.HierarchicalAlpha is not double a) return position!.forward(pos).MoveToOuterDisposeScope();
        var table = position!.weight!;
        var u = (table - a * table.narrow(0, 0, 1)) / (1 - a);                              // (n, E)
        long n = options.MaxPositions;
        var hi = u.index_select(0, pos.div(n, rounding_mode: RoundingMode.floor));
        var lo = u.index_select(0, pos.remainder(n));
        return (a * hi + (1 - a) * lo).MoveToOuterDisposeScope();
    }

    /// <summary>Embeds token ids (B, T) and optional segment ids (B, T).</summary>
    /// <exception cref="ArgumentException">The sequence is longer than the position table.</exception>
    public override Tensor forward(Tensor ids, Tensor? segments) => Forward(ids, segments, null);

    /// <summary>
    /// Embeds token ids with optional segment ids and custom position ids (B, T) (bert4keras
    /// <c>custom_position_ids</c>); without them positions are 0..T-1. <paramref name="tokenEmbeddings"/> (B, T, E), when
    /// given, replaces the token table lookup (Hugging Face <c>inputs_embeds</c>); everything after it is the same.
    /// </summary>
    /// <exception cref="ArgumentException">Token embeddings whose shape is not (B, T, E) for ids (B, T).</exception>
    public Tensor Forward(Tensor ids, Tensor? segments, Tensor? positionIds, Tensor? tokenEmbeddings = null)
    {
        using var scope = torch.NewDisposeScope();
        long t = ids.shape[1];
        CheckRange(ids, options.VocabSize, "token", "vocab_size");
        if (segment is not null && segments is not null) CheckRange(segments, options.SegmentVocab, "segment", "type_vocab_size");
        if (tokenEmbeddings is not null && (tokenEmbeddings.dim() != 3 || tokenEmbeddings.shape[0] != ids.shape[0] || tokenEmbeddings.shape[1] != t || tokenEmbeddings.shape[2] != options.Width))
            throw new ArgumentException($"token embeddings must be (batch, length, width) = [{ids.shape[0]}, {t}, {options.Width}] for these ids, got [{string.Join(", ", tokenEmbeddings.shape)}]");
        var x = tokenEmbeddings ?? word.forward(ids);                                 // (B, T, E)
        if (positionIds is null && options.PositionsFromPadding is int pad)
        {
            var real = ids.ne(pad).to(ScalarType.Int64);
            positionIds = real.cumsum(1) * real + pad;                                 // (B, T)
        }
        if (positionIds is not null)
        {
            if (!positionIds.shape.SequenceEqual(ids.shape)) throw new ArgumentException($"position ids must have the shape of the ids [{string.Join(", ", ids.shape)}], got [{string.Join(", ", positionIds.shape)}]");
            long max = positionIds.numel() == 0 ? 0 : positionIds.max().item<long>() + 1;
            if (options.SinusoidalPositions) x = x + Sinusoid(positionIds.to(ScalarType.Float64), options.Width).to(x.dtype);
            else if (position is not null) x = x + Positions(Math.Max(max, 1), ids.device).index_select(0, positionIds.flatten()).view(x.shape);
            else throw new ArgumentException("custom position ids need learned or sinusoidal absolute positions; this model has none");
        }
        else if (options.SinusoidalPositions) x = x + Sinusoid(torch.arange(t, dtype: ScalarType.Float64, device: ids.device), options.Width).to(x.dtype).unsqueeze(0);
        else if (position is not null) x = x + Positions(t, ids.device).unsqueeze(0);
        if (segment is not null) x = x + segment.forward(segments ?? torch.zeros_like(ids));
        bool drop = training && options.Dropout > 0;
        if (drop && options.DropoutBeforeNorm) x = nn.functional.dropout(x, options.Dropout, true);
        if (norm is not null) x = norm.forward(x);
        if (drop && !options.DropoutBeforeNorm) x = nn.functional.dropout(x, options.Dropout, true);
        if (project is not null) x = project.forward(x);                              // (B, T, H)
        return x.MoveToOuterDisposeScope();
    }
}
