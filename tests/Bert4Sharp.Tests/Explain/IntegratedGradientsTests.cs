using System.Text.Json;
using Bert4Sharp.Explain;
using Bert4Sharp.Models;
using Bert4Sharp.Tasks;
using Bert4Sharp.Tokenization;
using TorchSharp;
using static TorchSharp.torch;

namespace Bert4Sharp.Tests.Explain;

/// <summary>
/// Integrated gradients against tests/reference/make_ig_refs.py (a plain-PyTorch BERT over the tiny HF BERT fixture's
/// weights, torch.autograd on the same path, float64), plus completeness, the embedding seam, baselines, rendering and errors.
/// </summary>
public class IntegratedGradientsTests
{
    static readonly string Config = TestPaths.Fixture("hf", "bert", "config.json"), Weights = TestPaths.Fixture("hf", "bert", "model.safetensors");

    static BertWordPieceTokenizer Tokenizer()
    {
        string vocab = Path.Combine(Path.GetTempPath(), $"b4s-ig-vocab-{Guid.NewGuid():N}.txt");
        TestPaths.WriteSyntheticVocabulary(vocab);
        try { return BertWordPieceTokenizer.FromFile(vocab, new BertWordPieceOptions()); }
        finally { File.Delete(vocab); }
    }

    static TransformerModel Model(Application application, ScalarType dtype = ScalarType.Float32)
    {
        var m = TransformerModels.Build(Config, Weights, "bert", application, new BuildOptions { Device = CPU });
        if (dtype != ScalarType.Float32) m.to(dtype);
        m.eval();
        return m;
    }

    /// <summary>The tiny BERT + the reference's seeded 3-label head over the pooler.</summary>
    static SequenceClassifier Classifier(JsonElement head, ScalarType dtype = ScalarType.Float32)
    {
        var c = new SequenceClassifier(Model(Application.Encoder), 3, 0.1, Pooling.First);
        if (dtype != ScalarType.Float32) c.to(dtype);
        using (torch.no_grad())
        {
            double[] w = [.. head.GetProperty("weight").EnumerateArray().SelectMany(r => r.EnumerateArray().Select(x => x.GetDouble()))];
            c.Classifier.weight!.copy_(torch.tensor(w).view(3, -1));                           // copy_ casts to the model's dtype
            c.Classifier.bias!.copy_(torch.tensor(Doubles(head.GetProperty("bias"))));
        }
        c.eval();
        return c;
    }

