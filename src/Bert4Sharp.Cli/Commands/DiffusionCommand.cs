namespace Bert4Sharp.Cli;

using System.CommandLine;
using System.Globalization;
using Bert4Sharp.Diffusion;
using Bert4Sharp.Diffusion.Data;
using Bert4Sharp.Diffusion.Methods;
using Bert4Sharp.Diffusion.Metrics;
using Bert4Sharp.Runtime;
using Bert4Sharp.Training;

/// <summary>
/// <c>b4s diffusion</c>: train (DDPM, rectified flow, reflow, Poisson flow) on MNIST or 2-D toys, sample grids, train the
/// metric classifier, evaluate samples, and the gradient-flow demo (docs/diffusion.md).
/// </summary>
internal static class DiffusionCommand
{
    public static Command Create()
    {
        var cmd = new Command("diffusion", "Generative diffusion: DDPM, rectified flow (+ reflow), Poisson flow; sample grids and quality metrics (docs/diffusion.md)");
        cmd.Subcommands.Add(Train());
        cmd.Subcommands.Add(Sample());
        cmd.Subcommands.Add(Classifier());
        cmd.Subcommands.Add(Evaluate());
        cmd.Subcommands.Add(Flow());
        return cmd;
    }

    static Option<int?> Threads() => new("--threads") { Description = "libtorch CPU threads (default: libtorch's choice or OMP_NUM_THREADS)" };

    static Option<string> DataDir() => new("--data-dir") { Description = "Directory of the MNIST IDX files", DefaultValueFactory = _ => Path.Combine("..", "shared", "data", "mnist") };

    static void ApplyThreads(ParseResult r, Option<int?> threads)
    {
        if (r.GetValue(threads) is int t) TorchInfo.SetThreads(t);
    }

    static Command Train()
    {
        var method = new Option<string>("--method") { Description = "ddpm, rf or pfgm", Required = true };
        var data = new Option<string>("--data") { Description = "mnist, 8gaussians, moons or checkerboard", DefaultValueFactory = _ => "mnist" };
        var dataDir = DataDir();
        var output = new Option<string>("--output") { Description = "Model directory (diffusion.json, model.safetensors, checkpoint, metrics, curves)", Required = true };
        var minutes = new Option<double?>("--minutes") { Description = "Wall-clock budget of this run" };
        var maxSteps = new Option<long?>("--max-steps") { Description = "Step limit (all runs of the directory together)" };
        var batch = new Option<int>("--batch-size") { Description = "Batch size", DefaultValueFactory = _ => 64 };
        var lr = new Option<double?>("--learning-rate") { Description = "Adam learning rate (default 5e-4 for images, 1e-3 for toys)" };
        var channels = new Option<string>("--channels") { Description = "U-Net channels per level, comma-separated", DefaultValueFactory = _ => "32,64,64" };
        var seed = new Option<int>("--seed") { Description = "Seed", DefaultValueFactory = _ => 42 };
        var noEma = new Option<bool>("--no-ema") { Description = "Save the raw weights instead of their EMA (momentum 0.999)" };
        var resume = new Option<bool>("--resume") { Description = "Continue the run in --output" };
        var overwrite = new Option<bool>("--overwrite") { Description = "Replace a previous run in --output (otherwise refused)" };
        var reflowFrom = new Option<string?>("--reflow-from") { Description = "Reflow: train on (noise, sample) pairs of this rectified-flow model, starting from its weights" };
        var pairs = new Option<int>("--reflow-pairs") { Description = "Reflow pairs to generate", DefaultValueFactory = _ => 2000 };
        var pairSteps = new Option<int>("--reflow-pair-steps") { Description = "Euler steps that generate each reflow pair", DefaultValueFactory = _ => 100 };
        var charges = new Option<int>("--charges") { Description = "pfgm: training points whose field makes each step's targets (the batch and random others)", DefaultValueFactory = _ => 1024 };
        var pfgmSettings = new Option<string>("--pfgm-settings")
            { Description = "pfgm: 'data' scales M, z_max, γ and the prior's radius to the data's dimension and norm; 'cifar10' keeps the PFGM code's CIFAR-10 values", DefaultValueFactory = _ => "data" };
        var threads = Threads();
        var cmd = new Command("train", "Train a DDPM, rectified-flow or Poisson-flow model (checkpoints, --resume, progress bar)")
            { method, data, dataDir, output, minutes, maxSteps, batch, lr, channels, seed, noEma, resume, overwrite, reflowFrom, pairs, pairSteps, charges, pfgmSettings, threads };
        cmd.SetAction(CliErrors.Wrap(r =>
        {
            ApplyThreads(r, threads);
            bool toy = ToyData.TryParse(r.GetValue(data)!) is not null;
            var options = new DiffusionTrainingOptions
            {
                Method = r.GetValue(method)!, Data = r.GetValue(data)!, DataDirectory = r.GetValue(dataDir), Output = Path.GetFullPath(r.GetValue(output)!),
                Minutes = r.GetValue(minutes), MaxSteps = r.GetValue(maxSteps), BatchSize = r.GetValue(batch),
                LearningRate = r.GetValue(lr) ?? (toy ? 1e-3 : 5e-4), Channels = ParseInts(r.GetValue(channels)!, "--channels"), Seed = r.GetValue(seed),
                EmaMomentum = r.GetValue(noEma) ? null : 0.999, Resume = r.GetValue(resume), Overwrite = r.GetValue(overwrite),
                ReflowFrom = r.GetValue(reflowFrom) is string f ? Path.GetFullPath(f) : null, ReflowPairs = r.GetValue(pairs), ReflowPairSteps = r.GetValue(pairSteps),
                Charges = r.GetValue(charges),
                Pfgm = r.GetValue(pfgmSettings) switch
                {
                    "data" => null,
                    "cifar10" => new PoissonFlowOptions(),
                    var other => throw new ArgumentException($"unknown --pfgm-settings '{other}': use data or cifar10"),
                },
            };
            DiffusionTraining.Run(options, Console.WriteLine, Console.IsOutputRedirected ? ProgressDisplay.Lines : ProgressDisplay.Bar);
            return CliErrors.Ok;
        }));
        return cmd;
    }

