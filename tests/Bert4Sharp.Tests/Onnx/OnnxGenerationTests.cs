using System.Text.Json;
using Bert4Sharp.Generation;
using Bert4Sharp.Models;
using Bert4Sharp.Onnx;
using Bert4Sharp.Onnx.Export;
using TorchSharp;
using static TorchSharp.torch;

namespace Bert4Sharp.Tests.Onnx;

/// <summary>Decoding on ONNX Runtime through the exported key/value cache: token for token what the TorchSharp engine (and transformers) produce.</summary>
public class OnnxGenerationTests
{
    static string Export(TransformerModel model)
    {
        string dir = Directory.CreateTempSubdirectory("b4s-onnx-lm").FullName;
        var result = OnnxExport.Save(model, Path.Combine(dir, "model.onnx"));
        Assert.Contains("present.0.key", result.Outputs);
        // Every cached graph here runs ONNX Runtime's attention kernel with past and present (rotary and UniLM included).
        Assert.Equal(model.Architecture.Layers, result.Operators.GetValueOrDefault("com.microsoft.MultiHeadAttention"));
        return dir;
    }

    [Fact]
    public void Gpt2GreedyAndBeamSearchOnOnnxRuntimeReproduceTransformersGenerate()
    {
        var model = Generation.Gpt2Tests.Load(TestPaths.Fixture("hf", "gpt2", "config.json"), TestPaths.Fixture("hf", "gpt2", "model.safetensors"));
        string dir = Export(model);
        try
        {
            using var lm = new OnnxCausalLanguageModel(dir);
            var (prompt, greedy, beam, max, eos) = Generation.Gpt2Tests.Expected();
            var options = new DecodingOptions { MaxNewTokens = max, EndId = eos, LengthPenalty = 1.0, EarlyStopping = true };
            Assert.Equal(greedy, AutoRegressiveDecoder.Greedy(lm, prompt, options));
            Assert.Equal(greedy, AutoRegressiveDecoder.Greedy(lm, prompt, options, useCache: false));
            Assert.Equal(beam, AutoRegressiveDecoder.BeamSearch(lm, prompt, 4, options));
            // An id past the vocabulary is named, as the TorchSharp engine names it (not ONNX Runtime's Gather failure).
            using var bad = torch.tensor(new long[] { 5, lm.VocabularySize }).unsqueeze(0);
            var e = Assert.Throws<ArgumentException>(() => lm.Logits(bad, null));
            Assert.StartsWith($"token id {lm.VocabularySize} is outside [0, {lm.VocabularySize}) (vocab_size of the model)", e.Message);
        }
        finally { Directory.Delete(dir, true); }
    }

    [Theory]
    [InlineData("bert", "hf/bert/config.json", Application.UniLM)]
    [InlineData("roformer", "hf/roformer/config.json", Application.UniLM)]
    [InlineData("roformer", "hf/roformer/config.json", Application.LanguageModel)]
    [InlineData("gpt2_ml", "ports/gpt2_ml/bert_config.json", Application.LanguageModel)]
    public void CachedStepsOnOnnxRuntimeEqualTheTorchEngine(string family, string config, Application application)
    {
        var model = OnnxExportTests.Model(family, config, application);
        string dir = Export(model);
        try
        {
            using var onnx = new OnnxCausalLanguageModel(dir);
            Assert.Contains("decoding graph", Assert.Throws<InvalidDataException>(() => new OnnxRuntimeEncoder(dir)).Message);   // not an encoder
            var torchLm = new CausalLanguageModel(model);
            // A 6-token source / prompt, then one token at a time through both caches: logits equal at every step.
            using var scope = torch.NewDisposeScope();
            using var g = torch.no_grad();
            using var a = torchLm.NewCache();
            using var b = onnx.NewCache();
            var ids = torch.randint(1, model.Config.VocabSize, [2, 10], dtype: ScalarType.Int64);
            var steps = new List<Tensor> { ids[.., ..6] };
            for (int t = 6; t < 10; t++) steps.Add(ids[.., t..(t + 1)]);
            foreach (var (step, i) in steps.Select((s, i) => (s, i)))
            {
                var want = torchLm.Logits(step, a);
                Close.Assert(onnx.Logits(step, b), want, $"{family} {application} step {i}", atol: Close.AtolAtScale(want, 2e-5), rtol: 1e-4);
            }
            Assert.Equal(10, b.Length);
            // Greedy decoding agrees token for token.
            var options = new DecodingOptions { MaxNewTokens = 8 };
            int[] prompt = [5, 17, 42, 99];
            Assert.Equal(AutoRegressiveDecoder.Greedy(torchLm, prompt, options), AutoRegressiveDecoder.Greedy(onnx, prompt, options));
        }
        finally { Directory.Delete(dir, true); }
    }

