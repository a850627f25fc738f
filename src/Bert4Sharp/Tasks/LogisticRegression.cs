namespace Bert4Sharp.Tasks;

using TorchSharp;
using static TorchSharp.torch;

/// <summary>
/// A linear classifier over a feature vector: logits = x·W + b, softmax over the classes. Binary logistic regression is
/// the two-class case (p(y=1|x) = σ(x·(W₁ − W₀) + b₁ − b₀)). Parameters are float64; prediction runs in float64.
/// </summary>
public sealed class LinearClassifier
{
    readonly double[] weights;   // (features, classes), row-major
    readonly double[] bias;      // (classes)

    /// <summary>Wraps row-major weights (<paramref name="features"/> × <paramref name="classes"/>) and a bias per class.</summary>
    /// <exception cref="ArgumentException">Lengths disagree with the sizes, or fewer than two classes.</exception>
    public LinearClassifier(int features, int classes, double[] weights, double[] bias)
    {
        if (features < 1) throw new ArgumentException($"features must be ≥ 1, got {features}", nameof(features));
        if (classes < 2) throw new ArgumentException($"a classifier needs at least 2 classes, got {classes}", nameof(classes));
        if (weights.Length != (long)features * classes)
            throw new ArgumentException($"weights must hold features × classes = {(long)features * classes} values, got {weights.Length}", nameof(weights));
        if (bias.Length != classes) throw new ArgumentException($"bias must hold {classes} values, got {bias.Length}", nameof(bias));
        Features = features;
        Classes = classes;
        this.weights = weights;
        this.bias = bias;
    }

    /// <summary>Input dimension n.</summary>
    public int Features { get; }

    /// <summary>Number of classes K (2 for binary logistic regression).</summary>
    public int Classes { get; }

    /// <summary>W as a (features, classes) float64 tensor (a new tensor; the caller disposes it).</summary>
    public Tensor Weights => torch.tensor(weights, [Features, Classes], ScalarType.Float64);

    /// <summary>b as a (classes) float64 tensor (a new tensor).</summary>
    public Tensor Bias => torch.tensor(bias, [Classes], ScalarType.Float64);

    /// <summary>A copy of W, row-major (features × classes).</summary>
    public double[] WeightValues => (double[])weights.Clone();

    /// <summary>A copy of b.</summary>
    public double[] BiasValues => (double[])bias.Clone();

    /// <summary>
    /// The binary direction w = W[:,1] − W[:,0] and offset b₁ − b₀ (p(y=1|x) = σ(x·w + b)); only for two classes.
    /// </summary>
    /// <exception cref="InvalidOperationException">The classifier has more than two classes.</exception>
    public (double[] Direction, double Offset) Binary()
    {
        if (Classes != 2) throw new InvalidOperationException($"Binary() needs a two-class classifier, this one has {Classes} classes");
        var w = new double[Features];
        for (int i = 0; i < Features; i++) w[i] = weights[i * 2 + 1] - weights[i * 2];
        return (w, bias[1] - bias[0]);
    }

    /// <summary>Logits (N, classes) float64 of features (N, features), any floating dtype, on the CPU.</summary>
    /// <exception cref="ArgumentException">Features are not (N, <see cref="Features"/>) floating point.</exception>
    public Tensor Logits(Tensor features)
    {
        LogisticRegressionChecks.Features(features, nameof(features), Features);
        using var scope = torch.NewDisposeScope();
        using var w = Weights;
        using var b = Bias;
        return (features.to(ScalarType.Float64).matmul(w) + b).MoveToOuterDisposeScope();   // (N, n)·(n, K) + (K) → (N, K)
    }

    /// <summary>Predicted class index per row.</summary>
    public int[] Predict(Tensor features)
    {
        using var scope = torch.NewDisposeScope();
        var best = Logits(features).argmax(1).to(ScalarType.Int32);
        return best.data<int>().ToArray();
    }

