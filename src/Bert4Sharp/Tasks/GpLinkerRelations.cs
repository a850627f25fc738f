namespace Bert4Sharp.Tasks;

using Bert4Sharp.Models;
using Bert4Sharp.Tokenization;
using TorchSharp;
using static TorchSharp.torch;

/// <summary>Options of the GPLinker heads (<see cref="GpLinkerRelationExtractor"/>, <see cref="GpLinkerEventExtractor"/>).</summary>
public sealed record GpLinkerOptions
{
    /// <summary>Head size d of every pointer (64 in the posts).</summary>
    public int HeadSize { get; init; } = 64;
    /// <summary>Use <see cref="EfficientGlobalPointer"/> instead of <see cref="GlobalPointer"/> for every pointer.</summary>
    public bool Efficient { get; init; }
    /// <summary>Dropout on the encoder output (training only).</summary>
    public double Dropout { get; init; } = 0.1;
    /// <summary>
    /// Decoding keeps at most this many spans per type (relations) or per text (events), the highest scores first, and
    /// at most this many triples per text (the first in subject order): a guard for barely trained models whose score
    /// matrices are half positive (the pairing, the clique search and the output would otherwise take hours and
    /// gigabytes). A trained model stays far below it.
    /// </summary>
    public int MaxSpans { get; init; } = 64;
}

/// <summary>A relation as character spans [Start, End) of its text: subject, predicate, object.</summary>
public readonly record struct RelationSpan(int SubjectStart, int SubjectEnd, string Predicate, int ObjectStart, int ObjectEnd);

/// <summary>A text and its relations.</summary>
/// <param name="Text">The text.</param>
/// <param name="Relations">Its relations as character spans.</param>
public sealed record RelationExample(string Text, IReadOnlyList<RelationSpan> Relations);

/// <summary>A decoded relation in tokens (inclusive ends): subject start..end, predicate index, object start..end.</summary>
public readonly record struct TokenRelation(int SubjectStart, int SubjectEnd, int Predicate, int ObjectStart, int ObjectEnd);

/// <summary>A padded batch of <see cref="RelationExample"/>s with the gold cells of the three pointers.</summary>
public sealed class RelationBatch : IDisposable
{
    internal RelationBatch(Tensor ids, Tensor mask, IReadOnlyList<EncodedText> items, List<GlobalPointerSpan>[] entities,
        List<GlobalPointerSpan>[] heads, List<GlobalPointerSpan>[] tails, int dropped)
    {
        Ids = ids; Mask = mask; Items = items; Entities = entities; Heads = heads; Tails = tails; Dropped = dropped;
    }

    /// <summary>Token ids (B, T).</summary>
    public Tensor Ids { get; }
    /// <summary>1 at real tokens (B, T).</summary>
    public Tensor Mask { get; }
    /// <summary>The encodings (tokens and character offsets).</summary>
    public IReadOnlyList<EncodedText> Items { get; }
    /// <summary>Gold entity cells: type 0 subject, 1 object, (start, end) inclusive tokens.</summary>
    public IReadOnlyList<IReadOnlyList<GlobalPointerSpan>> Entities { get; }
    /// <summary>Gold head links: type = predicate, (subject start, object start).</summary>
    public IReadOnlyList<IReadOnlyList<GlobalPointerSpan>> Heads { get; }
    /// <summary>Gold tail links: type = predicate, (subject end, object end).</summary>
    public IReadOnlyList<IReadOnlyList<GlobalPointerSpan>> Tails { get; }
    /// <summary>Relations left out because a subject or object is off token boundaries or truncated away.</summary>
    public int Dropped { get; }

    /// <inheritdoc/>
    public void Dispose() { Ids.Dispose(); Mask.Dispose(); }
}

/// <summary>
/// GPLinker for relation extraction (Su, kexue.fm/archives/8888): an encoder and three pointers — entities with two
/// types (subject, object; RoPE, lower triangle masked), head links and tail links with one type per predicate (no
/// RoPE, no triangle mask: cell (i, j) pairs the subject's token i with the object's token j). Each is trained with the
/// sparse multilabel cross-entropy (<see cref="GlobalPointerLoss"/>, sparse form, summed over types); a triple is
/// decoded where both links of its predicate score &gt; 0 (<see cref="GpLinkerRelationDecoding"/>). Parameters
/// <c>encoder.*</c>, <c>entity.*</c>, <c>head.*</c>, <c>tail.*</c>.
/// </summary>
public sealed class GpLinkerRelationExtractor : nn.Module
{
    static readonly GlobalPointerLossOptions LossOptions = new() { Form = GlobalPointerLossForm.Sparse, Reduction = GlobalPointerReduction.SumTypesMeanBatch };
    readonly Dictionary<string, int> predicateIndex;
#pragma warning disable IDE0044
    TransformerModel encoder;
    GlobalPointerHead entity;
    GlobalPointerHead head;
    GlobalPointerHead tail;
#pragma warning restore IDE0044

