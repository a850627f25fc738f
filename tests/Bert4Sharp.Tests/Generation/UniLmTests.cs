using Bert4Sharp.Generation;
using Bert4Sharp.Layers;
using Bert4Sharp.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace Bert4Sharp.Tests.Generation;

/// <summary>Encoders as language models (bert4keras application 'lm' and 'unilm') with a key/value cache.</summary>
public class UniLmTests
{
    static TransformerModel Build(string fixture, string family, Application app) =>
        TransformerModels.Build(TestPaths.Fixture("hf", fixture, "config.json"), TestPaths.Fixture("hf", fixture, "model.safetensors"), family, app,
            new BuildOptions { Device = torch.CPU });

    [Theory]
    [InlineData("bert_mlm", "bert")]
    [InlineData("roformer", "roformer")]
    public void UniLmMaskSeesTheSourceAndOnlyEarlierTargets(string fixture, string family)
    {
        var model = Build(fixture, family, Application.UniLM);
        using var scope = torch.NewDisposeScope();
        using var g = torch.no_grad();
        var ids = torch.tensor(new long[] { 1, 17, 250, 3, 999, 42, 7, 8 }).unsqueeze(0);
        var segs = torch.tensor(new long[] { 0, 0, 0, 0, 1, 1, 1, 1 }).unsqueeze(0);
        var a = model.Forward(ids, segs, null, false).LastHiddenState;
        var changedTarget = ids.clone(); changedTarget[0, 6] = 500;
        var b = model.Forward(changedTarget, segs, null, false).LastHiddenState;
        Close.Assert(b[0, ..6], a[0, ..6], "positions before a changed target");       // positions before it do not see it
        Close.AssertNot(b[0, 6..], a[0, 6..], "the changed target and after", atol: 1e-4);
        var changedSource = ids.clone(); changedSource[0, 3] = 500;
        var c = model.Forward(changedSource, segs, null, false).LastHiddenState;
        Close.AssertNot(c[0, ..3], a[0, ..3], "source positions before a changed source token", atol: 1e-4);  // the source is bidirectional
    }

    [Theory]
    [InlineData("bert_mlm", "bert", Application.UniLM)]
    [InlineData("roformer", "roformer", Application.UniLM)]
    [InlineData("bert_mlm", "bert", Application.LanguageModel)]
    public void CachedLogitsEqualUncachedOnes(string fixture, string family, Application app)
    {
        var model = Build(fixture, family, app);
        using var scope = torch.NewDisposeScope();
        using var g = torch.no_grad();
        var ids = torch.tensor(new long[] { 1, 17, 250, 3, 999, 42, 7, 8 }).unsqueeze(0);
        var segs = torch.tensor(new long[] { 0, 0, 0, 0, 1, 1, 1, 1 }).unsqueeze(0);
        var full = model.Forward(ids, segs, null, false).Logits!;
        using var cache = new KeyValueCache(model.Architecture.Layers);
        var parts = new List<Tensor> { model.Forward(new ModelInput(ids[.., ..4]) { Segments = segs[.., ..4], Cache = cache }).Logits! };
        for (int i = 4; i < 8; i++) parts.Add(model.Forward(new ModelInput(ids[.., i..(i + 1)]) { Segments = segs[.., i..(i + 1)], Cache = cache }).Logits!);
        Close.Assert(torch.cat(parts, 1), full, $"{fixture} {app}: cached vs uncached logits");
    }

    [Theory]
    [InlineData("gpt", "config.json", "model.safetensors")]
    [InlineData("gpt2_ml", "bert_config.json", "model.ckpt")]
    public void GptFamiliesDecodeTheSameWithAndWithoutTheCache(string family, string config, string checkpoint)
    {
        string dir = TestPaths.Fixture("ports", family);
        var lm = new CausalLanguageModel(TransformerModels.Build(Path.Combine(dir, config), Path.Combine(dir, checkpoint), family, Application.LanguageModel,
            new BuildOptions { Device = torch.CPU }));
        var options = new DecodingOptions { MaxNewTokens = 12 };
        var cached = AutoRegressiveDecoder.Greedy(lm, [5, 17, 250], options);
        Assert.Equal(15, cached.Count);
        Assert.Equal(cached, AutoRegressiveDecoder.Greedy(lm, [5, 17, 250], options, useCache: false));
        Assert.Equal(4 + 12, AutoRegressiveDecoder.BeamSearch(lm, [5, 17, 250, 9], 3, options).Count);
    }

    [Fact]
    public void UniLmGreedyDecodingRuns()
    {
        var lm = new CausalLanguageModel(Build("bert_mlm", "bert", Application.UniLM));
        var output = AutoRegressiveDecoder.Greedy(lm, [101, 17, 250, 102], new DecodingOptions { MaxNewTokens = 5, EndId = 102 });
        Assert.True(output.Count > 4 && output.Count <= 9);
        var beam = AutoRegressiveDecoder.BeamSearch(lm, [101, 17, 250, 102], 3, new DecodingOptions { MaxNewTokens = 5, EndId = 102 });
        Assert.True(beam.Count > 4);
        Assert.Throws<ArgumentException>(() => Build("bert_mlm", "bert", Application.MaskedLM).Forward(new ModelInput(torch.ones(1, 2, dtype: ScalarType.Int64)) { Cache = new KeyValueCache(3) }));
    }
}
