namespace Bert4Sharp.Tokenization;

using System.Globalization;
using System.Text;

/// <summary>
/// Chinese word segmentation compatible with jieba 0.42 (<c>jieba.lcut(text, HMM=…)</c>): a prefix
/// dictionary, the DAG of dictionary words over the sentence, and the maximum-probability route by
/// dynamic programming over log frequencies. With an <see cref="JiebaHmm"/> model, runs of unknown
/// single characters are re-segmented by its Viterbi decoder (jieba's <c>HMM=True</c>).
/// Thread-safe for segmentation; <see cref="AddWord"/> and <see cref="LoadUserDictionary"/> are not.
/// </summary>
public sealed class JiebaSegmenter
{
    readonly Dictionary<string, long> freq;
    readonly Dictionary<string, long>.AlternateLookup<ReadOnlySpan<char>> lookup;
    long total;
    double logTotal;

    JiebaSegmenter(Dictionary<string, long> freq, long total, JiebaHmm? hmm)
    {
        this.freq = freq;
        lookup = freq.GetAlternateLookup<ReadOnlySpan<char>>();
        this.total = total;
        logTotal = Math.Log(total);
        Hmm = hmm;
    }

    /// <summary>The HMM used for unknown words when <c>hmm: true</c> is asked; null if none was loaded.</summary>
    public JiebaHmm? Hmm { get; }

    /// <summary>Number of dictionary words (prefix entries excluded).</summary>
    public int WordCount => freq.Count(kv => kv.Value > 0);

