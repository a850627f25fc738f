namespace Bert4Sharp.Tests.Training;

using Bert4Sharp.Models;
using Bert4Sharp.Tests.Tokenization;
using Bert4Sharp.Tokenization;
using Bert4Sharp.Training;
using TorchSharp;
using static TorchSharp.torch;

/// <summary>Recompute, FGM, gradient penalty, VAT, noise and the MLM objective (serial: they seed the global torch RNG).</summary>
[Collection("serial")]
public sealed class TechniqueTests
{
    static Dictionary<string, Tensor> Gradients(TransformerModel model, bool recompute, Tensor ids, Tensor mask, long seed)
    {
        model.Recompute = recompute;
        model.train();
        model.zero_grad();
        torch.manual_seed(seed);                                   // same dropout draws in both runs
        using (var output = model.forward(ids, null, mask))
            (output.Logits!.square().mean() + output.LastHiddenState.sin().sum()).backward();
        return model.named_parameters().ToDictionary(p => p.name, p => p.parameter.grad!.clone());
    }

    [Theory]
    [InlineData("roformer_v2")]
    [InlineData("bert")]
    public void Recompute_gives_the_plain_gradients_with_dropout(string family)
    {
        torch.manual_seed(11);
        var config = new TransformerConfig
        {
            VocabSize = 300, HiddenSize = 32, NumHiddenLayers = 3, NumAttentionHeads = 4, IntermediateSize = 48,
            HiddenDropoutProb = 0.2, AttentionProbsDropoutProb = 0.2, MaxPositionEmbeddings = 64,
        };
        var model = TransformerModels.Build(config, null, ModelFamily.Get(family), Application.MaskedLM, new BuildOptions { Device = CPU }, out _);
        using var ids = torch.randint(0, 300, [3, 17]);
        using var mask = torch.ones(3, 17, dtype: ScalarType.Int64);
        mask[2, 12..] = torch.tensor(0L);
        var plain = Gradients(model, false, ids, mask, 5);
        var recomputed = Gradients(model, true, ids, mask, 5);
        foreach (var (name, g) in plain) Close.Assert(recomputed[name], g, $"{family} {name}: recomputed vs plain gradient", atol: 1e-6);
        // Dropout was really on: another seed changes the gradients.
        var other = Gradients(model, false, ids, mask, 6);
        Close.AssertNot(other["layers.0.ffn.inner.weight"], plain["layers.0.ffn.inner.weight"], "gradient under another dropout seed", atol: 1e-4);
    }

    [Fact]
    public void Gradient_penalty_matches_finite_differences()
    {
        // Penalised loss L(E) + ½ε‖∇L(E)‖² on a float64 problem; its gradient by double backward vs central differences.
        torch.manual_seed(3);
        var e = new TorchSharp.Modules.Parameter(torch.randn(6, 3, dtype: ScalarType.Float64));
        var w = torch.randn(3, 2, dtype: ScalarType.Float64);
        var ids = torch.tensor(new long[] { 0, 2, 5, 2 });
        Tensor Loss() => (e.index_select(0, ids).matmul(w).tanh().sum(1) - 0.3).square().sum();
        var gp = new GradientPenalty(e, 0.7);
        double Penalised()
        {
            var l = Loss();
            var g = torch.autograd.grad([l], [e], create_graph: false)[0];
            return l.ToDouble() + 0.5 * 0.7 * g.square().sum().ToDouble();
        }
        var total = gp.BeforeBackward(Loss());
        Close.Assert(total.ToDouble(), Penalised(), "penalised loss", atol: 1e-12, rtol: 1e-12);
        total.backward();
        var analytic = e.grad!.clone();
        var h = 1e-6;
        for (int i = 0; i < 6; i++)
            for (int j = 0; j < 3; j++)
            {
                using (torch.no_grad()) e[i, j] += h;
                double up = Penalised();
                using (torch.no_grad()) e[i, j] -= 2 * h;
                double down = Penalised();
                using (torch.no_grad()) e[i, j] += h;
                Close.Assert(analytic[i, j].ToDouble(), (up - down) / (2 * h), $"gradient entry ({i},{j}) vs central differences", atol: 1e-6, rtol: 0);
            }
    }

    [Fact]
    public void Fgm_adds_the_gradient_at_the_perturbed_embeddings_and_restores_them()
    {
        torch.manual_seed(4);
        var e = new TorchSharp.Modules.Parameter(torch.randn(5, 3, dtype: ScalarType.Float64));
        var ids = torch.tensor(new long[] { 1, 3, 3 });
        Tensor Loss() => e.index_select(0, ids).sin().sum();
        var before = e.detach().clone();
        Loss().backward();
        var g0 = e.grad!.clone();
        new FastGradientMethod(e, 0.5).AfterBackward(new StepResult(Loss()), () => new StepResult(Loss()));
        Assert.Equal(0.0, (e.detach() - before).abs().max().ToDouble());
        // Expected: g0 + ∇L(E + 0.5·g0/‖g0‖).
        var shifted = new TorchSharp.Modules.Parameter(before + 0.5 * g0 / (g0.norm() + 1e-8));
        shifted.index_select(0, ids).sin().sum().backward();
        Close.Assert(e.grad!, g0 + shifted.grad!, "FGM gradient vs written out", atol: 1e-12, rtol: 1e-12);
    }

