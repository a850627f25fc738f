namespace Bert4Sharp.Diffusion;

using System.Globalization;
using Bert4Sharp.Checkpoints;
using Bert4Sharp.Diffusion.Data;
using Bert4Sharp.Diffusion.Methods;
using Bert4Sharp.Training;
using TorchSharp;
using static TorchSharp.torch;

/// <summary>Options of <see cref="DiffusionTraining.Run"/> (<c>b4s diffusion train</c>).</summary>
public sealed record DiffusionTrainingOptions
{
    /// <summary>ddpm, rf or pfgm (reflow: rf).</summary>
    public string Method { get; init; } = "ddpm";
    /// <summary>mnist, 8gaussians, moons or checkerboard.</summary>
    public string Data { get; init; } = "mnist";
    /// <summary>Directory of the MNIST IDX files (for <c>mnist</c>).</summary>
    public string? DataDirectory { get; init; }
    /// <summary>Where <c>diffusion.json</c>, <c>model.safetensors</c> and the trainer's checkpoint go.</summary>
    public string Output { get; init; } = "";
    /// <summary>Wall-clock budget of this run; null for none (then <see cref="MaxSteps"/> is needed).</summary>
    public double? Minutes { get; init; }
    /// <summary>Step limit (all runs of the directory together); null for none.</summary>
    public long? MaxSteps { get; init; }
    /// <summary>Batch size.</summary>
    public int BatchSize { get; init; } = 64;
    /// <summary>Adam's learning rate.</summary>
    public double LearningRate { get; init; } = 5e-4;
    /// <summary>EMA momentum of the saved weights; null to save the raw weights.</summary>
    public double? EmaMomentum { get; init; } = 0.999;
    /// <summary>Seed of data order, noise and initialisation.</summary>
    public int Seed { get; init; } = 42;
    /// <summary>U-Net channels per level (images).</summary>
    public IReadOnlyList<int> Channels { get; init; } = [32, 64, 64];
    /// <summary>Group-norm groups of the U-Net.</summary>
    public int Groups { get; init; } = 8;
    /// <summary>MLP width (toys).</summary>
    public int Width { get; init; } = 128;
    /// <summary>MLP layers (toys).</summary>
    public int Layers { get; init; } = 3;
    /// <summary>Points of a toy training set.</summary>
    public int ToyCount { get; init; } = 10_000;
    /// <summary>MNIST images held out of training (for the metrics; <see cref="Mnist.Split"/>).</summary>
    public int HeldOut { get; init; } = 1000;
    /// <summary>Trainer checkpoint every this many steps.</summary>
    public long CheckpointEverySteps { get; init; } = 250;
    /// <summary>Continue the run in <see cref="Output"/>.</summary>
    public bool Resume { get; init; }
    /// <summary>Replace a previous run in <see cref="Output"/>.</summary>
    public bool Overwrite { get; init; }
    /// <summary>Reflow: a trained rectified-flow model directory whose (noise, sample) pairs this run trains on, starting from its weights.</summary>
    public string? ReflowFrom { get; init; }
    /// <summary>Reflow pairs to generate.</summary>
    public int ReflowPairs { get; init; } = 2000;
    /// <summary>Euler steps of the ODE that generates reflow pairs.</summary>
    public int ReflowPairSteps { get; init; } = 100;
    /// <summary>
    /// Poisson flow: data points whose field makes each step's targets (the batch plus random others; PFGM's "large
    /// batch", 4,096 in its CIFAR-10 runs). At least the batch size.
    /// </summary>
    public int Charges { get; init; } = 1024;
    /// <summary>Poisson flow's settings; null: <see cref="PoissonFlowOptions.ForData"/> of the training data's dimension and mean norm.</summary>
    public PoissonFlowOptions? Pfgm { get; init; }

    /// <summary>Checks the options; names the field and value.</summary>
    /// <exception cref="ArgumentException">A bad value.</exception>
    public void Validate()
    {
        MethodNames.Parse(Method);
        if (!Data.Equals("mnist", StringComparison.OrdinalIgnoreCase) && ToyData.TryParse(Data) is null)
            throw new ArgumentException($"unknown data '{Data}': use mnist, 8gaussians, moons or checkerboard");
        if (string.IsNullOrWhiteSpace(Output)) throw new ArgumentException("an output directory is needed (--output)");
        if (Minutes is null && MaxSteps is null) throw new ArgumentException("give a time budget (--minutes) or a step limit (--max-steps)");
        if (Minutes is double m && !(m > 0)) throw new ArgumentException($"--minutes must be > 0, got {m}");
        if (MaxSteps is long s && s < 1) throw new ArgumentException($"--max-steps must be ≥ 1, got {s}");
        if (BatchSize < 1) throw new ArgumentException($"the batch size must be ≥ 1, got {BatchSize}");
        if (!(LearningRate > 0)) throw new ArgumentException($"the learning rate must be > 0, got {LearningRate}");
        if (ReflowFrom is not null && MethodNames.Parse(Method) != MethodKind.RectifiedFlow) throw new ArgumentException("reflow (--reflow-from) needs --method rf");
        if (ReflowPairs < 1 || ReflowPairSteps < 1) throw new ArgumentException($"reflow pairs and their ODE steps must be ≥ 1, got {ReflowPairs} and {ReflowPairSteps}");
        if (Charges < 1) throw new ArgumentException($"--charges must be ≥ 1, got {Charges}");
        Pfgm?.Validate();
    }
}

