namespace Bert4Sharp.Embeddings;

/// <summary>Options of the exact transportation solver (<see cref="OptimalTransport.Exact"/>).</summary>
public sealed record TransportOptions
{
    /// <summary>
    /// How far the two totals Σp and Σq may differ, relative to the larger: within it the problem is balanced by
    /// rescaling <c>q</c> to Σp (the plan then carries Σp); beyond it the call is refused. Default 1e-6.
    /// </summary>
    public double MassTolerance { get; init; } = 1e-6;

    /// <summary>Most simplex pivots before the solver gives up with an exception (never hangs). Default 100 000.</summary>
    public int MaxPivots { get; init; } = 100_000;

    /// <summary>Degenerate pivots in a row before Bland's rule takes over (tests set 0: Bland throughout).</summary>
    internal int DegenerateRunBeforeBland { get; init; } = 32;
}

/// <summary>Options of the entropic solver (<see cref="OptimalTransport.Sinkhorn"/>).</summary>
public sealed record SinkhornOptions
{
    /// <summary>
    /// Entropic regularisation ε, in the units of the cost matrix (absolute, not relative): the plan is
    /// γ ∝ exp((f_i + g_j − C_ij)/ε). Smaller is closer to the exact transport and slower. Default 0.05 (costs in [0, 2]).
    /// </summary>
    public double Epsilon { get; init; } = 0.05;

    /// <summary>Stop when Σ_i |Σ_j γ_ij − p_i| (the row-marginal L1 error; columns are exact after each step) is below this. Default 1e-9.</summary>
    public double Tolerance { get; init; } = 1e-9;

    /// <summary>Iteration cap (one iteration = a row and a column update). Default 10 000.</summary>
    public int MaxIterations { get; init; } = 10_000;

    /// <summary>As <see cref="TransportOptions.MassTolerance"/>.</summary>
    public double MassTolerance { get; init; } = 1e-6;
}

/// <summary>An exact optimal transport: the minimal cost, an optimal plan and dual potentials that certify it.</summary>
/// <param name="Cost">Σ_ij Plan_ij·C_ij, the minimum (earth mover's distance when p and q sum to 1).</param>
/// <param name="Plan">[n, m]: γ ≥ 0 with row sums p and column sums q (q rescaled to Σp, see <see cref="TransportOptions.MassTolerance"/>).</param>
/// <param name="RowPotentials">u (n): with <paramref name="ColumnPotentials"/> v, C_ij − u_i − v_j ≥ 0 everywhere (up to
/// round-off), = 0 where the plan is positive, and Σ p_i u_i + Σ q_j v_j = Cost: the LP dual, an optimality certificate.</param>
/// <param name="ColumnPotentials">v (m).</param>
/// <param name="Pivots">Simplex pivots taken after the start.</param>
public sealed record TransportResult(double Cost, double[,] Plan, double[] RowPotentials, double[] ColumnPotentials, int Pivots);

/// <summary>An entropic (Sinkhorn) transport.</summary>
/// <param name="Cost">⟨γ, C⟩, the transport cost of the entropic plan (no entropy term): ≥ the exact cost, and within
/// ε·min(H(p), H(q)) of it at convergence (H the Shannon entropy in nats).</param>
/// <param name="Plan">[n, m]: γ = exp((f_i + g_j − C_ij)/ε); column sums q exactly, row sums p within <paramref name="MarginalError"/>.</param>
/// <param name="Iterations">Iterations run.</param>
/// <param name="Converged">Whether <paramref name="MarginalError"/> reached <see cref="SinkhornOptions.Tolerance"/> within the cap.</param>
/// <param name="MarginalError">Σ_i |Σ_j γ_ij − p_i| at the end.</param>
public sealed record SinkhornResult(double Cost, double[,] Plan, int Iterations, bool Converged, double MarginalError);

