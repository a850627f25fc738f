using System.Text.Json;
using Bert4Sharp.Embeddings;
using Bert4Sharp.Tasks;
using Bert4Sharp.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace Bert4Sharp.Tests.Embeddings;

/// <summary>
/// The sentence-embedding core against independent references (tests/reference/make_embedding_refs.py: scipy's
/// spearmanr, SimCSE / supervised SimCSE / CoSENT written in torch from the papers and posts, numpy BERT-whitening),
/// and the encoder's contracts on the tiny BERT fixture.
/// </summary>
public class SentenceEmbeddingTests
{
    static readonly JsonElement Refs = JsonDocument.Parse(File.ReadAllText(TestPaths.Fixture("embeddings", "refs.json"))).RootElement;

    static double[] D1(JsonElement e) => [.. e.EnumerateArray().Select(v => v.GetDouble())];
    static Tensor T2(JsonElement e) => torch.tensor(e.EnumerateArray().SelectMany(r => r.EnumerateArray().Select(v => v.GetDouble())).ToArray(),
        [e.GetArrayLength(), e[0].GetArrayLength()], ScalarType.Float64).requires_grad_(true);
    static double[] Flat(JsonElement e) => [.. e.EnumerateArray().SelectMany(r => r.EnumerateArray().Select(v => v.GetDouble()))];

    [Fact]
    public void SpearmanEqualsScipyWithTies()
    {
        var r = Refs.GetProperty("spearman");
        Close.Assert([StsData.Spearman(D1(r.GetProperty("x")), D1(r.GetProperty("y")))], [r.GetProperty("rho").GetDouble()], "Spearman vs scipy.stats.spearmanr");
        Assert.True(double.IsNaN(StsData.Spearman([1, 1, 1], [1, 2, 3])));                 // a constant side has no ranking
        Assert.Throws<ArgumentException>(() => StsData.Spearman([1, 2], [1, 2, 3]));
    }

    [Fact]
    public void ContrastiveLossesAndGradientsEqualTorchReferences()
    {
        var s = Refs.GetProperty("simcse");
        var (a, b) = (T2(s.GetProperty("first")), T2(s.GetProperty("second")));
        var loss = EmbeddingLosses.SimCse(a, b, s.GetProperty("temperature").GetDouble());
        loss.backward();
        Close.Assert([loss.item<double>()], [s.GetProperty("loss").GetDouble()], "SimCSE loss");
        Close.Assert(a.grad!.data<double>().ToArray(), Flat(s.GetProperty("grad_first")), "SimCSE gradient");

        var u = Refs.GetProperty("supervised_simcse");
        var (x, p, n) = (T2(u.GetProperty("anchor")), T2(u.GetProperty("positive")), T2(u.GetProperty("negative")));
        loss = EmbeddingLosses.SupervisedSimCse(x, p, n, u.GetProperty("temperature").GetDouble());
        loss.backward();
        Close.Assert([loss.item<double>()], [u.GetProperty("loss").GetDouble()], "supervised SimCSE loss");
        Close.Assert(x.grad!.data<double>().ToArray(), Flat(u.GetProperty("grad_anchor")), "supervised SimCSE gradient");

        var c = Refs.GetProperty("cosent");
        (a, b) = (T2(c.GetProperty("first")), T2(c.GetProperty("second")));
        loss = EmbeddingLosses.CoSent(a, b, torch.tensor(D1(c.GetProperty("scores"))), c.GetProperty("scale").GetDouble());
        loss.backward();
        Close.Assert([loss.item<double>()], [c.GetProperty("loss").GetDouble()], "CoSENT loss");
        Close.Assert(a.grad!.data<double>().ToArray(), Flat(c.GetProperty("grad_first")), "CoSENT gradient");

        Assert.Throws<ArgumentException>(() => EmbeddingLosses.SimCse(torch.zeros(1, 4), torch.zeros(1, 4)));              // no negatives
        Assert.Throws<ArgumentException>(() => EmbeddingLosses.CoSent(torch.zeros(3, 4), torch.zeros(3, 4), torch.zeros(2)));
    }

