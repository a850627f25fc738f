namespace Bert4Sharp.Bench;

using System.Globalization;
using Bert4Sharp.Layers;
using TorchSharp;
using static TorchSharp.torch;

/// <summary>
/// Parts 3 and 4 of <see cref="AttentionBench"/> (docs/attention.md), in float64: how far Performer and Nyström
/// attention are from exact softmax attention, and how far the tanh and sigmoid GELU approximations are from the erf GELU.
/// </summary>
static class AttentionAccuracy
{
    const int N = 1024, D = 64;

    /// <summary>
    /// Relative error ‖out − exact‖_F / ‖exact‖_F at n = 1024, d = 64, scale 1/8, one head, mean over seeds (fresh
    /// q, k, v and a fresh projection each), for two input scales: q, k, v ~ N(0, 1) (scores q·k/8 of standard
    /// deviation 1) and "peaked" q, k ~ N(0, 2²) (standard deviation 4).
    /// </summary>
    public static void Errors(string output, bool quick)
    {
        int seeds = quick ? 2 : 5;
        int[] features = [16, 32, 64, 128, 256, 512, 1024, 4096];
        int[] landmarks = [8, 16, 32, 64, 128, 256, 512, 1024];
        var cases = new (string Name, double Sigma)[] { ("small", 0.5), ("N(0,1)", 1), ("peaked", 2) };
        double scale = 1 / Math.Sqrt(D);
        // Columns: performer orthogonal / iid with the default feature_epsilon 1e-4, orthogonal with feature_epsilon 0 (same projection);
        // nystrom with 6 (the default) and 20 pseudo-inverse iterations, and with torch.linalg.pinv (computed here).
        var perf = new Dictionary<(string Case, string Variant, int M), List<double>>();
        var nys = new Dictionary<(string Case, string Variant, int L), List<double>>();
        var uniform = new Dictionary<string, List<double>>();           // the error of uniform attention (every output row the mean of v): "no information"
        Console.WriteLine();
        foreach (var (name, sigma) in cases)
        {
            var stats = new List<(double Std, double MaxW)>();
            for (int seed = 0; seed < seeds; seed++)
            {
                using var scope = torch.NewDisposeScope();
                var g = new Generator((ulong)(100 + seed));
                var q = torch.randn([1, 1, N, D], dtype: ScalarType.Float64, generator: g) * sigma;
                var k = torch.randn([1, 1, N, D], dtype: ScalarType.Float64, generator: g) * sigma;
                var v = torch.randn([1, 1, N, D], dtype: ScalarType.Float64, generator: g);
                var s = q.matmul(k.transpose(-1, -2)) * scale;
                var w = s.softmax(-1);
                var exact = w.matmul(v);
                stats.Add((s.std().ToDouble(), w.amax([-1]).mean().ToDouble()));
                Add(uniform, name, ((v.mean([-2], keepdim: true) - exact).norm().ToDouble() / exact.norm().ToDouble()));
                double Err(Func<Tensor> attend)
                {
                    using var inner = torch.NewDisposeScope();
                    var o = attend();
                    return (o - exact).norm().ToDouble() / exact.norm().ToDouble();
                }
                var call = new AttentionCall { Query = q, Key = k, Value = v, Scale = scale };
                foreach (int m in features)
                    foreach (bool orthogonal in new[] { true, false })
                    {
                        using var kernel = new PerformerKernel(new KernelShape(1, D, D),
                            new AttentionKernelOptions { Features = m, Orthogonal = orthogonal, RedrawInterval = 0, Seed = 1000 * seed + m });
                        kernel.eval();
                        Add(perf, (name, orthogonal ? "orthogonal" : "iid", m), Err(() => kernel.Attend(call)));
                        if (!orthogonal) continue;
                        // The same draw (same seed) without the constant: the unbiased estimator.
                        using var exact0 = new PerformerKernel(new KernelShape(1, D, D),
                            new AttentionKernelOptions { Features = m, Orthogonal = true, RedrawInterval = 0, Seed = 1000 * seed + m, FeatureEpsilon = 0 });
                        exact0.eval();
                        Add(perf, (name, "orthogonal, feature_epsilon 0", m), Err(() => exact0.Attend(call)));
                    }
                foreach (int l in landmarks)
                {
                    using var kernel = new NystromKernel(new KernelShape(1, D, D), new AttentionKernelOptions { Landmarks = l, ConvKernel = 0 });
                    Add(nys, (name, "6 iterations", l), Err(() => kernel.Attend(call)));
                    using var kernel20 = new NystromKernel(new KernelShape(1, D, D), new AttentionKernelOptions { Landmarks = l, ConvKernel = 0, PinvIterations = 20 });
                    Add(nys, (name, "20 iterations", l), Err(() => kernel20.Attend(call)));
                    Add(nys, (name, "exact pinv", l), Err(() => NystromExactPinv(q, k, v, l, scale)));
                }
            }
            Console.WriteLine($"case {name}: q, k ~ N(0, {sigma * sigma:G2}), v ~ N(0, 1): scores q·k/8 std {stats.Average(x => x.Std):F2}, mean largest weight per query {stats.Average(x => x.MaxW):F4} (uniform: {1.0 / N:F4}); " +
                $"relative error of uniform attention (every row the mean of v): {uniform[name].Average():F4}");
        }
        string[] perfVariants = ["orthogonal", "iid", "orthogonal, feature_epsilon 0"];
        Console.WriteLine();
        Console.WriteLine($"Performer relative error vs exact softmax attention (n = {N}, d = {D}, float64, mean of {seeds} seeds; feature_epsilon 1e-4 unless said):");
        Console.WriteLine("| m | " + string.Join(" | ", cases.SelectMany(c => perfVariants.Select(v => $"{c.Name} {v}"))) + " |");
        Console.WriteLine("|---:|" + string.Concat(cases.SelectMany(_ => perfVariants).Select(_ => "---:|")));
        foreach (int m in features)
            Console.WriteLine($"| {m} | " + string.Join(" | ", cases.SelectMany(c => perfVariants.Select(v => F(perf[(c.Name, v, m)].Average())))) + " |");
        string[] nysVariants = ["6 iterations", "20 iterations", "exact pinv"];
        Console.WriteLine();
        Console.WriteLine($"Nyström relative error vs exact softmax attention (n = {N}, conv_kernel 0; pinv_iterations 6 (default) and 20; exact pinv = torch.linalg.pinv, computed here):");
        Console.WriteLine("| L | " + string.Join(" | ", cases.SelectMany(c => nysVariants.Select(v => $"{c.Name} {v}"))) + " |");
        Console.WriteLine("|---:|" + string.Concat(cases.SelectMany(_ => nysVariants).Select(_ => "---:|")));
        foreach (int l in landmarks)
            Console.WriteLine($"| {l} | " + string.Join(" | ", cases.SelectMany(c => nysVariants.Select(v => F(nys[(c.Name, v, l)].Average())))) + " |");
        Plots.LogLog(Path.Combine(output, "error-performer.png"), $"Performer vs exact softmax attention (n = {N}, d = {D}, mean of {seeds} seeds)",
            "random features m", "relative Frobenius error",
            cases.SelectMany(c => perfVariants.Select(v => ($"{c.Name}, {v}", features.Select(m => ((double)m, perf[(c.Name, v, m)].Average())).ToList()))), Plots.Plain, perfVariants.Length);
        // L = n is exact (≈ 1e-15): left out of the plot so the rest keeps its scale.
        Plots.LogLog(Path.Combine(output, "error-nystrom.png"), $"Nyström vs exact softmax attention (n = {N}, d = {D}, mean of {seeds} seeds; L = n exact, not drawn)",
            "landmarks L", "relative Frobenius error",
            cases.SelectMany(c => nysVariants.Select(v => ($"{c.Name}, {v}", landmarks.Where(l => l < N).Select(l => ((double)l, nys[(c.Name, v, l)].Average())).ToList()))), Plots.Plain, nysVariants.Length);
    }

