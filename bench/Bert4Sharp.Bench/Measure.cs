namespace Bert4Sharp.Bench;

using System.Diagnostics;
using TorchSharp;

/// <summary>Shared measuring: the large-matmul peak every ratio is taken against, medians, timing.</summary>
static class Measure
{
    /// <summary>GFLOP/s of a 2048³ fp32 matmul (median of five, after a warm-up).</summary>
    public static double MatmulPeak()
    {
        using var a = torch.randn(2048, 2048);
        using var b = torch.randn(2048, 2048);
        using (var w = a.mm(b)) { }
        var times = new List<double>();
        for (int r = 0; r < 5; r++)
        {
            var sw = Stopwatch.StartNew();
            using var c = a.mm(b);
            times.Add(sw.Elapsed.TotalSeconds);
        }
        return 2.0 * 2048 * 2048 * 2048 / Median(times) / 1e9;
    }

    public static double Median(IEnumerable<double> xs)
    {
        var s = xs.Order().ToList();
        return s[s.Count / 2];
    }

    /// <summary>Seconds of each of <paramref name="rounds"/> runs of <paramref name="body"/> after <paramref name="warmup"/> unmeasured ones.</summary>
    public static List<double> Time(Action body, int warmup, int rounds)
    {
        for (int i = 0; i < warmup; i++) body();
        var times = new List<double>();
        for (int i = 0; i < rounds; i++)
        {
            var sw = Stopwatch.StartNew();
            body();
            times.Add(sw.Elapsed.TotalSeconds);
        }
        return times;
    }
}
