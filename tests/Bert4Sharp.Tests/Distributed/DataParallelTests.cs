namespace Bert4Sharp.Tests.Distributed;

using Bert4Sharp.Checkpoints;
using Bert4Sharp.Tests.Training;
using Bert4Sharp.Training;
using Bert4Sharp.Training.Distributed;
using TorchSharp;
using static TorchSharp.torch;
using Adam = Bert4Sharp.Training.Adam;
using OptimizerOptions = Bert4Sharp.Training.OptimizerOptions;

/// <summary>
/// A stand-in for N ranks that all hold this rank's values: a sum is N times the value, a minimum or maximum the value
/// itself, a broadcast leaves the buffer as it is. <see cref="AlterLongs"/> lets a test make "another rank" disagree.
/// </summary>
sealed class MirrorCommunicator(int rank, int size) : Communicator
{
    public override int Rank => rank;
    public override int Size => size;
    public override string Description => $"mirror, rank {rank} of {size}";
    public Action<Span<long>, ReduceOperation>? AlterLongs { get; init; }
    /// <summary>What "rank 0" sends in a broadcast (default: this rank's bytes, unchanged).</summary>
    public Action<Span<byte>>? OnBroadcast { get; init; }
    public int Calls { get; private set; }

    public override void AllReduce(Span<float> data, ReduceOperation op = ReduceOperation.Sum)
    {
        Calls++;
        if (op == ReduceOperation.Sum) foreach (ref float x in data) x *= size;
    }

    public override void AllReduce(Span<double> data, ReduceOperation op = ReduceOperation.Sum)
    {
        Calls++;
        if (op == ReduceOperation.Sum) foreach (ref double x in data) x *= size;
    }

    public override void AllReduce(Span<long> data, ReduceOperation op = ReduceOperation.Sum)
    {
        Calls++;
        if (op == ReduceOperation.Sum) foreach (ref long x in data) x *= size;
        AlterLongs?.Invoke(data, op);
    }

    public override void Broadcast(Span<byte> data, int root = 0)
    {
        Calls++;
        OnBroadcast?.Invoke(data);
    }
    public override void Barrier() => Calls++;
}

/// <summary>Data parallelism without MPI: sharding, gradient buckets, the agreement checks and rank-0-only writing.</summary>
[Collection("serial")]
public sealed class DataParallelTests : IDisposable
{
    readonly string dir = Directory.CreateTempSubdirectory("b4s-dp").FullName;

    public void Dispose()
    {
        try { Directory.Delete(dir, true); } catch (IOException) { }
    }

    [Fact]
    public void Shards_take_every_nth_example_and_together_cover_the_batch_once()
    {
        var batch = Enumerable.Range(0, 11).ToList();
        var shards = Enumerable.Range(0, 3).Select(r => DataParallel.Shard(batch, r, 3)).ToList();
        Assert.Equal([0, 3, 6, 9], shards[0]);
        Assert.Equal([1, 4, 7, 10], shards[1]);
        Assert.Equal([2, 5, 8], shards[2]);
        Assert.Equal(batch, shards.SelectMany(s => s).Order());
        Assert.Same(batch, DataParallel.Shard(batch, 0, 1));
        Assert.Throws<ArgumentOutOfRangeException>(() => DataParallel.Shard(batch, 3, 3));
    }

