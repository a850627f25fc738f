using Bert4Sharp.Checkpoints;
using Bert4Sharp.Layers;
using Bert4Sharp.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace Bert4Sharp.Tests.Models;

/// <summary>Families Hugging Face lacks (ports of bert4keras, tests/reference/make_port_fixtures.py) and PyTorch's own block.</summary>
public class PortReferenceTests
{
    /// <summary>hidden_states.0 … count-1 within 1e-5 (relative to their magnitude when asked).</summary>
    internal static void AssertHiddenStates(ModelOutput o, Checkpoint io, int count, bool relative)
    {
        for (int i = 0; i < count; i++)
        {
            var e = io.ReadTensor($"hidden_states.{i}");
            double d = (o.HiddenStates![i] - e).abs().max().item<float>();
            Assert.True(d <= 1e-5 * (relative ? Math.Max(1, e.abs().max().item<float>()) : 1), $"hidden_states.{i}: {d:E2}");
        }
    }

    /// <summary>Logits within 1e-5 relative to their magnitude.</summary>
    internal static void AssertLogits(ModelOutput o, Checkpoint io)
    {
        var expected = io.ReadTensor("logits");
        double dl = (o.Logits! - expected).abs().max().item<float>();
        Assert.True(dl <= 1e-5 * Math.Max(1, expected.abs().max().item<float>()), $"logits: {dl:E2}");
    }

    [Fact]
    public void RoFormerV2MatchesThePortOfBert4keras()
    {
        string dir = TestPaths.Fixture("ports", "roformer_v2");
        // The directory's 'checkpoint' file names an absolute path from elsewhere: only its file name is used.
        var model = TransformerModels.Build(Path.Combine(dir, "bert_config.json"), dir, "roformer_v2", Application.MaskedLM,
            new BuildOptions { Device = torch.CPU });
        using var io = Checkpoint.Open(Path.Combine(dir, "io.safetensors"));
        using var scope = torch.NewDisposeScope();
        using var g = torch.no_grad();
        var o = model.Forward(io.ReadTensor("input_ids"), io.ReadTensor("token_type_ids"), io.ReadTensor("attention_mask"), outputHiddenStates: true);
        AssertHiddenStates(o, io, 4, relative: false);
        AssertLogits(o, io);
        // No biases and no norm parameters anywhere.
        Assert.DoesNotContain(model.named_parameters(), p => p.name.EndsWith(".bias") || p.name.Contains("norm"));
    }

    [Theory]
    [InlineData("config.json", "model.safetensors")]     // Hugging Face openai-gpt names, Conv1D [in, out], fused c_attn
    [InlineData("bert_config.json", "model.ckpt")]       // bert4keras TensorFlow names (gpt/transformer/layer_i/…)
    public void GptMatchesPyTorchPostNormLayersUnderACausalMask(string config, string checkpoint)
    {
        string dir = TestPaths.Fixture("ports", "gpt");
        var model = TransformerModels.Build(Path.Combine(dir, config), Path.Combine(dir, checkpoint), "gpt", Application.LanguageModel,
            new BuildOptions { Device = torch.CPU });
        Assert.Equal(4 * 64, model.Architecture.Layer.IntermediateSize);                 // openai-gpt's config implies 4 × n_embd
        Assert.DoesNotContain(model.named_parameters(), p => p.name.Contains("segment") || p.name.Contains("embeddings.norm"));
        using var io = Checkpoint.Open(Path.Combine(dir, "io.safetensors"));
        using (var scope = torch.NewDisposeScope())
        using (var g = torch.no_grad())
        {
            var o = model.Forward(io.ReadTensor("input_ids"), null, null, outputHiddenStates: true);
            AssertHiddenStates(o, io, 3, relative: false);
            AssertLogits(o, io);
        }
        // SavePretrained writes the HF layout back ([in, out] Conv1D weights); it loads into the same model.
        string saved = Path.Combine(Path.GetTempPath(), "b4s-gpt-" + Guid.NewGuid().ToString("N"));
        try
        {
            WeightLoader.SavePretrained(model, saved);
            using var ck = Checkpoint.Open(Path.Combine(saved, "model.safetensors"));
            Assert.Equal([64L, 192L], ck["transformer.h.0.attn.c_attn.weight"].Shape);
            var again = TransformerModels.Build(Path.Combine(saved, "config.json"), saved, "gpt", Application.LanguageModel, new BuildOptions { Device = torch.CPU });
            var before = model.named_parameters().ToDictionary(p => p.name, p => p.parameter);
            foreach (var (name, p) in again.named_parameters()) Assert.True(p.equal(before[name]).all().item<bool>(), name);
        }
        finally { Directory.Delete(saved, true); }
        var e = Assert.Throws<ArgumentException>(() => TransformerModels.Build(Path.Combine(dir, config), Path.Combine(dir, checkpoint), "gpt", Application.Encoder));
        Assert.Contains("built for Application.LanguageModel, got Application.Encoder", e.Message);
    }

