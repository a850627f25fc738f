namespace Bert4Sharp.Embeddings;

using System.Globalization;

/// <summary>One labelled sentence pair of a semantic-similarity task.</summary>
/// <param name="First">The first sentence.</param>
/// <param name="Second">The second sentence.</param>
/// <param name="Score">Gold similarity (0/1 for the matching tasks, 0–5 for STS-B).</param>
public sealed record StsPair(string First, string Second, double Score);

/// <summary>A Chinese semantic-similarity task as the SimCSE post evaluates it (senteval_cn layout: <c>s1 TAB s2 TAB label</c>).</summary>
/// <param name="Name">ATEC, BQ, LCQMC, PAWSX or STS-B.</param>
/// <param name="Folder">Its folder under the data directory.</param>
/// <param name="Prefix">The file-name prefix (<c>ATEC</c> for <c>ATEC.valid.data</c>).</param>
public sealed record StsTask(string Name, string Folder, string Prefix)
{
    /// <summary>The five tasks of the post's table, in its column order.</summary>
    public static IReadOnlyList<StsTask> All { get; } =
        [new("ATEC", "atec", "ATEC"), new("BQ", "bq", "BQ"), new("LCQMC", "lcqmc", "LCQMC"), new("PAWSX", "pawsx", "PAWSX"), new("STS-B", "stsb", "STS-B")];

    /// <summary>The task called <paramref name="name"/> (case-insensitive; <c>stsb</c> works too).</summary>
    /// <exception cref="ArgumentException">Unknown task.</exception>
    public static StsTask Get(string name) =>
        All.FirstOrDefault(t => string.Equals(t.Name, name, StringComparison.OrdinalIgnoreCase) || string.Equals(t.Folder, name, StringComparison.OrdinalIgnoreCase))
        ?? throw new ArgumentException($"unknown similarity task '{name}'; the tasks are {string.Join(", ", All.Select(t => t.Name))}");

    /// <summary>The file of <paramref name="split"/> (<c>train</c>, <c>valid</c>, <c>test</c>) under <paramref name="dataDirectory"/>.</summary>
    public string PathOf(string dataDirectory, string split = "valid") => System.IO.Path.Combine(dataDirectory, Folder, $"{Prefix}.{split}.data");

    /// <summary>Reads a split (see <see cref="StsData.Read"/>).</summary>
    public IReadOnlyList<StsPair> Read(string dataDirectory, string split = "valid") => StsData.Read(PathOf(dataDirectory, split));
}

