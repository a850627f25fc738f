namespace Bert4Sharp.Diffusion.Methods;

using TorchSharp;
using static TorchSharp.torch;

/// <summary>The network a method trains: <c>(x, time)</c> → output, x of the data's shape, time <c>(B)</c> in about [0, 1].</summary>
public delegate Tensor DenoisingNetwork(Tensor x, Tensor time);

/// <summary>The generative methods.</summary>
public enum MethodKind
{
    /// <summary>DDPM (Ho et al. 2020): ε-prediction, ancestral or DDIM sampling.</summary>
    Ddpm,
    /// <summary>Rectified flow (Liu et al. 2022): velocity regression on straight lines, Euler / Heun ODE sampling, reflow.</summary>
    RectifiedFlow,
    /// <summary>Poisson flow (PFGM, Xu et al. 2022): the normalised field of the data as charges in one more dimension.</summary>
    PoissonFlow,
}

/// <summary>How samples are drawn.</summary>
public enum Sampler
{
    /// <summary>DDPM's ancestral (stochastic) sampling, on a respaced schedule when steps &lt; T.</summary>
    Ancestral,
    /// <summary>DDIM with η = 0: deterministic, any number of steps.</summary>
    Ddim,
    /// <summary>Euler's method on the ODE.</summary>
    Euler,
    /// <summary>Heun's second-order method on the ODE (two network calls a step, one on the last).</summary>
    Heun,
}

/// <summary>Names on the command line and in <c>diffusion.json</c>.</summary>
public static class MethodNames
{
    /// <summary>ddpm, rf, pfgm.</summary>
    public static string Name(MethodKind kind) => kind switch
    {
        MethodKind.Ddpm => "ddpm",
        MethodKind.RectifiedFlow => "rf",
        _ => "pfgm",
    };

    /// <summary>ancestral, ddim, euler, heun.</summary>
    public static string Name(Sampler sampler) => sampler switch
    {
        Sampler.Ancestral => "ancestral",
        Sampler.Ddim => "ddim",
        Sampler.Euler => "euler",
        _ => "heun",
    };

    /// <summary>Parses ddpm | rf | pfgm.</summary>
    /// <exception cref="ArgumentException">Another name.</exception>
    public static MethodKind Parse(string name) => name.Trim().ToLowerInvariant() switch
    {
        "ddpm" => MethodKind.Ddpm,
        "rf" or "rectified-flow" => MethodKind.RectifiedFlow,
        "pfgm" or "poisson-flow" => MethodKind.PoissonFlow,
        _ => throw new ArgumentException($"unknown diffusion method '{name}': use ddpm, rf or pfgm"),
    };

    /// <summary>Parses ancestral | ddim | euler | heun.</summary>
    /// <exception cref="ArgumentException">Another name.</exception>
    public static Sampler ParseSampler(string name) => name.Trim().ToLowerInvariant() switch
    {
        "ancestral" or "ddpm" => Sampler.Ancestral,
        "ddim" => Sampler.Ddim,
        "euler" => Sampler.Euler,
        "heun" => Sampler.Heun,
        _ => throw new ArgumentException($"unknown sampler '{name}': use ancestral or ddim (ddpm), euler or heun (rf, pfgm)"),
    };
}

/// <summary>
/// A way to turn noise into data: its training loss on a batch and its sampler. Data are tensors <c>(B, …)</c> (images
/// <c>(B, C, H, W)</c> in [−1, 1], or 2-D points <c>(B, 2)</c>); the network sees the same shape.
/// </summary>
public abstract class GenerativeMethod
{
    /// <summary>Which method.</summary>
    public abstract MethodKind Kind { get; }

    /// <summary>Channels (dimension 1) the network outputs beyond the data's: 1 for Poisson flow's extra field component.</summary>
    public virtual int ExtraOutputs => 0;

    /// <summary>The samplers it supports; the first is the default.</summary>
    public abstract IReadOnlyList<Sampler> Samplers { get; }