    static JsonElement Refs()
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(TestPaths.Fixture("explain", "ig_refs.json")));
        return doc.RootElement.Clone();
    }

    static readonly JsonElement DefaultHead = Refs().GetProperty("head");

    [Fact]
    public void AttributionsMatchThePyTorchReference()
    {
        // Both sides in float64: the C# model converted, the reference's weights widened. Bounds: atol 1e-9 at the
        // attributions' scale (up to ~0.3) covers float64 round-off through 3 layers, 16 nodes and two kernel orders.
        var refs = Refs();
        var tokenizer = Tokenizer();
        var classifier = Classifier(refs.GetProperty("head"), ScalarType.Float64);
        var mlm = Model(Application.MaskedLM, ScalarType.Float64);
        int n = 0;
        foreach (var c in refs.GetProperty("cases").EnumerateArray())
        {
            var options = new IntegratedGradientsOptions
            {
                Steps = c.GetProperty("steps").GetInt32(), Method = Enum.Parse<IntegrationMethod>(c.GetProperty("method").GetString()!),
                Baseline = Enum.Parse<IntegrationBaseline>(c.GetProperty("baseline").GetString()!), Score = Enum.Parse<AttributionScore>(c.GetProperty("score").GetString()!),
                KeepSpecialTokens = c.GetProperty("keep_special").GetBoolean(), BatchSize = 5, Tolerance = double.PositiveInfinity,
            };
            string text = c.GetProperty("text").GetString()!;
            string? pair = c.GetProperty("pair").ValueKind == JsonValueKind.Null ? null : c.GetProperty("pair").GetString();
            int target = c.GetProperty("target").GetInt32();
            string what = $"case {n} ({c.GetProperty("kind").GetString()}, {options.Baseline}, {options.Method} {options.Steps}, {options.Score})";
            var a = c.GetProperty("kind").GetString() == "mlm"
                ? IntegratedGradients.ExplainMask(mlm, tokenizer, text, tokenizer.Vocabulary.IdToToken(target), 0, options)
                : IntegratedGradients.Explain(classifier, tokenizer, text, pair, target, null, options);
            Assert.Equal(c.GetProperty("ids").EnumerateArray().Select(x => x.GetInt32()), tokenizer.Encode(text, pair).Ids);
            Assert.Equal(c.GetProperty("predicted").GetInt32(), a.PredictedIndex);
            Close.Assert(a.InputScore, c.GetProperty("input_score").GetDouble(), what + " f(x)", 1e-9, 1e-9);
            Close.Assert(a.BaselineScore, c.GetProperty("baseline_score").GetDouble(), what + " f(x′)", 1e-9, 1e-9);
            Close.Assert([.. a.Scores], Doubles(c.GetProperty("scores")), what + " attributions", 1e-9, 1e-7);
            Close.Assert([.. a.Norms], Doubles(c.GetProperty("norms")), what + " L2 norms", 1e-9, 1e-7);
            n++;
        }
        Assert.Equal(12, n);
    }

    static double[] Doubles(JsonElement e) => [.. e.EnumerateArray().Select(x => x.GetDouble())];

    [Fact]
    public void CompletenessHoldsAndTheGapShrinksFasterWithGaussLegendre()
    {
        var classifier = Classifier(DefaultHead);
        var tokenizer = Tokenizer();
        string text = "丐丑专且丕世丘丙业丛";
        TokenAttributions Run(IntegrationMethod m, int steps) => IntegratedGradients.Explain(classifier, tokenizer, text, options: new() { Method = m, Steps = steps });
        var gaussRuns = new[] { 2, 4, 8, 16, 32 }.Select(s => Run(IntegrationMethod.GaussLegendre, s)).ToArray();
        var gauss = gaussRuns.Select(r => r.RelativeGap).ToArray();
        var right = new[] { 8, 32 }.Select(s => Run(IntegrationMethod.RiemannRight, s).RelativeGap).ToArray();
        // Gauss–Legendre converges (each doubling at least halves the gap from 4 nodes on) and 32 nodes are within 1 %.
        for (int i = 2; i < gauss.Length; i++) Assert.True(gauss[i] < gauss[i - 1] / 2, $"Gauss–Legendre gaps {string.Join(", ", gauss)}");
        Assert.True(gauss[^1] < 0.01, $"Gauss–Legendre 32 nodes: relative gap {gauss[^1]}");
        Assert.True(right[1] < right[0], $"right Riemann gaps {string.Join(", ", right)}");
        Assert.True(gauss[2] < right[1], $"8 Gauss–Legendre nodes ({gauss[2]}) should beat 32 right-Riemann steps ({right[1]})");
        var a = gaussRuns[^1];                                                                  // the defaults: Gauss–Legendre 32, tolerance 5 %
        Assert.True(a.Complete, a.DescribeCompleteness());
        Assert.False(gaussRuns[0].Complete, "2 nodes are not within 5 %: " + gaussRuns[0].DescribeCompleteness());
        Close.Assert(a.Sum, a.InputScore - a.BaselineScore, "Σ attributions vs f(x) − f(x′)", 0, 0.01);
    }

    [Fact]
    public void TheEmbeddingSeamEqualsTheIdPath()
    {
        var tokenizer = Tokenizer();
        var classifier = Classifier(DefaultHead);
        var e = tokenizer.Encode("丐丑专且丕世", "丘丙业");
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        var ids = torch.tensor(e.Ids.Select(i => (long)i).ToArray()).unsqueeze(0);
        var segments = torch.tensor(e.SegmentIds.Select(i => (long)i).ToArray()).unsqueeze(0);
        var encoder = classifier.Encoder;
        var rows = encoder.TokenEmbeddings.index_select(0, ids.squeeze(0)).unsqueeze(0);     // (1, T, E)
        using var byIds = encoder.Forward(new ModelInput(ids) { Segments = segments, OutputHiddenStates = true });
        using var byRows = encoder.Forward(new ModelInput(ids) { Segments = segments, OutputHiddenStates = true, TokenEmbeddings = rows });
        Close.Assert(byRows.HiddenStates![0], byIds.HiddenStates![0], "embedding output, rows vs ids", 0, 0);
        Close.Assert(byRows.LastHiddenState, byIds.LastHiddenState, "last hidden state, rows vs ids", 0, 0);
        Close.Assert(classifier.Forward(new ModelInput(ids) { Segments = segments, TokenEmbeddings = rows }), classifier.forward(ids, segments, null), "classifier logits, rows vs ids", 0, 0);
        // Other rows change the output: the override is really used.
        Close.AssertNot(encoder.Forward(new ModelInput(ids) { Segments = segments, TokenEmbeddings = rows * 0.5 }).LastHiddenState, byIds.LastHiddenState, "halved rows", 1e-3);
        var ex = Assert.Throws<ArgumentException>(() => encoder.Forward(new ModelInput(ids) { TokenEmbeddings = rows.narrow(1, 0, 3) }));
        Assert.Contains("token embeddings must be (batch, length, width)", ex.Message);
    }

    [Fact]
    public void BaselinesDifferAsExpected()
    {
        var classifier = Classifier(DefaultHead);
        var tokenizer = Tokenizer();
        string text = "丐丑专且丕世丘";
        TokenAttributions Run(IntegrationBaseline b, bool keep = true) =>
            IntegratedGradients.Explain(classifier, tokenizer, text, options: new() { Baseline = b, Steps = 16, KeepSpecialTokens = keep });
        var zero = Run(IntegrationBaseline.Zero);
        var pad = Run(IntegrationBaseline.Padding);
        var mask = Run(IntegrationBaseline.Mask);
        // transformers zeroes the padding_idx row at initialisation, so [PAD]'s row is the zero vector here: the same path.
        using (var padRow = classifier.Encoder.TokenEmbeddings[tokenizer.PaddingId]) Assert.Equal(0, padRow.abs().max().item<float>());
        Close.Assert([.. pad.Scores], [.. zero.Scores], "[PAD] baseline = zero baseline when [PAD]'s row is zero", 0, 0);
        Assert.True(Math.Abs(mask.BaselineScore - zero.BaselineScore) > 1e-3, $"f(x′) with [MASK] rows {mask.BaselineScore} vs zero rows {zero.BaselineScore}");
        Close.Assert(mask.InputScore, zero.InputScore, "f(x) does not depend on the baseline", 0, 0);
        // [CLS] and [SEP] keep their rows: x − x′ = 0 there, attribution exactly 0; without keeping they get some.
        Assert.Equal(0, zero.Scores[0]);
        Assert.Equal(0, zero.Scores[^1]);
        var all = Run(IntegrationBaseline.Zero, keep: false);
        Assert.NotEqual(0, all.Scores[0]);
        Assert.NotEqual(zero.BaselineScore, all.BaselineScore);
    }

    [Fact]
    public void MaskedLanguageModelAttributionsAreCompleteAndZeroAtTheMask()
    {
        var mlm = Model(Application.MaskedLM);
        var tokenizer = Tokenizer();
        var a = IntegratedGradients.ExplainMask(mlm, tokenizer, "丐丑专[MASK]丕世丘", options: new() { Steps = 16 });
        Assert.Equal(4, a.MaskPosition);
        Assert.Equal(a.PredictedIndex, a.TargetIndex);
        Assert.Equal(0, a.Scores[4]);                                                         // the [MASK] keeps its row
        Assert.True(a.Complete, a.DescribeCompleteness());
        Assert.True(mlm.ComputeLogits, "the model's ComputeLogits is restored");
        var b = IntegratedGradients.ExplainMask(mlm, tokenizer, "丐丑专[MASK]丕世丘", "且", options: new() { Steps = 16 });
        Assert.Equal("且", b.Target);
        Assert.NotEqual(a.TargetProbability, b.TargetProbability);
    }

    [Fact]
    public void BatchSizeDoesNotChangeTheResult()
    {
        var classifier = Classifier(DefaultHead);
        var tokenizer = Tokenizer();
        var one = IntegratedGradients.Explain(classifier, tokenizer, "丐丑专且丕", options: new() { Steps = 7, BatchSize = 1 });
        var all = IntegratedGradients.Explain(classifier, tokenizer, "丐丑专且丕", options: new() { Steps = 7, BatchSize = 64 });
        Close.Assert([.. all.Scores], [.. one.Scores], "batch 64 vs batch 1", Close.Float32Atol, 1e-4);
    }

    [Fact]
    public void NoTensorOutlivesAnExplanation()
    {
        var classifier = Classifier(DefaultHead);
        var mlm = Model(Application.MaskedLM);
        var tokenizer = Tokenizer();
        void Both()
        {
            IntegratedGradients.Explain(classifier, tokenizer, "丐丑专且", options: new() { Steps = 5, BatchSize = 2 });
            IntegratedGradients.ExplainMask(mlm, tokenizer, "丐[MASK]专且", options: new() { Steps = 5, BatchSize = 2 });
        }
        Both();                                                                                 // warm-up: anything cached once
        long before = DisposeScopeManager.Statistics.ThreadTotalLiveCount;
        Both();
        Assert.Equal(before, DisposeScopeManager.Statistics.ThreadTotalLiveCount);
        using (var probe = torch.zeros(1)) Assert.Equal(before + 1, DisposeScopeManager.Statistics.ThreadTotalLiveCount);   // the counter sees a tensor left outside any scope
    }

    [Fact]
    public void BadInputGivesClearErrors()
    {
        var classifier = Classifier(DefaultHead);
        var mlm = Model(Application.MaskedLM);
        var tokenizer = Tokenizer();
        Assert.Contains("has no [MASK]", Assert.Throws<ArgumentException>(() => IntegratedGradients.ExplainMask(mlm, tokenizer, "丐丑专")).Message);
        Assert.Contains("mask 1 asked for, the text has 1", Assert.Throws<ArgumentOutOfRangeException>(() => IntegratedGradients.ExplainMask(mlm, tokenizer, "丐[MASK]专", maskIndex: 1)).Message);
        Assert.Contains("not in the vocabulary", Assert.Throws<ArgumentException>(() => IntegratedGradients.ExplainMask(mlm, tokenizer, "丐[MASK]专", "dog")).Message);
        Assert.Contains("MLM head", Assert.Throws<ArgumentException>(() => IntegratedGradients.ExplainMask(classifier.Encoder, tokenizer, "丐[MASK]专")).Message);
        Assert.Contains("target label 3 is outside [0, 3)", Assert.Throws<ArgumentOutOfRangeException>(() => IntegratedGradients.Explain(classifier, tokenizer, "丐丑", target: 3)).Message);
        Assert.Contains("at least 1 step, got 0", Assert.Throws<ArgumentOutOfRangeException>(() => IntegratedGradients.Explain(classifier, tokenizer, "丐丑", options: new() { Steps = 0 })).Message);
        Assert.Contains("empty", Assert.Throws<ArgumentException>(() => IntegratedGradients.Explain(classifier, tokenizer, "")).Message);
        var ex = Assert.Throws<IncompleteAttributionException>(() => IntegratedGradients.Explain(classifier, tokenizer, "丐丑专且丕世丘",
            options: new() { Method = IntegrationMethod.RiemannLeft, Steps = 1, Tolerance = 1e-6, ThrowWhenIncomplete = true }));
        Assert.Contains("above the tolerance", ex.Message);
        Assert.False(ex.Attributions.Complete);
    }

    [Fact]
    public void HtmlAndPngAreWritten()
    {
        var classifier = Classifier(DefaultHead);
        var tokenizer = Tokenizer();
        var a = IntegratedGradients.Explain(classifier, tokenizer, "丐丑 专且", "丕世", labels: ["甲", "乙", "丙"], options: new() { Steps = 8 });
        string dir = Directory.CreateTempSubdirectory("b4s-ig").FullName;
        try
        {
            string html = Path.Combine(dir, "a.html"), png = Path.Combine(dir, "a.png");
            AttributionHtml.Write(html, [a]);
            string page = File.ReadAllText(html);
            foreach (string piece in new[] { ">丐</span>", ">且</span>", ">丕</span>", ">世</span>", "Σ attributions", "<!DOCTYPE html>" }) Assert.Contains(piece, page);   // one span per token
            Assert.Contains($"predicted <b>{a.Predicted}</b>", page);
            Assert.Contains("丑</span> <span", page);                                           // the space between the texts' words stays plain
            var drawn = Bert4Sharp.Training.AttributionHeatmap.Save(png, [a, a]);
            byte[] bytes = File.ReadAllBytes(png);
            Assert.True(bytes.Length > 1000, $"PNG of {bytes.Length} bytes");
            Assert.Equal(new byte[] { 0x89, (byte)'P', (byte)'N', (byte)'G' }, bytes[..4]);
            Assert.Empty(Directory.GetFiles(dir, "*.tmp"));
            Console.WriteLine($"heatmap font {drawn.Font}, characters: {drawn.Characters}");
        }
        finally { Directory.Delete(dir, true); }
    }

    [Fact]
    public void GaussLegendreNodesIntegratePolynomialsExactly()
    {
        var (x2, w2) = PathIntegral.GaussLegendre(2);
        Close.Assert(x2, [0.5 - 0.5 / Math.Sqrt(3), 0.5 + 0.5 / Math.Sqrt(3)], "2 nodes", 1e-15, 0);
        Close.Assert(w2, [0.5, 0.5], "2 weights", 1e-15, 0);
        foreach (int n in new[] { 1, 3, 8, 33 })
        {
            var (x, w) = PathIntegral.GaussLegendre(n);
            for (int degree = 0; degree <= 2 * n - 1; degree += Math.Max(1, n / 4))
                Close.Assert(x.Zip(w).Sum(p => p.Second * Math.Pow(p.First, degree)), 1.0 / (degree + 1), $"∫α^{degree} with {n} nodes", 1e-13, 1e-13);
        }
        foreach (var m in Enum.GetValues<IntegrationMethod>())
            Close.Assert(PathIntegral.Nodes(m, 5).Weights.Sum(), 1.0, $"{m} weights sum", 1e-15, 0);
        Assert.Equal([0.0, 0.5, 1.0], PathIntegral.Nodes(IntegrationMethod.RiemannTrapezoid, 2).Alphas);
        Assert.Throws<ArgumentOutOfRangeException>(() => PathIntegral.Nodes(IntegrationMethod.RiemannRight, 0));
    }
}

