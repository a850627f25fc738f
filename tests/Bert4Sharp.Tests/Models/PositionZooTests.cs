namespace Bert4Sharp.Tests.Models;

using Bert4Sharp.Layers;
using Bert4Sharp.Models;
using TorchSharp;
using static TorchSharp.torch;

/// <summary>
/// The position-encoding zoo as config keys (<c>attention_position</c>, <c>absolute_position</c>,
/// <c>max_relative_positions</c>) on any encoder-only or decoder-only family, with each relative scheme's defining
/// property: its score bias depends on content and the offset i − j only (and DeBERTa's is clipped at its span).
/// The formulas themselves are checked against the official code in AttentionKernelReferenceTests.
/// </summary>
public class PositionZooTests
{
    static TransformerConfig Tiny(string? position, string? absolute, int span = 3) => new()
    {
        VocabSize = 60, HiddenSize = 16, NumHiddenLayers = 2, NumAttentionHeads = 2, IntermediateSize = 32, MaxPositionEmbeddings = 16,
        HiddenDropoutProb = 0, AttentionProbsDropoutProb = 0, AttentionPositionScheme = position, AbsolutePositionScheme = absolute,
        MaxRelativePositions = span, RelativeAttentionNumBuckets = 8, RelativeAttentionMaxDistance = 16,
    };

    static TransformerModel Build(TransformerConfig c, Application app = Application.Encoder)
    {
        torch.manual_seed(11);
        var model = TransformerModels.Create(c, "bert", app, new BuildOptions { Device = torch.CPU });
        using (torch.no_grad()) foreach (var (n, p) in model.named_parameters()) if (n.Contains("relative", StringComparison.Ordinal)) p.normal_(0, 0.5);   // away from zero starts
        return model;
    }

    [Theory]
    [InlineData(null, "learned", "embeddings.position.weight")]
    [InlineData(null, "sinusoidal", null)]
    [InlineData(null, "hierarchical", "embeddings.position.weight")]
    [InlineData("rotary", "none", null)]
    [InlineData("alibi", "none", null)]
    [InlineData("typical_relative", "none", null)]
    [InlineData("t5_buckets", "none", "relative_bias.weight")]
    [InlineData("xl_relative", "none", "layers.1.attention.relative.content_bias")]
    [InlineData("deberta", "none", "relative_embeddings.weight")]
    public void EverySchemeBuildsFromAConfigRunsWithPaddingAndReloadsStrictly(string? position, string absolute, string? parameter)
    {
        var json = $$"""
            {"model_type": "bert", "vocab_size": 60, "hidden_size": 16, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 32,
             "max_position_embeddings": 16, "hidden_dropout_prob": 0, "attention_probs_dropout_prob": 0, "max_relative_positions": 3,
             "relative_attention_num_buckets": 8, "relative_attention_max_distance": 16,
             {{(position is null ? "" : $"\"attention_position\": \"{position}\",")}} "absolute_position": "{{absolute}}"}
            """;
        var model = Build(TransformerConfig.FromJson(System.Text.Encoding.UTF8.GetBytes(json), "zoo.json"));
        var names = model.named_parameters().Select(p => p.name).ToList();
        if (parameter is not null) Assert.Contains(parameter, names);
        Assert.Equal(absolute is "learned" or "hierarchical", names.Contains("embeddings.position.weight"));
        Assert.Equal(absolute switch { "learned" => 16, "hierarchical" => 256, _ => int.MaxValue }, model.MaxLength);
        string dir = Directory.CreateTempSubdirectory("b4s-zoo").FullName;
        try
        {
            using var g = torch.no_grad();
            var ids = torch.randint(1, 60, [2, 9]);
            var mask = torch.ones([2, 9], dtype: ScalarType.Int64);
            mask[1, 6..] = torch.tensor(0L);
            var before = model.Forward(new ModelInput(ids) { AttentionMask = mask }).LastHiddenState;
            Assert.False(before.isnan().any().item<bool>());
            // Padding leaves the real tokens alone: sequence 1 alone, unpadded, gives the same states.
            var alone = model.Forward(new ModelInput(ids.narrow(0, 1, 1).narrow(1, 0, 6))).LastHiddenState;
            Close.Assert(before.narrow(0, 1, 1).narrow(1, 0, 6), alone, $"{position}/{absolute}: padded vs alone", atol: 1e-5, rtol: 1e-4);
            model.SavePretrained(dir);
            var loaded = AutoModel.Load(dir, new AutoModelOptions { Build = new BuildOptions { Device = torch.CPU, Strict = true } });
            Close.Assert(loaded.Model.Forward(new ModelInput(ids) { AttentionMask = mask }).LastHiddenState, before, $"{position}/{absolute}: reloaded", atol: 1e-6, rtol: 1e-6);
        }
        finally { Directory.Delete(dir, true); }
    }

