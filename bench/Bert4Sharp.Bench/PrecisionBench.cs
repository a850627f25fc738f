namespace Bert4Sharp.Bench;

using System.Diagnostics;
using System.Globalization;
using Bert4Sharp.Models;
using Bert4Sharp.Runtime;
using Bert4Sharp.Training;
using TorchSharp;
using static TorchSharp.torch;

/// <summary>
/// fp32 against bf16 and fp16 on this machine, and which path each took (native or emulated, from the hardware
/// detection <c>--precision auto</c> uses):
///   dotnet run -c Release --project bench/Bert4Sharp.Bench -- precision [--steps N] [--budget SECONDS] [--cuda]
/// (1) a 1024³ matmul per type, (2) a training step of RoFormerV2 4 × 256 at batch 32 × 64 (MLM, AdamW, fp32 master
/// weights; fp16 with dynamic loss scaling), the three precisions interleaved step by step on the same batches, each
/// 16-bit side stopping once it has spent the time budget (an emulated path is 20-30× slower here, so it gets fewer
/// steps: the loss comparison is then at that step), (3) the same model's inference forward pass.
/// </summary>
static class PrecisionBench
{
    public static int Run(string[] args)
    {
        int steps = BenchArgs.Get(args, "--steps", 60);
        double budget = BenchArgs.Get(args, "--budget", 120.0);
        var device = CPU;
        if (args.Contains("--cuda"))
        {
            try { torch.InitializeDeviceType(DeviceType.CUDA); device = CUDA; }
            catch (Exception e) when (e is InvalidOperationException or DllNotFoundException or EntryPointNotFoundException or TypeInitializationException)
            {
                Console.Error.WriteLine($"--cuda: TorchSharp could not load a CUDA libtorch ({e.Message}). TorchSharp 0.107 needs libtorch 2.10 CUDA " +
                    "libraries on the loader path (bench/gpu-precision.sh puts PyTorch's there); TorchSharp-cuda-linux is not on this NuGet copy.");
                return 2;
            }
        }
        var hw = HardwareSupport.Current;
        Console.WriteLine($"hardware: {hw.Describe()}; flags from {hw.Source}; {torch.get_num_threads()} threads");
        var auto = PrecisionPolicy.Resolve(Precision.Auto, device, training: true);
        Console.WriteLine($"--precision auto here: {auto.Name} ({auto.Reason})");
        var kinds = new[] { Precision.Fp32, Precision.Bf16, Precision.Fp16 };
        var plans = kinds.ToDictionary(k => k, k => PrecisionPolicy.Resolve(k, device, training: true));
        string Path(Precision k) => plans[k].Native ? "native" : "emulated";

        // 1. Matmul throughput per type.
        var gflops = new Dictionary<Precision, double>();
        foreach (var k in kinds)
        {
            using var a = torch.randn(1024, 1024, device: device).to(PrecisionPolicy.ScalarTypeOf(k));
            using var b = torch.randn(1024, 1024, device: device).to(PrecisionPolicy.ScalarTypeOf(k));
            var t = Measure.Time(() => { using var c = a.mm(b); _ = c.sum().ToSingle(); }, 1, 3);
            gflops[k] = 2.0 * 1024 * 1024 * 1024 / t.Min() / 1e9;
        }
        Console.WriteLine("matmul 1024³: " + string.Join(", ", kinds.Select(k => $"{PrecisionPolicy.NameOf(k)} {gflops[k]:F1} GFLOP/s ({Path(k)}, {gflops[k] / gflops[Precision.Fp32]:F2}x fp32)")));

        // 2. Training steps, interleaved.
        var runs = kinds.ToDictionary(k => k, k => new Side(k, plans[k], device));
        var batches = Enumerable.Range(0, 4).Select(i => TrainingBench.Batch(32, 64, 100 + i, device)).ToList();
        foreach (var r in runs.Values) r.Train(batches[0]);                                    // warm-up, untimed
        for (int s = 0; s < steps; s++)
            foreach (var r in runs.Values)
                if (r.Precision == Precision.Fp32 || r.Spent < budget) r.Timed(batches[s % batches.Count]);
        double f32 = Measure.Median(runs[Precision.Fp32].Times);
        foreach (var r in runs.Values)
        {
            double t = Measure.Median(r.Times);
            int n = r.Times.Count;
            int last = Math.Min(10, n);
            double fp32Loss = runs[Precision.Fp32].Losses.Take(n).TakeLast(last).Average();
            double loss = r.Losses.TakeLast(last).Average();
            // "Equal within noise": the same tolerance the CI test of 16-bit training uses (0.05 + 2 % of the fp32 loss).
            string verdict = r.Precision == Precision.Fp32 ? "" : Math.Abs(loss - fp32Loss) <= 0.05 + 0.02 * Math.Abs(fp32Loss) ? "; loss curve matches fp32" : "; LOSS DIFFERS FROM FP32";
            Console.WriteLine(
                $"training step, {PrecisionPolicy.NameOf(r.Precision)} ({Path(r.Precision)}): {t * 1e3:F0} ms median of {n} steps = {f32 / t:F2}x fp32 speed; " +
                $"mean loss of steps {n - last + 1}-{n}: {loss:F3} vs fp32 {fp32Loss:F3} at the same steps{verdict}" +
                (r.Optimizer.Options.LossScaling is null ? "" : $"; loss scale {r.Optimizer.LossScale:G3}, {r.Optimizer.OverflowSkips} overflow skips"));
        }

        // 3. Inference forward pass (eval mode, no grad), interleaved.
        var forward = kinds.ToDictionary(k => k, _ => new List<double>());
        using (torch.no_grad())
        {
            foreach (var r in runs.Values) r.Model.eval();
            var (ids, _, mask) = batches[0];
            for (int round = 0; round < 6; round++)
                foreach (var r in runs.Values)
                {
                    if (r.Precision != Precision.Fp32 && round > 2 && forward[r.Precision].Sum() > budget / 4) continue;
                    var sw = Stopwatch.StartNew();
                    using (var scope = torch.NewDisposeScope()) r.Model.Encode(ids, null, mask);
                    if (round > 0) forward[r.Precision].Add(sw.Elapsed.TotalSeconds);
                }
        }
        double f32f = Measure.Median(forward[Precision.Fp32]);
        Console.WriteLine("inference forward, batch 32 x 64: " + string.Join(", ", kinds.Where(k => forward[k].Count > 0)
            .Select(k => $"{PrecisionPolicy.NameOf(k)} {Measure.Median(forward[k]) * 1e3:F0} ms ({Path(k)}, {f32f / Measure.Median(forward[k]):F2}x fp32 speed)")));
        foreach (var r in runs.Values) r.Optimizer.Dispose();
        return 0;
    }

