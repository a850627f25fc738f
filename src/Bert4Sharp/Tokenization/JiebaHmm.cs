namespace Bert4Sharp.Tokenization;

using System.Globalization;
using System.Text;

/// <summary>
/// jieba's hidden Markov model for words missing from the dictionary (<c>jieba.finalseg</c>): four
/// states B/M/E/S (begin, middle, end, single), log start/transition/emission probabilities, decoded by
/// Viterbi with jieba's tie-breaking. Loaded from jieba's own <c>finalseg/prob_*.py</c> files.
/// </summary>
public sealed class JiebaHmm
{
    const double MinFloat = -3.14e100;
    static readonly char[] States = ['B', 'M', 'E', 'S'];
    // Which states may precede each state (jieba's PrevStatus), in jieba's order.
    static readonly int[][] Prev = [[2, 3], [1, 0], [0, 1], [3, 2]];

    readonly double[] start = new double[4];
    readonly double[,] trans = new double[4, 4];
    readonly Dictionary<char, double>[] emit = [new(), new(), new(), new()];

    JiebaHmm() { }

    /// <summary>Loads <c>prob_start.py</c>, <c>prob_trans.py</c> and <c>prob_emit.py</c> from <paramref name="directory"/>.</summary>
    /// <exception cref="FileNotFoundException">A file is missing.</exception>
    /// <exception cref="InvalidDataException">A file does not hold the expected dictionary literal.</exception>
    public static JiebaHmm Load(string directory)
    {
        var hmm = new JiebaHmm();
        var s = ParseFile(Path.Combine(directory, "prob_start.py"));
        var t = ParseFile(Path.Combine(directory, "prob_trans.py"));
        var e = ParseFile(Path.Combine(directory, "prob_emit.py"));
        for (int i = 0; i < 4; i++)
        {
            string st = States[i].ToString();
            hmm.start[i] = s.TryGetValue(st, out var v) && v is double d ? d : MinFloat;
            for (int j = 0; j < 4; j++)
                hmm.trans[i, j] = t.TryGetValue(st, out var row) && row is Dictionary<string, object> r && r.TryGetValue(States[j].ToString(), out var p) && p is double pd ? pd : MinFloat;
            if (e.TryGetValue(st, out var em) && em is Dictionary<string, object> emd)
                foreach (var (k, val) in emd)
                    if (k.Length == 1 && val is double ev) hmm.emit[i][k[0]] = ev;
        }
        if (hmm.emit.Any(x => x.Count == 0)) throw new InvalidDataException($"{directory}: prob_emit.py has no emission table for some state");
        return hmm;
    }