    [Theory]
    [InlineData("xl_relative")]
    [InlineData("deberta")]
    [InlineData("t5_buckets")]
    public void RelativeSchemesDecodeWithACacheAsTheWholeSequence(string position)
    {
        var model = Build(Tiny(position, "none"), Application.LanguageModel);
        using var scope = torch.NewDisposeScope();
        using var g = torch.no_grad();
        var ids = torch.randint(1, 60, [2, 10]);
        var full = model.Forward(new ModelInput(ids)).Logits!;
        using var cache = model.NewCache();
        var parts = new List<Tensor> { model.Forward(new ModelInput(ids.narrow(1, 0, 4)) { Cache = cache }).Logits! };
        for (int t = 4; t < 10; t += 3) parts.Add(model.Forward(new ModelInput(ids.narrow(1, t, Math.Min(3, 10 - t))) { Cache = cache }).Logits!);
        Close.Assert(torch.cat(parts, 1), full, $"{position}: cached vs whole", atol: 1e-5, rtol: 1e-4);
        // Causal: later tokens never reach earlier positions.
        var changed = ids.clone();
        changed[.., 7..] = torch.randint(1, 60, [2, 3]);
        Close.Assert(model.Forward(new ModelInput(changed)).Logits!.narrow(1, 0, 7), full.narrow(1, 0, 7), $"{position}: causal");
    }

    /// <summary>The same query and key at every position: a relative bias is then a function of i − j alone (Toeplitz).</summary>
    static void AssertToeplitz(Tensor bias, string what)
    {
        long tq = bias.shape[^2], tk = bias.shape[^1];
        for (long d = -(tq - 1); d < tk; d++)
        {
            var diagonal = bias.diagonal(d, -2, -1);                                          // (B, h, n): all pairs with j − i = d
            Close.Assert(diagonal, diagonal.narrow(-1, 0, 1).expand(diagonal.shape), $"{what}: offset {d}", atol: 1e-12, rtol: 1e-12);
        }
    }

    [Fact]
    public void XlBiasIsAFunctionOfTheOffsetAndContinuesAfterACache()
    {
        using var scope = torch.NewDisposeScope();
        torch.manual_seed(5);
        var xl = new XlRelativePosition(16, 2, 8);
        xl.to(ScalarType.Float64);
        using (torch.no_grad()) foreach (var (_, p) in xl.named_parameters()) p.normal_(0, 1);
        var q = torch.randn(1, 2, 1, 8, dtype: ScalarType.Float64).expand(1, 2, 9, 8);
        var k = torch.randn(1, 2, 1, 8, dtype: ScalarType.Float64).expand(1, 2, 9, 8);
        using var all = new PositionContext(9, 0, CPU, ScalarType.Float64);
        var whole = xl.Bias(q, k, all, 0.25);                                                   // (1, 2, 9, 9)
        AssertToeplitz(whole, "Transformer-XL bias");
        Assert.True(whole[0, 0, 8, 0].item<double>() != whole[0, 0, 7, 0].item<double>(), "the bias must vary with the offset");
        // Queries 6..8 after 6 cached positions: rows 6..8 of the whole.
        using var tail = new PositionContext(3, 6, CPU, ScalarType.Float64);
        Close.Assert(xl.Bias(q.narrow(2, 6, 3), k, tail, 0.25), whole.narrow(2, 6, 3), "after a cache", atol: 1e-12, rtol: 1e-12);
    }