    /// <summary>The training loss (a scalar with a graph) on a batch of data.</summary>
    /// <param name="network">The network being trained.</param>
    /// <param name="data">(B, …) a batch of training data.</param>
    /// <param name="generator">The noise's generator (null: the global one).</param>
    public abstract Tensor Loss(DenoisingNetwork network, Tensor data, Generator? generator = null);

    /// <summary>Draws the starting noise of <see cref="SampleFrom"/> for a batch of the given shape.</summary>
    public virtual Tensor Prior(long[] shape, Generator? generator = null, Device? device = null) =>
        torch.randn(shape, generator: generator, device: device);

    /// <summary>Integrates from <paramref name="noise"/> (drawn by <see cref="Prior"/>) to data, without gradients.</summary>
    /// <param name="network">The trained network (in eval mode).</param>
    /// <param name="noise">(B, …) the starting point.</param>
    /// <param name="steps">Sampling steps (≥ 1).</param>
    /// <param name="sampler">One of <see cref="Samplers"/>.</param>
    /// <param name="generator">Noise of stochastic samplers.</param>
    /// <exception cref="ArgumentException">Steps below 1, or a sampler the method does not have.</exception>
    public abstract Tensor SampleFrom(DenoisingNetwork network, Tensor noise, int steps, Sampler sampler, Generator? generator = null);

    /// <summary><see cref="Prior"/> then <see cref="SampleFrom"/>.</summary>
    public Tensor Sample(DenoisingNetwork network, long[] shape, int steps, Sampler sampler, Generator? generator = null, Device? device = null)
    {
        using var noise = Prior(shape, generator, device);
        return SampleFrom(network, noise, steps, sampler, generator);
    }

    /// <summary>Rejects steps below 1 and samplers the method lacks.</summary>
    protected void Check(int steps, Sampler sampler)
    {
        if (steps < 1) throw new ArgumentException($"sampling steps must be ≥ 1, got {steps}");
        if (!Samplers.Contains(sampler))
            throw new ArgumentException($"{MethodNames.Name(Kind)} has no {MethodNames.Name(sampler)} sampler; use {string.Join(" or ", Samplers.Select(MethodNames.Name))}");
    }

    /// <summary>A (B) tensor of one value, on <paramref name="like"/>'s device.</summary>
    protected static Tensor Times(Tensor like, double value) => torch.full([like.shape[0]], value, dtype: ScalarType.Float32, device: like.device);

    /// <summary>Reshapes a (B) tensor to broadcast over (B, …).</summary>
    protected static Tensor PerSample(Tensor values, Tensor like) =>
        values.reshape([like.shape[0], .. Enumerable.Repeat(1L, (int)like.dim() - 1)]);

    /// <summary>
    /// One ODE step of size <paramref name="dt"/> from time <paramref name="t"/>: Euler x + Δt·f(x, t), or Heun with the
    /// predictor x̃ = x + Δt·f(x, t) and x + Δt/2·(f(x, t) + f(x̃, <paramref name="tNext"/>)).
    /// </summary>
    protected static Tensor OdeUpdate(Func<Tensor, double, Tensor> velocity, Tensor x, double t, double dt, double tNext, bool heun)
    {
        using var scope = torch.NewDisposeScope();
        var v = velocity(x, t);
        var next = x + dt * v;
        if (heun) next = x + dt / 2 * (v + velocity(next, tNext));
        return next.MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Runs an update <paramref name="steps"/> times inside its own dispose scope, keeping only the current state alive
    /// (the caller's <paramref name="start"/> is never disposed).
    /// </summary>
    protected static Tensor Iterate(Tensor start, int steps, Func<Tensor, int, Tensor> update)
    {
        using var noGrad = torch.no_grad();
        var x = start;
        for (int i = 0; i < steps; i++)
        {
            Tensor next;
            using (var scope = torch.NewDisposeScope()) next = update(x, i).MoveToOuterDisposeScope();
            if (!ReferenceEquals(x, start)) x.Dispose();
            x = next;
        }
        return ReferenceEquals(x, start) ? start.clone() : x;
    }
}
