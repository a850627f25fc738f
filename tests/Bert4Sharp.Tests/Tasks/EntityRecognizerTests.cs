using Bert4Sharp.Models;
using Bert4Sharp.Tasks;
using Bert4Sharp.Tokenization;
using TorchSharp;

namespace Bert4Sharp.Tests.Tasks;

/// <summary>NER end to end on a tiny BERT: both heads fit a few examples and predict character spans of the original texts.</summary>
public class EntityRecognizerTests
{
    static (TransformerModel Encoder, BertWordPieceTokenizer Tokenizer) Tiny() => TestPaths.TinyBertEncoder();

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

/// <summary><c>b4s clue train/predict cluener</c> on the real CLUENER files with a tiny encoder (a few steps): files, formats, errors.</summary>
public class ClueNerCommandTests
{
    [Fact]
    public void TrainThenPredictWritesSubmissionFiles()
    {
        string data = TestPaths.SharedOrSkip("data");
        string dir = Directory.CreateTempSubdirectory("b4s-clue").FullName;
        try
        {
            // A 2-layer, 64-wide RoFormerV2 over the real RoFormerV2 vocabulary, randomly initialised.
            string cfgDir = Directory.CreateDirectory(Path.Combine(dir, "tiny")).FullName;
            File.Copy(TestPaths.SharedOrSkip(Path.Combine("models", "roformer_v2_char_small", "vocab.txt")), Path.Combine(cfgDir, "vocab.txt"));
            File.WriteAllText(Path.Combine(cfgDir, "config.json"), """
                {"model_type": "roformer_v2", "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 128,
                 "hidden_act": "relu", "vocab_size": 12000, "type_vocab_size": 2}
                """);
            string run = Path.Combine(dir, "run");
            var (code, stdout, stderr) = CliTests.B4s(["clue", "train", "cluener", "--data", data, "--config", Path.Combine(cfgDir, "config.json"),
                "--output", run, "--head", "crf", "--minutes", "0.05", "--eval-every", "1000"]);
            Assert.True(code == 0, stderr);
            Assert.Contains("10,748 training and 1,343 dev texts", stdout);
            Assert.Matches(@"dev entity F1 after training \(no evaluation ran during training\): \d+\.\d\d %", stdout);
            foreach (var f in new[] { "config.json", "model.safetensors", "vocab.txt", "head.safetensors", "task.json" })
                Assert.True(File.Exists(Path.Combine(run, "model", f)), f);
            var devLines = File.ReadAllLines(Path.Combine(run, "dev_predictions.json"));
            Assert.Equal(1343, devLines.Length);
            foreach (var line in devLines.Take(50))
            {
                using var doc = System.Text.Json.JsonDocument.Parse(line);
                Assert.Equal(System.Text.Json.JsonValueKind.Object, doc.RootElement.GetProperty("label").ValueKind);
            }
            string test = Path.Combine(data, "cluener2020", "test.json"), predicted = Path.Combine(dir, "test_predictions.json");
            (code, stdout, stderr) = CliTests.B4s(["clue", "predict", "cluener", "--model", Path.Combine(run, "model"), "--input", test, "--output", predicted]);
            Assert.True(code == 0, stderr);
            Assert.Equal(File.ReadLines(test).Count(l => l.Trim().Length > 0), File.ReadAllLines(predicted).Length);
            // The encoder on ONNX Runtime: exported for the run from the TorchSharp directory, then from b4s export onnx's copy
            // (graph, config, vocabulary, head; no encoder weights), in fp32 the same predictions, in int8 the same count.
            string viaTemp = Path.Combine(dir, "test_onnx_temp.json"), exported = Path.Combine(dir, "exported"), viaExport = Path.Combine(dir, "test_onnx.json");
            (code, stdout, stderr) = CliTests.B4s(["clue", "predict", "cluener", "--model", Path.Combine(run, "model"), "--input", test, "--output", viaTemp, "--engine", "onnx", "--threads", "2"]);
            Assert.True(code == 0, stderr);
            Assert.Contains("exported the encoder to ONNX for this run", stdout);
            Assert.Equal(File.ReadAllText(predicted), File.ReadAllText(viaTemp));
            (code, stdout, stderr) = CliTests.B4s(["export", "onnx", "--model", Path.Combine(run, "model"), "--output", exported]);
            Assert.True(code == 0, stderr);
            Assert.Contains($"b4s clue predict cluener --model {exported} --engine onnx", stdout);
            Assert.False(File.Exists(Path.Combine(exported, "model.safetensors")));
            (code, stdout, stderr) = CliTests.B4s(["clue", "predict", "cluener", "--model", exported, "--input", test, "--output", viaExport, "--engine", "onnx"]);
            Assert.True(code == 0, stderr);
            Assert.Contains("on ONNX Runtime", stdout);
            Assert.Equal(File.ReadAllText(predicted), File.ReadAllText(viaExport));
            (code, _, stderr) = CliTests.B4s(["export", "onnx", "--model", Path.Combine(run, "model"), "--output", exported + "-int8", "--int8", "--no-verify"]);
            Assert.True(code == 0, stderr);
            (code, _, stderr) = CliTests.B4s(["clue", "predict", "cluener", "--model", exported + "-int8", "--input", test, "--output", viaExport, "--engine", "onnx"]);
            Assert.True(code == 0, stderr);
            Assert.Equal(File.ReadAllLines(predicted).Length, File.ReadAllLines(viaExport).Length);
            // The same directory cannot be trained over without --overwrite; a plain encoder directory is not a task model.
            (code, _, stderr) = CliTests.B4s(["clue", "train", "cluener", "--data", data, "--config", Path.Combine(cfgDir, "config.json"), "--output", run, "--minutes", "0.05"]);
            Assert.Equal(1, code);
            (code, _, stderr) = CliTests.B4s(["clue", "predict", "cluener", "--model", cfgDir, "--input", test, "--output", predicted]);
            Assert.Equal(1, code);
            Assert.Contains("has no task.json", stderr);
            (code, _, stderr) = CliTests.B4s(["clue", "train", "glue", "--output", run]);
            Assert.Equal(1, code);
            Assert.Contains("is not a task b4s clue runs", stderr);
        }
        finally { Directory.Delete(dir, true); }
    }
}
