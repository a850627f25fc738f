namespace Bert4Sharp.Bench;

using System.Diagnostics;
using System.Globalization;
using Bert4Sharp.Layers;
using TorchSharp;
using static TorchSharp.torch;

/// <summary>
/// The attention kernels at BERT-base width (h = 12, d = 64, batch 1, fp32) on this CPU, docs/attention.md:
/// <list type="number">
/// <item>time and peak memory of forward + backward of each kernel alone (q, k, v requiring grad, loss = output.sum())
/// for n = 256 … max-n, and where each overtakes softmax (fused SDPA);</item>
/// <item>a whole BERT-base layer (<see cref="TransformerBlock"/>, 768 / 12 heads / 3072) with softmax, linear and
/// Performer kernels and with an identity kernel (projections + FFN only): attention's share of the layer and the
/// crossover against the 24·n·d² vs 4·n²·d FLOP estimate (n = 6d = 4608);</item>
/// <item>approximation error against exact softmax attention (<see cref="AttentionAccuracy"/>);</item>
/// <item>GELU approximations' maximum error.</item>
/// </list>
/// Every (kernel, n) runs in child processes of this bench (<c>attention --child …</c>): one for time (median of
/// forward + backward runs after a warm-up), one for memory. Memory is the resident set: libtorch on the CPU keeps
/// no allocator statistics, so the child makes every allocation above 128 KiB an mmap of its own
/// (MALLOC_MMAP_THRESHOLD_=131072, freed memory leaves the resident set at once), runs the measured step once as a
/// warm-up (not for steps over 5 s), reads VmRSS as the baseline (inputs, kernel parameters and runtime already resident), resets the kernel's
/// high-water mark (/proc/self/clear_refs) and reports VmHWM − baseline after one more forward + backward. A
/// (kernel, n) whose time or memory, extrapolated from the smaller n, would pass the limits is skipped; a time child
/// during which other processes took over 15 % of the CPU is run again (the machine may be shared).
///   dotnet bench/Bert4Sharp.Bench/bin/Release/net10.0/Bert4Sharp.Bench.dll attention [--quick] [--max-n N] [--output DIR]
///       [--parts kernels,layer,error,gelu] [--kernels a,b] [--threads T] [--time-limit S] [--memory-limit-gb G]
/// PNGs go to docs/img/attention (or --output DIR).
/// </summary>
static class AttentionBench
{
    const int Heads = 12, HeadSize = 64, Hidden = 768, Inner = 3072;

    /// <summary>Kernels of part 1: config name (or a bench-only name) and the label in tables and plots.</summary>
    static readonly (string Name, string Label)[] KernelSet =
    [
        ("softmax", "softmax (SDPA)"), ("softmax_explicit", "softmax (explicit scores)"), ("squared_relu", "squared_relu"),
        ("linear", "linear"), ("performer", "performer m=256"), ("nystrom", "nystrom L=64"), ("flash", "flash C=128"),
        ("synthesizer_random", "synthesizer_random"),
    ];

    /// <summary>Kernels of the whole-layer part; identity = the layer without attention mixing (projections, norms, FFN).</summary>
    static readonly (string Name, string Label)[] LayerSet =
        [("identity", "no mixing (identity)"), ("softmax", "softmax (SDPA)"), ("linear", "linear"), ("performer", "performer m=256")];

    /// <summary>Share of the CPU other processes may take during a time child's runs before it is run again, and how often.</summary>
    const double ForeignLimit = 0.15;
    const int Retries = 2;

    /// <summary>A memory child of a step slower than this many seconds skips its warm-up (one-time allocations are a few MB; the peaks there are GBs).</summary>
    const double ColdMemoryAbove = 5;

    /// <summary>Kernels whose scores are (n, n): time and memory at least ×4 per doubling when extrapolating.</summary>
    static bool Quadratic(string name) => name is "softmax" or "softmax_explicit" or "squared_relu" or "synthesizer_random";

    /// <summary>One measured (or skipped) point.</summary>
    sealed record Point(int N, double? Seconds, long? Bytes, int Runs, string? Skipped, double? Fastest = null, string? MemoryFailure = null, double? Foreign = null);

