namespace Bert4Sharp.Tasks.Clue;

using System.Text;

/// <summary>CMRC2018 scores in percent over all gold questions; unanswered questions score 0 and are counted.</summary>
public sealed record CmrcScore(double ExactMatch, double F1, int Total, int Unanswered)
{
    /// <summary>The official summary figure, (EM + F1) / 2.</summary>
    public double Average => (ExactMatch + F1) / 2;
}

/// <summary>
/// CMRC2018 EM and F1 as the official <c>cmrc2018_evaluate.py</c> (v5) defines them, re-implemented:
/// <list type="bullet">
/// <item>text is lower-cased and trimmed;</item>
/// <item>EM: the prediction with punctuation removed equals some gold answer with punctuation removed;</item>
/// <item>F1: both are segmented "mixed" (each CJK character U+4E00–U+9FA5 is a token; the runs between them are split
/// into words), punctuation dropped; the longest common <em>contiguous</em> token run gives precision and recall;
/// the best over the gold answers counts;</item>
/// <item>both are averaged over all gold questions and reported in percent.</item>
/// </list>
/// The punctuation is the script's list: <c>- : _ * ^ / \ ~ ` + =</c> and <c>，。：？！“”；’《》·、「」（）－～『』</c>
/// (its "……" entry is two characters and never equals one, so a single "…" is kept, as there).
/// </summary>
/// <remarks>
/// The script splits the non-CJK runs with <c>nltk.word_tokenize</c>. <see cref="WordTokenize"/> re-implements the
/// part of NLTK's Treebank rules that can apply once the punctuation above is gone: whitespace; <c>; @ # $ % &amp; ? !</c>,
/// brackets, quotes and <c>‘ « » „</c> as tokens; a comma not followed by a digit; a run's final period; "..."; and the
/// clitics <c>n't 's 'm 'd 'll 're 've</c>. Not reproduced: Punkt sentence splitting (a period inside a run followed by
/// a space stays on its word) and the "cannot/gonna/wanna" splits. Python's <c>lower()</c> is approximated by
/// <see cref="string.ToLowerInvariant()"/> (they differ on a few characters such as U+0130).
/// </remarks>
public static class CmrcMetric
{
    const string Punctuation = "-:_*^/\\~`+=，。：？！“”；’《》·、「」（）－～『』";

    /// <summary>Whether <paramref name="c"/> is on the script's punctuation list.</summary>
    public static bool IsPunctuation(char c) => Punctuation.Contains(c);

    /// <summary>Whether the script treats <paramref name="c"/> as a CJK character (U+4E00–U+9FA5).</summary>
    public static bool IsCjk(char c) => c >= '\u4e00' && c <= '\u9fa5';

    /// <summary>Lower-cased, trimmed, punctuation removed (what EM compares).</summary>
    public static string RemovePunctuation(string text)
    {
        var sb = new StringBuilder();
        foreach (char c in Normalize(text)) if (!IsPunctuation(c)) sb.Append(c);
        return sb.ToString();
    }

    /// <summary>The script's mixed segmentation: CJK characters one by one, the runs between them through <see cref="WordTokenize"/>.</summary>
    /// <param name="text">Answer or prediction.</param>
    /// <param name="removePunctuation">Drop the punctuation characters (F1 does); when kept, each is a token and ends a run.</param>
    public static List<string> MixedSegmentation(string text, bool removePunctuation = true)
    {
        var tokens = new List<string>();
        var run = new StringBuilder();
        foreach (char c in Normalize(text))
        {
            if (removePunctuation && IsPunctuation(c)) continue;   // dropped without ending the run, as in the script
            if (IsCjk(c) || IsPunctuation(c))
            {
                if (run.Length > 0) { tokens.AddRange(WordTokenize(run.ToString())); run.Clear(); }
                tokens.Add(c.ToString());
            }
            else run.Append(c);
        }
        if (run.Length > 0) tokens.AddRange(WordTokenize(run.ToString()));
        return tokens;
    }

    /// <summary>1 when the prediction equals some answer after <see cref="RemovePunctuation"/>, else 0.</summary>
    public static double ExactMatch(IReadOnlyList<string> answers, string prediction)
    {
        string p = RemovePunctuation(prediction);
        return answers.Any(a => RemovePunctuation(a) == p) ? 1 : 0;
    }

    /// <summary>The best F1 (0..1) of <paramref name="prediction"/> against any of <paramref name="answers"/>.</summary>
    public static double F1(IReadOnlyList<string> answers, string prediction)
    {
        if (answers.Count == 0) throw new ArgumentException("a CMRC question needs at least one gold answer", nameof(answers));
        var pred = MixedSegmentation(prediction);
        double best = 0;
        foreach (string a in answers)
        {
            var gold = MixedSegmentation(a);
            int lcs = LongestCommonRun(gold, pred);
            if (lcs == 0) continue;
            double precision = (double)lcs / pred.Count, recall = (double)lcs / gold.Count;
            best = Math.Max(best, 2 * precision * recall / (precision + recall));
        }
        return best;
    }

