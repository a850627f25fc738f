namespace Bert4Sharp.Tokenization;

using System.Collections.Concurrent;
using System.Globalization;
using System.Text;
using System.Text.RegularExpressions;
using TorchSharp;

/// <summary>Which end loses tokens when a text is longer than the maximum length.</summary>
public enum TruncateFrom
{
    /// <summary>Drop tokens just before the end token (bert4keras <c>truncate_from='right'</c>).</summary>
    Right,
    /// <summary>Drop tokens just after the start token (bert4keras <c>truncate_from='left'</c>).</summary>
    Left,
}

/// <summary>Options of <see cref="BertWordPieceTokenizer"/>. Defaults follow bert4keras's <c>Tokenizer</c>.</summary>
public sealed record BertWordPieceOptions
{
    /// <summary>Lower-case, NFD-decompose and strip accents (Mn) first (bert4keras <c>do_lower_case</c>). Chinese BERT vocabularies are lower-case.</summary>
    public bool LowerCase { get; init; }

    /// <summary>Words longer than this many code points become one unknown token (bert4keras <c>word_maxlen</c>, 200).</summary>
    public int MaxWordLength { get; init; } = 200;

    /// <summary>Token put first (bert4keras <c>token_start</c>); null for none.</summary>
    public string? StartToken { get; init; } = "[CLS]";

    /// <summary>Token put last (bert4keras <c>token_end</c>); null for none.</summary>
    public string? EndToken { get; init; } = "[SEP]";

    /// <summary>Padding token.</summary>
    public string PaddingToken { get; init; } = "[PAD]";

    /// <summary>Unknown token; must be in the vocabulary.</summary>
    public string UnknownToken { get; init; } = "[UNK]";

    /// <summary>Mask token.</summary>
    public string MaskingToken { get; init; } = "[MASK]";

    /// <summary>
    /// Recognise the special tokens ([CLS], [SEP], [PAD], [UNK], [MASK]) written literally in the text, as
    /// Hugging Face does, so <c>"北京是[MASK]国的首都"</c> keeps its mask. bert4keras does not (it splits
    /// "[", "mask", "]"); set false for its exact behaviour.
    /// </summary>
    public bool RecognizeSpecialTokens { get; init; } = true;

    /// <summary>
    /// A word segmenter that runs first on the normalised text (WoBERT): segments that are in the
    /// vocabulary stay whole, the others are tokenised as usual. Must return pieces of its input, in order.
    /// </summary>
    public Func<string, IEnumerable<string>>? PreTokenizer { get; init; }

    /// <summary>
    /// The name of <see cref="PreTokenizer"/> as model directories record it (<c>"jieba"</c>; see
    /// <c>PreTokenization</c>), so a model saved with this tokenizer (e.g. a CLUE task model) keeps tokenising the same way; null when unnamed.
    /// </summary>
    public string? PreTokenizerName { get; init; }

    /// <summary>Token replacements applied after tokenisation (bert4keras <c>token_translate</c>).</summary>
    public IReadOnlyDictionary<string, string>? TokenTranslate { get; init; }
}

/// <summary>A token's place in the original text, in UTF-16 units; empty for added tokens ([CLS], [SEP]).</summary>
public readonly record struct TokenSpan(int Start, int End)
{
    /// <summary>Length in UTF-16 units.</summary>
    public int Length => End - Start;

    /// <summary>True for tokens that come from no text.</summary>
    public bool IsEmpty => End <= Start;
}

/// <summary>The result of <see cref="BertWordPieceTokenizer.Encode"/>: tokens, ids, segment ids and offsets.</summary>
public sealed class EncodedText
{
    readonly Vocabulary? vocabulary;
    string[]? tokens;

    internal EncodedText(string[]? tokens, int[] ids, int[] segmentIds, TokenSpan[] offsets, Vocabulary? vocabulary = null)
    {
        this.tokens = tokens;
        this.vocabulary = vocabulary;
        Ids = ids;
        SegmentIds = segmentIds;
        Offsets = offsets;
    }

    /// <summary>Token strings (vocabulary spelling; an unknown word appears as the unknown token).</summary>
    public IReadOnlyList<string> Tokens => tokens ??= Ids.Select(vocabulary!.IdToToken).ToArray();

