using Bert4Sharp.Layers;
using Bert4Sharp.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace Bert4Sharp.Tests.Models;

/// <summary>
/// The research kit's defining properties on whole models: every kernel selectable from config, causal kernels equal
/// with and without a cache, padding invariance, relative positions, DeepNorm, saving and strict loading of kernel
/// parameters. (Each kernel against an independent reference: AttentionKernelReferenceTests.)
/// </summary>
public class ResearchKitTests
{
    static TransformerConfig Tiny(string? kernel = null, AttentionKernelOptions? options = null, string? position = null, string? placement = null, int layers = 2) => new()
    {
        VocabSize = 60, HiddenSize = 16, NumHiddenLayers = layers, NumAttentionHeads = 2, IntermediateSize = 32, MaxPositionEmbeddings = 64,
        HiddenDropoutProb = 0, AttentionProbsDropoutProb = 0, AttentionKernel = kernel, AttentionKernelOptions = options,
        AttentionPositionScheme = position, NormPlacementScheme = placement,
    };

    static TransformerModel Build(TransformerConfig c, string family = "roformer", Application app = Application.Encoder)
    {
        torch.manual_seed(7);
        return TransformerModels.Create(c, family, app, new BuildOptions { Device = torch.CPU });
    }

    static readonly AttentionKernelOptions Small = new() { Features = 32, Landmarks = 4, ChunkSize = 3, MaxLength = 64, Seed = 3 };

    [Theory]
    [InlineData("linear")]
    [InlineData("performer")]
    [InlineData("flash")]
    [InlineData("synthesizer_random")]
    [InlineData("synthesizer_dense")]
    [InlineData("synthesizer_mixture")]
    [InlineData("softmax")]
    public void CausalKernelsGiveTheSameLogitsWithAndWithoutACache(string kernel)
    {
        var model = Build(Tiny(kernel, Small), app: Application.LanguageModel);
        using var scope = torch.NewDisposeScope();
        using var g = torch.no_grad();
        var ids = torch.randint(1, 60, [2, 10]);
        var full = model.Forward(new ModelInput(ids)).Logits!;
        if (kernel == "flash")
        {
            // FLASH keeps no cache (it is told so); causality instead: changing later tokens leaves earlier logits alone.
            using var cache = model.NewCache();
            model.Forward(new ModelInput(ids.narrow(1, 0, 4)) { Cache = cache }).Dispose();
            Assert.Throws<NotSupportedException>(() => model.Forward(new ModelInput(ids.narrow(1, 4, 1)) { Cache = cache }));
            var changed = ids.clone();
            changed[.., 7..] = torch.randint(1, 60, [2, 3]);
            Close.Assert(model.Forward(new ModelInput(changed)).Logits!.narrow(1, 0, 7), full.narrow(1, 0, 7), "flash: positions before the change");
            return;
        }
        using var c2 = model.NewCache();
        var parts = new List<Tensor> { model.Forward(new ModelInput(ids.narrow(1, 0, 4)) { Cache = c2 }).Logits! };
        for (int t = 4; t < 10; t += 3) parts.Add(model.Forward(new ModelInput(ids.narrow(1, t, Math.Min(3, 10 - t))) { Cache = c2 }).Logits!);
        Close.Assert(torch.cat(parts, 1), full, $"{kernel}: cached vs whole", atol: 1e-4, rtol: 1e-4);
    }

    [Theory]
    [InlineData("linear")]
    [InlineData("performer")]
    [InlineData("synthesizer_random")]
    public void PaddingDoesNotChangeRealTokens(string kernel)
    {
        var model = Build(Tiny(kernel, Small));
        using var scope = torch.NewDisposeScope();
        using var g = torch.no_grad();
        var ids = torch.randint(1, 60, [1, 7]);
        var alone = model.Forward(new ModelInput(ids)).LastHiddenState;
        var padded = torch.cat([ids, torch.zeros([1, 4], dtype: ScalarType.Int64)], 1);
        var mask = torch.cat([torch.ones([1, 7], dtype: ScalarType.Int64), torch.zeros([1, 4], dtype: ScalarType.Int64)], 1);
        var out1 = model.Forward(new ModelInput(padded) { AttentionMask = mask }).LastHiddenState.narrow(1, 0, 7);
        Close.Assert(out1, alone, $"{kernel}: padded vs alone", atol: 1e-5, rtol: 1e-4);
    }

