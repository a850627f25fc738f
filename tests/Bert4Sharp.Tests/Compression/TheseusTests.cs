namespace Bert4Sharp.Tests.Compression;

using Bert4Sharp.Models;
using Bert4Sharp.Tasks;
using Bert4Sharp.Tasks.Clue;
using Bert4Sharp.Tokenization;
using Bert4Sharp.Training;
using Bert4Sharp.Training.Compression;
using TorchSharp;
using static TorchSharp.torch;

/// <summary>BERT-of-Theseus: the replacement schedule, the frozen predecessor, the mixed stack's limits, the saved successor, bad input.</summary>
public sealed class TheseusTests
{
    static SequenceClassifier TinyPredecessor(int layers = 4, double dropout = 0, int seed = 5)
    {
        torch.manual_seed(seed);
        var config = new TransformerConfig
        {
            ModelType = "roformer_v2", VocabSize = 1000, HiddenSize = 32, NumHiddenLayers = layers, NumAttentionHeads = 2, IntermediateSize = 64,
            HiddenAct = "relu", HiddenDropoutProb = dropout, AttentionProbsDropoutProb = dropout,
        };
        var encoder = TransformerModels.Create(config, "roformer_v2", Application.Encoder, new BuildOptions { Device = CPU });
        return new SequenceClassifier(encoder, 3, dropout);
    }

    static (Tensor Ids, Tensor Segments, Tensor Mask) Inputs()
    {
        var ids = torch.tensor(new long[] { 101, 200, 201, 202, 203, 102, 101, 300, 301, 102, 0, 0 }, [2, 6]);
        var mask = torch.tensor(new long[] { 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0 }, [2, 6]);
        return (ids, torch.zeros_like(ids), mask);
    }

    [Fact]
    public void Schedules_give_the_constant_and_the_papers_linear_probability()
    {
        var constant = ReplacementSchedule.Constant(0.5);
        Assert.Equal(0.5, constant.Probability(0));
        Assert.Equal(0.5, constant.Probability(123_456));
        var linear = ReplacementSchedule.Linear(0.3, 1e-3);
        Close.Assert(linear.Probability(0), 0.3, "p(0)");
        Close.Assert(linear.Probability(200), 0.5, "p(200) = 0.3 + 200·1e-3");
        Close.Assert(linear.Probability(699), 0.999, "p(699)");
        Assert.Equal(1.0, linear.Probability(700));                          // reaches 1 …
        Assert.Equal(1.0, linear.Probability(5_000));                        // … and stays there
        Assert.Equal("linear p = min(1, 0.3 + 0.001·step)", linear.ToString());
        Assert.Throws<ArgumentOutOfRangeException>(() => ReplacementSchedule.Constant(1.5));
        Assert.Throws<ArgumentOutOfRangeException>(() => ReplacementSchedule.Constant(double.NaN));
        Assert.Throws<ArgumentOutOfRangeException>(() => ReplacementSchedule.Linear(0.3, -1e-4));
    }

    [Theory]
    [InlineData(0.5, 0.0, 0L)]
    [InlineData(0.3, 0.0, 0L)]
    [InlineData(0.3, 1e-3, 300L)]                                              // the linear schedule at step 300: p = 0.6
    public void Draws_replace_each_group_with_the_scheduled_frequency(double p0, double rate, long step)
    {
        var schedule = new ReplacementSchedule(p0, rate).Validated();
        double p = schedule.Probability(step);
        const int Draws = 5_000, Groups = 4;
        var random = new Random(11);
        var perGroup = new int[Groups];
        for (int i = 0; i < Draws; i++)
        {
            var flags = schedule.Draw(step, Groups, random);
            for (int k = 0; k < Groups; k++) if (flags[k]) perGroup[k]++;
        }
        // Each group is Bernoulli(p): its count is Binomial(Draws, p); 4.5 standard deviations is a false alarm once in ~150,000 runs.
        double tolerance = 4.5 * Math.Sqrt(Draws * p * (1 - p));
        foreach (int count in perGroup) Assert.InRange(count, Draws * p - tolerance, Draws * p + tolerance);
        Assert.All(ReplacementSchedule.Constant(1).Draw(0, Groups, random), Assert.True);
        Assert.All(ReplacementSchedule.Constant(0).Draw(0, Groups, random), Assert.False);
    }

