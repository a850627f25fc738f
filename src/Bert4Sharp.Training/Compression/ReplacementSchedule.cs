namespace Bert4Sharp.Training.Compression;

using System.Globalization;

/// <summary>
/// The replacement probability of BERT-of-Theseus: at optimizer step t each successor block replaces its group of
/// predecessor blocks with probability <c>p(t) = min(1, Start + Rate · t)</c>. <see cref="Constant"/> is Su Jianlin's post
/// (and bert4keras's example: p = 0.5 throughout); <see cref="Linear"/> is the paper's curriculum (Xu et al. 2020, §3.2:
/// <c>p_d = min(1, k·t + b)</c>), which starts mostly on the predecessor and ends on the successor alone.
/// </summary>
/// <param name="Start">p at step 0 (the constant p, or the paper's b), in [0, 1].</param>
/// <param name="Rate">Increase of p per optimizer step (the paper's k), ≥ 0; 0 for a constant p.</param>
public sealed record ReplacementSchedule(double Start, double Rate = 0)
{
    /// <summary>A constant replacement probability (the post: 0.5).</summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="p"/> outside [0, 1].</exception>
    public static ReplacementSchedule Constant(double p) => new ReplacementSchedule(p).Validated();

    /// <summary>The paper's linear schedule <c>p(t) = min(1, p0 + rate · t)</c>.</summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="p0"/> outside [0, 1] or a negative or non-finite rate.</exception>
    public static ReplacementSchedule Linear(double p0, double rate) => new ReplacementSchedule(p0, rate).Validated();

    /// <summary>The replacement probability at optimizer step <paramref name="step"/> (0-based).</summary>
    public double Probability(long step) => Math.Min(1.0, Start + Rate * Math.Max(0, step));

    /// <summary>
    /// Which of <paramref name="groups"/> successor blocks replace their predecessor group in the batch of step
    /// <paramref name="step"/>: one independent Bernoulli(p(step)) draw per group from <paramref name="random"/>
    /// (the trainer's per-step generator, so a resumed run draws the same).
    /// </summary>
    public bool[] Draw(long step, int groups, Random random)
    {
        double p = Probability(step);
        var replaced = new bool[groups];
        for (int k = 0; k < groups; k++) replaced[k] = random.NextDouble() < p;
        return replaced;
    }

    /// <summary>Checks the values (the constructor accepts anything so that records compare; the factories check).</summary>
    /// <exception cref="ArgumentOutOfRangeException">Start outside [0, 1] or a negative or non-finite rate.</exception>
    public ReplacementSchedule Validated()
    {
        if (!(Start >= 0 && Start <= 1)) throw new ArgumentOutOfRangeException(nameof(Start), $"the replacement probability must be in [0, 1], got {Start.ToString(CultureInfo.InvariantCulture)}");
        if (!(Rate >= 0) || double.IsInfinity(Rate)) throw new ArgumentOutOfRangeException(nameof(Rate), $"the replacement rate per step must be finite and ≥ 0, got {Rate.ToString(CultureInfo.InvariantCulture)}");
        return this;
    }

    /// <inheritdoc/>
    public override string ToString() => Rate == 0
        ? $"constant p = {Start.ToString("G4", CultureInfo.InvariantCulture)}"
        : $"linear p = min(1, {Start.ToString("G4", CultureInfo.InvariantCulture)} + {Rate.ToString("G4", CultureInfo.InvariantCulture)}·step)";
}
