namespace Bert4Sharp.Training;

using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

/// <summary>
/// The bert4keras optimizer extensions as orthogonal options (bert4keras builds them by stacking
/// <c>extend_with_*</c> classes; here every base optimizer takes them all). Name filters match a parameter
/// when its name contains any of the strings, as bert4keras's <c>string_matching</c> does with regexes.
/// </summary>
public sealed record OptimizerOptions
{
    /// <summary>Base learning rate.</summary>
    public double LearningRate { get; init; } = 1e-3;
    /// <summary>Decoupled weight decay rate (<c>extend_with_weight_decay</c>): x ← x − lr·rate·x. 0 for none.</summary>
    public double WeightDecay { get; init; }
    /// <summary>Parameters left out of weight decay (bert4keras users pass Norm and bias).</summary>
    public IReadOnlyList<string> ExcludeFromWeightDecay { get; init; } = ["norm", "bias"];
    /// <summary>
    /// Layer adaptation (<c>extend_with_layer_adaptation</c>; with Adam and weight decay this is LAMB): each
    /// parameter's step is rescaled by ‖x‖ / ‖step / lr‖.
    /// </summary>
    public bool LayerAdaptation { get; init; }
    /// <summary>Parameters left out of layer adaptation.</summary>
    public IReadOnlyList<string> ExcludeFromLayerAdaptation { get; init; } = ["norm", "bias"];
    /// <summary>Learning-rate multiplier per step (<c>extend_with_piecewise_linear_lr</c>); null for constant.</summary>
    public PiecewiseLinearSchedule? Schedule { get; init; }
    /// <summary>
    /// Parameter-wise multipliers (<c>extend_with_parameter_wise_lr</c>): a parameter whose name contains a key
    /// has its step multiplied by the value (several matches multiply). Layer-wise decay is one use.
    /// </summary>
    public IReadOnlyDictionary<string, double>? ParameterWiseLearningRate { get; init; }
    /// <summary>
    /// Lazy optimisation (<c>extend_with_lazy_optimization</c>): for parameters whose name contains one of these,
    /// only rows (last dimension) with a non-zero gradient move; for embedding tables, the tokens in the batch.
    /// </summary>
    public IReadOnlyList<string>? LazyParameters { get; init; }
    /// <summary>Micro-batches whose gradients are averaged into one update (<c>extend_with_gradient_accumulation</c>).</summary>
    public int GradientAccumulationSteps { get; init; } = 1;
    /// <summary>Lookahead (<c>extend_with_lookahead</c>): every k updates, slow ← slow + α(fast − slow), fast ← slow. Null for off.</summary>
    public LookaheadOptions? Lookahead { get; init; }
    /// <summary>
    /// Exponential moving average of the weights (<c>extend_with_exponential_moving_average</c>), applied with
    /// <see cref="Optimizer.ApplyEma"/> for evaluation and undone with <see cref="Optimizer.RestoreWeights"/>. Null for off.
    /// </summary>
    public double? EmaMomentum { get; init; }
    /// <summary>Clips the global gradient norm (over all parameters) to this value before the update; null for off.</summary>
    public double? ClipGradientNorm { get; init; }

    /// <summary>
    /// Dynamic loss scaling for fp16 training (on CUDA): the trainer multiplies the loss by
    /// <see cref="Optimizer.LossScale"/>; a step whose gradients overflow is skipped and the scale backs off,
    /// and after <see cref="DynamicLossScale.GrowthInterval"/> good steps it grows. Null for none (fp32, bf16).
    /// </summary>
    public DynamicLossScale? LossScaling { get; init; }

