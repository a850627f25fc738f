namespace Bert4Sharp.Diffusion.Methods;

using TorchSharp;
using static TorchSharp.torch;

/// <summary>
/// Rectified flow (Liu, Gong &amp; Liu 2022; Su Jianlin's "生成扩散模型漫谈（十七）: 构建ODE的一般步骤（下）" and
/// "…（二十）… rectified flow: never simpler or more intuitive"): pair noise x₀ ~ N(0, I) with data x₁, walk the straight
/// line x_t = t·x₁ + (1 − t)·x₀, and regress the velocity v_θ(x_t, t) on x₁ − x₀. Sampling integrates dx/dt = v_θ from
/// t = 0 to 1 with Euler or Heun at any step count. Reflow retrains on pairs (x₀, ODE(x₀)) produced by the model itself,
/// which straightens the paths, so fewer steps suffice; <see cref="Straightness"/> measures it.
/// </summary>
public sealed class RectifiedFlow : GenerativeMethod
{
    /// <inheritdoc/>
    public override MethodKind Kind => MethodKind.RectifiedFlow;

    /// <inheritdoc/>
    public override IReadOnlyList<Sampler> Samplers { get; } = [Sampler.Euler, Sampler.Heun];

    /// <summary>x_t = t·x₁ + (1 − t)·x₀ for (B) times t.</summary>
    public static Tensor Interpolate(Tensor noise, Tensor data, Tensor t)
    {
        using var scope = torch.NewDisposeScope();
        var tt = PerSample(t.to(data.dtype), data);
        return (tt * data + (1 - tt) * noise).MoveToOuterDisposeScope();
    }

    /// <summary>The regression target x₁ − x₀.</summary>
    public static Tensor Target(Tensor noise, Tensor data) => data - noise;

    /// <inheritdoc/>
    public override Tensor Loss(DenoisingNetwork network, Tensor data, Generator? generator = null)
    {
        using var scope = torch.NewDisposeScope();
        var noise = torch.randn(data.shape, generator: generator, device: data.device);
        return PairLoss(network, noise, data, generator).MoveToOuterDisposeScope();
    }

    /// <summary>The loss on given pairs (noise, data): the first training uses independent pairs, reflow the model's own.</summary>
    public static Tensor PairLoss(DenoisingNetwork network, Tensor noise, Tensor data, Generator? generator = null)
    {
        using var scope = torch.NewDisposeScope();
        var t = torch.rand([data.shape[0]], generator: generator, device: data.device);
        var predicted = network(Interpolate(noise, data, t), t);
        return nn.functional.mse_loss(predicted, Target(noise, data)).MoveToOuterDisposeScope();
    }

    /// <summary>Euler: x + Δt·v(x, t).</summary>
    public static Tensor EulerStep(DenoisingNetwork network, Tensor x, double t, double dt) =>
        OdeUpdate((y, s) => network(y, Times(y, s)), x, t, dt, t + dt, heun: false);

    /// <summary>Heun: predictor x̃ = x + Δt·v(x, t), then x + Δt/2·(v(x, t) + v(x̃, t + Δt)).</summary>
    public static Tensor HeunStep(DenoisingNetwork network, Tensor x, double t, double dt) =>
        OdeUpdate((y, s) => network(y, Times(y, s)), x, t, dt, t + dt, heun: true);

    /// <inheritdoc/>
    public override Tensor SampleFrom(DenoisingNetwork network, Tensor noise, int steps, Sampler sampler, Generator? generator = null)
    {
        Check(steps, sampler);
        double dt = 1.0 / steps;
        return Iterate(noise, steps, (x, i) => sampler == Sampler.Heun ? HeunStep(network, x, i * dt, dt) : EulerStep(network, x, i * dt, dt));
    }

    /// <summary>
    /// The straightness of the flow's paths as the rectified-flow paper defines it, S = ∫₀¹ E‖(Z₁ − Z₀) − v(Z_t, t)‖² dt,
    /// estimated on an Euler path of <paramref name="steps"/> steps from <paramref name="noise"/>: the mean over steps and
    /// samples of the squared distance between the step's velocity and the end-to-end displacement (summed over dimensions).
    /// 0 for perfectly straight paths (one Euler step is then exact).
    /// </summary>
    /// <returns>S, and S divided by E‖Z₁ − Z₀‖² (scale-free).</returns>
    public static (double Straightness, double Relative) Straightness(DenoisingNetwork network, Tensor noise, int steps)
    {
        if (steps < 1) throw new ArgumentException($"straightness needs ≥ 1 step, got {steps}");
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        double dt = 1.0 / steps;
        var x = noise;
        var velocities = new List<Tensor>();
        for (int i = 0; i < steps; i++)
        {
            var v = network(x, Times(x, i * dt));
            velocities.Add(v);
            x = x + dt * v;
        }
        var displacement = (x - noise).flatten(1);                                        // (B, D)
        double s = 0;
        foreach (var v in velocities) s += (displacement - v.flatten(1)).pow(2).sum(1).mean().ToDouble();
        s /= steps;
        double norm = displacement.pow(2).sum(1).mean().ToDouble();
        return (s, s / Math.Max(norm, 1e-12));
    }
}