    static void Add<TKey>(Dictionary<TKey, List<double>> d, TKey key, double value) where TKey : notnull
    {
        if (!d.TryGetValue(key, out var list)) d[key] = list = [];
        list.Add(value);
    }

    static string F(double x) => x.ToString(x < 1e-3 ? "0.00E+0" : "F4", CultureInfo.InvariantCulture);

    /// <summary>The Nyström approximation with the same landmarks as <see cref="NystromKernel"/> but torch.linalg.pinv for the middle matrix.</summary>
    static Tensor NystromExactPinv(Tensor q, Tensor k, Tensor v, int l, double scale)
    {
        double root = Math.Sqrt(scale);
        var (qs, ks) = (q * root, k * root);
        if (l >= qs.shape[2]) return qs.matmul(ks.transpose(-1, -2)).softmax(-1).matmul(v);
        var means = NystromKernel.SegmentMeans(qs.shape[2], l, qs.device, qs.dtype);
        var (ql, kl) = (means.matmul(qs), means.matmul(ks));
        var k1 = qs.matmul(kl.transpose(-1, -2)).softmax(-1);
        var k2 = ql.matmul(kl.transpose(-1, -2)).softmax(-1);
        var k3 = ql.matmul(ks.transpose(-1, -2)).softmax(-1);
        return k1.matmul(torch.linalg.pinv(k2)).matmul(k3.matmul(v));
    }