    [Fact]
    public void Vat_adds_the_gradient_of_the_kl_at_the_adversarial_point_and_noise_is_undone()
    {
        torch.manual_seed(5);
        var e = new TorchSharp.Modules.Parameter(torch.randn(6, 4, dtype: ScalarType.Float64));
        var w = torch.randn(4, 3, dtype: ScalarType.Float64);
        var ids = torch.tensor(new long[] { 0, 2, 5, 2 });
        StepResult Step()
        {
            var logits = e.index_select(0, ids).matmul(w);
            return new StepResult(nn.functional.cross_entropy(logits, torch.tensor(new long[] { 0, 1, 2, 1 })), Output: logits);
        }
        var before = e.detach().clone();
        var first = Step();
        first.Loss.backward();
        var g0 = e.grad!.clone();
        torch.manual_seed(9);
        new VirtualAdversarialTraining(e, epsilon: 0.5, xi: 1e-3, weight: 2.0).AfterBackward(first, Step);
        Assert.Equal(0.0, (e.detach() - before).abs().max().ToDouble());
        // Manual: same probe (same seed), KL gradient, adversarial point, weighted KL gradient there.
        torch.manual_seed(9);
        var probe = torch.randn_like(e);
        probe = 1e-3 * probe / (probe.norm() + 1e-8);
        var clean = first.Output!.detach();
        Tensor Kl(Tensor at)
        {
            var lp = nn.functional.log_softmax(clean, -1);
            var lq = nn.functional.log_softmax(at.index_select(0, ids).matmul(w), -1);
            return (lp.exp() * (lp - lq)).sum(-1).mean();
        }
        var p1 = new TorchSharp.Modules.Parameter(before + probe);
        var g = torch.autograd.grad([Kl(p1)], [p1])[0];
        var p2 = new TorchSharp.Modules.Parameter(before + 0.5 * g / (g.norm() + 1e-8));
        (2.0 * Kl(p2)).backward();
        Close.Assert(e.grad!, g0 + p2.grad!, "VAT gradient vs written out", atol: 1e-10, rtol: 1e-10);
        Close.AssertNot(p2.grad!, torch.zeros_like(p2.grad!), "the VAT gradient (not trivially zero)", atol: 1e-6);

        var noise = new EmbeddingNoise(e, 0.1);
        noise.BeforeForward();
        Close.AssertNot(e.detach(), before, "embeddings with noise", atol: 1e-3);
        noise.AfterStep();
        Close.Assert(e.detach(), before, "embeddings after the noise is taken off", atol: 1e-12, rtol: 1e-12);
    }

    [Fact]
    public void Whole_word_masking_masks_words_at_the_rate_with_80_10_10()
    {
        var vocab = Path.Combine(Path.GetTempPath(), $"b4s-wwm-{Guid.NewGuid():N}.txt");
        TestPaths.WriteSyntheticVocabulary(vocab);
        try
        {
            var tokenizer = BertWordPieceTokenizer.FromFile(vocab);
            var mlm = new MaskedLanguageModeling(tokenizer);
            // Words of 1–4 tokens (word ids given), 400 sequences of 60 tokens.
            var rng = new Random(1);
            var seqs = Enumerable.Range(0, 400).Select(_ =>
            {
                var ids = new List<int> { tokenizer.StartId };
                var words = new List<int> { -1 };
                int w = 0;
                while (ids.Count < 59)
                {
                    int len = rng.Next(1, 5);
                    for (int k = 0; k < len && ids.Count < 59; k++) { ids.Add(200 + rng.Next(700)); words.Add(w); }
                    w++;
                }
                ids.Add(tokenizer.EndId); words.Add(-1);
                return new PretrainingSequence([.. ids], [.. words]);
            }).ToList();
            var (input, labels, attention) = mlm.Mask(seqs, new Random(2));
            var inp = input.data<long>().ToArray();
            var lab = labels.data<long>().ToArray();
            long chosen = 0, masked = 0, random = 0, kept = 0, wordsChosen = 0, wordsTotal = 0;
            for (int b = 0; b < seqs.Count; b++)
            {
                var s = seqs[b];
                foreach (var word in s.WordIds!.Where(x => x >= 0).Distinct())
                {
                    var positions = Enumerable.Range(0, s.Ids.Length).Where(i => s.WordIds![i] == word).ToList();
                    var flags = positions.Select(i => lab[b * 60 + i] != -100).Distinct().ToList();
                    Assert.Single(flags);                                      // all tokens of a word, or none
                    wordsTotal++;
                    if (flags[0]) wordsChosen++;
                }
                for (int i = 0; i < s.Ids.Length; i++)
                {
                    long l = lab[b * 60 + i];
                    if (l == -100) { Assert.Equal(s.Ids[i], inp[b * 60 + i]); continue; }
                    Assert.Equal(s.Ids[i], l);
                    chosen++;
                    if (inp[b * 60 + i] == tokenizer.MaskId) masked++;
                    else if (inp[b * 60 + i] == l) kept++;
                    else random++;
                }
                Assert.Equal(-100, lab[b * 60]);                               // [CLS] never chosen
            }
            double rate = (double)wordsChosen / wordsTotal;
            // Sampling rates, not float round-off: ~9,000 words and ~3,500 chosen tokens make one binomial σ about
            // 0.004 (rate) and 0.007 (shares), so these absolute windows are ±5σ or more around 15 % and 80/10/10.
            Assert.InRange(rate, 0.13, 0.17);
            Assert.InRange((double)masked / chosen, 0.76, 0.84);
            Assert.InRange((double)random / chosen, 0.07, 0.13);
            Assert.InRange((double)kept / chosen, 0.07, 0.13);
            Assert.Equal(seqs.Count * 60L, attention.sum().ToInt64());
        }
        finally { File.Delete(vocab); }
    }

