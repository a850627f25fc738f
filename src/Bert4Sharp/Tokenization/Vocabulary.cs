namespace Bert4Sharp.Tokenization;

using System.Text;

/// <summary>
/// A WordPiece vocabulary: token ↔ id, where the id is the line number in <c>vocab.txt</c> (so ids line up
/// with the rows of the model's embedding matrix). Lookups take spans, so tokenizing allocates no strings.
/// </summary>
public sealed class Vocabulary
{
    readonly Dictionary<string, int> ids;
    readonly Dictionary<string, int>.AlternateLookup<ReadOnlySpan<char>> lookup;
    readonly Dictionary<string, int> continuation;   // "##xyz" stored as "xyz"
    readonly Dictionary<string, int>.AlternateLookup<ReadOnlySpan<char>> continuationLookup;
    readonly string[] tokens;
    readonly int[] singleChar = new int[0x10000];   // id of each one-char BMP token, or -1: CJK look-ups skip hashing

    /// <summary>Builds a vocabulary from tokens in id order. Duplicates keep their first id and are reported.</summary>
    public Vocabulary(IEnumerable<string> tokensInIdOrder, string source = "(memory)")
    {
        tokens = tokensInIdOrder.ToArray();
        Source = source;
        ids = new Dictionary<string, int>(tokens.Length, StringComparer.Ordinal);
        continuation = new Dictionary<string, int>(StringComparer.Ordinal);
        Array.Fill(singleChar, -1);
        var duplicates = new List<string>();
        for (int i = 0; i < tokens.Length; i++)
        {
            string t = tokens[i];
            if (!ids.TryAdd(t, i))
            {
                duplicates.Add($"'{t}' on lines {ids[t] + 1} and {i + 1}");
                continue;
            }
            if (t.StartsWith("##", StringComparison.Ordinal) && t.Length > 2) continuation.TryAdd(t[2..], i);
            if (t.Length == 1) singleChar[t[0]] = i;
            MaxTokenLength = Math.Max(MaxTokenLength, t.Length);
        }
        Duplicates = duplicates;
        lookup = ids.GetAlternateLookup<ReadOnlySpan<char>>();
        continuationLookup = continuation.GetAlternateLookup<ReadOnlySpan<char>>();
    }

    /// <summary>Where the vocabulary came from (for messages).</summary>
    public string Source { get; }

    /// <summary>Number of ids (lines), duplicates included.</summary>
    public int Count => tokens.Length;

    /// <summary>Length in UTF-16 units of the longest token.</summary>
    public int MaxTokenLength { get; }

    /// <summary>Duplicate lines found while loading (the first occurrence keeps its id); empty for a clean file.</summary>
    public IReadOnlyList<string> Duplicates { get; }

    /// <summary>All tokens in id order.</summary>
    public IReadOnlyList<string> Tokens => tokens;

    /// <summary>The id of <paramref name="token"/>, or -1.</summary>
    public int this[string token] => ids.TryGetValue(token, out int id) ? id : -1;

    /// <summary>True if the token is in the vocabulary.</summary>
    public bool Contains(string token) => ids.ContainsKey(token);

    /// <summary>Id of a word-initial piece, or -1.</summary>
    public int Find(ReadOnlySpan<char> piece) =>
        piece.Length == 1 ? singleChar[piece[0]] : lookup.TryGetValue(piece, out int id) ? id : -1;

    /// <summary>Id of a continuation piece (<c>##</c> + <paramref name="piece"/>), or -1.</summary>
    public int FindContinuation(ReadOnlySpan<char> piece) => continuationLookup.TryGetValue(piece, out int id) ? id : -1;

    /// <summary>The token for an id.</summary>
    /// <exception cref="ArgumentOutOfRangeException">The id is not in [0, Count).</exception>
    public string IdToToken(int id) => (uint)id < (uint)tokens.Length
        ? tokens[id] : throw new ArgumentOutOfRangeException(nameof(id), $"id {id} is outside the vocabulary [0, {tokens.Length}) of {Source}");