    /// <summary>
    /// The tanh (gelu_new) and sigmoid (gelu_sigmoid) approximations against the erf GELU, through the library's
    /// <see cref="Activations.Apply"/> in float64 on a grid over [−10, 10] refined around the worst point; then the
    /// min-max coefficients the kexue.fm post (archives/7309) fits: b in tanh(√(2/π)·x + b·x³) ≈ erf(x/√2) on
    /// [0, 4) step 0.001 (its criterion; it reports b = 0.035677337314877385, i.e. 0.044715·√(2/π)), and λ in σ(λx) ≈ Φ(x).
    /// </summary>
    public static void Gelu(bool quick)
    {
        double step = quick ? 1e-4 : 1e-5;
        using var scope = torch.NewDisposeScope();
        var x = torch.arange(-10.0, 10.0 + step / 2, step, dtype: ScalarType.Float64);
        var exact = Activations.Apply("gelu", x);
        var byFormula = 0.5 * x * (1 + torch.erf(x / Math.Sqrt(2)));
        Console.WriteLine();
        Console.WriteLine($"GELU approximations vs the erf GELU (float64, grid step {step:G} on [−10, 10], refined to 1e-9 around the maximum; library gelu vs 0.5x(1+erf(x/√2)): max {(exact - byFormula).abs().max().ToDouble():G2}):");
        Console.WriteLine("| approximation | max abs error (GELU) | at x = | max abs error of the gate (vs Φ(x)) | at x = |");
        Console.WriteLine("|---|---:|---:|---:|---:|");
        foreach (var (name, label) in new[] { ("gelu_new", "tanh: 0.5x(1 + tanh(√(2/π)(x + 0.044715x³)))"), ("gelu_sigmoid", "sigmoid: x·σ(1.702x)") })
        {
            var (err, at) = Worst(t => Activations.Apply(name, t) - Activations.Apply("gelu", t), x);
            // The gate alone: approximation / x vs Φ(x) (x ≠ 0; the grid has no exact 0 except by rounding, which gives 0/0 → dropped).
            var (gate, gateAt) = Worst(t => (Activations.Apply(name, t) - Activations.Apply("gelu", t)) / t, x.index(x.abs() > step / 4));
            Console.WriteLine($"| {label} | {err:E3} | ±{Math.Abs(at):F4} | {gate:E3} | ±{Math.Abs(gateAt):F4} |");
        }
        // The post's fits, refitted here by golden-section search on the max error.
        var post = torch.arange(0.0, 4.0, 0.001, dtype: ScalarType.Float64);
        double a = Math.Sqrt(2 / Math.PI);
        var erfPost = torch.erf(post / Math.Sqrt(2));
        double b = GoldenMin(bb => (erfPost - torch.tanh(a * post + bb * post.pow(3))).abs().max().ToDouble(), 0, 0.1);
        double bErr = (erfPost - torch.tanh(a * post + b * post.pow(3))).abs().max().ToDouble();
        double bPaperErr = (erfPost - torch.tanh(a * post + 0.044715 * a * post.pow(3))).abs().max().ToDouble();
        var phi = 0.5 * (1 + torch.erf(x / Math.Sqrt(2)));
        double lambda = GoldenMin(l => (phi - torch.sigmoid(l * x)).abs().max().ToDouble(), 1, 2.5);
        double lambdaGelu = GoldenMin(l => (x * (phi - torch.sigmoid(l * x))).abs().max().ToDouble(), 1, 2.5);
        Console.WriteLine();
        Console.WriteLine($"min-max fits: tanh(√(2/π)x + b x³) ≈ erf(x/√2) on [0, 4) step 0.001 (the post's criterion): b = {b:F12} (= {b / a:F8}·√(2/π); the post: b = 0.035677337314877385, " +
            $"the paper's 0.044715·√(2/π) = {0.044715 * a:F12}); max error {bErr:E3} at the fit, {bPaperErr:E3} with 0.044715");
        Console.WriteLine($"              σ(λx) ≈ Φ(x) on [−10, 10]: λ = {lambda:F6} (the paper's 1.702: max |Φ − σ(1.702x)| = {(phi - torch.sigmoid(1.702 * x)).abs().max().ToDouble():E3}, at the fit {(phi - torch.sigmoid(lambda * x)).abs().max().ToDouble():E3}); " +
            $"minimising the GELU error x·(Φ − σ(λx)) instead: λ = {lambdaGelu:F6}");
    }

