using System.Text.Json;
using Bert4Sharp.Checkpoints;
using Bert4Sharp.Generation;
using Bert4Sharp.Layers;
using Bert4Sharp.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace Bert4Sharp.Tests.Generation;

/// <summary>T5 v1.0 / v1.1 and mT5 against Hugging Face transformers 5.17 (tests/fixtures/hf).</summary>
public class T5Tests
{
    /// <summary>T5 from a config (family t5; mT5 configs say mt5) and weights.</summary>
    internal static TransformerModel Load(string config, string checkpoint) =>
        TransformerModels.Build(config, checkpoint, TransformerConfig.Load(config).ModelType ?? "t5", Application.Seq2Seq);

    /// <summary>Encoder on input_ids/attention_mask, decoder on decoder_input_ids: logits, and both stacks' hidden states when lists are given.</summary>
    internal static Tensor Run(TransformerModel model, Checkpoint io, List<Tensor>? encoderHidden, List<Tensor>? decoderHidden)
    {
        var mask = io.ReadTensor("attention_mask");
        var encoded = model.Forward(new ModelInput(io.ReadTensor("input_ids")) { AttentionMask = mask, OutputHiddenStates = encoderHidden is not null });
        encoderHidden?.AddRange(encoded.HiddenStates!);
        var decoded = model.Decode(new DecoderInput(io.ReadTensor("decoder_input_ids"), encoded.LastHiddenState) { MemoryMask = mask, OutputHiddenStates = decoderHidden is not null });
        decoderHidden?.AddRange(decoded.HiddenStates!);
        return decoded.Logits!;
    }

    /// <summary>
    /// These fixtures use initializer_factor 8: the residual stream reaches 1e5 (hidden_states.1) and the logits 2e3,
    /// so float32 round-off follows each tensor's scale rather than each element (measured 0.14 at a value of 29 in
    /// t5_v1_1's encoder_hidden_states.1, max 1.0e5). The bound is atol 1e-5 of the tensor's largest magnitude.
    /// </summary>
    static void AssertAtScale(Tensor actual, Tensor expected, string what) => Close.Assert(actual, expected, what, atol: Close.AtolAtScale(expected));

    [Fact]
    public void RelativePositionBucketsMatchTheTable()
    {
        using var doc = JsonDocument.Parse(File.ReadAllBytes(TestPaths.Fixture("hf", "t5_buckets.json")));
        var rel = doc.RootElement.GetProperty("relative_position").EnumerateArray().Select(x => x.GetInt64()).ToArray();
        using var t = torch.tensor(rel);
        foreach (var (name, bidi) in new[] { ("bidirectional", true), ("causal", false) })
        {
            var expected = doc.RootElement.GetProperty(name).EnumerateArray().Select(x => x.GetInt64()).ToArray();
            using var got = RelativePositionBias.Bucket(t, bidi, 32, 128);
            Assert.Equal(expected, got.data<long>().ToArray());
        }
    }

    [Theory]
    [InlineData("t5_v1_0")]
    [InlineData("t5_v1_1")]
    [InlineData("mt5")]
    public void BertForKerasTensorFlowNamesLoadTheSameModel(string fixture)
    {
        // tests/fixtures/tf/<fixture>: the HF fixture's weights under bert4keras's Mesh TensorFlow names
        // (make_tf_generation_fixtures.py): kernels [in, out], relative bias [heads, buckets], mT5's rms_norm.
        string dir = TestPaths.Fixture("hf", fixture);
        var hf = Load(Path.Combine(dir, "config.json"), Path.Combine(dir, "model.safetensors"));
        var tf = Load(Path.Combine(dir, "config.json"), TestPaths.Fixture("tf", fixture, "model.ckpt"));
        var tfParams = tf.named_parameters().ToDictionary(p => p.name, p => p.parameter);
        // bert4keras's t5.1.1/mT5 read a separate head; these HF models tie it (unscaled), so it is the embedding.
        Assert.Equal(fixture != "t5_v1_0", tfParams.ContainsKey("lm_head.weight"));
        Assert.Equal(hf.named_parameters().Select(p => p.name).Order(), tfParams.Keys.Where(n => n != "lm_head.weight").Order());
        foreach (var (name, p) in hf.named_parameters())
            Assert.True(p.equal(tfParams[name]).all().item<bool>(), $"{fixture}: {name} differs between the HF and TF checkpoints");
        if (tfParams.TryGetValue("lm_head.weight", out var head)) Assert.True(head.equal(tfParams["embeddings.word.weight"]).all().item<bool>());
        using var io = Checkpoint.Open(Path.Combine(dir, "io.safetensors"));
        using var scope = torch.NewDisposeScope();
        using var g = torch.no_grad();
        var logits = Run(tf, io, null, null);
        AssertAtScale(logits, io.ReadTensor("logits"), $"{fixture} logits from the TF checkpoint");
    }

