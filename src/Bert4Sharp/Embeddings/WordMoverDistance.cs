namespace Bert4Sharp.Embeddings;

/// <summary>Which transport solver <see cref="WordMoverDistance"/> uses.</summary>
public sealed record WordMoverOptions
{
    /// <summary>null (default): the exact transportation simplex. Set: Sinkhorn with these options (ε in cost units;
    /// WRD costs lie in [0, 2], WMD costs are Euclidean distances, so pick ε for the metric).</summary>
    public SinkhornOptions? Sinkhorn { get; init; }

    /// <summary>Options of the exact solver (used when <see cref="Sinkhorn"/> is null).</summary>
    public TransportOptions Exact { get; init; } = new();
}

/// <summary>A distance between two texts given as vector sequences, with the transport behind it.</summary>
/// <param name="Distance">The transport cost (WMD or WRD). For ranking, similarity = −Distance (WMD) or 1 − Distance (WRD).</param>
/// <param name="WeightsA">Weights of text a's support points (sum 1).</param>
/// <param name="WeightsB">Weights of text b's support points (sum 1).</param>
/// <param name="Cost">[support a, support b]: the cost matrix used.</param>
/// <param name="Plan">[support a, support b]: the transport plan (which token moves how much mass to which).</param>
/// <param name="SupportA">For each input position of a, its support point (row of <paramref name="Plan"/>): the identity
/// unless token ids merged repeated tokens.</param>
/// <param name="SupportB">As <paramref name="SupportA"/> for b.</param>
/// <param name="Converged">Always true for the exact solver; Sinkhorn's convergence flag otherwise.</param>
public sealed record TextTransport(double Distance, double[] WeightsA, double[] WeightsB, double[,] Cost, double[,] Plan,
    int[] SupportA, int[] SupportB, bool Converged);

/// <summary>
/// Distances between two texts as optimal transport between their token vectors (Su Jianlin, "从EMD、WMD到WRD",
/// kexue.fm/archives/7388): WMD (Kusner et al. 2015) and WRD (Yokoi et al. 2020).
/// </summary>
/// <remarks>
/// <para>Which vectors: one per token of each text, [length][dim], all of one dimension: an encoder's token-level
/// hidden states (e.g. the last layer of a BERT for one text, before pooling) or its input (word) embeddings. Leave out
/// the special tokens ([CLS], [SEP], padding): they are the same in every text and carry no content, and [CLS]/[SEP]
/// often have large norms that would take much of WRD's weight. Contextual hidden states suit WRD; WMD was defined on
/// static word vectors.</para>
/// <para>WMD: weights are the bag-of-words frequencies (1/length a token; with token ids, repeats of one id merge into
/// one point of weight count/length whose vector is the mean of theirs — the vector itself for input embeddings, where
/// merging changes nothing), cost = Euclidean distance. WRD: weight ∝ the vector's L2 norm (a norm of 0 gets weight 0),
/// cost = 1 − cosine; invariant to scaling a text's vectors, in [0, 2].</para>
/// </remarks>
public static class WordMoverDistance
{
    /// <summary>Word Mover's Distance between the token vectors <paramref name="a"/> and <paramref name="b"/>.</summary>
    /// <param name="a">Text a's token vectors [n][dim].</param>
    /// <param name="b">Text b's token vectors [m][dim].</param>
    /// <param name="options">Solver choice; null = exact.</param>
    /// <param name="idsA">Optional token ids of a (length n): repeated ids merge into one bag-of-words point.</param>
    /// <param name="idsB">Optional token ids of b (length m).</param>
    /// <exception cref="ArgumentException">Empty text, ragged or mismatched dimensions, non-finite values, ids of the wrong length.</exception>
    public static TextTransport Wmd(float[][] a, float[][] b, WordMoverOptions? options = null, int[]? idsA = null, int[]? idsB = null)
    {
        int dim = CheckVectors(a, b);
        var (pa, va, sa) = BagOfWords(a, idsA, dim, nameof(idsA));
        var (pb, vb, sb) = BagOfWords(b, idsB, dim, nameof(idsB));
        var cost = new double[va.Length, vb.Length];
        for (int i = 0; i < va.Length; i++)
            for (int j = 0; j < vb.Length; j++)
            {
                double s = 0;
                for (int d = 0; d < dim; d++)
                {
                    double diff = va[i][d] - vb[j][d];
                    s += diff * diff;
                }
                cost[i, j] = Math.Sqrt(s);
            }
        return Solve(pa, pb, cost, sa, sb, options);
    }

    /// <summary>Word Rotator's Distance: weights ∝ L2 norms, cost = 1 − cosine. In [0, 2]; 0 for texts whose vectors are
    /// parallel pair by pair with proportional norms.</summary>
    /// <param name="a">Text a's token vectors [n][dim].</param>
    /// <param name="b">Text b's token vectors [m][dim].</param>
    /// <param name="options">Solver choice; null = exact.</param>
    /// <exception cref="ArgumentException">As <see cref="Wmd"/>, and a text whose vectors are all zero.</exception>
    public static TextTransport Wrd(float[][] a, float[][] b, WordMoverOptions? options = null)
    {
        int dim = CheckVectors(a, b);
        var (na, ua) = Directions(a, dim, nameof(a));
        var (nb, ub) = Directions(b, dim, nameof(b));
        var cost = new double[a.Length, b.Length];
        for (int i = 0; i < a.Length; i++)
            for (int j = 0; j < b.Length; j++)
            {
                double cos = 0;
                for (int d = 0; d < dim; d++) cos += ua[i][d] * ub[j][d];
                cost[i, j] = 1 - cos;
            }
        int[] Identity(int k) => Enumerable.Range(0, k).ToArray();
        return Solve(na, nb, cost, Identity(a.Length), Identity(b.Length), options);
    }

