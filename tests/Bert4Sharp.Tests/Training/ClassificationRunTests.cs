namespace Bert4Sharp.Tests.Training;

using Bert4Sharp.Tasks;
using Bert4Sharp.Tasks.Clue;
using Bert4Sharp.Training;

/// <summary>The CLUE classification runs' own data preparation (WSC marking, the CMNLI split), class weights, and the TextClassifier API.</summary>
public sealed class ClassificationRunTests
{
    [Fact]
    public void Wsc_spans_are_marked_in_text_order()
    {
        string text = "裂开的伤口涂满尘土，我把它们剔除出去。";
        var marked = ClueClassificationData.MarkSpans(text, new WscSpan(3, "伤口"), new WscSpan(12, "它们"));
        Assert.Equal("裂开的[[伤口]]涂满尘土，我把[[它们]]剔除出去。", marked);
        // Span1 after span2: still marked in text order, with the same markers.
        Assert.Equal(marked, ClueClassificationData.MarkSpans(text, new WscSpan(12, "它们"), new WscSpan(3, "伤口")));
    }

    [Fact]
    public void Wsc_span_indices_count_code_points_past_a_non_BMP_character()
    {
        // "𠀀" (U+20000) is one code point but two UTF-16 units: "猫" is code point 2, "它" code point 4.
        string text = "𠀀是猫，它很可爱";
        Assert.Equal("𠀀是[[猫]]，[[它]]很可爱", ClueClassificationData.MarkSpans(text, new WscSpan(2, "猫"), new WscSpan(4, "它")));
        Assert.Equal("[[𠀀]]是猫，[[它]]很可爱", ClueClassificationData.MarkSpans(text, new WscSpan(0, "𠀀"), new WscSpan(4, "它")));
    }

    [Fact]
    public void Wsc_span_text_not_at_its_index_is_refused()
    {
        var e = Assert.Throws<ArgumentException>(() => ClueClassificationData.MarkSpans("𠀀是猫，它很可爱", new WscSpan(3, "猫"), new WscSpan(4, "它")));
        Assert.Contains("span1 '猫' is not at code point 3", e.Message);
        Assert.Throws<ArgumentException>(() => ClueClassificationData.MarkSpans("猫是猫", new WscSpan(0, "猫是"), new WscSpan(1, "是")));
    }

    static List<TextExample> Pairs(int premises) =>
        [.. Enumerable.Range(0, premises).SelectMany(p => new[] { "entailment", "neutral", "contradiction" }
            .Select((l, h) => new TextExample($"premise {p}", $"hypothesis {p}.{h}", l)))];

    [Fact]
    public void Cmnli_split_is_deterministic_and_keeps_each_premise_on_one_side()
    {
        var data = Pairs(1000);
        var a = ClueSplits.CarveByPremise(data, x => x.Text, x => x.Pair);
        var b = ClueSplits.CarveByPremise([.. Enumerable.Reverse(data)], x => x.Text, x => x.Pair);
        Assert.Equal(a.Dev.Select(x => x.Pair).Order(), b.Dev.Select(x => x.Pair).Order());
        Assert.Equal(data.Count, a.Train.Count + a.Dev.Count);
        Assert.Equal(0, a.CrossSideRemoved);
        Assert.InRange(a.Dev.Count, 450, 750);                     // 20% of 3,000 give or take the hash's spread
        Assert.Equal(0, a.Dev.Count % 3);                          // a premise's three pairs go together
        var devPremises = a.Dev.Select(x => x.Text).ToHashSet();
        Assert.DoesNotContain(a.Train, x => devPremises.Contains(x.Text));
    }

    [Fact]
    public void Cmnli_split_removes_training_pairs_that_share_a_sentence_with_dev()
    {
        var data = Pairs(200);
        var first = ClueSplits.CarveByPremise(data, x => x.Text, x => x.Pair);
        var devHypothesis = first.Dev[0].Pair!;
        var trainPremise = first.Train[0].Text;
        // A training-side premise paired with a dev hypothesis (differing only in width and spacing, which normalisation folds).
        var leak = new TextExample(trainPremise, "  " + devHypothesis.Replace("hypothesis", "ｈｙｐｏｔｈｅｓｉｓ", StringComparison.Ordinal) + " ", "neutral");
        var split = ClueSplits.CarveByPremise([.. data, leak], x => x.Text, x => x.Pair);
        Assert.Equal(1, split.CrossSideRemoved);
        Assert.DoesNotContain(leak, split.Train);
        Assert.Equal(first.Dev.Count, split.Dev.Count);
    }

