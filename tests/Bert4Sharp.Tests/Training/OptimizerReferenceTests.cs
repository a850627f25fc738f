namespace Bert4Sharp.Tests.Training;

using System.Text.Json;
using Bert4Sharp.Training;
using TorchSharp;
using Parameter = TorchSharp.Modules.Parameter;
using static TorchSharp.torch;

/// <summary>
/// Trajectories of every optimizer and extension against tests/reference/make_optimizer_refs.py: torch.optim
/// (Adam, AdamW, gradient clipping) and a port of bert4keras's update formulas (LAMB, Lion, AdaFactor,
/// schedules, parameter-wise lr, lazy rows, accumulation, Lookahead, EMA). float64, 25 steps, <see cref="Close"/> float64 defaults
/// (atol 1e-7, rtol 1e-7; measured ≤ 1e-15).
/// </summary>
public sealed class OptimizerReferenceTests
{
    static readonly JsonElement Root = JsonDocument.Parse(File.ReadAllText(TestPaths.Fixture("training", "optimizer_trajectories.json"))).RootElement;
    static readonly (string Name, long[] Shape)[] Shapes =
        [("emb.weight", [20, 8]), ("dense.weight", [16, 8]), ("dense.bias", [16]), ("norm.weight", [16]), ("out.weight", [5, 16]), ("out.bias", [5])];
    const int B = 6, T = 4;

    public static TheoryData<string> Configs() => new(Root.GetProperty("configs").EnumerateObject().Select(p => p.Name));

    static List<(string, Parameter)> Initial()
    {
        var list = new List<(string, Parameter)>();
        for (int k = 0; k < Shapes.Length; k++)
        {
            var (name, shape) = Shapes[k];
            long n = shape.Aggregate(1L, (a, b) => a * b);
            var v = Enumerable.Range(0, (int)n).Select(i => 0.3 * Math.Sin(0.7 * i + k) + (name == "norm.weight" ? 1.0 : 0.0)).ToArray();
            list.Add((name, new Parameter(torch.tensor(v, dtype: ScalarType.Float64).reshape(shape))));
        }
        return list;
    }

    internal static Tensor Loss(IReadOnlyDictionary<string, Parameter> p, int s)
    {
        var ids = new long[B * T];
        for (int b = 0; b < B; b++)
            for (int t = 0; t < T; t++) ids[b * T + t] = (3 * b + 5 * t + 7 * (s % 4)) % (12 + s % 4);
        var labels = Enumerable.Range(0, B).Select(b => (long)((b + s) % 5)).ToArray();
        var h = p["emb.weight"].index_select(0, torch.tensor(ids)).reshape(B, T, -1).mean([1]);
        h = torch.tanh(h.matmul(p["dense.weight"].T) + p["dense.bias"]) * p["norm.weight"];
        var logits = h.matmul(p["out.weight"].T) + p["out.bias"];
        return nn.functional.cross_entropy(logits, torch.tensor(labels));
    }

