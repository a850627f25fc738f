namespace Bert4Sharp.Tests.Tasks;

using System.Text.Json;
using Bert4Sharp.Tasks;
using TorchSharp;
using static TorchSharp.torch;

/// <summary>
/// The closed-form logistic / softmax regression (kexue.fm/archives/8578) against the NumPy reference
/// tests/reference/make_analytic_lr_refs.py (tests/fixtures/classics/analytic_lr.json), its agreement with the
/// maximum-likelihood fit where its assumption holds, and its errors on bad input.
/// </summary>
public sealed class LogisticRegressionTests
{
    sealed record RefCase(string Name, int Classes, double Ridge, string Covariance, float[] Features, int Rows, int N, int[] Labels,
        double[] Weights, double[] Bias, int[] Predicted, double[]? Direction, double? Offset);

    sealed record RefFile(RefCase[] Cases);

    static RefCase[] Cases()
    {
        var json = File.ReadAllText(TestPaths.Fixture("classics", "analytic_lr.json"));
        return JsonSerializer.Deserialize<RefFile>(json, new JsonSerializerOptions { PropertyNameCaseInsensitive = true })!.Cases;
    }

    [Fact]
    public void Closed_form_matches_the_numpy_reference()
    {
        var cases = Cases();
        Assert.Equal(4, cases.Length);
        foreach (var c in cases)
        {
            using var scope = torch.NewDisposeScope();
            var x = torch.tensor(c.Features, [c.Rows, c.N]);
            var options = new AnalyticLogisticRegressionOptions
            {
                Ridge = c.Ridge,
                Covariance = c.Covariance == "pooled" ? SharedCovariance.Pooled : SharedCovariance.ClassMean,
                ChunkRows = 7,   // several chunks, one ragged: the chunked passes must equal the one-shot reference
            };
            var model = AnalyticLogisticRegression.Fit(x, c.Labels, options, c.Classes);
            // float64 on both sides; the solve's round-off grows with the condition number, hence 1e-9 rather than 1e-7.
            Close.Assert(model.WeightValues, c.Weights, $"{c.Name} W", atol: 1e-9, rtol: 1e-9);
            Close.Assert(model.BiasValues, c.Bias, $"{c.Name} b", atol: 1e-9, rtol: 1e-9);
            Assert.Equal(c.Predicted, model.Predict(x));
            if (c.Classes == 2)
            {
                var (w, b) = model.Binary();
                Close.Assert(w, c.Direction!, $"{c.Name} binary w = Σ⁻¹(μ₁ − μ₀)", atol: 1e-9, rtol: 1e-9);
                Close.Assert([b], [c.Offset!.Value], $"{c.Name} binary b", atol: 1e-9, rtol: 1e-9);
            }
            else Assert.Throws<InvalidOperationException>(() => model.Binary());
        }
    }

    // Converged: the largest gradient entry within 100× the optimizer's own stopping tolerance (float64 L-BFGS stops on it or on the
    // relative loss change, which leaves it a little above).
    static void AssertConverged(MaximumLikelihoodReport report, MaximumLikelihoodOptions options) =>
        Assert.True(report.GradientMax <= 100 * options.GradientTolerance, $"MLE did not converge: {report}");