    /// <summary>Token ids.</summary>
    public IReadOnlyList<int> Ids { get; }

    /// <summary>0 for the first text, 1 for the second.</summary>
    public IReadOnlyList<int> SegmentIds { get; }

    /// <summary>Where each token came from in its original text (first or second); empty for added tokens.</summary>
    public IReadOnlyList<TokenSpan> Offsets { get; }

    /// <summary>Number of tokens.</summary>
    public int Count => Ids.Count;
}

/// <summary>A padded batch: <c>[batch, length]</c> int64 tensors plus the per-text encodings.</summary>
public sealed class EncodedBatch : IDisposable
{
    internal EncodedBatch(torch.Tensor ids, torch.Tensor segments, torch.Tensor mask, IReadOnlyList<EncodedText> items)
    {
        InputIds = ids;
        SegmentIds = segments;
        AttentionMask = mask;
        Items = items;
    }

    /// <summary>Token ids, padded with the padding id.</summary>
    public torch.Tensor InputIds { get; }

    /// <summary>Segment ids, padded with 0.</summary>
    public torch.Tensor SegmentIds { get; }

    /// <summary>1 at real tokens, 0 at padding.</summary>
    public torch.Tensor AttentionMask { get; }

    /// <summary>The encodings before padding.</summary>
    public IReadOnlyList<EncodedText> Items { get; }

    /// <inheritdoc/>
    public void Dispose()
    {
        InputIds.Dispose();
        SegmentIds.Dispose();
        AttentionMask.Dispose();
    }
}

/// <summary>
/// BERT's WordPiece tokenizer with bert4keras semantics: every CJK character and every punctuation
/// character is a token of its own; optional lower-casing with accent stripping; control characters
/// dropped; greedy longest-match WordPiece with <c>##</c> continuations; an unknown or over-long word
/// becomes one unknown token. Every token carries its span in the original, un-normalised text.
/// Thread-safe.
/// </summary>
public sealed partial class BertWordPieceTokenizer
{
    readonly BertWordPieceOptions options;
    readonly string[] specials;
    readonly ConcurrentDictionary<int, string> decompositions = new();
    readonly string?[] bmpNormalized = new string?[0x10000];   // lower-cased, accent-stripped form of each BMP char, filled lazily

    /// <summary>Creates a tokenizer over <paramref name="vocabulary"/>.</summary>
    /// <exception cref="ArgumentException">The unknown token (or a configured start/end token) is missing from the vocabulary.</exception>
    public BertWordPieceTokenizer(Vocabulary vocabulary, BertWordPieceOptions? options = null)
    {
        Vocabulary = vocabulary;
        this.options = options ?? new();
        if (this.options.MaxWordLength < 1) throw new ArgumentException($"MaxWordLength must be at least 1, got {this.options.MaxWordLength}");
        UnknownId = Require(this.options.UnknownToken, "UnknownToken");
        StartId = this.options.StartToken is null ? -1 : Require(this.options.StartToken, "StartToken");
        EndId = this.options.EndToken is null ? -1 : Require(this.options.EndToken, "EndToken");
        PaddingId = Math.Max(0, vocabulary[this.options.PaddingToken]);
        MaskId = vocabulary[this.options.MaskingToken];
        specials = new[] { this.options.StartToken, this.options.EndToken, this.options.PaddingToken, this.options.UnknownToken, this.options.MaskingToken }
            .Where(t => t is not null && vocabulary.Contains(t)).Distinct().OrderByDescending(t => t!.Length).ToArray()!;
    }

    int Require(string token, string what)
    {
        int id = Vocabulary[token];
        return id >= 0 ? id : throw new ArgumentException($"{what} '{token}' is not in the vocabulary {Vocabulary.Source} ({Vocabulary.Count} tokens); pass a vocabulary that has it or change the option");
    }

    /// <summary>Loads <c>vocab.txt</c> and creates a tokenizer.</summary>
    public static BertWordPieceTokenizer FromFile(string vocabPath, BertWordPieceOptions? options = null) =>
        new(Vocabulary.Load(vocabPath), options);

    /// <summary>The vocabulary.</summary>
    public Vocabulary Vocabulary { get; }

    /// <summary>The options in force.</summary>
    public BertWordPieceOptions Options => options;