/// <summary>Readers and the metric of semantic-similarity evaluation.</summary>
public static class StsData
{
    /// <summary>
    /// Reads <c>sentence1 TAB sentence2 TAB score</c> lines (blank lines skipped).
    /// </summary>
    /// <exception cref="FileNotFoundException">No such file.</exception>
    /// <exception cref="InvalidDataException">A line without three tab-separated fields, a score that is not a number, or an empty sentence (file and line named).</exception>
    public static IReadOnlyList<StsPair> Read(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"{path} does not exist (the similarity tasks live in ../shared/data/<task>/<TASK>.<split>.data)", path);
        var pairs = new List<StsPair>();
        int n = 0;
        foreach (string line in File.ReadLines(path))
        {
            n++;
            if (line.Trim().Length == 0) continue;
            var f = line.TrimEnd('\r').Split('\t');
            if (f.Length != 3) throw new InvalidDataException($"{path}:{n}: expected 'sentence1<TAB>sentence2<TAB>score', found {f.Length} field(s)");
            if (!double.TryParse(f[2].Trim(), NumberStyles.Float, CultureInfo.InvariantCulture, out double score) || !double.IsFinite(score))
                throw new InvalidDataException($"{path}:{n}: the score '{f[2]}' is not a number");
            if (f[0].Trim().Length == 0 || f[1].Trim().Length == 0) throw new InvalidDataException($"{path}:{n}: an empty sentence");
            pairs.Add(new StsPair(f[0], f[1], score));
        }
        if (pairs.Count == 0) throw new InvalidDataException($"{path} holds no pairs");
        return pairs;
    }

    /// <summary>Spearman's rank correlation (ties get their average rank, as <c>scipy.stats.spearmanr</c>); NaN when either side is constant.</summary>
    /// <exception cref="ArgumentException">Different lengths or fewer than two values.</exception>
    public static double Spearman(IReadOnlyList<double> x, IReadOnlyList<double> y)
    {
        if (x.Count != y.Count) throw new ArgumentException($"{x.Count} predictions for {y.Count} gold scores");
        if (x.Count < 2) throw new ArgumentException("a rank correlation needs at least two pairs");
        return Pearson(Ranks(x), Ranks(y));
    }

    /// <summary>Pearson's correlation; NaN when either side is constant.</summary>
    public static double Pearson(IReadOnlyList<double> x, IReadOnlyList<double> y)
    {
        double mx = x.Average(), my = y.Average(), sxy = 0, sxx = 0, syy = 0;
        for (int i = 0; i < x.Count; i++) { double a = x[i] - mx, b = y[i] - my; sxy += a * b; sxx += a * a; syy += b * b; }
        return sxx == 0 || syy == 0 ? double.NaN : sxy / Math.Sqrt(sxx * syy);
    }

    /// <summary>1-based ranks, ties averaged.</summary>
    public static double[] Ranks(IReadOnlyList<double> values)
    {
        var order = Enumerable.Range(0, values.Count).OrderBy(i => values[i]).ToArray();
        var ranks = new double[values.Count];
        for (int i = 0; i < order.Length;)
        {
            int j = i;
            while (j + 1 < order.Length && values[order[j + 1]] == values[order[i]]) j++;
            double rank = (i + j) / 2.0 + 1;
            for (int k = i; k <= j; k++) ranks[order[k]] = rank;
            i = j + 1;
        }
        return ranks;
    }

    /// <summary>The distinct sentences of <paramref name="pairs"/> in first-seen order (encode each once).</summary>
    public static IReadOnlyList<string> Sentences(IEnumerable<StsPair> pairs)
    {
        var seen = new HashSet<string>(StringComparer.Ordinal);
        var list = new List<string>();
        foreach (var p in pairs)
        {
            if (seen.Add(p.First)) list.Add(p.First);
            if (seen.Add(p.Second)) list.Add(p.Second);
        }
        return list;
    }
}

/// <summary>The result of <see cref="SimilarityEvaluation.Evaluate"/>.</summary>
/// <param name="Spearman">Spearman's ρ between the predicted and gold similarities.</param>
/// <param name="Pairs">Pairs scored.</param>
/// <param name="Predicted">The predicted similarity of every pair, in order.</param>
public sealed record SimilarityResult(double Spearman, int Pairs, double[] Predicted);

/// <summary>Scores sentence pairs by the cosine of their vectors and correlates with the gold scores (the SimCSE post's protocol).</summary>
public static class SimilarityEvaluation
{
    /// <summary>Encodes every distinct sentence once, scores each pair by cosine and returns Spearman's ρ.</summary>
    public static SimilarityResult Evaluate(SentenceEncoder encoder, IReadOnlyList<StsPair> pairs, CancellationToken cancellation = default)
    {
        var sentences = StsData.Sentences(pairs);
        var vectors = encoder.Embed(sentences, cancellation: cancellation).Vectors;
        var index = new Dictionary<string, int>(StringComparer.Ordinal);
        for (int i = 0; i < sentences.Count; i++) index[sentences[i]] = i;
        return Score(pairs, p => SentenceEncoder.Cosine(vectors[index[p.First]], vectors[index[p.Second]]));
    }

    /// <summary>Spearman's ρ of any pair scorer (e.g. a negative word mover's distance) against the gold scores.</summary>
    public static SimilarityResult Score(IReadOnlyList<StsPair> pairs, Func<StsPair, double> similarity)
    {
        var predicted = pairs.Select(similarity).ToArray();
        return new SimilarityResult(StsData.Spearman(predicted, pairs.Select(p => p.Score).ToArray()), pairs.Count, predicted);
    }
}
