namespace Bert4Sharp.Tasks.Clue;

/// <summary>What a CLUE-family task asks.</summary>
public enum ClueTaskKind
{
    /// <summary>Two sentences → a label (AFQMC, OCNLI, CMNLI).</summary>
    SentencePairClassification,
    /// <summary>One text → a label (TNEWS, IFLYTEK, CSL).</summary>
    SentenceClassification,
    /// <summary>Does a pronoun span refer to a noun span (CLUEWSC2020).</summary>
    Coreference,
    /// <summary>Typed entity spans (CLUENER2020).</summary>
    NamedEntities,
    /// <summary>Span-extraction reading comprehension (CMRC2018).</summary>
    ExtractiveQa,
    /// <summary>Pick one of several choices (C3, CHID).</summary>
    MultipleChoice,
    /// <summary>(subject, predicate, object) triples (DuIE).</summary>
    RelationExtraction,
    /// <summary>Events with trigger and role arguments (DuEE).</summary>
    EventExtraction,
}

/// <summary>The metric a task is scored with.</summary>
public enum ClueMetricKind
{
    /// <summary><see cref="ClueMetrics.Accuracy"/>.</summary>
    Accuracy,
    /// <summary><see cref="ClueMetrics.EntityF1"/>.</summary>
    EntityF1,
    /// <summary><see cref="CmrcMetric"/> EM and F1.</summary>
    CmrcEmF1,
    /// <summary><see cref="ClueMetrics.SpoF1"/>.</summary>
    SpoF1,
    /// <summary><see cref="ClueMetrics.DueeF1"/> (argument level is the headline).</summary>
    EventArgumentF1,
}

/// <summary>One staged split of a task.</summary>
/// <param name="Name">train, dev, test, trial, sample.</param>
/// <param name="File">Path under shared/data/.</param>
/// <param name="Records">Records the reader returns (all rows, unknown labels kept).</param>
/// <param name="Labelled">Whether it has gold labels.</param>
/// <param name="Subset">What it is when it is not the full official split; null when it is.</param>
public sealed record ClueSplit(string Name, string File, int Records, bool Labelled, string? Subset = null);

/// <summary>What shared/data/MANIFEST.md says about a task: its splits, metric and where its labels come from.</summary>
public sealed record ClueTask(string Name, ClueTaskKind Kind, IReadOnlyList<ClueSplit> Splits, ClueMetricKind Metric, string LabelSource, string Notes)
{
    /// <summary>The split called <paramref name="name"/>, or null when it is not staged.</summary>
    public ClueSplit? Split(string name) => Splits.FirstOrDefault(s => s.Name == name);

    /// <summary>Whether a full official train split is staged (false: missing or a subset).</summary>
    public bool HasFullTrain => Split("train") is { Subset: null };
}