    [Fact]
    public void AnEncoderDecodersSelfAttentionTakesTheKernelAndItsCrossAttentionStaysSoftmax()
    {
        // T5's buckets are a score bias: a kernel that forms scores (a Synthesizer mixture) takes them; linear ones are refused.
        var c = TransformerConfig.Load(TestPaths.Fixture("hf", "t5_v1_1", "config.json")) with { AttentionKernel = "synthesizer_mixture", AttentionKernelOptions = Small };
        Assert.Throws<ArgumentException>(() => TransformerModels.Create(c with { AttentionKernel = "linear", AttentionKernelOptions = null }, "t5", Application.Seq2Seq, new BuildOptions { Device = torch.CPU }));
        torch.manual_seed(5);
        var t5 = TransformerModels.Create(c, "t5", Application.Seq2Seq, new BuildOptions { Device = torch.CPU });
        using var g = torch.no_grad();
        var memory = t5.Forward(new ModelInput(torch.randint(1, c.VocabSize, [2, 7]))).LastHiddenState;
        var ids = torch.randint(1, c.VocabSize, [2, 6]);
        var whole = t5.Decode(new DecoderInput(ids, memory)).Logits!;
        using var cache = t5.NewCache();
        var steps = Enumerable.Range(0, 6).Select(i => t5.Decode(new DecoderInput(ids.narrow(1, i, 1), memory) { Cache = cache }).Logits!).ToList();
        Close.Assert(torch.cat(steps, 1), whole, "t5 with Synthesizer self attention: step by step vs whole", atol: Close.AtolAtScale(whole, 1e-4), rtol: 1e-4);
        // The same decoder with softmax self attention gives other logits: the kernel is really in use.
        var plain = TransformerModels.Create(c with { AttentionKernel = null, AttentionKernelOptions = null }, "t5", Application.Seq2Seq, new BuildOptions { Device = torch.CPU });
        plain.load_state_dict(t5.state_dict().Where(kv => !kv.Key.Contains(".kernel.")).ToDictionary(), strict: false);
        Close.AssertNot(plain.Decode(new DecoderInput(ids, memory)).Logits!, whole, "softmax vs Synthesizer self attention", atol: 1e-3);
    }

    [Fact]
    public void KernelsThatNeverFormScoresRefuseWhatNeedsThem()
    {
        // UniLM's mask differs by query.
        var unilm = Build(Tiny("linear"), app: Application.UniLM);
        var ids = torch.randint(1, 60, [1, 6]);
        var seg = torch.tensor(new long[] { 0, 0, 0, 1, 1, 1 }).unsqueeze(0);
        var e = Assert.Throws<NotSupportedException>(() => unilm.Forward(new ModelInput(ids) { Segments = seg }));
        Assert.Contains("UniLM", e.Message);
        // ALiBi is a score bias.
        var a = Assert.Throws<ArgumentException>(() => Build(Tiny("performer", Small, position: "alibi")));
        Assert.Contains("score matrix", a.Message);
        // Nyström is bidirectional.
        var lm = Build(Tiny("nystrom", Small), app: Application.LanguageModel);
        Assert.Contains("bidirectional", Assert.Throws<NotSupportedException>(() => lm.Forward(new ModelInput(ids))).Message);
        // Config errors name the field and the choices.
        var bad = Assert.Throws<InvalidDataException>(() => TransformerConfig.FromJson("""{"vocab_size": 10, "attention_kernel": "flashy"}"""u8, "c.json"));
        Assert.Contains("c.json: unknown attention kernel 'flashy'; known: softmax", bad.Message);
        var typo = Assert.Throws<InvalidDataException>(() => TransformerConfig.FromJson("""{"vocab_size": 10, "attention_kernel": "performer", "attention_kernel_options": {"feature": 4}}"""u8, "c.json"));
        Assert.Contains("feature", typo.Message);
        Assert.Throws<InvalidDataException>(() => TransformerConfig.FromJson("""{"vocab_size": 10, "attention_position": "xl"}"""u8, "c.json"));
        Assert.Throws<InvalidDataException>(() => TransformerConfig.FromJson("""{"vocab_size": 10, "attention_kernel": "nystrom", "attention_kernel_options": {"conv_kernel": 4}}"""u8, "c.json"));
    }

