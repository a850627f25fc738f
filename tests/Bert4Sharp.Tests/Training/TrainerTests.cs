namespace Bert4Sharp.Tests.Training;

using Bert4Sharp.Checkpoints;
using Bert4Sharp.Models;
using Bert4Sharp.Tokenization;
using Bert4Sharp.Training;
using TorchSharp;
using static TorchSharp.torch;
using Adam = Bert4Sharp.Training.Adam;
using OptimizerOptions = Bert4Sharp.Training.OptimizerOptions;

/// <summary>
/// The trainer: exact resume, non-finite losses, atomic checkpoints, batching, metrics and curves. Serial: the
/// global torch RNG (dropout) must not be drawn from by tests running beside it.
/// </summary>
[Collection("serial")]
public sealed class TrainerTests : IDisposable
{
    readonly string dir = Path.Combine(Path.GetTempPath(), "b4s-trainer-" + Guid.NewGuid().ToString("N"));

    public TrainerTests() => Directory.CreateDirectory(dir);

    public void Dispose()
    {
        try { Directory.Delete(dir, true); } catch (IOException) { }
    }

    internal static BertWordPieceTokenizer Tokenizer(string dir)
    {
        string vocab = Path.Combine(dir, "vocab.txt");
        if (!File.Exists(vocab)) TestPaths.WriteSyntheticVocabulary(vocab);
        return BertWordPieceTokenizer.FromFile(vocab);
    }

    internal static TransformerModel TinyRoFormerV2(int seed, double dropout = 0.1)
    {
        torch.manual_seed(seed);
        var config = new TransformerConfig
        {
            ModelType = "roformer_v2", VocabSize = 1000, HiddenSize = 32, NumHiddenLayers = 2, NumAttentionHeads = 2, IntermediateSize = 64,
            HiddenAct = "relu", HiddenDropoutProb = dropout, AttentionProbsDropoutProb = dropout,
        };
        return TransformerModels.Build(config, null, ModelFamily.Get("roformer_v2"), Application.MaskedLM, new BuildOptions { Device = CPU }, out _);
    }

    /// <summary>Synthetic sequences of CJK tokens of varied lengths (ids 104–999 of the synthetic vocabulary).</summary>
    internal static List<PretrainingSequence> Sequences(int count, int seed)
    {
        var rng = new Random(seed);
        return Enumerable.Range(0, count).Select(_ =>
        {
            int n = rng.Next(6, 20);
            var ids = new int[n + 2];
            ids[0] = 101; ids[^1] = 102;
            for (int i = 1; i <= n; i++) ids[i] = 104 + rng.Next(0, 60) * (i % 3 + 1);
            return new PretrainingSequence(ids, null);
        }).ToList();
    }

    (TrainingResult Result, TransformerModel Model) Run(string output, long maxSteps, bool resume, int initSeed)
    {
        var tokenizer = Tokenizer(dir);
        var mlm = new MaskedLanguageModeling(tokenizer);
        var model = TinyRoFormerV2(initSeed);
        var optimizer = new Adam(model.named_parameters().Select(p => (p.name, p.parameter)), new OptimizerOptions
        {
            LearningRate = 3e-3, WeightDecay = 0.01, EmaMomentum = 0.9,
            Schedule = new PiecewiseLinearSchedule(new Dictionary<long, double> { [4] = 1, [30] = 0.2 }),
        });
        var trainer = new Trainer<PretrainingSequence>(model, optimizer, (b, ctx) => mlm.Step(model, b, ctx), new TrainerOptions
        {
            Epochs = 3, MaxSteps = maxSteps, Batching = new BatchingOptions { BatchSize = 8, BucketBatches = 2 }, Seed = 7,
            OutputDirectory = output, Resume = resume, CheckpointEverySteps = 4, LogEverySteps = 2, Progress = ProgressDisplay.None,
        }) { Length = s => s.Ids.Length };
        return (trainer.Fit(Sequences(40, 3), null, TestContext.Current.CancellationToken), model);   // 5 batches per epoch
    }

