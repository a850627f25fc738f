namespace Bert4Sharp.Diffusion.Methods;

using System.Globalization;
using System.Text.Json.Serialization;
using TorchSharp;
using static TorchSharp.torch;

/// <summary>
/// Options of <see cref="PoissonFlow"/>. The defaults are the PFGM code's CIFAR-10 settings (σ 0.01, τ 0.03, γ 5, z_max 50,
/// prior radius ≤ 4,000) with M 291, what its hyper-parameter calculator gives at CIFAR-10's dimension and norm; <see cref="ForData"/> scales M, z_max and the radius bound to another dimension and data
/// norm with the relations of the PFGM authors' hyper-parameter calculator. Saved in <c>diffusion.json</c>.
/// </summary>
public sealed record PoissonFlowOptions
{
    /// <summary>σ of the perturbation's Gaussian ε = (ε_x, ε_z).</summary>
    [JsonPropertyName("sigma")] public double Sigma { get; init; } = 0.01;
    /// <summary>τ: the perturbation scales by (1 + τ)^m.</summary>
    [JsonPropertyName("tau")] public double Tau { get; init; } = 0.03;
    /// <summary>M: m ~ U[0, M].</summary>
    [JsonPropertyName("m")] public double M { get; init; } = 291;
    /// <summary>
    /// Confine the norms (PFGM appendix B.1.1): a perturbation whose |ε_z| is below σ/2 draws m from U[0, 0.7·M] instead, so
    /// points low above the plane do not also lie far out along it (outside the region the prior starts from).
    /// </summary>
    [JsonPropertyName("restrict_m")] public bool RestrictM { get; init; } = true;
    /// <summary>γ in the target −√N·E/(‖E‖ + γ), E the c(ỹ)-normalised field (in data units, see <see cref="PoissonFlow.Target"/>).</summary>
    [JsonPropertyName("gamma")] public double Gamma { get; init; } = 5;
    /// <summary>z where sampling starts (the prior's plane).</summary>
    [JsonPropertyName("z_max")] public double ZMax { get; init; } = 50;
    /// <summary>z where sampling stops (the data sit at z = 0).</summary>
    [JsonPropertyName("z_min")] public double ZMin { get; init; } = 1e-3;
    /// <summary>Below this z the sampler replaces the predicted z component by the one implied by the x components (appendix B.2.3); 0: never.</summary>
    [JsonPropertyName("z_exp")] public double ZExp { get; init; } = 5;
    /// <summary>The prior's radius is clipped to [1, this] (the code's upper_norm).</summary>
    [JsonPropertyName("max_prior_radius")] public double MaxPriorRadius { get; init; } = 4000;

    /// <summary>
    /// Settings for N-dimensional data of typical norm <paramref name="dataNorm"/> with the PFGM authors' relations
    /// (their hyperparam_calculator, D = N + 1): M = ⌊0.75·ln(norm²/(2√D·σ²))/ln(1 + τ)⌋ + 1, z_max = √(2/π)·σ·(1 + τ)^M
    /// (the mean height of the largest perturbation), radius bound √D·σ·(1 + τ)^M (its typical horizontal reach);
    /// γ = 5·norm/32 (5 at CIFAR-10's norm of 32) and z_exp = z_max/10 (5 at z_max 50) keep the CIFAR ratios.
    /// </summary>
    /// <exception cref="ArgumentException">A dimension below 1 or a norm that is not positive.</exception>
    public static PoissonFlowOptions ForData(long dimension, double dataNorm, double sigma = 0.01, double tau = 0.03)
    {
        if (dimension < 1 || !(dataNorm > 0)) throw new ArgumentException($"PFGM settings need a dimension ≥ 1 and a data norm > 0, got {dimension} and {dataNorm}");
        double d = dimension + 1;
        double m = Math.Max(1, Math.Floor(0.75 * Math.Log(dataNorm * dataNorm / (2 * Math.Sqrt(d) * sigma * sigma)) / Math.Log(1 + tau)) + 1);
        double reach = sigma * Math.Pow(1 + tau, m);
        double zMax = Math.Sqrt(2 / Math.PI) * reach;
        return new PoissonFlowOptions
        {
            Sigma = sigma, Tau = tau, M = m, Gamma = 5 * dataNorm / 32, ZMax = zMax, ZExp = zMax / 10,
            MaxPriorRadius = Math.Max(1, Math.Sqrt(d) * reach),
        };
    }

