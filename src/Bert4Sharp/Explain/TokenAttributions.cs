namespace Bert4Sharp.Explain;

using System.Globalization;
using System.Net;
using System.Text;
using Bert4Sharp.Checkpoints;
using Bert4Sharp.Tokenization;

/// <summary>What <see cref="IntegratedGradients"/> found for one input: per-token attributions, the prediction and the completeness check.</summary>
public sealed record TokenAttributions
{
    /// <summary>The text (text A of a pair).</summary>
    public required string Text { get; init; }
    /// <summary>Text B, or null.</summary>
    public string? Pair { get; init; }
    /// <summary>The tokens, [CLS] and [SEP] included.</summary>
    public required IReadOnlyList<string> Tokens { get; init; }
    /// <summary>Each token's characters in its text (<see cref="SegmentIds"/> says which); empty for added tokens.</summary>
    public required IReadOnlyList<TokenSpan> Offsets { get; init; }
    /// <summary>0: the token comes from <see cref="Text"/>; 1: from <see cref="Pair"/>.</summary>
    public required IReadOnlyList<int> SegmentIds { get; init; }
    /// <summary>Attribution of each token: Σ over the embedding width of (x − x′) ⊙ ∫∇f (signed; sums to about f(x) − f(x′)).</summary>
    public required IReadOnlyList<double> Scores { get; init; }
    /// <summary>The L2 norm over the width of the same product (unsigned; a magnitude that cancellation inside a row cannot hide).</summary>
    public required IReadOnlyList<double> Norms { get; init; }
    /// <summary>The explained label index (classifier) or token id (masked LM).</summary>
    public int TargetIndex { get; init; }
    /// <summary>The explained label or token.</summary>
    public required string Target { get; init; }
    /// <summary>The target's probability at the input.</summary>
    public double TargetProbability { get; init; }
    /// <summary>The predicted label index or token id.</summary>
    public int PredictedIndex { get; init; }
    /// <summary>The predicted label or token.</summary>
    public required string Predicted { get; init; }
    /// <summary>Its probability.</summary>
    public double PredictedProbability { get; init; }
    /// <summary>The explained [MASK]'s token position (masked LM), or null (classifier).</summary>
    public int? MaskPosition { get; init; }
    /// <summary>What f is.</summary>
    public AttributionScore Score { get; init; }
    /// <summary>f(x).</summary>
    public double InputScore { get; init; }
    /// <summary>f(x′), the baseline's score.</summary>
    public double BaselineScore { get; init; }
    /// <summary>Σ attributions − (f(x) − f(x′)).</summary>
    public double Gap { get; init; }
    /// <summary>|<see cref="Gap"/>| / |f(x) − f(x′)|.</summary>
    public double RelativeGap { get; init; }
    /// <summary>The tolerance <see cref="RelativeGap"/> was checked against.</summary>
    public double Tolerance { get; init; }
    /// <summary>Whether the relative gap is within the tolerance (completeness holds to it).</summary>
    public bool Complete { get; init; }
    /// <summary>The integration rule.</summary>
    public IntegrationMethod Method { get; init; }
    /// <summary>Its steps.</summary>
    public int Steps { get; init; }
    /// <summary>Gradient evaluations made (steps, or steps + 1 for the trapezoid rule).</summary>
    public int Evaluations { get; init; }
    /// <summary>The baseline.</summary>
    public IntegrationBaseline Baseline { get; init; }
    /// <summary>Wall time of the computation.</summary>
    public TimeSpan Elapsed { get; init; }

    /// <summary>Σ attributions.</summary>
    public double Sum => Scores.Sum();

    /// <summary>The largest |attribution| (0 without tokens): what colour strengths and bars are relative to.</summary>
    public double MaxMagnitude => Scores.Count == 0 ? 0 : Scores.Max(Math.Abs);

    /// <summary>|<paramref name="score"/>| / <paramref name="max"/> clamped to [0, 1] (0 when <paramref name="max"/> is 0): a cell's colour strength.</summary>
    public static double Strength(double score, double max) => max > 0 ? Math.Clamp(Math.Abs(score) / max, 0, 1) : 0;

    /// <summary>The colour of an attribution's sign: red (220, 38, 38) for positive, blue (37, 99, 235) for negative.</summary>
    public static (byte R, byte G, byte B) SignColour(double score) => score >= 0 ? ((byte)220, (byte)38, (byte)38) : ((byte)37, (byte)99, (byte)235);

    /// <summary>One line: target, f(x) − f(x′), Σ attributions and the gap against the tolerance.</summary>
    public string DescribeCompleteness() => string.Create(CultureInfo.InvariantCulture,
        $"Σ attributions {Sum:G6} vs f(x) − f(x′) = {InputScore:G6} − {BaselineScore:G6} = {InputScore - BaselineScore:G6}: gap {Gap:G3} ({RelativeGap:P3}; tolerance {Tolerance:P1}, {(Complete ? "within" : "ABOVE")}) — {Method}, {Steps} steps, {Baseline} baseline");
}