    /// <summary>Checks ranges; names the option and the value.</summary>
    public void Validate()
    {
        if (LossScaling is { } ls && !(ls.InitialScale >= 1 && ls.Growth > 1 && ls.Backoff > 0 && ls.Backoff < 1 && ls.GrowthInterval >= 1))
            throw new ArgumentOutOfRangeException(nameof(LossScaling), $"LossScaling needs InitialScale ≥ 1, Growth > 1, Backoff in (0, 1), GrowthInterval ≥ 1; got {ls}");
        if (!(LearningRate >= 0) || !double.IsFinite(LearningRate)) throw new ArgumentOutOfRangeException(nameof(LearningRate), $"LearningRate must be a finite number ≥ 0, got {LearningRate}");
        if (!(WeightDecay >= 0)) throw new ArgumentOutOfRangeException(nameof(WeightDecay), $"WeightDecay must be ≥ 0, got {WeightDecay}");
        if (GradientAccumulationSteps < 1) throw new ArgumentOutOfRangeException(nameof(GradientAccumulationSteps), $"GradientAccumulationSteps must be ≥ 1, got {GradientAccumulationSteps}");
        if (EmaMomentum is double m && !(m > 0 && m < 1)) throw new ArgumentOutOfRangeException(nameof(EmaMomentum), $"EmaMomentum must be in (0, 1), got {m}");
        if (ClipGradientNorm is double c && !(c > 0)) throw new ArgumentOutOfRangeException(nameof(ClipGradientNorm), $"ClipGradientNorm must be > 0, got {c}");
        if (Lookahead is { } la && (la.Steps < 1 || !(la.Alpha > 0 && la.Alpha <= 1)))
            throw new ArgumentOutOfRangeException(nameof(Lookahead), $"Lookahead needs Steps ≥ 1 and Alpha in (0, 1], got {la.Steps} and {la.Alpha}");
    }

    internal static bool Matches(string name, IReadOnlyList<string>? patterns) =>
        patterns is not null && patterns.Any(p => name.Contains(p, StringComparison.OrdinalIgnoreCase));
}

/// <summary>An optimizer's counters (checkpointed with its state tensors).</summary>
/// <param name="Iterations">Updates applied.</param>
/// <param name="MicroSteps">Micro-batches accumulated towards the next update.</param>
/// <param name="LossScale">Current loss scale.</param>
/// <param name="GoodSteps">Steps since the last overflow.</param>
/// <param name="OverflowSkips">Steps skipped for overflow.</param>
public sealed record OptimizerCounters(long Iterations, int MicroSteps = 0, double LossScale = 1.0, long GoodSteps = 0, long OverflowSkips = 0);

/// <summary>Dynamic loss-scale settings (the defaults of PyTorch's GradScaler).</summary>
/// <param name="InitialScale">Starting scale.</param>
/// <param name="Growth">Factor after <paramref name="GrowthInterval"/> steps without overflow.</param>
/// <param name="Backoff">Factor after an overflow.</param>
/// <param name="GrowthInterval">Good steps between growths.</param>
public sealed record DynamicLossScale(double InitialScale = 65536, double Growth = 2, double Backoff = 0.5, int GrowthInterval = 2000)
{
    /// <summary>GradScaler's defaults when <paramref name="plan"/> needs loss scaling (fp16 training), else null.</summary>
    public static DynamicLossScale? For(Runtime.PrecisionPlan? plan) => plan?.LossScaling == true ? new() : null;
}

/// <summary>
/// Lookahead options (Zhang et al. 2019; bert4keras defaults k = 5, α = 0.5). The slow weights start at the
/// weights before the first update, as in the paper (bert4keras starts them at zero, which halves the weights
/// at the first slow update).
/// </summary>
/// <param name="Steps">Fast updates per slow update.</param>
/// <param name="Alpha">Slow step size.</param>
public sealed record LookaheadOptions(int Steps = 5, double Alpha = 0.5);

/// <summary>
/// Base of Bert4Sharp's optimizers. A subclass gives the raw step of its algorithm (Adam, AdaFactor, Lion); this
/// class adds the bert4keras extensions of <see cref="OptimizerOptions"/> in one fixed order: accumulate and
/// clip the gradient, take the raw step at lr·schedule(t), subtract lr·schedule(t)·decay·x, rescale by layer
/// adaptation, multiply by the parameter-wise factor, mask lazy rows, apply; then the EMA and Lookahead.
/// All state lives in named tensors (<see cref="StateDict"/>) so training can resume exactly.
/// </summary>
public abstract class Optimizer : IDisposable
{
    readonly List<(string Name, Parameter Param)> parameters;
    readonly Dictionary<string, Dictionary<string, Tensor>> state = new();
    readonly Dictionary<string, Tensor> backup = new();
    int microSteps;
    long goodSteps;