    /// <summary>
    /// Loads jieba's <c>dict.txt</c> format: one <c>word frequency [tag]</c> per line. Use
    /// <see cref="Data.DataCache.GetJieba"/> (or <c>b4s data get jieba-dict</c>) to obtain the file.
    /// </summary>
    /// <exception cref="FileNotFoundException">No file at <paramref name="path"/>.</exception>
    /// <exception cref="InvalidDataException">A line is malformed; the message names the line.</exception>
    public static JiebaSegmenter Load(string path, JiebaHmm? hmm = null)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"{path}: jieba dictionary not found; run 'b4s data get jieba-dict'", path);
        var freq = new Dictionary<string, long>(400_000, StringComparer.Ordinal);
        long total = 0;
        int lineNo = 0;
        foreach (string raw in File.ReadLines(path, Encoding.UTF8))
        {
            lineNo++;
            string line = raw.Trim();
            if (lineNo == 1 && line.Length > 0 && line[0] == '\uFEFF') line = line[1..];
            if (line.Length == 0) continue;
            var parts = line.Split(' ');
            if (parts.Length < 2 || !long.TryParse(parts[1], NumberStyles.None, CultureInfo.InvariantCulture, out long f))
                throw new InvalidDataException($"{path} line {lineNo}: expected 'word frequency [tag]', got '{Truncate(line)}'");
            AddWithPrefixes(freq, parts[0], f);
            total += f;
        }
        if (total <= 0) throw new InvalidDataException($"{path}: the dictionary has no words with a positive frequency");
        return new JiebaSegmenter(freq, total, hmm);
    }

    /// <summary>
    /// The segmenter over the cached jieba dictionary (and its HMM tables), fetching them first when
    /// <paramref name="fetch"/> is true and the cache is empty.
    /// </summary>
    /// <exception cref="FileNotFoundException">Nothing is cached and <paramref name="fetch"/> is false.</exception>
    public static JiebaSegmenter FromCache(bool fetch = false)
    {
        var res = Data.DataCache.FindJieba() ?? (fetch ? Data.DataCache.GetJieba() : null)
            ?? throw new FileNotFoundException($"the jieba dictionary is not cached under {Data.DataCache.Root}; run 'b4s data get jieba-dict'");
        JiebaHmm? hmm = res.Files.ContainsKey("prob_emit.py") ? JiebaHmm.Load(Path.GetDirectoryName(res.Files["prob_emit.py"])!)
            : res.Files.TryGetValue("hmm_model", out var m) ? JiebaHmm.LoadCppJieba(m) : null;
        return Load(res.Files["dict"], hmm);
    }

    static string Truncate(string s) => s.Length <= 60 ? s : s[..60] + "…";

    static void AddWithPrefixes(Dictionary<string, long> freq, string word, long f)
    {
        freq[word] = f;
        for (int i = 1; i < word.Length; i++) freq.TryAdd(word[..i], 0);
    }

    /// <summary>
    /// jieba's <c>add_word</c>: adds or updates a word; without a frequency, the one that makes it survive
    /// segmentation (<c>suggest_freq(word, tune=False)</c>).
    /// </summary>
    public void AddWord(string word, long? frequency = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(word);
        long f = frequency ?? SuggestFrequency(word);
        AddWithPrefixes(freq, word, f);
        total += f;
        logTotal = Math.Log(total);
    }

    /// <summary>jieba's <c>suggest_freq(word, tune=False)</c>.</summary>
    public long SuggestFrequency(string word)
    {
        double ftotal = total, p = 1;
        foreach (var seg in Cut(word, hmm: false)) p *= (freq.TryGetValue(seg, out long f) && f != 0 ? f : 1) / ftotal;
        long own = freq.TryGetValue(word, out long w) && w != 0 ? w : 1;
        return Math.Max((long)(p * total) + 1, own);
    }

    /// <summary>Loads a user dictionary: lines of <c>word [frequency] [tag]</c> (jieba's <c>load_userdict</c>).</summary>
    public void LoadUserDictionary(string path)
    {
        int lineNo = 0;
        foreach (string raw in File.ReadLines(path, Encoding.UTF8))
        {
            lineNo++;
            string line = raw.Trim().TrimStart('\uFEFF');
            if (line.Length == 0) continue;
            var parts = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
            long? f = null;
            if (parts.Length > 1)
            {
                if (!long.TryParse(parts[1], NumberStyles.None, CultureInfo.InvariantCulture, out long v))
                    throw new InvalidDataException($"{path} line {lineNo}: frequency '{parts[1]}' is not a non-negative integer");
                f = v;
            }
            AddWord(parts[0], f);
        }
    }

    /// <summary>Segments <paramref name="text"/> into words (every character of the input is in exactly one word, in order).</summary>
    public List<string> Cut(string text, bool hmm = false)
    {
        ArgumentNullException.ThrowIfNull(text);
        if (hmm && Hmm is null) throw new InvalidOperationException("HMM segmentation was asked for but no HMM model was loaded (JiebaSegmenter.Load(path, JiebaHmm.Load(...)))");
        var words = new List<string>();
        int i = 0;
        while (i < text.Length)
        {
            int j = i;
            if (IsHanBlock(text[i]))
            {
                while (j < text.Length && IsHanBlock(text[j])) j++;
                if (hmm) CutBlockHmm(text.AsSpan(i, j - i), words); else CutBlock(text.AsSpan(i, j - i), words);
            }
            else
            {
                while (j < text.Length && !IsHanBlock(text[j])) j++;
                // Outside Chinese blocks jieba yields "\r\n" pairs and every other character on its own.
                for (int k = i; k < j;)
                {
                    int n = text[k] == '\r' && k + 1 < j && text[k + 1] == '\n' ? 2
                        : char.IsHighSurrogate(text[k]) && k + 1 < j && char.IsLowSurrogate(text[k + 1]) ? 2 : 1;
                    words.Add(text.Substring(k, n));
                    k += n;
                }
            }
            i = j;
        }
        return words;
    }

    /// <summary>jieba's <c>re_han_default</c>: <c>[\u4E00-\u9FD5a-zA-Z0-9+#&amp;\._%\-]</c>.</summary>
    static bool IsHanBlock(char c) =>
        (c >= '\u4E00' && c <= '\u9FD5') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
        c is '+' or '#' or '&' or '.' or '_' or '%' or '-';

    static bool IsAsciiAlnum(char c) => (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');

    /// <summary>route[i] = best (log probability, end) of the sentence suffix starting at i.</summary>
    (double Prob, int End)[] Route(ReadOnlySpan<char> s)
    {
        int n = s.Length;
        var route = new (double, int)[n + 1];
        route[n] = (0, 0);
        var ends = new List<int>(8);
        for (int k = n - 1; k >= 0; k--)
        {
            // DAG: every end i such that s[k..i] is a word; jieba extends while the fragment is a known prefix.
            ends.Clear();
            for (int i = k; i < n; i++)
            {
                if (!lookup.TryGetValue(s[k..(i + 1)], out long f)) break;
                if (f > 0) ends.Add(i);
            }
            if (ends.Count == 0) ends.Add(k);
            double best = double.NegativeInfinity;
            int bestEnd = -1;
            foreach (int x in ends)
            {
                long f = lookup.TryGetValue(s[k..(x + 1)], out long v) && v != 0 ? v : 1;
                double p = Math.Log(f) - logTotal + route[x + 1].Item1;
                // Python's max over (prob, x) tuples: ties go to the larger x.
                if (p > best || (p == best && x > bestEnd)) { best = p; bestEnd = x; }
            }
            route[k] = (best, bestEnd);
        }
        return route;
    }

    void CutBlock(ReadOnlySpan<char> s, List<string> words)
    {
        var route = Route(s);
        int x = 0, bufStart = -1;
        while (x < s.Length)
        {
            int y = route[x].End + 1;
            if (y - x == 1 && IsAsciiAlnum(s[x]))
            {
                if (bufStart < 0) bufStart = x;   // runs of single letters/digits are yielded as one word
            }
            else
            {
                if (bufStart >= 0) { words.Add(s[bufStart..x].ToString()); bufStart = -1; }
                words.Add(s[x..y].ToString());
            }
            x = y;
        }
        if (bufStart >= 0) words.Add(s[bufStart..].ToString());
    }

    void CutBlockHmm(ReadOnlySpan<char> s, List<string> words)
    {
        var route = Route(s);
        int x = 0, bufStart = -1;
        while (x < s.Length)
        {
            int y = route[x].End + 1;
            if (y - x == 1)
            {
                if (bufStart < 0) bufStart = x;
            }
            else
            {
                if (bufStart >= 0) { FlushHmm(s[bufStart..x], words); bufStart = -1; }
                words.Add(s[x..y].ToString());
            }
            x = y;
        }
        if (bufStart >= 0) FlushHmm(s[bufStart..], words);
    }

    void FlushHmm(ReadOnlySpan<char> buf, List<string> words)
    {
        if (buf.Length == 1) { words.Add(buf.ToString()); return; }
        if (!(lookup.TryGetValue(buf, out long f) && f > 0)) { Hmm!.Cut(buf, words); return; }
        foreach (char c in buf) words.Add(c.ToString());
    }
}