    /// <summary>One line for logs: every setting.</summary>
    public string Describe()
    {
        static string N(double v) => v.ToString("G4", CultureInfo.InvariantCulture);
        return $"σ {N(Sigma)}, τ {N(Tau)}, M {N(M)}{(RestrictM ? " (0.7·M when |ε_z| < σ/2)" : "")}, γ {N(Gamma)}, " +
            $"z {N(ZMax)} → {N(ZMin)} (z_exp {N(ZExp)}), prior radius ≤ {N(MaxPriorRadius)}";
    }

    /// <summary>Checks ranges.</summary>
    /// <exception cref="ArgumentException">A bad value, named.</exception>
    public void Validate()
    {
        if (!(Sigma > 0 && Tau > 0 && M >= 0 && Gamma >= 0)) throw new ArgumentException($"PFGM needs σ > 0, τ > 0, M ≥ 0, γ ≥ 0; got {Sigma}, {Tau}, {M}, {Gamma}");
        if (!(ZMin > 0 && ZMax > ZMin)) throw new ArgumentException($"PFGM needs 0 < z_min < z_max, got {ZMin} and {ZMax}");
        if (!(ZExp >= 0)) throw new ArgumentException($"PFGM's z_exp must be ≥ 0, got {ZExp}");
        if (!(MaxPriorRadius >= 1)) throw new ArgumentException($"PFGM's MaxPriorRadius must be ≥ 1, got {MaxPriorRadius}");
    }
}

/// <summary>
/// Poisson flow generative models (Xu et al. 2022), as Su Jianlin's "生成扩散模型漫谈（十三）: 从万有引力到扩散模型" explains
/// them: put the N-dimensional data on the plane z = 0 of an (N+1)-dimensional space and let them attract like masses with
/// the (N+1)-dimensional law of gravitation, E(x̃) ∝ Σ_j (x̃ − x̃_j)/‖x̃ − x̃_j‖^(N+1). Far away the field is that of a single
/// point, so field lines leaving the data end uniformly on a large hemisphere; following them back from there gives data.
/// Training: perturb data points upward (<see cref="Perturb"/>), compute there the empirical field of a large batch of
/// charges normalised by c(ỹ) and learn −√N·E/(‖E‖ + γ) (<see cref="Target"/>). Sampling: start on the plane z = z_max
/// from the projected uniform hemisphere (<see cref="Prior"/>) and integrate dx/d(ln z) = z·v_x/v_z down to z_min
/// (<see cref="OdeStep"/>; v_z taken from the x part below z_exp, <see cref="Drift"/>).
/// The network outputs the data's channels plus one channel whose mean is v_z; it sees time (ln z − ln z_min)/(ln z_max − ln z_min).
/// </summary>
public sealed class PoissonFlow : GenerativeMethod
{
    /// <summary>Creates the method.</summary>
    /// <exception cref="ArgumentException">Bad options.</exception>
    public PoissonFlow(PoissonFlowOptions? options = null)
    {
        Options = options ?? new PoissonFlowOptions();
        Options.Validate();
    }

    /// <summary>The options.</summary>
    public PoissonFlowOptions Options { get; }

    /// <inheritdoc/>
    public override MethodKind Kind => MethodKind.PoissonFlow;

    /// <inheritdoc/>
    public override int ExtraOutputs => 1;

    /// <inheritdoc/>
    public override IReadOnlyList<Sampler> Samplers { get; } = [Sampler.Euler, Sampler.Heun];

    /// <summary>The network's time input for heights z: (ln z − ln z_min)/(ln z_max − ln z_min).</summary>
    public Tensor TimeOf(Tensor z) => (z.log() - Math.Log(Options.ZMin)) / (Math.Log(Options.ZMax) - Math.Log(Options.ZMin));