    [Fact]
    public void Resume_reproduces_the_uninterrupted_losses_and_weights()
    {
        string a = Path.Combine(dir, "a"), b = Path.Combine(dir, "b");
        var (full, fullModel) = Run(a, 13, resume: false, initSeed: 1);
        Assert.Equal(13, full.Losses.Count);
        Assert.True(full.Losses[^1] < full.Losses[0], $"loss should fall: {full.Losses[0]} → {full.Losses[^1]}");
        // Interrupted after 7 steps (mid-epoch 2, between checkpoints), then resumed by a fresh process-like
        // run with a differently initialised model: the checkpoint must restore everything.
        var (first, _) = Run(b, 7, resume: false, initSeed: 1);
        Assert.Equal(7, first.Steps);
        var (second, resumedModel) = Run(b, 13, resume: true, initSeed: 99);
        Assert.Equal(6, second.StepsThisRun);
        Close.Assert(second.Losses.ToArray(), full.Losses.Skip(7).ToArray(), "losses of steps 8-13, resumed vs uninterrupted", atol: 1e-6, rtol: 0);
        var want = fullModel.state_dict();
        foreach (var (name, t) in resumedModel.state_dict()) Close.Assert(t, want[name], $"{name} resumed vs uninterrupted", atol: 1e-6);
        // The metrics log has every record once, in order, across the interruption.
        var steps = File.ReadLines(Path.Combine(b, "metrics.jsonl")).Select(l => System.Text.Json.JsonDocument.Parse(l).RootElement.GetProperty("step").GetInt64()).ToList();
        Assert.Equal([2, 4, 6, 8, 10, 12], steps);
        Assert.True(File.Exists(Path.Combine(b, "loss.png")) && new FileInfo(Path.Combine(b, "loss.png")).Length > 1000);
    }

    [Fact]
    public void Non_finite_loss_stops_with_the_step_or_is_skipped()
    {
        var model = TinyRoFormerV2(2, dropout: 0);
        var tokenizer = Tokenizer(dir);
        var mlm = new MaskedLanguageModeling(tokenizer);
        StepResult Poisoned(IReadOnlyList<PretrainingSequence> b, StepContext ctx)
        {
            var r = mlm.Step(model, b, ctx);
            return ctx.Step == 2 ? r with { Loss = r.Loss * double.NaN } : r;
        }
        var opts = new TrainerOptions { Epochs = 1, Batching = new BatchingOptions { BatchSize = 8 }, Progress = ProgressDisplay.None };
        using var opt1 = new Adam(model.named_parameters().Select(p => (p.name, p.parameter)), new OptimizerOptions());
        var e = Assert.Throws<TrainingDivergedException>(() => new Trainer<PretrainingSequence>(model, opt1, Poisoned, opts).Fit(Sequences(40, 3), null, TestContext.Current.CancellationToken));
        Assert.Equal(2, e.Step);
        Assert.Contains("step 2", e.Message);
        Assert.Contains("batch 3", e.Message);

        using var opt2 = new Adam(model.named_parameters().Select(p => (p.name, p.parameter)), new OptimizerOptions());
        var r = new Trainer<PretrainingSequence>(model, opt2, Poisoned, opts with { OnNonFiniteLoss = NonFiniteLossPolicy.Skip }).Fit(Sequences(40, 3), null, TestContext.Current.CancellationToken);
        Assert.Equal(1, r.SkippedSteps);
        Assert.Equal(5, r.Steps);
        Assert.Equal(4, opt2.Iterations);      // the poisoned step did not update
    }