/// <summary>What a training run did.</summary>
/// <param name="Model">The model directory.</param>
/// <param name="Training">The trainer's result.</param>
/// <param name="Parameters">Network parameters.</param>
/// <param name="Examples">Training examples (images, points or reflow pairs).</param>
public sealed record DiffusionTrainingResult(string Model, TrainingResult Training, long Parameters, int Examples)
{
    /// <summary>Steps per second of this run.</summary>
    public double StepsPerSecond => Training.StepsThisRun / Math.Max(Training.Elapsed.TotalSeconds, 1e-9);
}

/// <summary>Trains a diffusion model through the shared <see cref="Trainer{T}"/> (checkpoints, exact resume, progress bar, curves).</summary>
public static class DiffusionTraining
{
    /// <summary>The file that caches reflow pairs in the output directory.</summary>
    public const string PairsFile = "reflow_pairs.safetensors";

    /// <summary>Trains, then writes the model (EMA weights when kept) to <see cref="DiffusionTrainingOptions.Output"/>.</summary>
    /// <exception cref="ArgumentException">Bad options.</exception>
    /// <exception cref="IOException">The output holds a run and neither resume nor overwrite was asked for; data files missing or corrupt.</exception>
    public static DiffusionTrainingResult Run(DiffusionTrainingOptions options, Action<string> log, ProgressDisplay display = ProgressDisplay.Lines)
    {
        options.Validate();
        TrainingOutput.EnsureUsable(options.Output, options.Resume, options.Overwrite);
        torch.manual_seed(options.Seed);
        var toy = ToyData.TryParse(options.Data);
        Tensor data;
        if (toy is ToyDistribution d) data = ToyData.Sample(d, options.ToyCount, options.Seed);
        else
        {
            string dir = options.DataDirectory ?? throw new ArgumentException("mnist needs its directory (--data-dir, e.g. ../shared/data/mnist)");
            var set = Mnist.Load(dir);
            var (train, held) = Mnist.Split(set.Count, options.HeldOut);
            log($"MNIST: {set.Count} images in {dir} (the official test split; the training split is not available): training on {train.Length}, {held.Length} held out for the metrics");
            data = set.Images(train);
        }
        long[] shape = data.shape[1..];
        bool pfgm = MethodNames.Parse(options.Method) == MethodKind.PoissonFlow;
        var config = new DiffusionConfig
        {
            Pfgm = pfgm ? PoissonFlowSettings(options, data) : null,
            Method = MethodNames.Name(MethodNames.Parse(options.Method)), Data = toy is ToyDistribution t ? ToyData.Name(t) : "mnist",
            Shape = [.. shape.Select(x => (int)x)], Channels = options.Channels, Groups = options.Groups, Width = options.Width, Layers = options.Layers,
        };
        DiffusionModel model;
        Tensor? pairNoise = null;
        if (options.ReflowFrom is string from)
        {
            model = DiffusionModel.Load(from);
            if (model.Method.Kind != MethodKind.RectifiedFlow) throw new ArgumentException($"{from} is a {model.Config.Method} model; reflow needs a rectified-flow (rf) model");
            if (!model.Config.Shape.SequenceEqual(config.Shape)) throw new ArgumentException($"{from} was trained on shape [{string.Join(", ", model.Config.Shape)}] but --data {options.Data} has [{string.Join(", ", config.Shape)}]");
            var source = data;                                                           // only its shape was needed
            (pairNoise, data) = ReflowPairs(model, options, log);
            source.Dispose();
            model.Update(c => c with { Reflow = c.Reflow + 1 });
            log($"reflow {model.Config.Reflow}: training on {data.shape[0]} (noise, sample) pairs of {from}, starting from its weights");
        }
        else model = new DiffusionModel(config);
        using var network = model.Network;
        if (model.Config.Pfgm is PoissonFlowOptions po)
            log($"pfgm settings: {po.Describe()}; field of {Math.Min(options.Charges, data.shape[0])} charges per step");
        log($"{model.Config.Method} on {model.Config.Data}: {model.ParameterCount:N0} parameters, batch {options.BatchSize}, lr {options.LearningRate.ToString(CultureInfo.InvariantCulture)}, " +
            $"{torch.get_num_threads()} torch thread(s)");

        using var optimizer = new Adam(network.named_parameters(), new OptimizerOptions
        {
            LearningRate = options.LearningRate, EmaMomentum = options.EmaMomentum, ClipGradientNorm = 1.0,
        });
        var method = model.Method;
        var trainer = new Trainer<int>(network, optimizer, (batch, ctx) =>
        {
            using var index = torch.tensor(batch.Select(i => (long)i).ToArray());
            var x = data.index_select(0, index);
            var loss = pairNoise is not null ? RectifiedFlow.PairLoss(model.Call, pairNoise.index_select(0, index), x)
                : method is PoissonFlow pf ? pf.Loss(model.Call, x, Charges(data, x, batch, options.Charges, ctx.Random))
                : method.Loss(model.Call, x);
            return new StepResult(loss);
        }, new TrainerOptions
        {
            Epochs = int.MaxValue, MaxSteps = options.MaxSteps, TimeBudget = options.Minutes is double m ? TimeSpan.FromMinutes(m) : null,
            Batching = new BatchingOptions { BatchSize = options.BatchSize, DropLast = true }, Seed = options.Seed, OutputDirectory = options.Output,
            CheckpointEverySteps = options.CheckpointEverySteps, Resume = options.Resume, Overwrite = options.Overwrite, LogEverySteps = 50,
            Progress = display, Log = display == ProgressDisplay.Bar ? null : log,
        });
        int examples = (int)data.shape[0];
        var result = trainer.Fit(Enumerable.Range(0, examples).ToList());
        model.Update(c => c with { Steps = (options.ReflowFrom is null ? 0 : c.Steps) + result.Steps });
        bool ema = options.EmaMomentum is not null && optimizer.Iterations > 0;
        if (ema) optimizer.ApplyEma();
        try { model.Save(options.Output); }
        finally { if (ema) optimizer.RestoreWeights(); }
        var r = new DiffusionTrainingResult(options.Output, result, model.ParameterCount, examples);
        log($"{result.StopReason}: {result.Steps} steps ({result.StepsThisRun} this run, {r.StepsPerSecond:F2} steps/s); final loss " +
            $"{(result.Losses.Count > 0 ? result.Losses.TakeLast(Math.Min(50, result.Losses.Count)).Average().ToString("F4", CultureInfo.InvariantCulture) : "n/a")} (mean of the last 50 steps); " +
            $"model{(ema ? " (EMA weights)" : "")} in {options.Output}");
        data.Dispose();
        pairNoise?.Dispose();
        return r;
    }