    [Fact]
    public void KernelParametersAreSavedAndLoadedStrictly()
    {
        var model = Build(Tiny("synthesizer_mixture", Small with { Components = ["factorized", "dense", "softmax"] }));
        var names = model.named_parameters().Select(p => p.name).ToList();
        Assert.Contains("layers.0.attention.kernel.left", names);
        Assert.Contains("layers.1.attention.kernel.dense2_bias", names);
        Assert.Contains("layers.1.attention.kernel.mix", names);
        string dir = Path.Combine(Path.GetTempPath(), "b4s-kit-" + Guid.NewGuid().ToString("N"));
        try
        {
            using (torch.no_grad()) foreach (var (n, p) in model.named_parameters()) if (n.EndsWith(".mix")) p.add_(0.25);   // not the initial values
            model.SavePretrained(dir);
            var loaded = AutoModel.Load(dir, new AutoModelOptions { Build = new BuildOptions { Device = torch.CPU } });
            using var g = torch.no_grad();
            var ids = torch.randint(1, 60, [2, 9]);
            Close.Assert(loaded.Model.Forward(new ModelInput(ids)).LastHiddenState, model.Forward(new ModelInput(ids)).LastHiddenState, "reloaded synthesizer mixture");
            // A checkpoint without the kernel's tensors fails strict loading and names them.
            var plain = Tiny();
            var softmaxDir = dir + "-plain";
            Build(plain).SavePretrained(softmaxDir);
            var cfg = Path.Combine(softmaxDir, "config.json");
            File.WriteAllText(cfg, File.ReadAllText(cfg).Replace("\"vocab_size\"", "\"attention_kernel\": \"synthesizer_random\", \"vocab_size\""));
            var ex = Assert.ThrowsAny<Exception>(() => AutoModel.Load(softmaxDir, new AutoModelOptions { Build = new BuildOptions { Device = torch.CPU } }));
            Assert.Contains("bert4sharp.layers.0.attention.kernel.random", ex.Message);
            Directory.Delete(softmaxDir, true);
        }
        finally { if (Directory.Exists(dir)) Directory.Delete(dir, true); }
    }

    [Fact]
    public void PerformerRedrawsOnlyInTrainingAndItsFeaturesApproachSoftmax()
    {
        var k = new PerformerKernel(new KernelShape(2, 8, 8), new AttentionKernelOptions { Features = 16, RedrawInterval = 2, Seed = 1 });
        var before = k.Projection.clone();
        var call = new AttentionCall { Query = torch.randn(1, 2, 5, 8), Key = torch.randn(1, 2, 5, 8), Value = torch.randn(1, 2, 5, 8), Scale = 1 / Math.Sqrt(8) };
        k.eval();
        for (int i = 0; i < 4; i++) k.Attend(call);
        Assert.True((k.Projection == before).all().item<bool>(), "eval never redraws");
        k.train();
        k.Attend(call);
        Assert.True((k.Projection == before).all().item<bool>(), "first training call keeps the draw");
        k.Attend(call);
        Assert.False((k.Projection == before).all().item<bool>(), "the second training call redraws");
        Assert.False(k.named_parameters().Single().parameter.requires_grad);

        // Error against exact softmax attention falls as features grow (orthogonal features, float64, the unbiased estimator).
        torch.manual_seed(11);
        var q = torch.randn(1, 4, 64, 16, dtype: ScalarType.Float64) * 0.5;
        var kk = torch.randn(1, 4, 64, 16, dtype: ScalarType.Float64) * 0.5;
        var v = torch.randn(1, 4, 64, 16, dtype: ScalarType.Float64);
        var exact = (q.matmul(kk.transpose(-1, -2)) / 4).softmax(-1).matmul(v);
        double Error(int m)
        {
            var p = new PerformerKernel(new KernelShape(4, 16, 16), new AttentionKernelOptions { Features = m, Seed = 5, FeatureEpsilon = 0 });
            p.to(ScalarType.Float64);
            var o = p.Attend(new AttentionCall { Query = q, Key = kk, Value = v, Scale = 0.25 });
            return ((o - exact).norm() / exact.norm()).item<double>();
        }
        double e16 = Error(16), e4096 = Error(4096);
        Assert.True(e4096 < e16 / 4 && e4096 < 0.1, $"relative error with 16 features {e16:F4}, with 4096 {e4096:F4}");
    }

