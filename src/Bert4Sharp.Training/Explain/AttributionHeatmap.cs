namespace Bert4Sharp.Training;

using System.Globalization;
using System.Text;
using Bert4Sharp.Checkpoints;
using Bert4Sharp.Explain;
using SkiaSharp;

/// <summary>What <see cref="AttributionHeatmap.Save"/> drew.</summary>
/// <param name="Path">The PNG.</param>
/// <param name="Font">The font the labels use.</param>
/// <param name="Characters">Whether every cell shows its token (false: the font lacks some glyphs, and those cells show token indices; the HTML page has the characters).</param>
public sealed record HeatmapFile(string Path, string Font, bool Characters);

/// <summary>
/// A PNG heatmap of <see cref="TokenAttributions"/> (ScottPlot), like the figures of Su's post (kexue.fm/archives/7533):
/// one row per text, one cell per token, red for positive and blue for negative attribution, strength ∝ |attribution| /
/// that row's largest. Cells show the tokens when an installed font has every glyph (CJK needs one such as WenQuanYi
/// Micro Hei or Noto Sans CJK, <c>fc-list :lang=zh</c>); otherwise they show token indices and say so in the title.
/// </summary>
public static class AttributionHeatmap
{
    /// <summary>Draws <paramref name="rows"/> into <paramref name="path"/> (written atomically).</summary>
    /// <param name="path">The PNG to write.</param>
    /// <param name="rows">The explanations, one row each.</param>
    /// <param name="title">The title.</param>
    /// <param name="describe">The text right of each row (default: predicted label, its probability and the completeness gap).</param>
    /// <exception cref="ArgumentException">No rows.</exception>
    public static HeatmapFile Save(string path, IReadOnlyList<TokenAttributions> rows, string title = "Integrated gradients", Func<TokenAttributions, string>? describe = null)
    {
        if (rows.Count == 0) throw new ArgumentException("nothing to draw: no explanations");
        describe ??= a => string.Create(CultureInfo.InvariantCulture, $"{a.Predicted} {a.PredictedProbability:F2} (gap {a.RelativeGap:P1})");
        string allText = string.Concat(rows.SelectMany(r => r.Tokens)) + string.Concat(rows.Select(describe)) + title;
        string font = FindFont(allText);
        using var typeface = SKTypeface.FromFamilyName(font);                              // opened once for every glyph check
        bool Drawable(string text) => ContainsAll(typeface, text);
        // Each cell's label and whether the font can draw it; a token it cannot draw shows its index instead (all of them when no CJK font is installed).
        var cells = rows.Select(r => r.Tokens.Select(t => { string l = Label(t); return (Text: l, Drawable: Drawable(l)); }).ToArray()).ToArray();
        bool anyCharacters = rows.Select((r, ri) => r.Tokens.Where((t, i) => cells[ri][i].Drawable && t.Any(char.IsLetter) && t[0] != '[').Any()).Any(b => b);
        bool characters = cells.All(r => r.All(c => c.Drawable));
        if (!anyCharacters) title += " (token indices: no installed font has these glyphs; see the HTML page)";
        if (!Drawable(title)) title = "Integrated gradients (token indices)";

        var plot = new ScottPlot.Plot();
        int width = rows.Max(r => r.Tokens.Count);
        for (int r = 0; r < rows.Count; r++)
        {
            var a = rows[r];
            double max = a.MaxMagnitude, y = -r;
            for (int i = 0; i < a.Tokens.Count; i++)
            {
                double s = a.Scores[i], strength = TokenAttributions.Strength(s, max);
                var (red, green, blue) = TokenAttributions.SignColour(s);
                var rect = plot.Add.Rectangle(i + 0.04, i + 0.96, y - 0.42, y + 0.42);
                rect.FillStyle.Color = new ScottPlot.Color(red, green, blue).WithAlpha(strength);
                rect.LineStyle.Width = 0.5f;
                rect.LineStyle.Color = ScottPlot.Colors.LightGray;
                var (text, drawable) = cells[r][i];
                var label = plot.Add.Text(drawable ? text : i.ToString(CultureInfo.InvariantCulture), i + 0.5, y);
                label.LabelFontName = font;
                label.LabelFontSize = drawable ? (text.Length > 2 ? 11 : 20) : 12;
                label.LabelAlignment = ScottPlot.Alignment.MiddleCenter;
                label.LabelFontColor = strength > 0.6 ? ScottPlot.Colors.White : ScottPlot.Colors.Black;
            }
            string side = describe(a);
            var note = plot.Add.Text(Drawable(side) ? side : string.Create(CultureInfo.InvariantCulture, $"#{a.PredictedIndex} {a.PredictedProbability:F2}"), width + 0.3, y);
            note.LabelFontName = font;
            note.LabelFontSize = 14;
            note.LabelAlignment = ScottPlot.Alignment.MiddleLeft;
        }
        plot.Axes.SetLimits(-0.1, width + 6, -rows.Count + 0.4, 0.6);
        plot.HideAxesAndGrid();
        plot.Title(title, 14);
        plot.Axes.Title.Label.FontName = font;
        int pixelsWide = Math.Clamp(60 * (width + 6), 480, 2400), pixelsHigh = 60 + 56 * rows.Count;
        AtomicFile.Write(path, stream =>
        {
            var bytes = plot.GetImageBytes(pixelsWide, pixelsHigh, ScottPlot.ImageFormat.Png);
            stream.Write(bytes);
        });
        return new HeatmapFile(path, font, characters);
    }

    /// <summary>A token as a cell shows it: WordPiece's ## dropped.</summary>
    static string Label(string token) => token.StartsWith("##", StringComparison.Ordinal) && token.Length > 2 ? token[2..] : token;

    /// <summary>ScottPlot's default font when it has every glyph, else the installed family fontconfig matches to the first missing character (e.g. WenQuanYi Micro Hei for CJK).</summary>
    static string FindFont(string text)
    {
        string font = ScottPlot.Fonts.Default;
        using var typeface = SKTypeface.FromFamilyName(font);
        foreach (var rune in text.EnumerateRunes())
        {
            if (Rune.IsWhiteSpace(rune) || typeface.ContainsGlyph(rune.Value)) continue;
            using var match = SKFontManager.Default.MatchCharacter(rune.Value);
            if (match is not null && match.ContainsGlyph(rune.Value)) return match.FamilyName;
            foreach (string family in CjkFamilies)
            {
                using var candidate = SKTypeface.FromFamilyName(family);
                if (candidate is not null && candidate.FamilyName == family && candidate.ContainsGlyph(rune.Value)) return family;
            }
            return ScottPlot.Fonts.Detect(text);
        }
        return font;
    }

    static readonly string[] CjkFamilies = ["WenQuanYi Micro Hei", "WenQuanYi Zen Hei", "Noto Sans CJK SC", "Noto Sans SC", "Source Han Sans SC", "Droid Sans Fallback", "AR PL UMing CN"];

    static bool ContainsAll(SKTypeface? typeface, string text) =>
        typeface is not null && typeface.ContainsGlyphs(text.Replace(" ", "", StringComparison.Ordinal));
}