    // Two Gaussian classes with one shared covariance: the closed form's assumption holds exactly, so both it and the
    // MLE estimate the same true direction Σ⁻¹(μ₁ − μ₀). With 4,000 rows in 5 dimensions their directions agree to a
    // cosine above 0.99 (the stated tolerance: both estimate the true direction from 4,000 samples) and their accuracies to 1 point.
    [Fact]
    public void On_shared_covariance_gaussians_the_closed_form_matches_the_mle_direction()
    {
        using var scope = torch.NewDisposeScope();
        var (x, labels) = Gaussians(rows: 4000, classes: 2, seed: 17);
        var analytic = AnalyticLogisticRegression.Fit(x, labels);
        var options = new MaximumLikelihoodOptions { L2 = 0, Precision = ScalarType.Float64 };
        var (mle, report) = MaximumLikelihoodLogisticRegression.Fit(x, labels, options);
        AssertConverged(report, options);
        var (wa, ba) = analytic.Binary();
        var (wm, bm) = mle.Binary();
        double cosine = Cosine(wa, wm);
        Assert.True(cosine > 0.99, $"cosine(analytic, MLE) = {cosine:F5}");
        double accA = analytic.Accuracy(x, labels), accM = mle.Accuracy(x, labels);
        Assert.True(Math.Abs(accA - accM) <= 0.01, $"accuracy analytic {accA:F4} vs MLE {accM:F4}");
        Assert.True(accA > 0.8, $"the classes are separable well above chance; analytic accuracy {accA:F4}");
    }

    // Softmax: the same agreement per class-difference direction (softmax weights are identifiable only up to a shared shift).
    [Fact]
    public void Softmax_closed_form_agrees_with_the_mle_on_shared_covariance_gaussians()
    {
        using var scope = torch.NewDisposeScope();
        var (x, labels) = Gaussians(rows: 6000, classes: 3, seed: 5);
        var analytic = AnalyticLogisticRegression.Fit(x, labels);
        var options = new MaximumLikelihoodOptions { L2 = 0, Precision = ScalarType.Float64 };
        var (mle, report) = MaximumLikelihoodLogisticRegression.Fit(x, labels, options);
        AssertConverged(report, options);
        double[] wa = analytic.WeightValues, wm = mle.WeightValues;
        int n = analytic.Features;
        for (int c = 1; c < 3; c++)
        {
            var da = Enumerable.Range(0, n).Select(i => wa[i * 3 + c] - wa[i * 3]).ToArray();
            var dm = Enumerable.Range(0, n).Select(i => wm[i * 3 + c] - wm[i * 3]).ToArray();
            Assert.True(Cosine(da, dm) > 0.99, $"class {c} − class 0: cosine {Cosine(da, dm):F5}");
        }
        Assert.True(Math.Abs(analytic.Accuracy(x, labels) - mle.Accuracy(x, labels)) <= 0.01);
    }

    [Fact]
    public void Mle_on_float_rows_reaches_the_stationary_point()
    {
        // The MLE's own check: at its answer the penalised gradient vanishes (checked independently with autograd).
        using var scope = torch.NewDisposeScope();
        var (x, labels) = Gaussians(rows: 500, classes: 3, seed: 3);
        var options = new MaximumLikelihoodOptions { L2 = 1e-2, Precision = ScalarType.Float64, GradientTolerance = 1e-9, RelativeTolerance = 0 };
        var (model, report) = MaximumLikelihoodLogisticRegression.Fit(x, labels, options);
        var w = model.Weights.requires_grad_(true);
        var b = model.Bias.requires_grad_(true);
        var loss = nn.functional.cross_entropy(x.to(float64).matmul(w) + b, torch.tensor(labels.Select(l => (long)l).ToArray())) + 0.5 * 1e-2 * w.pow(2).sum();
        loss.backward();
        Close.Assert(w.grad!, torch.zeros_like(w), "∂loss/∂W at the MLE", atol: 1e-7);
        Close.Assert(b.grad!, torch.zeros_like(b), "∂loss/∂b at the MLE", atol: 1e-7);
        Close.Assert([loss.ToDouble()], [report.Loss], "reported loss");
    }