    /// <summary>Id of the unknown token.</summary>
    public int UnknownId { get; }
    /// <summary>Id of the start token, or -1.</summary>
    public int StartId { get; }
    /// <summary>Id of the end token, or -1.</summary>
    public int EndId { get; }
    /// <summary>Id of the padding token (0 if absent).</summary>
    public int PaddingId { get; }
    /// <summary>Id of the mask token, or -1.</summary>
    public int MaskId { get; }

    /// <summary>One token before assembly: id, original span, and the word it came from when unknown.</summary>
    readonly record struct Piece(int Id, int Start, int End, string? Word);

    /// <summary>
    /// bert4keras <c>tokenize</c>: token strings with the start and end tokens, truncated to
    /// <paramref name="maxLength"/> from the right. An unknown word appears as itself (as in bert4keras);
    /// <see cref="Encode"/> maps it to the unknown id.
    /// </summary>
    public IReadOnlyList<string> Tokenize(string text, int? maxLength = null)
    {
        var pieces = Pieces(text);
        var list = new List<string>(pieces.Count + 2);
        if (options.StartToken is not null) list.Add(options.StartToken);
        foreach (var p in pieces) list.Add(Translate(p.Word ?? Vocabulary.IdToToken(p.Id)));
        if (options.EndToken is not null) list.Add(options.EndToken);
        if (maxLength is int max)
        {
            int index = list.Count - (options.EndToken is null ? 1 : 2);
            while (list.Count > max && index >= 0 && index < list.Count) { list.RemoveAt(index); index = list.Count - (options.EndToken is null ? 1 : 2); }
        }
        return list;
    }

    string Translate(string token) => options.TokenTranslate is { } tt && tt.TryGetValue(token, out var t) ? t : token;

    /// <summary>
    /// bert4keras <c>encode</c>: ids and segment ids for one text or a pair (<c>[CLS] a [SEP] b [SEP]</c>),
    /// truncated to <paramref name="maxLength"/> by repeatedly removing a token from the longer text at
    /// the chosen end. Offsets of the second text's tokens point into <paramref name="second"/>.
    /// </summary>
    /// <exception cref="ArgumentNullException"><paramref name="first"/> is null.</exception>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="maxLength"/> is too small to hold the added tokens.</exception>
    public EncodedText Encode(string first, string? second = null, int? maxLength = null, TruncateFrom truncateFrom = TruncateFrom.Right)
    {
        ArgumentNullException.ThrowIfNull(first);
        int added = (StartId >= 0 ? 1 : 0) + (EndId >= 0 ? 1 : 0) + (second is null ? 0 : (EndId >= 0 ? 1 : 0));
        if (maxLength is int m && m < added)
            throw new ArgumentOutOfRangeException(nameof(maxLength), $"maxLength {m} cannot hold the {added} added tokens");
        var a = Pieces(first);
        var b = second is null ? null : Pieces(second);
        if (maxLength is int max)
        {
            // Same as bert4keras's truncate_sequences: pop from the longer list (the first on ties).
            int budget = max - added;
            while (a.Count + (b?.Count ?? 0) > budget)
            {
                var longer = b is not null && b.Count > a.Count ? b : a;
                longer.RemoveAt(truncateFrom == TruncateFrom.Right ? longer.Count - 1 : 0);
            }
        }
        int n = added + a.Count + (b?.Count ?? 0);
        bool translate = options.TokenTranslate is not null;
        var tokens = translate ? new string[n] : null;
        var ids = new int[n];
        var segs = new int[n];
        var offs = new TokenSpan[n];
        int k = 0;
        if (StartId >= 0) { ids[k] = StartId; k++; }
        foreach (var p in a) { ids[k] = p.Id; offs[k] = new TokenSpan(p.Start, p.End); k++; }
        if (EndId >= 0) { ids[k] = EndId; k++; }
        if (b is not null)
        {
            int from = k;
            foreach (var p in b) { ids[k] = p.Id; offs[k] = new TokenSpan(p.Start, p.End); k++; }
            if (EndId >= 0) { ids[k] = EndId; k++; }
            segs.AsSpan(from, k - from).Fill(1);
        }
        if (tokens is not null)
        {
            // bert4keras token_translate works on strings: translate, then look the ids up again.
            for (int i = 0; i < n; i++)
            {
                tokens[i] = Translate(Vocabulary.IdToToken(ids[i]));
                int t = Vocabulary[tokens[i]];
                ids[i] = t >= 0 ? t : UnknownId;
            }
        }
        return new EncodedText(tokens, ids, segs, offs, Vocabulary);
    }

