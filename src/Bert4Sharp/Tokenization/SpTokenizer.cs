namespace Bert4Sharp.Tokenization;

using Microsoft.ML.Tokenizers;

/// <summary>Options of <see cref="SpTokenizer"/>. Defaults follow T5/mT5 in bert4keras (no start token, <c>&lt;/s&gt;</c> at the end).</summary>
public sealed record SpTokenizerOptions
{
    /// <summary>Piece put first; null for none (T5, mT5). CPM uses none as well.</summary>
    public string? StartToken { get; init; }

    /// <summary>Piece put last; null for none.</summary>
    public string? EndToken { get; init; } = "</s>";

    /// <summary>A word segmenter run first; its words are joined with spaces (bert4keras <c>pre_tokenize</c>, used by CPM).</summary>
    public Func<string, IEnumerable<string>>? PreTokenizer { get; init; }

    /// <summary>Piece replacements (bert4keras <c>token_translate</c>, e.g. CPM's "\n" → "&lt;n&gt;"); decoding applies the inverse.</summary>
    public IReadOnlyDictionary<string, string>? TokenTranslate { get; init; }
}

/// <summary>
/// SentencePiece tokenizer (Unigram or BPE <c>.model</c> files) for T5, mT5 and CPM, with bert4keras's
/// <c>SpTokenizer</c> conventions on top of Microsoft.ML.Tokenizers' SentencePiece implementation.
/// </summary>
public sealed class SpTokenizer
{
    readonly SentencePieceTokenizer sp;
    readonly SentencePieceNormalizer normalizer;
    readonly SentencePieceBpe? bpe;
    readonly SpTokenizerOptions options;
    readonly Dictionary<string, string> inverse;
    readonly string[] pieces;

    SpTokenizer(SentencePieceTokenizer sp, SentencePieceNormalizer normalizer, SentencePieceBpe? bpe, SpTokenizerOptions options, string source)
    {
        this.bpe = bpe;
        this.sp = sp;
        this.normalizer = normalizer;
        this.options = options;
        Source = source;
        inverse = options.TokenTranslate?.ToDictionary(kv => kv.Value, kv => kv.Key) ?? [];
        pieces = new string[sp.Vocabulary.Values.DefaultIfEmpty(-1).Max() + 1];
        foreach (var (piece, id) in sp.Vocabulary) if (id >= 0) pieces[id] ??= piece;
        StartId = options.StartToken is null ? -1 : PieceToIdOrThrow(options.StartToken, "StartToken");
        EndId = options.EndToken is null ? -1 : PieceToIdOrThrow(options.EndToken, "EndToken");
    }

    int PieceToIdOrThrow(string piece, string what) =>
        sp.Vocabulary.TryGetValue(piece, out int id) ? id : throw new ArgumentException($"{what} '{piece}' is not a piece of {Source}");