/// <summary>The CLUE-family tasks staged in shared/data, as its MANIFEST.md describes them.</summary>
public static class ClueTasks
{
    /// <summary>All tasks, in manifest order.</summary>
    public static IReadOnlyList<ClueTask> All { get; } =
    [
        new("afqmc", ClueTaskKind.SentencePairClassification,
            [new("train", "afqmc/train.csv", 34334, true), new("dev", "afqmc/dev.json", 4316, true), new("test", "afqmc/test.json", 3861, false)],
            ClueMetricKind.Accuracy, "fixed {0, 1}", "train is the source repo's CSV conversion of the CLUE train.json (faithful); test unlabelled."),
        new("tnews", ClueTaskKind.SentenceClassification,
            [new("train", "tnews/train.json", 10000, true, "DataCLUE 10k resample of the 53,360 (noisy labels)"), new("dev", "tnews/dev.json", 2000, true, "DataCLUE 2k resample (noisy labels)")],
            ClueMetricKind.Accuracy, "tnews/labels.json (15 labels)", "75 dev sentences also occur in train; labelled test is in holdout/."),
        new("iflytek", ClueTaskKind.SentenceClassification,
            [new("train", "iflytek/train_few_all.json", 3024, true, "FewCLUE train_0..4 union (of 12,133)"), new("dev", "iflytek/dev_few_all.json", 1373, true, "FewCLUE dev_0..4 union")],
            ClueMetricKind.Accuracy, "fixed 0..118 (label_des names them)", "labelled test in holdout/."),
        new("ocnli", ClueTaskKind.SentencePairClassification,
            [new("train", "ocnli/train.10k.json", 10000, true, "official 10k subset (of 50k)"), new("dev", "ocnli/dev.json", 3000, true), new("test", "ocnli/test.json", 3000, false)],
            ClueMetricKind.Accuracy, "fixed {entailment, neutral, contradiction}", "label \"-\" (15 train, 50 dev rows) is outside the set: drop it."),
        new("cmnli", ClueTaskKind.SentencePairClassification,
            [new("dev", "cmnli/dev.txt", 12241, true)],
            ClueMetricKind.Accuracy, "fixed {entailment, neutral, contradiction}", "only dev is staged (train 391k absent); split dev for experiments."),
        new("csl", ClueTaskKind.SentenceClassification,
            [new("train", "csl/train_few_all.json", 160, true, "FewCLUE few-shot (of 20k)"), new("dev", "csl/dev_few_all.json", 160, true, "FewCLUE few-shot")],
            ClueMetricKind.Accuracy, "fixed {0, 1}", "labelled test in holdout/."),
        new("cluewsc2020", ClueTaskKind.Coreference,
            [new("train", "cluewsc2020/train.json", 1244, true), new("dev", "cluewsc2020/dev.json", 304, true), new("test", "cluewsc2020/test.json", 290, false)],
            ClueMetricKind.Accuracy, "fixed {true, false}", "no independent labelled test."),
        new("cluener2020", ClueTaskKind.NamedEntities,
            [new("train", "cluener2020/train.json", 10748, true), new("dev", "cluener2020/dev.json", 1343, true), new("test", "cluener2020/test.json", 1345, false)],
            ClueMetricKind.EntityF1, "fixed 10 types", "re-serialised one object per line; content unchanged."),
        new("cmrc2018", ClueTaskKind.ExtractiveQa,
            [new("dev", "cmrc2018/cmrc2018_dev.json", 3219, true), new("trial", "cmrc2018/cmrc2018_trial.json", 1002, true)],
            ClueMetricKind.CmrcEmF1, "none (span extraction)", "train (10k questions) absent: train on trial, evaluate on dev. 200 dev answers are not at their answer_start."),
        new("c3", ClueTaskKind.MultipleChoice,
            [new("train", "c3/c3-d-train.json", 5856, true), new("train-m", "c3/c3-m-train.json", 6013, true), new("dev", "c3/c3-d-dev.json", 1825, true), new("dev-m", "c3/c3-m-dev.json", 1991, true)],
            ClueMetricKind.Accuracy, "the choices of each question", "d = dialogue, m = mixed genre; labelled tests in holdout/."),
        new("chid", ClueTaskKind.MultipleChoice,
            [new("train", "chid/train_few_all.json", 202, true, "FewCLUE few-shot"), new("dev", "chid/dev_few_all.json", 202, true, "FewCLUE few-shot")],
            ClueMetricKind.Accuracy, "the 7 candidates of each example", "labelled test in holdout/."),
        new("duie", ClueTaskKind.RelationExtraction,
            [new("train", "duie/train_data.json", 2000, true, "author-made subset of DuIE 1.0 (of ~170k)"), new("dev", "duie/dev_data.json", 200, true, "author-made subset")],
            ClueMetricKind.SpoF1, "duie/all_50_schemas (50 predicates)", "GPLinker example format."),
        new("duee", ClueTaskKind.EventExtraction,
            [new("dev", "duee/dev.json", 1498, true), new("sample", "duee/sample_data.json", 500, true, "official 500-item sample, disjoint from dev")],
            ClueMetricKind.EventArgumentF1, "duee/event_schema.json (65 event types with roles)", "train (11,958) absent: train on sample plus part of dev, evaluate on the rest."),
    ];

    /// <summary>The task called <paramref name="name"/>.</summary>
    public static ClueTask Get(string name) => All.FirstOrDefault(t => t.Name == name)
        ?? throw new ArgumentException($"unknown CLUE task '{name}'; known: {string.Join(", ", All.Select(t => t.Name))}", nameof(name));
}
