namespace Bert4Sharp.Diffusion;

using Bert4Sharp.Diffusion.Data;
using Bert4Sharp.Diffusion.Metrics;
using TorchSharp;
using static TorchSharp.torch;

/// <summary>Options of <see cref="GradientFlow.Run"/>.</summary>
public sealed record GradientFlowOptions
{
    /// <summary>Particles.</summary>
    public int Particles { get; init; } = 256;
    /// <summary>Euler steps of the flow.</summary>
    public int Steps { get; init; } = 400;
    /// <summary>Step size.</summary>
    public double StepSize { get; init; } = 0.01;
    /// <summary>Kernel bandwidth of the particles' density estimate.</summary>
    public double Bandwidth { get; init; } = 0.2;
    /// <summary>Seed.</summary>
    public int Seed { get; init; } = 42;
    /// <summary>Report the exact W2 to the target every this many steps.</summary>
    public int ReportEvery { get; init; } = 100;

    /// <summary>Checks ranges.</summary>
    /// <exception cref="ArgumentException">A bad value, named.</exception>
    public void Validate()
    {
        if (Particles < 2 || Steps < 1 || ReportEvery < 1) throw new ArgumentException($"gradient flow needs ≥ 2 particles, ≥ 1 step and a report interval ≥ 1; got {Particles}, {Steps}, {ReportEvery}");
        if (!(StepSize > 0 && Bandwidth > 0)) throw new ArgumentException($"step size and bandwidth must be > 0, got {StepSize} and {Bandwidth}");
    }
}

/// <summary>
/// The gradient-flow demo of Su Jianlin's "梯度流：探索通往最小值之路": particles follow the Wasserstein gradient flow of
/// KL(p_t ‖ q) towards the eight-Gaussian target q, dx/dt = ∇ln q(x) − ∇ln p_t(x). The target's score is exact (the
/// mixture's density is known); the particles' own score ∇ln p_t comes from a Gaussian kernel density estimate of the
/// particles themselves, so the flow both pulls the cloud onto the modes and spreads it within them. The exact W2 between
/// the particles and an equal number of target samples is reported along the way.
/// </summary>
public static class GradientFlow
{
    /// <summary>ln q for the eight Gaussians (σ = 0.1, radius 2) at points (B, 2), up to a constant.</summary>
    public static Tensor TargetLogDensity(Tensor x)
    {
        using var scope = torch.NewDisposeScope();
        var angles = torch.arange(8, dtype: ScalarType.Float32) * (Math.PI / 4);
        var centres = torch.stack([angles.cos() * 2, angles.sin() * 2], 1);              // (8, 2)
        var d2 = (x.unsqueeze(1) - centres.unsqueeze(0)).pow(2).sum(2);                   // (B, 8)
        return torch.logsumexp(-d2 / (2 * 0.01), 1).MoveToOuterDisposeScope();            // σ² = 0.01
    }

    /// <summary>Runs the flow from N(0, I); returns the final particles (B, 2) and (step, W2) along the way.</summary>
    public static (Tensor Particles, IReadOnlyList<(int Step, double W2)> Trace) Run(GradientFlowOptions options, Action<string>? log = null)
    {
        options.Validate();
        var generator = new Generator((ulong)options.Seed);
        var x = torch.randn([options.Particles, 2], generator: generator);
        using var target = ToyData.Sample(ToyDistribution.EightGaussians, options.Particles, options.Seed + 1);
        var trace = new List<(int, double)> { (0, SampleQuality.Wasserstein2(x, target)) };
        log?.Invoke($"step 0: exact W2 to the target {trace[0].Item2:F4}");
        double h2 = options.Bandwidth * options.Bandwidth;
        for (int step = 1; step <= options.Steps; step++)
        {
            Tensor next;
            using (var scope = torch.NewDisposeScope())
            {
                var p = x.detach().requires_grad_(true);
                // ln q(x) − ln p̂(x), p̂ the kernel density of the (fixed) particles: its gradient is the velocity.
                var kde = torch.logsumexp(-(p.unsqueeze(1) - x.detach().unsqueeze(0)).pow(2).sum(2) / (2 * h2), 1);
                var objective = (TargetLogDensity(p) - kde).sum();
                var grad = torch.autograd.grad([objective], [p])[0];
                next = (x + options.StepSize * grad).detach().MoveToOuterDisposeScope();
            }
            x.Dispose();
            x = next;
            if (step % options.ReportEvery == 0 || step == options.Steps)
            {
                double w = SampleQuality.Wasserstein2(x, target);
                trace.Add((step, w));
                log?.Invoke($"step {step}: exact W2 to the target {w:F4}");
            }
        }
        return (x, trace);
    }
}
