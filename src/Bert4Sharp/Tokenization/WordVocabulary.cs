namespace Bert4Sharp.Tokenization;

using System.Text.Json;
using System.Text.Json.Nodes;

/// <summary>Options of <see cref="WordVocabulary.Build"/>.</summary>
public sealed record WordVocabularyOptions
{
    /// <summary>A word must occur at least this many times in the corpus (≥ 1).</summary>
    public int MinCount { get; init; } = 5;

    /// <summary>At most this many words, the most frequent first (WoBERT: about 20,000); null for every word above <see cref="MinCount"/>.</summary>
    public int? MaxWords { get; init; } = 20_000;

    /// <summary>Shortest word kept, in characters (code points); single characters are already in the vocabulary.</summary>
    public int MinLength { get; init; } = 2;

    /// <summary>Checks the values.</summary>
    /// <exception cref="ArgumentOutOfRangeException">A value is out of range.</exception>
    public void Validate()
    {
        if (MinCount < 1) throw new ArgumentOutOfRangeException(nameof(MinCount), $"the minimum count must be at least 1, got {MinCount}");
        if (MaxWords is < 1) throw new ArgumentOutOfRangeException(nameof(MaxWords), $"the maximum number of words must be at least 1, got {MaxWords}");
        if (MinLength < 2) throw new ArgumentOutOfRangeException(nameof(MinLength), $"the minimum word length must be at least 2 characters, got {MinLength}");
    }
}

/// <summary>A word and how often the segmenter produced it in the corpus.</summary>
/// <param name="Word">The word.</param>
/// <param name="Count">Occurrences.</param>
public sealed record WordCount(string Word, long Count);

/// <summary>What <see cref="WordVocabulary.Build"/> made.</summary>
/// <param name="Vocabulary">The character vocabulary with the words appended (ids of the old tokens unchanged).</param>
/// <param name="Words">The appended words in id order, with their counts.</param>
/// <param name="Texts">Texts read.</param>
/// <param name="Segments">Segments the segmenter produced.</param>
/// <param name="Candidates">Distinct words that were eligible (before the count threshold and the cap).</param>
public sealed record WordVocabularyResult(Vocabulary Vocabulary, IReadOnlyList<WordCount> Words, long Texts, long Segments, int Candidates);

/// <summary>
/// WoBERT's vocabulary (Su Jianlin, "提速不掉点：基于词颗粒度的中文WoBERT", kexue.fm/archives/7758): the character
/// vocabulary kept whole, plus the words jieba (without HMM, so only dictionary words) finds in a corpus, most frequent
/// first. A word is eligible when it is at least <see cref="WordVocabularyOptions.MinLength"/> CJK characters long,
/// every character is in the character vocabulary (so its embedding can start as the mean of real character rows) and
/// it is not a token already.
/// </summary>
public static class WordVocabulary
{
    /// <summary>
    /// Counts the eligible words <paramref name="segment"/> produces over <paramref name="texts"/> and appends those seen at
    /// least <see cref="WordVocabularyOptions.MinCount"/> times (at most <see cref="WordVocabularyOptions.MaxWords"/>),
    /// ordered by count descending, then by ordinal string order: the same corpus always gives the same ids.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">An option is out of range.</exception>
    public static WordVocabularyResult Build(Vocabulary characters, IEnumerable<string> texts, Func<string, IEnumerable<string>> segment, WordVocabularyOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(characters);
        ArgumentNullException.ThrowIfNull(texts);
        ArgumentNullException.ThrowIfNull(segment);
        options ??= new();
        options.Validate();
        var counts = new Dictionary<string, long>(StringComparer.Ordinal);
        var rejected = new HashSet<string>(StringComparer.Ordinal);
        long textCount = 0, segments = 0;
        foreach (string text in texts)
        {
            textCount++;
            if (string.IsNullOrEmpty(text)) continue;
            foreach (string word in segment(text))
            {
                segments++;
                if (counts.TryGetValue(word, out long c)) { counts[word] = c + 1; continue; }
                if (rejected.Contains(word)) continue;
                if (IsEligible(word, characters, options.MinLength)) counts[word] = 1;
                else rejected.Add(word);
            }
        }
        var words = counts.Where(kv => kv.Value >= options.MinCount)
            .OrderByDescending(kv => kv.Value).ThenBy(kv => kv.Key, StringComparer.Ordinal)
            .Take(options.MaxWords ?? int.MaxValue)
            .Select(kv => new WordCount(kv.Key, kv.Value)).ToList();
        return new WordVocabularyResult(characters.Extend(words.Select(w => w.Word)), words, textCount, segments, counts.Count);
    }

