using System.Text.Json;
using Bert4Sharp.Checkpoints;
using Bert4Sharp.Generation;
using Bert4Sharp.Layers;
using Bert4Sharp.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace Bert4Sharp.Tests.Generation;

/// <summary>GPT-2 against Hugging Face transformers 5.17 (tests/fixtures/hf/gpt2): logits, hidden states, greedy and beam-4 generate.</summary>
public class Gpt2Tests
{
    static TransformerModel Model() => Load(TestPaths.Fixture("hf", "gpt2", "config.json"), TestPaths.Fixture("hf", "gpt2", "model.safetensors"));

    internal static TransformerModel Load(string config, string checkpoint) => TransformerModels.Build(config, checkpoint, "gpt2", Application.LanguageModel);

    /// <summary>Logits of ids, collecting the hidden states into <paramref name="hidden"/> when given; with a cache, decoding.</summary>
    internal static Tensor Forward(TransformerModel model, Tensor ids, KeyValueCache? cache, List<Tensor>? hidden)
    {
        var output = model.Forward(new ModelInput(ids) { Cache = cache, OutputHiddenStates = hidden is not null });
        if (hidden is not null) hidden.AddRange(output.HiddenStates!);
        return output.Logits!;
    }

    internal static (List<int> Prompt, List<int> Greedy, List<int> Beam, int Max, int Eos) Expected()
    {
        using var doc = JsonDocument.Parse(File.ReadAllBytes(TestPaths.Fixture("hf", "gpt2", "generate.json")));
        List<int> L(string k) => doc.RootElement.GetProperty(k).EnumerateArray().Select(x => x.GetInt32()).ToList();
        return (L("prompt"), L("greedy"), L("beam4"), doc.RootElement.GetProperty("max_new_tokens").GetInt32(), doc.RootElement.GetProperty("eos_token_id").GetInt32());
    }

    [Fact]
    public void LogitsAndHiddenStatesMatchTransformers()
    {
        var model = Model();
        using var io = Checkpoint.Open(TestPaths.Fixture("hf", "gpt2", "io.safetensors"));
        using var scope = torch.NewDisposeScope();
        using var g = torch.no_grad();
        var hidden = new List<Tensor>();
        var logits = Forward(model, io.ReadTensor("input_ids"), null, hidden);
        Assert.Equal(4, hidden.Count);
        for (int i = 0; i < 4; i++) Close.Assert(hidden[i], io.ReadTensor($"hidden_states.{i}"), $"hidden_states.{i}");
        // Logits: the final hidden state through the tied head's GEMM; atol at the logits' scale as for the other heads.
        var expected = io.ReadTensor("logits");
        Close.Assert(logits, expected, "logits", atol: Close.AtolAtScale(expected));
    }

    [Fact]
    public void BertForKerasTensorFlowNamesLoadTheSameModel()
    {
        // tests/fixtures/tf/gpt2: the HF fixture's weights under bert4keras's GPT2 names (make_tf_generation_fixtures.py),
        // q/k/v split, with Adam slots and global_step that loading must skip.
        var hf = Model();
        var tf = Load(TestPaths.Fixture("hf", "gpt2", "config.json"), TestPaths.Fixture("tf", "gpt2", "model.ckpt"));
        var tfParams = tf.named_parameters().ToDictionary(p => p.name, p => p.parameter);
        foreach (var (name, p) in hf.named_parameters())
            Assert.True(p.equal(tfParams[name]).all().item<bool>(), $"{name} differs between the HF and TF checkpoints");
        using var io = Checkpoint.Open(TestPaths.Fixture("hf", "gpt2", "io.safetensors"));
        using var scope = torch.NewDisposeScope();
        using var g = torch.no_grad();
        var expected = io.ReadTensor("logits");
        Close.Assert(tf.Logits(io.ReadTensor("input_ids")), expected, "logits from the TF checkpoint", atol: Close.AtolAtScale(expected));
        // A T5 checkpoint is not a GPT-2 one: the error names the missing variables.
        var e = Assert.Throws<CheckpointMismatchException>(() => Load(TestPaths.Fixture("hf", "gpt2", "config.json"), TestPaths.Fixture("tf", "t5_v1_0", "model.ckpt")));
        Assert.Contains("transformer.wte.weight", e.Message);
        Assert.Contains("none of the gpt2 names were found", e.Message);
        Assert.Contains("starts with 'decoder/block_000", e.Message);
    }