    /// <summary>
    /// The field's charges: the batch <paramref name="x"/> and (charges − batch) other training points drawn without
    /// replacement by the step's seeded random (so a resumed run draws the same ones).
    /// </summary>
    static Tensor Charges(Tensor data, Tensor x, IReadOnlyList<int> batch, int charges, Random random)
    {
        int n = (int)data.shape[0], extra = Math.Min(charges, n) - batch.Count;
        if (extra <= 0) return x;
        var chosen = new HashSet<int>(batch);
        var ids = new List<long>(extra);
        while (ids.Count < extra)
        {
            int i = random.Next(n);
            if (chosen.Add(i)) ids.Add(i);
        }
        using var index = torch.tensor(ids.ToArray());
        using var others = data.index_select(0, index);
        return torch.cat([x, others], 0);
    }

    /// <summary>
    /// Poisson flow's settings for a run: a resumed run keeps those it started with; a new one takes the options', else
    /// <see cref="PoissonFlowOptions.ForData"/> of the training data's dimension and mean Euclidean norm.
    /// </summary>
    static PoissonFlowOptions? PoissonFlowSettings(DiffusionTrainingOptions options, Tensor data)
    {
        if (options.Resume && File.Exists(Path.Combine(options.Output, DiffusionModel.ConfigFile)))
            return DiffusionModel.ReadConfig(options.Output).Pfgm;
        if (options.Pfgm is PoissonFlowOptions given) return given;
        using var flat = data.flatten(1);                                                 // (examples, N)
        using var norms = flat.norm(1);
        using var mean = norms.mean();
        return PoissonFlowOptions.ForData(flat.shape[1], mean.item<float>());
    }

    /// <summary>(noise, ODE(noise)) pairs from a rectified flow, cached in the output directory (a resume reuses them).</summary>
    static (Tensor Noise, Tensor Samples) ReflowPairs(DiffusionModel model, DiffusionTrainingOptions options, Action<string> log)
    {
        string path = Path.Combine(options.Output, PairsFile);
        long[] shape = [options.ReflowPairs, .. model.Config.Shape.Select(s => (long)s)];
        if (File.Exists(path))
        {
            using var ck = Checkpoint.Open(path);
            if (ck.TryGetEntry("noise", out var n) && ck.TryGetEntry("samples", out var s) && n.Shape.SequenceEqual(shape) && s.Shape.SequenceEqual(shape))
            {
                log($"reflow pairs from {path}");
                return (ck.ReadTensor(n), ck.ReadTensor(s));
            }
            log($"{path} does not hold {options.ReflowPairs} pairs of this shape; generating them again");
        }
        log($"generating {options.ReflowPairs} reflow pairs with {options.ReflowPairSteps} Euler steps …");
        var generator = new Generator((ulong)(options.Seed + 1_000_003));
        var noise = model.Method.Prior(shape, generator);
        var samples = model.SampleFrom(options.ReflowPairs, (i, b) => noise.narrow(0, i, b), options.ReflowPairSteps, Sampler.Euler);
        SafetensorsWriter.Write(path, [TensorSource.From("noise", noise), TensorSource.From("samples", samples)]);
        return (noise, samples);
    }
}