    /// <summary>
    /// Reads a <c>vocab.txt</c> the way bert4keras's <c>load_vocab</c> does: one token per line, the first
    /// whitespace-separated field (or the trimmed line), id = line number. A UTF-8 BOM and CRLF line ends
    /// are accepted. Unlike bert4keras, a duplicated line does not shift later ids (see <see cref="Duplicates"/>).
    /// </summary>
    /// <exception cref="FileNotFoundException">No file at <paramref name="path"/>.</exception>
    /// <exception cref="InvalidDataException">The file is empty or not UTF-8.</exception>
    public static Vocabulary Load(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"{path}: vocabulary file not found", path);
        string text;
        try { text = new UTF8Encoding(false, true).GetString(File.ReadAllBytes(path)); }
        catch (DecoderFallbackException) { throw new InvalidDataException($"{path}: the vocabulary is not valid UTF-8"); }
        if (text.Length > 0 && text[0] == '\uFEFF') text = text[1..];
        var lines = text.Split('\n');
        int n = lines.Length;
        if (n > 0 && lines[^1].Length == 0) n--;   // trailing newline
        if (n == 0) throw new InvalidDataException($"{path}: the vocabulary is empty");
        var tokens = new string[n];
        for (int i = 0; i < n; i++)
        {
            string line = lines[i].TrimEnd('\r');
            var first = line.Split((char[]?)null, 2, StringSplitOptions.RemoveEmptyEntries);
            tokens[i] = first.Length > 0 ? first[0] : line.Trim();
        }
        return new Vocabulary(tokens, path);
    }

    /// <summary>
    /// bert4keras's <c>load_vocab(simplified=True, startswith=…)</c>: keeps the <paramref name="startsWith"/>
    /// tokens first, then every token except multi-character ones containing a CJK character or punctuation
    /// (after removing <c>##</c>). Returns the pruned vocabulary and <c>keep_tokens</c>, the original id of each
    /// kept token, used to slice the embedding matrix.
    /// </summary>
    /// <exception cref="KeyNotFoundException">A <paramref name="startsWith"/> token is not in the vocabulary.</exception>
    public (Vocabulary Vocabulary, int[] KeepTokens) Simplify(IEnumerable<string>? startsWith = null)
    {
        var kept = new List<string>();
        var keep = new List<int>();
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (var t in startsWith ?? [])
        {
            int id = this[t];
            if (id < 0) throw new KeyNotFoundException($"'{t}' is not in the vocabulary {Source}");
            if (seen.Add(t)) { kept.Add(t); keep.Add(id); }
        }
        for (int i = 0; i < tokens.Length; i++)
        {
            string t = tokens[i];
            if (seen.Contains(t) || ids[t] != i) continue;
            bool ok = true;
            string stem = t.StartsWith("##", StringComparison.Ordinal) ? t[2..] : t;
            if (t.EnumerateRunes().Count() > 1)   // code points, as Python's len()
            {
                foreach (var r in stem.EnumerateRunes())
                    if (CharClasses.IsCjk(r.Value) || CharClasses.IsPunctuation(r.Value)) { ok = false; break; }
            }
            if (ok && seen.Add(t)) { kept.Add(t); keep.Add(i); }
        }
        return (new Vocabulary(kept, Source + " (simplified)"), keep.ToArray());
    }

    /// <summary>
    /// A vocabulary with <paramref name="newTokens"/> appended (new ids after the existing ones; tokens
    /// already present are skipped). Pair with <see cref="BertWordPieceTokenizer.CompoundTokens"/> to
    /// initialise their embeddings (bert4keras <c>compound_tokens</c>, as WoBERT does for new words).
    /// </summary>
    public Vocabulary Extend(IEnumerable<string> newTokens) =>
        new([.. tokens, .. newTokens.Where(t => !Contains(t)).Distinct(StringComparer.Ordinal)], Source + " (extended)");

    /// <summary>Writes one token per line in id order (bert4keras <c>save_vocab</c>), atomically.</summary>
    public void Save(string path) =>
        Checkpoints.AtomicFile.WriteAllText(path, string.Concat(tokens.Select(t => t + "\n")));
}