    [Fact]
    public void Buckets_flatten_and_unflatten_every_gradient_across_bucket_boundaries()
    {
        torch.manual_seed(5);
        var shapes = new long[][] { [3, 4], [7], [2, 3, 2], [1], [5, 5] };
        var parameters = shapes.Select(s => new TorchSharp.Modules.Parameter(torch.randn(s))).ToList();
        var grads = parameters.Select(p => torch.randn(p.shape)).ToList();
        for (int i = 0; i < parameters.Count; i++) if (i != 3) parameters[i].grad = grads[i].clone();   // parameter 3 has no gradient
        using var buckets = new GradientBuckets(parameters, bucketBytes: 10 * sizeof(float));
        long total = shapes.Sum(s => s.Aggregate(1L, (a, b) => a * b));
        Assert.Equal(total, buckets.Elements);
        Assert.Equal((int)((total + 9) / 10), buckets.Buckets.Count);
        Assert.Equal(total, buckets.Buckets.Sum(b => b.Length));
        Assert.All(buckets.Buckets.Zip(buckets.Buckets.Skip(1)), p => Assert.Equal(p.First.Start + p.First.Length, p.Second.Start));

        // The buffer is the gradients end to end (zeros for the missing one), times the scale.
        buckets.Flatten(scale: 0.5);
        var expected = torch.cat(grads.Select((g, i) => i == 3 ? torch.zeros(1) : g.reshape(-1) * 0.5).ToList(), 0);
        Close.Assert(buckets.Buffer, expected, "flattened gradients × 0.5");
        // Each bucket's span is its part of the buffer.
        var fromSpans = buckets.Buckets.Select((_, b) => buckets.Bucket(b).ToArray()).SelectMany(x => x).ToArray();
        Close.Assert(fromSpans, expected.data<float>().ToArray(), "bucket spans");

        // A 2-rank sum of halves gives the gradients back; the missing one becomes zeros.
        buckets.AllReduce(new MirrorCommunicator(0, 2), scale: 0.5);
        for (int i = 0; i < parameters.Count; i++)
            Close.Assert(parameters[i].grad!, i == 3 ? torch.zeros(1) : grads[i], $"gradient {i} after the round trip");
        Assert.Throws<ArgumentOutOfRangeException>(() => new GradientBuckets(parameters, 2));
    }

    [Fact]
    public void The_broadcast_writes_rank_0s_bytes_into_every_tensor_of_the_model()
    {
        // "Rank 0" sends zeros: afterwards every parameter and buffer (floats and integers, contiguous or not) is zero.
        var model = TrainerTests.TinyRoFormerV2(1);
        var parallel = new DataParallel(new DataParallelOptions { Communicator = new MirrorCommunicator(1, 2) { OnBroadcast = b => b.Clear() } });
        var state = model.state_dict();
        Assert.Contains(state.Values, t => t.abs().sum().ToDouble() > 0);
        parallel.BroadcastState(model);
        Assert.All(state, kv => Assert.True(kv.Value.abs().sum().ToDouble() == 0, $"{kv.Key} was not overwritten"));
        // One process broadcasts nothing.
        var alone = new MirrorCommunicator(0, 1) { OnBroadcast = b => b.Clear() };
        var fresh = TrainerTests.TinyRoFormerV2(1);
        new DataParallel(new DataParallelOptions { Communicator = alone }).BroadcastState(fresh);
        Assert.Equal(0, alone.Calls);
    }

    (Trainer<PretrainingSequence> Trainer, Bert4Sharp.Models.TransformerModel Model) Tiny(string output, Communicator? world, bool resume = false, long maxSteps = 2)
    {
        var mlm = new MaskedLanguageModeling(TrainerTests.Tokenizer(dir));
        var model = TrainerTests.TinyRoFormerV2(1, dropout: 0);
        var optimizer = new Adam(model.named_parameters().Select(p => (p.name, p.parameter)), new OptimizerOptions { LearningRate = 1e-3 });
        var trainer = new Trainer<PretrainingSequence>(model, optimizer, (b, ctx) => mlm.Step(model, b, ctx), new TrainerOptions
        {
            Epochs = 3, MaxSteps = maxSteps, Batching = new BatchingOptions { BatchSize = 8 }, Seed = 3, OutputDirectory = output, Resume = resume,
            LogEverySteps = 1, Progress = ProgressDisplay.None, DataParallel = world is null ? null : new DataParallelOptions { Communicator = world, Fingerprint = "config A" },
        });
        return (trainer, model);
    }