    [Fact]
    public void Packing_fills_sequences_and_keeps_word_boundaries()
    {
        var segmenter = JiebaTestSupport.SegmenterOrSkip();
        var vocab = Path.Combine(Path.GetTempPath(), $"b4s-pack-{Guid.NewGuid():N}.txt");
        File.WriteAllLines(vocab, ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", .. "我来到北京清华大学今天天气很好".Distinct().Select(c => c.ToString())]);
        try
        {
            var tokenizer = BertWordPieceTokenizer.FromFile(vocab);
            var mlm = new MaskedLanguageModeling(tokenizer, segmenter);
            var packed = mlm.Pack(["我来到北京清华大学", "今天天气很好", "我来到北京清华大学"], 24).ToList();
            Assert.Equal(2, packed.Count);                                    // 1 + 9 + 1 + 6 + 1 = 18; the third does not fit
            Assert.Equal(18, packed[0].Ids.Length);
            var words = packed[0].WordIds!;
            // jieba: 我 / 来到 / 北京 / 清华大学 → tokens of 清华大学 share a word id.
            Assert.Equal(words[6], words[9]);
            Assert.NotEqual(words[5], words[6]);
            Assert.Equal(-1, words[10]);
            Assert.NotEqual(words[1], words[11]);                               // words of the second text are numbered after the first's
        }
        finally { File.Delete(vocab); }
    }
}

public sealed class LanguageModelingLossTests
{
    [Fact]
    public void Causal_and_unilm_losses_count_the_right_positions()
    {
        torch.manual_seed(2);
        var logits = torch.randn(2, 5, 7);
        var ids = torch.tensor(new long[] { 1, 4, 2, 6, 0, 1, 3, 3, 5, 2 }, [2, 5]);
        var mask = torch.tensor(new long[] { 1, 1, 1, 1, 0, 1, 1, 1, 1, 1 }, [2, 5]);
        var segments = torch.tensor(new long[] { 0, 0, 1, 1, 1, 0, 0, 0, 1, 1 }, [2, 5]);
        double Manual(IEnumerable<(int B, int T)> positions)
        {
            var lp = nn.functional.log_softmax(logits, -1);
            var list = positions.ToList();
            return -list.Sum(p => lp[p.B, p.T - 1, ids[p.B, p.T].ToInt64()].ToDouble()) / list.Count;
        }
        // Causal: predicted tokens are positions 1..4 except the padding at (0, 4).
        Close.Assert(LanguageModeling.CausalLoss(logits, ids, mask).ToDouble(), Manual([(0, 1), (0, 2), (0, 3), (1, 1), (1, 2), (1, 3), (1, 4)]), "causal loss",
            atol: Close.Float32Atol, rtol: Close.Float32Rtol);   // a float32 loss
        // UniLM: only predicted tokens in segment 1 and not padding.
        Close.Assert(LanguageModeling.UniLmLoss(logits, ids, segments, mask).ToDouble(), Manual([(0, 2), (0, 3), (1, 3), (1, 4)]), "UniLM loss",
            atol: Close.Float32Atol, rtol: Close.Float32Rtol);
    }

    [Fact]
    public void Pad_and_perplexity()
    {
        var (ids, mask) = LanguageModeling.Pad([[5, 6, 7], [8]], padId: 1);
        Assert.Equal(new long[] { 5, 6, 7, 8, 1, 1 }, ids.data<long>().ToArray());
        Assert.Equal(new long[] { 1, 1, 1, 1, 0, 0 }, mask.data<long>().ToArray());
        // Uniform logits over 40 tokens: perplexity 40, whatever the sequences; padding is not counted.
        double ppl = LanguageModeling.Perplexity(x => torch.zeros(x.shape[0], x.shape[1], 40), [[1, 2, 3], [4, 5], [6, 7, 8, 9]], batchSize: 2);
        Close.Assert(ppl, 40.0, "perplexity of uniform logits", atol: Close.Float32Atol, rtol: Close.Float32Rtol);   // exp of a float32 mean
        Assert.Throws<ArgumentException>(() => LanguageModeling.Pad([]));
    }
}