    static Command Sample()
    {
        var model = new Option<string>("--model") { Description = "Model directory", Required = true };
        var steps = new Option<int>("--steps") { Description = "Sampling steps", DefaultValueFactory = _ => 100 };
        var sampler = new Option<string?>("--sampler") { Description = "ancestral or ddim (ddpm); euler or heun (rf, pfgm); default: the method's first" };
        var count = new Option<int>("--count") { Description = "Samples (images: a grid of 8 columns)", DefaultValueFactory = _ => 64 };
        var seed = new Option<int>("--seed") { Description = "Seed", DefaultValueFactory = _ => 0 };
        var output = new Option<string>("--output") { Description = "PNG to write (a grid of images, or a scatter of 2-D points)", Required = true };
        var clip = Clip();
        var threads = Threads();
        var cmd = new Command("sample", "Draw samples from a trained model into a PNG") { model, steps, sampler, count, seed, output, clip, threads };
        cmd.SetAction(CliErrors.Wrap(r =>
        {
            ApplyThreads(r, threads);
            if (r.GetValue(steps) < 1) throw new ArgumentException($"--steps must be ≥ 1, got {r.GetValue(steps)}");
            using var m = DiffusionModel.Load(r.GetValue(model)!);
            ApplyClip(r, clip, m);
            var s = r.GetValue(sampler) is string name ? MethodNames.ParseSampler(name) : m.Method.Samplers[0];
            using var samples = m.Sample(r.GetValue(count), r.GetValue(steps), s, r.GetValue(seed));
            string path = r.GetValue(output)!;
            if (m.Config.IsToy) PointPlot.Write(path, samples);
            else ImageGrid.Write(path, samples);
            Console.WriteLine($"{r.GetValue(count)} {m.Config.Method} samples ({MethodNames.Name(s)}, {r.GetValue(steps)} steps) → {path}");
            return CliErrors.Ok;
        }));
        return cmd;
    }