    [Fact]
    public void A_full_disk_during_a_checkpoint_leaves_the_previous_one_intact()
    {
        var model = TinyRoFormerV2(3);
        using var opt = new Adam(model.named_parameters().Select(p => (p.name, p.parameter)), new OptimizerOptions());
        string path = Path.Combine(dir, "checkpoint.safetensors");
        TrainingCheckpoint.Save(path, model, opt, new TrainingProgress(10, 1, 2, 7));
        byte[] before = File.ReadAllBytes(path);
        AtomicFile.WrapForTesting = s => new FullDiskStream(s, 4096);
        try
        {
            var e = Assert.Throws<IOException>(() => TrainingCheckpoint.Save(path, model, opt, new TrainingProgress(20, 1, 12, 7)));
            Assert.Contains("No space left", e.Message);
        }
        finally { AtomicFile.WrapForTesting = null; }
        Assert.Equal(before, File.ReadAllBytes(path));
        Assert.Equal(["checkpoint.safetensors"], Directory.GetFiles(dir).Select(Path.GetFileName).Where(f => f!.StartsWith(".checkpoint") || f == "checkpoint.safetensors").ToArray());
        var progress = TrainingCheckpoint.Load(path, TinyRoFormerV2(4), new Adam(TinyRoFormerV2(4).named_parameters().Select(p => (p.name, p.parameter)), new OptimizerOptions()));
        Assert.Equal(10, progress.Step);
    }

    [Fact]
    public void Checkpoint_of_another_optimizer_or_model_is_refused_by_name()
    {
        var model = TinyRoFormerV2(5);
        using var adam = new Adam(model.named_parameters().Select(p => (p.name, p.parameter)), new OptimizerOptions());
        string path = Path.Combine(dir, "c.safetensors");
        TrainingCheckpoint.Save(path, model, adam, new TrainingProgress(1, 0, 1, 7));
        using var lion = new Lion(model.named_parameters().Select(p => (p.name, p.parameter)), new OptimizerOptions());
        Assert.Contains("'adam' optimizer", Assert.Throws<CheckpointFormatException>(() => TrainingCheckpoint.Load(path, model, lion)).Message);
        var other = TransformerModels.Create(new TransformerConfig { VocabSize = 50, HiddenSize = 16, NumHiddenLayers = 1, NumAttentionHeads = 2, MaxPositionEmbeddings = 16 }, "gpt2", Application.LanguageModel);
        using var otherOpt = new Adam(other.named_parameters().Select(p => (p.name, p.parameter)), new OptimizerOptions());
        Assert.Contains("written for another model", Assert.Throws<CheckpointFormatException>(() => TrainingCheckpoint.Load(path, other, otherOpt)).Message);
        File.WriteAllBytes(Path.Combine(dir, "plain.safetensors"), File.ReadAllBytes(path)[..8]);
        Assert.ThrowsAny<CheckpointException>(() => TrainingCheckpoint.Load(Path.Combine(dir, "plain.safetensors"), model, adam));
    }

    [Fact]
    public void Batching_is_deterministic_complete_and_bucketed()
    {
        var data = Enumerable.Range(0, 103).ToList();
        var o = new BatchingOptions { BatchSize = 10, BucketBatches = 3 };
        var a = Batching.Batches(data, o, 1, 0, x => x % 17).ToList();
        var b = Batching.Batches(data, o, 1, 0, x => x % 17).ToList();
        var c = Batching.Batches(data, o, 1, 1, x => x % 17).ToList();
        Assert.Equal(a.Select(x => string.Join(",", x)), b.Select(x => string.Join(",", x)));
        Assert.NotEqual(a.Select(x => string.Join(",", x)), c.Select(x => string.Join(",", x)));
        Assert.Equal(data, a.SelectMany(x => x).Order());
        // Within a bucket window, batches hold similar lengths: the spread inside a batch is small.
        Assert.True(a.Average(x => x.Max(v => v % 17) - x.Min(v => v % 17)) < 8);
        // Streaming with a small buffer still yields every example exactly once.
        var streamed = Batching.Batches(data.Select(x => x), new BatchingOptions { BatchSize = 7, ShuffleBuffer = 5 }, 3, 0).SelectMany(x => x).ToList();
        Assert.Equal(data, streamed.Order());
        Assert.NotEqual(data, streamed);
        Assert.Throws<ArgumentOutOfRangeException>(() => Batching.Batches(data, new BatchingOptions { BatchSize = 0 }, 1, 0).ToList());
    }