    /// <summary>
    /// Scores predictions (question id → answer text) against the gold questions, as the official script: every gold
    /// question counts in the denominator; a question without a prediction scores 0 and is counted in <see cref="CmrcScore.Unanswered"/>.
    /// </summary>
    public static CmrcScore Evaluate(IEnumerable<(string Id, IReadOnlyList<string> Answers)> gold, IReadOnlyDictionary<string, string> predictions)
    {
        double em = 0, f1 = 0;
        int total = 0, skipped = 0;
        foreach (var (id, answers) in gold)
        {
            total++;
            if (!predictions.TryGetValue(id.Trim(), out var p)) { skipped++; continue; }
            em += ExactMatch(answers, p);
            f1 += F1(answers, p);
        }
        if (total == 0) throw new ArgumentException("no gold questions to score", nameof(gold));
        return new(100.0 * em / total, 100.0 * f1 / total, total, skipped);
    }

    /// <summary><see cref="Evaluate(IEnumerable{ValueTuple{string, IReadOnlyList{string}}}, IReadOnlyDictionary{string, string})"/> over read records.</summary>
    public static CmrcScore Evaluate(IEnumerable<CmrcRecord> gold, IReadOnlyDictionary<string, string> predictions) =>
        Evaluate(gold.Select(r => (r.Id, (IReadOnlyList<string>)[.. r.Answers.Select(a => a.Text)])), predictions);

    /// <summary>Length of the longest common contiguous run of tokens.</summary>
    public static int LongestCommonRun(IReadOnlyList<string> a, IReadOnlyList<string> b)
    {
        var prev = new int[b.Count + 1];
        var cur = new int[b.Count + 1];
        int best = 0;
        for (int i = 0; i < a.Count; i++)
        {
            for (int j = 0; j < b.Count; j++)
            {
                cur[j + 1] = a[i] == b[j] ? prev[j] + 1 : 0;
                best = Math.Max(best, cur[j + 1]);
            }
            (prev, cur) = (cur, prev);
        }
        return best;
    }

    /// <summary>Splits a non-CJK run into words with the subset of NLTK's Treebank rules described on <see cref="CmrcMetric"/>.</summary>
    public static List<string> WordTokenize(string run)
    {
        var tokens = new List<string>();
        var chunks = run.Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries);
        for (int k = 0; k < chunks.Length; k++)
        {
            string w = chunks[k];
            // The run's final period (before closing brackets/quotes only) is its own token, unless it follows a period.
            int finalPeriod = -1;
            if (k == chunks.Length - 1)
            {
                int e = w.Length - 1;
                while (e >= 0 && ")]}>\"'".Contains(w[e])) e--;
                if (e >= 1 && w[e] == '.' && w[e - 1] != '.') finalPeriod = e;
            }
            var cur = new StringBuilder();
            void Flush() { if (cur.Length > 0) { tokens.AddRange(Clitics(cur.ToString())); cur.Clear(); } }
            for (int i = 0; i < w.Length; i++)
            {
                char c = w[i];
                if (i == finalPeriod) { Flush(); tokens.Add("."); continue; }
                if (c == '.' && i + 1 < w.Length && w[i + 1] == '.')
                {
                    int j = i;
                    while (j < w.Length && w[j] == '.') j++;
                    Flush(); tokens.Add(w[i..j]); i = j - 1; continue;
                }
                if (c == ',' && (i + 1 >= w.Length || !char.IsAsciiDigit(w[i + 1]))) { Flush(); tokens.Add(","); continue; }
                if (c == '"')
                {
                    bool opening = i == 0 || "([{<".Contains(w[i - 1]);
                    Flush(); tokens.Add(opening ? "``" : "''"); continue;
                }
                if (";@#$%&?!()[]{}<>‘«»„".Contains(c)) { Flush(); tokens.Add(c.ToString()); continue; }
                cur.Append(c);
            }
            Flush();
        }
        return tokens;
    }

    // A word's clitic ending becomes a token: n't, 'll, 're, 've, 's, 'm, 'd, or a lone trailing quote.
    static IEnumerable<string> Clitics(string w)
    {
        foreach (string s in (string[])["n't", "'ll", "'re", "'ve", "'s", "'m", "'d", "'"])
            if (w.Length > s.Length && w.EndsWith(s, StringComparison.Ordinal) && w[^(s.Length + 1)] != '\'')
                return [w[..^s.Length], s];
        return [w];
    }

    static string Normalize(string text) => text.ToLowerInvariant().Trim();
}