    [Fact]
    public void WhiteningEqualsNumpyAndWhitens()
    {
        var w = Refs.GetProperty("whitening");
        var vectors = w.GetProperty("vectors").EnumerateArray().Select(r => r.EnumerateArray().Select(v => v.GetSingle()).ToArray()).ToList();
        int k = w.GetProperty("dimensions").GetInt32();
        var fit = Whitening.Fit(vectors, k);
        Close.Assert(fit.Mean.ToArray().Select(v => (double)v).ToArray(), D1(w.GetProperty("mean")), "whitening mean vs numpy", atol: 1e-5, rtol: 1e-5);
        // The whitened vectors' Gram matrix does not depend on the SVD's column signs (float32 kernel: float32 bounds at its scale).
        using var y = fit.Apply(torch.tensor(vectors.SelectMany(v => v).ToArray(), [vectors.Count, vectors[0].Length]));
        var gram = y.matmul(y.T).to(ScalarType.Float64);
        var expected = torch.tensor(Flat(w.GetProperty("gram")), [vectors.Count, vectors.Count], ScalarType.Float64);
        Close.Assert(gram, expected, "whitened Gram matrix vs numpy", atol: 1e-4 * Close.AtolAtScale(expected, 1), rtol: 1e-4);
        // Fitted on all 8 dimensions, the vectors come out with zero mean and identity covariance.
        var full = Whitening.Fit(vectors);
        using var z = full.Apply(torch.tensor(vectors.SelectMany(v => v).ToArray(), [vectors.Count, vectors[0].Length])).to(ScalarType.Float64);
        var centred = z - z.mean([0]);
        Close.Assert(centred.T.matmul(centred) / (vectors.Count - 1), torch.eye(8, dtype: ScalarType.Float64), "covariance after whitening", atol: 1e-4, rtol: 0);
        // One vector through the array path equals the tensor path.
        Close.Assert(fit.Apply(vectors[3]), y[3].data<float>().ToArray(), "Apply(span) vs Apply(tensor)", atol: 1e-5, rtol: 1e-4);
    }

    [Fact]
    public void WhiteningSavesLoadsAndRefusesWhatCannotWork()
    {
        var rng = new Random(7);
        var vectors = Enumerable.Range(0, 40).Select(_ => Enumerable.Range(0, 6).Select(_ => (float)rng.NextDouble()).ToArray()).ToList();
        var fit = Whitening.Fit(vectors, 4);
        string dir = Directory.CreateTempSubdirectory("b4s-whitening").FullName;
        try
        {
            string path = Path.Combine(dir, Whitening.FileName);
            fit.Save(path);
            var back = Whitening.Load(path, 6);
            Assert.Equal((6, 4, 40), (back.InputDimensions, back.Dimensions, back.FittedOn));
            Close.Assert(back.Apply(vectors[0]), fit.Apply(vectors[0]), "whitening after save/load");
            Close.Assert(fit.Truncate(2).Apply(vectors[1]), fit.Apply(vectors[1])[..2], "truncated whitening = first columns");
            var wrongWidth = Assert.Throws<ArgumentException>(() => Whitening.Load(path, 384));
            Assert.Contains("fitted on another model", wrongWidth.Message);
            Assert.Throws<ArgumentException>(() => fit.Apply(new float[5]));
            Assert.Throws<ArgumentOutOfRangeException>(() => fit.Truncate(5));
            // Three vectors determine two directions: keeping four would whiten noise.
            Assert.Contains("at most 2 directions", Assert.Throws<ArgumentException>(() => Whitening.Fit(vectors.Take(3).ToList(), 4)).Message);
            Assert.Throws<ArgumentException>(() => Whitening.Fit([[1f, float.NaN], [0f, 1f], [1f, 1f]]));
            string notWhitening = Path.Combine(dir, "other.safetensors");
            Bert4Sharp.Checkpoints.SafetensorsWriter.Write(notWhitening, [Bert4Sharp.Checkpoints.TensorSource.From("x", torch.zeros(2))]);
            Assert.Contains("not a whitening file", Assert.Throws<InvalidDataException>(() => Whitening.Load(notWhitening)).Message);
        }
        finally { Directory.Delete(dir, true); }
    }