    /// <summary>Loads a SentencePiece <c>.model</c> (a serialised ModelProto).</summary>
    /// <exception cref="FileNotFoundException">No file at <paramref name="path"/>.</exception>
    /// <exception cref="InvalidDataException">The file is not a SentencePiece model, or its type is not Unigram or BPE.</exception>
    public static SpTokenizer FromFile(string path, SpTokenizerOptions? options = null)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"{path}: SentencePiece model not found", path);
        byte[] model = File.ReadAllBytes(path);
        SentencePieceTokenizer sp;
        SentencePieceNormalizer normalizer;
        SentencePieceBpe? bpe;
        try
        {
            normalizer = SentencePieceNormalizer.FromModel(model, path);
            bpe = SentencePieceBpe.FromModel(model, path);
            sp = SentencePieceTokenizer.Create(new MemoryStream(model), false, false);
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            throw new InvalidDataException($"{path}: not a usable SentencePiece model ({e.GetType().Name}: {e.Message.ReplaceLineEndings(" ")})", e);
        }
        return new SpTokenizer(sp, normalizer, bpe, options ?? new(), path);
    }

    /// <summary>Where the model came from.</summary>
    public string Source { get; }

    /// <summary>Number of pieces.</summary>
    public int VocabularySize => pieces.Length;

    /// <summary>Id of the unknown piece.</summary>
    public int UnknownId => sp.UnknownId;

    /// <summary>Id of the start piece, or -1.</summary>
    public int StartId { get; }

    /// <summary>Id of the end piece, or -1.</summary>
    public int EndId { get; }

    string Pre(string text) => options.PreTokenizer is null ? text : string.Join(' ', options.PreTokenizer(text));

    /// <summary>Pieces of <paramref name="text"/> (with the start/end pieces), translated.</summary>
    public IReadOnlyList<string> Tokenize(string text)
    {
        var pieces = Segment(text).Select(IdToPiece).ToList();
        if (options.TokenTranslate is { } tt) pieces = pieces.Select(p => tt.TryGetValue(p, out var q) ? q : p).ToList();
        if (options.StartToken is not null) pieces.Insert(0, options.StartToken);
        if (options.EndToken is not null) pieces.Add(options.EndToken);
        return pieces;
    }

    /// <summary>Ids of <paramref name="text"/> without start/end pieces (what <c>sp.encode(text)</c> returns).</summary>
    public IReadOnlyList<int> EncodeToIds(string text) =>
        options.TokenTranslate is null
            ? Segment(text)
            : Tokenize(text).Skip(options.StartToken is null ? 0 : 1).SkipLast(options.EndToken is null ? 0 : 1).Select(PieceToId).ToList();

    /// <summary>
    /// SentencePiece's own pipeline: its normaliser (applied here, with the model's character map), then
    /// the model's segmentation on the normalised text (Microsoft.ML.Tokenizers for Unigram, <see cref="SentencePieceBpe"/> for BPE), then consecutive
    /// unknown pieces merged into one, as SentencePiece does.
    /// </summary>
    List<int> Segment(string text)
    {
        string norm = normalizer.Normalize(Pre(text));
        IReadOnlyList<int> ids = bpe is not null ? bpe.Encode(norm)
            : sp.EncodeToIds(norm, addBeginningOfSentence: false, addEndOfSentence: false, considerPreTokenization: false, considerNormalization: false);
        var merged = new List<int>(ids.Count);
        foreach (int id in ids)
            if (!(id == UnknownId && merged.Count > 0 && merged[^1] == UnknownId)) merged.Add(id);
        return merged;
    }

    /// <summary>
    /// bert4keras <c>encode</c> for one text: ids with the start/end pieces, truncated from the right (before
    /// the end piece) to <paramref name="maxLength"/>.
    /// </summary>
    public IReadOnlyList<int> Encode(string text, int? maxLength = null)
    {
        var ids = new List<int>(EncodeToIds(text));
        int added = (StartId >= 0 ? 1 : 0) + (EndId >= 0 ? 1 : 0);
        if (maxLength is int max)
        {
            if (max < added) throw new ArgumentOutOfRangeException(nameof(maxLength), $"maxLength {max} cannot hold the {added} added pieces");
            if (ids.Count > max - added) ids.RemoveRange(max - added, ids.Count - (max - added));
        }
        if (StartId >= 0) ids.Insert(0, StartId);
        if (EndId >= 0) ids.Add(EndId);
        return ids;
    }

    /// <summary>Id of a piece (the unknown id when absent).</summary>
    public int PieceToId(string piece) => sp.Vocabulary.TryGetValue(piece, out int id) ? id : UnknownId;

    /// <summary>The piece of an id; empty for ids beyond the vocabulary (as bert4keras).</summary>
    public string IdToPiece(int id) => id >= 0 && id < pieces.Length ? pieces[id] ?? "" : "";

    /// <summary>Text of ids: special and out-of-range ids are dropped, translations undone, pieces joined by SentencePiece.</summary>
    public string Decode(IEnumerable<int> ids)
    {
        var keep = ids.Where(i => i >= 0 && i < VocabularySize && i != StartId && i != EndId).ToList();
        if (inverse.Count > 0)
        {
            // Translate pieces back before decoding (e.g. CPM's "<n>" → "\n").
            return string.Concat(keep.Select(IdToPiece).Select(p => inverse.TryGetValue(p, out var q) ? q : p)).Replace('\u2581', ' ').TrimStart();
        }
        return sp.Decode(keep, considerSpecialTokens: false) ?? "";
    }
}
