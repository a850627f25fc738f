using Bert4Sharp.Layers;
using Bert4Sharp.Models;
using Bert4Sharp.Onnx;
using Bert4Sharp.Onnx.Export;
using TorchSharp;
using static TorchSharp.torch;

namespace Bert4Sharp.Tests.Onnx;

/// <summary>
/// <c>OnnxExport</c>: every family's graph, run by ONNX Runtime, equals the TorchSharp model on the same ids (padding
/// included); int8 stays within its stated budget; what cannot be exported is refused by name.
/// </summary>
public class OnnxExportTests
{
    /// <summary>
    /// A model of <paramref name="family"/> with the fixture's (small) config and random weights, every parameter moved
    /// off its initial value (norm gains off 1, biases off 0), so a swapped or missing weight shows.
    /// </summary>
    internal static TransformerModel Model(string family, string config, Application application, BuildOptions? options = null)
    {
        torch.manual_seed(7);
        var model = TransformerModels.Create(TransformerConfig.Load(TestPaths.Fixture(config.Split('/'))), family, application,
            (options ?? new BuildOptions()) with { Device = torch.CPU });
        using (torch.no_grad())
            foreach (var (_, p) in model.named_parameters()) p.add_(torch.randn_like(p) * 0.05);
        return model;
    }

    /// <summary>
    /// Exports, runs, compares every output. Bounds: ONNX Runtime's MLAS and libtorch's MKL sum the same products in a
    /// different order, so differences grow with depth and scale: atol 2e-5 of the output's largest magnitude, rtol 1e-4.
    /// </summary>
    internal static OnnxExportResult ExportAndCompare(TransformerModel model, OnnxExportOptions options, string what)
    {
        string dir = Directory.CreateTempSubdirectory("b4s-onnx").FullName;
        try
        {
            string path = Path.Combine(dir, "model.onnx");
            var result = OnnxExport.Save(model, path, options);
            using var scope = torch.NewDisposeScope();
            var pairs = OnnxExport.Compare(model, path);
            Assert.Equal(result.Outputs.Where(o => !o.StartsWith("present.", StringComparison.Ordinal)), pairs.Select(p => p.Output));
            foreach (var (name, got, want) in pairs)
                Close.Assert(got, want, $"{what}: {name}", atol: Close.AtolAtScale(want, 2e-5), rtol: 1e-4);
            return result;
        }
        finally { Directory.Delete(dir, true); }
    }

