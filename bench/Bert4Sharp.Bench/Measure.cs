namespace Bert4Sharp.Bench;

using System.Diagnostics;
using System.Globalization;
using TorchSharp;

/// <summary>Shared measuring: the large-matmul peak every ratio is taken against, medians, timing, interleaving.</summary>
static class Measure
{
    /// <summary>Samples of the peak after <see cref="PeakWarmups"/> unmeasured runs.</summary>
    public const int PeakSamples = 10, PeakWarmups = 2;

    /// <summary>
    /// GFLOP/s of a 2048³ fp32 matmul: the best of <see cref="PeakSamples"/> samples after <see cref="PeakWarmups"/>
    /// warm-ups. A peak is a maximum: a slower sample measures interference from other work on the machine, not
    /// what the CPU can do (a median peak let a model step read "140 % of peak").
    /// </summary>
    public static double MatmulPeak()
    {
        using var a = torch.randn(2048, 2048);
        using var b = torch.randn(2048, 2048);
        var times = Time(() => { using var c = a.mm(b); }, PeakWarmups, PeakSamples);
        return 2.0 * 2048 * 2048 * 2048 / times.Min() / 1e9;
    }

    /// <summary>The nearest-rank percentile (0–100) of the values.</summary>
    public static double Percentile(IEnumerable<double> xs, double percent)
    {
        var s = xs.Order().ToList();
        if (s.Count == 0) throw new ArgumentException("the percentile of no values");
        return s[Math.Clamp((int)Math.Ceiling(percent / 100.0 * s.Count) - 1, 0, s.Count - 1)];
    }

    /// <summary>The median: the middle value, or the mean of the two middle values of an even count.</summary>
    public static double Median(IEnumerable<double> xs)
    {
        var s = xs.Order().ToList();
        if (s.Count == 0) throw new ArgumentException("the median of no values");
        return s.Count % 2 == 1 ? s[s.Count / 2] : (s[s.Count / 2 - 1] + s[s.Count / 2]) / 2;
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

    /// <summary>
    /// The two sides of a comparison, interleaved (A B A B …) so that drift in the machine's speed (other work,
    /// frequency, caches) hits both alike: each side returns its own measurement; <paramref name="warmup"/>
    /// unmeasured rounds first.
    /// </summary>
    public static (List<double> A, List<double> B) Interleave(Func<double> a, Func<double> b, int warmup, int rounds)
    {
        for (int i = 0; i < warmup; i++) { a(); b(); }
        var xs = new List<double>();
        var ys = new List<double>();
        for (int i = 0; i < rounds; i++) { xs.Add(a()); ys.Add(b()); }
        return (xs, ys);
    }

    /// <summary><see cref="Interleave"/> for actions timed here.</summary>
    public static (List<double> A, List<double> B) InterleaveTimed(Action a, Action b, int warmup, int rounds) =>
        Interleave(() => Seconds(a), () => Seconds(b), warmup, rounds);

    /// <summary>Seconds one run of <paramref name="body"/> takes.</summary>
    public static double Seconds(Action body)
    {
        var sw = Stopwatch.StartNew();
        body();
        return sw.Elapsed.TotalSeconds;
    }

    /// <summary>
    /// Resets the kernel's resident high-water mark (VmHWM in /proc/self/status) to the current resident set by
    /// writing 5 to /proc/self/clear_refs; false where that is not allowed or did not take effect.
    /// </summary>
    public static bool ResetHighWaterMark()
    {
        try
        {
            File.WriteAllText("/proc/self/clear_refs", "5");
            return Rss("VmHWM") <= Rss("VmRSS") + (4L << 20);      // took effect (a few pages of slack for the read itself)
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { return false; }
    }

    /// <summary>A memory field of /proc/self/status (VmRSS, VmHWM, …) in bytes.</summary>
    public static long Rss(string field)
    {
        foreach (var line in File.ReadLines("/proc/self/status"))
            if (line.StartsWith(field + ":", StringComparison.Ordinal))
                return long.Parse(line.Split([' ', '\t'], StringSplitOptions.RemoveEmptyEntries)[1], CultureInfo.InvariantCulture) * 1024;      // "VmHWM:\t12345678 kB": a tab, and no space once the value has 8 digits
        throw new InvalidOperationException("/proc/self/status has no " + field);
    }

    /// <summary>
    /// The peak resident set while <paramref name="body"/> runs, minus <paramref name="baseline"/>, and how it was
    /// measured: the kernel's high-water mark reset just before (<see cref="ResetHighWaterMark"/>), or a thread
    /// sampling VmRSS every millisecond where the reset is not allowed or B4S_BENCH_RSS_SAMPLING=1.
    /// </summary>
    public static (long Peak, string Method) PeakDuring(Action body, long baseline)
    {
        if (Environment.GetEnvironmentVariable("B4S_BENCH_RSS_SAMPLING") != "1" && ResetHighWaterMark())
        {
            body();
            return (Rss("VmHWM") - baseline, "VmHWM reset via /proc/self/clear_refs");
        }
        long max = Rss("VmRSS");
        using var done = new ManualResetEventSlim();
        var sampler = new Thread(() => { while (!done.Wait(1)) max = Math.Max(max, Rss("VmRSS")); }) { IsBackground = true };
        sampler.Start();
        body();
        done.Set();
        sampler.Join();
        return (Math.Max(max, Rss("VmRSS")) - baseline, "VmRSS sampled every 1 ms by a thread");
    }
}
