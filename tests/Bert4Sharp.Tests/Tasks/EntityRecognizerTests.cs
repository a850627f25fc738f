using Bert4Sharp.Models;
using Bert4Sharp.Tasks;
using Bert4Sharp.Tokenization;
using TorchSharp;

namespace Bert4Sharp.Tests.Tasks;

/// <summary>NER end to end on a tiny BERT: both heads fit a few examples and predict character spans of the original texts.</summary>
public class EntityRecognizerTests
{
    static (TransformerModel Encoder, BertWordPieceTokenizer Tokenizer) Tiny()
    {
        string vocab = Path.Combine(Path.GetTempPath(), $"b4s-ner-vocab-{Guid.NewGuid():N}.txt");
        TestPaths.WriteSyntheticVocabulary(vocab);
        var tokenizer = BertWordPieceTokenizer.FromFile(vocab, new BertWordPieceOptions());
        File.Delete(vocab);
        var encoder = TransformerModels.Build(TestPaths.Fixture("hf", "bert", "config.json"), TestPaths.Fixture("hf", "bert", "model.safetensors"), "bert",
            Application.Encoder, new BuildOptions { Device = torch.CPU });
        return (encoder, tokenizer);
    }

    // Characters from the synthetic vocabulary (U+4E00…); entities at known character offsets, incl. a space and a Latin word.
    static readonly EntityExample[] Examples =
    [
        new("丁七万丈三上下", [new EntitySpan(0, 2, "PER"), new EntitySpan(4, 6, "LOC")]),
        new("不与丐丑专且", [new EntitySpan(2, 4, "LOC")]),
        new("丕世丗丘丙业丛东", [new EntitySpan(1, 3, "PER"), new EntitySpan(5, 8, "PER")]),
        new("丝丞丟丠両丢", []),
    ];

    [Theory]
    [InlineData(EntityHead.Crf)]
    [InlineData(EntityHead.GlobalPointer)]
    [InlineData(EntityHead.EfficientGlobalPointer)]
    public void EachHeadFitsAndPredictsCharacterSpans(EntityHead head)
    {
        torch.manual_seed(1);
        var (encoder, tokenizer) = Tiny();
        var model = new EntityRecognizer(encoder, ["PER", "LOC"], new EntityRecognizerOptions { Head = head, Dropout = 0, PointerHeadSize = 16 });
        var optimizer = torch.optim.Adam(model.parameters(), lr: head == EntityHead.Crf ? 1e-3 : 3e-3);
        model.train();
        float first = 0, last = 0;
        for (int step = 0; step < 150; step++)
        {
            using var scope = torch.NewDisposeScope();
            using var batch = model.Prepare(tokenizer, Examples, 32);
            Assert.Equal(0, batch.Dropped);
            var loss = model.Loss(batch);
            optimizer.zero_grad();
            loss.backward();
            optimizer.step();
            last = loss.item<float>();
            if (step == 0) first = last;
        }
        Assert.True(last < first / 10, $"{head}: loss {first} → {last}");
        var predicted = model.Predict(tokenizer, Examples.Select(e => e.Text).ToList(), 32);
        for (int i = 0; i < Examples.Length; i++)
            Assert.Equal(Examples[i].Entities.OrderBy(s => s.Start), predicted[i].OrderBy(s => s.Start));
    }

    [Fact]
    public void SpansOffTokenBoundariesAreCountedAndUnknownTypesNamed()
    {
        var (encoder, tokenizer) = Tiny();
        var model = new EntityRecognizer(encoder, ["PER"], new EntityRecognizerOptions { Head = EntityHead.Crf });
        // "abc" is one WordPiece token or [UNK]: a span of its middle character does not fall on a token boundary.
        using var batch = model.Prepare(tokenizer, [new EntityExample("丁abc七", [new EntitySpan(2, 3, "PER"), new EntitySpan(0, 1, "PER")])], 32);
        Assert.Equal(1, batch.Dropped);
        Assert.Single(batch.Gold[0]);
        var e = Assert.Throws<ArgumentException>(() => model.Prepare(tokenizer, [new EntityExample("丁七", [new EntitySpan(0, 1, "ORG")])], 32));
        Assert.Contains("'ORG'", e.Message);
        Assert.Throws<ArgumentException>(() => new EntityRecognizer(TransformerModels.Build(TestPaths.Fixture("hf", "bert_mlm", "config.json"), null, "bert", Application.MaskedLM), ["PER"]));
    }
}
