namespace Bert4Sharp.Bench;

using System.Diagnostics;
using Bert4Sharp.Models;
using Bert4Sharp.Runtime;
using Bert4Sharp.Training;
using TorchSharp;
using static TorchSharp.torch;

/// <summary>
/// Training throughput against the matmul peak, trainer overhead against a bare loop, recompute memory and
/// time, fp32 against bf16 and fp16 (<see cref="PrecisionBench"/>) — all measured in the same run (no fair CPU peer exists here).
///   dotnet run -c Release --project bench/Bert4Sharp.Bench -- training [--quick]
/// Recompute memory, measured in a child process per setting (libtorch on the CPU has no allocator statistics, so
/// it is the process's resident set): what a training forward pass keeps resident for backward, and the peak
/// during backward (the kernel's high-water mark VmHWM, reset through /proc/self/clear_refs just before backward;
/// a thread sampling VmRSS every millisecond where the reset is not allowed, or with B4S_BENCH_RSS_SAMPLING=1). The two sides of every timed
/// comparison run interleaved (A B A B …).
/// </summary>
static class TrainingBench
{
    const int Vocab = 21128;

    public static int Run(string[] args)
    {
        if (args.Length >= 2 && args[0] == "--recompute-child") return RecomputeChild(args[1] == "on", int.Parse(args[2]), int.Parse(args[3]), args.Length > 4 ? int.Parse(args[4]) : 12);
        if (args.Length >= 1 && args[0] == "--recompute-memory")
        {
            // Only the recompute memory part, with a chosen size: training --recompute-memory BATCH SEQ [LAYERS].
            int b = int.Parse(args[1]), t = int.Parse(args[2]), layers = args.Length > 3 ? int.Parse(args[3]) : 12;
            Console.WriteLine(RecomputeMemory(b, t, layers));
            return 0;
        }
        bool quick = args.Contains("--quick");
        int threads = torch.get_num_threads();
        double peak = Measure.MatmulPeak();
        Console.WriteLine($"threads {threads}; large-matmul peak (2048³ fp32, best of {Measure.PeakSamples}): {peak:F1} GFLOP/s");

        // 1. BERT-base MLM training step (batch 16, seq 128, 15 % of positions predicted), forward + backward + AdamW.
        {
            var (model, opt) = Bert(12, 768, 12, 3072);
            var (ids, labels, mask) = Batch(16, 128, 1);
            var times = Measure.Time(() => Step(model, opt, ids, labels, mask), 1, quick ? 2 : 3);
            double t = Measure.Median(times);
            double flops = TrainingFlops(model.Config, 16, 128, labels.ne(-100).sum().ToInt64());
            Console.WriteLine($"BERT-base MLM training, batch 16 x 128: {t:F2} s/step, {16 * 128 / t:F0} tokens/s, {flops / t / 1e9:F1} GFLOP/s = {flops / t / 1e9 / peak:P0} of the matmul peak (target >= 50%)");
            opt.Dispose();
        }

        // 2. Trainer overhead: the same 40 steps of a small model through Fit and through a hand-written loop.
        {
            int steps = quick ? 20 : 40;
            var (bareRuns, fitRuns) = Measure.Interleave(() => SmallRun(steps, useTrainer: false), () => SmallRun(steps, useTrainer: true), 0, 3);
            double bare = Measure.Median(bareRuns), fit = Measure.Median(fitRuns);
            Console.WriteLine($"trainer overhead ({steps} steps, 4 x 256 RoFormerV2, batch 32 x 64): bare loop {bare:F2} s, Fit {fit:F2} s = {fit / bare - 1:+0.0%;-0.0%} (target <= +5%)");
        }

        // 3. Recompute: 12 x 768, seq 512, batch 4 — step time in this process, peak memory in child processes.
        {
            int batch = 4, seq = 512;
            var (model, opt) = Bert(12, 768, 12, 3072);
            var (ids, labels, mask) = Batch(batch, seq, 2);
            var (plainRuns, recomputeRuns) = Measure.InterleaveTimed(
                () => { model.Recompute = false; Step(model, opt, ids, labels, mask); },
                () => { model.Recompute = true; Step(model, opt, ids, labels, mask); }, 1, quick ? 1 : 2);
            double plain = Measure.Median(plainRuns), recompute = Measure.Median(recomputeRuns);
            opt.Dispose();
            Console.WriteLine($"recompute, 12 x 768, batch {batch} x {seq}: step {plain:F2} s -> {recompute:F2} s = {recompute / plain:F2}x time (target <= 1.35x)");
            Console.WriteLine(RecomputeMemory(batch, seq, 12));
        }

        // 4. fp32 vs bf16 vs fp16 (fp32 master weights), with the path each took on this hardware.
        PrecisionBench.Run(["--steps", quick ? "20" : "60", "--budget", quick ? "30" : "90"]);
        return 0;
    }