    /// <summary>
    /// Loads cppjieba's <c>hmm_model.utf8</c> (the same numbers, as shipped by the npm package nodejieba):
    /// start line, 4×4 transition lines and 4 emission lines, states in the order B, E, M, S.
    /// </summary>
    public static JiebaHmm LoadCppJieba(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"{path}: HMM model not found; run 'b4s data get jieba-dict'", path);
        var lines = File.ReadLines(path, Encoding.UTF8).Select(l => l.Trim()).Where(l => l.Length > 0 && l[0] != '#').ToList();
        if (lines.Count < 9) throw new InvalidDataException($"{path}: expected 9 data lines (start, 4 transition, 4 emission), found {lines.Count}");
        int[] order = [0, 2, 1, 3];   // file order B, E, M, S -> our indices B=0, M=1, E=2, S=3
        double Num(string x, int line) => double.TryParse(x, NumberStyles.Float, CultureInfo.InvariantCulture, out double v)
            ? v : throw new InvalidDataException($"{path} data line {line + 1}: '{x}' is not a number");
        var hmm = new JiebaHmm();
        var st = lines[0].Split(' ', StringSplitOptions.RemoveEmptyEntries);
        for (int i = 0; i < 4; i++) hmm.start[order[i]] = Num(st[i], 0);
        for (int r = 0; r < 4; r++)
        {
            var row = lines[1 + r].Split(' ', StringSplitOptions.RemoveEmptyEntries);
            for (int c = 0; c < 4; c++) hmm.trans[order[r], order[c]] = Num(row[c], 1 + r);
        }
        for (int r = 0; r < 4; r++)
            foreach (var pair in lines[5 + r].Split(','))
            {
                int colon = pair.LastIndexOf(':');
                if (colon != 1) continue;
                hmm.emit[order[r]][pair[0]] = Num(pair[(colon + 1)..], 5 + r);
            }
        return hmm;
    }

    /// <summary>jieba's <c>finalseg.cut</c> on one buffer: Viterbi on Chinese runs, letters/digits grouped.</summary>
    public void Cut(ReadOnlySpan<char> text, List<string> words)
    {
        int i = 0;
        while (i < text.Length)
        {
            int j = i;
            if (IsHan(text[i]))
            {
                while (j < text.Length && IsHan(text[j])) j++;
                Viterbi(text[i..j], words);
                i = j;
                continue;
            }
            // re_skip = ([a-zA-Z0-9]+(?:\.\d+)?%?): such matches are words; text between them is yielded as is.
            while (j < text.Length && !IsHan(text[j]))
            {
                if (IsAlnum(text[j]))
                {
                    if (j > i) { words.Add(text[i..j].ToString()); i = j; }
                    while (j < text.Length && IsAlnum(text[j])) j++;
                    if (j + 1 < text.Length && text[j] == '.' && char.IsAsciiDigit(text[j + 1]))
                    {
                        j++;
                        while (j < text.Length && char.IsAsciiDigit(text[j])) j++;
                    }
                    if (j < text.Length && text[j] == '%') j++;
                    words.Add(text[i..j].ToString());
                    i = j;
                }
                else j++;
            }
            if (j > i) words.Add(text[i..j].ToString());
            i = j;
        }
    }

    static bool IsHan(char c) => c >= '\u4E00' && c <= '\u9FD5';
    static bool IsAlnum(char c) => (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');

    void Viterbi(ReadOnlySpan<char> obs, List<string> words)
    {
        int n = obs.Length;
        var v = new double[n, 4];
        var back = new int[n, 4];
        for (int y = 0; y < 4; y++) v[0, y] = start[y] + Emit(y, obs[0]);
        for (int t = 1; t < n; t++)
        {
            for (int y = 0; y < 4; y++)
            {
                double em = Emit(y, obs[t]);
                double best = double.NegativeInfinity;
                int arg = -1;
                foreach (int y0 in Prev[y])
                {
                    double p = v[t - 1, y0] + trans[y0, y] + em;
                    // max over (prob, state letter): ties go to the later letter.
                    if (arg < 0 || p > best || (p == best && States[y0] > States[arg])) { best = p; arg = y0; }
                }
                v[t, y] = best;
                back[t, y] = arg;
            }
        }
        int state = v[n - 1, 3] > v[n - 1, 2] || v[n - 1, 3] == v[n - 1, 2] ? 3 : 2;   // max over E, S ('S' > 'E' on ties)
        var path = new int[n];
        for (int t = n - 1; t >= 0; t--)
        {
            path[t] = state;
            state = back[t, state];
        }
        int begin = 0, next = 0;
        for (int i = 0; i < n; i++)
        {
            switch (path[i])
            {
                case 0: begin = i; break;
                case 2: words.Add(obs[begin..(i + 1)].ToString()); next = i + 1; break;
                case 3: words.Add(obs[i].ToString()); next = i + 1; break;
            }
        }
        if (next < n) words.Add(obs[next..].ToString());
    }

    double Emit(int state, char c) => emit[state].TryGetValue(c, out double p) ? p : MinFloat;

    // ---- a reader for the dictionary literals in jieba's prob_*.py (P={'B': {...}, ...}) ----------

    static Dictionary<string, object> ParseFile(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"{path}: jieba HMM table not found; run 'b4s data get jieba-dict'", path);
        string text = File.ReadAllText(path, Encoding.UTF8);
        int at = text.IndexOf("P=", StringComparison.Ordinal);
        if (at < 0) throw new InvalidDataException($"{path}: no 'P=' dictionary");
        int pos = at + 2;
        return ParseDict(text, ref pos, path);
    }

    static void SkipWs(string s, ref int p) { while (p < s.Length && char.IsWhiteSpace(s[p])) p++; }

    static Dictionary<string, object> ParseDict(string s, ref int p, string path)
    {
        SkipWs(s, ref p);
        if (p >= s.Length || s[p] != '{') throw new InvalidDataException($"{path}: expected '{{' at {p}");
        p++;
        var d = new Dictionary<string, object>(StringComparer.Ordinal);
        while (true)
        {
            SkipWs(s, ref p);
            if (p < s.Length && s[p] == '}') { p++; return d; }
            string key = ParseString(s, ref p, path);
            SkipWs(s, ref p);
            if (p >= s.Length || s[p] != ':') throw new InvalidDataException($"{path}: expected ':' at {p}");
            p++;
            SkipWs(s, ref p);
            object value = p < s.Length && s[p] == '{' ? ParseDict(s, ref p, path) : ParseNumber(s, ref p, path);
            d[key] = value;
            SkipWs(s, ref p);
            if (p < s.Length && s[p] == ',') p++;
        }
    }

    static string ParseString(string s, ref int p, string path)
    {
        if (p >= s.Length || (s[p] != '\'' && s[p] != '"')) throw new InvalidDataException($"{path}: expected a string at {p}");
        char q = s[p++];
        var sb = new StringBuilder();
        while (p < s.Length && s[p] != q)
        {
            if (s[p] == '\\' && p + 1 < s.Length)
            {
                if (s[p + 1] == 'u' && p + 5 < s.Length)
                {
                    sb.Append((char)int.Parse(s.AsSpan(p + 2, 4), NumberStyles.HexNumber, CultureInfo.InvariantCulture));
                    p += 6;
                    continue;
                }
                sb.Append(s[p + 1]);
                p += 2;
                continue;
            }
            sb.Append(s[p++]);
        }
        p++;
        return sb.ToString();
    }

    static double ParseNumber(string s, ref int p, string path)
    {
        int b = p;
        while (p < s.Length && (char.IsAsciiDigit(s[p]) || s[p] is '-' or '+' or '.' or 'e' or 'E')) p++;
        if (!double.TryParse(s.AsSpan(b, p - b), NumberStyles.Float, CultureInfo.InvariantCulture, out double v))
            throw new InvalidDataException($"{path}: expected a number at {b}");
        return v;
    }
}
