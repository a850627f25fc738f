namespace Bert4Sharp.Tests;

using System.Diagnostics;
using System.Text.Json;
using Bert4Sharp.Embeddings;

/// <summary>
/// <see cref="OptimalTransport"/> and <see cref="WordMoverDistance"/> against tests/reference/make_transport_refs.py
/// (scipy linprog "highs" on the same linear programs; a numpy log-domain Sinkhorn), plus properties that need no
/// reference: the plan's marginals and sign, the LP dual certificate on 64 × 64 problems, Sinkhorn's gap bound,
/// WMD(x, x) = 0, WRD's symmetry and scale invariance, and the errors on bad input. float64 defaults unless said.
/// </summary>
public sealed class OptimalTransportTests
{
    static readonly JsonElement Root = JsonDocument.Parse(File.ReadAllText(TestPaths.Fixture("transport", "refs.json"))).RootElement;

    static JsonElement Case(string section, string name) =>
        Root.GetProperty(section).EnumerateArray().Single(c => c.GetProperty("name").GetString() == name);

    static IEnumerable<TheoryDataRow<string>> Names(string section) =>
        Root.GetProperty(section).EnumerateArray().Select(c => new TheoryDataRow<string>(c.GetProperty("name").GetString()!));

    public static IEnumerable<TheoryDataRow<string>> ExactNames() => Names("exact");
    public static IEnumerable<TheoryDataRow<string>> TextNames() => Names("text");
    public static IEnumerable<TheoryDataRow<string>> SinkhornNames() => Names("sinkhorn");

    static double[] Doubles(JsonElement e) => e.EnumerateArray().Select(x => x.GetDouble()).ToArray();

    static double[,] Matrix(JsonElement e)
    {
        var rows = e.EnumerateArray().Select(Doubles).ToArray();
        var m = new double[rows.Length, rows[0].Length];
        for (int i = 0; i < rows.Length; i++)
            for (int j = 0; j < rows[0].Length; j++)
                m[i, j] = rows[i][j];
        return m;
    }

    static float[][] Vectors(JsonElement e) => e.EnumerateArray().Select(r => r.EnumerateArray().Select(x => x.GetSingle()).ToArray()).ToArray();

    static double[] RowSums(double[,] x) => Enumerable.Range(0, x.GetLength(0)).Select(i => Enumerable.Range(0, x.GetLength(1)).Sum(j => x[i, j])).ToArray();
    static double[] ColSums(double[,] x) => Enumerable.Range(0, x.GetLength(1)).Select(j => Enumerable.Range(0, x.GetLength(0)).Sum(i => x[i, j])).ToArray();

    static double Dot(double[,] a, double[,] b)
    {
        double s = 0;
        for (int i = 0; i < a.GetLength(0); i++)
            for (int j = 0; j < a.GetLength(1); j++)
                s += a[i, j] * b[i, j];
        return s;
    }

    /// <summary>Primal feasibility (marginals, γ ≥ 0), the cost, and the dual certificate (C − u − v ≥ 0, zero duality gap):
    /// together they prove the plan optimal, whatever produced the reference.</summary>
    static void AssertOptimal(double[] p, double[] q, double[,] cost, TransportResult r, string what)
    {
        Assert.All(r.Plan.Cast<double>(), x => Assert.True(x >= 0, $"{what}: plan entry {x} < 0"));
        Close.Assert(RowSums(r.Plan), p, $"{what}: row sums = p");
        Close.Assert(ColSums(r.Plan), q, $"{what}: column sums = q");
        Close.Assert(Dot(r.Plan, cost), r.Cost, $"{what}: ⟨plan, C⟩ = cost");
        double dual = p.Select((w, i) => w * r.RowPotentials[i]).Sum() + q.Select((w, j) => w * r.ColumnPotentials[j]).Sum();
        Close.Assert(dual, r.Cost, $"{what}: dual objective Σpu + Σqv = cost (no duality gap)");
        double minReduced = double.PositiveInfinity;
        for (int i = 0; i < p.Length; i++)
            for (int j = 0; j < q.Length; j++)
                minReduced = Math.Min(minReduced, cost[i, j] - r.RowPotentials[i] - r.ColumnPotentials[j]);
        Close.Assert(Math.Min(minReduced, 0), 0.0, $"{what}: dual feasible, min (C − u − v) ≥ 0");
    }