    [Fact]
    public void NystromWithAsManyLandmarksAsPositionsIsSoftmaxAndItsPseudoInverseIsOne()
    {
        torch.manual_seed(2);
        var q = torch.randn(2, 3, 12, 8, dtype: ScalarType.Float64);
        var k = torch.randn(2, 3, 12, 8, dtype: ScalarType.Float64);
        var v = torch.randn(2, 3, 12, 8, dtype: ScalarType.Float64);
        var kernel = new NystromKernel(new KernelShape(3, 8, 8), new AttentionKernelOptions { Landmarks = 12, ConvKernel = 0 });
        var exact = (q.matmul(k.transpose(-1, -2)) * 0.35).softmax(-1).matmul(v);
        Close.Assert(kernel.Attend(new AttentionCall { Query = q, Key = k, Value = v, Scale = 0.35 }), exact, "nystrom, L = T");
        var a = (torch.randn(4, 6, 6, dtype: ScalarType.Float64) * 0.3).softmax(-1);
        var z = NystromKernel.PseudoInverse(a, 20);
        Close.Assert(a.matmul(z).matmul(a), a, "A Z A = A after 20 iterations", atol: 1e-9, rtol: 1e-9);
    }

    [Fact]
    public void AlibiIsAFunctionOfDistanceAndDecodesWithACache()
    {
        Assert.Equal([0.5, 0.25, 0.125, 0.0625, 0.03125, 0.015625, 0.0078125, 0.00390625], PositionContext.AlibiSlopes(8));
        Assert.Equal(6, PositionContext.AlibiSlopes(6).Length);
        using (var pc = new PositionContext(5, 3, torch.CPU, ScalarType.Float32))
        {
            var b = pc.Alibi(4);                                                             // (1, 4, 5, 8)
            Assert.Equal(new long[] { 1, 4, 5, 8 }, b.shape);
            Close.Assert(b[0, .., 1..5, 1..8], b[0, .., 0..4, 0..7], "shifted diagonally");
            Assert.Equal(-3.0 / 16, b[0, 1, 0, 0].item<float>(), 6);                        // head 1 of 4: slope 2⁻⁴; query 0 sits at position 3 (after the past), key 0: distance 3
        }
        var model = Build(Tiny(position: "alibi") with { MaxPositionEmbeddings = 0 }, app: Application.LanguageModel);
        using var g = torch.no_grad();
        var ids = torch.randint(1, 60, [1, 8]);
        var full = model.Forward(new ModelInput(ids)).Logits!;
        using var cache = model.NewCache();
        var first = model.Forward(new ModelInput(ids.narrow(1, 0, 5)) { Cache = cache }).Logits!;
        var rest = model.Forward(new ModelInput(ids.narrow(1, 5, 3)) { Cache = cache }).Logits!;
        Close.Assert(torch.cat([first, rest], 1), full, "alibi cached vs whole", atol: 1e-5, rtol: 1e-4);
    }