    public static int Run(string[] args)
    {
        if (args.Length > 0 && args[0] == "--child") return Child(args);
        bool quick = args.Contains("--quick");
        int maxN = BenchArgs.Get(args, "--max-n", quick ? 2048 : 16384);
        int threads = BenchArgs.Get(args, "--threads", torch.get_num_threads());
        double timeLimit = BenchArgs.Get(args, "--time-limit", 60.0);
        double memoryLimit = BenchArgs.Get(args, "--memory-limit-gb", 16.0) * 1e9;
        string output = BenchArgs.Value(args, "--output") ?? Path.Combine("docs", "img", "attention");
        var parts = (BenchArgs.Value(args, "--parts") ?? "kernels,layer,error,gelu").Split(',');
        var only = BenchArgs.Value(args, "--kernels")?.Split(',');
        var ns = new List<int>();
        for (int n = 256; n <= maxN; n *= 2) ns.Add(n);
        Directory.CreateDirectory(output);
        torch.set_num_threads(threads);
        Console.WriteLine($"machine: {ClueBaselines.CpuModel()}, {Environment.ProcessorCount} logical CPUs, torch threads {threads}, " +
            $"MemTotal {MemInfo("MemTotal") / 1e9:F1} GB; limits: {timeLimit:F0} s per forward+backward, {memoryLimit / 1e9:F0} GB (or MemAvailable − 2 GB)");
        Console.WriteLine($"command: attention {string.Join(' ', args)}; load average at start: {LoadAverage()}");
        var total = Stopwatch.StartNew();
        Dictionary<string, List<Point>>? kernels = null;
        if (parts.Contains("kernels"))
        {
            var set = KernelSet.Where(k => only is null || only.Contains(k.Name)).ToArray();
            kernels = Sweep("kernel", set, ns, threads, timeLimit, memoryLimit, memory: true, quick);
            PrintKernelTables(set, ns, kernels);
            Plots.LogLog(Path.Combine(output, "kernels-time.png"), $"forward + backward of the kernel alone (B=1, h=12, d=64, {threads} threads)", "n (tokens)", "seconds",
                set.Select(k => (k.Label, kernels[k.Name].Where(p => p.Seconds is not null).Select(p => ((double)p.N, p.Seconds!.Value)).ToList())), Plots.Seconds);
            Plots.LogLog(Path.Combine(output, "kernels-memory.png"), "peak memory of forward + backward above the inputs (resident set)", "n (tokens)", "MB",
                set.Select(k => (k.Label, kernels[k.Name].Where(p => p.Bytes is not null).Select(p => ((double)p.N, p.Bytes!.Value / 1e6)).ToList())), Plots.Plain);
        }
        if (parts.Contains("layer"))
        {
            var layers = Sweep("layer", LayerSet, ns, threads, timeLimit, memoryLimit, memory: false, quick);
            PrintLayerTable(ns, layers, kernels);
            Plots.LogLog(Path.Combine(output, "layer-time.png"), $"BERT-base layer forward + backward (768 / 12 heads / 3072, B=1, {threads} threads)", "n (tokens)", "seconds",
                LayerSet.Select(k => (k.Label, layers[k.Name].Where(p => p.Seconds is not null).Select(p => ((double)p.N, p.Seconds!.Value)).ToList())), Plots.Seconds);
        }
        if (parts.Contains("error")) AttentionAccuracy.Errors(output, quick);
        if (parts.Contains("gelu")) AttentionAccuracy.Gelu(quick);
        Console.WriteLine($"total {total.Elapsed.TotalMinutes:F1} min; load average at the end: {LoadAverage()}");
        return 0;
    }