    [Theory]
    [MemberData(nameof(ExactNames))]
    public void Exact_cost_equals_linprog_and_the_plan_is_optimal(string name)
    {
        var c = Case("exact", name);
        double[] p = Doubles(c.GetProperty("p")), q = Doubles(c.GetProperty("q"));
        var cost = Matrix(c.GetProperty("cost"));
        var r = OptimalTransport.Exact(p, q, cost);
        Close.Assert(r.Cost, c.GetProperty("expected").GetDouble(), $"{name}: cost vs linprog");
        AssertOptimal(p, q, cost, r, name);
        for (int i = 0; i < p.Length; i++)
            for (int j = 0; j < q.Length; j++)
                if (p[i] == 0 || q[j] == 0) Assert.Equal(0.0, r.Plan[i, j]);
    }

    [Theory]
    [MemberData(nameof(TextNames))]
    public void Wmd_and_wrd_equal_linprog_on_weights_and_costs_built_by_the_script(string name)
    {
        var c = Case("text", name);
        var a = Vectors(c.GetProperty("a"));
        var b = Vectors(c.GetProperty("b"));
        int[]? Ids(string k) => c.TryGetProperty(k, out var e) ? e.EnumerateArray().Select(x => x.GetInt32()).ToArray() : null;
        var r = c.GetProperty("kind").GetString() == "wmd"
            ? WordMoverDistance.Wmd(a, b, idsA: Ids("ids_a"), idsB: Ids("ids_b"))
            : WordMoverDistance.Wrd(a, b);
        Close.Assert(r.Distance, c.GetProperty("expected").GetDouble(), $"{name}: distance vs linprog");
        Close.Assert(RowSums(r.Plan), r.WeightsA, $"{name}: row sums = weights of a");
        Close.Assert(r.WeightsA.Sum(), 1.0, $"{name}: weights of a sum to 1");
        Assert.True(r.Converged);
    }

    [Theory]
    [MemberData(nameof(SinkhornNames))]
    public void Sinkhorn_equals_the_numpy_log_domain_sinkhorn(string name)
    {
        var c = Case("sinkhorn", name);
        double[] p = Doubles(c.GetProperty("p")), q = Doubles(c.GetProperty("q"));
        var cost = Matrix(c.GetProperty("cost"));
        var r = OptimalTransport.Sinkhorn(p, q, cost, new SinkhornOptions { Epsilon = c.GetProperty("epsilon").GetDouble(), Tolerance = 1e-13, MaxIterations = 100_000 });
        Assert.True(r.Converged, $"{name}: not converged after {r.Iterations} iterations (marginal error {r.MarginalError:E2})");
        Close.Assert(r.Cost, c.GetProperty("expected").GetDouble(), $"{name}: ⟨γ, C⟩ vs numpy");
        Close.Assert(ColSums(r.Plan), q, $"{name}: column sums = q");
        Close.Assert(RowSums(r.Plan), p, $"{name}: row sums = p");
    }