    /// <summary>Fraction of rows whose predicted class equals <paramref name="labels"/>.</summary>
    /// <exception cref="ArgumentException">The label count differs from the row count.</exception>
    public double Accuracy(Tensor features, IReadOnlyList<int> labels)
    {
        var predicted = Predict(features);
        if (predicted.Length != labels.Count)
            throw new ArgumentException($"labels must have one entry per feature row ({predicted.Length}), got {labels.Count}", nameof(labels));
        if (predicted.Length == 0) throw new ArgumentException("accuracy of zero rows is undefined", nameof(features));
        int right = 0;
        for (int i = 0; i < predicted.Length; i++) if (predicted[i] == labels[i]) right++;
        return (double)right / predicted.Length;
    }
}

/// <summary>How the closed form estimates the one covariance Σ its derivation assumes every class shares.</summary>
public enum SharedCovariance
{
    /// <summary>Σ = Σ_k p_k Σ_k, the class covariances weighted by the class priors (the maximum-likelihood Σ of the shared-covariance model, as LDA).</summary>
    Pooled,
    /// <summary>Σ = (1/K) Σ_k Σ_k, the plain average of the class covariances (for two classes, (Σ₀ + Σ₁)/2).</summary>
    ClassMean,
}

/// <summary>Options of <see cref="AnalyticLogisticRegression.Fit(Tensor, IReadOnlyList{int}, AnalyticLogisticRegressionOptions?, int?)"/>.</summary>
public sealed record AnalyticLogisticRegressionOptions
{
    /// <summary>
    /// Ridge added to the covariance before solving, relative to its scale: Σ + ridge·(tr Σ / n)·I. Needed whenever a
    /// feature is constant within every class (unused hash buckets, a dimension that never varies); 0 solves Σ as is and
    /// fails clearly if it is singular.
    /// </summary>
    public double Ridge { get; init; } = 1e-4;

    /// <summary>How Σ is estimated from the class covariances.</summary>
    public SharedCovariance Covariance { get; init; } = SharedCovariance.Pooled;

    /// <summary>Rows converted to float64 at a time (memory: rows × features × 8 bytes).</summary>
    public int ChunkRows { get; init; } = 8192;

    /// <summary>Rejects impossible settings.</summary>
    /// <exception cref="ArgumentException">A negative or non-finite ridge, or a chunk below one row.</exception>
    public void Validate()
    {
        if (!(Ridge >= 0) || double.IsInfinity(Ridge)) throw new ArgumentException($"Ridge must be a finite value ≥ 0, got {Ridge}");
        if (ChunkRows < 1) throw new ArgumentException($"ChunkRows must be ≥ 1, got {ChunkRows}");
    }
}