    static Command Classifier()
    {
        var dataDir = DataDir();
        var output = new Option<string>("--output") { Description = "Directory for classifier.safetensors", Required = true };
        var epochs = new Option<int>("--epochs") { Description = "Epochs over the 9,000 training images", DefaultValueFactory = _ => 3 };
        var seed = new Option<int>("--seed") { Description = "Seed", DefaultValueFactory = _ => 42 };
        var threads = Threads();
        var cmd = new Command("classifier", "Train the MNIST metric classifier on the training part; report its held-out accuracy") { dataDir, output, epochs, seed, threads };
        cmd.SetAction(CliErrors.Wrap(r =>
        {
            ApplyThreads(r, threads);
            var set = Mnist.Load(r.GetValue(dataDir)!);
            var (c, _) = MnistClassifier.Train(set, r.GetValue(epochs), r.GetValue(seed), Console.WriteLine);
            using (c) c.Save(r.GetValue(output)!);
            return CliErrors.Ok;
        }));
        return cmd;
    }

    static Command Evaluate()
    {
        var model = new Option<string>("--model") { Description = "Model directory", Required = true };
        var classifier = new Option<string?>("--classifier") { Description = "Metric classifier directory (MNIST models)" };
        var dataDir = DataDir();
        var steps = new Option<string>("--steps") { Description = "Step counts, comma-separated", DefaultValueFactory = _ => "100,10" };
        var samplers = new Option<string?>("--sampler") { Description = "Samplers, comma-separated (default: all of the method's)" };
        var count = new Option<int>("--count") { Description = "Samples per row", DefaultValueFactory = _ => 1000 };
        var seed = new Option<int>("--seed") { Description = "Seed", DefaultValueFactory = _ => 0 };
        var straightness = new Option<int>("--straightness-steps") { Description = "rf: Euler steps of the straightness estimate (0: skip)", DefaultValueFactory = _ => 100 };
        var floor = new Option<bool>("--floor") { Description = "MNIST: also the real-vs-real Fréchet distances" };
        var clip = Clip();
        var threads = Threads();
        var cmd = new Command("evaluate", "Sample at several step counts and measure: Fréchet distance / classes / confidence (MNIST) or exact W2 (toys); rf straightness")
            { model, classifier, dataDir, steps, samplers, count, seed, straightness, floor, clip, threads };
        cmd.SetAction(CliErrors.Wrap(r =>
        {
            ApplyThreads(r, threads);
            using var m = DiffusionModel.Load(r.GetValue(model)!);
            ApplyClip(r, clip, m);
            var stepList = ParseInts(r.GetValue(steps)!, "--steps");
            var samplerList = r.GetValue(samplers) is string s ? s.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(MethodNames.ParseSampler).ToList() : [.. m.Method.Samplers];
            MnistClassifier? c = null;
            TorchSharp.torch.Tensor? realFeatures = null;
            try
            {
                if (!m.Config.IsToy)
                {
                    c = MnistClassifier.Load(r.GetValue(classifier) ?? throw new ArgumentException("MNIST models need --classifier (train it with `b4s diffusion classifier`)"));
                    var set = Mnist.Load(r.GetValue(dataDir)!);
                    using (var real = set.Images(Mnist.Split(set.Count).HeldOut))
                    {
                        var (features, probabilities) = c.Embed(real);
                        probabilities.Dispose();
                        realFeatures = features;
                    }
                    if (r.GetValue(floor))
                    {
                        var (halves, trainHeld, trainCount, heldCount) = DiffusionEvaluation.RealFloor(c, set, realFeatures, r.GetValue(count));
                        Console.WriteLine(FormattableString.Invariant($"real vs real FD: held-out halves ({heldCount / 2} vs {heldCount / 2}) {halves:F2}; {trainCount} training vs {heldCount} held-out images {trainHeld:F2}"));
                    }
                }
                Console.WriteLine($"{m.Config.Method}{(m.Config.Reflow > 0 ? $" reflow {m.Config.Reflow}" : "")} on {m.Config.Data}: {m.ParameterCount:N0} parameters, {m.Config.Steps} training steps");
                if (m.Method.Kind == MethodKind.RectifiedFlow && r.GetValue(straightness) > 0)
                {
                    using var noise = m.Method.Prior([Math.Min(r.GetValue(count), 500), .. m.Config.Shape.Select(x => (long)x)], new TorchSharp.torch.Generator((ulong)r.GetValue(seed) + 17));
                    var (st, rel) = RectifiedFlow.Straightness(m.Call, noise, r.GetValue(straightness));
                    Console.WriteLine(FormattableString.Invariant($"straightness S = E∫‖(Z1 − Z0) − v(Zt, t)‖² dt over {noise.shape[0]} paths of {r.GetValue(straightness)} Euler steps: {st:F4} (relative to E‖Z1 − Z0‖²: {rel:F5})"));
                }
                DiffusionEvaluation.Run(m, samplerList, stepList, r.GetValue(count), r.GetValue(seed), c, realFeatures, Console.WriteLine);
            }
            finally { c?.Dispose(); realFeatures?.Dispose(); }
            return CliErrors.Ok;
        }));
        return cmd;
    }

