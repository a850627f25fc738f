namespace Bert4Sharp.Diffusion.Metrics;

using Bert4Sharp.Embeddings;
using TorchSharp;
using static TorchSharp.torch;

/// <summary>How generated images look to the metric classifier.</summary>
/// <param name="FrechetDistance">Fréchet distance between the classifier's penultimate features of the samples and of the real images.</param>
/// <param name="ClassEntropy">Entropy (nats) of the predicted-class histogram; ln 10 ≈ 2.303 when all digits are equally common.</param>
/// <param name="MaxClassShare">Share of the most common predicted class (0.1 when balanced).</param>
/// <param name="MeanConfidence">Mean of the classifier's top probability.</param>
/// <param name="ClassCounts">Predicted-class counts, 0–9.</param>
public sealed record ImageQuality(double FrechetDistance, double ClassEntropy, double MaxClassShare, double MeanConfidence, int[] ClassCounts);

/// <summary>Sample-quality measures: Fréchet distance of features, class statistics, and the exact 2-D Wasserstein distance.</summary>
public static class SampleQuality
{
    /// <summary>
    /// The Fréchet distance between Gaussians fitted to two feature sets (B, F), as FID computes it:
    /// ‖μ₁ − μ₂‖² + tr Σ₁ + tr Σ₂ − 2·tr (Σ₁^½ Σ₂ Σ₁^½)^½, in float64 with symmetric eigendecompositions (negative
    /// round-off eigenvalues clipped to 0). Biased upward at small sample sizes: compare numbers at equal sizes only.
    /// </summary>
    /// <exception cref="ArgumentException">Fewer than two rows, or different widths.</exception>
    public static double FrechetDistance(Tensor a, Tensor b)
    {
        if (a.dim() != 2 || b.dim() != 2 || a.shape[1] != b.shape[1]) throw new ArgumentException($"feature sets must be (B, F) of one width, got [{string.Join(", ", a.shape)}] and [{string.Join(", ", b.shape)}]");
        if (a.shape[0] < 2 || b.shape[0] < 2) throw new ArgumentException("the Fréchet distance needs at least two rows in each set");
        using var scope = torch.NewDisposeScope();
        var (mu1, s1) = Moments(a);
        var (mu2, s2) = Moments(b);
        var root1 = SymmetricSqrt(s1);
        var middle = root1.matmul(s2).matmul(root1);
        middle = (middle + middle.t()) / 2;
        var eig = torch.linalg.eigvalsh(middle).clamp_min(0).sqrt().sum();
        return ((mu1 - mu2).pow(2).sum() + s1.trace() + s2.trace() - 2 * eig).ToDouble();
    }

    static (Tensor Mean, Tensor Covariance) Moments(Tensor x)
    {
        var d = x.to(ScalarType.Float64);
        var mu = d.mean([0]);
        var c = d - mu;
        return (mu, c.t().matmul(c) / (d.shape[0] - 1));                                 // unbiased, as numpy.cov
    }

    static Tensor SymmetricSqrt(Tensor s)
    {
        var (values, vectors) = torch.linalg.eigh(s);
        return vectors.matmul(torch.diag(values.clamp_min(0).sqrt())).matmul(vectors.t());
    }

    /// <summary>Class statistics and the Fréchet distance of generated images against real ones, through the classifier.</summary>
    public static ImageQuality Images(MnistClassifier classifier, Tensor generated, Tensor real)
    {
        var (fr, pr) = classifier.Embed(real);
        using (fr) using (pr) return ImagesAgainst(classifier, generated, fr);
    }

    /// <summary><see cref="Images"/> against real features already embedded (<see cref="MnistClassifier.Embed"/>), so that they are embedded once for many sample sets.</summary>
    public static ImageQuality ImagesAgainst(MnistClassifier classifier, Tensor generated, Tensor realFeatures)
    {
        var (fg, pg) = classifier.Embed(generated);
        using (fg) using (pg)
        {
            var fr = realFeatures;
            double fd = FrechetDistance(fg, fr);
            var predicted = pg.argmax(1).data<long>().ToArray();
            var counts = new int[10];
            foreach (long c in predicted) counts[c]++;
            double n = predicted.Length;
            double entropy = -counts.Where(c => c > 0).Sum(c => c / n * Math.Log(c / n));
            using var top = pg.max(1).values.mean();
            return new ImageQuality(fd, entropy, counts.Max() / n, top.ToDouble(), counts);
        }
    }

    /// <summary>
    /// The exact 2-Wasserstein distance between two equal-size point sets (B, D) with uniform weights: the optimal assignment
    /// under squared Euclidean cost, solved by the core's transportation simplex (<see cref="OptimalTransport.Exact"/>),
    /// returned as √(min mean ‖x_i − y_σ(i)‖²).
    /// </summary>
    /// <exception cref="ArgumentException">Different sizes or widths.</exception>
    public static double Wasserstein2(Tensor x, Tensor y)
    {
        if (x.dim() != 2 || y.dim() != 2 || x.shape[0] != y.shape[0] || x.shape[1] != y.shape[1])
            throw new ArgumentException($"the exact W2 takes two (B, D) sets of equal size, got [{string.Join(", ", x.shape)}] and [{string.Join(", ", y.shape)}]");
        int n = (int)x.shape[0];
        using var d = torch.cdist(x.to(ScalarType.Float64), y.to(ScalarType.Float64)).pow(2);
        var flat = d.data<double>().ToArray();
        var cost = new double[n, n];
        for (int i = 0; i < n; i++)
            for (int j = 0; j < n; j++) cost[i, j] = flat[i * n + j];
        var w = Enumerable.Repeat(1.0 / n, n).ToArray();
        var plan = OptimalTransport.Exact(w, w, cost, new TransportOptions { MaxPivots = 10_000_000 });
        return Math.Sqrt(Math.Max(plan.Cost, 0));
    }

    /// <summary>
    /// The mean Euclidean distance from each point of <paramref name="x"/> (B, D) to its nearest point of
    /// <paramref name="reference"/> (R, D), a large sample of the target: a precision-like number that W2 at small B cannot
    /// give (W2 between two finite samples of a multi-modal target is dominated by their different mode counts; samples
    /// spread along a ring through eight modes and samples on the modes score alike). Compare with the same number for
    /// B fresh target samples.
    /// </summary>
    /// <exception cref="ArgumentException">Different widths or empty sets.</exception>
    public static double MeanNearestDistance(Tensor x, Tensor reference)
    {
        if (x.dim() != 2 || reference.dim() != 2 || x.shape[1] != reference.shape[1] || x.shape[0] == 0 || reference.shape[0] == 0)
            throw new ArgumentException($"nearest distances take two non-empty (B, D) sets of one width, got [{string.Join(", ", x.shape)}] and [{string.Join(", ", reference.shape)}]");
        using var scope = torch.NewDisposeScope();
        var d = torch.cdist(x.to(ScalarType.Float64), reference.to(ScalarType.Float64));
        return d.min(1).values.mean().item<double>();
    }
}