    [Fact]
    public void DebertaBiasIsAFunctionOfTheClippedOffset()
    {
        using var scope = torch.NewDisposeScope();
        torch.manual_seed(6);
        int span = 3;
        var q = torch.randn(1, 2, 1, 8, dtype: ScalarType.Float64).expand(1, 2, 10, 8);
        var k = torch.randn(1, 2, 1, 8, dtype: ScalarType.Float64).expand(1, 2, 10, 8);
        var (rq, rk) = (torch.randn(2, 2 * span, 8, dtype: ScalarType.Float64), torch.randn(2, 2 * span, 8, dtype: ScalarType.Float64));
        using var positions = new PositionContext(10, 0, CPU, ScalarType.Float64);
        var index = positions.DisentangledIndex(span);
        Assert.Equal(0, index[0, 9].item<long>());                                              // i − j = −9 → clipped to −k → row 0
        Assert.Equal(2 * span - 1, index[9, 0].item<long>());                                  // i − j = 9 → clipped to k − 1
        Assert.Equal(span, index[4, 4].item<long>());
        var bias = DisentangledAttention.Bias(q, k, rq, rk, index, 0.2);
        AssertToeplitz(bias, "DeBERTa bias");
        // Beyond the span every offset reads the same row: the bias is flat there.
        Close.Assert(bias[0, .., 9, 0], bias[0, .., 9, 9 - (span - 1)], "clipped above", atol: 1e-12, rtol: 1e-12);
        Close.Assert(bias[0, .., 0, 9], bias[0, .., 0, span], "clipped below", atol: 1e-12, rtol: 1e-12);
    }

    [Fact]
    public void SchemesThatCannotRunAreRefusedWithTheirNames()
    {
        // Kernels that never form scores cannot take a score bias.
        var e = Assert.Throws<ArgumentException>(() => Build(Tiny("xl_relative", "none") with { AttentionKernel = "linear" }));
        Assert.Contains("XlRelative", e.Message);
        e = Assert.Throws<ArgumentException>(() => Build(Tiny("deberta", "none") with { AttentionKernel = "performer" }));
        Assert.Contains("Disentangled", e.Message);
        // A learned table needs rows; unknown names are refused when the config is read.
        e = Assert.Throws<ArgumentException>(() => Build(Tiny(null, "hierarchical") with { MaxPositionEmbeddings = 0 }));
        Assert.Contains("max_position_embeddings", e.Message);
        var bad = Assert.Throws<InvalidDataException>(() => TransformerConfig.FromJson("""{"vocab_size": 10, "absolute_position": "rope"}"""u8, "c.json"));
        Assert.Contains("absolute_position must be one of learned, sinusoidal, hierarchical, none", bad.Message);
        bad = Assert.Throws<InvalidDataException>(() => TransformerConfig.FromJson("""{"vocab_size": 10, "max_relative_positions": 0}"""u8, "c.json"));
        Assert.Contains("max_relative_positions", bad.Message);
        // T5 keeps its own buckets.
        e = Assert.Throws<ArgumentException>(() => TransformerModels.Create(new TransformerConfig { VocabSize = 20, HiddenSize = 8, NumHiddenLayers = 1, NumAttentionHeads = 2, IntermediateSize = 8, AttentionPositionScheme = "deberta" },
            "t5", Application.Seq2Seq, new BuildOptions { Device = torch.CPU }));
        Assert.Contains("T5", e.Message);
    }
}
