namespace Bert4Sharp.Tasks;

using Bert4Sharp.Tokenization;

/// <summary>How entity spans are written as one tag per token.</summary>
public enum TagScheme
{
    /// <summary>B-X begins, I-X continues, O is outside (IOB2).</summary>
    Bio,

    /// <summary>B-X begins, I-X continues, E-X ends, S-X is a single-token entity, O is outside.</summary>
    Bioes,
}

/// <summary>How tags that break the scheme (I-X after O, I-Y after B-X, E-X alone) become spans.</summary>
public enum InvalidTagRule
{
    /// <summary>
    /// conlleval / seqeval's default (non-strict) chunking: any I-X or E-X that cannot continue the entity before it
    /// (after O, E, S or another type) begins a new entity of type X; a type change always ends an entity.
    /// </summary>
    Conlleval,

    /// <summary>
    /// bert4keras's NER example: B-X (and S-X) begins an entity of type X; I (and E) of any type continues the open
    /// entity and keeps its type (E then closes it); an I or E with no open entity is dropped; O closes.
    /// </summary>
    Bert4keras,
}

/// <summary>An entity: tokens (or characters) <c>[Start, End)</c>, end exclusive, and its type.</summary>
public readonly record struct EntitySpan(int Start, int End, string Type)
{
    /// <summary>Number of tokens (or characters).</summary>
    public int Length => End - Start;
}

/// <summary>
/// The labels of a tagging scheme over entity types, numbered as bert4keras's NER example: 0 = O, then per type k
/// (in the order given) BIO: B = 1 + 2k, I = 2 + 2k; BIOES: B = 1 + 4k, I = 2 + 4k, E = 3 + 4k, S = 4 + 4k.
/// Converts spans ↔ tags on plain arrays and gives the CRF its <see cref="Constraints"/>.
/// </summary>
public sealed class TagSet
{
    readonly string[] types;
    readonly Dictionary<string, int> typeIndex;
    readonly string[] names;
    readonly Dictionary<string, int> nameIndex;
    readonly int width;

    /// <summary>A tag set for <paramref name="types"/> (distinct, non-empty, no '-' at the start).</summary>
    public TagSet(TagScheme scheme, IEnumerable<string> types)
    {
        Scheme = scheme;
        this.types = types.ToArray();
        if (this.types.Length == 0) throw new ArgumentException("a tag set needs at least one entity type");
        typeIndex = new Dictionary<string, int>(StringComparer.Ordinal);
        for (int k = 0; k < this.types.Length; k++)
        {
            if (string.IsNullOrEmpty(this.types[k])) throw new ArgumentException($"entity type {k} is empty");
            if (!typeIndex.TryAdd(this.types[k], k)) throw new ArgumentException($"entity type '{this.types[k]}' is listed twice");
        }
        width = scheme == TagScheme.Bio ? 2 : 4;
        var prefixes = scheme == TagScheme.Bio ? "BI" : "BIES";
        names = ["O", .. this.types.SelectMany(t => prefixes.Select(p => $"{p}-{t}"))];
        nameIndex = names.Select((n, i) => (n, i)).ToDictionary(x => x.n, x => x.i, StringComparer.Ordinal);
    }

    /// <summary>BIO or BIOES.</summary>
    public TagScheme Scheme { get; }

    /// <summary>Entity types in label order.</summary>
    public IReadOnlyList<string> Types => types;

    /// <summary>Number of labels (1 + 2·types for BIO, 1 + 4·types for BIOES).</summary>
    public int Count => names.Length;

    /// <summary>Tag names by id ("O", "B-PER", "I-PER", …).</summary>
    public IReadOnlyList<string> Names => names;

    /// <summary>The id of a tag name ("B-PER").</summary>
    public int Id(string tag) => nameIndex.TryGetValue(tag, out var id) ? id
        : throw new ArgumentException($"tag '{tag}' is not in this {Scheme} tag set ({string.Join(", ", names)})");