/// <summary>
/// The closed-form logistic (softmax) regression of Su Jianlin, "概率视角下的线性模型：逻辑回归有解析解吗？"
/// (https://kexue.fm/archives/8578): instead of maximising the likelihood of p(y|x), assume each class's features
/// are normal with a shared covariance, x | y=k ~ N(μ_k, Σ), and read p(y|x) off Bayes' rule. The log-density
/// ratio is then linear in x, so p(y=k|x) = softmax_k(x·W + b) with
/// <code>
///   W[:, k] = Σ⁻¹ μ_kᵀ,   b_k = log p_k − ½ μ_k Σ⁻¹ μ_kᵀ
/// </code>
/// (p_k the class prior); for two classes that is the sigmoid with w = Σ⁻¹(μ₁ − μ₀)ᵀ and
/// b = ½(μ₀Σ⁻¹μ₀ᵀ − μ₁Σ⁻¹μ₁ᵀ) + log(p₁/p₀). Only the class means, priors and one covariance are needed: one pass
/// over the data and one n × n solve, in float64.
/// </summary>
public static class AnalyticLogisticRegression
{
    /// <summary>
    /// Fits W and b in closed form. <paramref name="features"/> (N, n) floating point on the CPU; <paramref name="labels"/>
    /// N class indices in [0, K), K = <paramref name="classes"/> or max label + 1. Every class needs at least one row.
    /// </summary>
    /// <exception cref="ArgumentException">Wrong shapes, labels out of range, a class without rows, non-finite features, or a singular covariance (with the ridge to set).</exception>
    public static LinearClassifier Fit(Tensor features, IReadOnlyList<int> labels, AnalyticLogisticRegressionOptions? options = null, int? classes = null)
    {
        options ??= new AnalyticLogisticRegressionOptions();
        options.Validate();
        var (n, k, counts) = LogisticRegressionChecks.Inputs(features, labels, classes);
        long rows = features.shape[0];
        using var scope = torch.NewDisposeScope();
        var y = torch.tensor(labels.Select(l => (long)l).ToArray(), ScalarType.Int64);

        // Pass 1: class sums → means M (K, n).
        var sums = torch.zeros(k, n, ScalarType.Float64);
        for (long start = 0; start < rows; start += options.ChunkRows)
        {
            using var inner = torch.NewDisposeScope();
            long end = Math.Min(rows, start + options.ChunkRows);
            var x = features.narrow(0, start, end - start).to(ScalarType.Float64);                       // (c, n)
            if (!x.isfinite().all().ToBoolean())
                throw new ArgumentException($"features hold a NaN or infinite value in rows {start}..{end - 1}", nameof(features));
            sums.index_add_(0, y.narrow(0, start, end - start), x, 1.0);
        }
        var countTensor = torch.tensor(counts.Select(c => (double)c).ToArray(), ScalarType.Float64);
        var means = sums / countTensor.unsqueeze(1);                                     // (K, n)

        // Pass 2: within-class scatter of d_i = x_i − μ_{y_i}, each row weighted so that the sum is the chosen Σ.
        var rowWeight = options.Covariance == SharedCovariance.Pooled
            ? torch.full(k, 1.0 / rows, ScalarType.Float64)                              // Σ_k (N_k/N)·Σ_k = (1/N)·Σ_i d_i d_iᵀ
            : 1.0 / (k * countTensor);                                                    // (1/K)·Σ_k (1/N_k)·Σ_{i∈k} d_i d_iᵀ
        var sigma = torch.zeros(n, n, ScalarType.Float64);
        for (long start = 0; start < rows; start += options.ChunkRows)
        {
            using var inner = torch.NewDisposeScope();
            long end = Math.Min(rows, start + options.ChunkRows);
            var yc = y.narrow(0, start, end - start);
            var d = features.narrow(0, start, end - start).to(ScalarType.Float64) - means.index_select(0, yc);      // (c, n)
            var scaled = d * rowWeight.index_select(0, yc).unsqueeze(1);
            sigma.add_(scaled.t().matmul(d));                                                     // (n, c)·(c, n)
        }

        if (options.Ridge > 0)
        {
            double scale = sigma.diagonal().mean().ToDouble();
            sigma.diagonal().add_(options.Ridge * (scale > 0 ? scale : 1.0));
        }
        var (factor, info) = torch.linalg.cholesky_ex(sigma);
        if (info.ToInt32() != 0)
            throw new ArgumentException(
                $"the shared covariance ({n}×{n}) is singular or not positive definite (Cholesky failed at column {info.ToInt32()}" +
                (options.Ridge > 0 ? $" even with ridge {options.Ridge}" : ", ridge 0") +
                "): some feature is (nearly) constant within every class or a linear combination of others; set Ridge > 0 (e.g. 1e-4) or drop those features",
                nameof(features));
        var w = torch.cholesky_solve(means.t(), factor);                                  // Σ⁻¹ Mᵀ: (n, K)
        var quad = (means * w.t()).sum(1);                                                // μ_k Σ⁻¹ μ_kᵀ: (K)
        var b = (countTensor / rows).log() - 0.5 * quad;                                  // log p_k − ½ μ_k Σ⁻¹ μ_kᵀ
        return new LinearClassifier((int)n, k, w.contiguous().data<double>().ToArray(), b.data<double>().ToArray());
    }

    /// <summary>Convenience overload over jagged float rows (copied into one tensor).</summary>
    /// <exception cref="ArgumentException">Rows of different lengths, or any error of the tensor overload.</exception>
    public static LinearClassifier Fit(IReadOnlyList<float[]> features, IReadOnlyList<int> labels, AnalyticLogisticRegressionOptions? options = null, int? classes = null)
    {
        using var x = LogisticRegressionChecks.ToTensor(features, nameof(features));
        return Fit(x, labels, options, classes);
    }
}

