using Bert4Sharp.Generation;
using Bert4Sharp.Models;
using TorchSharp;

namespace Bert4Sharp.Tests.Generation;

public class SamplingTests
{
    static CausalLanguageModel Lm() => new(Gpt2Tests.Load(TestPaths.Fixture("hf", "gpt2", "config.json"), TestPaths.Fixture("hf", "gpt2", "model.safetensors")));
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

public class GenerateCliTests
{
    [Fact]
    public void GenerateJsonEqualsLibraryGreedy()
    {
        string dir = Directory.CreateTempSubdirectory("b4s-gpt").FullName;
        try
        {
            File.Copy(TestPaths.Fixture("hf", "gpt2", "config.json"), Path.Combine(dir, "config.json"));
            File.Copy(TestPaths.Fixture("hf", "gpt2", "model.safetensors"), Path.Combine(dir, "model.safetensors"));
            TestPaths.WriteSyntheticVocabulary(Path.Combine(dir, "vocab.txt"));
            var psi = new System.Diagnostics.ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true };
            foreach (var a in new[] { Path.Combine(AppContext.BaseDirectory, "b4s.dll"), "generate", "--json", "--max-new-tokens", "6", "--model", dir, "丁七" }) psi.ArgumentList.Add(a);
            using var p = System.Diagnostics.Process.Start(psi)!;
            string stdout = p.StandardOutput.ReadToEnd(), stderr = p.StandardError.ReadToEnd();
            p.WaitForExit();
            Assert.True(p.ExitCode == 0, stderr);
            using var doc = System.Text.Json.JsonDocument.Parse(stdout);
            var ids = doc.RootElement.GetProperty("ids").EnumerateArray().Select(x => x.GetInt32()).ToList();
            var lm = new CausalLanguageModel(Gpt2Tests.Load(Path.Combine(dir, "config.json"), dir));
            var start = new List<int> { 101, 0x4E01 - 0x4E00 + 104, 0x4E03 - 0x4E00 + 104 };   // [CLS] 丁 七
            var expected = AutoRegressiveDecoder.Greedy(lm, start, new DecodingOptions { MaxNewTokens = 6, EndId = 2 }).Skip(3).ToList();
            Assert.Equal(expected, ids);
        }
        finally { Directory.Delete(dir, true); }
    }
}