    [Theory]
    [InlineData("bert", "hf/bert/config.json", Application.Encoder, "last_hidden_state,pooler_output")]
    [InlineData("bert", "hf/bert/config.json", Application.PreTraining, "last_hidden_state,pooler_output,logits,seq_relationship_logits")]
    [InlineData("bert", "hf/bert/config.json", Application.LanguageModel, "last_hidden_state,logits")]
    [InlineData("bert", "hf/bert/config.json", Application.UniLM, "last_hidden_state,logits")]
    [InlineData("roberta", "hf/roberta/config.json", Application.MaskedLM, "last_hidden_state,logits")]
    [InlineData("albert", "hf/albert/config.json", Application.MaskedLM, "last_hidden_state,logits")]
    [InlineData("electra", "hf/electra/config.json", Application.Discriminator, "last_hidden_state,discriminator_logits")]
    [InlineData("roformer", "hf/roformer/config.json", Application.MaskedLM, "last_hidden_state,logits")]
    [InlineData("roformer_v2", "ports/roformer_v2/bert_config.json", Application.MaskedLM, "last_hidden_state,logits")]
    [InlineData("nezha", "ports/nezha/bert_config.json", Application.Encoder, "last_hidden_state,pooler_output")]
    [InlineData("gau_alpha", "ports/gau_alpha/bert_config.json", Application.MaskedLM, "last_hidden_state,logits")]
    [InlineData("gpt", "ports/gpt/config.json", Application.LanguageModel, "last_hidden_state,logits")]
    [InlineData("gpt2", "hf/gpt2/config.json", Application.LanguageModel, "last_hidden_state,logits")]
    [InlineData("gpt2_ml", "ports/gpt2_ml/bert_config.json", Application.LanguageModel, "last_hidden_state,logits")]
    public void EveryFamilysGraphEqualsTheTorchModel(string family, string config, Application application, string outputs)
    {
        var model = Model(family, config, application);
        foreach (bool fused in new[] { true, false })
        {
            var result = ExportAndCompare(model, new OnnxExportOptions { Fused = fused }, $"{family} {application} fused={fused}");
            // Causal LM and UniLM graphs also return the cache (checked step by step in OnnxGenerationTests).
            int presents = TransformerGraph.CanCache(model) ? 2 * model.Architecture.Layers : 0;
            Assert.Equal(outputs.Split(',').Concat(Enumerable.Range(0, presents).Select(i => $"present.{i / 2}.{(i % 2 == 0 ? "key" : "value")}")), result.Outputs);
            // The fused graph hands softmax attention (rotary included) to ONNX Runtime's kernels: Attention for a padding
            // (+ causal) mask without rotary, else MultiHeadAttention — with past and present in cached graphs, with UniLM's
            // mask as its bias. NEZHA's relative positions and GAU-α's single head are written out op by op.
            bool rotary = family.StartsWith("roformer", StringComparison.Ordinal);
            bool kernel = fused && family is not ("nezha" or "gau_alpha");
            bool attentionOp = kernel && !rotary && presents == 0 && application != Application.UniLM;
            Assert.Equal(attentionOp ? model.Architecture.Layers : 0, result.Operators.GetValueOrDefault("com.microsoft.Attention"));
            Assert.Equal(kernel && !attentionOp ? model.Architecture.Layers : 0, result.Operators.GetValueOrDefault("com.microsoft.MultiHeadAttention"));
            Assert.Equal(kernel && rotary ? 2 * model.Architecture.Layers : 0, result.Operators.GetValueOrDefault("com.microsoft.RotaryEmbedding"));
            // Post-norm LayerNorm blocks (BERT, RoBERTa, ALBERT, ELECTRA, RoFormer, NEZHA, GPT) add the residual inside the norm.
            var layer = model.Architecture.Layer;
            bool skip = fused && model.Architecture.Gau is null && layer.Placement == NormPlacement.Post && layer.Norm == NormKind.LayerNorm && layer.ResidualScale == 1;
            Assert.Equal(skip ? 2 * model.Architecture.Layers : 0, result.Operators.GetValueOrDefault("com.microsoft.SkipLayerNormalization"));
        }
    }

    [Fact]
    public void OptionsOfTheCoreExportToo()
    {
        // Hierarchical positions past the table, RealFormer's residual scores, the newest opset's Gelu.
        var hierarchical = Model("bert", "hf/bert/config.json", Application.Encoder, new BuildOptions { HierarchicalPositionAlpha = 0.4 });
        ExportAndCompare(hierarchical, new OnnxExportOptions(), "hierarchical positions");
        var realformer = Model("bert", "hf/bert/config.json", Application.MaskedLM, new BuildOptions { ResidualAttentionScores = true });
        ExportAndCompare(realformer, new OnnxExportOptions { Opset = OnnxExportOptions.MaxOpset, Fused = false }, "RealFormer, opset 21");
        // UniLM without a cache: its segment mask (padding included) as MultiHeadAttention's bias.
        var unilm = Model("bert", "hf/bert/config.json", Application.UniLM);
        var result = ExportAndCompare(unilm, new OnnxExportOptions { KeyValueCache = false }, "UniLM without a cache");
        Assert.Equal(unilm.Architecture.Layers, result.Operators.GetValueOrDefault("com.microsoft.MultiHeadAttention"));
        Assert.DoesNotContain("present.0.key", result.Outputs);
    }

