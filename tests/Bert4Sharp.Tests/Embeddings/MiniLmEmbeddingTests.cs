using Bert4Sharp.Embeddings;
using Bert4Sharp.Models;
using Bert4Sharp.Onnx;
using Bert4Sharp.Tasks;
using Bert4Sharp.Tokenization;
using TorchSharp;

namespace Bert4Sharp.Tests.Embeddings;

/// <summary>
/// <see cref="SentenceEncoder"/> over the real all-MiniLM-L6-v2 on both engines (the TorchSharp model loaded from the
/// ONNX directory, and <see cref="OnnxRuntimeEncoder"/> on the graph) against ONNX Runtime running the original graph
/// one text at a time, unpadded: the sentence-transformers vector (mean over real tokens) of what the embedding bench
/// times.
/// </summary>
public sealed class MiniLmEmbeddingTests : IDisposable
{
    /// <summary>Mixed lengths (3 to ~40 tokens), so length-sorted batches pad and reorder.</summary>
    static readonly string[] Texts =
    [
        "Represents a collection of key/value pairs that are organized based on the hash code of the key.",
        "A cat.",
        "Gets the number of elements contained in the list, or zero when the list is empty; the count never exceeds the capacity, which grows by doubling when an element is added to a full list.",
        "The quick brown fox jumps over the lazy dog.",
        "Ok",
        "Provides methods for encoding and decoding sentences into vectors.",
        "Bert4Sharp loads real checkpoints.",
    ];

    readonly string dir;
    readonly LoadedModel loaded;
    readonly OnnxRuntimeEncoder ort;

    public MiniLmEmbeddingTests()
    {
        dir = Directory.CreateTempSubdirectory("b4s-minilm-embed").FullName;
        File.Copy(MiniLm.ModelPath, Path.Combine(dir, "model.onnx"));
        File.Copy(MiniLm.VocabPath, Path.Combine(dir, "vocab.txt"));
        File.WriteAllText(Path.Combine(dir, "config.json"), MiniLm.ConfigJson);
        loaded = AutoModel.Load(dir, new AutoModelOptions { Application = Application.Encoder, Build = new BuildOptions { Device = torch.CPU } });
        loaded.Model.eval();
        ort = new OnnxRuntimeEncoder(dir, new OnnxEncoderOptions { Threads = 1 });
    }

    public void Dispose()
    {
        ort.Dispose();
        loaded.Model.Dispose();
        Directory.Delete(dir, recursive: true);
    }

    BertWordPieceTokenizer Tokenizer => loaded.WordPiece!;

    IEnumerable<(string Name, SentenceEncoder Encoder)> Encoders(SentenceEncoderOptions options) =>
        [("TorchSharp engine", new SentenceEncoder(loaded.Model, Tokenizer, options)), ("ONNX Runtime engine", new SentenceEncoder(ort, Tokenizer, options))];

    /// <summary>The mean of ONNX Runtime's last_hidden_state over <paramref name="ids"/>, one text, no padding, summed in float64.</summary>
    static float[] Reference(IReadOnlyList<int> ids)
    {
        int t = ids.Count;
        var (hidden, shape) = MiniLm.RunOnnx([.. ids.Select(x => (long)x)], Enumerable.Repeat(1L, t).ToArray(), new long[t], 1, t);
        int h = (int)shape[2];
        var mean = new float[h];
        for (int j = 0; j < h; j++)
        {
            double s = 0;
            for (int k = 0; k < t; k++) s += hidden[k * h + j];
            mean[j] = (float)(s / t);
        }
        return mean;
    }

    [Fact]
    public void BothEnginesGiveTheGraphsMeanVectorsOneTextAtATime()
    {
        var expected = Texts.Select(t => Reference(Tokenizer.Encode(t).Ids)).ToArray();
        foreach (var (name, encoder) in Encoders(new SentenceEncoderOptions { Pooling = Pooling.Mean, Normalize = false, BatchSize = 3 }))
        {
            var result = encoder.Embed(Texts, cancellation: TestContext.Current.CancellationToken);
            Assert.Equal(0, result.Truncated);
            Assert.Equal(Texts.Select(t => Tokenizer.Encode(t).Count), result.TokenCounts);
            for (int i = 0; i < Texts.Length; i++) Close.Assert(result.Vectors[i], expected[i], $"{name}, text {i}: mean vector vs ONNX Runtime one text at a time");
        }
    }