/// <summary>Options of <see cref="MaximumLikelihoodLogisticRegression"/>.</summary>
public sealed record MaximumLikelihoodOptions
{
    /// <summary>L2 penalty ½·λ·‖W‖² added to the mean negative log-likelihood (bias not penalised).</summary>
    public double L2 { get; init; } = 1e-4;

    /// <summary>L-BFGS iterations at most.</summary>
    public int MaxIterations { get; init; } = 200;

    /// <summary>Stop when the gradient's largest entry falls below this.</summary>
    public double GradientTolerance { get; init; } = 1e-6;

    /// <summary>Stop when the loss improves by less than this (relative) in one iteration.</summary>
    public double RelativeTolerance { get; init; } = 1e-10;

    /// <summary>L-BFGS memory (pairs kept).</summary>
    public int History { get; init; } = 10;

    /// <summary>Compute precision of the full-batch passes (float32 halves memory; the parameters and the L-BFGS state stay float64).</summary>
    public ScalarType Precision { get; init; } = ScalarType.Float32;

    /// <summary>Rejects impossible settings.</summary>
    /// <exception cref="ArgumentException">A negative L2 or tolerance, no iterations, or an empty history.</exception>
    public void Validate()
    {
        if (!(L2 >= 0) || double.IsInfinity(L2)) throw new ArgumentException($"L2 must be a finite value ≥ 0, got {L2}");
        if (MaxIterations < 1) throw new ArgumentException($"MaxIterations must be ≥ 1, got {MaxIterations}");
        if (!(GradientTolerance >= 0)) throw new ArgumentException($"GradientTolerance must be ≥ 0, got {GradientTolerance}");
        if (!(RelativeTolerance >= 0)) throw new ArgumentException($"RelativeTolerance must be ≥ 0, got {RelativeTolerance}");
        if (History < 1) throw new ArgumentException($"History must be ≥ 1, got {History}");
        if (Precision is not (ScalarType.Float32 or ScalarType.Float64)) throw new ArgumentException($"Precision must be Float32 or Float64, got {Precision}");
    }
}

/// <summary>What a maximum-likelihood fit did: iterations, final loss, why it stopped.</summary>
public sealed record MaximumLikelihoodReport(int Iterations, double Loss, double GradientMax, string Stopped);

/// <summary>
/// Logistic (softmax) regression by maximum likelihood: the mean cross-entropy (sigmoid for two classes, softmax
/// otherwise) plus an L2 penalty, minimised full-batch with L-BFGS and a backtracking (Armijo) line search. The
/// objective is convex, so this converges to the unique optimum — the peer the closed form of
/// <see cref="AnalyticLogisticRegression"/> is compared against.
/// </summary>
public static class MaximumLikelihoodLogisticRegression
{
    /// <summary>Fits W and b. Same inputs and checks as <see cref="AnalyticLogisticRegression.Fit(Tensor, IReadOnlyList{int}, AnalyticLogisticRegressionOptions?, int?)"/>.</summary>
    /// <exception cref="ArgumentException">Wrong shapes, labels out of range, a class without rows, or non-finite features.</exception>
    public static (LinearClassifier Classifier, MaximumLikelihoodReport Report) Fit(Tensor features, IReadOnlyList<int> labels,
        MaximumLikelihoodOptions? options = null, int? classes = null)
    {
        options ??= new MaximumLikelihoodOptions();
        options.Validate();
        var (n, k, _) = LogisticRegressionChecks.Inputs(features, labels, classes);
        using var scope = torch.NewDisposeScope();
        var x = features.to(options.Precision);
        if (!x.isfinite().all().ToBoolean()) throw new ArgumentException("features hold a NaN or infinite value", nameof(features));
        var y = torch.tensor(labels.Select(l => (long)l).ToArray(), ScalarType.Int64);
        bool binary = k == 2;
        long outputs = binary ? 1 : k;                      // binary: one logit, σ(x·w + b)
        long wCount = n * outputs;
        var targets = binary ? y.to(options.Precision) : y;

        // Loss and gradient at θ = [vec(W) (n, outputs); b (outputs)], float64 in and out.
        (double Loss, Tensor Grad) Evaluate(Tensor theta)
        {
            using var inner = torch.NewDisposeScope();
            var p = theta.to(options.Precision).detach().requires_grad_(true);
            var w = p[..(int)wCount].view(n, outputs);
            var b = p[(int)wCount..];
            var logits = x.matmul(w) + b;                                                   // (N, outputs)
            var nll = binary
                ? nn.functional.binary_cross_entropy_with_logits(logits.squeeze(1), targets)
                : nn.functional.cross_entropy(logits, targets);
            var loss = nll.to(ScalarType.Float64) + 0.5 * options.L2 * w.to(ScalarType.Float64).pow(2).sum();
            loss.backward();
            var grad = p.grad!.to(ScalarType.Float64).clone();
            return (loss.ToDouble(), grad.MoveToOuterDisposeScope());
        }

        var theta = torch.zeros(wCount + outputs, ScalarType.Float64);
        var report = Lbfgs(theta, Evaluate, options);
        var t = theta.data<double>().ToArray();
        var weights = new double[n * k];
        var bias = new double[k];
        if (binary)
        {
            for (long i = 0; i < n; i++) weights[i * 2 + 1] = t[i];   // class 0's column stays 0: logits (0, x·w + b)
            bias[1] = t[wCount];
        }
        else
        {
            Array.Copy(t, weights, wCount);
            Array.Copy(t, wCount, bias, 0, k);
        }
        return (new LinearClassifier((int)n, k, weights, bias), report);
    }