    [Fact]
    public void Successor_blocks_start_from_the_first_layers_or_the_first_of_each_group()
    {
        using var predecessor = TinyPredecessor();
        var source = predecessor.Encoder.state_dict();
        using var first = TheseusModel.Successor(predecessor.Encoder, 2, SuccessorInit.FirstLayers);
        using var group = TheseusModel.Successor(predecessor.Encoder, 2, SuccessorInit.FirstOfGroup);
        Assert.Equal(2, first.Config.NumHiddenLayers);
        foreach (var (name, t) in first.state_dict())
        {
            Assert.Equal(Floats(source[name]), Floats(t));                    // layers.0 ← 0, layers.1 ← 1, embeddings as they are
            string g = name.Replace("layers.1.", "layers.2.", StringComparison.Ordinal);
            Assert.Equal(Floats(source[g]), Floats(group.state_dict()[name])); // layers.1 ← 2
        }
    }

    [Fact]
    public void With_every_group_replaced_the_mixed_model_is_the_successor_and_with_none_the_predecessor()
    {
        using var predecessor = TinyPredecessor();
        var successor = TheseusModel.Successor(predecessor.Encoder, 2);
        using (torch.no_grad())
            foreach (var (name, p) in successor.named_parameters())                           // trained blocks: differ from the predecessor's
                if (name.StartsWith("layers.", StringComparison.Ordinal)) p.add_(torch.randn_like(p) * 0.05);
        using var theseus = new TheseusModel(predecessor, successor);
        using var alone = TheseusModel.SuccessorClassifier(predecessor, successor, 0);
        var (ids, segments, mask) = Inputs();
        theseus.train();
        alone.train();
        predecessor.train();
        using var noGrad = torch.no_grad();
        theseus.Choose(ReplacementSchedule.Constant(1).Draw(0, 2, new Random(1)));            // p = 1
        var asSuccessor = theseus.forward(ids, segments, mask);
        var successorOnly = alone.forward(ids, segments, mask);
        Close.Assert(asSuccessor, successorOnly, "p = 1: the successor alone", atol: 1e-6, rtol: 1e-6);
        theseus.Choose(ReplacementSchedule.Constant(0).Draw(0, 2, new Random(1)));            // p = 0
        var asPredecessor = theseus.forward(ids, segments, mask);
        Close.Assert(asPredecessor, predecessor.forward(ids, segments, mask), "p = 0: the predecessor", atol: 1e-6, rtol: 1e-6);
        Close.AssertNot(asPredecessor, successorOnly, "the two models differ", atol: 1e-3);
        theseus.Choose([true, false]);                                                      // mixed: neither
        var mixed = theseus.forward(ids, segments, mask);
        Close.AssertNot(mixed, successorOnly, "mixed vs successor", atol: 1e-4);
        Close.AssertNot(mixed, asPredecessor, "mixed vs predecessor", atol: 1e-4);
        theseus.eval();                                                                      // evaluation: the successor whatever was drawn
        Close.Assert(theseus.forward(ids, segments, mask), successorOnly, "evaluation mode", atol: 1e-6, rtol: 1e-6);
        Assert.Null(predecessor.Encoder.BlockStack);                                         // the seam is cleared after each forward
    }

    [Fact]
    public void Training_steps_change_only_successor_blocks()
    {
        string dir = Directory.CreateTempSubdirectory("b4s-theseus-frozen-").FullName;
        try
        {
            using var predecessor = TinyPredecessor(dropout: 0.1);
            var successor = TheseusModel.Successor(predecessor.Encoder, 2);
            using var theseus = new TheseusModel(predecessor, successor);
            var before = theseus.state_dict().ToDictionary(kv => kv.Key, kv => Floats(kv.Value));
            string vocab = Path.Combine(dir, "vocab.txt");
            TestPaths.WriteSyntheticVocabulary(vocab);
            var tokenizer = BertWordPieceTokenizer.FromFile(vocab);
            var data = Enumerable.Range(0, 16).Select(i => new LabelledText(new string((char)(0x4E00 + 10 + i), 3 + i % 4), i % 2 == 0 ? "丁七" : null, i % 3)).ToList();
            // Group choices by step: successor first group only, second only, none (zero gradients), both.
            bool[][] choices = [[true, false], [false, true], [false, false], [true, true]];
            ClueRun.FitWithContext(theseus, data, (batch, ctx) =>
            {
                theseus.Choose(choices[ctx.Step % 4]);
                var (ids, segments, mask, target) = FineTuning.Batch(tokenizer, batch, 16, CPU);
                var loss = nn.functional.cross_entropy(theseus.forward(ids, segments, mask), target);
                if (!loss.requires_grad) loss = loss + theseus.ZeroGradient();
                return new StepResult(loss, mask.sum().item<long>());
            }, () => new Dictionary<string, double> { ["accuracy"] = 0 }, "accuracy",
                new ClueRunOptions { DataDirectory = "", Output = Path.Combine(dir, "run"), Model = "x", LearningRate = 1e-2, WarmupSteps = 0, MaxSteps = 4, EvalEverySteps = 100 },
                4, _ => { }, ProgressDisplay.Lines, TestContext.Current.CancellationToken);
            foreach (var (name, t) in theseus.state_dict())
            {
                bool trains = name.StartsWith("successor.layers.", StringComparison.Ordinal);
                if (trains) Assert.NotEqual(before[name], Floats(t));
                else Assert.Equal(before[name], Floats(t));                                     // bit-identical: no update, no weight decay
            }
            Assert.All(predecessor.parameters(), p => Assert.Null(p.grad));
        }
        finally { Directory.Delete(dir, recursive: true); }
    }