/// <summary>
/// Optimal transport between two discrete distributions p (n weights) and q (m weights) under a cost matrix C [n, m]:
/// min Σ γ_ij C_ij over γ ≥ 0 with row sums p and column sums q (the earth mover's distance, EMD). <see cref="Exact"/>
/// solves the linear program exactly by the transportation simplex; <see cref="Sinkhorn"/> solves its entropic
/// relaxation. Both work on plain double arrays and are meant for the small problems of text matching (up to ~64 × 64).
/// </summary>
/// <remarks>
/// Input contract, both solvers: C finite with n = p.Length and m = q.Length, both ≥ 1; weights finite and ≥ 0 (zeros
/// allowed: their rows/columns of the plan are 0), each total &gt; 0, totals equal within the mass tolerance (then q is
/// rescaled to Σp). Anything else is an <see cref="ArgumentException"/> naming the field and the index.
/// </remarks>
public static class OptimalTransport
{
    /// <summary>
    /// Exact transport by the transportation (network) simplex: least-cost (matrix-minimum) start on the positive-weight
    /// rows and columns (a spanning tree of n + m − 1 cells, degenerate zero cells included), u-v potentials (MODI), Dantzig
    /// pricing, pivots around the tree cycle. Against cycling at degenerate pivots it switches to Bland's rule (first
    /// improving cell, smallest leaving cell) after 32 degenerate pivots in a row, until the next strict improvement.
    /// </summary>
    /// <exception cref="ArgumentException">Bad shapes or weights (see the class remarks).</exception>
    /// <exception cref="InvalidOperationException">More than <see cref="TransportOptions.MaxPivots"/> pivots.</exception>
    public static TransportResult Exact(double[] p, double[] q, double[,] cost, TransportOptions? options = null)
    {
        options ??= new TransportOptions();
        var (pw, qw) = Validate(p, q, cost, options.MassTolerance);
        int n = p.Length, m = q.Length;
        int[] rows = Support(pw), cols = Support(qw);
        var sub = new double[rows.Length, cols.Length];
        for (int a = 0; a < rows.Length; a++)
            for (int b = 0; b < cols.Length; b++)
                sub[a, b] = cost[rows[a], cols[b]];
        var solver = new TransportationSimplex(rows.Select(i => pw[i]).ToArray(), cols.Select(j => qw[j]).ToArray(), sub);
        int pivots = solver.Solve(options.MaxPivots, options.DegenerateRunBeforeBland);

        var plan = new double[n, m];
        var u = new double[n];
        var v = new double[m];
        double total = 0;
        foreach (var (a, b, x) in solver.Basis())
        {
            plan[rows[a], cols[b]] = x;
            total += x * sub[a, b];
        }
        for (int a = 0; a < rows.Length; a++) u[rows[a]] = solver.U[a];
        for (int b = 0; b < cols.Length; b++) v[cols[b]] = solver.V[b];
        // Zero-weight rows and columns carry no mass; give them the largest potentials that keep C − u − v ≥ 0
        // (columns first against the support rows, then rows against all columns), so the dual stays feasible.
        var inRows = new bool[n];
        var inCols = new bool[m];
        foreach (int i in rows) inRows[i] = true;
        foreach (int j in cols) inCols[j] = true;
        for (int j = 0; j < m; j++)
            if (!inCols[j]) v[j] = rows.Min(i => cost[i, j] - u[i]);
        for (int i = 0; i < n; i++)
            if (!inRows[i]) u[i] = Enumerable.Range(0, m).Min(j => cost[i, j] - v[j]);
        return new TransportResult(total, plan, u, v, pivots);
    }

    /// <summary>
    /// Entropic transport by Sinkhorn's iterations in the log domain (stable for small ε): with dual potentials f, g
    /// (start 0), f_i = ε·log p_i − ε·LSE_j((g_j − C_ij)/ε), then g_j = ε·log q_j − ε·LSE_i((f_i − C_ij)/ε), until the
    /// row marginals are within <see cref="SinkhornOptions.Tolerance"/> or the cap. Zero-weight rows/columns are left out
    /// (their plan entries are 0). Does not throw on non-convergence: check <see cref="SinkhornResult.Converged"/>.
    /// </summary>
    /// <exception cref="ArgumentException">Bad shapes, weights or options.</exception>
    public static SinkhornResult Sinkhorn(double[] p, double[] q, double[,] cost, SinkhornOptions? options = null)
    {
        options ??= new SinkhornOptions();
        if (!(options.Epsilon > 0) || !double.IsFinite(options.Epsilon))
            throw new ArgumentException($"SinkhornOptions.Epsilon must be a finite number > 0 (got {options.Epsilon}).", nameof(options));
        if (!(options.Tolerance > 0))
            throw new ArgumentException($"SinkhornOptions.Tolerance must be > 0 (got {options.Tolerance}).", nameof(options));
        if (options.MaxIterations < 1)
            throw new ArgumentException($"SinkhornOptions.MaxIterations must be ≥ 1 (got {options.MaxIterations}).", nameof(options));
        var (pw, qw) = Validate(p, q, cost, options.MassTolerance);
        int[] rows = Support(pw), cols = Support(qw);
        int r = rows.Length, c = cols.Length;
        double eps = options.Epsilon;
        var logP = rows.Select(i => Math.Log(pw[i])).ToArray();
        var logQ = cols.Select(j => Math.Log(qw[j])).ToArray();
        var cs = new double[r, c];                   // C on the support, divided by ε
        for (int a = 0; a < r; a++)
            for (int b = 0; b < c; b++)
                cs[a, b] = cost[rows[a], cols[b]] / eps;
        var f = new double[r];                       // potentials divided by ε
        var g = new double[c];
        var buf = new double[Math.Max(r, c)];
        double err = double.PositiveInfinity;
        int it = 0;
        while (it < options.MaxIterations)
        {
            it++;
            for (int a = 0; a < r; a++)
            {
                for (int b = 0; b < c; b++) buf[b] = g[b] - cs[a, b];
                f[a] = logP[a] - LogSumExp(buf, c);
            }
            for (int b = 0; b < c; b++)
            {
                for (int a = 0; a < r; a++) buf[a] = f[a] - cs[a, b];
                g[b] = logQ[b] - LogSumExp(buf, r);
            }
            err = 0;
            for (int a = 0; a < r; a++)
            {
                double row = 0;
                for (int b = 0; b < c; b++) row += Math.Exp(f[a] + g[b] - cs[a, b]);
                err += Math.Abs(row - pw[rows[a]]);
            }
            if (err < options.Tolerance) break;
        }
        var plan = new double[p.Length, q.Length];
        double total = 0;
        for (int a = 0; a < r; a++)
            for (int b = 0; b < c; b++)
            {
                double x = Math.Exp(f[a] + g[b] - cs[a, b]);
                plan[rows[a], cols[b]] = x;
                total += x * cost[rows[a], cols[b]];
            }
        return new SinkhornResult(total, plan, it, err < options.Tolerance, err);
    }