    [Fact]
    public void The_data_order_is_the_same_in_every_process()
    {
        // A resume in a new process, and every rank of a distributed run, must cut the same batches: the order is a
        // fixed function of (seed, epoch), not of the process-randomised HashCode. These are seed 42, epoch 0 and 1.
        var data = Enumerable.Range(0, 20).ToList();
        var o = new BatchingOptions { BatchSize = 5 };
        Assert.Equal("14,18,15,4,3", string.Join(",", Batching.Batches(data, o, 42, 0).First()));
        Assert.Equal("2,0,14,17,18", string.Join(",", Batching.Batches(data, o, 42, 1).First()));
    }

    [Fact]
    public void Evaluation_callback_saves_the_best_model_and_stops_early()
    {
        var model = TinyRoFormerV2(6);
        var tokenizer = Tokenizer(dir);
        var mlm = new MaskedLanguageModeling(tokenizer);
        using var opt = new Adam(model.named_parameters().Select(p => (p.name, p.parameter)), new OptimizerOptions { LearningRate = 1e-3 });
        var scores = new Queue<double>([0.5, 0.7, 0.6, 0.65, 0.9]);
        var eval = new EvaluationCallback("accuracy", () => new Dictionary<string, double> { ["accuracy"] = scores.Dequeue() }) { EverySteps = 1, Patience = 2 };
        var r = new Trainer<PretrainingSequence>(model, opt, (b, ctx) => mlm.Step(model, b, ctx), new TrainerOptions
        {
            Epochs = 5, Batching = new BatchingOptions { BatchSize = 8 }, OutputDirectory = dir, Progress = ProgressDisplay.None,
        }).Fit(Sequences(40, 3), [eval], TestContext.Current.CancellationToken);
        Assert.Equal(4, r.Steps);
        Assert.StartsWith("early stopping", r.StopReason);
        Assert.Equal(0.7, r.BestMetric);
        Assert.Equal(2, eval.Best!.Step);
        Assert.Equal("step 2 (epoch 1 of 5), chosen on held-out", eval.DescribeBest());
        using var best = Checkpoint.Open(Path.Combine(dir, "best.safetensors"));
        Assert.Equal("2", best.Metadata["step"]);
        Assert.Contains(File.ReadLines(Path.Combine(dir, "metrics.jsonl")), l => l.Contains("\"eval/accuracy\":0.7"));
    }

    [Fact]
    public void The_best_epoch_is_reported_as_chosen_on_the_evaluation_data()
    {
        var model = TinyRoFormerV2(6);
        var mlm = new MaskedLanguageModeling(Tokenizer(dir));
        using var opt = new Adam(model.named_parameters().Select(p => (p.name, p.parameter)), new OptimizerOptions { LearningRate = 1e-3 });
        var scores = new Queue<double>([0.5, 0.8, 0.6]);
        var eval = new EvaluationCallback("accuracy", () => new Dictionary<string, double> { ["accuracy"] = scores.Dequeue() }) { DataName = "dev" };
        var log = new List<string>();
        new Trainer<PretrainingSequence>(model, opt, (b, ctx) => mlm.Step(model, b, ctx), new TrainerOptions
        {
            Epochs = 3, Batching = new BatchingOptions { BatchSize = 8 }, Progress = ProgressDisplay.Lines, Log = log.Add,
        }).Fit(Sequences(40, 3), [eval], TestContext.Current.CancellationToken);
        Assert.Equal([5L, 10L, 15L], eval.History.Select(h => h.Step));
        Assert.Equal("epoch 2 of 3, chosen on dev", eval.DescribeBest());
        Assert.Contains(log, l => l == "best dev accuracy 0.8 (epoch 2 of 3, chosen on dev)");
        Assert.Contains(log, l => l.StartsWith("evaluation on dev at step 10 (epoch 2): accuracy 0.8 (best so far on dev)", StringComparison.Ordinal));
    }

