namespace Bert4Sharp.Tests.Onnx;

using Bert4Sharp.Models;
using Bert4Sharp.Onnx;
using Bert4Sharp.Onnx.Export;
using Bert4Sharp.Tasks;
using TorchSharp;

/// <summary>
/// Task heads with their encoder on ONNX Runtime (<see cref="ITaskHead.Engine"/>): every head's scores from the exported
/// encoder's hidden states equal the TorchSharp path, and a head refuses to train on the second engine.
/// </summary>
[Collection("serial")]
public sealed class OnnxTaskHeadTests
{
    /// <summary>The tiny BERT encoder exported to a temporary directory, opened on ONNX Runtime.</summary>
    static OnnxRuntimeEncoder Exported(TransformerModel encoder, string dir)
    {
        OnnxExport.Save(encoder, Path.Combine(dir, "model.onnx"));
        return new OnnxRuntimeEncoder(dir);
    }

    /// <summary>Scores of <paramref name="scores"/> on the TorchSharp encoder, then on the engine (which must have run).</summary>
    static void SameOnBothEngines<THead>(THead head, OnnxRuntimeEncoder engine, Func<torch.Tensor> scores, string what) where THead : torch.nn.Module, ITaskHead
    {
        head.eval();
        using var g = torch.no_grad();
        head.Engine = null;
        using var expected = scores();
        var counting = new Counting(engine);
        head.Engine = counting;
        using var actual = scores();
        Assert.True(counting.Calls > 0, $"{what}: the engine was not used");
        Close.Assert(actual, expected, what);
        head.Engine = null;
    }

    /// <summary>An engine that counts its calls.</summary>
    sealed class Counting(IEncoder inner) : IEncoder
    {
        public int Calls { get; private set; }
        public string Engine => inner.Engine;
        public int HiddenSize => inner.HiddenSize;
        public long MaxLength => inner.MaxLength;
        public torch.Device Device => inner.Device;
        public ModelOutput Encode(torch.Tensor ids, torch.Tensor? segments, torch.Tensor? attentionMask, bool outputHiddenStates = false)
        {
            Calls++;
            return inner.Encode(ids, segments, attentionMask, outputHiddenStates);
        }
    }

    [Fact]
    public void EveryHeadScoresTheSameOnTheExportedEncoder()
    {
        torch.manual_seed(3);
        var (encoder, _) = TestPaths.TinyBertEncoder();
        string dir = Directory.CreateTempSubdirectory("b4s-onnx-heads-").FullName;
        try
        {
            using var engine = Exported(encoder, dir);
            using var ids = torch.randint(5, 100, [2, 12], dtype: torch.int64);
            using var segments = torch.cat([torch.zeros(2, 6, dtype: torch.int64), torch.ones(2, 6, dtype: torch.int64)], 1);
            using var mask = torch.ones(2, 12, dtype: torch.int64);
            mask[1, 8..] = torch.tensor(0L);                                                 // one row padded: the mask reaches the graph

            foreach (var head in new[] { EntityHead.Crf, EntityHead.GlobalPointer, EntityHead.EfficientGlobalPointer })
            {
                var ner = new EntityRecognizer(encoder, ["PER", "LOC"], new EntityRecognizerOptions { Head = head, PointerHeadSize = 16 });
                SameOnBothEngines(ner, engine, () => ner.Scores(ids, mask), $"{head} scores");
            }
            var span = new SpanExtractor(encoder, new SpanExtractorOptions());
            SameOnBothEngines(span, engine, () => span.Logits(ids, segments, mask), "span logits");
            var choice = new MultipleChoice(encoder, new MultipleChoiceOptions { Pooling = Pooling.Mean });
            SameOnBothEngines(choice, engine, () => choice.Scores(ids, segments, mask), "choice scores");
            var relations = new GpLinkerRelationExtractor(encoder, ["p1", "p2"], new GpLinkerOptions { HeadSize = 16 });
            SameOnBothEngines(relations, engine, () => relations.Scores(ids, mask).Nodes, "GPLinker span scores");
            foreach (var pooling in new[] { Pooling.First, Pooling.Mean, Pooling.Max })
            {
                var classifier = new SequenceClassifier(encoder, 3, pooling: pooling);
                SameOnBothEngines(classifier, engine, () => classifier.forward(ids, segments, mask), $"classifier logits ({pooling})");
            }
        }
        finally { Directory.Delete(dir, true); }
    }

    [Fact]
    public void AHeadRefusesToTrainOnTheSecondEngineAndTheEngineTakesIdsOnly()
    {
        var (encoder, _) = TestPaths.TinyBertEncoder();
        string dir = Directory.CreateTempSubdirectory("b4s-onnx-heads-").FullName;
        try
        {
            using var engine = Exported(encoder, dir);
            using var ids = torch.randint(5, 100, [1, 8], dtype: torch.int64);
            using var mask = torch.ones(1, 8, dtype: torch.int64);
            var ner = new EntityRecognizer(encoder, ["PER"]) { Engine = engine };
            ner.train();
            var e = Assert.Throws<InvalidOperationException>(() => ner.Scores(ids, mask));
            Assert.Contains("training runs on the TorchSharp encoder", e.Message);
            ner.eval();
            using (torch.no_grad()) ner.Scores(ids, mask).Dispose();

            var classifier = new SequenceClassifier(encoder, 2) { Engine = engine };
            classifier.eval();
            using var embeddings = torch.zeros(1, 8, encoder.HiddenSize);
            var n = Assert.Throws<NotSupportedException>(() => classifier.Forward(new ModelInput(ids) { AttentionMask = mask, TokenEmbeddings = embeddings }));
            Assert.Contains("ids, segments and a mask only", n.Message);
        }
        finally { Directory.Delete(dir, true); }
    }
}