    /// <summary>
    /// bert4keras <c>compound_tokens</c> spec: for each new word, the ids of the pieces this tokenizer
    /// splits it into (no start/end tokens). A model loader initialises the new word's embedding as the
    /// mean of those rows.
    /// </summary>
    public IReadOnlyList<int[]> CompoundTokens(IEnumerable<string> words) =>
        words.Select(w => Pieces(w).Select(p => p.Id).ToArray()).ToList();

    /// <summary>Encodes texts and pads them into <c>[batch, length]</c> tensors (length = longest, or <paramref name="maxLength"/> truncation).</summary>
    /// <exception cref="ArgumentException">The batch is empty.</exception>
    public EncodedBatch EncodeBatch(IReadOnlyList<string> texts, int? maxLength = null, torch.Device? device = null)
    {
        ArgumentNullException.ThrowIfNull(texts);
        if (texts.Count == 0) throw new ArgumentException("the batch is empty: pass at least one text", nameof(texts));
        var items = texts.Select(t => Encode(t, null, maxLength)).ToList();
        var dev = device ?? torch.CPU;
        var (ids, mask) = SequencePadding.Pad(items.Select(e => e.Ids).ToList(), PaddingId, dev);
        var segments = SequencePadding.PadValues(items.Select(e => e.SegmentIds).ToList(), 0, dev);
        return new EncodedBatch(ids, segments, mask, items);
    }

    /// <summary>
    /// bert4keras <c>decode</c>: drops special tokens, merges <c>##</c> pieces, joins CJK characters without
    /// spaces and other tokens with one, then tidies spaces around punctuation.
    /// </summary>
    public string Decode(IEnumerable<int> ids)
    {
        var tokens = ids.Select(i => Vocabulary.IdToToken(i)).Where(t => !(t.Length > 0 && t[0] == '[' && t[^1] == ']')).ToList();
        var sb = new StringBuilder();
        for (int i = 0; i < tokens.Count; i++)
        {
            string t = tokens[i];
            int cp = t.Length > 0 ? char.ConvertToUtf32(t, 0) : 0;
            bool single = t.Length > 0 && char.ConvertFromUtf32(cp).Length == t.Length;
            if (t.StartsWith("##", StringComparison.Ordinal)) sb.Append(t, 2, t.Length - 2);
            else if (single && CharClasses.IsCjk(cp)) sb.Append(t);
            else if (single && CharClasses.IsPunctuation(cp)) sb.Append(t).Append(' ');
            else if (i > 0 && sb.Length > 0 && CharClasses.IsCjk(LastCodePoint(sb))) sb.Append(t);
            else sb.Append(' ').Append(t);
        }
        string text = MultipleSpaces().Replace(sb.ToString(), " ");
        text = Contractions().Replace(text, "'$1 ");
        text = PunctuationSpace().Replace(text, "$1");
        text = DecimalSpace().Replace(text, "$1$2");
        return text.Trim();
    }

    static int LastCodePoint(StringBuilder sb)
    {
        char c = sb[^1];
        return char.IsLowSurrogate(c) && sb.Length > 1 && char.IsHighSurrogate(sb[^2]) ? char.ConvertToUtf32(sb[^2], c) : c;
    }

    [GeneratedRegex(" +")] private static partial Regex MultipleSpaces();
    [GeneratedRegex("' (re|m|s|t|ve|d|ll) ")] private static partial Regex Contractions();
    [GeneratedRegex("([\uff02\uff03\uff04\uff05\uff06\uff07\uff08\uff09\uff0a\uff0b\uff0c\uff0d\uff0f\uff1a\uff1b\uff1c\uff1d\uff1e\uff20\uff3b\uff3c\uff3d\uff3e\uff3f\uff40\uff5b\uff5c\uff5d\uff5e\uff5f\uff60\uff62\uff63\uff64\u3000\u3001\u3003\u3008\u3009\u300a\u300b\u300c\u300d\u300e\u300f\u3010\u3011\u3014\u3015\u3016\u3017\u3018\u3019\u301a\u301b\u301c\u301d\u301e\u301f\u3030\u303e\u303f\u2013\u2014\u2018\u2019\u201b\u201c\u201d\u201e\u201f\u2026\u2027\ufe4f\ufe51\ufe54\u00b7\uff01\uff1f\uff61\u3002+\\-/={(<\\[]) ")]
    private static partial Regex PunctuationSpace();
    [GeneratedRegex("(\\d\\.) (\\d)")] private static partial Regex DecimalSpace();