    [Fact]
    public void A_saved_successor_reloads_and_predicts_identically()
    {
        string dir = Directory.CreateTempSubdirectory("b4s-theseus-save-").FullName;
        try
        {
            string vocab = Path.Combine(dir, "vocab.txt");
            TestPaths.WriteSyntheticVocabulary(vocab);
            var tokenizer = BertWordPieceTokenizer.FromFile(vocab);
            using var predecessor = TinyPredecessor(dropout: 0.1);
            var successor = TheseusModel.Successor(predecessor.Encoder, 1);
            var classifier = TheseusModel.SuccessorClassifier(predecessor, successor, 0.1);
            var options = new TextClassifierOptions { Task = "tnews", MaxLength = 16, Labels = ["a", "b", "c"] };
            using var original = new TextClassifier(classifier, tokenizer, ["a", "b", "c"], options);
            var texts = new[] { new TextExample("三上下不", "丁七"), new TextExample("万丈与丑专且") };
            var expected = original.Predict(texts);
            original.Save(Path.Combine(dir, "model"));
            using var loaded = TextClassifier.Load(Path.Combine(dir, "model"), "tnews");
            Assert.Equal(1, loaded.Model.Encoder.Config.NumHiddenLayers);
            var actual = loaded.Predict(texts);
            for (int i = 0; i < texts.Length; i++)
            {
                Assert.Equal(expected[i].Label, actual[i].Label);
                Close.Assert([.. actual[i].Probabilities], [.. expected[i].Probabilities], $"probabilities of example {i} after save and load");
            }
        }
        finally { Directory.Delete(dir, recursive: true); }
    }

    /// <summary>A predecessor task model and a TNEWS-shaped data folder (3 labels, CJK sentences of the synthetic vocabulary).</summary>
    static (string Model, string Data) Staged(string dir, int layers = 2)
    {
        string data = Path.Combine(dir, "data"), tnews = Path.Combine(data, "tnews");
        Directory.CreateDirectory(tnews);
        File.WriteAllLines(Path.Combine(tnews, "labels.json"), new[] { "0", "1", "2" }.Select(l => $"{{\"label\": \"{l}\", \"label_des\": \"x{l}\"}}"));
        string Line(int i) => $"{{\"label\": \"{i % 3}\", \"sentence\": \"{new string((char)(0x4E00 + 20 + i % 3), 2)}{(char)(0x4E00 + 40 + i)}\", \"keywords\": \"\"}}";
        File.WriteAllLines(Path.Combine(tnews, "train.json"), Enumerable.Range(0, 24).Select(Line));
        File.WriteAllLines(Path.Combine(tnews, "dev.json"), Enumerable.Range(100, 8).Select(Line));
        string vocab = Path.Combine(dir, "vocab.txt");
        TestPaths.WriteSyntheticVocabulary(vocab);
        var predecessor = TinyPredecessor(layers, dropout: 0.1);
        using var classifier = new TextClassifier(predecessor, BertWordPieceTokenizer.FromFile(vocab), ["0", "1", "2"],
            new TextClassifierOptions { Task = "tnews", MaxLength = 16, BatchSize = 8, Labels = ["0", "1", "2"] });
        return (classifier.Save(Path.Combine(dir, "predecessor")), data);
    }