    [Fact]
    public void Bad_input_fails_with_a_specific_message()
    {
        using var scope = torch.NewDisposeScope();
        var x = torch.randn(10, 3, generator: new torch.Generator((ulong)1));
        int[] labels = [0, 1, 0, 1, 0, 1, 0, 1, 0, 1];
        Assert.Contains("one entry per feature row (10), got 9", Assert.Throws<ArgumentException>(() => AnalyticLogisticRegression.Fit(x, labels[..9])).Message);
        Assert.Contains("(rows, features) matrix", Assert.Throws<ArgumentException>(() => AnalyticLogisticRegression.Fit(torch.randn(10), labels)).Message);
        Assert.Contains("floating point", Assert.Throws<ArgumentException>(() => AnalyticLogisticRegression.Fit(torch.ones(10, 3, int64), labels)).Message);
        Assert.Contains("labels[3] = 5 is outside [0, 2)", Assert.Throws<ArgumentException>(() => AnalyticLogisticRegression.Fit(x, [0, 1, 0, 5, 0, 1, 0, 1, 0, 1], classes: 2)).Message);
        Assert.Contains("class 1 has no training rows", Assert.Throws<ArgumentException>(() => AnalyticLogisticRegression.Fit(x, [0, 2, 0, 2, 0, 2, 0, 2, 0, 2])).Message);
        Assert.Contains("at least 2 classes", Assert.Throws<ArgumentException>(() => AnalyticLogisticRegression.Fit(x, new int[10])).Message);
        Assert.Contains("Ridge must be", Assert.Throws<ArgumentException>(() => AnalyticLogisticRegression.Fit(x, labels, new() { Ridge = -1 })).Message);
        var withNan = x.clone();
        withNan[4, 1] = torch.tensor(double.NaN);
        Assert.Contains("NaN or infinite value in rows 0..9", Assert.Throws<ArgumentException>(() => AnalyticLogisticRegression.Fit(withNan, labels)).Message);
        Assert.Contains("NaN or infinite", Assert.Throws<ArgumentException>(() => MaximumLikelihoodLogisticRegression.Fit(withNan, labels)).Message);
        // A column constant within every class makes Σ singular: clear error with ridge 0, solvable with a ridge.
        var constant = torch.cat([x, torch.ones(10, 1)], 1);
        var singular = Assert.Throws<ArgumentException>(() => AnalyticLogisticRegression.Fit(constant, labels, new() { Ridge = 0 }));
        Assert.Contains("singular", singular.Message);
        Assert.Contains("set Ridge > 0", singular.Message);
        Assert.Equal(4, AnalyticLogisticRegression.Fit(constant, labels).Features);
        Assert.Contains("row 1 has 2 features, row 0 has 3", Assert.Throws<ArgumentException>(() => AnalyticLogisticRegression.Fit([new float[3], new float[2]], [0, 1])).Message);
        var model = AnalyticLogisticRegression.Fit(x, labels);
        Assert.Contains("must have 3 columns", Assert.Throws<ArgumentException>(() => model.Predict(torch.randn(2, 4))).Message);
        Assert.Contains("MaxIterations", Assert.Throws<ArgumentException>(() => MaximumLikelihoodLogisticRegression.Fit(x, labels, new() { MaxIterations = 0 })).Message);
    }

    // Classes k = 0..K−1 with means 1.5·e_k-ish spread and one random shared covariance A·Aᵀ.
    static (Tensor X, int[] Labels) Gaussians(int rows, int classes, int seed)
    {
        var g = new torch.Generator((ulong)seed);
        const int n = 5;
        var means = torch.randn(classes, n, float64, generator: g) * 1.0;
        var a = torch.randn(n, n, float64, generator: g) * 0.6 + torch.eye(n, dtype: float64) * 0.5;
        var labels = torch.randint(0, classes, rows, generator: g).data<long>().ToArray().Select(l => (int)l).ToArray();
        var y = torch.tensor(labels.Select(l => (long)l).ToArray());
        var x = means.index_select(0, y) + torch.randn(rows, n, float64, generator: g).matmul(a);     // (rows, n), cov AᵀA
        return (x.to(float32), labels);
    }

    static double Cosine(double[] a, double[] b)
    {
        double dot = 0, na = 0, nb = 0;
        for (int i = 0; i < a.Length; i++) { dot += a[i] * b[i]; na += a[i] * a[i]; nb += b[i] * b[i]; }
        return dot / Math.Sqrt(na * nb);
    }
}