    /// <summary>Convenience overload over jagged float rows.</summary>
    public static (LinearClassifier Classifier, MaximumLikelihoodReport Report) Fit(IReadOnlyList<float[]> features, IReadOnlyList<int> labels,
        MaximumLikelihoodOptions? options = null, int? classes = null)
    {
        using var x = LogisticRegressionChecks.ToTensor(features, nameof(features));
        return Fit(x, labels, options, classes);
    }

    // Two-loop L-BFGS (Nocedal & Wright, Alg. 7.4) with Armijo backtracking; θ is updated in place.
    static MaximumLikelihoodReport Lbfgs(Tensor theta, Func<Tensor, (double Loss, Tensor Grad)> evaluate, MaximumLikelihoodOptions options)
    {
        var s = new List<Tensor>();
        var yHist = new List<Tensor>();
        var rho = new List<double>();
        var (loss, grad) = evaluate(theta);
        double gMax = grad.abs().max().ToDouble();
        string stopped = "iteration limit";
        int iteration = 0;
        try
        {
            for (; iteration < options.MaxIterations; iteration++)
            {
                if (gMax <= options.GradientTolerance) { stopped = "gradient tolerance"; break; }
                using var step = torch.NewDisposeScope();
                // Direction d = −H·g by the two-loop recursion.
                var q = grad.clone();
                var alpha = new double[s.Count];
                for (int i = s.Count - 1; i >= 0; i--)
                {
                    alpha[i] = rho[i] * s[i].dot(q).ToDouble();
                    q.sub_(yHist[i] * alpha[i]);
                }
                double gamma = s.Count > 0 ? s[^1].dot(yHist[^1]).ToDouble() / yHist[^1].dot(yHist[^1]).ToDouble() : 1.0 / Math.Max(1.0, grad.norm().ToDouble());
                q.mul_(gamma);
                for (int i = 0; i < s.Count; i++)
                {
                    double beta = rho[i] * yHist[i].dot(q).ToDouble();
                    q.add_(s[i] * (alpha[i] - beta));
                }
                var direction = -q;
                double slope = grad.dot(direction).ToDouble();
                if (slope >= 0) { direction = -grad; slope = -grad.dot(grad).ToDouble(); ClearHistory(); }

                double t = 1.0, newLoss = double.NaN;
                Tensor? newTheta = null, newGrad = null;
                for (int tries = 0; tries < 40; tries++, t *= 0.5)
                {
                    newTheta = theta + direction * t;
                    (newLoss, newGrad) = evaluate(newTheta);
                    if (double.IsFinite(newLoss) && newLoss <= loss + 1e-4 * t * slope) break;
                    newGrad.Dispose();
                    newGrad = null;
                }
                if (newGrad is null) { stopped = "line search failed (loss flat at machine precision)"; break; }
                var sk = (newTheta! - theta).MoveToOuterDisposeScope();
                var yk = (newGrad - grad).MoveToOuterDisposeScope();
                double sy = sk.dot(yk).ToDouble();
                theta.copy_(newTheta!);
                grad.Dispose();
                grad = newGrad.MoveToOuterDisposeScope();
                double improvement = loss - newLoss;
                loss = newLoss;
                gMax = grad.abs().max().ToDouble();
                if (sy > 1e-12)
                {
                    s.Add(sk); yHist.Add(yk); rho.Add(1.0 / sy);
                    if (s.Count > options.History) { s[0].Dispose(); yHist[0].Dispose(); s.RemoveAt(0); yHist.RemoveAt(0); rho.RemoveAt(0); }
                }
                else { sk.Dispose(); yk.Dispose(); }
                if (improvement <= options.RelativeTolerance * Math.Max(1.0, Math.Abs(loss))) { iteration++; stopped = "loss tolerance"; break; }
            }
        }
        finally
        {
            ClearHistory();
            grad.Dispose();
        }
        return new MaximumLikelihoodReport(iteration, loss, gMax, stopped);

        void ClearHistory()
        {
            foreach (var v in s) v.Dispose();
            foreach (var v in yHist) v.Dispose();
            s.Clear(); yHist.Clear(); rho.Clear();
        }
    }
}