    /// <summary>
    /// True when <paramref name="word"/> can join a word vocabulary over <paramref name="characters"/>: at least
    /// <paramref name="minLength"/> code points, all CJK, each one a token, and the word itself not a token yet.
    /// </summary>
    public static bool IsEligible(string word, Vocabulary characters, int minLength = 2)
    {
        if (string.IsNullOrEmpty(word) || characters.Contains(word)) return false;
        int n = 0;
        foreach (var rune in word.EnumerateRunes())
        {
            if (!CharClasses.IsCjk(rune.Value) || !characters.Contains(rune.ToString())) return false;
            n++;
        }
        return n >= minLength;
    }
}

/// <summary>
/// The word pre-tokenizer a model directory needs, recorded as <c>"pre_tokenizer"</c> in its <c>tokenizer_config.json</c>
/// (a WoBERT model: <c>"jieba"</c>), so every loader tokenises the way the model was trained.
/// </summary>
public static class PreTokenization
{
    /// <summary>File name of the tokenizer settings in a model directory (Hugging Face's name).</summary>
    public const string ConfigFileName = "tokenizer_config.json";

    /// <summary>jieba without HMM (bert4keras <c>pre_tokenize=lambda s: jieba.cut(s, HMM=False)</c>).</summary>
    public const string Jieba = "jieba";

    /// <summary>The pre-tokenizer <paramref name="directory"/> records, or null (no file, or no <c>pre_tokenizer</c> key).</summary>
    /// <exception cref="InvalidDataException">The file is not a JSON object or the key is not a string.</exception>
    public static string? Read(string directory)
    {
        string path = Path.Combine(directory, ConfigFileName);
        if (!File.Exists(path)) return null;
        try
        {
            using var doc = JsonDocument.Parse(File.ReadAllBytes(path));
            if (doc.RootElement.ValueKind != JsonValueKind.Object) throw new InvalidDataException($"{path}: expected a JSON object");
            if (!doc.RootElement.TryGetProperty("pre_tokenizer", out var p) || p.ValueKind == JsonValueKind.Null) return null;
            return p.ValueKind == JsonValueKind.String ? p.GetString() : throw new InvalidDataException($"{path}: 'pre_tokenizer' must be a string such as \"{Jieba}\"");
        }
        catch (JsonException e) { throw new InvalidDataException($"{path}: not valid JSON ({e.Message})", e); }
    }

    /// <summary>Records <paramref name="name"/> in <paramref name="directory"/>'s tokenizer settings (other keys kept), atomically.</summary>
    /// <exception cref="ArgumentException"><paramref name="name"/> is not a known pre-tokenizer.</exception>
    public static void Write(string directory, string name)
    {
        Check(name);
        string path = Path.Combine(directory, ConfigFileName);
        var root = File.Exists(path) ? JsonNode.Parse(File.ReadAllText(path)) as JsonObject ?? new JsonObject() : new JsonObject();
        root["pre_tokenizer"] = name;
        Checkpoints.AtomicFile.WriteAllText(path, root.ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n");
    }

    /// <summary>The segmenter for <paramref name="name"/> (<c>none</c> or null: no pre-tokenizer; <c>jieba</c>: the cached jieba dictionary, no HMM).</summary>
    /// <exception cref="ArgumentException">Unknown name.</exception>
    /// <exception cref="FileNotFoundException">jieba's dictionary is not cached (run <c>b4s data get jieba-dict</c>).</exception>
    public static Func<string, IEnumerable<string>>? Create(string? name)
    {
        if (name is null or "none") return null;
        Check(name);
        var jieba = Segmenter();
        return s => jieba.Cut(s, hmm: false);
    }

    /// <summary>Sets <paramref name="options"/>' pre-tokenizer to <see cref="Create"/>(<paramref name="name"/>) and records the name.</summary>
    /// <exception cref="ArgumentException">Unknown name.</exception>
    public static BertWordPieceOptions Apply(BertWordPieceOptions options, string? name) =>
        options with { PreTokenizer = Create(name), PreTokenizerName = name };

    /// <summary>
    /// The process's jieba segmenter, loaded from the cache once (the dictionary takes a while to read) and shared by every
    /// pre-tokenizer and whole-word masking. <paramref name="fetch"/>: download the dictionary when it is not cached.
    /// A failed load is not remembered, so a later call can succeed once the dictionary is cached.
    /// </summary>
    /// <exception cref="FileNotFoundException">The dictionary is not cached and <paramref name="fetch"/> is false.</exception>
    public static JiebaSegmenter Segmenter(bool fetch = false)
    {
        lock (Gate) return segmenter ??= JiebaSegmenter.FromCache(fetch);
    }

    static readonly Lock Gate = new();
    static JiebaSegmenter? segmenter;

    /// <summary>True for the names <see cref="Create"/> accepts: null, <c>none</c> and <see cref="Jieba"/>.</summary>
    public static bool IsKnown(string? name) => name is null or "none" or Jieba;

    static void Check(string name)
    {
        if (name != Jieba) throw new ArgumentException($"pre-tokenizer '{name}' is unknown; use '{Jieba}' (WoBERT's word segmentation) or 'none'");
    }
}