    /// <summary>
    /// bert4keras <c>rematch</c>: for each token string (as returned by <see cref="Tokenize"/>), the UTF-16
    /// indices of the original characters it covers; special tokens get none.
    /// </summary>
    public IReadOnlyList<int[]> Rematch(string text, IReadOnlyList<string> tokens)
    {
        var (norm, starts, ends) = Normalize(text, 0, text.Length, dropControls: true);
        var result = new List<int[]>(tokens.Count);
        int offset = 0;
        foreach (var token in tokens)
        {
            if (token.Length > 1 && token[0] == '[' && token[^1] == ']') { result.Add([]); continue; }
            string stem = token.StartsWith("##", StringComparison.Ordinal) ? token[2..] : token;
            int at = norm.IndexOf(stem, offset, StringComparison.Ordinal);
            if (at < 0) { result.Add([]); continue; }
            var idx = new List<int>();
            for (int k = at; k < at + stem.Length; k++)
                for (int o = starts[k]; o < ends[k]; o++)
                    if (idx.Count == 0 || idx[^1] < o) idx.Add(o);
            result.Add([.. idx]);
            offset = at + stem.Length;
        }
        return result;
    }

    // ---------------------------------------------------------------------------------------------
    // Core: original text → pieces with original spans.

    List<Piece> Pieces(string text)
    {
        var pieces = new List<Piece>();
        int pos = 0;
        if (options.RecognizeSpecialTokens && specials.Length > 0)
        {
            int i = text.IndexOf('[');
            while (i >= 0)
            {
                string? hit = null;
                foreach (var s in specials)
                    if (string.CompareOrdinal(text, i, s, 0, s.Length) == 0) { hit = s; break; }
                if (hit is not null)
                {
                    Segment(text, pos, i, pieces);
                    pieces.Add(new Piece(Vocabulary[hit], i, i + hit.Length, null));
                    pos = i + hit.Length;
                    i = text.IndexOf('[', pos);
                }
                else i = text.IndexOf('[', i + 1);
            }
        }
        Segment(text, pos, text.Length, pieces);
        return pieces;
    }

    void Segment(string text, int start, int end, List<Piece> pieces)
    {
        if (end <= start) return;
        if (options.PreTokenizer is null)
        {
            if (!options.LowerCase)
            {
                SplitAndWordPiece(text.AsSpan(start, end - start), null, null, start, pieces);
                return;
            }
            var (norm, s, e) = Normalize(text, start, end, dropControls: false);
            SplitAndWordPiece(norm, s, e, 0, pieces);
            return;
        }
        // WoBERT: segment the normalised text into words; in-vocabulary words stay whole.
        var (n, ns, ne) = options.LowerCase ? Normalize(text, start, end, dropControls: false) : (text[start..end], null!, null!);
        int[]? ms = options.LowerCase ? ns : null, me = options.LowerCase ? ne : null;
        int cursor = 0;
        foreach (var word in options.PreTokenizer(n))
        {
            if (string.IsNullOrEmpty(word)) continue;
            int at = n.IndexOf(word, cursor, StringComparison.Ordinal);
            if (at < 0) throw new InvalidOperationException($"the pre-tokenizer returned '{word}', which is not the next piece of its input");
            if (at > cursor) SplitRange(n, ms, me, start, cursor, at, pieces);
            int id = Vocabulary.Find(word);
            if (id >= 0)
            {
                int os = ms is null ? start + at : ms[at], oe = me is null ? start + at + word.Length : me[at + word.Length - 1];
                pieces.Add(new Piece(id, os, oe, null));
            }
            else SplitRange(n, ms, me, start, at, at + word.Length, pieces);
            cursor = at + word.Length;
        }
        if (cursor < n.Length) SplitRange(n, ms, me, start, cursor, n.Length, pieces);
    }

