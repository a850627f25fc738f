using Bert4Sharp.Layers;
using Bert4Sharp.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace Bert4Sharp.Tests.Models;

using Embeddings = Bert4Sharp.Layers.Embeddings;   // not the namespace Bert4Sharp.Embeddings

public class LayerOptionTests
{
    [Fact]
    public void GatedFeedForwardIsActOfTheFirstHalfTimesTheSecond()
    {
        var ffn = new FeedForward(8, 5, "gelu_new", useBias: true, gated: true);
        using var scope = torch.NewDisposeScope();
        using var g = torch.no_grad();
        var p = ffn.named_parameters().ToDictionary(x => x.name, x => x.parameter);
        Assert.Equal(new long[] { 10, 8 }, p["inner.weight"].shape);
        var x = torch.randn(2, 3, 8);
        var a = x.matmul(p["inner.weight"][..5].t()) + p["inner.bias"][..5];
        var b = x.matmul(p["inner.weight"][5..].t()) + p["inner.bias"][5..];
        double c = Math.Sqrt(2 / Math.PI);
        var h = 0.5 * a * (1 + torch.tanh(c * (a + 0.044715 * a.pow(3))));   // tanh-approximate GELU written out
        var expected = (h * b).matmul(p["outer.weight"].t()) + p["outer.bias"];
        Close.Assert(ffn.forward(x), expected, "gated feed-forward vs written out");
    }

    [Fact]
    public void SinusoidalPositionsFollowTheFormula()
    {
        using var scope = torch.NewDisposeScope();
        var s = Embeddings.Sinusoid(torch.arange(10, dtype: ScalarType.Float64), 8);
        Assert.Equal(new long[] { 10, 8 }, s.shape);
        Assert.Equal(new double[] { 0, 1, 0, 1, 0, 1, 0, 1 }, s[0].data<double>().ToArray());
        for (int j = 0; j < 4; j++)
        {
            double theta = 7 / Math.Pow(10000, 2.0 * j / 8);
            // float64 libm vs libtorch's sin/cos of the same float64 angle: a few ulps, so 1e-12 rather than the float64 defaults.
            Close.Assert(s[7, 2 * j].item<double>(), Math.Sin(theta), $"sin at [7, {2 * j}]", atol: 1e-12, rtol: 1e-12);
            Close.Assert(s[7, 2 * j + 1].item<double>(), Math.Cos(theta), $"cos at [7, {2 * j + 1}]", atol: 1e-12, rtol: 1e-12);
        }
        var emb = new Embeddings(new EmbeddingOptions(50, 8, 0, 0, null, 1e-12, SinusoidalPositions: true));
        emb.eval();
        var ids = torch.tensor(new long[] { 3, 4, 5 }).unsqueeze(0);
        using var g = torch.no_grad();
        var direct = emb.forward(ids, null);
        var word = emb.named_parameters().First(p => p.name == "word.weight").parameter;
        var expected = word.index_select(0, ids[0]) + s[..3].to(ScalarType.Float32);
        Close.Assert(direct[0], expected, "embedding + sinusoid");
    }