    [Fact]
    public void RotaryScoresDependOnlyOnOffsetsIn1DAnd2D()
    {
        // A one-layer rotary model: shifting every position id by 10 leaves the output unchanged (RoPE is relative).
        var model = Sharpened(Build(Tiny(layers: 1) with { MaxPositionEmbeddings = 0 }));
        using var g = torch.no_grad();
        var ids = torch.randint(1, 60, [1, 6]);
        var plain = model.Forward(new ModelInput(ids)).LastHiddenState;
        Close.Assert(model.Forward(new ModelInput(ids) { PositionIds = torch.arange(6).unsqueeze(0) }).LastHiddenState, plain, "ids 0..5 = default");
        Close.Assert(model.Forward(new ModelInput(ids) { PositionIds = (torch.arange(6) + 10).unsqueeze(0) }).LastHiddenState, plain, "ids shifted by 10", atol: 1e-5, rtol: 1e-4);
        Close.AssertNot(model.Forward(new ModelInput(ids) { PositionIds = torch.tensor(new long[] { 0, 2, 1, 3, 4, 5 }).unsqueeze(0) }).LastHiddenState, plain, "ids permuted", atol: 1e-4);

        // 2D: a 2 × 3 grid; shifting rows and columns by constants leaves the output unchanged; swapping the axes does not.
        var grid = Sharpened(Build(Tiny(position: "rotary_2d", layers: 1) with { MaxPositionEmbeddings = 0, HiddenSize = 16, NumAttentionHeads = 2 }));
        var rc = torch.tensor(new long[] { 0, 0, 0, 1, 0, 2, 1, 0, 1, 1, 1, 2 }).view(1, 6, 2);
        var base2 = grid.Forward(new ModelInput(ids) { PositionIds = rc }).LastHiddenState;
        var shift = torch.tensor(new long[] { 4, 7 }).view(1, 1, 2);
        Close.Assert(grid.Forward(new ModelInput(ids) { PositionIds = rc + shift }).LastHiddenState, base2, "grid shifted by (4, 7)", atol: 1e-5, rtol: 1e-4);
        Close.AssertNot(grid.Forward(new ModelInput(ids) { PositionIds = rc.flip(2) }).LastHiddenState, base2, "rows and columns swapped", atol: 1e-4);
        var e = Assert.Throws<ArgumentException>(() => grid.Forward(new ModelInput(ids)));
        Assert.Contains("(B, T, 2)", e.Message);
    }

    /// <summary>Query/key weights ×30: a freshly initialised model attends almost uniformly, so positions would hardly show.</summary>
    static TransformerModel Sharpened(TransformerModel m)
    {
        using var g = torch.no_grad();
        foreach (var (n, p) in m.named_parameters()) if (n.EndsWith("attention.qkv.weight")) p.narrow(0, 0, 2 * m.Config.HiddenSize).mul_(30);
        return m;
    }

    [Fact]
    public void DeepNormScalesResidualsAndInitAndExportsNothingItCannot()
    {
        var deep = Build(Tiny(placement: "deepnorm", layers: 6), family: "bert");
        Assert.Equal(Math.Pow(12, 0.25), deep.Architecture.Layer.ResidualScale, 12);
        Assert.Equal(Math.Pow(48, -0.25), deep.Architecture.DeepNormBeta!.Value, 12);
        var p = deep.named_parameters().ToDictionary(x => x.name, x => x.parameter);
        var qkv = p["layers.0.attention.qkv.weight"];                                       // rows: q (16), k (16), v (16)
        double q = qkv.narrow(0, 0, 32).std().item<float>(), v = qkv.narrow(0, 32, 16).std().item<float>();
        Assert.InRange(v / q, 0.6 * Math.Pow(48, -0.25), 1.6 * Math.Pow(48, -0.25));
        var pre = Build(Tiny(placement: "pre"), family: "bert");
        Assert.Equal(NormPlacement.Pre, pre.Architecture.Layer.Placement);
        Assert.True(pre.Architecture.FinalNorm);
        using var g = torch.no_grad();
        var x = torch.randn(1, 4, 16);
        var block = new TransformerBlock(deep.Architecture.Layer);
        block.eval();
        // DeepNorm's block is LN(α·x + f(x)): with every weight zero, f(x) = 0 and the block is LN(α·x) = LN(x).
        foreach (var (n, w) in block.named_parameters()) if (!n.Contains("norm")) w.zero_();
        Close.Assert(block.forward(x, null), nn.functional.layer_norm(nn.functional.layer_norm(x, [16], eps: 1e-12), [16], eps: 1e-12), "zero branches: LN(LN(αx))");
        Close.Assert(Activations.Apply("gelu_sigmoid", x), x * torch.sigmoid(1.702 * x), "gelu_sigmoid");
    }