    [Fact]
    public void Compression_runs_both_phases_and_saves_a_task_model_clue_predict_reads()
    {
        string dir = Directory.CreateTempSubdirectory("b4s-theseus-run-").FullName;
        try
        {
            var (model, data) = Staged(dir);
            var lines = new List<string>();
            var result = TheseusCompression.Run(new TheseusOptions
            {
                Model = model, Task = "tnews", Layers = 1, Output = Path.Combine(dir, "out"), DataDirectory = data, ReplacementSteps = 3, SuccessorSteps = 2,
                WarmupSteps = 0, EvalEverySteps = 2, LearningRate = 1e-3, SpeedBatches = 1, SpeedRounds = 1, Seed = 3,
            }, lines.Add, ProgressDisplay.Lines, TestContext.Current.CancellationToken);
            Assert.Equal(3, result.Replacement.Steps);
            Assert.Equal(2, result.Successor!.Steps);
            Assert.True(result.Speed.PredecessorMs > 0 && result.Speed.SuccessorMs > 0);
            Assert.StartsWith("predecessor (2 blocks) dev accuracy", lines[^1], StringComparison.Ordinal);
            Assert.Contains("retention", lines[^1], StringComparison.Ordinal);
            using var saved = TextClassifier.Load(result.ModelDirectory, "tnews");
            Assert.Equal(1, saved.Model.Encoder.Config.NumHiddenLayers);
            var dev = TextClassifier.Indexed(ClassificationRun.All.First(r => r.Task == "tnews").Splits(data, _ => { }).Dev, saved.Labels, "dev");
            Assert.Equal(result.SuccessorAccuracy, TheseusCompression.Accuracy(saved.Model, saved.Tokenizer, dev, saved.Options.MaxLength));
            string predictions = Path.Combine(dir, "predictions.json");
            Assert.Equal(8, ClueRuns.Get("tnews").Predict(result.ModelDirectory, Path.Combine(data, "tnews", "dev.json"), predictions, _ => { }));
            Assert.Equal(8, File.ReadAllLines(predictions).Length);
        }
        finally { Directory.Delete(dir, recursive: true); }
    }

    [Fact]
    public void Bad_input_is_refused_with_what_to_do()
    {
        string dir = Directory.CreateTempSubdirectory("b4s-theseus-bad-").FullName;
        try
        {
            var (model, data) = Staged(dir, layers: 4);
            static TheseusResult Run(TheseusOptions o) => TheseusCompression.Run(o, _ => { }, ProgressDisplay.Lines, TestContext.Current.CancellationToken);
            TheseusOptions Options(int layers, string? m = null, string task = "tnews") => new()
            {
                Model = m ?? model, Task = task, Layers = layers, Output = Path.Combine(dir, $"out-{Guid.NewGuid():N}"), DataDirectory = data,
            };
            Assert.Contains("fewer blocks than the predecessor's 4", Assert.Throws<ArgumentException>(() => Run(Options(4))).Message);
            Assert.Contains("choose one of 1, 2", Assert.Throws<ArgumentException>(() => Run(Options(5))).Message);
            Assert.Contains("does not divide the predecessor's 4 blocks", Assert.Throws<ArgumentException>(() => Run(Options(3))).Message);
            Assert.Contains("at least 1", Assert.Throws<ArgumentException>(() => Run(Options(0))).Message);
            Assert.Contains("classification tasks", Assert.Throws<ArgumentException>(() => Run(Options(2, task: "cluener"))).Message);
            // A pretrained encoder directory (no task.json), and a task model with another head.
            string pretrained = Path.Combine(dir, "pretrained");
            using (var p = TinyPredecessor()) p.Encoder.SavePretrained(pretrained);
            Assert.Contains("has no task.json", Assert.Throws<InvalidDataException>(() => Run(Options(2, pretrained))).Message);
            File.WriteAllText(Path.Combine(pretrained, "task.json"), """{"Task": "tnews", "Head": "GlobalPointer", "Labels": ["0", "1"], "MaxLength": 16}""");
            Assert.Contains("not a text classifier", Assert.Throws<InvalidDataException>(() => Run(Options(2, pretrained))).Message);
            Assert.Contains("does not exist", Assert.Throws<DirectoryNotFoundException>(() => Run(Options(2, Path.Combine(dir, "nowhere")))).Message);
            // The seam refuses per-layer hidden states of a mixed stack.
            using var pre = TinyPredecessor();
            using var theseus = new TheseusModel(pre, TheseusModel.Successor(pre.Encoder, 2));
            Assert.Throws<ArgumentException>(() => theseus.Choose([true]));
            var (ids, segments, mask) = Inputs();
            pre.Encoder.BlockStack = (x, _) => x;
            Assert.Throws<NotSupportedException>(() => pre.Encoder.Forward(ids, segments, mask, outputHiddenStates: true));
        }
        finally { Directory.Delete(dir, recursive: true); }
    }

    static float[] Floats(Tensor t) => t.detach().cpu().to(ScalarType.Float32).data<float>().ToArray();
}