    /// <summary>Creates the optimizer over named parameters (e.g. <c>module.named_parameters()</c>); frozen ones are skipped.</summary>
    protected Optimizer(IEnumerable<(string Name, Parameter Param)> parameters, OptimizerOptions options)
    {
        options.Validate();
        Options = options;
        LossScale = options.LossScaling?.InitialScale ?? 1.0;
        this.parameters = parameters.Where(p => p.Param.requires_grad).ToList();
        if (this.parameters.Count == 0) throw new ArgumentException("the optimizer got no trainable parameters");
        var dup = this.parameters.GroupBy(p => p.Name).FirstOrDefault(g => g.Count() > 1);
        if (dup is not null) throw new ArgumentException($"parameter name '{dup.Key}' appears twice");
        LearningRate = options.LearningRate;
    }

    /// <summary>The options.</summary>
    public OptimizerOptions Options { get; }

    /// <summary>Base learning rate (the schedule multiplies it); starts at <see cref="OptimizerOptions.LearningRate"/>.</summary>
    public double LearningRate { get; set; }

    /// <summary>The factor the trainer multiplies the loss by (1 without <see cref="OptimizerOptions.LossScaling"/>).</summary>
    public double LossScale { get; private set; } = 1.0;

    /// <summary>Steps skipped because the scaled gradients overflowed.</summary>
    public long OverflowSkips { get; private set; }

    /// <summary>Updates applied so far (bert4keras <c>iterations</c>).</summary>
    public long Iterations { get; private set; }

    /// <summary>The learning rate the next update uses: base × schedule(iterations).</summary>
    public double CurrentLearningRate => LearningRate * (Options.Schedule?[Iterations] ?? 1.0);

    /// <summary>The parameters, by name.</summary>
    public IReadOnlyList<(string Name, Parameter Param)> Parameters => parameters;

    /// <summary>Algorithm name, stored in checkpoints so a resume with another optimizer fails clearly.</summary>
    public abstract string Name { get; }

    /// <summary>Clears every gradient.</summary>
    public void ZeroGrad()
    {
        foreach (var (_, p) in parameters)
            if (p.grad is Tensor g) { g.detach_(); g.zero_(); }
    }

    /// <summary>
    /// Takes the gradients of the last backward pass. With gradient accumulation the update happens on every
    /// k-th call, with the mean of the k gradients; the other calls only accumulate. Returns whether the
    /// parameters changed. Call <see cref="ZeroGrad"/> after it as usual.
    /// </summary>
    public bool Step()
    {
        using var noGrad = torch.no_grad();
        using var scope = torch.NewDisposeScope();
        if (Options.LossScaling is { } scaling)
        {
            bool finite = parameters.All(p => p.Param.grad is not Tensor g || torch.isfinite(g).all().ToBoolean());
            if (!finite)
            {
                LossScale = Math.Max(1.0, LossScale * scaling.Backoff);
                goodSteps = 0;
                OverflowSkips++;
                ZeroGrad();
                return false;
            }
            foreach (var (_, p) in parameters) p.grad?.div_(LossScale);
            if (++goodSteps % scaling.GrowthInterval == 0) LossScale *= scaling.Growth;
        }
        int k = Options.GradientAccumulationSteps;
        if (k > 1)
        {
            foreach (var (name, p) in parameters)
            {
                if (p.grad is not Tensor g) continue;
                var acc = Slot(name, "accumulated_grad", p);
                acc.add_(g);
            }
            if (++microSteps < k) return false;
            microSteps = 0;
        }
        var grads = new Dictionary<string, Tensor>();
        foreach (var (name, p) in parameters)
        {
            Tensor? g = k > 1 ? state[name].GetValueOrDefault("accumulated_grad") : p.grad;
            if (g is null) continue;
            grads[name] = k > 1 ? g / k : g.dtype is ScalarType.BFloat16 or ScalarType.Float16 ? g.to(ScalarType.Float32) : g;
        }
        if (Options.ClipGradientNorm is double clip && grads.Count > 0)
        {
            var norm = torch.stack(grads.Values.Select(g => g.to(ScalarType.Float64).square().sum()).ToArray()).sum().sqrt().ToDouble();
            if (norm > clip) foreach (var key in grads.Keys.ToList()) grads[key] = grads[key] * (clip / (norm + 1e-6));
        }
        if (Options.Lookahead is not null)
            foreach (var (name, p) in parameters)
            {
                if (!state.TryGetValue(name, out var slots)) state[name] = slots = new();
                if (!slots.ContainsKey("slow")) slots["slow"] = Master(name, p).detach().clone().DetachFromDisposeScope();
            }
        double lr = CurrentLearningRate;
        foreach (var (name, p) in parameters)
        {
            if (!grads.TryGetValue(name, out var g)) continue;
            var x = Master(name, p);
            var dx = RawStep(name, x, g, lr, Iterations + 1);
            if (Options.WeightDecay > 0 && !OptimizerOptions.Matches(name, Options.ExcludeFromWeightDecay))
                dx = dx - lr * Options.WeightDecay * x;
            if (Options.LayerAdaptation && !OptimizerOptions.Matches(name, Options.ExcludeFromLayerAdaptation))
            {
                double xNorm = x.norm().ToDouble();
                double gNorm = (dx / Math.Max(lr, 1e-7)).norm().ToDouble();
                if (xNorm > 0 && gNorm > 0) dx = dx * (xNorm / gNorm);
            }
            if (Options.ParameterWiseLearningRate is { } pw)
            {
                double m = 1;
                foreach (var (key, value) in pw) if (name.Contains(key, StringComparison.OrdinalIgnoreCase)) m *= value;
                if (m != 1) dx = dx * m;
            }
            if (OptimizerOptions.Matches(name, Options.LazyParameters))
                dx = dx * g.ne(0).any(-1, keepdim: true).to(dx.dtype);
            x.add_(dx);
            if (!ReferenceEquals(x, p)) p.copy_(x);
        }
        Iterations++;
        if (Options.EmaMomentum is double momentum)
            foreach (var (name, p) in parameters)
                Slot(name, "ema", p).mul_(momentum).add_(Master(name, p), alpha: 1 - momentum);
        if (Options.Lookahead is { } la && Iterations % la.Steps == 0)
            foreach (var (name, p) in parameters)
            {
                var x = Master(name, p);
                var slow = state[name]["slow"];
                slow.add_(x - slow, alpha: la.Alpha);
                x.copy_(slow);
                if (!ReferenceEquals(x, p)) p.copy_(x);
            }
        if (k > 1) foreach (var (name, _) in parameters) state[name].GetValueOrDefault("accumulated_grad")?.zero_();
        return true;
    }