    [Fact]
    public void EncoderKeepsOrderBatchesInvariantlyAndCountsTruncation()
    {
        var (encoder, tokenizer) = TestPaths.TinyBertEncoder();
        encoder.eval();
        string Text(int n, int start) => new([.. Enumerable.Range(0, n).Select(i => (char)(0x4E00 + 200 + (start + i) % 700))]);
        string[] texts = [Text(5, 0), Text(40, 10), Text(1, 20), Text(100, 30), Text(12, 40), Text(7, 50)];
        var batched = new SentenceEncoder(encoder, tokenizer, new SentenceEncoderOptions { BatchSize = 4 }).Embed(texts, cancellation: TestContext.Current.CancellationToken);
        var single = new SentenceEncoder(encoder, tokenizer, new SentenceEncoderOptions { BatchSize = 1 });
        for (int i = 0; i < texts.Length; i++)
            Close.Assert(batched.Vectors[i], single.Encode([texts[i]])[0], $"text {i}: sorted, padded batch vs alone");
        Assert.Equal(1, batched.Truncated);                                          // 100 characters + 2 > 64 positions
        Assert.Equal([7, 42, 3, 64, 14, 9], batched.TokenCounts);
        foreach (var v in batched.Vectors) Close.Assert([Math.Sqrt(v.Sum(x => (double)x * x))], [1.0], "unit length");

        // Without normalisation the vector is the mean of the final states over real tokens (Pool.Apply).
        var raw = new SentenceEncoder(encoder, tokenizer, new SentenceEncoderOptions { Normalize = false }).Encode([texts[0]])[0];
        using (torch.no_grad())
        {
            using var batch = tokenizer.EncodeBatch([texts[0]]);
            using var output = encoder.Encode(batch.InputIds, batch.SegmentIds, batch.AttentionMask);
            Close.Assert(raw, Pool.Apply(Pooling.Mean, output, batch.AttentionMask)[0].data<float>().ToArray(), "mean pooling");
        }
        var empty = Assert.Throws<ArgumentException>(() => single.Embed([texts[0], "  "], cancellation: TestContext.Current.CancellationToken));
        Assert.Contains("text 1 is empty", empty.Message);
        Assert.Throws<ArgumentException>(() => single.Embed([], cancellation: TestContext.Current.CancellationToken));
        var wrong = Whitening.Fit([.. Enumerable.Range(0, 10).Select(i => new float[] { i, i * i % 7, 1 })]);
        Assert.Contains("hidden size is 64", Assert.Throws<ArgumentException>(() => single.With(wrong)).Message);
    }

    [Fact]
    public void SimCseTrainingLowersItsLossOnTheTinyEncoder()
    {
        var (encoder, tokenizer) = TestPaths.TinyBertEncoder();
        var sentences = Enumerable.Range(0, 64).Select(i => new string([.. Enumerable.Range(0, 6 + i % 9).Select(j => (char)(0x4E00 + 150 + (i * 13 + j * 7) % 800))])).ToList();
        var se = new SentenceEncoder(encoder, tokenizer, new SentenceEncoderOptions { Pooling = Pooling.Cls });
        string dir = Directory.CreateTempSubdirectory("b4s-simcse").FullName;
        try
        {
            var result = SentenceEmbeddingTraining.SimCse(se, sentences, new EmbeddingTrainingOptions
            {
                Output = dir, BatchSize = 16, Epochs = 6, LearningRate = 1e-3, WarmupSteps = 0, Progress = ProgressDisplay.None, Overwrite = true,
            });
            Assert.Equal(24, result.Steps);                                            // 4 full batches × 6 epochs
            double first = result.Losses.Take(4).Average(), last = result.Losses.TakeLast(4).Average();
            Assert.True(last < 0.8 * first, $"SimCSE loss {first:F3} → {last:F3}: it did not fall by a fifth");
            Assert.False(encoder.training, "the encoder is back in evaluation mode");
        }
        finally { Directory.Delete(dir, true); }
    }

    [Fact]
    public void NliTriplesPairEntailmentsWithContradictions()
    {
        var triples = SentenceEmbeddingTraining.Triples([
            ("p1", "e1", "entailment"), ("p1", "c1", "contradiction"), ("p1", "n1", "neutral"), ("p1", "e2", "entailment"),
            ("p2", "e3", "entailment"), ("p3", "c3", "contradiction")]);
        Assert.Equal([new NliTriple("p1", "e1", "c1"), new NliTriple("p1", "e2", "c1")], triples);
    }

    [Fact]
    public void StsReaderNamesTheBadLine()
    {
        string path = Path.GetTempFileName();
        try
        {
            File.WriteAllLines(path, ["一\t二\t1", "", "三\t四"]);
            Assert.Contains(":3: expected", Assert.Throws<InvalidDataException>(() => StsData.Read(path)).Message);
            File.WriteAllLines(path, ["一\t二\tx"]);
            Assert.Contains(":1: the score 'x'", Assert.Throws<InvalidDataException>(() => StsData.Read(path)).Message);
            File.WriteAllLines(path, ["一\t二\t4.5", "一\t三\t0"]);
            Assert.Equal([new StsPair("一", "二", 4.5), new StsPair("一", "三", 0)], StsData.Read(path));
            Assert.Equal(["一", "二", "三"], StsData.Sentences(StsData.Read(path)));
        }
        finally { File.Delete(path); }
    }
}