    [Theory]
    [InlineData("t5_v1_0")]
    [InlineData("t5_v1_1")]
    [InlineData("mt5")]
    public void T5EncoderAndCachedDecoderOnOnnxRuntimeReproduceTransformersGenerate(string fixture)
    {
        string src = TestPaths.Fixture("hf", fixture);
        var model = Generation.T5Tests.Load(Path.Combine(src, "config.json"), Path.Combine(src, "model.safetensors"));
        string dir = Directory.CreateTempSubdirectory("b4s-onnx-t5").FullName;
        try
        {
            var result = OnnxExport.Save(model, Path.Combine(dir, "model.onnx"));
            Assert.Equal(Path.Combine(dir, OnnxExport.DecoderFileName), result.DecoderPath);
            Assert.Equal(Path.Combine(dir, OnnxExport.CrossFileName), result.CrossPath);
            // Self-attention of both stacks in ONNX Runtime's kernel, the bucketed bias (and the decoder's causal mask) as
            // its additive bias; cross attention over the precomputed keys is written out.
            Assert.Equal(model.Architecture.Layers + model.Architecture.Decoder!.Layers, result.Operators.GetValueOrDefault("com.microsoft.MultiHeadAttention"));
            using (var scope = torch.NewDisposeScope())
                foreach (var (name, got, want) in OnnxExport.Compare(model, Path.Combine(dir, "model.onnx")))
                    Close.Assert(got, want, $"{fixture} encoder {name}", atol: Close.AtolAtScale(want, 2e-5), rtol: 1e-4);
            using var onnx = new OnnxSeq2SeqModel(dir);
            using var doc = JsonDocument.Parse(File.ReadAllBytes(Path.Combine(src, "generate.json")));
            List<int> L(string k) => doc.RootElement.GetProperty(k).EnumerateArray().Select(x => x.GetInt32()).ToList();
            using var lm = onnx.Prepare(L("input"));
            // Step by step, the decoder's logits equal the TorchSharp engine's.
            using (var scope = torch.NewDisposeScope())
            using (var g = torch.no_grad())
            {
                using var torchLm = new Seq2SeqLanguageModel(model, L("input"));
                using var a = torchLm.NewCache();
                using var b = lm.NewCache();
                var ids = torch.tensor(new long[] { 0, 5, 9, 3, 17, 2 }).unsqueeze(0);
                foreach (var step in new[] { ids[.., ..3], ids[.., 3..4], ids[.., 4..5], ids[.., 5..6] })
                {
                    var want = torchLm.Logits(step, a);
                    Close.Assert(lm.Logits(step, b), want, $"{fixture} decoder step", atol: Close.AtolAtScale(want, 2e-5), rtol: 1e-4);
                }
            }
            var options = new DecodingOptions { MaxNewTokens = doc.RootElement.GetProperty("max_new_tokens").GetInt32(), EndId = doc.RootElement.GetProperty("eos_token_id").GetInt32() };
            int start = doc.RootElement.GetProperty("decoder_start_token_id").GetInt32();
            Assert.Equal(L("greedy"), AutoRegressiveDecoder.Greedy(lm, [start], options));
            // Beams share the one input's cross-attention keys (batch 1, broadcast by the decoder graph).
            Assert.Equal(L("beam4"), AutoRegressiveDecoder.BeamSearch(lm, [start], 4, options));
            Assert.Equal(L("greedy"), AutoRegressiveDecoder.Greedy(lm, [start], options, useCache: false));
            // A directory without the cross-attention graph (an export from before it existed) is refused by name.
            File.Delete(Path.Combine(dir, OnnxExport.CrossFileName));
            var e = Assert.Throws<FileNotFoundException>(() => new OnnxSeq2SeqModel(dir));
            Assert.Contains(OnnxExport.CrossFileName, e.Message);
            Assert.Contains("export the model again", e.Message);
        }
        finally { Directory.Delete(dir, true); }
    }

    [Fact]
    public void AnEncoderGraphIsNotADecoder()
    {
        var model = OnnxExportTests.Model("bert", "hf/bert/config.json", Application.Encoder);
        string dir = Directory.CreateTempSubdirectory("b4s-onnx-enc").FullName;
        try
        {
            OnnxExport.Save(model, Path.Combine(dir, "model.onnx"));
            var e = Assert.Throws<InvalidDataException>(() => new OnnxCausalLanguageModel(dir));
            Assert.Contains("not a causal LM graph", e.Message);
        }
        finally { Directory.Delete(dir, true); }
    }
}