    /// <summary>1 − WRD: a similarity in [−1, 1] (1 for the same text), the form Su Jianlin's post ranks by.</summary>
    public static double WrdSimilarity(float[][] a, float[][] b, WordMoverOptions? options = null) => 1 - Wrd(a, b, options).Distance;

    static TextTransport Solve(double[] p, double[] q, double[,] cost, int[] sa, int[] sb, WordMoverOptions? options)
    {
        options ??= new WordMoverOptions();
        if (options.Sinkhorn is { } sinkhorn)
        {
            var r = OptimalTransport.Sinkhorn(p, q, cost, sinkhorn);
            return new TextTransport(r.Cost, p, q, cost, r.Plan, sa, sb, r.Converged);
        }
        var e = OptimalTransport.Exact(p, q, cost, options.Exact);
        return new TextTransport(e.Cost, p, q, cost, e.Plan, sa, sb, true);
    }

    /// <summary>Checks both texts; returns the common dimension.</summary>
    static int CheckVectors(float[][] a, float[][] b)
    {
        ArgumentNullException.ThrowIfNull(a);
        ArgumentNullException.ThrowIfNull(b);
        if (a.Length == 0) throw new ArgumentException("Text a has no token vectors: pass at least one (special tokens excluded).", nameof(a));
        if (b.Length == 0) throw new ArgumentException("Text b has no token vectors: pass at least one (special tokens excluded).", nameof(b));
        int dim = a[0]?.Length ?? throw new ArgumentException("a[0] is null.", nameof(a));
        if (dim == 0) throw new ArgumentException("a[0] has dimension 0: vectors need at least one component.", nameof(a));
        void Check(float[][] x, string name)
        {
            for (int i = 0; i < x.Length; i++)
            {
                if (x[i] is null) throw new ArgumentException($"{name}[{i}] is null.", name);
                if (x[i].Length != dim)
                    throw new ArgumentException($"{name}[{i}] has dimension {x[i].Length} but a[0] has {dim}: all token vectors must share one dimension.", name);
                for (int d = 0; d < dim; d++)
                    if (!float.IsFinite(x[i][d]))
                        throw new ArgumentException($"{name}[{i}][{d}] is {x[i][d]}: token vectors must be finite.", name);
            }
        }
        Check(a, nameof(a));
        Check(b, nameof(b));
        return dim;
    }

    /// <summary>Bag-of-words weights: per position 1/n, or per distinct id count/n with the mean vector (first-occurrence order).</summary>
    static (double[] Weights, double[][] Vectors, int[] Support) BagOfWords(float[][] x, int[]? ids, int dim, string name)
    {
        int n = x.Length;
        if (ids is null)
            return (Enumerable.Repeat(1.0 / n, n).ToArray(), x.Select(v => v.Select(f => (double)f).ToArray()).ToArray(),
                Enumerable.Range(0, n).ToArray());
        if (ids.Length != n)
            throw new ArgumentException($"{name} has {ids.Length} ids but the text has {n} token vectors: one id a vector.", name);
        var index = new Dictionary<int, int>();
        var support = new int[n];
        var sums = new List<double[]>();
        var counts = new List<int>();
        for (int t = 0; t < n; t++)
        {
            if (!index.TryGetValue(ids[t], out int k))
            {
                k = sums.Count;
                index[ids[t]] = k;
                sums.Add(new double[dim]);
                counts.Add(0);
            }
            support[t] = k;
            counts[k]++;
            for (int d = 0; d < dim; d++) sums[k][d] += x[t][d];
        }
        var vectors = new double[sums.Count][];
        var weights = new double[sums.Count];
        for (int k = 0; k < sums.Count; k++)
        {
            vectors[k] = sums[k].Select(s => s / counts[k]).ToArray();
            weights[k] = (double)counts[k] / n;
        }
        return (weights, vectors, support);
    }

    /// <summary>Weights ∝ L2 norms (sum 1) and unit directions (0 for a zero vector).</summary>
    static (double[] Weights, double[][] Units) Directions(float[][] x, int dim, string name)
    {
        var norms = new double[x.Length];
        var units = new double[x.Length][];
        for (int i = 0; i < x.Length; i++)
        {
            double s = 0;
            for (int d = 0; d < dim; d++) s += (double)x[i][d] * x[i][d];
            norms[i] = Math.Sqrt(s);
            units[i] = new double[dim];
            if (norms[i] > 0)
                for (int d = 0; d < dim; d++) units[i][d] = x[i][d] / norms[i];
        }
        double total = norms.Sum();
        if (!(total > 0)) throw new ArgumentException($"Every vector of text {name} is zero: WRD weighs tokens by their norms, so it needs one non-zero vector.", name);
        return (norms.Select(v => v / total).ToArray(), units);
    }
}