    /// <summary>Tags (length <paramref name="length"/>) for non-overlapping spans; other tokens are O.</summary>
    public int[] Encode(int length, IEnumerable<EntitySpan> spans)
    {
        if (length < 0) throw new ArgumentOutOfRangeException(nameof(length), $"length must be ≥ 0, got {length}");
        var tags = new int[length];
        var owner = new int[length];
        int n = 0;
        foreach (var span in spans)
        {
            n++;
            if (span.Start < 0 || span.End > length || span.Start >= span.End)
                throw new ArgumentException($"span {n} {span} is outside 0..{length} or empty (spans are [Start, End), end exclusive)");
            if (span.Type is null || !typeIndex.TryGetValue(span.Type, out int k))
                throw new ArgumentException($"span {n} {span} has type '{span.Type}', not one of {string.Join(", ", types)}");
            for (int t = span.Start; t < span.End; t++)
            {
                if (owner[t] != 0) throw new ArgumentException($"span {n} {span} overlaps span {owner[t]} at token {t}: BIO/BIOES tags cannot hold nested or overlapping entities");
                owner[t] = n;
            }
            int b = 1 + width * k;
            if (Scheme == TagScheme.Bioes && span.Length == 1) tags[span.Start] = b + 3;
            else
            {
                tags[span.Start] = b;
                for (int t = span.Start + 1; t < span.End; t++) tags[t] = b + 1;
                if (Scheme == TagScheme.Bioes) tags[span.End - 1] = b + 2;
            }
        }
        return tags;
    }

    /// <summary>Spans (token indices, end exclusive) of tag ids, reading invalid sequences by <paramref name="rule"/>.</summary>
    public EntitySpan[] Decode(ReadOnlySpan<int> tags, InvalidTagRule rule = InvalidTagRule.Conlleval)
    {
        for (int t = 0; t < tags.Length; t++)
            if ((uint)tags[t] >= (uint)Count)
                throw new ArgumentOutOfRangeException(nameof(tags), $"tag {tags[t]} at position {t} is outside 0..{Count - 1} ({Scheme} over {types.Length} types)");
        return rule == InvalidTagRule.Conlleval ? DecodeConlleval(tags) : DecodeBert4keras(tags);
    }

    /// <summary>Spans of tag names ("B-PER", …).</summary>
    public EntitySpan[] Decode(IEnumerable<string> tags, InvalidTagRule rule = InvalidTagRule.Conlleval) =>
        Decode(tags.Select(Id).ToArray(), rule);

    (char Prefix, int Type) Split(int id) => id == 0 ? ('O', -1) : ((Scheme == TagScheme.Bio ? "BI" : "BIES")[(id - 1) % width], (id - 1) / width);

    EntitySpan[] DecodeConlleval(ReadOnlySpan<int> tags)
    {
        var spans = new List<EntitySpan>();
        int start = -1;
        var (prevP, prevT) = ('O', -1);
        for (int t = 0; t <= tags.Length; t++)
        {
            var (p, type) = t < tags.Length ? Split(tags[t]) : ('O', -1);
            // the open entity ends before t: it was closed (E, S), or t begins/leaves (B, S, O), or the type changes
            bool ends = prevP != 'O' && (prevP is 'E' or 'S' || p is 'B' or 'S' or 'O' || type != prevT);
            if (ends) spans.Add(new EntitySpan(start, t, types[prevT]));
            // an entity begins at t: B or S, or an I/E that cannot continue what came before
            bool begins = p != 'O' && (p is 'B' or 'S' || prevP is 'E' or 'S' or 'O' || type != prevT);
            if (begins) start = t;
            (prevP, prevT) = (p, type);
        }
        return [.. spans];
    }

    EntitySpan[] DecodeBert4keras(ReadOnlySpan<int> tags)
    {
        var spans = new List<EntitySpan>();
        int start = -1, type = -1;
        void Close(int end)
        {
            if (start >= 0) spans.Add(new EntitySpan(start, end, types[type]));
            start = -1;
        }
        for (int t = 0; t < tags.Length; t++)
        {
            var (p, k) = Split(tags[t]);
            switch (p)
            {
                case 'B': Close(t); (start, type) = (t, k); break;
                case 'S': Close(t); (start, type) = (t, k); Close(t + 1); break;
                case 'I': break;                                    // continues an open entity (any type); orphans are dropped
                case 'E': if (start >= 0) Close(t + 1); break;
                default: Close(t); break;
            }
        }
        Close(tags.Length);
        return [.. spans];
    }

