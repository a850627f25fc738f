namespace Bert4Sharp.Bench;

using System.Diagnostics;
using System.Globalization;
using Bert4Sharp.Models;
using Bert4Sharp.Training;
using Bert4Sharp.Training.Distributed;
using TorchSharp;
using static TorchSharp.torch;

/// <summary>
/// Data-parallel cost on this machine (docs/distributed.md), run under mpirun:
///   mpirun -np 2 --allow-run-as-root dotnet bench/Bert4Sharp.Bench/bin/Release/net10.0/Bert4Sharp.Bench.dll allreduce [--buckets 1,4,16,64,256]
///       [--rounds R] [--batch B] [--seq T] [--steps S] [--vocab V]
/// BERT-base-shaped gradients (vocab 30522: 110M floats): for each bucket size and for blocking vs polled MPI calls, the
/// time to flatten the gradients, all-reduce the buckets and copy them back (the slowest rank's, median of R rounds),
/// its bandwidth, and its share of a training step whose forward + backward is measured on the same ranks. Ends with
/// the ring all-reduce projection 2(N − 1)/N · bytes / bandwidth for N machines.
/// </summary>
static class AllReduceBench
{
    public static int Run(string[] args)
    {
        var bucketsMb = (BenchArgs.Value(args, "--buckets") ?? "1,4,16,64,256").Split(',').Select(s => double.Parse(s, CultureInfo.InvariantCulture)).ToList();
        int rounds = BenchArgs.Get(args, "--rounds", 5), batch = BenchArgs.Get(args, "--batch", 8), seq = BenchArgs.Get(args, "--seq", 128);
        int steps = BenchArgs.Get(args, "--steps", 3), vocab = BenchArgs.Get(args, "--vocab", 30522);
        using var world = Communicator.FromEnvironment();
        void Say(string line) { if (world.IsPrimary) Console.WriteLine(line); }
        Say($"{world.Description}; {torch.get_num_threads()} libtorch threads per rank, {Environment.ProcessorCount} processors visible to a rank");

        torch.manual_seed(1);
        var config = new TransformerConfig { VocabSize = vocab, HiddenSize = 768, NumHiddenLayers = 12, NumAttentionHeads = 12, IntermediateSize = 3072, MaxPositionEmbeddings = 512 };
        var model = TransformerModels.Build(config, null, ModelFamily.Get("bert"), Application.MaskedLM, new BuildOptions { Device = CPU }, out _);
        model.train();
        var parameters = model.parameters().Where(p => p.requires_grad).ToList();
        long elements = parameters.Sum(p => p.numel());
        double bytes = elements * 4.0;
        Say($"gradients: BERT-base (vocab {vocab}), {parameters.Count} tensors, {elements:N0} floats = {bytes / 1e6:F0} MB");

        // A training step's forward + backward on each rank's batch, all ranks at once (they share the machine).
        double step = double.NaN;
        if (steps > 0)
        {
            var (ids, labels, mask) = TrainingBench.Batch(batch, seq, 1 + world.Rank);
            var times = new List<double>();
            for (int s = 0; s <= steps; s++)
            {
                world.Barrier();
                var sw = Stopwatch.StartNew();
                using (var scope = torch.NewDisposeScope())
                {
                    var (loss, _, _) = MaskedLanguageModeling.Loss(model, ids, labels, mask);
                    loss.backward();
                }
                if (s > 0) times.Add(Slowest(world, sw.Elapsed.TotalSeconds));
            }
            step = Measure.Median(times);
            Say($"forward + backward, batch {batch} x {seq} per rank: {step:F2} s (slowest rank, median of {steps})");
        }
        foreach (var p in parameters) { using var noGrad = torch.no_grad(); p.grad = torch.randn_like(p); }

        var rows = new List<(string Mode, double Mb, double Flatten, double Reduce, double Unflatten)>();
        foreach (var (mode, blockingFrom) in new[] { ("blocking", 0L), ("polled", long.MaxValue) })
        {
            if (world is MpiCommunicator mpi) mpi.Options = mpi.Options with { BlockingFromBytes = blockingFrom };
            foreach (double mb in bucketsMb)
            {
                using var buckets = new GradientBuckets(parameters, (long)(mb * (1 << 20)));
                var flatten = new List<double>();
                var reduce = new List<double>();
                var unflatten = new List<double>();
                for (int r = 0; r <= rounds; r++)
                {
                    world.Barrier();
                    var sw = Stopwatch.StartNew();
                    buckets.Flatten(1.0 / world.Size);
                    double f = sw.Elapsed.TotalSeconds;
                    world.Barrier();
                    sw.Restart();
                    for (int b = 0; b < buckets.Buckets.Count; b++) world.AllReduce(buckets.Bucket(b));
                    double ar = sw.Elapsed.TotalSeconds;
                    sw.Restart();
                    buckets.Unflatten();
                    double u = sw.Elapsed.TotalSeconds;
                    if (r == 0) continue;                                                 // warm-up (first touch of the buffer)
                    flatten.Add(Slowest(world, f));
                    reduce.Add(Slowest(world, ar));
                    unflatten.Add(Slowest(world, u));
                }
                var row = (mode, mb, Measure.Median(flatten), Measure.Median(reduce), Measure.Median(unflatten));
                rows.Add(row);
                Say(Describe(row, buckets.Buckets.Count, bytes, world.Size, step));
            }
        }
        var best = rows.MinBy(r => r.Flatten + r.Reduce + r.Unflatten);
        double busBandwidth = Bus(world.Size) * bytes / best.Reduce;
        Say($"best: {best.Mode} calls, {best.Mb:G} MB buckets: {best.Flatten + best.Reduce + best.Unflatten:F3} s per step " +
            $"(all-reduce alone {best.Reduce:F3} s, bus bandwidth {busBandwidth / 1e9:F2} GB/s)");
        if (world.Size > 1 && !double.IsNaN(step)) Project(Say, bytes, step, best.Flatten + best.Unflatten, busBandwidth);
        return 0;
    }

