namespace Bert4Sharp.Embeddings;

using System.Globalization;
using System.Text;
using Bert4Sharp.Tasks;

/// <summary>What <see cref="StsBenchmark.Run"/> evaluates.</summary>
public sealed record StsBenchmarkOptions
{
    /// <summary>The poolings compared (one row each, times the whitening settings).</summary>
    public IReadOnlyList<Pooling> Poolings { get; init; } = [Pooling.Cls, Pooling.Mean, Pooling.FirstLastAverage];
    /// <summary>Whitening settings: 0 = none, k = BERT-whitening keeping k dimensions, fitted on each task's own sentences.</summary>
    public IReadOnlyList<int> Whitening { get; init; } = [0];
    /// <summary>Also score pairs by Word Mover's and Word Rotator's Distance over the final token states (exact transport; slower).</summary>
    public bool WordMover { get; init; }
    /// <summary>The tasks (columns).</summary>
    public IReadOnlyList<StsTask> Tasks { get; init; } = StsTask.All;
    /// <summary>The split evaluated.</summary>
    public string Split { get; init; } = "valid";
    /// <summary>Only the first this many pairs of each task (null: all).</summary>
    public int? Limit { get; init; }
}

/// <summary>One row of the table: a method and its Spearman ρ (× 100) per task.</summary>
/// <param name="Method">Pooling, whitening, or WRD.</param>
/// <param name="Scores">Task name → Spearman × 100.</param>
public sealed record StsRow(string Method, IReadOnlyDictionary<string, double> Scores)
{
    /// <summary>The mean over the row's tasks.</summary>
    public double Average => Scores.Values.Average();
}

/// <summary>
/// The SimCSE post's evaluation table: for each task, every distinct sentence is encoded once (all poolings from one
/// forward pass), each pair is scored by the cosine of its vectors, optionally after BERT-whitening fitted on that
/// task's own sentences (unsupervised: no labels are read for the fit, as in "你可能不需要BERT-flow"), and correlated with
/// the gold scores by Spearman's ρ.
/// </summary>
public static class StsBenchmark
{
    /// <summary>Runs the table for one encoder; <paramref name="log"/> hears what was read and how long each task took.</summary>
    public static IReadOnlyList<StsRow> Run(SentenceEncoder encoder, string dataDirectory, StsBenchmarkOptions options, Action<string>? log = null,
        CancellationToken cancellation = default)
    {
        if (options.Poolings.Count == 0 && !options.WordMover) throw new ArgumentException("nothing to evaluate: give a pooling or WMD/WRD");
        var rows = new Dictionary<string, Dictionary<string, double>>();
        void Add(string method, string task, double rho) => (rows.TryGetValue(method, out var r) ? r : rows[method] = [])[task] = 100 * rho;
        foreach (var task in options.Tasks)
        {
            var clock = System.Diagnostics.Stopwatch.StartNew();
            var all = task.Read(dataDirectory, options.Split);
            var pairs = options.Limit is int n ? all.Take(n).ToList() : all;
            var sentences = StsData.Sentences(pairs);
            var index = sentences.Select((s, i) => (s, i)).ToDictionary(x => x.s, x => x.i, StringComparer.Ordinal);
            if (options.Poolings.Count > 0)
            {
                var pooled = encoder.EmbedPooled(sentences, options.Poolings, cancellation: cancellation);
                foreach (var pooling in options.Poolings)
                    foreach (int k in options.Whitening)
                    {
                        var vectors = pooled[pooling];
                        // k beyond the width or beyond what the task's sentences determine (N − 1) is cut, and the row says so.
                        int kept = Math.Min(k, Math.Min(encoder.Encoder.HiddenSize, vectors.Length - 1));
                        if (k > 0)
                        {
                            var w = Whitening.Fit(vectors, kept);
                            vectors = [.. vectors.Select(v => w.Apply(v))];
                        }
                        var result = SimilarityEvaluation.Score(pairs, p => SentenceEncoder.Cosine(vectors[index[p.First]], vectors[index[p.Second]]));
                        Add(MethodName(pooling, k) + (k > 0 && kept < k ? $" (kept {kept} in {task.Name})" : ""), task.Name, result.Spearman);
                    }
            }
            if (options.WordMover)
            {
                // WMD: uniform weights over the tokens, Euclidean cost, similarity = −distance; WRD: norm weights, cosine cost.
                var tokens = encoder.TokenVectors(sentences, cancellation: cancellation);
                double Pair(StsPair p, Func<float[][], float[][], double> score) =>
                    tokens[index[p.First]] is { Length: > 0 } a && tokens[index[p.Second]] is { Length: > 0 } b ? score(a, b) : double.NegativeInfinity;
                Add("WMD (final token states)", task.Name, SimilarityEvaluation.Score(pairs, p => Pair(p, (a, b) => -WordMoverDistance.Wmd(a, b).Distance)).Spearman);
                Add("WRD (final token states)", task.Name, SimilarityEvaluation.Score(pairs, p => Pair(p, (a, b) => WordMoverDistance.WrdSimilarity(a, b))).Spearman);
            }
            log?.Invoke($"{task.Name}: {pairs.Count:N0} pairs{(pairs.Count < all.Count ? $" (first {pairs.Count:N0} of {all.Count:N0})" : "")}, " +
                $"{sentences.Count:N0} distinct sentences, {clock.Elapsed.TotalSeconds:F1} s");
        }
        return [.. rows.Select(r => new StsRow(r.Key, r.Value))];
    }