    /// <summary>
    /// The entropic plan γ_ε minimises ⟨γ, C⟩ − ε·H(γ) over couplings, so ⟨γ_ε, C⟩ − OT ≤ ε·(H(γ_ε) − H(γ*)) ≤
    /// ε·(H(p) + H(q) − max(H(p), H(q))) = ε·min(H(p), H(q)) (any coupling has max(H(p), H(q)) ≤ H ≤ H(p) + H(q)); and
    /// ⟨γ_ε, C⟩ ≥ OT as γ_ε is a coupling. The gap also shrinks monotonically with ε. Slack for the marginal error left
    /// by the stopping rule: max C · error.
    /// </summary>
    [Fact]
    public void Sinkhorn_cost_approaches_the_exact_cost_within_eps_times_the_smaller_entropy()
    {
        var rng = new Random(7);
        foreach (var (n, m) in new[] { (5, 7), (12, 12), (20, 9) })
        {
            var p = Simplex(rng, n);
            var q = Simplex(rng, m);
            var cost = RandomCost(rng, n, m, ties: false);
            double exact = OptimalTransport.Exact(p, q, cost).Cost;
            double bound = Math.Min(OptimalTransport.Entropy(p), OptimalTransport.Entropy(q));
            double previous = double.PositiveInfinity, first = double.NaN;
            foreach (double eps in new[] { 1.0, 0.3, 0.1, 0.03, 0.01 })
            {
                var r = OptimalTransport.Sinkhorn(p, q, cost, new SinkhornOptions { Epsilon = eps, Tolerance = 1e-12, MaxIterations = 200_000 });
                Assert.True(r.Converged, $"{n}x{m} ε={eps}: not converged");
                double gap = r.Cost - exact, slack = r.MarginalError + Close.Float64Atol;   // costs in [0, 1)
                Assert.True(gap >= -slack, $"{n}x{m} ε={eps}: Sinkhorn cost {r.Cost} below the exact optimum {exact}");
                Assert.True(gap <= eps * bound + slack, $"{n}x{m} ε={eps}: gap {gap:E3} > ε·min(H(p), H(q)) = {eps * bound:E3}");
                Assert.True(gap <= previous + slack, $"{n}x{m} ε={eps}: gap {gap:E3} grew from {previous:E3}");
                if (double.IsNaN(first)) first = gap;
                previous = gap;
            }
            Assert.True(previous < first / 10, $"{n}x{m}: gap at ε=0.01 ({previous:E3}) not a tenth of the gap at ε=1 ({first:E3})");
        }
    }

    /// <summary>64 × 64 (the sizes of text matching), random and heavily degenerate (uniform weights = assignment,
    /// integer costs with ties): optimal by the dual certificate. Prints the solve times (no timing assertion).</summary>
    [Fact]
    public void Exact_64x64_problems_are_optimal_by_the_dual_certificate()
    {
        var rng = new Random(11);
        foreach (var (uniform, ties) in new[] { (false, false), (true, false), (true, true), (false, true) })
        {
            int n = 64, m = uniform ? 64 : 48;
            var p = uniform ? Enumerable.Repeat(1.0 / n, n).ToArray() : Simplex(rng, n);
            var q = uniform ? Enumerable.Repeat(1.0 / m, m).ToArray() : Simplex(rng, m);
            var cost = RandomCost(rng, n, m, ties);
            var sw = Stopwatch.StartNew();
            var r = OptimalTransport.Exact(p, q, cost);
            sw.Stop();
            AssertOptimal(p, q, cost, r, $"{n}x{m} uniform={uniform} ties={ties}");
            TestContext.Current.TestOutputHelper?.WriteLine($"{n}x{m} uniform={uniform} ties={ties}: {r.Pivots} pivots, {sw.Elapsed.TotalMilliseconds:F1} ms");
        }
    }

    /// <summary>Small problems built to be degenerate (weights k/K with many equal partial sums, zero weights, integer
    /// costs with ties), solved with Bland's rule throughout, with Dantzig's rule only, and with the default switch:
    /// every plan optimal by the dual certificate.</summary>
    [Theory]
    [InlineData(0)]
    [InlineData(32)]
    [InlineData(int.MaxValue)]
    public void Degenerate_problems_are_solved_under_every_pivot_rule(int degenerateRunBeforeBland)
    {
        var rng = new Random(13);
        var options = new TransportOptions { DegenerateRunBeforeBland = degenerateRunBeforeBland };
        for (int t = 0; t < 300; t++)
        {
            int n = rng.Next(1, 16), m = rng.Next(1, 16);
            double[] Weights(int k)
            {
                var w = Enumerable.Range(0, k).Select(_ => (double)rng.Next(0, 3)).ToArray();
                if (w.Sum() == 0) w[rng.Next(k)] = 1;
                double s = w.Sum();
                return w.Select(x => x / s).ToArray();
            }
            var p = t % 3 == 0 ? Enumerable.Repeat(1.0 / n, n).ToArray() : Weights(n);
            var q = t % 3 == 0 ? Enumerable.Repeat(1.0 / m, m).ToArray() : Weights(m);
            var cost = RandomCost(rng, n, m, ties: t % 2 == 0);
            AssertOptimal(p, q, cost, OptimalTransport.Exact(p, q, cost, options), $"case {t} ({n}x{m}), Bland after {degenerateRunBeforeBland}");
        }
    }