    /// <summary>Puts the three pointers for <paramref name="predicates"/> on <paramref name="encoder"/> (built with <see cref="Application.Encoder"/>).</summary>
    public GpLinkerRelationExtractor(TransformerModel encoder, IReadOnlyList<string> predicates, GpLinkerOptions? options = null) : base("gplinker_relations")
    {
        if (encoder.Application != Application.Encoder) throw new ArgumentException($"the encoder must be built with Application.Encoder, got {encoder.Application}");
        if (predicates.Count == 0) throw new ArgumentException("a relation extractor needs at least one predicate", nameof(predicates));
        if (predicates.Distinct().Count() != predicates.Count) throw new ArgumentException("predicates must be distinct", nameof(predicates));
        Options = options ??= new();
        this.encoder = encoder;
        Predicates = [.. predicates];
        predicateIndex = Predicates.Select((p, i) => (p, i)).ToDictionary(x => x.p, x => x.i);
        int h = encoder.HiddenSize;
        entity = Pointer(h, new GlobalPointerOptions { Types = 2, HeadSize = options.HeadSize }, options.Efficient);
        head = Pointer(h, new GlobalPointerOptions { Types = predicates.Count, HeadSize = options.HeadSize, Rope = false, TrilMask = false }, options.Efficient);
        tail = Pointer(h, new GlobalPointerOptions { Types = predicates.Count, HeadSize = options.HeadSize, Rope = false, TrilMask = false }, options.Efficient);
        RegisterComponents();
        InitializeHeads(this, encoder);
    }

    /// <summary>The predicates, in type order.</summary>
    public IReadOnlyList<string> Predicates { get; }
    /// <summary>The options.</summary>
    public GpLinkerOptions Options { get; }

    internal static GlobalPointerHead Pointer(int hidden, GlobalPointerOptions o, bool efficient) =>
        efficient ? new EfficientGlobalPointer(hidden, o) : new GlobalPointer(hidden, o);

    /// <summary>Pointers start as BERT's dense layers, N(0, initializer_range) and zero biases (as <see cref="EntityRecognizer"/>), on the encoder's device.</summary>
    internal static void InitializeHeads(nn.Module model, TransformerModel encoder)
    {
        using (torch.no_grad())
            foreach (var (_, p) in model.named_parameters().Where(p => !p.name.StartsWith("encoder.", StringComparison.Ordinal)))
                if (p.dim() >= 2) p.normal_(0, encoder.Config.InitializerRange); else p.zero_();
        model.to(encoder.Device);
    }

    /// <summary>The token span (inclusive end) of a character span, or null when it is off token boundaries or truncated away.</summary>
    internal static (int Start, int End)? TokenSpan(IReadOnlyList<TokenSpan> offsets, int start, int end)
    {
        var m = TokenSpans.FromCharacters(offsets, [new EntitySpan(start, end, "")]);
        return m.Spans.Count == 1 ? (m.Spans[0].Start, m.Spans[0].End - 1) : null;
    }

    /// <summary>Tokenizes and pads examples (truncated to <paramref name="maxLength"/> tokens) and maps their relations to pointer cells.</summary>
    /// <exception cref="ArgumentException">A predicate outside <see cref="Predicates"/>.</exception>
    public RelationBatch Prepare(BertWordPieceTokenizer tokenizer, IReadOnlyList<RelationExample> examples, int maxLength)
    {
        var items = examples.Select(e => tokenizer.Encode(e.Text, maxLength: maxLength)).ToList();
        var entities = new List<GlobalPointerSpan>[examples.Count];
        var heads = new List<GlobalPointerSpan>[examples.Count];
        var tails = new List<GlobalPointerSpan>[examples.Count];
        int dropped = 0;
        for (int i = 0; i < examples.Count; i++)
        {
            entities[i] = []; heads[i] = []; tails[i] = [];
            foreach (var r in examples[i].Relations)
            {
                if (!predicateIndex.TryGetValue(r.Predicate, out int p))
                    throw new ArgumentException($"predicate '{r.Predicate}' of text {i} is not one of this model's {Predicates.Count} predicates");
                var s = TokenSpan(items[i].Offsets, r.SubjectStart, r.SubjectEnd);
                var o = TokenSpan(items[i].Offsets, r.ObjectStart, r.ObjectEnd);
                if (s is not { } sv || o is not { } ov) { dropped++; continue; }
                entities[i].Add(new GlobalPointerSpan(0, sv.Start, sv.End));
                entities[i].Add(new GlobalPointerSpan(1, ov.Start, ov.End));
                heads[i].Add(new GlobalPointerSpan(p, sv.Start, ov.Start));
                tails[i].Add(new GlobalPointerSpan(p, sv.End, ov.End));
            }
        }
        var (ids, mask) = SequencePadding.Pad(items.Select(e => e.Ids).ToList(), tokenizer.PaddingId, encoder.Device);
        return new RelationBatch(ids, mask, items, entities, heads, tails, dropped);
    }

