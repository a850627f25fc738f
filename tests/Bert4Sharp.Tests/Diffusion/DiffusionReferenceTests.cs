using System.Text.Json;
using Bert4Sharp.Diffusion.Methods;
using Bert4Sharp.Diffusion.Metrics;
using TorchSharp;
using static TorchSharp.torch;

namespace Bert4Sharp.Tests.Diffusion;

/// <summary>
/// Each method's formulas against tests/reference/make_diffusion_refs.py (PyTorch 1.13, written from the papers and posts),
/// on the inputs the script drew and stored: float64 throughout, so the float64 defaults of <see cref="Close"/> apply
/// unless a test says why not.
/// </summary>
public sealed class DiffusionReferenceTests
{
    static readonly JsonElement Root = JsonDocument.Parse(File.ReadAllText(TestPaths.Fixture("diffusion", "methods.json"))).RootElement;

    static Tensor T(JsonElement section, string name, params long[] shape) =>
        torch.tensor(section.GetProperty(name).EnumerateArray().Select(e => e.GetDouble()).ToArray(), dtype: ScalarType.Float64).reshape(shape);

    static double[] D(Tensor t) => t.to(ScalarType.Float64).contiguous().data<double>().ToArray();

    static double[] D(JsonElement section, string name) => section.GetProperty(name).EnumerateArray().Select(e => e.GetDouble()).ToArray();

    [Fact]
    public void Ddpm_schedule_closed_form_and_respacing_match_the_reference()
    {
        var r = Root.GetProperty("ddpm");
        var ddpm = new Ddpm();
        var idx = r.GetProperty("abar_index").EnumerateArray().Select(e => e.GetInt32()).ToArray();
        Close.Assert(idx.Select(i => ddpm.AlphaBar[i]).ToArray(), D(r, "abar"), "ᾱ_t (linear betas 1e-4 … 0.02)", atol: 1e-12, rtol: 1e-10);
        using var x0 = T(r, "x0", 3, 1, 4, 4);
        using var eps = T(r, "eps", 3, 1, 4, 4);
        using var t = torch.tensor(r.GetProperty("t").EnumerateArray().Select(e => e.GetInt64()).ToArray());
        using var xt = ddpm.Noised(x0, t, eps);
        Close.Assert(D(xt), D(r, "xt"), "q(x_t | x_0) sample");
        Assert.Equal(r.GetProperty("respaced").GetProperty("10").EnumerateArray().Select(e => e.GetInt32()), ddpm.Respaced(10));
        Assert.Equal([999], ddpm.Respaced(1));
        Assert.Equal(Enumerable.Range(0, 1000), ddpm.Respaced(1000));
    }

    [Fact]
    public void Ddpm_ancestral_and_ddim_steps_match_the_reference()
    {
        var r = Root.GetProperty("ddpm");
        var ddpm = new Ddpm();
        using var x = T(r, "x", 3, 1, 4, 4);
        using var epsHat = T(r, "eps_hat", 3, 1, 4, 4);
        using var z = T(r, "z", 3, 1, 4, 4);
        foreach (var s in r.GetProperty("steps").EnumerateArray())
        {
            int t = s.GetProperty("t").GetInt32(), prev = s.GetProperty("prev").GetInt32();
            using var anc = ddpm.AncestralStep(x, epsHat, t, prev, z);
            using var ddim = ddpm.DdimStep(x, epsHat, t, prev);
            // ᾱ is a product of 1000 factors in C# and a torch.cumprod in Python: 1e-10 relative covers their order of rounding.
            Close.Assert(D(anc), D(s, "ancestral"), $"ancestral step {t} → {prev}", atol: 1e-9, rtol: 1e-9);
            Close.Assert(D(ddim), D(s, "ddim"), $"DDIM step {t} → {prev}", atol: 1e-9, rtol: 1e-9);
        }
    }