    [Fact]
    public void Ranks_with_another_model_config_are_refused_by_their_fingerprints()
    {
        // "Another rank" reports a larger hash in the maximum: every rank learns that the fingerprints differ.
        var world = new MirrorCommunicator(0, 2) { AlterLongs = (v, op) => { if (op == ReduceOperation.Max) v[0]++; } };
        var (trainer, _) = Tiny(Path.Combine(dir, "a"), world);
        var e = Assert.Throws<DistributedException>(() => trainer.Fit(TrainerTests.Sequences(16, 1), null, TestContext.Current.CancellationToken));
        Assert.Contains("the 2 ranks do not train the same model on the same data: rank 0's fingerprint is", e.Message);
        Assert.Contains("launch every rank with the same recipe, data and build", e.Message);
        Assert.False(File.Exists(Path.Combine(dir, "a", "checkpoint.safetensors")));
        // The fingerprint covers the model config text (DataParallelOptions.Fingerprint), not only the shapes.
        var p = new DataParallel(new DataParallelOptions { Communicator = world, Fingerprint = "config A" });
        var q = new DataParallel(new DataParallelOptions { Communicator = world, Fingerprint = "config B" });
        var (t, model) = Tiny(Path.Combine(dir, "b"), null);
        var optimizer = new Adam(model.named_parameters().Select(x => (x.name, x.parameter)), new OptimizerOptions());
        var options = new TrainerOptions();
        Assert.NotEqual(DataParallel.Hash(p.Describe(model, optimizer, options, 16)), DataParallel.Hash(q.Describe(model, optimizer, options, 16)));
        Assert.NotEqual(DataParallel.Hash(p.Describe(model, optimizer, options, 16)), DataParallel.Hash(p.Describe(model, optimizer, options, 17)));
    }

    [Fact]
    public void Only_rank_0_writes_and_a_resume_needs_the_same_number_of_ranks()
    {
        var data = TrainerTests.Sequences(16, 1);
        var ct = TestContext.Current.CancellationToken;
        // Rank 1 of 2 trains but writes nothing.
        string other = Path.Combine(dir, "rank1");
        var (rank1, _) = Tiny(other, new MirrorCommunicator(1, 2));
        Assert.Equal(2, rank1.Fit(data, null, ct).Steps);
        Assert.Empty(Directory.Exists(other) ? Directory.GetFiles(other) : []);

        // Rank 0 of 2 writes the checkpoint with world_size 2 (and metrics); a one-process resume is refused, naming both counts.
        string two = Path.Combine(dir, "two");
        var (rank0, _) = Tiny(two, new MirrorCommunicator(0, 2));
        rank0.Fit(data, null, ct);
        using (var ck = Checkpoint.Open(Path.Combine(two, "checkpoint.safetensors"))) Assert.Equal("2", ck.Metadata["world_size"]);
        Assert.True(File.Exists(Path.Combine(two, "metrics.jsonl")));
        var (alone, _) = Tiny(two, null, resume: true, maxSteps: 4);
        var e = Assert.Throws<CheckpointFormatException>(() => alone.Fit(data, null, ct));
        Assert.Contains("written by a run of 2 processes but this run has 1 process: resume with the same count (mpirun -np 2)", e.Message);

        // And the other way round: a one-process checkpoint refuses a 3-rank resume.
        string one = Path.Combine(dir, "one");
        Tiny(one, null).Trainer.Fit(data, null, ct);
        var (three, _) = Tiny(one, new MirrorCommunicator(0, 3), resume: true, maxSteps: 4);
        e = Assert.Throws<CheckpointFormatException>(() => three.Fit(data, null, ct));
        Assert.Contains("written by a run of 1 process but this run has 3 processes: resume with the same count (without mpirun)", e.Message);
        // The same count resumes.
        var (again, _) = Tiny(two, new MirrorCommunicator(0, 2), resume: true, maxSteps: 4);
        Assert.Equal(2, again.Fit(data, null, ct).StepsThisRun);
    }