    /// <summary>One precision's model, optimizer, step times and losses.</summary>
    sealed class Side
    {
        public Side(Precision precision, PrecisionPlan plan, Device device)
        {
            Precision = precision;
            (Model, Optimizer) = TrainingBench.Bert(4, 256, 4, 1024, family: "roformer_v2", plan: plan, device: device);
        }

        public Precision Precision { get; }
        public TransformerModel Model { get; }
        public Training.Optimizer Optimizer { get; }
        public List<double> Times { get; } = [];
        public List<double> Losses { get; } = [];
        public double Spent => Times.Sum();

        public double Train((Tensor Ids, Tensor Labels, Tensor Mask) batch)
        {
            using var scope = torch.NewDisposeScope();
            var (loss, _, _) = MaskedLanguageModeling.Loss(Model, batch.Ids, batch.Labels, batch.Mask);
            (Optimizer.LossScale == 1 ? loss : loss * Optimizer.LossScale).backward();
            Optimizer.Step();
            Optimizer.ZeroGrad();
            return loss.ToDouble();
        }

        public void Timed((Tensor Ids, Tensor Labels, Tensor Mask) batch)
        {
            var sw = Stopwatch.StartNew();
            Losses.Add(Train(batch));
            Times.Add(sw.Elapsed.TotalSeconds);
        }
    }
}