    [Fact]
    public void Class_weights_are_inverse_frequency_and_average_one()
    {
        var w = TextClassifier.InverseFrequencyWeights([0, 0, 0, 1], 3);
        Close.Assert(w, [4.0 / 6, 2.0, 0.0], "weights of counts 3, 1, 0");
        Close.Assert((3 * w[0] + w[1]) / 4, 1.0, "mean weight over the examples");
        Assert.Throws<ArgumentOutOfRangeException>(() => TextClassifier.InverseFrequencyWeights([0, 3], 3));
    }

    [Fact]
    public void Head_option_names_pooling_and_weighting()
    {
        Assert.Equal((Pooling.First, false), ClassificationRun.ParseHead(null));
        Assert.Equal((Pooling.First, true), ClassificationRun.ParseHead("weighted"));
        Assert.Equal((Pooling.Mean, true), ClassificationRun.ParseHead("mean,weighted"));
        Assert.Contains("'crf'", Assert.Throws<ArgumentException>(() => ClassificationRun.ParseHead("crf")).Message);
    }

    [Fact]
    public void Labels_sort_numerically_when_they_are_numbers()
    {
        Assert.Equal(["2", "10", "100"], TextClassifier.SortLabels(["10", "2", "100", "2"]));
        Assert.Equal(["false", "true"], TextClassifier.SortLabels(["true", "false"]));
    }

    [Fact]
    public void TextClassifier_trains_saves_loads_and_predicts_label_and_probabilities()
    {
        string dir = Directory.CreateTempSubdirectory("b4s-textclassifier-").FullName;
        try
        {
            string vocab = Path.Combine(dir, "vocab.txt");
            TestPaths.WriteSyntheticVocabulary(vocab);
            string config = Path.Combine(dir, "tiny.json");
            File.WriteAllText(config, """
                {"model_type": "bert", "hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
                 "intermediate_size": 64, "max_position_embeddings": 64, "type_vocab_size": 2, "vocab_size": 1}
                """);
            // Label "b" when the text starts with 丁, else "a" (three times as often: the class weights are not uniform).
            var train = Enumerable.Range(0, 32).Select(i => new TextExample(i % 4 == 0 ? "丁七万" : "三上下", i % 2 == 0 ? "不与" : null, i % 4 == 0 ? "b" : "a")).ToList();
            var lines = new List<string>();
            var trained = TextClassifier.Train(train, train.Take(8).ToList(),
                new ClueRunOptions { DataDirectory = "", Output = Path.Combine(dir, "run"), Config = config, Vocabulary = vocab, MaxSteps = 4, WarmupSteps = 0, EvalEverySteps = 2, Seed = 3 },
                new TextClassifierOptions { ClassWeights = true, BatchSize = 8, MaxLength = 16 }, lines.Add, ProgressDisplay.Lines, TestContext.Current.CancellationToken);
            Assert.Equal(4, trained.Result.Steps);
            Assert.Contains(lines, l => l.StartsWith("class weights (inverse training frequency): a 0.667, b 2", StringComparison.Ordinal));
            using var classifier = trained.Classifier;
            Assert.Equal(["a", "b"], classifier.Labels);
            var before = classifier.Predict("丁七万", "不与");
            Close.Assert(before.Probabilities.Sum(), 1f, "probabilities sum");
            Assert.Equal(classifier.Labels[before.Index], before.Label);
            // A batch (sorted by length inside) answers in input order.
            var batch = classifier.Predict([new TextExample("丁七万", "不与"), new TextExample("三"), new TextExample("三上下三上下", "不")]);
            Close.Assert([.. batch[0].Probabilities], [.. before.Probabilities], "first of a batch");
            Close.Assert([.. batch[1].Probabilities], [.. classifier.Predict("三").Probabilities], "second of a batch");

            string saved = classifier.Save(Path.Combine(dir, "model"));
            using var loaded = TextClassifier.Load(saved);
            Assert.Equal("text-classification", loaded.Options.Task);
            Assert.True(loaded.Options.ClassWeights);
            var after = loaded.Predict("丁七万", "不与");
            Assert.Equal(before.Label, after.Label);
            Close.Assert([.. after.Probabilities], [.. before.Probabilities], "probabilities after save and load");
            Assert.Contains("'text-classification'", Assert.Throws<InvalidDataException>(() => TextClassifier.Load(saved, "afqmc")).Message);
        }
        finally { Directory.Delete(dir, recursive: true); }
    }
}
