namespace Bert4Sharp.Diffusion.Methods;

using TorchSharp;
using static TorchSharp.torch;

/// <summary>The β schedule of DDPM's forward process.</summary>
public enum NoiseSchedule
{
    /// <summary>β linear from <see cref="DdpmOptions.BetaStart"/> to <see cref="DdpmOptions.BetaEnd"/> (Ho et al. 2020; the post's choice).</summary>
    Linear,
    /// <summary>ᾱ_t = cos²(((t/T) + s)/(1 + s)·π/2) normalised, s = 0.008, β clipped at 0.999 (Nichol &amp; Dhariwal 2021).</summary>
    Cosine,
}

/// <summary>Options of <see cref="Ddpm"/>.</summary>
public sealed record DdpmOptions
{
    /// <summary>T, the forward process's steps.</summary>
    public int Timesteps { get; init; } = 1000;
    /// <summary>β₁ of the linear schedule.</summary>
    public double BetaStart { get; init; } = 1e-4;
    /// <summary>β_T of the linear schedule.</summary>
    public double BetaEnd { get; init; } = 0.02;
    /// <summary>The schedule.</summary>
    public NoiseSchedule Schedule { get; init; } = NoiseSchedule.Linear;
    /// <summary>
    /// Clip the predicted x̂_0 = (x_t − √(1 − ᾱ_t)·ε̂)/√ᾱ_t to [−1, 1] before the posterior mean (ancestral) or the DDIM
    /// step, as Ho et al.'s reference sampler (<c>clip_denoised=True</c>) and DDIM do for image data in [−1, 1]. Off here
    /// (the method does not know its data); <see cref="DiffusionModel"/> turns it on for images and leaves it off for the
    /// unbounded 2-D toys.
    /// </summary>
    public bool ClipDenoised { get; init; }

    /// <summary>Checks ranges.</summary>
    /// <exception cref="ArgumentException">A bad value, named.</exception>
    public void Validate()
    {
        if (Timesteps < 1) throw new ArgumentException($"DDPM timesteps must be ≥ 1, got {Timesteps}");
        if (!(BetaStart > 0 && BetaEnd < 1 && BetaStart <= BetaEnd)) throw new ArgumentException($"DDPM betas need 0 < start ≤ end < 1, got {BetaStart} and {BetaEnd}");
    }
}

/// <summary>
/// DDPM as Su Jianlin's "生成扩散模型漫谈（一）: DDPM = 拆楼 + 建楼" tells it: tearing the building down is
/// x_t = √α_t·x_{t−1} + √β_t·ε, whose closed form is q(x_t | x_0) = N(√ᾱ_t·x_0, (1 − ᾱ_t)·I); rebuilding learns ε from x_t
/// (‖ε − ε_θ(x_t, t)‖²) and walks back with the posterior mean plus σ_t noise (ancestral sampling). With fewer steps the
/// schedule is respaced to a subsequence τ (ᾱ kept, β'_i = 1 − ᾱ_{τ_i}/ᾱ_{τ_{i−1}}); DDIM (post 四) takes the same
/// subsequence deterministically: x_prev = √ᾱ_prev·x̂_0 + √(1 − ᾱ_prev)·ε̂.
/// Timestep index t ∈ [0, T) is the paper's t + 1; the network sees time t/T.
/// </summary>
public sealed class Ddpm : GenerativeMethod
{
    readonly double[] alphaBar;
    readonly Tensor alphaBarTensor;                                                      // float64 on the CPU, moved to the data's device per call

    /// <summary>Creates the method.</summary>
    /// <exception cref="ArgumentException">Bad options.</exception>
    public Ddpm(DdpmOptions? options = null)
    {
        Options = options ?? new DdpmOptions();
        Options.Validate();
        Betas = MakeBetas(Options);
        alphaBar = new double[Betas.Count];
        double product = 1;
        for (int t = 0; t < Betas.Count; t++) alphaBar[t] = product *= 1 - Betas[t];
        alphaBarTensor = torch.tensor(alphaBar, dtype: ScalarType.Float64).DetachFromDisposeScope();
    }