    /// <summary>
    /// The perturbation of PFGM's Algorithm 1: y = x + ‖ε_x‖·(1 + τ)^m·u, z = |ε_z|·(1 + τ)^m, u a uniform unit direction.
    /// </summary>
    /// <param name="data">(B, …) data points.</param>
    /// <param name="m">(B) exponents in [0, M].</param>
    /// <param name="epsX">(B, …) ε_x ~ N(0, σ²I).</param>
    /// <param name="epsZ">(B) ε_z ~ N(0, σ²).</param>
    /// <param name="direction">(B, …) any nonzero vectors; normalised to u (Gaussian ones give a uniform direction).</param>
    /// <returns>The perturbed points (B, …) and heights (B).</returns>
    public Tensor[] Perturb(Tensor data, Tensor m, Tensor epsX, Tensor epsZ, Tensor direction)
    {
        using var scope = torch.NewDisposeScope();
        var scale = torch.pow(1 + Options.Tau, m.to(data.dtype));                          // (B)
        var radius = epsX.flatten(1).norm(1) * scale;                                      // (B)
        var u = direction / PerSample(direction.flatten(1).norm(1), direction);
        var y = data + PerSample(radius, data) * u;
        var z = epsZ.abs() * scale;
        return [y.MoveToOuterDisposeScope(), z.MoveToOuterDisposeScope()];
    }

    /// <summary>
    /// The training target at perturbed points (y, z), PFGM's Algorithm 1: the empirical field of <paramref name="charges"/>
    /// (data at z = 0) normalised by c(ỹ) = 1/Σ_j ‖ỹ − x̃_j‖^−(N+1), E = Σ_j w_j·(ỹ − x̃_j) with w = softmax_j(−(N+1)·ln‖ỹ − x̃_j‖)
    /// (weights that sum to 1, so ‖E‖ is a distance in data units and N = 784 does not underflow), returned as
    /// −√N·E/(‖E‖ + γ) over the N + 1 components.
    /// </summary>
    /// <param name="y">(B, …) perturbed points.</param>
    /// <param name="z">(B) their heights.</param>
    /// <param name="charges">(C, …) the data points whose field it is (the batch, or a larger batch of which it is part).</param>
    /// <returns>(B, N + 1): the x components flattened, then the z component.</returns>
    public Tensor Target(Tensor y, Tensor z, Tensor charges)
    {
        using var scope = torch.NewDisposeScope();
        var yf = y.flatten(1).to(ScalarType.Float64);                                      // (B, N)
        var cf = charges.flatten(1).to(ScalarType.Float64);                                // (C, N)
        long n = yf.shape[1];
        var zf = z.to(ScalarType.Float64);
        // ‖ỹ − x̃_j‖² = ‖y‖² + ‖x_j‖² − 2·y·x_j + z² (the charges sit at z = 0), without a (B, C, N) difference tensor.
        var squared = (yf.pow(2).sum(1, keepdim: true) + cf.pow(2).sum(1).unsqueeze(0) - 2 * yf.matmul(cf.t())
            + zf.pow(2).unsqueeze(1)).clamp_min(1e-300);                                   // (B, C)
        var w = (-(n + 1) / 2.0 * squared.log()).softmax(1);                               // c(ỹ)/‖ỹ − x̃_j‖^(N+1)
        var ex = yf - w.matmul(cf);                                                        // Σ_j w_j (y − x_j): (B, N)
        var field = torch.cat([ex, zf.unsqueeze(1)], 1);                                   // Σ_j w_j (z − 0) = z
        var target = -Math.Sqrt(n) * field / (field.norm(1, keepdim: true) + Options.Gamma);
        return target.to(y.dtype).MoveToOuterDisposeScope();
    }

    /// <inheritdoc/>
    public override Tensor Loss(DenoisingNetwork network, Tensor data, Generator? generator = null) => Loss(network, data, data, generator);

    /// <summary>
    /// The loss on <paramref name="data"/> with the field of <paramref name="charges"/> (PFGM trains on a small batch but
    /// computes its targets from a large one that contains it: less biased); m, ε and the directions come from
    /// <paramref name="generator"/>.
    /// </summary>
    public Tensor Loss(DenoisingNetwork network, Tensor data, Tensor charges, Generator? generator = null)
    {
        using var scope = torch.NewDisposeScope();
        long b = data.shape[0];
        var m = torch.rand([b], generator: generator, device: data.device) * Options.M;
        var epsX = torch.randn(data.shape, generator: generator, device: data.device) * Options.Sigma;
        var epsZ = torch.randn([b], generator: generator, device: data.device) * Options.Sigma;
        var direction = torch.randn(data.shape, generator: generator, device: data.device);
        if (Options.RestrictM)
        {
            var restricted = torch.rand([b], generator: generator, device: data.device) * (0.7 * Options.M);
            m = torch.where(epsZ.abs() < Options.Sigma / 2, restricted, m);
        }
        var p = Perturb(data, m, epsX, epsZ, direction);
        var target = Target(p[0], p[1], charges);
        var output = network(p[0], TimeOf(p[1]));
        return nn.functional.mse_loss(Field(output, data.shape[1]), target).MoveToOuterDisposeScope();
    }

