using Bert4Sharp.Checkpoints;
using Bert4Sharp.Layers;
using Bert4Sharp.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace Bert4Sharp.Tests.Models;

using Embeddings = Bert4Sharp.Layers.Embeddings;   // not the namespace Bert4Sharp.Embeddings

/// <summary>Families Hugging Face lacks (ports of bert4keras, tests/reference/make_port_fixtures.py) and PyTorch's own block.</summary>
public class PortReferenceTests
{
    /// <summary>hidden_states.0 … count-1 as <see cref="Close"/> (float32 defaults).</summary>
    internal static void AssertHiddenStates(ModelOutput o, Checkpoint io, int count)
    {
        for (int i = 0; i < count; i++) Close.Assert(o.HiddenStates![i], io.ReadTensor($"hidden_states.{i}"), $"hidden_states.{i}");
    }

    /// <summary>
    /// Logits as <see cref="Close"/> with atol 1e-5 of the largest logit: they come from the final hidden state
    /// through the head's GEMM, so the round-off follows the logits' scale (measured 1.8e-5 at a logit of 0.42 on
    /// GPT2-ML, largest logit ~9, AMD EPYC with AVX2).
    /// </summary>
    internal static void AssertLogits(ModelOutput o, Checkpoint io)
    {
        var expected = io.ReadTensor("logits");
        Close.Assert(o.Logits!, expected, "logits", atol: Close.AtolAtScale(expected));
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
        AssertHiddenStates(o, io, 4);
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
            AssertHiddenStates(o, io, 3);
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
        AssertHiddenStates(o, io, 3);
        AssertLogits(o, io);
        // The same weights as a BERT-placed block would differ: the placement is what is being tested.
        var post = new TransformerModel(model.Family, model.Config, model.Architecture with { Layer = model.Architecture.Layer with { Placement = NormPlacement.Post } }, Application.LanguageModel);
        using (var ck = Checkpoint.Open(Path.Combine(dir, "model.ckpt"))) WeightLoader.Load(post, ck);
        post.eval();
        Close.AssertNot(post.forward(io.ReadTensor("input_ids"), null, null).Logits!, io.ReadTensor("logits"), "post-norm placement vs the reference", atol: 1e-2);
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
        AssertHiddenStates(o, io, 3);
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
        Close.Assert(y[0], expected[0], "row 0 vs the fast path");
        Close.Assert(y[1, ..6], expected[1, ..6], "row 1's real positions vs the fast path");
        Close.Assert(y, io.ReadTensor("y_slow_path"), "slow path");
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
        Close.Assert(emb.Positions(64, torch.CPU), table.Positions(64, torch.CPU), "positions below 64");
        // Beyond: 64² positions, position i·n + j = 0.4·u_i + 0.6·u_j.
        Assert.Equal(4096, emb.MaxLength);
        var p = emb.Positions(200, torch.CPU);
        var w = table.Positions(64, torch.CPU);
        var u = (w - 0.4 * w[0]) / 0.6;
        Close.Assert(p[130], 0.4 * u[2] + 0.6 * u[2], "position 130 = 2·64 + 2");
        Close.Assert(p[199], 0.4 * u[3] + 0.6 * u[7], "position 199 = 3·64 + 7");
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
        PortReferenceTests.AssertHiddenStates(o, io, 3);
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
            Close.Assert(y2[0, ..4], y1[0, ..4], $"{kernel.Name}: real positions after changing a padded one");
        }
    }
}
