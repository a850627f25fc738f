namespace Bert4Sharp.Training;

using Bert4Sharp.Data;
using Bert4Sharp.Embeddings;
using Bert4Sharp.Tasks.Clue;

/// <summary>
/// The training data of <c>b4s sts train</c>, read from the staged datasets, with every sentence of the five STS
/// evaluation splits removed (and counted), so no evaluated sentence is ever trained on.
/// </summary>
public static class EmbeddingTrainingData
{
    /// <summary>Every sentence of the five tasks' evaluation (valid) splits, trimmed.</summary>
    public static IReadOnlySet<string> EvaluationSentences(string dataDirectory, Action<string>? log = null)
    {
        var held = new HashSet<string>(StringComparer.Ordinal);
        foreach (var task in StsTask.All)
        {
            string path = task.PathOf(dataDirectory);
            if (!File.Exists(path))
                throw new FileNotFoundException($"{path} is missing: its sentences could not be kept out of training. Pass --data with the staged datasets (../shared/data) holding all five STS valid splits", path);
            foreach (var p in StsData.Read(path)) { held.Add(p.First.Trim()); held.Add(p.Second.Trim()); }
        }
        return held;
    }

    /// <summary>
    /// Unsupervised SimCSE's sentences: one a line from <paramref name="input"/>, or by default the distinct sentences of
    /// AFQMC train, OCNLI train and the staged CMNLI (unlabelled use); evaluation sentences removed.
    /// </summary>
    public static IReadOnlyList<string> Sentences(string? input, string dataDirectory, IReadOnlySet<string> held, Action<string>? log = null)
    {
        IEnumerable<string> all;
        string source;
        if (input is not null)
        {
            all = TextRecords.Read(input, TextFormat.Lines, []);
            source = input;
        }
        else
        {
            var pairs = Afqmc(dataDirectory).Concat(Nli(dataDirectory));
            all = pairs.SelectMany(p => new[] { p.Sentence1, p.Sentence2 });
            source = "AFQMC train + OCNLI train + CMNLI (staged dev), sentences only";
        }
        return Filter(all.Select(s => s.Trim()).Where(s => s.Length > 0).Distinct(StringComparer.Ordinal), s => [s], held, source, "sentences", log);
    }

    /// <summary>Supervised SimCSE's triples from OCNLI train and the staged CMNLI; triples holding an evaluation sentence removed.</summary>
    public static IReadOnlyList<NliTriple> NliTriples(string dataDirectory, IReadOnlySet<string> held, Action<string>? log = null)
    {
        var triples = SentenceEmbeddingTraining.Triples(Nli(dataDirectory).Select(p => (p.Sentence1.Trim(), p.Sentence2.Trim(), p.Label ?? "")));
        return Filter(triples, t => [t.Anchor, t.Positive, t.Negative], held, "OCNLI train + CMNLI (staged dev): premise, entailed, contradicted", "triples", log);
    }

    /// <summary>CoSENT's labelled pairs: <paramref name="input"/> (<c>s1 TAB s2 TAB score</c>), or STS-B train; pairs holding an evaluation sentence removed.</summary>
    public static IReadOnlyList<StsPair> Pairs(string? input, string dataDirectory, IReadOnlySet<string> held, Action<string>? log = null)
    {
        string path = input ?? StsTask.Get("STS-B").PathOf(dataDirectory, "train");
        return Filter(StsData.Read(path), p => [p.First.Trim(), p.Second.Trim()], held, path, "pairs", log);
    }

    static List<T> Filter<T>(IEnumerable<T> items, Func<T, string[]> sentences, IReadOnlySet<string> held, string source, string what, Action<string>? log)
    {
        int dropped = 0;
        var kept = new List<T>();
        foreach (var item in items)
            if (sentences(item).Any(held.Contains)) dropped++;
            else kept.Add(item);
        log?.Invoke($"training data: {kept.Count:N0} {what} from {source}; {dropped:N0} dropped because they hold a sentence of an STS evaluation split");
        return kept;
    }

    static IEnumerable<SentencePairRecord> Afqmc(string dir) =>
        ClueReaders.AfqmcCsv(Path.Combine(dir, "afqmc", "train.csv"), new ClueReadOptions(MalformedPolicy.SkipAndCount)).Records;

    static IEnumerable<SentencePairRecord> Nli(string dir) =>
        ClueReaders.Ocnli(Path.Combine(dir, "ocnli", "train.10k.json"), new ClueReadOptions(MalformedPolicy.SkipAndCount, DropUnknownLabels: true)).Records
            .Concat(ClueReaders.CmnliTsv(Path.Combine(dir, "cmnli", "dev.txt"), new ClueReadOptions(MalformedPolicy.SkipAndCount, DropUnknownLabels: true)).Records);
}