    /// <summary>Every kernel at every n (ascending), each point in child processes, skipping what the smaller n say would pass the limits.</summary>
    static Dictionary<string, List<Point>> Sweep(string what, (string Name, string Label)[] set, List<int> ns, int threads, double timeLimit, double memoryLimit, bool memory, bool quick)
    {
        // n outer, kernels inner: the kernels compared at one n run minutes apart at most, not a whole sweep apart (this machine is shared).
        var results = set.ToDictionary(k => k.Name, _ => new List<Point>());
        foreach (int n in ns)
        {
            foreach (var (name, label) in set)
            {
                var points = results[name];
                var done = points.Where(p => p.Skipped is null).ToList();
                double minGrowth = what == "kernel" && Quadratic(name) ? 4 : 2;                    // a layer is linear + quadratic parts
                double? predictedTime = Extrapolate(done.Select(p => (p.N, p.Seconds!.Value)).ToList(), n, minGrowth);
                double? predictedBytes = memory ? Extrapolate(done.Where(p => p.Bytes is not null).Select(p => (p.N, (double)Math.Max(p.Bytes!.Value, 1))).ToList(), n, minGrowth) : null;
                double memoryCap = Math.Min(memoryLimit, MemInfo("MemAvailable") - 2e9);
                string? skip = points.Count > 0 && points[^1].Skipped is not null ? "skipped (larger n)"
                    : points.Any(p => p.MemoryFailure is not null) ? "skipped (the memory run failed at a smaller n)"
                    : predictedTime > timeLimit ? $"skipped: ≈{predictedTime:F0} s predicted > {timeLimit:F0} s"
                    : predictedBytes > memoryCap ? $"skipped: ≈{predictedBytes / 1e9:F1} GB predicted > {memoryCap / 1e9:F0} GB"
                    : null;
                if (skip is not null)
                {
                    points.Add(new Point(n, null, null, 0, skip));
                    Console.WriteLine($"  {what} {label,-26} n={n,6}: {skip}");
                    continue;
                }
                List<double> times;
                double foreign;
                try { (times, foreign) = TimeChild(what, name, n, threads, quick, predictedTime); }
                catch (InvalidOperationException e)
                {
                    points.Add(new Point(n, null, null, 0, "failed: " + e.Message));
                    Console.WriteLine($"  {what} {label,-26} n={n,6}: failed: {e.Message}");
                    continue;
                }
                long? bytes = null;
                string? memoryFailure = null;
                if (memory)
                {
                    try { bytes = RunChild(what, times.Max() > ColdMemoryAbove ? "memory-cold" : "memory", name, n, threads, quick, times.Max()).Bytes; }
                    catch (InvalidOperationException e) { memoryFailure = "failed: " + e.Message; }
                }
                double median = Measure.Median(times);
                points.Add(new Point(n, median, bytes, times.Count, null, times.Min(), memoryFailure, foreign));
                Console.WriteLine($"  {what} {label,-26} n={n,6}: {Plots.Seconds(median),9} (median of {times.Count}, runs {string.Join(" ", times.Select(t => t.ToString("F3", CultureInfo.InvariantCulture)))}; other work {foreign:P0} of the CPU)" +
                    (bytes is { } b ? $", peak {b / 1e6:F0} MB" : memoryFailure is null ? "" : ", memory " + memoryFailure));
            }
        }
        return results;
    }

    /// <summary>
    /// The value at <paramref name="n"/> of a series measured at doubling n: the last growth factor per doubling (at
    /// least <paramref name="minGrowth"/>) applied for every doubling from the last point; null without points.
    /// </summary>
    static double? Extrapolate(List<(int N, double Value)> xs, int n, double minGrowth)
    {
        if (xs.Count == 0) return null;
        double growth = xs.Count == 1 ? minGrowth : Math.Max(minGrowth, Math.Pow(xs[^1].Value / xs[^2].Value, 1 / Math.Log2((double)xs[^1].N / xs[^2].N)));
        return xs[^1].Value * Math.Pow(growth, Math.Log2((double)n / xs[^1].N));
    }

    /// <summary>
    /// The time child, run again (after a pause) while other processes took more than <see cref="ForeignLimit"/> of
    /// the CPU during its runs (this machine is shared; runs of at least 0.5 s in all), at most <see cref="Retries"/> times; the quietest attempt counts.
    /// </summary>
    static (List<double> Times, double Foreign) TimeChild(string what, string name, int n, int threads, bool quick, double? predicted)
    {
        (List<double> Times, double Foreign)? best = null;
        for (int attempt = 0; attempt <= Retries; attempt++)
        {
            if (attempt > 0) Thread.Sleep(TimeSpan.FromSeconds(20));
            var (times, _, foreign, window) = RunChild(what, "time", name, n, threads, quick, predicted);
            if (best is null || foreign < best.Value.Foreign) best = (times, foreign);
            if (foreign <= ForeignLimit || window < 0.5) break;                              // under 0.5 s, 10 ms clock ticks make the share too coarse to act on
            Console.WriteLine($"    (other work took {foreign:P0} of the CPU during {what} {name} n={n}{(attempt < Retries ? "; again in 20 s" : "; keeping the quietest attempt")})");
        }
        return best!.Value;
    }