    [Fact]
    public void CustomPositionIds()
    {
        var model = TransformerModels.Build(TestPaths.Fixture("hf", "bert_mlm", "config.json"), TestPaths.Fixture("hf", "bert_mlm", "model.safetensors"),
            "bert", Application.MaskedLM, new BuildOptions { Device = torch.CPU });
        using var scope = torch.NewDisposeScope();
        using var g = torch.no_grad();
        var ids = torch.tensor(new long[] { 1, 17, 250, 3 }).unsqueeze(0);
        var plain = model.Forward(ids, null, null, false).LastHiddenState;
        var same = model.Forward(new ModelInput(ids) { PositionIds = torch.arange(4).unsqueeze(0) }).LastHiddenState;
        Assert.True((plain - same).abs().max().item<float>() == 0);
        var shifted = model.Forward(new ModelInput(ids) { PositionIds = (torch.arange(4) + 10).unsqueeze(0) }).LastHiddenState;
        Close.AssertNot(shifted, plain, "positions shifted by 10", atol: 1e-3);   // positions matter
        Assert.Throws<ArgumentException>(() => model.Forward(new ModelInput(ids) { PositionIds = torch.arange(3).unsqueeze(0) }));
        var rot = TransformerModels.Build(TestPaths.Fixture("hf", "roformer", "config.json"), TestPaths.Fixture("hf", "roformer", "model.safetensors"),
            "roformer", Application.MaskedLM, new BuildOptions { Device = torch.CPU });
        // Rotary models take custom position ids inside attention (bert4keras custom_position_ids), not (B, T, 2) grids.
        Close.Assert(rot.Forward(new ModelInput(ids) { PositionIds = torch.arange(4).unsqueeze(0) }).LastHiddenState, rot.Forward(ids, null, null, false).LastHiddenState, "roformer, ids 0..3");
        Assert.Throws<ArgumentException>(() => rot.Forward(new ModelInput(ids) { PositionIds = torch.zeros([1, 4, 2], dtype: ScalarType.Int64) }));
    }

    sealed class Pair : nn.Module
    {
        public Pair(TransformerModel a, TransformerModel b) : base("pair")
        {
            register_module(a.GetName(), a);
            register_module(b.GetName(), b);
        }
    }

    [Fact]
    public void PrefixesKeepTwoModelsApart()
    {
        var opts = new BuildOptions { Device = torch.CPU };
        var teacher = TransformerModels.Build(TestPaths.Fixture("hf", "bert_mlm", "config.json"), TestPaths.Fixture("hf", "bert_mlm", "model.safetensors"), "bert", Application.MaskedLM, opts with { Prefix = "teacher" });
        var student = TransformerModels.Build(TestPaths.Fixture("hf", "bert_mlm", "config.json"), TestPaths.Fixture("hf", "bert_mlm", "model.safetensors"), "bert", Application.MaskedLM, opts with { Prefix = "student" });
        var names = new Pair(teacher, student).named_parameters().Select(p => p.name).ToList();
        Assert.Contains("teacher.layers.0.attention.qkv.weight", names);
        Assert.Contains("student.layers.0.attention.qkv.weight", names);
        Assert.Equal(names.Count, names.Distinct().Count());
    }
}