/// <summary>
/// An HTML page of <see cref="TokenAttributions"/>: the original characters coloured by their token's attribution (red
/// positive, blue negative, opacity ∝ |attribution| / max), the prediction, the completeness check and a token table.
/// Pure text; the PNG heatmap is in Bert4Sharp.Training (it needs a plotting package).
/// </summary>
public static class AttributionHtml
{
    /// <summary>The page for one or more explanations (one section each).</summary>
    public static string Render(IReadOnlyList<TokenAttributions> items, string title = "Integrated gradients")
    {
        var sb = new StringBuilder();
        sb.Append("<!DOCTYPE html>\n<html lang=\"zh\">\n<head>\n<meta charset=\"utf-8\">\n<title>").Append(E(title)).Append("</title>\n<style>\n")
          .Append("body{font-family:system-ui,'Noto Sans CJK SC','WenQuanYi Micro Hei',sans-serif;margin:2em;max-width:60em}\n")
          .Append(".text{font-size:1.6em;line-height:1.9;letter-spacing:.05em}\n.text span{border-radius:3px;padding:0 1px}\n")
          .Append("table{border-collapse:collapse;font-size:.9em}td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}\n")
          .Append(".meta{color:#444}.warn{color:#b00;font-weight:bold}\n</style>\n</head>\n<body>\n<h1>").Append(E(title)).Append("</h1>\n");
        foreach (var a in items) Section(sb, a);
        sb.Append("<p class=\"meta\">Red: the token raises the explained score; blue: it lowers it. Colour strength is |attribution| / the largest |attribution| of that text. ")
          .Append("Attribution = Σ over the embedding width of (x − x′) ⊙ ∫ ∇f along the straight path from the baseline x′ (Sundararajan et al. 2017).</p>\n</body>\n</html>\n");
        return sb.ToString();
    }

    /// <summary>Writes <see cref="Render"/> to <paramref name="path"/> atomically.</summary>
    public static void Write(string path, IReadOnlyList<TokenAttributions> items, string title = "Integrated gradients") =>
        AtomicFile.WriteAllText(path, Render(items, title));

    /// <summary>The colour of an attribution relative to the largest magnitude: red for positive, blue for negative, alpha ∝ magnitude.</summary>
    public static string Colour(double score, double max)
    {
        string alpha = TokenAttributions.Strength(score, max).ToString("F3", CultureInfo.InvariantCulture);
        var (r, g, b) = TokenAttributions.SignColour(score);
        return $"rgba({r},{g},{b},{alpha})";
    }

    static void Section(StringBuilder sb, TokenAttributions a)
    {
        var inv = CultureInfo.InvariantCulture;
        double max = a.MaxMagnitude;
        sb.Append("<section>\n<p class=\"meta\">");
        if (a.MaskPosition is int m) sb.Append(inv, $"[MASK] at token {m}: ");
        sb.Append(inv, $"predicted <b>{E(a.Predicted)}</b> (p = {a.PredictedProbability:F4}); explained <b>{E(a.Target)}</b> (p = {a.TargetProbability:F4}), f = {a.Score.ToString().ToLowerInvariant()}</p>\n");
        for (int segment = 0; segment < 2; segment++)
        {
            string? text = segment == 0 ? a.Text : a.Pair;
            if (text is null) continue;
            sb.Append("<div class=\"text\">");
            // Each character takes the colour of the token covering it; characters no token covers (spaces) stay plain.
            var owner = new int[text.Length];
            Array.Fill(owner, -1);
            for (int i = 0; i < a.Tokens.Count; i++)
                if (a.SegmentIds[i] == segment && !a.Offsets[i].IsEmpty)
                    for (int c = Math.Max(0, a.Offsets[i].Start); c < Math.Min(text.Length, a.Offsets[i].End); c++) owner[c] = i;
            int k = 0;
            while (k < text.Length)
            {
                int o = owner[k], end = k;
                while (end < text.Length && owner[end] == o) end++;
                string piece = E(text[k..end]);
                if (o < 0) sb.Append(piece);
                else sb.Append(inv, $"<span style=\"background:{Colour(a.Scores[o], max)}\" title=\"{E(a.Tokens[o])}: {a.Scores[o]:G4}\">{piece}</span>");
                k = end;
            }
            sb.Append("</div>\n");
        }
        sb.Append("<p class=\"").Append(a.Complete ? "meta" : "warn").Append("\">").Append(E(a.DescribeCompleteness())).Append("</p>\n");
        sb.Append("<table><tr><th>#</th><th>token</th><th>attribution</th><th>L2 norm</th></tr>\n");
        for (int i = 0; i < a.Tokens.Count; i++)
            sb.Append(inv, $"<tr><td>{i}</td><td style=\"background:{Colour(a.Scores[i], max)}\">{E(a.Tokens[i])}</td><td>{a.Scores[i]:F5}</td><td>{a.Norms[i]:F5}</td></tr>\n");
        sb.Append("</table>\n</section>\n<hr>\n");
    }

    static string E(string s) => WebUtility.HtmlEncode(s);
}