    /// <summary>Runs this bench as a child for one (kernel, n) and parses its last line: "RESULT seconds,seconds,… bytes foreign-cpu-share window-seconds".</summary>
    static (List<double> Times, long Bytes, double Foreign, double Window) RunChild(string what, string mode, string name, int n, int threads, bool quick, double? predicted)
    {
        var psi = new ProcessStartInfo(Environment.ProcessPath!) { RedirectStandardOutput = true, RedirectStandardError = true };
        if (Path.GetFileNameWithoutExtension(Environment.ProcessPath!) == "dotnet") psi.ArgumentList.Add(typeof(AttentionBench).Assembly.Location);
        foreach (var a in new[] { "attention", "--child", what, mode, name, n.ToString(CultureInfo.InvariantCulture), threads.ToString(CultureInfo.InvariantCulture), quick ? "quick" : "full" })
            psi.ArgumentList.Add(a);
        if (mode != "time") psi.Environment["MALLOC_MMAP_THRESHOLD_"] = "131072";
        using var p = Process.Start(psi)!;
        var stderr = p.StandardError.ReadToEndAsync();
        var stdout = p.StandardOutput.ReadToEndAsync();
        int limitMs = (int)Math.Min(900_000, Math.Max(120_000, 12_000 * (predicted ?? 10)));
        if (!p.WaitForExit(limitMs))
        {
            p.Kill(entireProcessTree: true);
            p.WaitForExit();
            throw new InvalidOperationException($"{mode} child ran past {limitMs / 1000} s and was stopped");
        }
        string output = stdout.Result.Trim(), errors = stderr.Result.Trim();
        var last = output.Split('\n')[^1].Split(' ');
        if (p.ExitCode != 0 || last.Length != 5 || last[0] != "RESULT")
            throw new InvalidOperationException($"{mode} child exit {p.ExitCode}: {Reason(errors.Length > 0 ? errors : output)}");
        return (last[1].Split(',').Select(s => double.Parse(s, CultureInfo.InvariantCulture)).ToList(), long.Parse(last[2], CultureInfo.InvariantCulture),
            double.Parse(last[3], CultureInfo.InvariantCulture), double.Parse(last[4], CultureInfo.InvariantCulture));
    }

    /// <summary>The first line of a child's error output that is not a stack frame (the exception's message).</summary>
    static string Reason(string text) =>
        text.Split('\n').Select(l => l.Trim()).FirstOrDefault(l => l.Length > 0 && !l.StartsWith("at ", StringComparison.Ordinal)) ?? "(no output)";