    [Theory]
    [InlineData("bert", "hf/bert/config.json", Bert4Sharp.Tasks.Pooling.First)]      // the pooler
    [InlineData("roformer_v2", "ports/roformer_v2/bert_config.json", Bert4Sharp.Tasks.Pooling.First)]   // no pooler: [CLS]
    [InlineData("bert", "hf/bert/config.json", Bert4Sharp.Tasks.Pooling.Mean)]
    [InlineData("roformer", "hf/roformer/config.json", Bert4Sharp.Tasks.Pooling.Max)]
    public void AFineTunedClassifierExportsWithItsHead(string family, string config, Bert4Sharp.Tasks.Pooling pooling)
    {
        var encoder = Model(family, config, Application.Encoder);
        using var classifier = new Bert4Sharp.Tasks.SequenceClassifier(encoder, 5, pooling: pooling);
        classifier.eval();
        string dir = Directory.CreateTempSubdirectory("b4s-onnx-cls").FullName;
        try
        {
            string path = Path.Combine(dir, "model.onnx");
            var result = OnnxExport.Save(classifier, path);
            Assert.Contains("logits", result.Outputs);
            using var scope = torch.NewDisposeScope();
            var pairs = OnnxExport.Compare(encoder, path, classifierLogits: classifier.forward);
            Assert.Contains(pairs, p => p.Output == "logits");
            foreach (var (name, got, want) in pairs)
                Close.Assert(got, want, $"{family} {pooling}: {name}", atol: Close.AtolAtScale(want, 2e-5), rtol: 1e-4);
            // Behind the encoder seam the labels' logits are never taken for a pooler (RoFormerV2 has none).
            using var engine = new OnnxRuntimeEncoder(path);
            using var output = engine.Encode(torch.ones(2, 5, dtype: ScalarType.Int64), null, null);
            Assert.Equal(encoder.named_parameters().Any(p => p.name == "pooler.weight"), output.Pooled is not null);
            if (output.Pooled is not null) Assert.Equal(encoder.HiddenSize, output.Pooled.shape[1]);
        }
        finally { Directory.Delete(dir, true); }
        using var firstLast = new Bert4Sharp.Tasks.SequenceClassifier(encoder, 5, pooling: Bert4Sharp.Tasks.Pooling.FirstLastAverage);
        var e = Assert.Throws<NotSupportedException>(() => OnnxExport.Save(firstLast, Path.Combine(Path.GetTempPath(), "never.onnx")));
        Assert.Contains("first-last-average", e.Message);
    }

    [Fact]
    public void FillMaskRunsOnAnExportedMaskedLanguageModel()
    {
        string dir = Search.SearchCliTests.TinyModel("tiny-bert-mlm"), onnx = Path.Combine(dir, "onnx");
        var torchPipeline = TransformerPipeline.Load(dir, application: Application.MaskedLM);
        Directory.CreateDirectory(onnx);
        OnnxExport.Save(torchPipeline.Model, Path.Combine(onnx, "model.onnx"));
        using var encoder = new OnnxRuntimeEncoder(onnx);
        Assert.True(encoder.HasMaskedLanguageModelHead);
        var onnxPipeline = TransformerPipeline.Create(encoder, torchPipeline.Tokenizer);
        var want = torchPipeline.FillMask("一丁[MASK]七", 5);
        var got = onnxPipeline.FillMask("一丁[MASK]七", 5);
        Assert.Equal(want.Select(c => c.Token), got.Select(c => c.Token));
        Close.Assert(got.Select(c => c.Probability).ToArray(), want.Select(c => c.Probability).ToArray(), "fill-mask probabilities", atol: 1e-5, rtol: 1e-4);
        // An encoder-only graph has no head to fill with, and says how to get one.
        OnnxExport.Save(Model("bert", "hf/bert/config.json", Application.Encoder), Path.Combine(onnx, "model.onnx"));
        using var plain = new OnnxRuntimeEncoder(onnx);
        var e = Assert.Throws<ArgumentException>(() => TransformerPipeline.Create(plain, torchPipeline.Tokenizer).FillMask("一[MASK]", 5));
        Assert.Contains("--application mlm", e.Message);
    }

    [Fact]
    public void WhatCannotBeExportedIsRefusedByName()
    {
        var conditional = Model("bert", "hf/bert/config.json", Application.Encoder, new BuildOptions { Condition = new Bert4Sharp.Layers.ConditionOptions(8) });
        var e = Assert.Throws<NotSupportedException>(() => OnnxExport.Save(conditional, Path.Combine(Path.GetTempPath(), "never.onnx")));
        Assert.Contains("conditional LayerNorm", e.Message);
        Assert.False(File.Exists(Path.Combine(Path.GetTempPath(), "never.onnx")));
        var bert = Model("bert", "hf/bert/config.json", Application.Encoder);
        Assert.Throws<ArgumentOutOfRangeException>(() => OnnxExport.Save(bert, Path.Combine(Path.GetTempPath(), "never.onnx"), new OnnxExportOptions { Opset = 11 }));
    }

