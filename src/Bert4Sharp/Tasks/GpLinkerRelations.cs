namespace Bert4Sharp.Tasks;

using Bert4Sharp.Models;
using Bert4Sharp.Tokenization;
using TorchSharp;
using static TorchSharp.torch;

/// <summary>A relation as character spans [Start, End) of its text: subject, predicate, object.</summary>
public readonly record struct RelationSpan(int SubjectStart, int SubjectEnd, string Predicate, int ObjectStart, int ObjectEnd);

/// <summary>A text and its relations.</summary>
/// <param name="Text">The text.</param>
/// <param name="Relations">Its relations as character spans.</param>
public sealed record RelationExample(string Text, IReadOnlyList<RelationSpan> Relations);

/// <summary>A decoded relation in tokens (inclusive ends): subject start..end, predicate index, object start..end.</summary>
public readonly record struct TokenRelation(int SubjectStart, int SubjectEnd, int Predicate, int ObjectStart, int ObjectEnd);

/// <summary>
/// GPLinker for relation extraction (Su, kexue.fm/archives/8888): entities with two types (subject, object) in the span
/// pointer, head links and tail links with one type per predicate (cell (i, j) pairs the subject's token i with the
/// object's token j); a triple is decoded where both links of its predicate score &gt; 0
/// (<see cref="GpLinkerRelationDecoding"/>). Parameters <c>encoder.*</c>, <c>nodes.*</c>, <c>head.*</c>, <c>tail.*</c>.
/// </summary>
public sealed class GpLinkerRelationExtractor : GpLinkerModel
{
    readonly Dictionary<string, int> predicateIndex;

    /// <summary>Puts the three pointers for <paramref name="predicates"/> on <paramref name="encoder"/> (built with <see cref="Application.Encoder"/>).</summary>
    public GpLinkerRelationExtractor(TransformerModel encoder, IReadOnlyList<string> predicates, GpLinkerOptions? options = null)
        : base("gplinker_relations", encoder, nodeTypes: 2, linkTypes: Distinct(predicates).Count, linkTrilMask: false, options)
    {
        Predicates = [.. predicates];
        predicateIndex = Predicates.Select((p, i) => (p, i)).ToDictionary(x => x.p, x => x.i);
    }

    static IReadOnlyList<string> Distinct(IReadOnlyList<string> predicates)
    {
        if (predicates.Count == 0) throw new ArgumentException("a relation extractor needs at least one predicate", nameof(predicates));
        if (predicates.Distinct().Count() != predicates.Count) throw new ArgumentException("predicates must be distinct", nameof(predicates));
        return predicates;
    }

    /// <summary>The predicates, in type order.</summary>
    public IReadOnlyList<string> Predicates { get; }

    /// <summary>
    /// Tokenizes and pads examples (truncated to <paramref name="maxLength"/> tokens) and maps their relations to pointer
    /// cells: subject (type 0) and object (type 1) spans, head link (predicate, subject start, object start), tail link
    /// (predicate, subject end, object end).
    /// </summary>
    /// <exception cref="ArgumentException">A predicate outside <see cref="Predicates"/>.</exception>
    public GpLinkerBatch Prepare(BertWordPieceTokenizer tokenizer, IReadOnlyList<RelationExample> examples, int maxLength) =>
        Batch(tokenizer, [.. examples.Select(e => e.Text)], maxLength, (i, item) =>
        {
            List<GlobalPointerSpan> entities = [], heads = [], tails = [];
            int dropped = 0;
            foreach (var r in examples[i].Relations)
            {
                if (!predicateIndex.TryGetValue(r.Predicate, out int p))
                    throw new ArgumentException($"predicate '{r.Predicate}' of text {i} is not one of this model's {Predicates.Count} predicates");
                var s = TokenSpan(item.Offsets, r.SubjectStart, r.SubjectEnd);
                var o = TokenSpan(item.Offsets, r.ObjectStart, r.ObjectEnd);
                if (s is not { } sv || o is not { } ov) { dropped++; continue; }
                entities.Add(new GlobalPointerSpan(0, sv.Start, sv.End));
                entities.Add(new GlobalPointerSpan(1, ov.Start, ov.End));
                heads.Add(new GlobalPointerSpan(p, sv.Start, ov.Start));
                tails.Add(new GlobalPointerSpan(p, sv.End, ov.End));
            }
            return (entities, heads, tails, dropped);
        });

    /// <summary>Relations of each text as character spans of that text (evaluation mode, no gradients); <paramref name="capped"/> counts texts where <see cref="GpLinkerOptions.MaxSpans"/> cut candidates.</summary>
    public IReadOnlyList<IReadOnlyList<RelationSpan>> Predict(BertWordPieceTokenizer tokenizer, IReadOnlyList<string> texts, int maxLength, out int capped, int batchSize = 16) =>
        PredictBatches<IReadOnlyList<RelationSpan>>(tokenizer, texts, maxLength, batchSize, (i, item, scores) =>
        {
            int len = (int)scores.Nodes.shape[2];
            var offsets = item.Offsets;
            var triples = GpLinkerRelationDecoding.Decode(Host(scores.Nodes[i]), Host(scores.Head[i]), Host(scores.Tail[i]), Predicates.Count, len, offsets.Count,
                out bool cut, maxEntities: Options.MaxSpans, maxTriples: Options.MaxSpans);
            var spans = new List<RelationSpan>();
            foreach (var x in triples)
            {
                var s = TokenSpans.ToCharacters(offsets, new EntitySpan(x.SubjectStart, x.SubjectEnd + 1, ""));
                var o = TokenSpans.ToCharacters(offsets, new EntitySpan(x.ObjectStart, x.ObjectEnd + 1, ""));
                if (s is { } sv && o is { } ov) spans.Add(new RelationSpan(sv.Start, sv.End, Predicates[x.Predicate], ov.Start, ov.End));
            }
            return (spans.Distinct().ToList(), cut);
        }, out capped);
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