    /// <summary>The options.</summary>
    public DdpmOptions Options { get; }

    /// <summary>β_t, t = 0 … T−1.</summary>
    public IReadOnlyList<double> Betas { get; }

    /// <summary>ᾱ_t = Π_{s ≤ t}(1 − β_s).</summary>
    public IReadOnlyList<double> AlphaBar => alphaBar;

    /// <inheritdoc/>
    public override MethodKind Kind => MethodKind.Ddpm;

    /// <inheritdoc/>
    public override IReadOnlyList<Sampler> Samplers { get; } = [Sampler.Ancestral, Sampler.Ddim];

    static double[] MakeBetas(DdpmOptions o)
    {
        int n = o.Timesteps;
        if (o.Schedule == NoiseSchedule.Linear)
            return [.. Enumerable.Range(0, n).Select(t => n == 1 ? o.BetaStart : o.BetaStart + (o.BetaEnd - o.BetaStart) * t / (n - 1))];
        const double s = 0.008;
        double F(double t) => Math.Pow(Math.Cos((t / n + s) / (1 + s) * Math.PI / 2), 2);
        return [.. Enumerable.Range(0, n).Select(t => Math.Min(0.999, 1 - F(t + 1) / F(t)))];
    }

    /// <summary>The closed form q(x_t | x_0): √ᾱ_t·x_0 + √(1 − ᾱ_t)·ε.</summary>
    /// <param name="x0">(B, …) data.</param>
    /// <param name="t">(B) int64 timestep indices.</param>
    /// <param name="noise">(B, …) ε.</param>
    public Tensor Noised(Tensor x0, Tensor t, Tensor noise)
    {
        using var scope = torch.NewDisposeScope();
        var ab = alphaBarTensor.to(x0.device).index_select(0, t.to(ScalarType.Int64)).to(x0.dtype);
        var a = PerSample(ab, x0);
        return (a.sqrt() * x0 + (1 - a).sqrt() * noise).MoveToOuterDisposeScope();
    }

    /// <summary>Applies x_t = √(1 − β_t)·x_{t−1} + √β_t·ε one step (the iterated process the closed form summarises).</summary>
    public Tensor ForwardStep(Tensor x, int t, Tensor noise) => Math.Sqrt(1 - Betas[t]) * x + Math.Sqrt(Betas[t]) * noise;

    /// <inheritdoc/>
    public override Tensor Loss(DenoisingNetwork network, Tensor data, Generator? generator = null)
    {
        using var scope = torch.NewDisposeScope();
        var t = torch.randint(0, Options.Timesteps, [data.shape[0]], generator: generator, dtype: ScalarType.Int64, device: data.device);
        var noise = torch.randn(data.shape, generator: generator, device: data.device);
        var predicted = network(Noised(data, t, noise), t.to(ScalarType.Float32) / Options.Timesteps);
        return nn.functional.mse_loss(predicted, noise).MoveToOuterDisposeScope();
    }

    /// <summary>The respaced timesteps for <paramref name="steps"/> sampling steps, ascending: τ_i = ⌊(i+1)·T/S⌋ − 1 (S = T gives 0 … T−1; S = 1 gives T−1).</summary>
    /// <exception cref="ArgumentException">Steps outside [1, T].</exception>
    public int[] Respaced(int steps)
    {
        if (steps < 1 || steps > Options.Timesteps) throw new ArgumentException($"DDPM sampling steps must be in [1, {Options.Timesteps}] (the trained T), got {steps}");
        return [.. Enumerable.Range(0, steps).Select(i => (int)((long)(i + 1) * Options.Timesteps / steps) - 1)];
    }