    /// <summary>The row name of a pooling and whitening setting, e.g. <c>mean + whitening-128</c>.</summary>
    public static string MethodName(Pooling pooling, int whitening) =>
        PoolingName(pooling) + (whitening > 0 ? $" + whitening-{whitening}" : "");

    /// <summary>The command-line spelling of a pooling.</summary>
    public static string PoolingName(Pooling pooling) => pooling switch
    {
        Pooling.FirstLastAverage => "first-last-avg",
        _ => pooling.ToString().ToLowerInvariant(),
    };

    /// <summary>A pooling from its command-line spelling (<c>first</c>, <c>cls</c>, <c>mean</c>, <c>max</c>, <c>first-last-avg</c>).</summary>
    /// <exception cref="ArgumentException">Unknown spelling.</exception>
    public static Pooling ParsePooling(string name) => name.Trim().ToLowerInvariant() switch
    {
        "first" or "pooler" => Pooling.First,
        "cls" => Pooling.Cls,
        "mean" or "avg" => Pooling.Mean,
        "max" => Pooling.Max,
        "first-last-avg" or "firstlastaverage" => Pooling.FirstLastAverage,
        _ => throw new ArgumentException($"unknown pooling '{name}': use first (pooler, else [CLS]), cls, mean, max or first-last-avg"),
    };

    /// <summary>The rows as a markdown table (Spearman × 100, two decimals), columns in task order, then the average.</summary>
    public static string Markdown(IReadOnlyList<StsRow> rows, IReadOnlyList<StsTask> tasks, string firstColumn = "method")
    {
        var sb = new StringBuilder();
        sb.AppendLine($"| {firstColumn} | {string.Join(" | ", tasks.Select(t => t.Name))} | avg |");
        sb.AppendLine("|---|" + string.Concat(Enumerable.Repeat("---:|", tasks.Count + 1)));
        foreach (var r in rows)
            sb.AppendLine($"| {r.Method} | {string.Join(" | ", tasks.Select(t => r.Scores.TryGetValue(t.Name, out var v) ? v.ToString("F2", CultureInfo.InvariantCulture) : "—"))} | " +
                $"{r.Average.ToString("F2", CultureInfo.InvariantCulture)} |");
        return sb.ToString();
    }
}