    /// <summary>
    /// The raw step of the algorithm for one parameter: returns Δx (e.g. −lr·m̂/(√v̂+ε) for Adam), updating the
    /// parameter's slots (<see cref="Slot"/>). <paramref name="t"/> counts updates from 1.
    /// </summary>
    protected abstract Tensor RawStep(string name, Tensor x, Tensor g, double lr, long t);

    /// <summary>A zero-initialised state tensor of <paramref name="name"/>'s shape (or <paramref name="shape"/>), created on first use, kept in fp32 for half-precision parameters.</summary>
    protected Tensor Slot(string name, string slot, Tensor like, long[]? shape = null)
    {
        if (!state.TryGetValue(name, out var slots)) state[name] = slots = new();
        if (!slots.TryGetValue(slot, out var t))
        {
            var dtype = like.dtype is ScalarType.BFloat16 or ScalarType.Float16 ? ScalarType.Float32 : like.dtype;
            t = torch.zeros(shape ?? like.shape, dtype: dtype, device: like.device);
            slots[slot] = t.DetachFromDisposeScope();
        }
        return t;
    }

    /// <summary>
    /// The tensor the update is applied to: the parameter itself, or for bf16/fp16 parameters an fp32 master
    /// copy (mixed precision: compute in half precision, accumulate updates in fp32, copy back rounded).
    /// </summary>
    Tensor Master(string name, Parameter p)
    {
        if (p.dtype is not (ScalarType.BFloat16 or ScalarType.Float16)) return p;
        if (!state.TryGetValue(name, out var slots)) state[name] = slots = new();
        if (!slots.TryGetValue("master", out var m)) slots["master"] = m = p.detach().to(ScalarType.Float32).DetachFromDisposeScope();
        return m;
    }