    /// <summary>Shannon entropy −Σ w_i log w_i (nats) of weights normalised to sum 1; zeros contribute 0. For the Sinkhorn gap bound.</summary>
    public static double Entropy(IReadOnlyList<double> weights)
    {
        double sum = weights.Sum(), h = 0;
        foreach (double w in weights)
            if (w > 0) h -= w / sum * Math.Log(w / sum);
        return h;
    }

    static double LogSumExp(double[] x, int count)
    {
        double max = double.NegativeInfinity;
        for (int k = 0; k < count; k++) max = Math.Max(max, x[k]);
        if (double.IsNegativeInfinity(max)) return max;
        double s = 0;
        for (int k = 0; k < count; k++) s += Math.Exp(x[k] - max);
        return max + Math.Log(s);
    }

    static int[] Support(double[] w) => Enumerable.Range(0, w.Length).Where(i => w[i] > 0).ToArray();

    /// <summary>Checks the contract; returns p and q with q rescaled to Σp.</summary>
    static (double[] P, double[] Q) Validate(double[] p, double[] q, double[,] cost, double massTolerance)
    {
        ArgumentNullException.ThrowIfNull(p);
        ArgumentNullException.ThrowIfNull(q);
        ArgumentNullException.ThrowIfNull(cost);
        if (!(massTolerance >= 0))
            throw new ArgumentException($"The mass tolerance must be ≥ 0 (got {massTolerance}).", nameof(massTolerance));
        if (p.Length == 0) throw new ArgumentException("p has no weights: a distribution needs at least one.", nameof(p));
        if (q.Length == 0) throw new ArgumentException("q has no weights: a distribution needs at least one.", nameof(q));
        if (cost.GetLength(0) != p.Length || cost.GetLength(1) != q.Length)
            throw new ArgumentException($"The cost matrix is [{cost.GetLength(0)}, {cost.GetLength(1)}] but p has {p.Length} weights and q {q.Length}: "
                + "it must be [p.Length, q.Length].", nameof(cost));
        double sp = Total(p, nameof(p)), sq = Total(q, nameof(q));
        for (int i = 0; i < p.Length; i++)
            for (int j = 0; j < q.Length; j++)
                if (!double.IsFinite(cost[i, j]))
                    throw new ArgumentException($"cost[{i}, {j}] is {cost[i, j]}: costs must be finite (use a large finite cost to forbid a pair).", nameof(cost));
        if (Math.Abs(sp - sq) > massTolerance * Math.Max(sp, sq))
            throw new ArgumentException($"The weights are unbalanced: Σp = {sp:R}, Σq = {sq:R} (relative difference {Math.Abs(sp - sq) / Math.Max(sp, sq):E2} "
                + $"> the mass tolerance {massTolerance:E2}). Normalise both to sum 1, or raise the tolerance.", nameof(q));
        double scale = sp / sq;
        return (p, scale == 1 ? q : q.Select(x => x * scale).ToArray());
    }

    static double Total(double[] w, string name)
    {
        double s = 0;
        for (int i = 0; i < w.Length; i++)
        {
            if (!double.IsFinite(w[i]) || w[i] < 0)
                throw new ArgumentException($"{name}[{i}] is {w[i]}: weights must be finite and ≥ 0.", name);
            s += w[i];
        }
        if (!(s > 0)) throw new ArgumentException($"The weights {name} sum to 0: at least one must be positive.", name);
        return s;
    }
}