    /// <summary>The three score tensors: entities (B, 2, T, T), head links (B, P, T, T), tail links (B, P, T, T).</summary>
    public (Tensor Entity, Tensor Head, Tensor Tail) Scores(Tensor ids, Tensor mask)
    {
        using var scope = torch.NewDisposeScope();
        using var output = encoder.Encode(ids, null, mask);
        var x = output.LastHiddenState;                                                   // (B, T, H)
        if (training && Options.Dropout > 0) x = nn.functional.dropout(x, Options.Dropout, true);
        return (entity.forward(x, mask).MoveToOuterDisposeScope(), head.forward(x, mask).MoveToOuterDisposeScope(), tail.forward(x, mask).MoveToOuterDisposeScope());
    }

    /// <summary>The training loss: the sparse multilabel cross-entropy of each pointer (summed over types, mean over the batch), summed.</summary>
    public Tensor Loss(RelationBatch batch)
    {
        using var scope = torch.NewDisposeScope();
        var (e, h, t) = Scores(batch.Ids, batch.Mask);
        var loss = GlobalPointerLoss.Compute(e, batch.Entities, LossOptions) + GlobalPointerLoss.Compute(h, batch.Heads, LossOptions) + GlobalPointerLoss.Compute(t, batch.Tails, LossOptions);
        return loss.MoveToOuterDisposeScope();
    }

    /// <summary>Relations of each text as character spans of that text (evaluation mode, no gradients); <paramref name="capped"/> counts texts where <see cref="GpLinkerOptions.MaxSpans"/> cut candidates.</summary>
    public IReadOnlyList<IReadOnlyList<RelationSpan>> Predict(BertWordPieceTokenizer tokenizer, IReadOnlyList<string> texts, int maxLength, out int capped, int batchSize = 16)
    {
        bool wasTraining = training;
        eval();
        var result = new IReadOnlyList<RelationSpan>[texts.Count];
        var order = Enumerable.Range(0, texts.Count).OrderBy(i => texts[i].Length).ToArray();   // batches of similar lengths pad less
        capped = 0;
        try
        {
            for (int b = 0; b < texts.Count; b += batchSize)
            {
                using var scope = torch.NewDisposeScope();
                using var g = torch.no_grad();
                var ids = order.Skip(b).Take(batchSize).ToArray();
                using var batch = Prepare(tokenizer, ids.Select(k => new RelationExample(texts[k], [])).ToList(), maxLength);
                var (e, h, t) = Scores(batch.Ids, batch.Mask);
                int n = (int)e.shape[0], len = (int)e.shape[2], p = Predicates.Count;
                float[] ea = Host(e), ha = Host(h), ta = Host(t);
                for (int i = 0; i < n; i++)
                {
                    var offsets = batch.Items[i].Offsets;
                    var triples = GpLinkerRelationDecoding.Decode(ea.AsSpan(i * 2 * len * len, 2 * len * len), ha.AsSpan(i * p * len * len, p * len * len),
                        ta.AsSpan(i * p * len * len, p * len * len), p, len, offsets.Count, out bool cut, maxEntities: Options.MaxSpans, maxTriples: Options.MaxSpans);
                    if (cut) capped++;
                    var spans = new List<RelationSpan>();
                    foreach (var x in triples)
                    {
                        var s = TokenSpans.ToCharacters(offsets, new EntitySpan(x.SubjectStart, x.SubjectEnd + 1, ""));
                        var o = TokenSpans.ToCharacters(offsets, new EntitySpan(x.ObjectStart, x.ObjectEnd + 1, ""));
                        if (s is { } sv && o is { } ov) spans.Add(new RelationSpan(sv.Start, sv.End, Predicates[x.Predicate], ov.Start, ov.End));
                    }
                    result[ids[i]] = spans.Distinct().ToList();
                }
            }
        }
        finally { train(wasTraining); }
        return result;
    }

    /// <summary>A score tensor as row-major float32 on the host.</summary>
    internal static float[] Host(Tensor scores)
    {
        using var cpu = scores.detach().to(ScalarType.Float32, CPU).contiguous();
        return cpu.data<float>().ToArray();
    }
}