    [Fact]
    public void CachedLogitsEqualUncachedOnes()
    {
        var model = Model();
        using var io = Checkpoint.Open(TestPaths.Fixture("hf", "gpt2", "io.safetensors"));
        using var scope = torch.NewDisposeScope();
        using var g = torch.no_grad();
        var ids = io.ReadTensor("input_ids");                                  // (2, 10)
        var full = Forward(model, ids, null, null);
        using var cache = model.NewCache();
        var first = Forward(model, ids[.., ..4], cache, null);                  // a 4-token prefix, then one token at a time
        var parts = new List<Tensor> { first };
        for (int t = 4; t < 10; t++) parts.Add(Forward(model, ids[.., t..(t + 1)], cache, null));
        var incremental = torch.cat(parts, 1);
        Close.Assert(incremental, full, "cached vs uncached logits");
        Assert.Equal(10, cache.Length);
    }

    [Fact]
    public void GreedyAndBeamSearchReproduceTransformersGenerate()
    {
        var lm = new CausalLanguageModel(Model());
        var (prompt, greedy, beam, max, eos) = Expected();
        var options = new DecodingOptions { MaxNewTokens = max, EndId = eos, LengthPenalty = 1.0, EarlyStopping = true };
        Assert.Equal(greedy, AutoRegressiveDecoder.Greedy(lm, prompt, options));
        Assert.Equal(greedy, AutoRegressiveDecoder.Greedy(lm, prompt, options, useCache: false));
        Assert.Equal(beam, AutoRegressiveDecoder.BeamSearch(lm, prompt, 4, options));
        Assert.NotEqual(greedy, beam);   // the fixture was made so that the two differ
    }

    [Fact]
    public void BadInputs()
    {
        var model = Model();
        var lm = new CausalLanguageModel(model);
        Assert.Throws<ArgumentException>(() => AutoRegressiveDecoder.Greedy(lm, [], new DecodingOptions()));
        Assert.Throws<ArgumentException>(() => AutoRegressiveDecoder.Greedy(lm, [5], new DecodingOptions { EndId = 1000 }));
        Assert.Throws<ArgumentOutOfRangeException>(() => AutoRegressiveDecoder.BeamSearch(lm, [5], 0, new DecodingOptions()));
        var e = Assert.Throws<ArgumentException>(() => AutoRegressiveDecoder.Greedy(lm, Enumerable.Repeat(5, 60).ToList(), new DecodingOptions { MaxNewTokens = 10 }));
        Assert.Contains("n_positions = 64", e.Message);
    }
}

/// <summary>The GPT-2 block against PyTorch's own pre-norm TransformerEncoderLayer with a causal mask (Debian python3-torch 1.13).</summary>
public class Gpt2BlockOracleTests
{
    [Fact]
    public void MatchesNormFirstTransformerEncoderLayer()
    {
        string dir = TestPaths.Fixture("ports", "gpt2_block");
        var model = Gpt2Tests.Load(Path.Combine(dir, "config.json"), Path.Combine(dir, "model.safetensors"));
        using var io = Checkpoint.Open(Path.Combine(dir, "io.safetensors"));
        using var scope = torch.NewDisposeScope();
        using var g = torch.no_grad();
        var hidden = new List<Tensor>();
        var logits = Gpt2Tests.Forward(model, io.ReadTensor("input_ids"), null, hidden);
        Close.Assert(hidden[0], io.ReadTensor("hidden_states.0"), "embeddings");
        Close.Assert(hidden[1], io.ReadTensor("hidden_states.1"), "block + final norm");
        var expected = io.ReadTensor("logits");
        Close.Assert(logits, expected, "logits", atol: Close.AtolAtScale(expected));
    }
}