    /// <summary>Replaces the weights by the bias-corrected EMA (w_ema / (1 − momentumᵗ)); <see cref="RestoreWeights"/> undoes it.</summary>
    /// <exception cref="InvalidOperationException">No EMA configured, no update yet, or already applied.</exception>
    public void ApplyEma()
    {
        if (Options.EmaMomentum is not double momentum) throw new InvalidOperationException("the optimizer has no EMA (set OptimizerOptions.EmaMomentum)");
        if (Iterations == 0) throw new InvalidOperationException("no update yet: the EMA is empty");
        if (backup.Count > 0) throw new InvalidOperationException("EMA weights are already applied; call RestoreWeights first");
        using var noGrad = torch.no_grad();
        double scale = 1 - Math.Pow(momentum, Iterations);
        foreach (var (name, p) in parameters)
        {
            backup[name] = p.detach().clone().DetachFromDisposeScope();
            using var ema = state[name]["ema"] / scale;
            p.copy_(ema);
        }
    }

    /// <summary>Puts back the weights saved by <see cref="ApplyEma"/>.</summary>
    public void RestoreWeights()
    {
        if (backup.Count == 0) throw new InvalidOperationException("nothing to restore: ApplyEma was not called");
        using var noGrad = torch.no_grad();
        foreach (var (name, p) in parameters) p.copy_(backup[name]);
        foreach (var t in backup.Values) t.Dispose();
        backup.Clear();
    }

    /// <summary>Every state tensor as <c>param/slot</c> → tensor (the tensors themselves, not copies), plus the step counters.</summary>
    public IReadOnlyDictionary<string, Tensor> StateDict()
    {
        var d = new Dictionary<string, Tensor>();
        foreach (var (name, slots) in state)
            foreach (var (slot, t) in slots) d[$"{name}/{slot}"] = t;
        return d;
    }

    /// <summary>Counters to store next to <see cref="StateDict"/>.</summary>
    public OptimizerCounters Counters => new(Iterations, microSteps, LossScale, goodSteps, OverflowSkips);

    /// <summary>Restores state saved by <see cref="StateDict"/> and <see cref="Counters"/>.</summary>
    /// <exception cref="ArgumentException">A state tensor names an unknown parameter or has the wrong shape.</exception>
    public void LoadStateDict(IReadOnlyDictionary<string, Tensor> saved, OptimizerCounters counters)
    {
        var byName = parameters.ToDictionary(p => p.Name, p => p.Param);
        using var noGrad = torch.no_grad();
        foreach (var (key, value) in saved)
        {
            int slash = key.LastIndexOf('/');
            if (slash < 0) throw new ArgumentException($"optimizer state '{key}' is not 'parameter/slot'");
            string name = key[..slash], slot = key[(slash + 1)..];
            if (!byName.TryGetValue(name, out var p)) throw new ArgumentException($"optimizer state '{key}' names parameter '{name}', which this model does not train");
            if (!state.TryGetValue(name, out var slots)) state[name] = slots = new();
            if (slots.TryGetValue(slot, out var old)) old.Dispose();
            slots[slot] = value.to(p.device).clone().DetachFromDisposeScope();
        }
        Iterations = counters.Iterations;
        microSteps = counters.MicroSteps;
        LossScale = counters.LossScale;
        goodSteps = counters.GoodSteps;
        OverflowSkips = counters.OverflowSkips;
    }

    /// <inheritdoc/>
    public void Dispose()
    {
        foreach (var slots in state.Values) foreach (var t in slots.Values) t.Dispose();
        state.Clear();
        foreach (var t in backup.Values) t.Dispose();
        backup.Clear();
        GC.SuppressFinalize(this);
    }

    /// <summary>Root mean square (bert4keras <c>root_mean_square</c>).</summary>
    protected static Tensor Rms(Tensor x) => x.square().mean().sqrt();
}

/// <summary>
/// Adam as bert4keras writes it: m̂ / (√v̂ + ε) with bias correction, ε = 1e-6 by default. With
/// <see cref="OptimizerOptions.WeightDecay"/> it is AdamW (same update as <c>torch.optim.AdamW</c> at equal ε),
/// and with <see cref="OptimizerOptions.LayerAdaptation"/> too it is LAMB.
/// </summary>
public sealed class Adam(IEnumerable<(string Name, Parameter Param)> parameters, OptimizerOptions options,
    double beta1 = 0.9, double beta2 = 0.999, double epsilon = 1e-6, bool biasCorrection = true) : Optimizer(parameters, options)
{
    /// <inheritdoc/>
    public override string Name => "adam";

    /// <inheritdoc/>
    protected override Tensor RawStep(string name, Tensor x, Tensor g, double lr, long t)
    {
        var m = Slot(name, "m", x);
        var v = Slot(name, "v", x);
        m.mul_(beta1).add_(g, alpha: 1 - beta1);
        v.mul_(beta2).addcmul_(g, g, 1 - beta2);
        Tensor mHat = m, vHat = v;
        if (biasCorrection)
        {
            mHat = m / (1 - Math.Pow(beta1, t));
            vHat = v / (1 - Math.Pow(beta2, t));
        }
        return -lr * mHat / (vHat.sqrt() + epsilon);
    }
}