    /// <summary>
    /// attention --child kernel|layer time|memory|memory-cold NAME N THREADS quick|full: time prints the seconds of
    /// each forward + backward after a warm-up (5 runs if the warm-up took under 0.5 s, 3 under 5 s, else 1; quick: 3,
    /// 2, 1); memory prints the peak resident set of one forward + backward above the baseline after a warm-up
    /// (memory-cold: without one).
    /// </summary>
    static int Child(string[] a)
    {
        string what = a[1], mode = a[2], name = a[3];
        int n = int.Parse(a[4], CultureInfo.InvariantCulture);
        torch.set_num_threads(int.Parse(a[5], CultureInfo.InvariantCulture));
        bool quick = a[6] == "quick";
        torch.manual_seed(1);
        Func<double> once;
        if (what == "kernel")
        {
            var kernel = Kernel(name, n);
            var (q0, k0, v0) = (torch.randn(1, Heads, n, HeadSize), torch.randn(1, Heads, n, HeadSize), torch.randn(1, Heads, n, HeadSize));
            once = () =>
            {
                using var scope = torch.NewDisposeScope();
                var (q, k, v) = (q0.detach().requires_grad_(true), k0.detach().requires_grad_(true), v0.detach().requires_grad_(true));
                var sw = Stopwatch.StartNew();
                var call = new AttentionCall { Query = q, Key = k, Value = v, Scale = 1 / Math.Sqrt(HeadSize) };
                kernel.Attend(call).sum().backward();
                return sw.Elapsed.TotalSeconds;
            };
        }
        else
        {
            var block = Layer(name, n);
            block.train();
            var x0 = torch.randn(1, n, Hidden);
            once = () =>
            {
                block.zero_grad();
                using var scope = torch.NewDisposeScope();
                var x = x0.detach().requires_grad_(true);
                var sw = Stopwatch.StartNew();
                block.forward(x, null).sum().backward();
                return sw.Elapsed.TotalSeconds;
            };
        }
        if (mode == "time")
        {
            var before = CpuTicks();
            double first = once();
            int runs = first < 0.5 ? (quick ? 3 : 5) : first < 5 ? (quick ? 2 : 3) : 1;
            var times = Enumerable.Range(0, runs).Select(_ => once()).ToList();
            var after = CpuTicks();
            // CPU time other processes took during the warm-up and the runs, as a share of the machine (every logical CPU).
            double wall = (after.Wall - before.Wall) * Environment.ProcessorCount;
            double foreign = wall > 0 ? Math.Clamp((after.Busy - before.Busy - (after.Own - before.Own)) / wall, 0, 1) : 0;
            Console.WriteLine($"RESULT {string.Join(',', times.Select(t => t.ToString("R", CultureInfo.InvariantCulture)))} 0 {foreign.ToString("F3", CultureInfo.InvariantCulture)} {((after.Wall - before.Wall) / 100).ToString("F3", CultureInfo.InvariantCulture)}");
        }
        else
        {
            double t = mode == "memory" ? once() : 0;
            GC.Collect();
            GC.WaitForPendingFinalizers();
            long baseline = Measure.Rss("VmRSS");
            var (peak, method) = Measure.PeakDuring(() => t = once(), baseline);
            Console.Error.WriteLine(method);
            Console.WriteLine($"RESULT {t.ToString("R", CultureInfo.InvariantCulture)} {peak} 0 0");
        }
        return 0;
    }

    /// <summary>
    /// Clock ticks (USER_HZ) from /proc: every CPU's busy time (/proc/stat, all but idle and iowait), this process's
    /// user + system time (/proc/self/stat), and the wall clock in the same unit.
    /// </summary>
    static (double Busy, double Own, double Wall) CpuTicks()
    {
        var cpu = File.ReadLines("/proc/stat").First().Split(' ', StringSplitOptions.RemoveEmptyEntries).Skip(1).Select(x => double.Parse(x, CultureInfo.InvariantCulture)).ToArray();
        double busy = cpu.Sum() - cpu[3] - cpu[4];
        string self = File.ReadAllText("/proc/self/stat");
        var fields = self[(self.LastIndexOf(')') + 2)..].Split(' ');                       // after "pid (comm) ": field 3 onwards
        double own = double.Parse(fields[11], CultureInfo.InvariantCulture) + double.Parse(fields[12], CultureInfo.InvariantCulture);   // utime, stime
        return (busy, own, Stopwatch.GetTimestamp() * 100.0 / Stopwatch.Frequency);
    }

    /// <summary>The kernel <paramref name="name"/> as the bench runs it at length <paramref name="n"/>.</summary>
    static IAttentionKernel Kernel(string name, int n) => name switch
    {
        "softmax_explicit" => new ExplicitSoftmax(),
        "identity" => new IdentityKernel(),
        _ => AttentionKernelFactory.Create(name, Options(n), new KernelShape(Heads, HeadSize, HeadSize)),
    };

    /// <summary>Performer m = 256, Nyström 64 landmarks (and its 33-wide convolution), FLASH chunks of 128, Synthesizer max_length = n.</summary>
    static AttentionKernelOptions Options(int n) => new() { Features = 256, Landmarks = 64, ChunkSize = 128, MaxLength = n, Seed = 1 };