    /// <summary>A seeded MLM model and AdamW; with a 16-bit <paramref name="plan"/> the model is converted first and fp16 gets loss scaling.</summary>
    internal static (TransformerModel, Optimizer) Bert(int layers, int hidden, int heads, int inner, string family = "bert", PrecisionPlan? plan = null, Device? device = null)
    {
        torch.manual_seed(1);
        var config = new TransformerConfig
        {
            VocabSize = Vocab, HiddenSize = hidden, NumHiddenLayers = layers, NumAttentionHeads = heads, IntermediateSize = inner, MaxPositionEmbeddings = 512,
        };
        var model = TransformerModels.Build(config, null, ModelFamily.Get(family), Application.MaskedLM, new BuildOptions { Device = device ?? CPU }, out _);
        plan?.Apply(model);
        model.train();
        var opt = new Training.Adam(model.named_parameters().Select(p => (p.name, p.parameter)), new OptimizerOptions
        {
            LearningRate = 1e-4, WeightDecay = 0.01, LossScaling = DynamicLossScale.For(plan),
        });
        return (model, opt);
    }

    internal static (Tensor Ids, Tensor Labels, Tensor Mask) Batch(int b, int t, int seed, Device? device = null)
    {
        var g = new Random(seed);
        var ids = new long[b * t];
        var labels = new long[b * t];
        for (int i = 0; i < ids.Length; i++)
        {
            ids[i] = 1000 + g.Next(5000);
            labels[i] = g.NextDouble() < 0.15 ? ids[i] : -100;
        }
        return (torch.tensor(ids, [b, t], device: device), torch.tensor(labels, [b, t], device: device), torch.ones(b, t, dtype: ScalarType.Int64, device: device));
    }

    static void Step(TransformerModel model, Optimizer opt, Tensor ids, Tensor labels, Tensor mask)
    {
        using var scope = torch.NewDisposeScope();
        var (loss, _, _) = MaskedLanguageModeling.Loss(model, ids, labels, mask);
        loss.backward();
        opt.Step();
        opt.ZeroGrad();
    }

    /// <summary>Forward + backward ≈ 3 × forward multiply-adds × 2 FLOPs: dense layers, attention, and the MLM head on the predicted positions.</summary>
    static double TrainingFlops(TransformerConfig c, int b, int t, long predicted)
    {
        double h = c.HiddenSize, i = c.IntermediateSize;
        double encoder = 2.0 * b * t * c.NumHiddenLayers * (4 * h * h + 2 * h * i + 2 * t * h);
        double head = 2.0 * predicted * h * Vocab;
        return 3 * (encoder + head);
    }

    static List<(Tensor, Tensor, Tensor)> SmallBatches(int n) => Enumerable.Range(0, n).Select(i => Batch(32, 64, 100 + i)).ToList();