    [Fact]
    public void Wmd_of_a_text_with_itself_is_zero_and_bag_of_words_merging_changes_nothing_for_static_vectors()
    {
        var rng = new Random(3);
        var x = RandomVectors(rng, 9, 16, 1);
        Close.Assert(WordMoverDistance.Wmd(x, x).Distance, 0.0, "WMD(x, x)");
        Close.Assert(WordMoverDistance.Wrd(x, x).Distance, 0.0, "WRD(x, x)");

        var table = RandomVectors(rng, 6, 16, 1);
        int[] idsA = [0, 2, 0, 5, 2, 0, 1], idsB = [4, 4, 3, 1];
        var a = idsA.Select(i => table[i]).ToArray();
        var b = idsB.Select(i => table[i]).ToArray();
        var merged = WordMoverDistance.Wmd(a, b, idsA: idsA, idsB: idsB);
        Assert.Equal([3.0 / 7, 2.0 / 7, 1.0 / 7, 1.0 / 7], merged.WeightsA);
        Assert.Equal([0, 1, 0, 2, 1, 0, 3], merged.SupportA);
        Close.Assert(merged.Distance, WordMoverDistance.Wmd(a, b).Distance, "WMD with ids vs per position");
    }

    [Fact]
    public void Wrd_is_symmetric_and_invariant_to_scaling_a_text()
    {
        var rng = new Random(5);
        var a = RandomVectors(rng, 7, 24, 3);
        var b = RandomVectors(rng, 11, 24, 3);
        double ab = WordMoverDistance.Wrd(a, b).Distance;
        Close.Assert(WordMoverDistance.Wrd(b, a).Distance, ab, "WRD(b, a) vs WRD(a, b)");
        var scaled = a.Select(v => v.Select(f => 3.7f * f).ToArray()).ToArray();
        // 3.7·a rounds each component to float32 (relative 6e-8): float32 bounds.
        Close.Assert(WordMoverDistance.Wrd(scaled, b).Distance, ab, "WRD(3.7a, b) vs WRD(a, b)", Close.Float32Atol, Close.Float32Rtol);
        Close.Assert(WordMoverDistance.WrdSimilarity(a, b), 1 - ab, "WRD similarity = 1 − WRD");
        // Scaling one token (not the text) changes its weight, so the distance changes: the invariance is not vacuous.
        var oneScaled = a.Select((v, i) => i == 0 ? v.Select(f => 5f * f).ToArray() : v).ToArray();
        Assert.NotEqual(ab, WordMoverDistance.Wrd(oneScaled, b).Distance);

        var sink = WordMoverDistance.Wrd(a, b, new WordMoverOptions { Sinkhorn = new SinkhornOptions { Epsilon = 0.01, Tolerance = 1e-12 } });
        Assert.True(sink.Converged);
        double bound = 0.01 * Math.Min(OptimalTransport.Entropy(sink.WeightsA), OptimalTransport.Entropy(sink.WeightsB));
        double slack = Close.Float64Atol;   // converged to 1e-12 marginal error; WRD costs lie in [0, 2]
        Assert.True(sink.Distance >= ab - slack && sink.Distance <= ab + bound + slack,
            $"WRD by Sinkhorn ε=0.01 {sink.Distance} outside [exact {ab}, exact + ε·min H = {ab + bound}]");
    }

