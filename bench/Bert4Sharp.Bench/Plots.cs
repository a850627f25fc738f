namespace Bert4Sharp.Bench;

using System.Globalization;

/// <summary>Small PNG line plots for the benches (ScottPlot, as <c>Bert4Sharp.Training.TrainingCurves</c>).</summary>
static class Plots
{
    /// <summary>Seconds in a table cell: milliseconds below 1 s.</summary>
    public static string Seconds(double s) => s < 1
        ? (s * 1000).ToString(s < 0.01 ? "F2" : "F1", CultureInfo.InvariantCulture) + " ms"
        : s.ToString("F2", CultureInfo.InvariantCulture) + " s";

    /// <summary>An axis value as it reads (3 significant digits).</summary>
    public static string Plain(double v) => v.ToString(v >= 1e5 || v < 1e-3 ? "0.#E+0" : "G3", CultureInfo.InvariantCulture);

    /// <summary>
    /// A log-log line plot (both axes log10; x ticked at powers of two, y at decades labelled by
    /// <paramref name="yFormat"/>), one line with markers per series; series without points are left out. Series
    /// come in groups of <paramref name="variants"/>: one colour per group, solid / dashed / dotted within it. Written to
    /// <paramref name="path"/> (960 × 480, the legend on the right).
    /// </summary>
    public static void LogLog(string path, string title, string xLabel, string yLabel, IEnumerable<(string Label, List<(double X, double Y)> Points)> series, Func<double, string> yFormat, int variants = 1)
    {
        var plot = new ScottPlot.Plot();
        var palette = new ScottPlot.Palettes.Category10();
        int i = 0;
        double minX = double.MaxValue, maxX = 0;
        foreach (var (label, points) in series)
        {
            var kept = points.Where(p => p.X > 0 && p.Y > 0).ToList();
            if (kept.Count == 0) { i++; continue; }
            (minX, maxX) = (Math.Min(minX, kept.Min(p => p.X)), Math.Max(maxX, kept.Max(p => p.X)));
            var line = plot.Add.Scatter(kept.Select(p => Math.Log10(p.X)).ToArray(), kept.Select(p => Math.Log10(p.Y)).ToArray(), palette.GetColor(i / variants));
            line.LinePattern = (i++ % variants) switch { 0 => ScottPlot.LinePattern.Solid, 1 => ScottPlot.LinePattern.Dashed, _ => ScottPlot.LinePattern.Dotted };
            line.LegendText = label;
            line.MarkerSize = 6;
            line.LineWidth = 2;
        }
        plot.Axes.Bottom.TickGenerator = maxX > 0 ? PowersOfTwo(minX, maxX) : Decades(Plain);
        plot.Axes.Left.TickGenerator = Decades(yFormat);
        plot.Title(title, 13);
        plot.XLabel(xLabel, 13);
        plot.YLabel(yLabel, 13);
        plot.ShowLegend(ScottPlot.Edge.Right);
        string tmp = path + ".tmp.png";
        plot.SavePng(tmp, 960, 480);
        File.Move(tmp, path, overwrite: true);
        Console.WriteLine($"  wrote {path} ({new FileInfo(path).Length / 1024} KB)");
    }

    /// <summary>Major ticks at whole decades of a log10 axis, minor ticks between them.</summary>
    static ScottPlot.TickGenerators.NumericAutomatic Decades(Func<double, string> format) => new()
    {
        MinorTickGenerator = new ScottPlot.TickGenerators.LogMinorTickGenerator(),
        IntegerTicksOnly = true,
        LabelFormatter = y => format(Math.Pow(10, y)),
    };

    /// <summary>Ticks at the powers of two from <paramref name="min"/> to <paramref name="max"/> on a log10 axis.</summary>
    static ScottPlot.TickGenerators.NumericManual PowersOfTwo(double min, double max)
    {
        var ticks = new ScottPlot.TickGenerators.NumericManual();
        for (double v = Math.Pow(2, Math.Floor(Math.Log2(min))); v <= max * 1.0001; v *= 2) ticks.AddMajor(Math.Log10(v), v.ToString(CultureInfo.InvariantCulture));
        return ticks;
    }
}