    [Fact]
    public void Ddpm_steps_with_the_predicted_data_clipped_match_the_reference()
    {
        var r = Root.GetProperty("ddpm");
        var ddpm = new Ddpm(new DdpmOptions { ClipDenoised = true });
        using var x = T(r, "x", 3, 1, 4, 4);
        using var epsHat = T(r, "eps_hat", 3, 1, 4, 4);
        using var z = T(r, "z", 3, 1, 4, 4);
        var counts = new List<int>();
        foreach (var s in r.GetProperty("steps").EnumerateArray())
        {
            int t = s.GetProperty("t").GetInt32(), prev = s.GetProperty("prev").GetInt32();
            counts.Add(s.GetProperty("clipped_count").GetInt32());
            using var anc = ddpm.AncestralStep(x, epsHat, t, prev, z);
            using var ddim = ddpm.DdimStep(x, epsHat, t, prev);
            Close.Assert(D(anc), D(s, "ancestral_clipped"), $"clipped ancestral step {t} → {prev}", atol: 1e-9, rtol: 1e-9);
            Close.Assert(D(ddim), D(s, "ddim_clipped"), $"clipped DDIM step {t} → {prev}", atol: 1e-9, rtol: 1e-9);
        }
        // The inputs exercise the clip: every x̂_0 element clipped at t = 999, some but not all at t = 99.
        Assert.Equal(48, counts[0]);
        Assert.InRange(counts[1], 1, 47);
        // With the clip on, the last step lands in [−1, 1] whatever ε̂ says.
        using var last = ddpm.DdimStep(x, epsHat * 50, 99, -1);
        Assert.True(last.abs().max().item<double>() <= 1.0, "the final DDIM step's output is the clipped x̂_0");
    }

    static Tensor Velocity(Tensor x, Tensor t) => -x * (1 + t.to(x.dtype).unsqueeze(1)) + x.sin();

    [Fact]
    public void Rectified_flow_interpolation_target_steps_and_straightness_match_the_reference()
    {
        var r = Root.GetProperty("rf");
        using var x0 = T(r, "x0", 5, 2);
        using var x1 = T(r, "x1", 5, 2);
        using var t = T(r, "t", 5);
        using var xt = RectifiedFlow.Interpolate(x0, x1, t);
        Close.Assert(D(xt), D(r, "xt"), "x_t = t·x1 + (1 − t)·x0");
        using var target = RectifiedFlow.Target(x0, x1);
        Close.Assert(D(target), D(r, "target"), "x1 − x0");
        double t0 = r.GetProperty("t0").GetDouble(), dt = r.GetProperty("dt").GetDouble();
        // Times() makes float32 time tensors; t0 and dt are binary fractions, exact in float32.
        using var euler = RectifiedFlow.EulerStep(Velocity, x0, t0, dt);
        Close.Assert(D(euler), D(r, "euler"), "Euler step");
        using var heun = RectifiedFlow.HeunStep(Velocity, x0, t0, dt);
        Close.Assert(D(heun), D(r, "heun"), "Heun step");
        var flow = new RectifiedFlow();
        using var path = flow.SampleFrom(Velocity, x0, 4, Sampler.Euler);
        Close.Assert(D(path), D(r, "path4"), "4 Euler steps from t = 0 to 1");
        var (s, _) = RectifiedFlow.Straightness(Velocity, x0, 4);
        Close.Assert([s], [r.GetProperty("straightness4").GetDouble()], "straightness E∫‖(Z1 − Z0) − v‖² on the 4-step path");
    }

