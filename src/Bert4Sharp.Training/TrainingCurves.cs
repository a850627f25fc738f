namespace Bert4Sharp.Training;

using System.Text.Json;

/// <summary>PNG training curves from a trainer's <c>metrics.jsonl</c> (ScottPlot).</summary>
public static class TrainingCurves
{
    /// <summary>
    /// Draws <c>loss.png</c> (training loss, and evaluation losses when logged) and <c>metrics.png</c> (every other
    /// evaluation metric, i.e. keys starting with <c>eval/</c>) against the step, into <paramref name="directory"/>.
    /// Returns the files written.
    /// </summary>
    public static IReadOnlyList<string> Plot(string metricsJsonl, string directory)
    {
        var series = new Dictionary<string, List<(double Step, double Value)>>();
        foreach (var line in File.ReadLines(metricsJsonl))
        {
            if (string.IsNullOrWhiteSpace(line)) continue;
            using var doc = JsonDocument.Parse(line);
            if (!doc.RootElement.TryGetProperty("step", out var s)) continue;
            foreach (var p in doc.RootElement.EnumerateObject())
                if (p.Name is not ("step" or "epoch") && p.Value.ValueKind == JsonValueKind.Number)
                {
                    if (!series.TryGetValue(p.Name, out var list)) series[p.Name] = list = [];
                    list.Add((s.GetDouble(), p.Value.GetDouble()));
                }
        }
        var written = new List<string>();
        var losses = series.Keys.Where(k => k == "loss" || k.EndsWith("loss", StringComparison.Ordinal)).ToList();
        var evals = series.Keys.Where(k => k.StartsWith("eval/", StringComparison.Ordinal) && !losses.Contains(k)).ToList();
        var trainMetrics = series.Keys.Where(k => !k.StartsWith("eval/", StringComparison.Ordinal) && !losses.Contains(k) && k is not ("lr" or "examples_per_s" or "tokens_per_s")).ToList();
        if (losses.Count > 0) written.Add(Draw(series, losses, "loss", Path.Combine(directory, "loss.png")));
        if (evals.Count + trainMetrics.Count > 0) written.Add(Draw(series, [.. trainMetrics, .. evals], "metric", Path.Combine(directory, "metrics.png")));
        return written;
    }

    static string Draw(Dictionary<string, List<(double Step, double Value)>> series, List<string> keys, string yLabel, string path)
    {
        var plot = new ScottPlot.Plot();
        foreach (var k in keys)
        {
            var points = series[k];
            var sc = plot.Add.Scatter(points.Select(p => p.Step).ToArray(), points.Select(p => p.Value).ToArray());
            sc.LegendText = k;
            sc.MarkerSize = points.Count > 60 ? 0 : 4;
        }
        plot.XLabel("step");
        plot.YLabel(yLabel);
        plot.ShowLegend();
        string tmp = path + ".tmp.png";
        plot.SavePng(tmp, 900, 500);
        File.Move(tmp, path, overwrite: true);
        return path;
    }
}