    [Fact]
    public void Gpt2MlMatchesThePortOfBert4keras()
    {
        // bert4keras GPT2_ML's block (y = x + attention(x); x = LN1(y + FFN(LN0(y)))) with PyTorch's own attention,
        // loaded from bert4keras's TensorFlow names (newslm/layer00/...); the config says nothing of epsilon (1e-5 fixed).
        string dir = TestPaths.Fixture("ports", "gpt2_ml");
        var model = TransformerModels.Build(Path.Combine(dir, "bert_config.json"), Path.Combine(dir, "model.ckpt"), "gpt2_ml", Application.LanguageModel,
            new BuildOptions { Device = torch.CPU });
        using var io = Checkpoint.Open(Path.Combine(dir, "io.safetensors"));
        using var scope = torch.NewDisposeScope();
        using var g = torch.no_grad();
        var o = model.Forward(io.ReadTensor("input_ids"), null, null, outputHiddenStates: true);
        AssertHiddenStates(o, io, 3, relative: true);
        AssertLogits(o, io);
        // The same weights as a BERT-placed block would differ: the placement is what is being tested.
        var post = new TransformerModel(model.Family, model.Config, model.Architecture with { Layer = model.Architecture.Layer with { Placement = NormPlacement.Post } }, Application.LanguageModel);
        using (var ck = Checkpoint.Open(Path.Combine(dir, "model.ckpt"))) WeightLoader.Load(post, ck);
        post.eval();
        Assert.True((post.forward(io.ReadTensor("input_ids"), null, null).Logits! - io.ReadTensor("logits")).abs().max().item<float>() > 1e-2);
    }

    [Fact]
    public void NezhaMatchesThePortOfBert4keras()
    {
        string dir = TestPaths.Fixture("ports", "nezha");
        var model = TransformerModels.Build(Path.Combine(dir, "bert_config.json"), dir, "nezha", Application.Encoder, new BuildOptions { Device = torch.CPU });
        using var io = Checkpoint.Open(Path.Combine(dir, "io.safetensors"));
        using var scope = torch.NewDisposeScope();
        using var g = torch.no_grad();
        var ids = io.ReadTensor("input_ids");
        Assert.Equal(81, ids.shape[1]);   // longer than the ±64 clipping window
        var o = model.Forward(ids, io.ReadTensor("token_type_ids"), io.ReadTensor("attention_mask"), outputHiddenStates: true);
        AssertHiddenStates(o, io, 3, relative: false);
    }

    [Fact]
    public void BertBlockMatchesPyTorchTransformerEncoderLayer()
    {
        string dir = TestPaths.Fixture("ports", "torch_encoder_layer");
        using var state = Checkpoint.Open(Path.Combine(dir, "state.pt"));   // torch.save zip, read by Bert4Sharp
        var layer = new TransformerBlock(new BlockOptions(new AttentionOptions(64, 4, 16), 128, "gelu", NormKind.LayerNorm, 1e-5));
        var map = new Dictionary<string, string>
        {
            ["attention.qkv.weight"] = "self_attn.in_proj_weight", ["attention.qkv.bias"] = "self_attn.in_proj_bias",
            ["attention.output.weight"] = "self_attn.out_proj.weight", ["attention.output.bias"] = "self_attn.out_proj.bias",
            ["ffn.inner.weight"] = "linear1.weight", ["ffn.inner.bias"] = "linear1.bias", ["ffn.outer.weight"] = "linear2.weight",
            ["ffn.outer.bias"] = "linear2.bias", ["attention_norm.weight"] = "norm1.weight", ["attention_norm.bias"] = "norm1.bias",
            ["ffn_norm.weight"] = "norm2.weight", ["ffn_norm.bias"] = "norm2.bias",
        };
        using (torch.no_grad())
            foreach (var (name, p) in layer.named_parameters())
                using (var t = state.ReadTensor(map[name])) p.copy_(t);
        Assert.Equal(map.Count, layer.named_parameters().Count());
        layer.eval();
        using var io = Checkpoint.Open(Path.Combine(dir, "io.safetensors"));
        using var scope = torch.NewDisposeScope();
        using var g = torch.no_grad();
        var keep = io.ReadTensor("attention_mask").to(ScalarType.Bool).unsqueeze(1).unsqueeze(1);
        var bias = torch.zeros(keep.shape).masked_fill(keep.logical_not(), float.MinValue);
        var y = layer.forward(io.ReadTensor("x"), bias);
        var expected = io.ReadTensor("y");
        // PyTorch's fast path returns zeros at padded positions; compare the real ones (row 1 has 6).
        double d0 = (y[0] - expected[0]).abs().max().item<float>();
        double d1 = (y[1, ..6] - expected[1, ..6]).abs().max().item<float>();
        Assert.True(Math.Max(d0, d1) <= 1e-5, $"max |diff| {Math.Max(d0, d1):E2}");
        double slow = (y - io.ReadTensor("y_slow_path")).abs().max().item<float>();
        Assert.True(slow <= 1e-5, $"slow path: {slow:E2}");
    }
}

