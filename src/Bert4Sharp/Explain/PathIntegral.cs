namespace Bert4Sharp.Explain;

/// <summary>How the path integral of integrated gradients is approximated.</summary>
public enum IntegrationMethod
{
    /// <summary>Gauss–Legendre quadrature: n nodes, exact for polynomials of degree 2n − 1 (Captum's default). Far fewer steps for the same completeness gap.</summary>
    GaussLegendre,
    /// <summary>Right Riemann sum, α = k/n for k = 1..n: Sundararajan et al.'s formula (eq. 3).</summary>
    RiemannRight,
    /// <summary>Left Riemann sum, α = k/n for k = 0..n−1 (includes the baseline, never the input).</summary>
    RiemannLeft,
    /// <summary>Midpoint rule, α = (k + ½)/n.</summary>
    RiemannMidpoint,
    /// <summary>Trapezoid rule, α = k/n for k = 0..n, half weight at both ends (n + 1 gradient evaluations).</summary>
    RiemannTrapezoid,
}

/// <summary>Nodes α ∈ [0, 1] and weights of the rules that approximate ∫₀¹ g(α) dα as Σ wₖ g(αₖ).</summary>
public static class PathIntegral
{
    /// <summary>The nodes and weights of <paramref name="method"/> with <paramref name="steps"/> intervals (Riemann) or nodes (Gauss–Legendre); the weights sum to 1.</summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="steps"/> is below 1.</exception>
    public static (double[] Alphas, double[] Weights) Nodes(IntegrationMethod method, int steps)
    {
        if (steps < 1) throw new ArgumentOutOfRangeException(nameof(steps), $"integrated gradients needs at least 1 step, got {steps}");
        double h = 1.0 / steps;
        return method switch
        {
            IntegrationMethod.RiemannRight => (Enumerable.Range(1, steps).Select(k => k * h).ToArray(), Enumerable.Repeat(h, steps).ToArray()),
            IntegrationMethod.RiemannLeft => (Enumerable.Range(0, steps).Select(k => k * h).ToArray(), Enumerable.Repeat(h, steps).ToArray()),
            IntegrationMethod.RiemannMidpoint => (Enumerable.Range(0, steps).Select(k => (k + 0.5) * h).ToArray(), Enumerable.Repeat(h, steps).ToArray()),
            IntegrationMethod.RiemannTrapezoid => (Enumerable.Range(0, steps + 1).Select(k => k * h).ToArray(),
                Enumerable.Range(0, steps + 1).Select(k => k == 0 || k == steps ? h / 2 : h).ToArray()),
            IntegrationMethod.GaussLegendre => GaussLegendre(steps),
            _ => throw new ArgumentOutOfRangeException(nameof(method), method, "unknown integration method"),
        };
    }

    /// <summary>
    /// Gauss–Legendre nodes and weights on [0, 1]: the roots xᵢ of the Legendre polynomial Pₙ on [−1, 1] by Newton's
    /// method from Tricomi's estimate cos(π(i + ¾)/(n + ½)), weights 2/((1 − xᵢ²)Pₙ'(xᵢ)²), both mapped by α = (1 + x)/2, w/2.
    /// </summary>
    public static (double[] Alphas, double[] Weights) GaussLegendre(int n)
    {
        if (n < 1) throw new ArgumentOutOfRangeException(nameof(n), $"Gauss–Legendre needs at least 1 node, got {n}");
        var x = new double[n];
        var w = new double[n];
        for (int i = 0; i < (n + 1) / 2; i++)
        {
            double z = Math.Cos(Math.PI * (i + 0.75) / (n + 0.5)), dp = 0;
            for (int iteration = 0; iteration < 100; iteration++)
            {
                // Pₙ(z) by the three-term recurrence j·Pⱼ = (2j − 1)·z·Pⱼ₋₁ − (j − 1)·Pⱼ₋₂, and Pₙ' from Pₙ and Pₙ₋₁.
                double p1 = 1, p2 = 0;
                for (int j = 1; j <= n; j++)
                {
                    double p3 = p2;
                    p2 = p1;
                    p1 = ((2 * j - 1) * z * p2 - (j - 1) * p3) / j;
                }
                dp = n * (z * p1 - p2) / (z * z - 1);
                double previous = z;
                z = previous - p1 / dp;
                if (Math.Abs(z - previous) < 1e-15) break;
            }
            x[i] = -z;
            x[n - 1 - i] = z;
            w[i] = w[n - 1 - i] = 2 / ((1 - z * z) * dp * dp);
        }
        return (x.Select(v => (1 + v) / 2).ToArray(), w.Select(v => v / 2).ToArray());
    }
}