/// <summary>Input checks shared by the two fits and the classifier.</summary>
static class LogisticRegressionChecks
{
    public static void Features(Tensor features, string name, long? columns = null)
    {
        if (features.dim() != 2) throw new ArgumentException($"features must be a (rows, features) matrix, got {features.dim()} dimension(s) [{string.Join(", ", features.shape)}]", name);
        if (!features.is_floating_point()) throw new ArgumentException($"features must be floating point, got {features.dtype}", name);
        if (features.device_type != DeviceType.CPU) throw new ArgumentException($"features must be on the CPU, got {features.device}", name);
        if (columns is long c && features.shape[1] != c) throw new ArgumentException($"features must have {c} columns (the classifier's input size), got {features.shape[1]}", name);
    }

    public static (long Features, int Classes, long[] Counts) Inputs(Tensor features, IReadOnlyList<int> labels, int? classes)
    {
        Features(features, nameof(features));
        long rows = features.shape[0], n = features.shape[1];
        if (n < 1) throw new ArgumentException("features have no columns", nameof(features));
        if (labels.Count != rows) throw new ArgumentException($"labels must have one entry per feature row ({rows}), got {labels.Count}", nameof(labels));
        if (rows == 0) throw new ArgumentException("no training rows", nameof(features));
        int k = classes ?? labels.Max() + 1;
        if (k < 2) throw new ArgumentException($"a classifier needs at least 2 classes, got {k} (labels must be class indices 0..K−1)", nameof(labels));
        var counts = new long[k];
        for (int i = 0; i < labels.Count; i++)
        {
            int l = labels[i];
            if (l < 0 || l >= k) throw new ArgumentException($"labels[{i}] = {l} is outside [0, {k})", nameof(labels));
            counts[l]++;
        }
        int empty = Array.IndexOf(counts, 0L);
        if (empty >= 0) throw new ArgumentException($"class {empty} has no training rows (of {k} classes): its prior and mean are undefined; relabel to 0..K−1 without gaps", nameof(labels));
        return (n, k, counts);
    }

    public static Tensor ToTensor(IReadOnlyList<float[]> rows, string name)
    {
        if (rows.Count == 0) throw new ArgumentException("no training rows", name);
        int n = rows[0].Length;
        var flat = new float[(long)rows.Count * n];
        for (int i = 0; i < rows.Count; i++)
        {
            if (rows[i].Length != n) throw new ArgumentException($"row {i} has {rows[i].Length} features, row 0 has {n}", name);
            Array.Copy(rows[i], 0, flat, (long)i * n, n);
        }
        return torch.tensor(flat, [rows.Count, n], ScalarType.Float32);
    }
}