    [Fact]
    public void Bf16_training_keeps_fp32_master_weights()
    {
        var model = TinyRoFormerV2(8, dropout: 0);
        model.to(ScalarType.BFloat16);
        var tokenizer = Tokenizer(dir);
        var mlm = new MaskedLanguageModeling(tokenizer);
        using var opt = new Adam(model.named_parameters().Select(p => (p.name, p.parameter)), new OptimizerOptions { LearningRate = 3e-3 });
        var r = new Trainer<PretrainingSequence>(model, opt, (b, ctx) => mlm.Step(model, b, ctx), new TrainerOptions
        {
            Epochs = 4, Batching = new BatchingOptions { BatchSize = 8 }, Progress = ProgressDisplay.None,
        }).Fit(Sequences(40, 3), null, TestContext.Current.CancellationToken);
        Assert.True(r.Losses.Skip(15).Average() < r.Losses.Take(5).Average() - 0.5, $"bf16 loss should fall: {string.Join(", ", r.Losses.Select(l => l.ToString("F2")))}");
        var state = opt.StateDict();
        foreach (var (name, p) in model.named_parameters())
        {
            Assert.Equal(ScalarType.BFloat16, p.dtype);
            var master = state[name + "/master"];
            Assert.Equal(ScalarType.Float32, master.dtype);
            Assert.True(p.to(ScalarType.Float32).eq(master.to(ScalarType.BFloat16).to(ScalarType.Float32)).all().ToBoolean(), name);
        }
        // Updates smaller than bf16's resolution accumulate in the master copy instead of vanishing.
        Assert.Contains(model.named_parameters(), p => !state[p.name + "/master"].eq(p.parameter.to(ScalarType.Float32)).all().ToBoolean());
    }

    [Fact]
    public void A_finished_run_is_not_overwritten_without_asking()
    {
        string output = Path.Combine(dir, "run");
        Run(output, 2, resume: false, initSeed: 1);
        byte[] before = File.ReadAllBytes(Path.Combine(output, "checkpoint.safetensors"));
        var e = Assert.Throws<IOException>(() => Run(output, 2, resume: false, initSeed: 1));
        Assert.Contains("already holds a training run", e.Message);
        Assert.Contains("--resume", e.Message);
        Assert.Equal(before, File.ReadAllBytes(Path.Combine(output, "checkpoint.safetensors")));
    }

    [Fact]
    public void Bad_trainer_options_are_named()
    {
        Assert.Contains("Epochs", Assert.Throws<ArgumentOutOfRangeException>(() => new TrainerOptions { Epochs = 0 }.Validate()).Message);
        Assert.Contains("OutputDirectory", Assert.Throws<ArgumentException>(() => new TrainerOptions { Resume = true }.Validate()).Message);
        Assert.Contains("BatchSize", Assert.Throws<ArgumentOutOfRangeException>(() => new TrainerOptions { Batching = new() { BatchSize = -1 } }.Validate()).Message);
    }

    /// <summary>Throws ENOSPC-like IOException after a number of bytes.</summary>
    sealed class FullDiskStream(Stream inner, long capacity) : Stream
    {
        long written;
        public override bool CanRead => false;
        public override bool CanSeek => false;
        public override bool CanWrite => true;
        public override long Length => written;
        public override long Position { get => written; set => throw new NotSupportedException(); }
        public override void Flush() => inner.Flush();
        public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();
        public override void Write(byte[] buffer, int offset, int count) => Write(buffer.AsSpan(offset, count));
        public override void Write(ReadOnlySpan<byte> buffer)
        {
            if (written + buffer.Length > capacity) throw new IOException("No space left on device");
            inner.Write(buffer);
            written += buffer.Length;
        }
    }
}