    [Fact]
    public void Poisson_flow_perturbation_field_target_and_drift_match_the_reference()
    {
        var r = Root.GetProperty("pfgm");
        int n = r.GetProperty("n").GetInt32();
        double gamma = r.GetProperty("gamma").GetDouble();
        var pfgm = new PoissonFlow(new PoissonFlowOptions { Gamma = gamma, ZExp = 0 });           // ZExp 0: the plain drift
        using var data = T(r, "data", 4, n);
        using var charges = T(r, "charges", 6, n);
        using var m = T(r, "m", 4);
        using var epsX = T(r, "eps_x", 4, n);
        using var epsZ = T(r, "eps_z", 4);
        using var direction = T(r, "direction", 4, n);
        var p = pfgm.Perturb(data, m, epsX, epsZ, direction);
        Close.Assert(D(p[0]), D(r, "y"), "perturbed y = x + ‖ε_x‖(1 + τ)^m·u", atol: 1e-9, rtol: 1e-10);
        Close.Assert(D(p[1]), D(r, "z"), "perturbed z = |ε_z|(1 + τ)^m", atol: 1e-12, rtol: 1e-10);
        // The C# field goes through ‖y‖² + ‖x‖² − 2y·x and a log-domain softmax; far points (‖y‖ ~ 10³) lose ~1e-10 relative to cancellation.
        using var target = pfgm.Target(p[0], p[1], charges);
        Close.Assert(D(target), D(r, "target"), "−√N·E/(‖E‖ + γ), E normalised by c(ỹ), at perturbed points", atol: 1e-8, rtol: 1e-7);
        using var yNear = T(r, "y_near", 4, n);
        using var zNear = T(r, "z_near", 4);
        using var near = pfgm.Target(yNear, zNear, charges);
        Close.Assert(D(near), D(r, "target_near"), "the field target near the data", atol: 1e-9, rtol: 1e-9);
        using var field = T(r, "field", 4, n + 1);
        using var x = torch.zeros(4, n, dtype: ScalarType.Float64);
        using var drift = pfgm.Drift((_, _) => field, x, r.GetProperty("zq").GetDouble());
        Close.Assert(D(drift), D(r, "drift"), "dx/d(ln z) = z·v_x/v_z");
        // Below z_exp the predicted v_z is replaced by the one the x part implies (PFGM appendix B.2.3).
        var substituting = new PoissonFlow(new PoissonFlowOptions { Gamma = gamma, ZExp = r.GetProperty("z_exp").GetDouble() });
        using var fieldSub = T(r, "field_sub", 4, n + 1);
        using var driftSub = substituting.Drift((_, _) => fieldSub, x, r.GetProperty("zq").GetDouble());
        Close.Assert(D(driftSub), D(r, "drift_sub"), "drift with v_z = −√N·z/(√(‖E_x‖² + z²) + γ), ‖E_x‖ = γ·n/(1 − n)", atol: 1e-9, rtol: 1e-9);
        foreach (var t in p) t.Dispose();
    }

    [Fact]
    public void Poisson_flow_settings_follow_the_authors_relations_for_any_dimension()
    {
        foreach (var c in Root.GetProperty("pfgm").GetProperty("calculator").EnumerateArray())
        {
            var o = PoissonFlowOptions.ForData(c.GetProperty("dim").GetInt64(), c.GetProperty("norm").GetDouble());
            string at = $"dimension {c.GetProperty("dim").GetInt64()}";
            Assert.Equal(c.GetProperty("m").GetDouble(), o.M);
            Close.Assert([o.ZMax, o.MaxPriorRadius], [c.GetProperty("z_max").GetDouble(), c.GetProperty("upper_norm").GetDouble()], $"z_max and radius bound, {at}", atol: 1e-9, rtol: 1e-9);
        }
        // CIFAR-10's dimension and norm give the PFGM code's own M.
        Assert.Equal(291, PoissonFlowOptions.ForData(3072, 32).M);
        Assert.Throws<ArgumentException>(() => PoissonFlowOptions.ForData(0, 1));
    }

    [Fact]
    public void Frechet_distance_matches_scipy_sqrtm()
    {
        var r = Root.GetProperty("frechet");
        int w = r.GetProperty("width").GetInt32();
        using var a = T(r, "a", -1, w);
        using var b = T(r, "b", -1, w);
        double fd = r.GetProperty("fd").GetDouble();
        Close.Assert([SampleQuality.FrechetDistance(a, b)], [fd], "Fréchet distance (eigh vs scipy.linalg.sqrtm)", atol: 1e-9, rtol: 1e-8);
        // A set against itself is at distance 0, up to rounding at the scale of the distances involved.
        Close.Assert([SampleQuality.FrechetDistance(a, a)], [0.0], "a set against itself", atol: 1e-9 * (1 + fd), rtol: 0);
    }
}