    void SplitRange(string n, int[]? ms, int[]? me, int baseOffset, int from, int to, List<Piece> pieces)
    {
        if (ms is null) SplitAndWordPiece(n.AsSpan(from, to - from), null, null, baseOffset + from, pieces);
        else SplitAndWordPiece(n.AsSpan(from, to - from), ms.AsSpan(from, to - from).ToArray(), me!.AsSpan(from, to - from).ToArray(), 0, pieces);
    }

    /// <summary>
    /// Lower-case + NFD + drop Mn, remembering for each output char the original span it came from.
    /// ASCII and the main CJK blocks take a fast path; every other character's result is cached.
    /// </summary>
    (string Text, int[] Starts, int[] Ends) Normalize(string text, int start, int end, bool dropControls)
    {
        int cap = end - start + 8, n = 0;
        var buf = new char[cap];
        var starts = new int[cap];
        var ends = new int[cap];
        void Put(char c, int s, int e)
        {
            if (n == buf.Length)
            {
                Array.Resize(ref buf, buf.Length * 2);
                Array.Resize(ref starts, buf.Length);
                Array.Resize(ref ends, buf.Length);
            }
            buf[n] = c; starts[n] = s; ends[n] = e; n++;
        }
        int i = start;
        while (i < end)
        {
            char c = text[i];
            if (c < 0x80)
            {
                if (!(dropControls && CharClasses.IsDropped(c))) Put(options.LowerCase && c >= 'A' && c <= 'Z' ? (char)(c + 32) : c, i, i + 1);
                i++;
                continue;
            }
            if ((c >= '一' && c <= '鿿') || (c >= '㐀' && c <= '䶿'))
            {
                Put(c, i, i + 1);   // no case, no decomposition
                i++;
                continue;
            }
            int len = char.IsHighSurrogate(c) && i + 1 < end && char.IsLowSurrogate(text[i + 1]) ? 2 : 1;
            string piece;
            if (char.IsSurrogate(c) && len == 1) piece = c.ToString();                       // a lone surrogate stays as it is
            else if (!options.LowerCase) piece = text.Substring(i, len);
            else if (c == '\u03A3' && IsFinalSigma(text, i, start, end)) piece = "\u03C2";
            else
            {
                int cp = len == 2 ? char.ConvertToUtf32(c, text[i + 1]) : c;
                if (len == 1)
                    piece = bmpNormalized[c] ??= StripAccents(CharClasses.LowerFull(new Rune(cp)));   // benign race: same value
                else if (!decompositions.TryGetValue(cp, out piece!))
                {
                    piece = StripAccents(CharClasses.LowerFull(new Rune(cp)));
                    decompositions.TryAdd(cp, piece);
                }
            }
            foreach (char x in piece)
            {
                if (dropControls && !char.IsSurrogate(x) && CharClasses.IsDropped(x)) continue;
                Put(x, i, i + len);
            }
            i += len;
        }
        Array.Resize(ref starts, n);
        Array.Resize(ref ends, n);
        return (new string(buf, 0, n), starts, ends);
    }

    static bool IsFinalSigma(string text, int i, int start, int end)
    {
        static bool Cased(char c) => char.IsUpper(c) || char.IsLower(c);
        bool before = i > start && Cased(text[i - 1]);
        bool after = i + 1 < end && Cased(text[i + 1]);
        return before && !after;
    }

    static string StripAccents(string s)
    {
        string d = s.Normalize(NormalizationForm.FormD);
        var sb = new StringBuilder(d.Length);
        for (int k = 0; k < d.Length; k++)
        {
            int cp = char.IsHighSurrogate(d[k]) && k + 1 < d.Length ? char.ConvertToUtf32(d[k], d[k + 1]) : d[k];
            int n = cp > 0xFFFF ? 2 : 1;
            if (CharUnicodeInfo.GetUnicodeCategory(cp) != UnicodeCategory.NonSpacingMark) sb.Append(d, k, n);
            k += n - 1;
        }
        return sb.ToString();
    }