/// <summary>
/// Lion (Chen et al. 2023, <c>arxiv.org/abs/2302.06675</c>), bert4keras's version: Δx = −lr·sign(β₁m + (1−β₁)g),
/// then m ← β₂m + (1−β₂)g. Typical lr is 3–10× smaller than Adam's.
/// </summary>
public sealed class Lion(IEnumerable<(string Name, Parameter Param)> parameters, OptimizerOptions options,
    double beta1 = 0.95, double beta2 = 0.98) : Optimizer(parameters, options)
{
    /// <inheritdoc/>
    public override string Name => "lion";

    /// <inheritdoc/>
    protected override Tensor RawStep(string name, Tensor x, Tensor g, double lr, long t)
    {
        var m = Slot(name, "m", x);
        var u = (beta1 * m + (1 - beta1) * g).sign();
        m.mul_(beta2).add_(g, alpha: 1 - beta2);
        return -lr * u;
    }
}

/// <summary>
/// AdaFactor (Shazeer &amp; Stern 2018) as bert4keras writes it: second moments factored into row and column means
/// for matrices whose two largest dimensions are ≥ <paramref name="minDimSizeToFactor"/>, update clipping at
/// RMS <paramref name="clippingThreshold"/>, optional first moment (β₁ &gt; 0), steps scaled by max(RMS(x), ε₂).
/// β₂ defaults to 1 − t^−0.8.
/// </summary>
public sealed class AdaFactor(IEnumerable<(string Name, Parameter Param)> parameters, OptimizerOptions options,
    double beta1 = 0.0, double? beta2 = null, double epsilon1 = 1e-30, double epsilon2 = 1e-3, bool multiplyByParameterScale = true,
    double? clippingThreshold = 1.0, int minDimSizeToFactor = 128) : Optimizer(parameters, options)
{
    /// <inheritdoc/>
    public override string Name => "adafactor";

    /// <inheritdoc/>
    protected override Tensor RawStep(string name, Tensor x, Tensor g, double lr, long t)
    {
        double b2 = beta2 ?? 1.0 - Math.Pow(t, -0.8);
        var g2 = g.square() + epsilon1;
        Tensor vt;
        var shape = x.shape;
        var factored = Factored(shape);
        if (factored is not (int a1, int a2))
        {
            var v = Slot(name, "v", x);
            v.mul_(b2).add_(g2, alpha: 1 - b2);
            vt = v;
        }
        else
        {
            var s1 = (long[])shape.Clone(); s1[a1] = 1;
            var s2 = (long[])shape.Clone(); s2[a2] = 1;
            var vr = Slot(name, "vr", x, s1);
            var vc = Slot(name, "vc", x, s2);
            vr.mul_(b2).add_(g2.mean([a1], keepdim: true), alpha: 1 - b2);
            vc.mul_(b2).add_(g2.mean([a2], keepdim: true), alpha: 1 - b2);
            vt = vr * vc / vr.mean([a2], keepdim: true);
        }
        var u = g / (vt + epsilon1).sqrt();
        if (clippingThreshold is double c) u = u / torch.clamp_min(Rms(u) / c, 1.0);
        if (beta1 > 0)
        {
            var m = Slot(name, "m", x);
            m.mul_(beta1).add_(u, alpha: 1 - beta1);
            u = m;
        }
        if (multiplyByParameterScale) u = u * torch.clamp_min(Rms(x), epsilon2);
        return -lr * u;
    }

    /// <summary>The axes of the largest (a1) and second largest (a2) dimension when the tensor is factored (numpy argpartition order).</summary>
    (int, int)? Factored(long[] shape)
    {
        if (shape.Length < 2) return null;
        var order = Enumerable.Range(0, shape.Length).OrderBy(i => shape[i]).ThenBy(i => i).ToArray();
        int second = order[^2], largest = order[^1];
        if (shape[second] < minDimSizeToFactor) return null;
        return (largest, second);
    }
}