    static double SmallRun(int steps, bool useTrainer)
    {
        var (model, opt) = Bert(4, 256, 4, 1024, family: "roformer_v2");
        var batches = SmallBatches(steps);
        var sw = Stopwatch.StartNew();
        if (useTrainer)
        {
            var trainer = new Trainer<int>(model, opt, (b, _) =>
            {
                var (ids, labels, mask) = batches[b[0]];
                var (loss, correct, count) = MaskedLanguageModeling.Loss(model, ids, labels, mask);
                return new StepResult(loss, ids.numel(), new Dictionary<string, double> { ["mlm_accuracy"] = (double)correct / count });
            }, new TrainerOptions { Batching = new BatchingOptions { BatchSize = 1, Shuffle = false }, Progress = ProgressDisplay.None });
            trainer.Fit(Enumerable.Range(0, steps).ToList());
        }
        else
            foreach (var (ids, labels, mask) in batches)
            {
                using var scope = torch.NewDisposeScope();
                var (loss, correct, count) = MaskedLanguageModeling.Loss(model, ids, labels, mask);
                loss.backward();
                opt.Step();
                opt.ZeroGrad();
                _ = loss.ToDouble();
            }
        double t = sw.Elapsed.TotalSeconds;
        opt.Dispose();
        return t;
    }

    /// <summary>Both settings' memory, each in a fresh child process, as one report line.</summary>
    static string RecomputeMemory(int batch, int seq, int layers)
    {
        var plain = Child(false, batch, seq, layers);
        var recompute = Child(true, batch, seq, layers);
        string method = plain.Method == recompute.Method ? plain.Method : $"{plain.Method} / {recompute.Method}";
        return $"recompute memory, {layers} x 768, batch {batch} x {seq} (process resident set; libtorch CPU has no allocator statistics): " +
            $"kept for backward {plain.Kept / 1e6:F0} MB -> {recompute.Kept / 1e6:F0} MB = {(double)plain.Kept / Math.Max(1, recompute.Kept):F2}x less (target >= 3x); " +
            $"peak during backward {plain.Peak / 1e6:F0} MB -> {recompute.Peak / 1e6:F0} MB = {(double)plain.Peak / Math.Max(1, recompute.Peak):F2}x less (peak above the pre-forward baseline, {method})";
    }

    static (long Kept, long Peak, string Method) Child(bool recompute, int batch, int seq, int layers)
    {
        var psi = new ProcessStartInfo(Environment.ProcessPath!) { RedirectStandardOutput = true };
        foreach (var a in Environment.GetCommandLineArgs().Skip(1).TakeWhile(a => a != "training")) psi.ArgumentList.Add(a);
        if (Environment.ProcessPath!.EndsWith("dotnet", StringComparison.Ordinal)) psi.ArgumentList.Insert(0, typeof(TrainingBench).Assembly.Location);
        foreach (var a in new[] { "training", "--recompute-child", recompute ? "on" : "off", batch.ToString(), seq.ToString(), layers.ToString() }) psi.ArgumentList.Add(a);
        psi.Environment["MALLOC_MMAP_THRESHOLD_"] = "131072";
        using var p = Process.Start(psi)!;
        string output = p.StandardOutput.ReadToEnd();
        p.WaitForExit();
        var last = output.Trim().Split('\n')[^1].Split(' ', 3);
        if (p.ExitCode != 0 || last.Length != 3) throw new InvalidOperationException($"the recompute child failed (exit {p.ExitCode}): {output.Trim()}");
        return (long.Parse(last[0]), long.Parse(last[1]), last[2]);
    }

    /// <summary>
    /// In a fresh process whose large allocations are mmap'ed (so freed memory leaves the resident set at once):
    /// the resident memory a training forward pass keeps for the backward pass (activations), i.e. the growth
    /// of VmRSS from before the forward pass to just before backward, and the peak resident memory during
    /// backward above the same baseline. Prints "kept peak method".
    /// </summary>
    static int RecomputeChild(bool recompute, int batch, int seq, int layers)
    {
        var (model, opt) = Bert(layers, 768, 12, 3072);
        var (ids, labels, mask) = Batch(batch, seq, 2);
        model.Recompute = recompute;
        Step(model, opt, ids, labels, mask);          // warm-up: gradients and Adam's moments exist before the measurement
        GC.Collect();
        long baseline = Measure.Rss("VmRSS");
        using (var scope = torch.NewDisposeScope())
        {
            var (loss, _, _) = MaskedLanguageModeling.Loss(model, ids, labels, mask);
            long kept = Measure.Rss("VmRSS") - baseline;
            var (peak, method) = Measure.PeakDuring(() => loss.backward(), baseline);
            Console.WriteLine($"{kept} {peak} {method}");
        }
        return 0;
    }
}
