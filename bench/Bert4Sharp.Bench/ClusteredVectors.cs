namespace Bert4Sharp.Bench;

/// <summary>Clustered random unit vectors: the synthetic corpus of the recall test and the search bench.</summary>
public static class ClusteredVectors
{
    /// <summary><paramref name="count"/> vectors around <paramref name="clusters"/> random centres (noise σ per coordinate), normalised.</summary>
    public static float[][] Make(int count, int dimensions, int clusters, float noise, int seed)
    {
        var rng = new Random(seed);
        var centres = Enumerable.Range(0, clusters).Select(_ => Gaussian(rng, dimensions, 1f)).ToArray();
        var result = new float[count][];
        for (int i = 0; i < count; i++)
        {
            var c = centres[rng.Next(clusters)];
            var v = Gaussian(rng, dimensions, noise);
            for (int j = 0; j < dimensions; j++) v[j] += c[j] / MathF.Sqrt(dimensions);
            float norm = MathF.Sqrt(v.Sum(x => x * x));
            for (int j = 0; j < dimensions; j++) v[j] /= norm;
            result[i] = v;
        }
        return result;
    }

    private static float[] Gaussian(Random rng, int n, float sigma)
    {
        var v = new float[n];
        for (int i = 0; i < n; i++)
            v[i] = sigma * MathF.Sqrt(-2f * MathF.Log(1f - rng.NextSingle())) * MathF.Cos(2f * MathF.PI * rng.NextSingle());
        return v;
    }
}