    [Fact]
    public void Mass_within_the_tolerance_is_rescaled_and_beyond_it_refused()
    {
        double[] p = [0.25, 0.75], q = [0.5, 0.5 + 1e-9];
        var cost = new double[,] { { 0, 1 }, { 1, 0 } };
        var r = OptimalTransport.Exact(p, q, cost);
        Close.Assert(ColSums(r.Plan), q.Select(x => x / (1 + 1e-9)).ToArray(), "column sums = q rescaled to Σp");
        Close.Assert(r.Cost, 0.5 / (1 + 1e-9) - 0.25, "cost of the rescaled problem (mass 0.5·Σp/Σq − 0.25 moves off the diagonal)");
        var e = Assert.Throws<ArgumentException>(() => OptimalTransport.Exact(p, [0.5, 0.6], cost));
        Assert.Contains("unbalanced", e.Message);
        Close.Assert(OptimalTransport.Exact(p, [0.5, 0.6], cost, new TransportOptions { MassTolerance = 0.2 }).Cost, 0.5 / 1.1 - 0.25, "q rescaled by 1/1.1");
    }

    [Fact]
    public void Bad_inputs_give_specific_argument_exceptions()
    {
        var c22 = new double[,] { { 0, 1 }, { 1, 0 } };
        void Throws(Action act, string fragment) => Assert.Contains(fragment, Assert.Throws<ArgumentException>(act).Message);
        Throws(() => OptimalTransport.Exact([0.5, 0.5], [1.0], c22), "must be [p.Length, q.Length]");
        Throws(() => OptimalTransport.Exact([], [1.0], new double[0, 1]), "p has no weights");
        Throws(() => OptimalTransport.Exact([1.5, -0.5], [0.5, 0.5], c22), "p[1] is -0.5");
        Throws(() => OptimalTransport.Exact([double.NaN, 1], [0.5, 0.5], c22), "p[0] is NaN");
        Throws(() => OptimalTransport.Exact([0, 0], [0.5, 0.5], c22), "sum to 0");
        Throws(() => OptimalTransport.Exact([0.5, 0.5], [0.5, 0.5], new double[,] { { 0, double.PositiveInfinity }, { 1, 0 } }), "cost[0, 1]");
        Throws(() => OptimalTransport.Sinkhorn([0.5, 0.5], [0.5, 0.5], c22, new SinkhornOptions { Epsilon = 0 }), "Epsilon");
        Throws(() => OptimalTransport.Sinkhorn([0.5, 0.5], [0.5, 0.5], c22, new SinkhornOptions { MaxIterations = 0 }), "MaxIterations");

        float[][] a = [[1, 0], [0, 1]];
        Throws(() => WordMoverDistance.Wmd(a, []), "Text b has no token vectors");
        Throws(() => WordMoverDistance.Wmd(a, [[1, 2, 3]]), "b[0] has dimension 3");
        Throws(() => WordMoverDistance.Wrd(a, [[1, float.NaN]]), "b[0][1] is NaN");
        Throws(() => WordMoverDistance.Wmd(a, a, idsA: [1]), "idsA has 1 ids");
        Throws(() => WordMoverDistance.Wrd(a, [[0, 0], [0, 0]]), "Every vector of text b is zero");
    }

    [Fact]
    public void Sinkhorn_reports_non_convergence_instead_of_hanging()
    {
        var rng = new Random(2);
        var r = OptimalTransport.Sinkhorn(Simplex(rng, 10), Simplex(rng, 10), RandomCost(rng, 10, 10, false),
            new SinkhornOptions { Epsilon = 1e-3, Tolerance = 1e-14, MaxIterations = 3 });
        Assert.False(r.Converged);
        Assert.Equal(3, r.Iterations);
    }

    static double[] Simplex(Random rng, int n)
    {
        var w = Enumerable.Range(0, n).Select(_ => rng.NextDouble() + 0.01).ToArray();
        double s = w.Sum();
        return w.Select(x => x / s).ToArray();
    }

    static double[,] RandomCost(Random rng, int n, int m, bool ties)
    {
        var c = new double[n, m];
        for (int i = 0; i < n; i++)
            for (int j = 0; j < m; j++)
                c[i, j] = ties ? rng.Next(4) : rng.NextDouble();
        return c;
    }

    static float[][] RandomVectors(Random rng, int n, int d, double maxScale) =>
        Enumerable.Range(0, n).Select(_ =>
        {
            double s = 0.5 + rng.NextDouble() * maxScale;
            return Enumerable.Range(0, d).Select(_ => (float)(s * (rng.NextDouble() * 2 - 1))).ToArray();
        }).ToArray();
}
