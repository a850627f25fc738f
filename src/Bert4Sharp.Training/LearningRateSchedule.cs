namespace Bert4Sharp.Training;

/// <summary>
/// bert4keras <c>piecewise_linear</c>: a learning-rate multiplier given as (step, value) points, linear between
/// them and constant after the last. Without a point at step 0 the schedule starts from (0, 0), so
/// <c>{1000: 1, 2000: 0.1}</c> warms up from 0 to 1 over 1,000 steps, decays to 0.1 by step 2,000 and stays there.
/// </summary>
public sealed class PiecewiseLinearSchedule
{
    readonly (long Step, double Value)[] points;

    /// <summary>Creates the schedule from its points.</summary>
    /// <exception cref="ArgumentException">No points, a negative step, a repeated step or a non-finite value.</exception>
    public PiecewiseLinearSchedule(IReadOnlyDictionary<long, double> points)
    {
        if (points.Count == 0) throw new ArgumentException("a piecewise-linear schedule needs at least one (step, value) point", nameof(points));
        foreach (var (s, v) in points)
        {
            if (s < 0) throw new ArgumentException($"schedule step {s} is negative", nameof(points));
            if (!double.IsFinite(v)) throw new ArgumentException($"schedule value at step {s} is {v}", nameof(points));
        }
        var sorted = points.OrderBy(p => p.Key).Select(p => (p.Key, p.Value)).ToList();
        if (sorted[0].Key != 0) sorted.Insert(0, (0, 0.0));
        this.points = [.. sorted];
    }

    /// <summary>The schedule's points, (0, 0) included when it was implied.</summary>
    public IReadOnlyList<(long Step, double Value)> Points => points;

    /// <summary>A warm-up to 1 over <paramref name="warmup"/> steps, then linear decay to <paramref name="final"/> at <paramref name="total"/>.</summary>
    public static PiecewiseLinearSchedule WarmupLinearDecay(long warmup, long total, double final = 0.0)
    {
        if (warmup < 0 || total <= warmup) throw new ArgumentException($"need 0 ≤ warmup < total, got warmup {warmup}, total {total}");
        return warmup == 0
            ? new(new Dictionary<long, double> { [0] = 1.0, [total] = final })
            : new(new Dictionary<long, double> { [warmup] = 1.0, [total] = final });
    }

    /// <summary>The multiplier at step <paramref name="t"/> (0-based count of updates done before this one).</summary>
    public double this[long t]
    {
        get
        {
            if (t <= points[0].Step) return points[0].Value;
            for (int i = 0; i < points.Length - 1; i++)
            {
                var (s0, v0) = points[i];
                var (s1, v1) = points[i + 1];
                if (t < s1) return v0 + (v1 - v0) * (t - s0) / (s1 - s0);
            }
            return points[^1].Value;
        }
    }
}