    /// <summary>A BERT-base post-norm block (768, 12 heads of 64, FFN 3072, erf GELU, LayerNorm ε 1e-12) with kernel <paramref name="name"/>.</summary>
    static TransformerBlock Layer(string name, int n)
    {
        var attention = name == "identity"
            ? new AttentionOptions(Hidden, Heads, HeadSize, Kernel: new IdentityKernel())
            : new AttentionOptions(Hidden, Heads, HeadSize, KernelName: name, KernelOptions: Options(n));
        return new TransformerBlock(new BlockOptions(attention, Inner, "gelu", NormKind.LayerNorm, 1e-12));
    }

    /// <summary>Softmax through the library's explicit-score path (<see cref="ScoreKernel.Attend"/>): what softmax runs when something needs the scores.</summary>
    sealed class ExplicitSoftmax : ScoreKernel
    {
        public override string Name => "softmax_explicit";
        public override Tensor Weights(Tensor scores, Tensor? mask) => (mask is null ? scores : scores + mask).softmax(-1);
    }

    /// <summary>No mixing at all (each position's own value): the layer's cost without attention.</summary>
    sealed class IdentityKernel : IAttentionKernel
    {
        public string Name => "identity";
        public Tensor Attend(AttentionCall c) => c.Value.alias();
    }

    static void PrintKernelTables((string Name, string Label)[] set, List<int> ns, Dictionary<string, List<Point>> r)
    {
        Console.WriteLine();
        Console.WriteLine("Time, forward + backward of the kernel alone (median; fastest run, number of runs and other processes' share of the CPU above 5 % in brackets):");
        Console.WriteLine("| n | " + string.Join(" | ", set.Select(k => k.Label)) + " |");
        Console.WriteLine("|---:|" + string.Concat(set.Select(_ => "---:|")));
        foreach (int n in ns)
            Console.WriteLine($"| {n} | " + string.Join(" | ", set.Select(k => Cell(r[k.Name].First(p => p.N == n), p => $"{Plots.Seconds(p.Seconds!.Value)} ({Plots.Seconds(p.Fastest!.Value)}, {p.Runs}{Other(p)})"))) + " |");
        Console.WriteLine();
        Console.WriteLine("Peak memory of one forward + backward above the inputs (MB, resident set):");
        Console.WriteLine("| n | " + string.Join(" | ", set.Select(k => k.Label)) + " |");
        Console.WriteLine("|---:|" + string.Concat(set.Select(_ => "---:|")));
        foreach (int n in ns)
            Console.WriteLine($"| {n} | " + string.Join(" | ", set.Select(k => Cell(r[k.Name].First(p => p.N == n), p => p.Bytes is { } b ? (b / 1e6).ToString("F0", CultureInfo.InvariantCulture) : p.MemoryFailure ?? "–"))) + " |");
        Console.WriteLine();
        if (!r.TryGetValue("softmax", out var sdpa)) return;
        Console.WriteLine("Where each kernel overtakes softmax (SDPA) in time (log-log interpolation between measured n):");
        foreach (var (name, label) in set.Where(k => k.Name != "softmax"))
            Console.WriteLine($"  {label}: {Crossover(r[name], sdpa)}");
    }

    static string Cell(Point p, Func<Point, string> value) => p.Skipped ?? value(p);

    /// <summary>", other work 12 %" where other processes took more than 5 % of the CPU during the runs.</summary>
    static string Other(Point p) => p.Foreign > 0.05 ? $", other work {p.Foreign:P0}" : "";