    static Optimizer Create(JsonElement cfg, List<(string, Parameter)> ps)
    {
        string Str(string k) => cfg.TryGetProperty(k, out var v) ? v.GetString()! : "";
        double? Num(string k) => cfg.TryGetProperty(k, out var v) ? v.GetDouble() : null;
        List<string> Strings(string k) => cfg.TryGetProperty(k, out var v) ? v.EnumerateArray().Select(e => e.GetString()!).ToList() : [];
        var options = new OptimizerOptions
        {
            LearningRate = Num("lr")!.Value,
            WeightDecay = Num("wd") ?? 0,
            ExcludeFromWeightDecay = Strings("wd_exclude"),
            LayerAdaptation = cfg.TryGetProperty("layer_adaptation", out var la) && la.GetBoolean(),
            ExcludeFromLayerAdaptation = Strings("la_exclude"),
            Schedule = cfg.TryGetProperty("schedule", out var sc) ? new PiecewiseLinearSchedule(sc.EnumerateObject().ToDictionary(e => long.Parse(e.Name), e => e.Value.GetDouble())) : null,
            ParameterWiseLearningRate = cfg.TryGetProperty("paramwise", out var pw) ? pw.EnumerateObject().ToDictionary(e => e.Name, e => e.Value.GetDouble()) : null,
            LazyParameters = Strings("lazy"),
            GradientAccumulationSteps = (int)(Num("accum") ?? 1),
            Lookahead = cfg.TryGetProperty("lookahead", out var lk) ? new LookaheadOptions(lk[0].GetInt32(), lk[1].GetDouble()) : null,
            EmaMomentum = Num("ema"),
            ClipGradientNorm = Num("clip"),
        };
        var hp = cfg.TryGetProperty("hp", out var h) ? h : default;
        double? Hp(string k) => hp.ValueKind == JsonValueKind.Object && hp.TryGetProperty(k, out var v) ? v.GetDouble() : null;
        if (Str("torch") is "adam" or "adamw") return new Adam(ps, options, epsilon: 1e-6);
        return Str("kind") switch
        {
            "adam" => new Adam(ps, options),
            "lion" => new Lion(ps, options),
            "adafactor" => new AdaFactor(ps, options, beta1: Hp("beta1") ?? 0, beta2: Hp("beta2"), minDimSizeToFactor: (int)(Hp("min_dim") ?? 128),
                multiplyByParameterScale: !(hp.ValueKind == JsonValueKind.Object && hp.TryGetProperty("scale", out var s) && !s.GetBoolean())),
            var k => throw new InvalidDataException($"unknown optimizer kind {k}"),
        };
    }

    [Theory]
    [MemberData(nameof(Configs))]
    public void Trajectory_matches_reference(string config)
    {
        var expected = Root.GetProperty("configs").GetProperty(config);
        var ps = Initial();
        var byName = ps.ToDictionary(p => p.Item1, p => p.Item2);
        using var opt = Create(expected.GetProperty("config"), ps);
        var losses = expected.GetProperty("losses").EnumerateArray().Select(e => e.GetDouble()).ToArray();
        for (int s = 0; s < losses.Length; s++)
        {
            using var scope = torch.NewDisposeScope();
            opt.ZeroGrad();
            var loss = Loss(byName, s);
            Close.Assert(loss.item<double>(), losses[s], $"{config}: loss at step {s}");
            loss.backward();
            opt.Step();
        }
        Assert.Equal(expected.GetProperty("iterations").GetInt64(), opt.Iterations);
        AssertWeights(config, expected.GetProperty("final"), byName);
        if (expected.TryGetProperty("ema", out var ema))
        {
            opt.ApplyEma();
            AssertWeights(config + " (EMA applied)", ema, byName);
            opt.RestoreWeights();
            AssertWeights(config + " (restored)", expected.GetProperty("final"), byName);
        }
    }

    static void AssertWeights(string what, JsonElement expected, Dictionary<string, Parameter> actual)
    {
        foreach (var e in expected.EnumerateObject())
        {
            var want = e.Value.EnumerateArray().Select(v => v.GetDouble()).ToArray();
            var got = actual[e.Name].detach().flatten().data<double>().ToArray();
            Close.Assert(got, want, $"{what}: {e.Name}");
        }
    }

    [Fact]
    public void Optimizer_state_round_trips_and_resumes_identically()
    {
        var cfg = Root.GetProperty("configs").GetProperty("lookahead").GetProperty("config");
        var a = Initial();
        var aByName = a.ToDictionary(p => p.Item1, p => p.Item2);
        using var optA = Create(cfg, a);
        for (int s = 0; s < 12; s++) { optA.ZeroGrad(); using var l = Loss(aByName, s); l.backward(); optA.Step(); }
        var saved = optA.StateDict().ToDictionary(kv => kv.Key, kv => kv.Value.clone());
        var counters = optA.Counters;
        var weights = a.ToDictionary(p => p.Item1, p => p.Item2.detach().clone());

        var b = Initial();
        var bByName = b.ToDictionary(p => p.Item1, p => p.Item2);
        using (torch.no_grad()) foreach (var (n, p) in b) p.copy_(weights[n]);
        using var optB = Create(cfg, b);
        optB.LoadStateDict(saved, counters);
        for (int s = 12; s < 25; s++)
        {
            optA.ZeroGrad(); optB.ZeroGrad();
            using var la = Loss(aByName, s); la.backward(); optA.Step();
            using var lb = Loss(bByName, s); lb.backward(); optB.Step();
        }
        foreach (var (n, p) in a) Close.Assert(bByName[n], p, $"{n} resumed vs uninterrupted", atol: 1e-12, rtol: 1e-12);
    }