    /// <summary>
    /// Splits normalised text into words (isolating CJK and punctuation, dropping controls, breaking at
    /// spaces) and WordPiece-tokenises each. <paramref name="starts"/>/<paramref name="ends"/> map each
    /// char to the original; when null the map is identity plus <paramref name="baseOffset"/>.
    /// </summary>
    void SplitAndWordPiece(ReadOnlySpan<char> n, int[]? starts, int[]? ends, int baseOffset, List<Piece> pieces)
    {
        Span<char> word = n.Length <= 512 ? stackalloc char[n.Length] : new char[n.Length];
        Span<int> src = n.Length <= 512 ? stackalloc int[n.Length] : new int[n.Length];
        int wlen = 0, wcp = 0;
        int i = 0;
        while (i < n.Length)
        {
            int cp, len;
            if (char.IsHighSurrogate(n[i]) && i + 1 < n.Length && char.IsLowSurrogate(n[i + 1])) { cp = char.ConvertToUtf32(n[i], n[i + 1]); len = 2; }
            else { cp = n[i]; len = 1; }
            if (len == 1 && char.IsSurrogate(n[i]))
            {
                word[wlen] = n[i]; src[wlen] = i; wlen++; wcp++;
            }
            else if (CharClasses.IsIsolated(cp))
            {
                Flush(n, word[..wlen], src[..wlen], wcp, starts, ends, baseOffset, pieces);
                wlen = 0; wcp = 0;
                int id = Vocabulary.Find(n.Slice(i, len));
                int os = starts is null ? baseOffset + i : starts[i], oe = ends is null ? baseOffset + i + len : ends[i + len - 1];
                pieces.Add(new Piece(id >= 0 ? id : UnknownId, os, oe, id >= 0 ? null : n.Slice(i, len).ToString()));
            }
            else if (CharClasses.IsSpace(cp))
            {
                Flush(n, word[..wlen], src[..wlen], wcp, starts, ends, baseOffset, pieces);
                wlen = 0; wcp = 0;
            }
            else if (!CharClasses.IsDropped(cp))
            {
                for (int k = 0; k < len; k++) { word[wlen] = n[i + k]; src[wlen] = i + k; wlen++; }
                wcp++;
            }
            i += len;
        }
        Flush(n, word[..wlen], src[..wlen], wcp, starts, ends, baseOffset, pieces);
    }

    void Flush(ReadOnlySpan<char> n, ReadOnlySpan<char> word, ReadOnlySpan<int> src, int codePoints, int[]? starts, int[]? ends, int baseOffset, List<Piece> pieces)
    {
        if (word.IsEmpty) return;
        if (codePoints > options.MaxWordLength)
        {
            pieces.Add(new Piece(UnknownId, SpanStart(src, 0, starts, baseOffset), SpanEnd(n, src, word.Length - 1, ends, baseOffset), word.ToString()));
            return;
        }
        int first = pieces.Count;
        int begin = 0;
        int maxLen = Vocabulary.MaxTokenLength;
        while (begin < word.Length)
        {
            int end = Math.Min(word.Length, begin + maxLen);
            int id = -1;
            while (end > begin)
            {
                if (end < word.Length && char.IsLowSurrogate(word[end]) && char.IsHighSurrogate(word[end - 1])) { end--; continue; }
                var sub = word[begin..end];
                id = begin == 0 ? Vocabulary.Find(sub) : Vocabulary.FindContinuation(sub);
                if (id >= 0) break;
                end--;
            }
            if (id < 0)
            {
                pieces.RemoveRange(first, pieces.Count - first);
                pieces.Add(new Piece(UnknownId, SpanStart(src, 0, starts, baseOffset), SpanEnd(n, src, word.Length - 1, ends, baseOffset), word.ToString()));
                return;
            }
            pieces.Add(new Piece(id, SpanStart(src, begin, starts, baseOffset), SpanEnd(n, src, end - 1, ends, baseOffset), null));
            begin = end;
        }
    }

    static int SpanStart(ReadOnlySpan<int> src, int k, int[]? starts, int baseOffset) => starts is null ? baseOffset + src[k] : starts[src[k]];

    // The original end of word char k (a surrogate pair counts as its high half's span).
    static int SpanEnd(ReadOnlySpan<char> n, ReadOnlySpan<int> src, int k, int[]? ends, int baseOffset)
    {
        int j = src[k];
        if (char.IsHighSurrogate(n[j]) && j + 1 < n.Length && char.IsLowSurrogate(n[j + 1])) j++;
        return ends is null ? baseOffset + j + 1 : ends[j];
    }
}
