namespace Bert4Sharp.Tests.Training;

using System.Text.Json;
using Bert4Sharp.Training;

/// <summary>
/// Every task <c>b4s clue</c> runs, end to end on its real staged data: a tiny random encoder trains a few steps on the
/// first examples, evaluates on dev, saves its model, predicts the task's default input in the submission format from
/// the saved directory, and another task's predict refuses the model.
/// </summary>
public sealed class ClueRunTests
{
    public static TheoryData<string> Tasks() => [.. ClueRuns.All.Select(r => r.Task)];

    /// <summary>A few steps of a 1 × 32 RoFormerV2 from scratch on the task's real data, output under <paramref name="dir"/>/run.</summary>
    static RunResult TrainTiny(IClueRun run, string data, string dir, List<string> lines, Func<ClueRunOptions, ClueRunOptions> adjust)
    {
        string config = Path.Combine(dir, "tiny.json");
        File.WriteAllText(config, """
            {"model_type": "roformer_v2", "hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
             "intermediate_size": 64, "max_position_embeddings": 512, "vocab_size": 1}
            """);
        var options = new ClueRunOptions
        {
            DataDirectory = data, Output = Path.Combine(dir, "run"), Config = config, Seed = 1,
            Vocabulary = TestPaths.SharedOrSkip(Path.Combine("models", "roformer_v2_char_small", "vocab.txt")),
            BatchSize = 4, EvalEverySteps = 2, WarmupSteps = 0,
        };
        return run.Train(adjust(options), lines.Add, ProgressDisplay.Lines, TestContext.Current.CancellationToken);
    }

    [Theory]
    [MemberData(nameof(Tasks))]
    public void Trains_saves_and_predicts_in_the_submission_format(string task)
    {
        string data = TestPaths.SharedOrSkip("data");
        string dir = Directory.CreateTempSubdirectory("b4s-clue-").FullName;
        try
        {
            var run = ClueRuns.Get(task);
            var lines = new List<string>();
            var result = TrainTiny(run, data, dir, lines, o => o with { MaxSteps = 3, Limit = 24, MaxLength = 128 });
            Assert.Equal(3, result.Training.Steps);
            Assert.NotEmpty(result.Metrics);
            Assert.All(result.Metrics.Values, v => Assert.True(double.IsFinite(v), $"{task}: a metric is not finite: {string.Join(", ", result.Metrics)}"));
            string model = Path.Combine(dir, "run", "model");
            Assert.True(File.Exists(Path.Combine(model, "task.json")), $"{task}: no task.json in {model}");

            string predictions = Path.Combine(dir, "predictions.json");
            int count = run.Predict(model, run.DefaultInput(data), predictions, lines.Add, limit: 40);
            Assert.True(count > 0, $"{task}: nothing predicted");
            string text = File.ReadAllText(predictions);
            Assert.False(string.IsNullOrWhiteSpace(text), $"{task}: empty predictions file");
            if (text.TrimStart().StartsWith('{') && text.Trim().Split('\n').Length == count)
                foreach (string line in text.Trim().Split('\n')) JsonDocument.Parse(line).Dispose();
            else
                JsonDocument.Parse(text).Dispose();

            // The same predictions with the encoder on ONNX Runtime: a directory with only the exported graph, config,
            // vocabulary and head (no TorchSharp encoder weights), the head in TorchSharp on the graph's hidden states.
            string exported = Directory.CreateDirectory(Path.Combine(dir, "onnx")).FullName;
            using (var encoder = ClueRun.LoadEncoder(model).Encoder) Bert4Sharp.Onnx.Export.OnnxExport.Save(encoder, Path.Combine(exported, "model.onnx"));
            foreach (var f in new[] { "config.json", "vocab.txt", "task.json", "head.safetensors" }) File.Copy(Path.Combine(model, f), Path.Combine(exported, f));
            string onnxPredictions = Path.Combine(dir, "predictions-onnx.json");
            using (var engine = new Bert4Sharp.Onnx.OnnxRuntimeEncoder(exported))
                Assert.Equal(count, run.Predict(exported, run.DefaultInput(data), onnxPredictions, lines.Add, limit: 40, engine));
            Assert.Equal(text, File.ReadAllText(onnxPredictions));

            if (ClueRuns.All.FirstOrDefault(r => r.Task != task) is not { } other) return;
            var e = Assert.Throws<InvalidDataException>(() => other.Predict(model, other.DefaultInput(data), Path.Combine(dir, "other.json"), lines.Add, limit: 1));
            Assert.Contains($"'{task}'", e.Message);
        }
        finally { Directory.Delete(dir, recursive: true); }
    }

    /// <summary>
    /// Every head around a bf16 encoder (emulated on CPUs without bf16: the tiny model keeps it quick): the heads get
    /// fp32 states at the encoder seam and keep fp32 parameters, training stays finite, and the saved bf16 model predicts.
    /// </summary>
    [Theory]
    [MemberData(nameof(Tasks))]
    public void Trains_a_bf16_encoder_under_fp32_heads(string task)
    {
        string data = TestPaths.SharedOrSkip("data");
        string dir = Directory.CreateTempSubdirectory("b4s-clue-bf16-").FullName;
        try
        {
            var run = ClueRuns.Get(task);
            var lines = new List<string>();
            var result = TrainTiny(run, data, dir, lines, o => o with { MaxSteps = 2, Limit = 16, MaxLength = 64, Precision = Bert4Sharp.Runtime.Precision.Bf16 });
            Assert.Equal(2, result.Training.Steps);
            Assert.Contains(lines, l => l.StartsWith("precision: bf16"));
            Assert.All(result.Metrics.Values, v => Assert.True(double.IsFinite(v), $"{task}: a metric is not finite: {string.Join(", ", result.Metrics)}"));
            Assert.All(result.Training.Losses, l => Assert.True(double.IsFinite(l), $"{task}: a loss is not finite"));
            string model = Path.Combine(dir, "run", "model");
            using (var head = Bert4Sharp.Checkpoints.Checkpoint.Open(Path.Combine(model, "head.safetensors")))
                Assert.All(head.Entries, e => Assert.Equal(Bert4Sharp.Checkpoints.TensorDType.F32, e.DType));
            int count = run.Predict(model, run.DefaultInput(data), Path.Combine(dir, "predictions.json"), lines.Add, limit: 8);
            Assert.True(count > 0, $"{task}: nothing predicted");
        }
        finally { Directory.Delete(dir, recursive: true); }
    }

    [Fact]
    public void An_unknown_task_names_the_known_ones()
    {
        var e = Assert.Throws<ArgumentException>(() => ClueRuns.Get("glue"));
        Assert.Contains("cluener", e.Message);
    }
}