public class RealFormerTests
{
    [Fact]
    public void ResidualScoresAccumulateAcrossLayers()
    {
        var model = TransformerModels.Build(TestPaths.Fixture("hf", "bert_mlm", "config.json"), TestPaths.Fixture("hf", "bert_mlm", "model.safetensors"),
            "bert", Application.MaskedLM, new BuildOptions { Device = torch.CPU, ResidualAttentionScores = true });
        var plain = TransformerModels.Build(TestPaths.Fixture("hf", "bert_mlm", "config.json"), TestPaths.Fixture("hf", "bert_mlm", "model.safetensors"),
            "bert", Application.MaskedLM, new BuildOptions { Device = torch.CPU });
        var p = model.named_parameters().ToDictionary(x => x.name, x => x.parameter);
        using var scope = torch.NewDisposeScope();
        using var g = torch.no_grad();
        var ids = torch.tensor(new long[] { 1, 17, 250, 3, 999, 42, 0, 0 }).unsqueeze(0);
        var mask = torch.tensor(new long[] { 1, 1, 1, 1, 1, 1, 0, 0 }).unsqueeze(0);
        var got = model.Forward(ids, null, mask, true);
        var reference = plain.Forward(ids, null, mask, true);
        // Layer 0 has no previous scores: identical to the plain model.
        Close.Assert(got.HiddenStates![1], reference.HiddenStates![1], "layer 0 with and without residual scores");
        // Written out for layer 1: scores₁ = q₁k₁ᵀ/√d + scores₀, from the raw parameters.
        Tensor Ln(Tensor x, string n) => nn.functional.layer_norm(x, [64], p[n + ".weight"], p[n + ".bias"], 1e-12);
        Tensor Lin(Tensor x, string n) => x.matmul(p[n + ".weight"].t()) + p[n + ".bias"];
        var bias = torch.zeros(1, 1, 1, 8).masked_fill(mask.view(1, 1, 1, 8) == 0, float.MinValue);
        Tensor? prev = null;
        var x = got.HiddenStates[0];
        for (int l = 0; l < 2; l++)
        {
            var qkv = Lin(x, $"layers.{l}.attention.qkv").view(1, 8, 3, 4, 16);
            var q = qkv.select(2, 0).transpose(1, 2);
            var k = qkv.select(2, 1).transpose(1, 2);
            var v = qkv.select(2, 2).transpose(1, 2);
            var s = q.matmul(k.transpose(-1, -2)) / 4.0;
            if (prev is not null) s = s + prev;
            prev = s;
            var o = (s + bias).softmax(-1).matmul(v).transpose(1, 2).reshape(1, 8, 64);
            x = Ln(x + Lin(o, $"layers.{l}.attention.output"), $"layers.{l}.attention_norm");
            var f = Lin(nn.functional.gelu(Lin(x, $"layers.{l}.ffn.inner")), $"layers.{l}.ffn.outer");
            x = Ln(x + f, $"layers.{l}.ffn_norm");
        }
        Close.Assert(got.HiddenStates[2], x, "layer 1 vs written out");
        Close.AssertNot(got.HiddenStates[2], reference.HiddenStates[2], "layer 1 with vs without residual scores", atol: 1e-3);
    }
}

public class ConditionalLayerNormTests
{
    [Fact]
    public void StartsAsThePlainModelAndShiftsGainAndBias()
    {
        var opts = new BuildOptions { Device = torch.CPU };
        var plain = TransformerModels.Build(TestPaths.Fixture("hf", "bert_mlm", "config.json"), TestPaths.Fixture("hf", "bert_mlm", "model.safetensors"), "bert", Application.MaskedLM, opts);
        var cond = TransformerModels.Build(TestPaths.Fixture("hf", "bert_mlm", "config.json"), TestPaths.Fixture("hf", "bert_mlm", "model.safetensors"), "bert", Application.MaskedLM,
            opts with { Condition = new ConditionOptions(5, HiddenUnits: 7, HiddenActivation: "relu") });
        using var scope = torch.NewDisposeScope();
        using var g = torch.no_grad();
        var ids = torch.tensor(new long[] { 1, 17, 250, 3 }).unsqueeze(0);
        var c = torch.randn(1, 5);
        var a = plain.forward(ids, null, null).LastHiddenState;
        var b = cond.Forward(new ModelInput(ids) { Condition = c }).LastHiddenState;
        Close.Assert(b, a, "zero-initialised condition vs the plain model");          // zero-initialised: no change
        Assert.Throws<ArgumentException>(() => cond.forward(ids, null, null));       // a condition is required
        Assert.Throws<ArgumentException>(() => plain.Forward(new ModelInput(ids) { Condition = c }));

        var norm = new Norm(4, NormKind.LayerNorm, 1e-12, new ConditionOptions(3));
        var p = norm.named_parameters().ToDictionary(x => x.name, x => x.parameter);
        p["condition_weight.weight"].copy_(torch.randn(4, 3));
        p["condition_bias.weight"].copy_(torch.randn(4, 3));
        var x = torch.randn(2, 6, 4);
        var cc = torch.randn(2, 3);
        var gamma = (1 + cc.matmul(p["condition_weight.weight"].t())).unsqueeze(1);
        var beta = cc.matmul(p["condition_bias.weight"].t()).unsqueeze(1);
        var expected = nn.functional.layer_norm(x, [4], null, null, 1e-12) * gamma + beta;
        Close.Assert(norm.Forward(x, cc), expected, "conditional layer norm vs written out");
    }
}