/// <summary><c>b4s explain</c> as a process: a classifier directory as `b4s clue train` saves it, and a masked-LM directory.</summary>
public class ExplainCliTests
{
    static string ClassifierDirectory(string root)
    {
        var (encoder, tokenizer) = TestPaths.TinyBertEncoder();
        var model = new SequenceClassifier(encoder, 3, 0.1, Pooling.First);
        string dir = Path.Combine(root, "classifier");
        Bert4Sharp.Training.ClueRun.Save(model, encoder, tokenizer, new Bert4Sharp.Training.TaskModelFile("demo", "classifier", ["neg", "neu", "pos"], 32,
            new Dictionary<string, string> { ["pooling"] = "First", ["dropout"] = "0.1", ["class_weights"] = "none" }), dir);
        return dir;
    }

    [Fact]
    public void ExplainsAClassifierIntoHtmlAndJson()
    {
        string root = Directory.CreateTempSubdirectory("b4s-explain").FullName;
        try
        {
            string dir = ClassifierDirectory(root), html = Path.Combine(root, "out.html");
            var (code, stdout, stderr) = CliTests.B4s("explain", "--model", dir, "--steps", "16", "--target", "pos", "--output", html, "--json", "丐丑专且", "丕世丘");
            Assert.True(code == 0, stderr);
            using var doc = JsonDocument.Parse(stdout);
            var rows = doc.RootElement.EnumerateArray().ToList();
            Assert.Equal(2, rows.Count);
            Assert.Equal("pos", rows[0].GetProperty("target").GetString());
            Assert.Equal(["[CLS]", "丐", "丑", "专", "且", "[SEP]"], rows[0].GetProperty("tokens").EnumerateArray().Select(t => t.GetString()));
            double sum = rows[0].GetProperty("attributions").EnumerateArray().Sum(x => x.GetDouble());
            Close.Assert(sum, rows[0].GetProperty("sum").GetDouble(), "Σ attributions as printed", 1e-12, 1e-9);
            string page = File.ReadAllText(html);
            Assert.Contains(">丐</span>", page);
            Assert.Contains(">丘</span>", page);

            (code, _, stderr) = CliTests.B4s("explain", "--model", dir, "--target", "happy", "丐丑");
            Assert.Equal(1, code);
            Assert.Contains("--target 'happy' is not a label of this model; labels: neg, neu, pos", stderr);
            (code, _, stderr) = CliTests.B4s("explain", "--model", dir, "--steps", "0", "丐丑");
            Assert.Equal(1, code);
            Assert.Contains("--steps must be at least 1, got 0", stderr);
            (code, _, stderr) = CliTests.B4s("explain", "--model", dir, "--output", Path.Combine(root, "x.txt"), "丐丑");
            Assert.Equal(1, code);
            Assert.Contains("must end in .html or .png", stderr);
        }
        finally { Directory.Delete(root, true); }
    }

    [Fact]
    public void AMaskedLanguageModelNeedsAMask()
    {
        string dir = Directory.CreateTempSubdirectory("b4s-explain-mlm").FullName;
        try
        {
            foreach (string f in new[] { "config.json", "model.safetensors" }) File.Copy(TestPaths.Fixture("hf", "bert", f), Path.Combine(dir, f));
            TestPaths.WriteSyntheticVocabulary(Path.Combine(dir, "vocab.txt"));
            var (code, _, stderr) = CliTests.B4s("explain", "--model", dir, "丐丑专");
            Assert.Equal(1, code);
            Assert.Contains("has no [MASK] to explain", stderr);
            string png = Path.Combine(dir, "m.png");
            (code, var stdout, stderr) = CliTests.B4s("explain", "--model", dir, "--steps", "16", "--output", png, "丐丑[MASK]且");
            Assert.True(code == 0, stderr);
            Assert.Contains("[MASK] at token 3", stdout);
            Assert.True(new FileInfo(png).Length > 1000);
        }
        finally { Directory.Delete(dir, true); }
    }
}