    /// <summary>The network's output as the (B, N + 1) field: the data channels flattened, then the mean of the extra channel.</summary>
    public static Tensor Field(Tensor output, long dataChannels)
    {
        using var scope = torch.NewDisposeScope();
        var parts = output.split([dataChannels, output.shape[1] - dataChannels], 1);
        var vz = parts[1].flatten(1).mean([1], keepdim: true);
        return torch.cat([parts[0].flatten(1), vz], 1).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// The prior on the plane z = z_max: the uniform hemisphere projected, p(x) ∝ 1/(‖x‖² + z_max²)^((N+1)/2). Its radius R
    /// has R²/(R² + z_max²) ~ Beta(N/2, 1/2), i.e. R = z_max·‖g‖/|h| with g ~ N(0, I_N), h ~ N(0, 1); clipped to
    /// [1, MaxPriorRadius] as the PFGM code does; the direction is uniform.
    /// </summary>
    public override Tensor Prior(long[] shape, Generator? generator = null, Device? device = null)
    {
        using var scope = torch.NewDisposeScope();
        var g = torch.randn(shape, generator: generator, device: device);
        var h = torch.randn([shape[0]], generator: generator, device: device);
        var gn = g.flatten(1).norm(1);
        var radius = (Options.ZMax * gn / h.abs()).clamp(1, Options.MaxPriorRadius);
        return (g * PerSample(radius / gn, g)).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// dx/ds = z·v_x/v_z at s = ln z (the backward ODE after PFGM's change of variable z = e^s). Below
    /// <see cref="PoissonFlowOptions.ZExp"/> the predicted v_z is replaced by the one the x components imply (appendix
    /// B.2.3): near the data E ≈ (ỹ − x_nearest, z), so ‖v_x‖/√N = ‖E_x‖/(‖E‖ + γ) gives ‖E_x‖ ≈ γ·n/(1 − n), ‖E‖ =
    /// √(‖E_x‖² + z²) and v_z = −√N·z/(‖E‖ + γ): a small, poorly learned z component cannot stall or reverse the flow.
    /// </summary>
    public Tensor Drift(DenoisingNetwork network, Tensor x, double z)
    {
        using var scope = torch.NewDisposeScope();
        var zt = Times(x, z);
        var field = Field(network(x, TimeOf(zt)), x.shape[1]);                           // (B, N + 1)
        long n = field.shape[1] - 1;
        var vx = field.narrow(1, 0, n);
        var vz = field.narrow(1, n, 1);
        if (z < Options.ZExp && Options.Gamma > 0)
        {
            var ratio = (vx.norm(1, keepdim: true) / Math.Sqrt(n)).clamp_max(1 - 1e-6);   // ‖E_x‖/(‖E‖ + γ)
            var ex = Options.Gamma * ratio / (1 - ratio);
            vz = -Math.Sqrt(n) * z / ((ex.pow(2) + z * z).sqrt() + Options.Gamma);
        }
        var drift = z * vx / (vz + 1e-5);                                                  // the PFGM code's 1e-5
        return drift.reshape(x.shape).MoveToOuterDisposeScope();
    }

    /// <summary>One step from height z to z·e^Δs (Δs &lt; 0): Euler, or Heun with a second drift at the new height.</summary>
    public Tensor OdeStep(DenoisingNetwork network, Tensor x, double z, double ds, Sampler sampler) =>
        OdeUpdate((y, height) => Drift(network, y, height), x, z, ds, z * Math.Exp(ds), sampler == Sampler.Heun);

    /// <inheritdoc/>
    public override Tensor SampleFrom(DenoisingNetwork network, Tensor noise, int steps, Sampler sampler, Generator? generator = null)
    {
        Check(steps, sampler);
        double s0 = Math.Log(Options.ZMax), ds = (Math.Log(Options.ZMin) - s0) / steps;
        return Iterate(noise, steps, (x, i) => OdeStep(network, x, Math.Exp(s0 + i * ds), ds, sampler));
    }
}