    [Fact]
    public void InitializersDrawBlockWeightsAtTheirStatedScales()
    {
        static Dictionary<string, double> Stds(TransformerModel m) => m.named_parameters().ToDictionary(x => x.name, x => (double)x.parameter.std().item<float>());
        var wide = Tiny(layers: 4) with { HiddenSize = 64, NumAttentionHeads = 4, IntermediateSize = 256, VocabSize = 500 };
        var normal = Stds(Build(wide, family: "bert"));
        var lecun = Stds(Build(wide with { InitializerScheme = "lecun" }, family: "bert"));
        var scaled = Stds(Build(wide with { InitializerScheme = "scaled_residual" }, family: "bert"));
        static void Near(double got, double want, string what) => Assert.True(Math.Abs(got - want) <= 0.06 * want, $"{what}: std {got:G4}, expected {want:G4} ± 6 %");
        foreach (int i in new[] { 0, 3 })
        {
            Near(lecun[$"layers.{i}.attention.qkv.weight"], 1 / 8.0, "lecun qkv (fan-in 64)");
            Near(lecun[$"layers.{i}.ffn.outer.weight"], 1 / 16.0, "lecun ffn outer (fan-in 256)");
            Near(scaled[$"layers.{i}.attention.output.weight"], 0.02 / Math.Sqrt(8), "scaled_residual attention output (N = 4)");
            Near(scaled[$"layers.{i}.ffn.outer.weight"], 0.02 / Math.Sqrt(8), "scaled_residual ffn outer");
            Near(scaled[$"layers.{i}.ffn.inner.weight"], 0.02, "scaled_residual leaves ffn inner");
            Near(normal[$"layers.{i}.attention.qkv.weight"], 0.02, "normal");
        }
        Near(lecun["embeddings.word.weight"], 0.02, "lecun leaves the embeddings");
        Assert.Equal(0.0, lecun["layers.0.attention_norm.weight"], 6);                               // norm gains stay all ones
        // LeCun keeps a branch's output at the input's scale: the attention-free FFN of a unit-variance input stays O(1).
        var model = Build(wide with { InitializerScheme = "lecun", HiddenAct = "relu" }, family: "bert");
        var ffn = model.named_parameters().ToDictionary(x => x.name, x => x.parameter);
        using var g = torch.no_grad();
        var x = torch.randn(512, 64);
        var h = nn.functional.relu(nn.functional.linear(x, ffn["layers.0.ffn.inner.weight"]));
        var y = nn.functional.linear(h, ffn["layers.0.ffn.outer.weight"]);
        Assert.InRange(y.std().item<float>(), 0.55, 0.85);                                          // √(½): ReLU halves the variance
        Assert.Throws<InvalidDataException>(() => TransformerConfig.FromJson("""{"vocab_size": 10, "initializer": "xavier"}"""u8, "c.json"));
    }

    [Fact]
    public void GatedAttentionUnitsTakeTheKernelSeamToo()
    {
        var c = Tiny("performer", Small) with { AttentionKeySize = 8, HiddenAct = "swish" };
        var model = Build(c, family: "gau_alpha");
        Assert.Contains(model.named_parameters(), p => p.name == "layers.0.gau.kernel.projection");
        using var g = torch.no_grad();
        var y = model.Forward(new ModelInput(torch.randint(1, 60, [2, 7]))).LastHiddenState;
        Assert.False(y.isnan().any().item<bool>());
        Assert.Throws<ArgumentException>(() => Build(Tiny(position: "alibi") with { AttentionKeySize = 8 }, family: "gau_alpha"));
    }
}
