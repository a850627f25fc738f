using Bert4Sharp.Generation;
using Bert4Sharp.Models;
using TorchSharp;

namespace Bert4Sharp.Tests.Generation;

public class SamplingTests
{
    static Gpt2LanguageModel Lm() => new(Gpt2Model.Load(TestPaths.Fixture("hf", "gpt2", "config.json"), TestPaths.Fixture("hf", "gpt2", "model.safetensors")));
    static readonly int[] Prompt = [161, 929, 850, 522, 963, 797];

    [Fact]
    public void TopKOneAndTinyTopPAreGreedy()
    {
        var lm = Lm();
        var options = new DecodingOptions { MaxNewTokens = 12, EndId = 2 };
        var greedy = AutoRegressiveDecoder.Greedy(lm, Prompt, options);
        Assert.Equal(greedy, Sampler.Sample(lm, Prompt, options, new SamplingOptions { TopK = 1, Seed = 3 })[0]);
        Assert.Equal(greedy, Sampler.Sample(lm, Prompt, options, new SamplingOptions { TopP = 1e-9, Seed = 4 })[0]);
    }

    [Fact]
    public void SeededSamplingIsReproducibleAndVaried()
    {
        var lm = Lm();
        var options = new DecodingOptions { MaxNewTokens = 10 };
        var s = new SamplingOptions { TopP = 0.95, Temperature = 1.5, Seed = 7 };
        var a = Sampler.Sample(lm, Prompt, options, s, samples: 4);
        var b = Sampler.Sample(lm, Prompt, options, s, samples: 4);
        Assert.Equal(a, b);
        Assert.Equal(4, a.Count);
        Assert.True(a.Select(x => string.Join(",", x)).Distinct().Count() > 1);
        Assert.All(a, x => Assert.Equal(Prompt.Length + 10, x.Count));
    }

    [Fact]
    public void ProcessorsDoWhatTheySay()
    {
        using var scope = torch.NewDisposeScope();
        var logits = torch.tensor(new float[] { 2f, -1f, 5f, 0.5f, 3f });
        // Repetition penalty 2: positive logits halve, negative double, for tokens already present.
        var r = LogitsProcessing.Process(logits, [0, 1], 0, new SamplingOptions { RepetitionPenalty = 2 }, null).data<float>().ToArray();
        Assert.Equal(new[] { 1f, -2f, 5f, 0.5f, 3f }, r);
        // Top-2 keeps tokens 2 and 4; with KeepEndToken the end token (3) stays with its own logit.
        var k = LogitsProcessing.Process(logits, [], 5, new SamplingOptions { TopK = 2 }, 3).data<float>().ToArray();
        Assert.True(float.IsNegativeInfinity(k[3]) && k[2] == 5f && k[4] == 3f && float.IsNegativeInfinity(k[0]));
        var kc = LogitsProcessing.Process(logits, [], 5, new SamplingOptions { TopK = 2, KeepEndToken = true }, 3).data<float>().ToArray();
        Assert.Equal(0.5f, kc[3]);
        // Minimum length forbids the end token early.
        var m = LogitsProcessing.Process(logits, [], 1, new SamplingOptions { MinNewTokens = 2 }, 2).data<float>().ToArray();
        Assert.True(float.IsNegativeInfinity(m[2]));
        // No repeated bigram: after "4 1 … 4", token 1 is banned.
        var n = LogitsProcessing.Process(logits, [4, 1, 0, 4], 0, new SamplingOptions { NoRepeatNgramSize = 2 }, null).data<float>().ToArray();
        Assert.True(float.IsNegativeInfinity(n[1]));
        Assert.Equal(5f, n[2]);
    }

    [Fact]
    public void NoRepeatNgramHoldsOnRealDecoding()
    {
        var out1 = Sampler.Sample(Lm(), Prompt, new DecodingOptions { MaxNewTokens = 24 }, new SamplingOptions { TopK = 1, NoRepeatNgramSize = 2, Seed = 1 })[0];
        var bigrams = out1.Zip(out1.Skip(1)).ToList();
        Assert.Equal(bigrams.Count, bigrams.Distinct().Count());
    }

    [Fact]
    public async Task StreamingYieldsTheGreedyTokensAndStopsOnCancel()
    {
        var lm = Lm();
        var options = new DecodingOptions { MaxNewTokens = 12, EndId = 2 };
        var greedy = AutoRegressiveDecoder.Greedy(lm, Prompt, options).Skip(Prompt.Length).ToList();
        var streamed = new List<int>();
        await foreach (var t in Sampler.Stream(lm, Prompt, options, null, TestContext.Current.CancellationToken)) streamed.Add(t);
        Assert.Equal(greedy, streamed);
        using var cts = new CancellationTokenSource();
        var partial = new List<int>();
        await foreach (var t in Sampler.Stream(lm, Prompt, options, null, cts.Token))
        {
            partial.Add(t);
            if (partial.Count == 3) cts.Cancel();
        }
        Assert.Equal(3, partial.Count);
    }

    [Fact]
    public void BadSamplingOptions()
    {
        var lm = Lm();
        var o = new DecodingOptions { MaxNewTokens = 2 };
        Assert.Throws<ArgumentOutOfRangeException>(() => Sampler.Sample(lm, Prompt, o, new SamplingOptions { TopP = 0 }));
        Assert.Throws<ArgumentOutOfRangeException>(() => Sampler.Sample(lm, Prompt, o, new SamplingOptions { TopP = 1.5 }));
        Assert.Throws<ArgumentOutOfRangeException>(() => Sampler.Sample(lm, Prompt, o, new SamplingOptions { TopK = 0 }));
        Assert.Throws<ArgumentOutOfRangeException>(() => Sampler.Sample(lm, Prompt, o, new SamplingOptions { Temperature = 0 }));
        Assert.Throws<ArgumentOutOfRangeException>(() => Sampler.Sample(lm, Prompt, o, new SamplingOptions(), samples: 0));
    }
}