public class HierarchicalPositionTests
{
    [Fact]
    public void ReproducesTheTableBelowMaxAndExtendsBeyondIt()
    {
        var plain = TransformerModels.Build(TestPaths.Fixture("hf", "bert_mlm", "config.json"), TestPaths.Fixture("hf", "bert_mlm", "model.safetensors"),
            "bert", Application.MaskedLM, new BuildOptions { Device = torch.CPU });
        var extended = TransformerModels.Build(TestPaths.Fixture("hf", "bert_mlm", "config.json"), TestPaths.Fixture("hf", "bert_mlm", "model.safetensors"),
            "bert", Application.MaskedLM, new BuildOptions { Device = torch.CPU, HierarchicalPositionAlpha = 0.4 });
        using var scope = torch.NewDisposeScope();
        using var g = torch.no_grad();
        var emb = (Embeddings)extended.named_children().First(c => c.name == "embeddings").module;
        var table = (Embeddings)plain.named_children().First(c => c.name == "embeddings").module;
        // Below n = 64: the original rows (up to float rounding of the decomposition).
        double below = (emb.Positions(64, torch.CPU) - table.Positions(64, torch.CPU)).abs().max().item<float>();
        Assert.True(below < 1e-6, $"{below:E2}");
        // Beyond: 64² positions, position i·n + j = 0.4·u_i + 0.6·u_j.
        Assert.Equal(4096, emb.MaxLength);
        var p = emb.Positions(200, torch.CPU);
        var w = table.Positions(64, torch.CPU);
        var u = (w - 0.4 * w[0]) / 0.6;
        Assert.True((p[130] - (0.4 * u[2] + 0.6 * u[2])).abs().max().item<float>() < 1e-6);
        Assert.True((p[199] - (0.4 * u[3] + 0.6 * u[7])).abs().max().item<float>() < 1e-6);
        // The model runs on 100 tokens, where the plain one refuses.
        var ids = torch.randint(5, 999, [1, 100]);
        Assert.Equal(100, extended.forward(ids, null, null).LastHiddenState.shape[1]);
        Assert.Throws<ArgumentException>(() => plain.forward(ids, null, null));
        Assert.Throws<ArgumentException>(() => TransformerModels.Build(TestPaths.Fixture("hf", "roformer", "config.json"), TestPaths.Fixture("hf", "roformer", "model.safetensors"),
            "roformer", Application.MaskedLM, new BuildOptions { HierarchicalPositionAlpha = 0.4 }));
    }
}

public class GauAlphaTests
{
    [Fact]
    public void GauAlphaMatchesThePortOfTheReleasedCode()
    {
        string dir = TestPaths.Fixture("ports", "gau_alpha");
        var model = TransformerModels.Build(Path.Combine(dir, "bert_config.json"), dir, "gau_alpha", Application.MaskedLM, new BuildOptions { Device = torch.CPU });
        using var io = Checkpoint.Open(Path.Combine(dir, "io.safetensors"));
        using var scope = torch.NewDisposeScope();
        using var g = torch.no_grad();
        var o = model.Forward(io.ReadTensor("input_ids"), io.ReadTensor("token_type_ids"), io.ReadTensor("attention_mask"), outputHiddenStates: true);
        PortReferenceTests.AssertHiddenStates(o, io, 3, relative: false);
        PortReferenceTests.AssertLogits(o, io);
    }

    [Fact]
    public void AttentionKernelsNormaliseOverRealKeys()
    {
        foreach (var kernel in new[] { AttentionKernels.Softmax, AttentionKernels.SquaredRelu, AttentionKernels.SoftmaxPlus })
        {
            var gau = new GatedAttentionUnit(new GauOptions(16, 8, 8, "swish", kernel));
            using var scope = torch.NewDisposeScope();
            using var g = torch.no_grad();
            var x = torch.randn(1, 6, 16);
            var keep = torch.tensor(new long[] { 1, 1, 1, 1, 0, 0 }).to(ScalarType.Bool).view(1, 1, 1, 6);
            var bias = torch.zeros(1, 1, 1, 6).masked_fill(keep.logical_not(), float.MinValue);
            // Padding keys must not matter: changing the padded inputs leaves real outputs unchanged.
            var y1 = gau.Forward(x, AttentionContext.For(x, bias));
            var x2 = x.clone();
            x2[0, 4] = torch.randn(16);
            var y2 = gau.Forward(x2, AttentionContext.For(x2, bias));
            Assert.True((y1[0, ..4] - y2[0, ..4]).abs().max().item<float>() < 1e-5, kernel.Name);
        }
    }
}