/// <summary>GPLinker relation decoding on plain arrays (one text), so any engine producing the scores can share it.</summary>
public static class GpLinkerRelationDecoding
{
    /// <summary>
    /// Triples of one text: <paramref name="entity"/> (2, T, T) row-major (type 0 subject, 1 object), <paramref name="heads"/> and
    /// <paramref name="tails"/> (P, T, T). Positions 0 ([CLS]), <paramref name="tokens"/> − 1 ([SEP]) and from
    /// <paramref name="tokens"/> on (padding) are never part of an entity. A triple (s, p, o) is kept when subject s and object o
    /// score &gt; <paramref name="threshold"/>, and so do heads[p, s.start, o.start] and tails[p, s.end, o.end]. Sorted by
    /// (subject start, subject end, predicate, object start, object end).
    /// </summary>
    /// <param name="entity">Entity scores (2, T, T).</param>
    /// <param name="heads">Head-link scores (P, T, T).</param>
    /// <param name="tails">Tail-link scores (P, T, T).</param>
    /// <param name="predicates">P.</param>
    /// <param name="length">T.</param>
    /// <param name="tokens">Real tokens of the text, [CLS] and [SEP] included.</param>
    /// <param name="capped">True when more than <paramref name="maxEntities"/> subjects or objects scored above the threshold (the best were kept).</param>
    /// <param name="threshold">The score threshold (0 for the multilabel cross-entropy).</param>
    /// <param name="maxEntities">Subjects and objects kept at most, each (highest scores first).</param>
    /// <param name="maxTriples">Triples returned at most (the first in the sorted order); more sets <paramref name="capped"/>.</param>
    public static List<TokenRelation> Decode(ReadOnlySpan<float> entity, ReadOnlySpan<float> heads, ReadOnlySpan<float> tails, int predicates, int length, int tokens,
        out bool capped, float threshold = 0, int maxEntities = int.MaxValue, int maxTriples = int.MaxValue)
    {
        if (predicates < 1 || length < 0 || tokens < 0 || tokens > length || maxEntities < 1 || maxTriples < 1)
            throw new ArgumentOutOfRangeException(nameof(predicates), $"need predicates ≥ 1, 0 ≤ tokens ≤ length, maxEntities ≥ 1; got {predicates}, {tokens}, {length}, {maxEntities}");
        long tt = (long)length * length;
        if (entity.Length != 2 * tt || heads.Length != predicates * tt || tails.Length != predicates * tt)
            throw new ArgumentException($"scores must hold 2·T² = {2 * tt} (entity) and P·T² = {predicates * tt} (heads, tails) values; got {entity.Length}, {heads.Length}, {tails.Length}");
        var subjects = Spans(entity, 0, length, tokens, threshold, maxEntities, out bool c0);
        var objects = Spans(entity, 1, length, tokens, threshold, maxEntities, out bool c1);
        capped = c0 || c1;
        var result = new List<TokenRelation>();
        foreach (var (sh, st) in subjects)
            foreach (var (oh, ot) in objects)
                for (int p = 0; p < predicates; p++)
                    if (heads[(int)(p * tt + sh * length + oh)] > threshold && tails[(int)(p * tt + st * length + ot)] > threshold)
                        result.Add(new TokenRelation(sh, st, p, oh, ot));
        result.Sort((a, b) => (a.SubjectStart, a.SubjectEnd, a.Predicate, a.ObjectStart, a.ObjectEnd).CompareTo((b.SubjectStart, b.SubjectEnd, b.Predicate, b.ObjectStart, b.ObjectEnd)));
        if (result.Count > maxTriples)
        {
            capped = true;
            result.RemoveRange(maxTriples, result.Count - maxTriples);
        }
        return result;
    }

    /// <summary>
    /// Cells (start, end) of one type of a (types, T, T) score array above <paramref name="threshold"/>, inside tokens
    /// 1..<paramref name="tokens"/> − 2, in (start, end) order; at most <paramref name="max"/>, the highest scores.
    /// </summary>
    internal static List<(int Start, int End)> Spans(ReadOnlySpan<float> scores, int type, int length, int tokens, float threshold, int max, out bool capped)
    {
        var found = new List<(int Start, int End, float Score)>();
        int baseIndex = type * length * length;
        for (int i = 1; i < tokens - 1; i++)
            for (int j = 1; j < tokens - 1; j++)
            {
                float v = scores[baseIndex + i * length + j];
                if (v > threshold) found.Add((i, j, v));
            }
        capped = found.Count > max;
        if (capped) found = [.. found.OrderByDescending(x => x.Score).Take(max).OrderBy(x => (x.Start, x.End))];
        return found.Select(x => (x.Start, x.End)).ToList();
    }
}