    /// <summary>
    /// The scheme's rules for <see cref="ConditionalRandomField"/>: BIO: I-X only after B-X or I-X, no start with I;
    /// BIOES: I-X/E-X only after B-X or I-X, B-X must be followed by I-X or E-X, start with O/B/S and end with O/E/S.
    /// </summary>
    public CrfConstraints Constraints()
    {
        int l = Count;
        var allowed = new bool[l, l];
        for (int i = 0; i < l; i++)
            for (int j = 0; j < l; j++)
            {
                var (pi, ki) = Split(i);
                var (pj, kj) = Split(j);
                bool continues = pj is 'I' or 'E';
                bool open = pi is 'B' or 'I';
                allowed[i, j] = continues ? open && ki == kj : !(open && Scheme == TagScheme.Bioes);
            }
        var starts = Enumerable.Range(0, l).Where(i => Split(i).Prefix is 'O' or 'B' or 'S').ToArray();
        int[]? ends = Scheme == TagScheme.Bioes ? Enumerable.Range(0, l).Where(i => Split(i).Prefix is 'O' or 'E' or 'S').ToArray() : null;
        return new CrfConstraints { Starts = starts, Ends = ends, AllowedTransitions = allowed };
    }
}

/// <summary>How a character span that does not fall on token boundaries is mapped to tokens.</summary>
public enum SpanAlignment
{
    /// <summary>Dropped (and counted as misaligned).</summary>
    Exact,

    /// <summary>Widened to the tokens it touches (and counted as misaligned).</summary>
    Expand,
}

/// <summary>Token spans from character spans: the kept spans, how many did not align with tokens, how many touched no token.</summary>
public sealed record TokenSpanMapping(IReadOnlyList<EntitySpan> Spans, int Misaligned, int Unmapped);

/// <summary>
/// Character spans ↔ token spans through a tokenizer's offsets (<see cref="EncodedText.Offsets"/>, UTF-16 units,
/// end exclusive; empty for [CLS]/[SEP]). Use the offsets of a single-text encoding: a second text's offsets point
/// into that text.
/// </summary>
public static class TokenSpans
{
    /// <summary>
    /// Token spans (end exclusive) of character spans (end exclusive). A span aligns when its first touched token
    /// starts at its start and its last touched token ends at its end; otherwise it is misaligned (dropped or widened,
    /// per <paramref name="alignment"/>). A span touching no token (spaces, truncated text) is unmapped and dropped.
    /// </summary>
    public static TokenSpanMapping FromCharacters(IReadOnlyList<TokenSpan> offsets, IEnumerable<EntitySpan> characterSpans, SpanAlignment alignment = SpanAlignment.Exact)
    {
        var kept = new List<EntitySpan>();
        int misaligned = 0, unmapped = 0, n = 0;
        foreach (var span in characterSpans)
        {
            if (span.Start < 0 || span.Start >= span.End)
                throw new ArgumentException($"character span {n} {span} is empty or starts before 0 (spans are [Start, End), end exclusive)");
            n++;
            int first = -1, last = -1;
            for (int i = 0; i < offsets.Count; i++)
            {
                var o = offsets[i];
                if (o.IsEmpty || o.End <= span.Start || o.Start >= span.End) continue;
                if (first < 0) first = i;
                last = i;
            }
            if (first < 0) { unmapped++; continue; }
            if (offsets[first].Start != span.Start || offsets[last].End != span.End)
            {
                misaligned++;
                if (alignment == SpanAlignment.Exact) continue;
            }
            kept.Add(new EntitySpan(first, last + 1, span.Type));
        }
        return new TokenSpanMapping(kept, misaligned, unmapped);
    }

    /// <summary>
    /// The character span of a token span (end exclusive), leaving out added tokens ([CLS], [SEP]) at its edges;
    /// null when it holds only added tokens.
    /// </summary>
    public static EntitySpan? ToCharacters(IReadOnlyList<TokenSpan> offsets, EntitySpan tokenSpan)
    {
        if (tokenSpan.Start < 0 || tokenSpan.End > offsets.Count || tokenSpan.Start >= tokenSpan.End)
            throw new ArgumentException($"token span {tokenSpan} is outside 0..{offsets.Count} or empty");
        int first = tokenSpan.Start, last = tokenSpan.End - 1;
        while (first <= last && offsets[first].IsEmpty) first++;
        while (last >= first && offsets[last].IsEmpty) last--;
        return first > last ? null : new EntitySpan(offsets[first].Start, offsets[last].End, tokenSpan.Type);
    }

    /// <summary>Character spans of token spans; spans of added tokens only are left out.</summary>
    public static EntitySpan[] ToCharacters(IReadOnlyList<TokenSpan> offsets, IEnumerable<EntitySpan> tokenSpans) =>
        [.. tokenSpans.Select(s => ToCharacters(offsets, s)).Where(s => s is not null).Select(s => s!.Value)];
}