    /// <summary>
    /// One ancestral step from timestep <paramref name="t"/> to <paramref name="previous"/> (−1: to the data), on the respaced
    /// β' = 1 − ᾱ_t/ᾱ_prev: x̂_0 = (x − √(1 − ᾱ_t)·ε̂)/√ᾱ_t (clipped to [−1, 1] when <see cref="DdpmOptions.ClipDenoised"/>),
    /// posterior mean μ = √ᾱ_prev·β'/(1 − ᾱ_t)·x̂_0 + √(1 − β')·(1 − ᾱ_prev)/(1 − ᾱ_t)·x (unclipped this equals
    /// (x − β'/√(1 − ᾱ_t)·ε̂)/√(1 − β')), σ² = β'·(1 − ᾱ_prev)/(1 − ᾱ_t) (the posterior's β̃), x_prev = μ + σ·z; no noise on the last step.
    /// </summary>
    public Tensor AncestralStep(Tensor x, Tensor predictedNoise, int t, int previous, Tensor noise)
    {
        using var scope = torch.NewDisposeScope();
        double ab = alphaBar[t], abPrev = previous >= 0 ? alphaBar[previous] : 1.0;
        double beta = 1 - ab / abPrev;
        var x0 = PredictedData(x, predictedNoise, ab);
        var mean = Math.Sqrt(abPrev) * beta / (1 - ab) * x0 + Math.Sqrt(1 - beta) * (1 - abPrev) / (1 - ab) * x;
        if (previous < 0) return mean.MoveToOuterDisposeScope();
        double sigma = Math.Sqrt(beta * (1 - abPrev) / (1 - ab));
        return (mean + sigma * noise).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// One DDIM step (η = 0): x̂_0 = (x − √(1 − ᾱ_t)·ε̂)/√ᾱ_t (clipped to [−1, 1] when <see cref="DdpmOptions.ClipDenoised"/>),
    /// ε̂ re-derived from the clipped x̂_0 as (x − √ᾱ_t·x̂_0)/√(1 − ᾱ_t), x_prev = √ᾱ_prev·x̂_0 + √(1 − ᾱ_prev)·ε̂ (ᾱ_prev = 1 past the end).
    /// </summary>
    public Tensor DdimStep(Tensor x, Tensor predictedNoise, int t, int previous)
    {
        using var scope = torch.NewDisposeScope();
        double ab = alphaBar[t], abPrev = previous >= 0 ? alphaBar[previous] : 1.0;
        var x0 = PredictedData(x, predictedNoise, ab);
        var eps = Options.ClipDenoised ? (x - Math.Sqrt(ab) * x0) / Math.Sqrt(1 - ab) : predictedNoise;
        return (Math.Sqrt(abPrev) * x0 + Math.Sqrt(1 - abPrev) * eps).MoveToOuterDisposeScope();
    }

    /// <summary>x̂_0 = (x − √(1 − ᾱ)·ε̂)/√ᾱ, clipped to [−1, 1] when <see cref="DdpmOptions.ClipDenoised"/>.</summary>
    Tensor PredictedData(Tensor x, Tensor predictedNoise, double ab)
    {
        var x0 = (x - Math.Sqrt(1 - ab) * predictedNoise) / Math.Sqrt(ab);
        return Options.ClipDenoised ? x0.clamp(-1.0, 1.0) : x0;
    }

    /// <inheritdoc/>
    public override Tensor SampleFrom(DenoisingNetwork network, Tensor noise, int steps, Sampler sampler, Generator? generator = null)
    {
        Check(steps, sampler);
        var taus = Respaced(steps);
        return Iterate(noise, steps, (x, i) =>
        {
            int k = steps - 1 - i, t = taus[k], previous = k > 0 ? taus[k - 1] : -1;
            var eps = network(x, Times(x, (double)t / Options.Timesteps));
            return sampler == Sampler.Ddim ? DdimStep(x, eps, t, previous)
                : AncestralStep(x, eps, t, previous, torch.randn(x.shape, generator: generator, device: x.device));
        });
    }
}