    [Fact]
    public void A_checkpoint_seen_by_some_ranks_only_is_refused()
    {
        // Rank 0 sees no checkpoint; "the other rank" reports one (a sum of 1 of 2).
        var world = new MirrorCommunicator(0, 2) { AlterLongs = (v, op) => { if (op == ReduceOperation.Sum && v.Length == 1) v[0] = 1; } };
        var (trainer, _) = Tiny(Path.Combine(dir, "c"), world, resume: true);
        var e = Assert.Throws<DistributedException>(() => trainer.Fit(TrainerTests.Sequences(16, 1), null, TestContext.Current.CancellationToken));
        Assert.Contains("exists for 1 of the 2 ranks", e.Message);
        Assert.Contains("a filesystem all machines share", e.Message);
    }

    [Fact]
    public void Step_numbers_are_weighted_by_each_ranks_share_and_metric_names_must_agree()
    {
        var parallel = new DataParallel(new DataParallelOptions { Communicator = new MirrorCommunicator(0, 2) });
        var (loss, weight, tokens, metrics) = parallel.ReduceStep(2.0, 3, 10, new Dictionary<string, double> { ["accuracy"] = 0.25 });
        Close.Assert(loss, 2.0, "mean loss of two identical ranks");
        Close.Assert(weight, 6.0, "total weight");
        Assert.Equal(20, tokens);
        Close.Assert(metrics!["accuracy"], 0.25, "accuracy");
        // A rank whose sums do not match N·k (as when another rank reports other metric names) is refused.
        var odd = new DataParallel(new DataParallelOptions { Communicator = new OddDoubles() });
        var e = Assert.Throws<DistributedException>(() => odd.ReduceStep(1, 1, 1, new Dictionary<string, double> { ["a"] = 1 }));
        Assert.Contains("report different metrics", e.Message);
        var many = Enumerable.Range(0, DataParallel.MaxMetrics + 1).ToDictionary(i => $"m{i}", i => (double)i);
        Assert.Throws<ArgumentException>(() => parallel.ReduceStep(1, 1, 1, many));
    }

    /// <summary>Two ranks where the other one reports no metrics: the sums of k and k² give it away.</summary>
    sealed class OddDoubles : Communicator
    {
        public override int Rank => 0;
        public override int Size => 2;
        public override string Description => "odd";
        public override void AllReduce(Span<float> data, ReduceOperation op = ReduceOperation.Sum) { }
        public override void AllReduce(Span<double> data, ReduceOperation op = ReduceOperation.Sum) { data[0] *= 2; data[1] *= 2; }
        public override void AllReduce(Span<long> data, ReduceOperation op = ReduceOperation.Sum) { }
        public override void Broadcast(Span<byte> data, int root = 0) { }
        public override void Barrier() { }
    }

    [Fact]
    public void Stop_decisions_and_per_rank_seeds()
    {
        var world = new MirrorCommunicator(0, 2);
        var parallel = new DataParallel(new DataParallelOptions { Communicator = world });
        Assert.Equal("early stopping: 3 bad evaluations", parallel.AgreeStop("early stopping: 3 bad evaluations"));
        Assert.Null(parallel.AgreeStop(null));
        // Rank 1 follows the broadcast buffer, which the mirror leaves empty: it does not stop on its own.
        Assert.Null(new DataParallel(new DataParallelOptions { Communicator = new MirrorCommunicator(1, 2) }).AgreeStop("rank 1 wants to stop"));
        // One process keeps the single-process seed (no rank in it); ranks of a run differ.
        Assert.Equal(StableSeed.Mix(42, 7, 0x57E9), StableSeedOf(new DataParallel(null)));
        Assert.NotEqual(StableSeedOf(parallel), StableSeedOf(new DataParallel(new DataParallelOptions { Communicator = new MirrorCommunicator(1, 2) })));

        static int StableSeedOf(DataParallel p) => p.StepSeed(42, 7, 0x57E9);
    }
}
