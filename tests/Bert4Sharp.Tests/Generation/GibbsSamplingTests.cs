namespace Bert4Sharp.Tests.Generation;

using Bert4Sharp.Generation;
using Bert4Sharp.Models;
using TorchSharp;
using static TorchSharp.torch;

/// <summary>
/// The MLM Gibbs sampler on a fake masked LM whose conditionals are exact: p(x₁ | x₂) and p(x₂ | x₁) of a known 3 × 3
/// joint π, so the chain's stationary distribution is π and the empirical pair frequencies must approach it.
/// </summary>
public sealed class GibbsSamplingTests
{
    const int Cls = 0, Sep = 1, Mask = 2;             // ids 3, 4, 5 are the three "words"
    static readonly double[,] Joint = { { 0.20, 0.05, 0.10 }, { 0.05, 0.25, 0.05 }, { 0.10, 0.05, 0.15 } };

    // Logits (1, T, 6): at the masked word position i, log π(·, x_other) over the words (the conditional up to a constant), and
    // −∞ elsewhere; positions other than 1 and 2 get uniform word logits (the sampler never resamples them in these tests
    // unless asked). The fake reads the other word from the input, so a sampler that ignored context would fail.
    sealed class JointMlm : IMaskedLanguageModel
    {
        public int Calls;
        public bool HasMaskedLanguageModelHead => true;
        public Tensor MaskedLanguageModelLogits(Tensor ids, Tensor? segments, Tensor? attentionMask)
        {
            Calls++;
            var x = ids[0].data<long>().ToArray();
            var logits = Enumerable.Repeat(float.NegativeInfinity, x.Length * 6).ToArray();
            for (int t = 0; t < x.Length; t++)
                for (int w = 0; w < 3; w++)
                {
                    double value = 0;
                    if (t is 1 or 2 && x[t] == Mask)
                    {
                        long other = x[t == 1 ? 2 : 1];
                        // The sampler masks one position at a time: the other must hold a word.
                        if (other < 3) throw new InvalidOperationException($"position {(t == 1 ? 2 : 1)} holds id {other} while {t} is sampled");
                        value = Math.Log(t == 1 ? Joint[w, other - 3] : Joint[other - 3, w]);
                    }
                    logits[t * 6 + 3 + w] = (float)value;
                }
            return torch.tensor(logits, [1, x.Length, 6]);
        }
    }

    static readonly GibbsStart Pair = new([Cls, 3, 4, Sep], [1, 2]);

    [Fact]
    public void Stationary_frequencies_match_the_joint_within_a_binomial_bound()
    {
        var options = new GibbsSamplingOptions { Steps = 30_100, BurnIn = 100, RecordEvery = 10, Seed = 7 };
        var result = GibbsSampler.Sample(new JointMlm(), Pair, Mask, options);
        Assert.Equal(3000, result.States.Count);
        var counts = new int[3, 3];
        foreach (var s in result.States) counts[s[1] - 3, s[2] - 3]++;
        int n = result.States.Count;
        for (int a = 0; a < 3; a++)
            for (int b = 0; b < 3; b++)
            {
                double p = Joint[a, b], f = (double)counts[a, b] / n;
                // 5 standard errors of a binomial proportion, with the sample size halved for the chain's remaining
                // autocorrelation after thinning by 10 (≈ 5 updates per position between records).
                double bound = 5 * Math.Sqrt(p * (1 - p) / (n / 2.0));
                Assert.True(Math.Abs(f - p) <= bound, $"π({a},{b}) = {p}, sampled {f:F4} (bound ±{bound:F4})");
            }
        // The product of the marginals differs from π by more than the bound at (0,0) and (1,1): the test would catch a
        // sampler that drew each position independently of the other.
        Assert.True(Math.Abs(0.35 * 0.35 - Joint[0, 0]) > 5 * Math.Sqrt(0.2 * 0.8 / (n / 2.0)));
    }

    [Fact]
    public void Same_seed_same_chain_and_positions_outside_the_span_unchanged()
    {
        // Six ids; only positions 1 and 2 are sampled, 3 ("prefix-like" fixed word) and the specials stay.
        var start = new GibbsStart([Cls, 3, 4, 5, Sep, Sep], [1, 2]);
        var options = new GibbsSamplingOptions { Steps = 200, BurnIn = 0, Seed = 11 };
        var a = GibbsSampler.Sample(new JointMlm(), start, Mask, options);
        var b = GibbsSampler.Sample(new JointMlm(), start, Mask, options);
        Assert.Equal(a.States.Count, b.States.Count);
        for (int i = 0; i < a.States.Count; i++) Assert.Equal(a.States[i], b.States[i]);
        var c = GibbsSampler.Sample(new JointMlm(), start, Mask, options with { Seed = 12 });
        Assert.NotEqual(a.States.Select(s => s[1] * 10 + s[2]), c.States.Select(s => s[1] * 10 + s[2]));
        foreach (var s in a.States.Append(a.Final))
        {
            Assert.Equal(new[] { Cls, 5, Sep, Sep }, new[] { s[0], s[3], s[4], s[5] });
            Assert.InRange(s[1], 3, 5);
            Assert.InRange(s[2], 3, 5);
        }
    }

    [Fact]
    public void Top1_sampling_settles_in_a_fixed_point_and_forbidden_ids_are_never_drawn()
    {
        var greedy = GibbsSampler.Sample(new JointMlm(), Pair, Mask, new GibbsSamplingOptions { Steps = 50, BurnIn = 10, TopK = 1, Seed = 1 });
        var f = greedy.Final;
        // Each word is the argmax of its conditional given the other: a fixed point of greedy resampling.
        Assert.Equal(Enumerable.Range(0, 3).MaxBy(w => Joint[w, f[2] - 3]) + 3, f[1]);
        Assert.Equal(Enumerable.Range(0, 3).MaxBy(w => Joint[f[1] - 3, w]) + 3, f[2]);
        Assert.All(greedy.States, s => Assert.Equal(f, s));

        var noFour = GibbsSampler.Sample(new JointMlm(), Pair, Mask, new GibbsSamplingOptions { Steps = 300, BurnIn = 2, ForbiddenIds = [4], Seed = 3 });
        Assert.All(noFour.States, s => { Assert.NotEqual(4, s[1]); Assert.NotEqual(4, s[2]); });
    }

    [Fact]
    public void Bad_options_and_starts_fail_clearly()
    {
        var mlm = new JointMlm();
        Assert.Contains("BurnIn", Assert.Throws<ArgumentException>(() => GibbsSampler.Sample(mlm, Pair, Mask, new() { Steps = 10, BurnIn = 10 })).Message);
        Assert.Contains("Temperature", Assert.Throws<ArgumentException>(() => GibbsSampler.Sample(mlm, Pair, Mask, new() { Temperature = 0 })).Message);
        Assert.Contains("TopK", Assert.Throws<ArgumentException>(() => GibbsSampler.Sample(mlm, Pair, Mask, new() { TopK = 0 })).Message);
        Assert.Contains("no position", Assert.Throws<ArgumentException>(() => GibbsSampler.Sample(mlm, new GibbsStart([Cls, Sep], []), Mask)).Message);
        Assert.Contains("position 7 is outside the 4 ids", Assert.Throws<ArgumentException>(() => GibbsSampler.Sample(mlm, new GibbsStart([Cls, 3, 4, Sep], [7]), Mask)).Message);
        Assert.Equal(0, mlm.Calls);
        Assert.Contains("Application.MaskedLM", Assert.Throws<ArgumentException>(() => new TransformerMaskedLanguageModel(TestPaths.TinyBertEncoder().Encoder)).Message);
    }
}