    [Fact]
    public void ResearchKitModelsExportWhatHasAnOnnxFormAndRefuseTheRestByName()
    {
        // DeepNorm (α·x in every residual) with the sigmoid GELU: standard ops, exported and equal to the torch model.
        var deepConfig = new TransformerConfig
        {
            VocabSize = 50, HiddenSize = 16, NumHiddenLayers = 3, NumAttentionHeads = 2, IntermediateSize = 32, HiddenAct = "gelu_sigmoid",
            NormPlacementScheme = "deepnorm",
        };
        torch.manual_seed(3);
        var deep = TransformerModels.Create(deepConfig, "bert", Application.Encoder, new BuildOptions { Device = torch.CPU });
        ExportAndCompare(deep, new OnnxExportOptions(), "deepnorm + gelu_sigmoid");
        // Position schemes from the zoo that the graph writer knows: T5 buckets and NEZHA tables on a BERT, fixed sinusoids.
        foreach (var (position, absolute) in new (string?, string?)[] { ("t5_buckets", "none"), ("typical_relative", "none"), (null, "sinusoidal") })
        {
            torch.manual_seed(4);
            var zoo = TransformerModels.Create(deepConfig with { AttentionPositionScheme = position, AbsolutePositionScheme = absolute, NormPlacementScheme = null },
                "bert", Application.Encoder, new BuildOptions { Device = torch.CPU });
            using (torch.no_grad()) foreach (var (n, p) in zoo.named_parameters()) if (n == "relative_bias.weight") p.normal_(0, 1);   // not the zero start
            ExportAndCompare(zoo, new OnnxExportOptions(), $"{position ?? "learned"} + {absolute} positions");
        }
        foreach (var (kernel, position, named) in new (string?, string?, string)[]
        {
            ("performer", null, "performer"), ("linear", null, "linear"), ("synthesizer_random", null, "synthesizer_random"), (null, "alibi", "Alibi"),
            (null, "rotary_2d", "Rotary2D"), (null, "xl_relative", "XlRelative"), (null, "deberta", "Disentangled"),
        })
        {
            var research = TransformerModels.Create(deepConfig with { AttentionKernel = kernel, AttentionPositionScheme = position, MaxPositionEmbeddings = position is null ? 512 : 0 },
                "bert", Application.Encoder, new BuildOptions { Device = torch.CPU });
            var e = Assert.Throws<NotSupportedException>(() => OnnxExport.Save(research, Path.Combine(Path.GetTempPath(), "never.onnx")));
            Assert.Contains(named, e.Message);
        }
    }

    [Fact]
    public void TheOnnxEngineRunsAnExportedModelBehindTheEncoderSeam()
    {
        var model = Model("roformer_v2", "ports/roformer_v2/bert_config.json", Application.Encoder);
        string dir = Directory.CreateTempSubdirectory("b4s-onnx").FullName;
        try
        {
            OnnxExport.Save(model, Path.Combine(dir, "model.onnx"));
            // CUDA asked for where this ONNX Runtime has none (the CPU package): the CPU runs it, and says why.
            using var encoder = new OnnxRuntimeEncoder(dir, new OnnxEncoderOptions { Cuda = true });
            Assert.Contains("running on the CPU", encoder.Warning);
            using var scope = torch.NewDisposeScope();
            var ids = torch.randint(1, model.Config.VocabSize, [3, 11], dtype: ScalarType.Int64);
            var mask = torch.ones(3, 11, dtype: ScalarType.Int64);
            mask[2, TensorIndex.Slice(5)] = torch.tensor(0L);
            using var g = torch.no_grad();
            using var want = model.Encode(ids, null, mask);
            using var got = encoder.Encode(ids, null, mask);
            Close.Assert(got.LastHiddenState, want.LastHiddenState, "ORT engine", atol: Close.AtolAtScale(want.LastHiddenState, 2e-5), rtol: 1e-4);
        }
        finally { Directory.Delete(dir, true); }
    }
}