    /// <summary>The n where <paramref name="a"/> becomes faster than <paramref name="b"/> (the last sign change of log(a/b) to below 0), in words.</summary>
    static string Crossover(List<Point> a, List<Point> b)
    {
        var both = a.Join(b, p => p.N, p => p.N, (x, y) => (x.N, X: x.Seconds, Y: y.Seconds)).Where(t => t.X is not null && t.Y is not null)
            .Select(t => (t.N, R: Math.Log(t.X!.Value / t.Y!.Value))).ToList();
        if (both.Count == 0) return "no n measured for both";
        string range = $"n = {both[0].N}…{both[^1].N}";
        if (both.All(t => t.R < 0)) return $"faster at every n measured ({range}; {Math.Exp(-both[0].R):F1}x at {both[0].N}, {Math.Exp(-both[^1].R):F1}x at {both[^1].N})";
        if (both[^1].R >= 0) return $"never faster ({range}; {Math.Exp(both[^1].R):F2}x the time at {both[^1].N})";
        int i = both.FindLastIndex(t => t.R >= 0);
        var (n0, r0) = both[i];
        var (n1, r1) = both[i + 1];
        double logN = Math.Log(n0) + (Math.Log(n1) - Math.Log(n0)) * r0 / (r0 - r1);
        return $"≈ n = {Math.Exp(logN):F0} (slower at {n0}: {Math.Exp(r0):F2}x, faster from {n1}: {Math.Exp(-r1):F2}x; {Math.Exp(-both[^1].R):F1}x faster at {both[^1].N})";
    }

    static void PrintLayerTable(List<int> ns, Dictionary<string, List<Point>> layers, Dictionary<string, List<Point>>? kernels)
    {
        Console.WriteLine();
        Console.WriteLine("Whole BERT-base layer, forward + backward (median seconds), attention's share, theory n / (n + 6d) with d = 768:");
        Console.WriteLine("| n | " + string.Join(" | ", LayerSet.Select(k => k.Label)) + " | share: SDPA kernel / softmax layer | share: 1 − identity / softmax layer | theory share | softmax layer / linear layer |");
        Console.WriteLine("|---:|" + string.Concat(LayerSet.Select(_ => "---:|")) + "---:|---:|---:|---:|");
        foreach (int n in ns)
        {
            var row = LayerSet.Select(k => layers[k.Name].First(p => p.N == n)).ToList();
            double? identity = row[0].Seconds, softmax = row[1].Seconds, linear = row[2].Seconds;
            double? kernel = kernels is not null && kernels.TryGetValue("softmax", out var s) ? s.First(p => p.N == n).Seconds : null;
            string Ratio(double? x, double? y, string format) => x is { } xv && y is { } yv ? (xv / yv).ToString(format, CultureInfo.InvariantCulture) : "–";
            Console.WriteLine($"| {n} | " + string.Join(" | ", row.Select(p => Cell(p, q => Plots.Seconds(q.Seconds!.Value) + (q.Foreign > 0.05 ? $" ({Other(q)[2..]})" : "")))) +
                $" | {Ratio(kernel, softmax, "P0")} | {(identity is { } i && softmax is { } sm ? (1 - i / sm).ToString("P0", CultureInfo.InvariantCulture) : "–")}" +
                $" | {(double)n / (n + 6 * Hidden):P0} | {Ratio(softmax, linear, "F2")} |");
        }
        Console.WriteLine();
        Console.WriteLine($"  linear layer vs softmax layer: {Crossover(layers["linear"], layers["softmax"])}");
        Console.WriteLine($"  performer layer vs softmax layer: {Crossover(layers["performer"], layers["softmax"])}");
        // Attention (the SDPA kernel alone) against the rest of the layer (the identity-kernel layer): theory says they are equal at n = 6d.
        if (kernels is not null && kernels.TryGetValue("softmax", out var k))
            Console.WriteLine($"  the rest of the layer (identity-kernel layer) vs SDPA attention alone, where the rest becomes the faster, i.e. attention the larger part: {Crossover(layers["identity"], k)} (theory: n = 6d = {6 * Hidden})");
    }

    /// <summary>/proc/loadavg's 1, 5 and 15 minute load averages (other work on the machine shows here).</summary>
    static string LoadAverage()
    {
        try { return string.Join(' ', File.ReadAllText("/proc/loadavg").Split(' ').Take(3)); }
        catch (IOException) { return "?"; }
    }

    /// <summary>A field of /proc/meminfo in bytes (0 where unreadable).</summary>
    static double MemInfo(string field)
    {
        try
        {
            foreach (var line in File.ReadLines("/proc/meminfo"))
                if (line.StartsWith(field + ":", StringComparison.Ordinal))
                    return double.Parse(line.Split([' ', '\t'], StringSplitOptions.RemoveEmptyEntries)[1], CultureInfo.InvariantCulture) * 1024;
        }
        catch (IOException) { }
        return 0;
    }
}