    [Theory]
    [InlineData("t5_v1_1")]
    [InlineData("mt5")]
    public void BertForKerasConfigSpellingWorksWithTheTensorFlowCheckpoint(string fixture)
    {
        // bert4keras's mT5 configs: no model_type, the gated feed-forward as ["gelu", "linear"], attention_head_size
        // for d_kv, no epsilon (1e-6), nothing about tying (the checkpoint's decoder/logits/kernel says untied).
        string config = Path.Combine(Path.GetTempPath(), $"b4s-t5-{Guid.NewGuid():N}.json");
        File.WriteAllText(config, """
            {"hidden_act": ["gelu", "linear"], "hidden_dropout_prob": 0.1, "hidden_size": 64, "initializer_range": 0.02,
             "intermediate_size": 128, "num_attention_heads": 4, "attention_head_size": 16, "num_hidden_layers": 2,
             "vocab_size": 1000, "relative_attention_num_buckets": 32, "attention_scale": false, "is_dropout": true}
            """);
        try
        {
            var model = Load(config, TestPaths.Fixture("tf", fixture, "model.ckpt"));
            Assert.Equal(1e-6, model.Config.LayerNormEps);
            Assert.Equal("gated-gelu", model.Config.FeedForwardProj);
            using var io = Checkpoint.Open(TestPaths.Fixture("hf", fixture, "io.safetensors"));
            using var scope = torch.NewDisposeScope();
            using var g = torch.no_grad();
            var logits = Run(model, io, null, null);
            AssertAtScale(logits, io.ReadTensor("logits"), $"{fixture} logits with the bert4keras config");
            File.WriteAllText(config, """{"hidden_act": ["gelu", "relu"], "hidden_size": 64, "num_attention_heads": 4, "vocab_size": 1000}""");
            var e = Assert.Throws<InvalidDataException>(() => TransformerConfig.Load(config));
            Assert.Contains("[activation, \"linear\"]", e.Message);
        }
        finally { File.Delete(config); }
    }

    [Theory]
    [InlineData("t5_v1_0")]
    [InlineData("t5_v1_1")]
    [InlineData("mt5")]
    public void LogitsHiddenStatesAndGenerateMatchTransformers(string fixture)
    {
        string dir = TestPaths.Fixture("hf", fixture);
        var model = Load(Path.Combine(dir, "config.json"), Path.Combine(dir, "model.safetensors"));
        using var io = Checkpoint.Open(Path.Combine(dir, "io.safetensors"));
        using (var scope = torch.NewDisposeScope())
        using (var g = torch.no_grad())
        {
            var encHidden = new List<Tensor>();
            var decHidden = new List<Tensor>();
            var logits = Run(model, io, encHidden, decHidden);
            for (int i = 0; i < encHidden.Count; i++)
                AssertAtScale(encHidden[i], io.ReadTensor($"encoder_hidden_states.{i}"), $"{fixture} encoder_hidden_states.{i}");
            for (int i = 0; i < decHidden.Count; i++)
                AssertAtScale(decHidden[i], io.ReadTensor($"decoder_hidden_states.{i}"), $"{fixture} decoder_hidden_states.{i}");
            AssertAtScale(logits, io.ReadTensor("logits"), $"{fixture} logits");
        }
        using var doc = JsonDocument.Parse(File.ReadAllBytes(Path.Combine(dir, "generate.json")));
        List<int> L(string k) => doc.RootElement.GetProperty(k).EnumerateArray().Select(x => x.GetInt32()).ToList();
        using var lm = new Seq2SeqLanguageModel(model, L("input"));
        var options = new DecodingOptions { MaxNewTokens = doc.RootElement.GetProperty("max_new_tokens").GetInt32(), EndId = doc.RootElement.GetProperty("eos_token_id").GetInt32() };
        int start = doc.RootElement.GetProperty("decoder_start_token_id").GetInt32();
        Assert.Equal(L("greedy"), AutoRegressiveDecoder.Greedy(lm, [start], options));
        Assert.Equal(L("greedy"), AutoRegressiveDecoder.Greedy(lm, [start], options, useCache: false));
        Assert.Equal(L("beam4"), AutoRegressiveDecoder.BeamSearch(lm, [start], 4, options));
    }

    [Theory]
    [InlineData("hf/t5_v1_1_untied/config.json", "hf/t5_v1_1_untied/model.safetensors")]   // HF names: lm_head.weight [vocab, d_model]
    [InlineData("hf/t5_v1_1_untied/config.json", "tf/t5_v1_1_untied/model.ckpt")]          // bert4keras t5.1.1: decoder/logits/kernel [d_model, vocab]
    [InlineData("hf/t5_v1_1_untied/config_v4.json", "tf/t5_v1_1_untied/model.ckpt")]       // a transformers 4 config: no scale_decoder_outputs
    [InlineData("hf/t5_v1_1/config.json", "hf/t5_v1_1_untied/model.safetensors")]          // the config says tied: the checkpoint's head wins
    public void AGenuinelySeparateHeadIsUsedUnscaled(string config, string checkpoint)
    {
        // tests/fixtures/hf/t5_v1_1_untied (make_t5_untied_head_fixtures.py): t5_v1_1 with a random lm_head unrelated to
        // the embedding; logits = transformers' final decoder state (after the final norm) @ lm_head.T, no rescale.
        string dir = TestPaths.Fixture("hf", "t5_v1_1_untied");
        var model = Load(TestPaths.Fixture([.. config.Split('/')]), TestPaths.Fixture([.. checkpoint.Split('/')]));
        Assert.False(model.Config.TieWordEmbeddings);
        using var io = Checkpoint.Open(Path.Combine(dir, "io.safetensors"));
        using var tied = Checkpoint.Open(TestPaths.Fixture("hf", "t5_v1_1", "io.safetensors"));
        using var scope = torch.NewDisposeScope();
        using var g = torch.no_grad();
        var hidden = new List<Tensor>();
        var logits = Run(model, io, null, hidden);
        AssertAtScale(hidden[^1], io.ReadTensor("decoder_hidden_states.2"), "final decoder state");
        AssertAtScale(logits, io.ReadTensor("logits"), $"{checkpoint} logits through the separate head");
        Close.AssertNot(logits, tied.ReadTensor("logits"), "logits vs the tied model's", atol: 1.0);
    }
}