    /// <summary>The largest |f(x)| over the grid and where, refined by a 1e-9 grid over ± two steps around it.</summary>
    static (double Error, double At) Worst(Func<Tensor, Tensor> f, Tensor grid)
    {
        using var scope = torch.NewDisposeScope();
        var e = f(grid).abs();
        long i = e.argmax().ToInt64();
        double center = grid[i].ToDouble(), step = (grid[1] - grid[0]).abs().ToDouble();
        var fine = torch.linspace(center - 2 * step, center + 2 * step, 40_001, dtype: ScalarType.Float64);
        var ef = f(fine).abs();
        long j = ef.argmax().ToInt64();
        return (Math.Max(ef[j].ToDouble(), e[i].ToDouble()), ef[j].ToDouble() >= e[i].ToDouble() ? fine[j].ToDouble() : center);
    }

    /// <summary>Golden-section search for the minimum of a unimodal <paramref name="f"/> on [lo, hi].</summary>
    static double GoldenMin(Func<double, double> f, double lo, double hi)
    {
        double r = (Math.Sqrt(5) - 1) / 2;
        double F(double t)
        {
            using var scope = torch.NewDisposeScope();
            return f(t);
        }
        double c = hi - r * (hi - lo), d = lo + r * (hi - lo), fc = F(c), fd = F(d);
        for (int i = 0; i < 100 && hi - lo > 1e-13; i++)
        {
            if (fc < fd) { hi = d; d = c; fd = fc; c = hi - r * (hi - lo); fc = F(c); }
            else { lo = c; c = d; fc = fd; d = lo + r * (hi - lo); fd = F(d); }
        }
        return (lo + hi) / 2;
    }
}