    [Fact]
    public void Bad_options_are_named()
    {
        var ps = Initial();
        Assert.Contains("GradientAccumulationSteps", Assert.Throws<ArgumentOutOfRangeException>(() => new Adam(ps, new OptimizerOptions { GradientAccumulationSteps = 0 })).Message);
        Assert.Contains("EmaMomentum", Assert.Throws<ArgumentOutOfRangeException>(() => new Adam(ps, new OptimizerOptions { EmaMomentum = 1.5 })).Message);
        Assert.Contains("LearningRate", Assert.Throws<ArgumentOutOfRangeException>(() => new Adam(ps, new OptimizerOptions { LearningRate = double.NaN })).Message);
        using var opt = new Adam(ps, new OptimizerOptions());
        Assert.Contains("EmaMomentum", Assert.Throws<InvalidOperationException>(() => opt.ApplyEma()).Message);
        Assert.Contains("not train", Assert.Throws<ArgumentException>(() => opt.LoadStateDict(new Dictionary<string, Tensor> { ["nope/m"] = torch.zeros(1) }, new OptimizerCounters(0))).Message);
    }

    [Fact]
    public void Dynamic_loss_scaling_skips_overflows_backs_off_and_otherwise_matches_unscaled()
    {
        var cfg = Root.GetProperty("configs").GetProperty("adam_torch").GetProperty("config");
        // float32, as in mixed precision: a loss scaled by 1e300 is +inf, as it would overflow in fp16.
        static List<(string, Parameter)> F32() => Initial().Select(p => (p.Item1, new Parameter(p.Item2.detach().to(ScalarType.Float32)))).ToList();
        var plain = F32();
        var scaled = F32();
        var plainByName = plain.ToDictionary(p => p.Item1, p => p.Item2);
        var scaledByName = scaled.ToDictionary(p => p.Item1, p => p.Item2);
        using var optPlain = Create(cfg, plain);
        using var optScaled = new Adam(scaled, new OptimizerOptions { LearningRate = 0.05, LossScaling = new DynamicLossScale(InitialScale: 1e300, Backoff: 1e-100, GrowthInterval: 3) }, epsilon: 1e-6);
        int s = 0, applied = 0;
        while (applied < 10)
        {
            optScaled.ZeroGrad();
            using var l = Loss(scaledByName, s) * optScaled.LossScale;       // what the trainer does
            l.backward();
            if (!optScaled.Step()) continue;                                    // overflow: same batch again at a lower scale
            optPlain.ZeroGrad();
            using var lp = Loss(plainByName, s);
            lp.backward();
            optPlain.Step();
            applied++;
            s++;
        }
        Assert.Equal(3, optScaled.OverflowSkips);                              // 1e300, 1e200, 1e100 overflow; 1 does not
        Close.Assert(optScaled.LossScale, 8.0, "loss scale", atol: 0, rtol: 1e-12);   // ×1e-100 three times is not exact: a few ulps                           // then it grew every 3 good steps: 2, 4, 8
        foreach (var (n, p) in plain) Close.Assert(scaledByName[n], p, $"{n} with loss scaling vs without", atol: 1e-6);
    }

    [Fact]
    public void Piecewise_linear_matches_bert4keras_definition()
    {
        var s = new PiecewiseLinearSchedule(new Dictionary<long, double> { [1000] = 1, [2000] = 0.1 });
        Assert.Equal(0.0, s[0]);
        // float64 interpolation: a few ulps, far below the float64 defaults.
        foreach (var (step, want) in new[] { (500L, 0.5), (1000L, 1.0), (1500L, 0.55), (2000L, 0.1), (99999L, 0.1) })
            Close.Assert(s[step], want, $"schedule at step {step}", atol: 0, rtol: 1e-12);
        Assert.Throws<ArgumentException>(() => new PiecewiseLinearSchedule(new Dictionary<long, double>()));
    }
}