    [Fact]
    public void BatchingAndSortingDoNotChangeTheVectors()
    {
        foreach (var (name, encoder) in Encoders(new SentenceEncoderOptions { BatchSize = 4 }))
        {
            var batched = encoder.Embed(Texts, cancellation: TestContext.Current.CancellationToken).Vectors;   // two batches of mixed lengths, padded
            var single = encoder.With(encoder.Options with { BatchSize = 1 });
            for (int i = 0; i < Texts.Length; i++)
            {
                var alone = single.Embed([Texts[i]], cancellation: TestContext.Current.CancellationToken).Vectors[0];   // its own batch, no padding
                Close.Assert(batched[i], alone, $"{name}, text {i}: in a padded batch of 4 vs alone");
            }
            // Reversing the input reverses the output: vectors come back in input order whatever the sort did.
            var reversed = encoder.Embed(Texts.Reverse().ToArray(), cancellation: TestContext.Current.CancellationToken).Vectors;
            for (int i = 0; i < Texts.Length; i++) Close.Assert(reversed[Texts.Length - 1 - i], batched[i], $"{name}, text {i}: input reversed");
        }
    }

    [Fact]
    public void TruncationIsCountedAndKeepsTheFirstTokens()
    {
        const int limit = 8;
        int longer = Texts.Count(t => Tokenizer.Encode(t).Count > limit);
        Assert.InRange(longer, 1, Texts.Length - 1);                                              // some cut, some not
        foreach (var (name, encoder) in Encoders(new SentenceEncoderOptions { Normalize = false, MaxLength = limit }))
        {
            var result = encoder.Embed(Texts, cancellation: TestContext.Current.CancellationToken);
            Assert.Equal(longer, result.Truncated);
            for (int i = 0; i < Texts.Length; i++)
            {
                var ids = Tokenizer.Encode(Texts[i]).Ids;
                // [CLS] + the first limit − 2 pieces + [SEP]: what the encoder saw when the text was cut.
                var kept = ids.Count <= limit ? ids : [.. ids.Take(limit - 1), Tokenizer.EndId];
                Assert.Equal(kept.Count, result.TokenCounts[i]);
                Close.Assert(result.Vectors[i], Reference(kept), $"{name}, text {i} cut to {limit} tokens vs ONNX Runtime on the kept tokens");
            }
        }
    }

    sealed class Reports : IProgress<int>
    {
        public List<int> Done { get; } = [];
        public void Report(int value) => Done.Add(value);
    }

    [Fact]
    public void NoBatchPadsATextByMoreThanMaxPadding()
    {
        var counts = Texts.Select(t => Tokenizer.Encode(t).Count).OrderDescending().ToArray();   // the order Embed encodes in
        var encoder = new SentenceEncoder(ort, Tokenizer, new SentenceEncoderOptions { BatchSize = 32, MaxPadding = 0.2 });
        var progress = new Reports();
        var vectors = encoder.Embed(Texts, progress, TestContext.Current.CancellationToken).Vectors;
        Assert.True(progress.Done.Count > 1, $"lengths {string.Join(", ", counts)} in one batch");
        for (int b = 0, start = 0; b < progress.Done.Count; start = progress.Done[b++])
        {
            int longest = counts[start], shortest = counts[progress.Done[b] - 1];
            Assert.True(shortest >= 0.8 * longest, $"batch {b} pads a {shortest}-token text to {longest}");
        }
        // 1: batches by count alone (all seven texts in one), the same vectors.
        var byCount = new Reports();
        var same = encoder.With(encoder.Options with { MaxPadding = 1 }).Embed(Texts, byCount, TestContext.Current.CancellationToken).Vectors;
        Assert.Equal([Texts.Length], byCount.Done);
        for (int i = 0; i < Texts.Length; i++) Close.Assert(same[i], vectors[i], $"text {i}: one padded batch vs batches by padding");
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => encoder.With(new SentenceEncoderOptions { MaxPadding = 1.5 }));
        Assert.Equal("MaxPadding", e.ParamName);
    }
}