    /// <summary>The ring all-reduce's traffic factor: each rank sends and receives 2(N − 1)/N of the buffer.</summary>
    static double Bus(int n) => n <= 1 ? 0 : 2.0 * (n - 1) / n;

    static string Describe((string Mode, double Mb, double Flatten, double Reduce, double Unflatten) r, int count, double bytes, int n, double step)
    {
        double total = r.Flatten + r.Reduce + r.Unflatten;
        string share = double.IsNaN(step) ? "" : $", {total / (step + total):P0} of a step";
        return string.Create(CultureInfo.InvariantCulture, $"{r.Mode,-8} {r.Mb,6:G} MB x {count,4}: flatten {r.Flatten:F3} s, all-reduce {r.Reduce:F3} s " +
            $"({bytes / r.Reduce / 1e9:F2} GB/s algorithm, {Bus(n) * bytes / r.Reduce / 1e9:F2} GB/s bus), unflatten {r.Unflatten:F3} s = {total:F3} s{share}");
    }

    /// <summary>
    /// On paper: N machines, one rank each, the same per-rank batch; the all-reduce is the ring's at the measured or an
    /// assumed link bandwidth, plus the measured copies in and out of the buckets (which do not depend on N).
    /// </summary>
    static void Project(Action<string> say, double bytes, double step, double copies, double measured)
    {
        say($"projection (compute {step:F2} s per step per machine, {bytes / 1e6:F0} MB of gradients, copies {copies:F2} s, no overlap): speed-up over one machine");
        var links = new[] { ("measured here (shared memory)", measured), ("10 Gb/s Ethernet", 1.25e9), ("100 Gb/s InfiniBand", 12.5e9) };
        say("  N    " + string.Join("  ", links.Select(l => $"{l.Item1,30}")));
        foreach (int n in new[] { 2, 4, 8, 16, 32 })
            say($"  {n,-4} " + string.Join("  ", links.Select(l =>
            {
                double comm = copies + Bus(n) * bytes / l.Item2;
                return string.Create(CultureInfo.InvariantCulture, $"{n * step / (step + comm),20:F1}x ({comm:F2} s comm)");
            })));
    }

    static double Slowest(Communicator world, double seconds)
    {
        Span<double> v = [seconds];
        world.AllReduce(v, ReduceOperation.Max);
        return v[0];
    }
}
