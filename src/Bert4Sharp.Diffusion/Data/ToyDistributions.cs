namespace Bert4Sharp.Diffusion.Data;

using TorchSharp;
using static TorchSharp.torch;

/// <summary>2-D toy distributions for the flows.</summary>
public enum ToyDistribution
{
    /// <summary>Eight Gaussians (σ = 0.1) on a circle of radius 2.</summary>
    EightGaussians,
    /// <summary>Two interleaved half circles with noise 0.05 (scikit-learn's make_moons), centred.</summary>
    TwoMoons,
    /// <summary>A 4×4 checkerboard on [−2, 2]², the white squares filled uniformly.</summary>
    Checkerboard,
}

/// <summary>Samples of the toy distributions; names on the command line.</summary>
public static class ToyData
{
    /// <summary>8gaussians, moons, checkerboard; null for another name.</summary>
    public static ToyDistribution? TryParse(string name) => name.Trim().ToLowerInvariant() switch
    {
        "8gaussians" or "eight-gaussians" => ToyDistribution.EightGaussians,
        "moons" or "two-moons" => ToyDistribution.TwoMoons,
        "checkerboard" => ToyDistribution.Checkerboard,
        _ => null,
    };

    /// <summary>The command-line name.</summary>
    public static string Name(ToyDistribution d) => d switch
    {
        ToyDistribution.EightGaussians => "8gaussians",
        ToyDistribution.TwoMoons => "moons",
        _ => "checkerboard",
    };

    /// <summary><paramref name="count"/> points (count, 2), reproducible from <paramref name="seed"/>.</summary>
    public static Tensor Sample(ToyDistribution d, int count, int seed)
    {
        if (count < 1) throw new ArgumentException($"the sample count must be ≥ 1, got {count}");
        var rng = new Random(seed);
        var xy = new float[count * 2];
        double Normal() => Math.Sqrt(-2 * Math.Log(1 - rng.NextDouble())) * Math.Cos(2 * Math.PI * rng.NextDouble());
        for (int i = 0; i < count; i++)
        {
            double x, y;
            switch (d)
            {
                case ToyDistribution.EightGaussians:
                    double a = rng.Next(8) * Math.PI / 4;
                    (x, y) = (2 * Math.Cos(a) + 0.1 * Normal(), 2 * Math.Sin(a) + 0.1 * Normal());
                    break;
                case ToyDistribution.TwoMoons:
                    double u = Math.PI * rng.NextDouble();
                    (x, y) = rng.Next(2) == 0 ? (Math.Cos(u), Math.Sin(u)) : (1 - Math.Cos(u), 0.5 - Math.Sin(u));
                    (x, y) = (2 * (x - 0.5) + 0.05 * Normal(), 2 * (y - 0.25) + 0.05 * Normal());
                    break;
                default:
                    int cell;
                    do cell = rng.Next(16); while ((cell / 4 + cell % 4) % 2 != 0);
                    (x, y) = (-2 + cell % 4 + rng.NextDouble(), -2 + cell / 4 + rng.NextDouble());
                    break;
            }
            xy[2 * i] = (float)x;
            xy[2 * i + 1] = (float)y;
        }
        return torch.tensor(xy, [count, 2]);
    }
}
