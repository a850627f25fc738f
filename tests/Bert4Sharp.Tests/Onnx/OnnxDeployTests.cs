using Bert4Sharp.Embeddings;
using Bert4Sharp.Models;
using Bert4Sharp.Onnx;
using Bert4Sharp.Onnx.Export;
using Bert4Sharp.Tasks;
using Bert4Sharp.Tokenization;
using TorchSharp;

namespace Bert4Sharp.Tests.Onnx;

/// <summary>
/// The deploy path on real weights (all-MiniLM-L6-v2): loaded from its PyTorch-traced ONNX graph into TorchSharp,
/// exported again by Bert4Sharp, run by ONNX Runtime: the same sentence vectors as the original graph; int8 within budget.
/// </summary>
public class OnnxDeployTests
{
    static readonly string[] Texts =
    [
        "The quick brown fox jumps over the lazy dog.", "A man is playing a guitar on the stage.", "Someone is slicing an onion in the kitchen.",
        "The stock market fell sharply after the announcement.", "Bert4Sharp loads real checkpoints.", "How do I reset my password?",
        "The weather will be sunny tomorrow with light winds.", "Two dogs are running through a field of tall grass.",
        "Transformers changed natural language processing.", "She bought a new laptop for her studies.", "a",
        "Quantisation trades a little accuracy for a lot of speed on CPUs without native low-precision support.",
        "我们今天去公园散步。", "The committee postponed the vote until next week.", "Is this restaurant open on Sundays?",
        "Children are playing football in the park.",
    ];

    static float[][] Embed(string directory)
    {
        using var encoder = new OnnxRuntimeEncoder(directory, new OnnxEncoderOptions { Threads = 1 });
        var tokenizer = BertWordPieceTokenizer.FromFile(Path.Combine(directory, "vocab.txt"), new BertWordPieceOptions());
        return new SentenceEncoder(encoder, tokenizer, new SentenceEncoderOptions { Pooling = Pooling.Mean, Normalize = true }).Encode(Texts);
    }

    static string Export(TransformerModel model, OnnxExportOptions options, out OnnxExportResult result)
    {
        string dir = Directory.CreateTempSubdirectory("b4s-minilm-export").FullName;
        result = OnnxExport.Save(model, Path.Combine(dir, "model.onnx"), options);
        File.Copy(MiniLm.VocabPath, Path.Combine(dir, "vocab.txt"));
        File.WriteAllText(Path.Combine(dir, "config.json"), MiniLm.ConfigJson);
        return dir;
    }

    [Fact]
    public void ARealModelReExportedGivesTheOriginalGraphsVectorsAndInt8StaysWithinBudget()
    {
        var model = AutoModel.Load(MiniLm.Directory, new AutoModelOptions { Build = new BuildOptions { Device = torch.CPU } }).Model;
        string fp32 = Export(model, new OnnxExportOptions(), out var full), int8 = Export(model, new OnnxExportOptions { Int8 = true }, out var small);
        try
        {
            var original = Embed(MiniLm.Directory);
            var ours = Embed(fp32);
            for (int i = 0; i < Texts.Length; i++) Close.Assert(ours[i], original[i], $"fp32 export, text {i}");
            // int8 budget (weights per output channel, activations per tensor at run time): cosine to the fp32 vector
            // at least 0.98 for every text and 0.99 on average (measured on this set: see docs/deployment.md).
            var quantised = Embed(int8);
            var cosines = Enumerable.Range(0, Texts.Length).Select(i => SentenceEncoder.Cosine(quantised[i], ours[i])).ToList();
            Assert.True(cosines.Min() >= 0.98, $"int8 cosine to fp32: min {cosines.Min():F4} (texts: {string.Join(", ", cosines.Select(c => c.ToString("F4")))})");
            Assert.True(cosines.Average() >= 0.99, $"int8 cosine to fp32: mean {cosines.Average():F4}");
            // Every dense layer (6 × (fused qkv, output, 2 feed-forward) + the pooler) went to int8; embeddings stay float32.
            var q = small.Quantization!;
            Assert.Equal(6 * 4 + 1, q.MatMuls);
            Assert.True(full.Bytes - small.Bytes >= 0.7 * q.FloatBytesBefore, $"{full.Bytes} → {small.Bytes} bytes; dense float weights {q.FloatBytesBefore}");
            Assert.Equal(8, q.WeightBits);
            // 7-bit weights (for CPUs without VNNI) through the export options: the same layers, a bad width refused by name.
            string int7 = Export(model, new OnnxExportOptions { Int8 = true, Int8WeightBits = 7 }, out var seven);
            try { Assert.Equal((6 * 4 + 1, 7), (seven.Quantization!.MatMuls, seven.Quantization.WeightBits)); }
            finally { Directory.Delete(int7, true); }
            var bad = Assert.Throws<ArgumentOutOfRangeException>(() => OnnxExport.Save(model, Path.Combine(fp32, "bad.onnx"), new OnnxExportOptions { Int8 = true, Int8WeightBits = 6 }));
            Assert.Contains("weight bits must be 7 or 8, got 6", bad.Message);
        }
        finally { Directory.Delete(fp32, true); Directory.Delete(int8, true); }
    }

    [Fact]
    public void Int8RefusesAGraphWithoutDenseWeights()
    {
        var g = new global::Onnx.ModelProto { Graph = new global::Onnx.GraphProto() };
        var e = Assert.Throws<InvalidDataException>(() => OnnxQuantization.QuantizeDynamic(g));
        Assert.Contains("no MatMul", e.Message);
    }
}