    static Command Flow()
    {
        var particles = new Option<int>("--particles") { Description = "Particles", DefaultValueFactory = _ => 256 };
        var steps = new Option<int>("--steps") { Description = "Euler steps", DefaultValueFactory = _ => 400 };
        var stepSize = new Option<double>("--step-size") { Description = "Step size", DefaultValueFactory = _ => 0.01 };
        var bandwidth = new Option<double>("--bandwidth") { Description = "Kernel bandwidth of the particles' density", DefaultValueFactory = _ => 0.2 };
        var seed = new Option<int>("--seed") { Description = "Seed", DefaultValueFactory = _ => 42 };
        var output = new Option<string?>("--output") { Description = "PNG of the final particles" };
        var cmd = new Command("gradient-flow", "Particles following the Wasserstein gradient flow of KL to eight Gaussians; exact W2 along the way") { particles, steps, stepSize, bandwidth, seed, output };
        cmd.SetAction(CliErrors.Wrap(r =>
        {
            var (x, _) = GradientFlow.Run(new GradientFlowOptions
            {
                Particles = r.GetValue(particles), Steps = r.GetValue(steps), StepSize = r.GetValue(stepSize), Bandwidth = r.GetValue(bandwidth), Seed = r.GetValue(seed),
            }, Console.WriteLine);
            using (x) if (r.GetValue(output) is string path) { PointPlot.Write(path, x); Console.WriteLine($"particles → {path}"); }
            return CliErrors.Ok;
        }));
        return cmd;
    }

    static Option<string?> Clip() =>
        new("--clip-denoised") { Description = "ddpm: on or off — clip the predicted x̂0 to [-1, 1] while sampling (default: on for images, off for 2-D toys)" };

    static void ApplyClip(ParseResult r, Option<string?> clip, DiffusionModel m)
    {
        if (r.GetValue(clip) is not string v) return;
        if (m.Method.Kind != MethodKind.Ddpm) throw new ArgumentException($"--clip-denoised applies to ddpm models; {m.Config.Method} has no x̂0 to clip");
        m.ClipDenoised = v.ToLowerInvariant() switch
        {
            "on" => true,
            "off" => false,
            _ => throw new ArgumentException($"--clip-denoised takes on or off, got '{v}'"),
        };
    }

    static int[] ParseInts(string text, string option)
    {
        var parts = text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        if (parts.Length == 0) throw new ArgumentException($"{option} needs at least one number, got '{text}'");
        return [.. parts.Select(p => int.TryParse(p, NumberStyles.Integer, CultureInfo.InvariantCulture, out int v) && v >= 1
            ? v : throw new ArgumentException($"{option} takes positive integers, got '{p}'"))];
    }
}
