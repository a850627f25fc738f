namespace Bert4Sharp.Tasks;

using Bert4Sharp.Runtime;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

/// <summary>
/// Which labels may start or end a sequence and which may follow which (e.g. BIO: <c>I-X</c> only after <c>B-X</c> or
/// <c>I-X</c>; see <see cref="TagSet.Constraints"/>). A disallowed start, end or transition scores
/// <see cref="ConditionalRandomField.DisallowedScore"/>, in the loss and in decoding alike.
/// </summary>
public sealed record CrfConstraints
{
    /// <summary>Labels a sequence may start with; null: any.</summary>
    public IReadOnlyList<int>? Starts { get; init; }

    /// <summary>Labels a sequence may end with; null: any.</summary>
    public IReadOnlyList<int>? Ends { get; init; }

    /// <summary><c>[from, to]</c>: true where label <c>to</c> may follow label <c>from</c>; null: every transition.</summary>
    public bool[,]? AllowedTransitions { get; init; }

    /// <summary>
    /// Added scores for <paramref name="labels"/> labels: start and end (labels) and transitions (labels × labels,
    /// row-major [from, to]); 0 where allowed, <see cref="ConditionalRandomField.DisallowedScore"/> elsewhere.
    /// </summary>
    public (double[] Start, double[] End, double[] Transitions) Scores(int labels)
    {
        double[] Edge(IReadOnlyList<int>? allowed, string what)
        {
            var scores = new double[labels];
            if (allowed is null) return scores;
            if (allowed.Count == 0) throw new ArgumentException($"CrfConstraints.{what} is empty: no sequence could be scored; pass null to allow every label");
            Array.Fill(scores, ConditionalRandomField.DisallowedScore);
            foreach (var label in allowed)
            {
                if ((uint)label >= (uint)labels) throw new ArgumentOutOfRangeException(what, $"CrfConstraints.{what} holds label {label}, outside 0..{labels - 1} ({labels} labels)");
                scores[label] = 0;
            }
            return scores;
        }
        var trans = new double[labels * labels];
        if (AllowedTransitions is { } allowed)
        {
            if (allowed.GetLength(0) != labels || allowed.GetLength(1) != labels)
                throw new ArgumentException($"CrfConstraints.AllowedTransitions is {allowed.GetLength(0)}×{allowed.GetLength(1)}, the CRF has {labels} labels: pass a {labels}×{labels} matrix");
            for (int i = 0; i < labels; i++)
                for (int j = 0; j < labels; j++)
                    if (!allowed[i, j]) trans[i * labels + j] = ConditionalRandomField.DisallowedScore;
        }
        return (Edge(Starts, nameof(Starts)), Edge(Ends, nameof(Ends)), trans);
    }
}

/// <summary>
/// A linear-chain conditional random field over per-token label scores (bert4keras <c>ConditionalRandomField</c>).
/// A path's score is <c>Σ_t emissions[t, y_t] + Σ_t trans[y_{t−1}, y_t]</c> (plus the <see cref="CrfConstraints"/>
/// scores); the loss is the negative log-likelihood of the gold path over all paths (log Z by the forward algorithm
/// with logsumexp), decoding is Viterbi on plain arrays (<see cref="CrfDecoder"/>). One parameter, <c>trans</c>
/// [labels, labels], stored divided by the learning-rate multiplier and multiplied back in every use (bert4keras
/// <c>lr_multiplier</c>): with multiplier m and plain SGD the effective transitions move m² times as fast.
/// </summary>
/// <remarks>
/// Masks are right padding: each row is ones then zeros, at least one real step. Padded steps carry the forward
/// state unchanged and add nothing to the gold score; their tags are ignored (any value, e.g. −100).
/// </remarks>
public sealed class ConditionalRandomField : nn.Module<Tensor, Tensor, Tensor?, Tensor>
{
    /// <summary>The "−inf-like" score of a disallowed start, end or transition: finite, so log Z and gradients stay finite.</summary>
    public const double DisallowedScore = -1e4;

    readonly double[] startScores, endScores, transitionScores;
#pragma warning disable IDE0044
    Parameter trans;
#pragma warning restore IDE0044

    /// <summary>
    /// A CRF over <paramref name="labels"/> labels; transitions start glorot-uniform (as bert4keras), stored divided by
    /// <paramref name="lrMultiplier"/>.
    /// </summary>
    public ConditionalRandomField(int labels, double lrMultiplier = 1, CrfConstraints? constraints = null) : base("crf")
    {
        if (labels < 1) throw new ArgumentOutOfRangeException(nameof(labels), $"a CRF needs at least 1 label, got {labels}");
        if (!(lrMultiplier > 0) || double.IsInfinity(lrMultiplier))
            throw new ArgumentOutOfRangeException(nameof(lrMultiplier), $"the learning-rate multiplier must be positive and finite, got {lrMultiplier}");
        Labels = labels;
        LearningRateMultiplier = lrMultiplier;
        Constraints = constraints;
        (startScores, endScores, transitionScores) = (constraints ?? new CrfConstraints()).Scores(labels);
        double limit = Math.Sqrt(6.0 / (labels + labels));
        trans = new Parameter(torch.empty(labels, labels).uniform_(-limit, limit) / lrMultiplier);
        RegisterComponents();
    }

    /// <summary>Number of labels.</summary>
    public int Labels { get; }

    /// <summary>The factor the stored parameter is multiplied by (bert4keras <c>lr_multiplier</c>).</summary>
    public double LearningRateMultiplier { get; }

    /// <summary>Allowed starts, ends and transitions; null: all.</summary>
    public CrfConstraints? Constraints { get; }

    /// <summary>The stored parameter <c>trans</c> (effective transitions ÷ multiplier).</summary>
    public Parameter StoredTransitions => trans;

    /// <summary>The effective transitions [labels, labels] (stored × multiplier), in the graph.</summary>
    public Tensor Transitions => LearningRateMultiplier == 1 ? trans.alias() : trans * LearningRateMultiplier;

    /// <summary>Sets the effective transitions [labels, labels] (stores them divided by the multiplier).</summary>
    public void SetTransitions(Tensor effective)
    {
        if (effective.ndim != 2 || effective.shape[0] != Labels || effective.shape[1] != Labels)
            throw new ArgumentException($"transitions must be [{Labels}, {Labels}], got [{string.Join(", ", effective.shape)}]");
        using var _ = torch.no_grad();
        using var stored = effective.to(trans.dtype, trans.device) / LearningRateMultiplier;
        trans.copy_(stored);
    }

    /// <summary>Negative log-likelihood (B) of <paramref name="tags"/> (B, T) given emissions (B, T, labels) and mask (B, T).</summary>
    public override Tensor forward(Tensor emissions, Tensor tags, Tensor? mask)
    {
        using var scope = torch.NewDisposeScope();
        var lengths = CheckInputs(emissions, mask);
        CheckTags(tags, emissions, lengths);
        var logZ = LogPartition(emissions, lengths);
        var gold = GoldScore(emissions, tags, lengths);
        return (logZ - gold).MoveToOuterDisposeScope();
    }

    /// <summary>The batch mean of <see cref="forward"/> (what bert4keras's Keras loss reports).</summary>
    public Tensor Loss(Tensor emissions, Tensor tags, Tensor? mask = null)
    {
        using var scope = torch.NewDisposeScope();
        return forward(emissions, tags, mask).mean().MoveToOuterDisposeScope();
    }

    /// <summary>log Z (B): logsumexp of every path's score, for emissions (B, T, labels) and mask (B, T).</summary>
    public Tensor LogPartition(Tensor emissions, Tensor? mask = null)
    {
        using var scope = torch.NewDisposeScope();
        return LogPartition(emissions, CheckInputs(emissions, mask)).MoveToOuterDisposeScope();
    }

    /// <summary>The score (B) of the path <paramref name="tags"/> (B, T): emissions + transitions (+ constraint scores).</summary>
    public Tensor PathScore(Tensor emissions, Tensor tags, Tensor? mask = null)
    {
        using var scope = torch.NewDisposeScope();
        var lengths = CheckInputs(emissions, mask);
        CheckTags(tags, emissions, lengths);
        return GoldScore(emissions, tags, lengths).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Real lengths of a right-padding mask (B, T) (null: all T): each row must be ones then zeros with at least one 1.
    /// </summary>
    public static int[] MaskLengths(Tensor? mask, long batch, long time)
    {
        if (mask is null) return Enumerable.Repeat((int)time, (int)batch).ToArray();
        if (mask.ndim != 2 || mask.shape[0] != batch || mask.shape[1] != time)
            throw new ArgumentException($"the mask must be (batch, time) = ({batch}, {time}), got ({string.Join(", ", mask.shape)})");
        using var cpu = mask.to(ScalarType.Float64, CPU).contiguous();
        var v = cpu.data<double>();
        var lengths = new int[batch];
        for (int b = 0; b < batch; b++)
        {
            int n = 0;
            for (int t = 0; t < time; t++)
            {
                double x = v[b * time + t];
                if (x != 0 && x != 1) throw new ArgumentException($"mask[{b}, {t}] = {x}: a mask holds only 0 and 1");
                if (x == 1 && n != t)
                    throw new ArgumentException($"mask row {b} has a gap: 0 at position {n}, then 1 at position {t}; a CRF mask must be ones then zeros (right padding)");
                if (x == 1) n++;
            }
            if (n == 0) throw new ArgumentException($"mask row {b} has no real step; drop empty sequences before the CRF");
            lengths[b] = n;
        }
        return lengths;
    }

    /// <summary>A decoder over a snapshot of the current effective transitions and this CRF's constraints.</summary>
    public CrfDecoder Decoder()
    {
        using var scope = torch.NewDisposeScope();
        var t = Transitions.detach().to(ScalarType.Float64, CPU).contiguous().data<double>().ToArray();
        return new CrfDecoder(Labels, t, Constraints);
    }

    /// <summary>The best path per sequence (each as long as its mask) for emissions (B, T, labels) and mask (B, T).</summary>
    public int[][] Decode(Tensor emissions, Tensor? mask = null)
    {
        using var scope = torch.NewDisposeScope();
        var lengths = CheckInputs(emissions, mask);
        var e = emissions.detach().to(ScalarType.Float64, CPU).contiguous().data<double>().ToArray();
        return Decoder().Decode(e, (int)emissions.shape[0], (int)emissions.shape[1], lengths);
    }

    Tensor LogPartition(Tensor emissions, int[] lengths)
    {
        long b = emissions.shape[0], time = emissions.shape[1];
        var (transitions, start, end) = Effective(emissions);
        using var steps = RealSteps(lengths, time, emissions.device);
        var alpha = emissions.select(1, 0) + start;                                 // (B, L)
        for (long t = 1; t < time; t++)
        {
            using var step = torch.NewDisposeScope();
            // next[b, j] = logsumexp_i(alpha[b, i] + trans[i, j]) + emissions[b, t, j]
            var next = torch.logsumexp(alpha.unsqueeze(2) + transitions.unsqueeze(0), 1) + emissions.select(1, t);
            alpha = torch.where(steps.select(1, t).unsqueeze(1), next, alpha).MoveToOuterDisposeScope();
        }
        return torch.logsumexp(alpha + end, 1);
    }

    Tensor GoldScore(Tensor emissions, Tensor tags, int[] lengths)
    {
        long b = emissions.shape[0], time = emissions.shape[1];
        var (transitions, start, end) = Effective(emissions);
        var steps = RealSteps(lengths, time, emissions.device);
        var y = tags.to(ScalarType.Int64, emissions.device).MaskedFill(steps.logical_not(), 0);    // padding → label 0, masked out below
        var real = steps.to(emissions.dtype);
        var score = (emissions.gather(2, y.unsqueeze(2)).squeeze(2) * real).sum(1);    // Σ_t emissions[t, y_t]
        if (time > 1)
        {
            var pairs = y.narrow(1, 0, time - 1) * Labels + y.narrow(1, 1, time - 1);  // (B, T−1) flat [y_{t−1}, y_t]
            var moves = transitions.reshape(-1).index_select(0, pairs.reshape(-1)).reshape(b, time - 1);
            score += (moves * real.narrow(1, 1, time - 1)).sum(1);
        }
        var last = y.gather(1, torch.tensor(lengths.Select(n => (long)n - 1).ToArray(), device: emissions.device).unsqueeze(1)).squeeze(1);
        return score + start.index_select(0, y.select(1, 0)) + end.index_select(0, last);
    }

    (Tensor Transitions, Tensor Start, Tensor End) Effective(Tensor emissions)
    {
        var t = Transitions.to(emissions.dtype) + torch.tensor(transitionScores, dtype: emissions.dtype, device: emissions.device).reshape(Labels, Labels);
        return (t, torch.tensor(startScores, dtype: emissions.dtype, device: emissions.device),
            torch.tensor(endScores, dtype: emissions.dtype, device: emissions.device));
    }

    static Tensor RealSteps(int[] lengths, long time, Device device)
    {
        var m = new bool[lengths.Length * time];
        for (int i = 0; i < lengths.Length; i++)
            for (int t = 0; t < lengths[i]; t++) m[i * time + t] = true;
        return torch.tensor(m, device: device).reshape(lengths.Length, time);
    }

    int[] CheckInputs(Tensor emissions, Tensor? mask)
    {
        if (emissions.ndim != 3 || emissions.shape[2] != Labels)
            throw new ArgumentException($"CRF emissions must be (batch, time, {Labels}), got ({string.Join(", ", emissions.shape)})");
        if (!emissions.is_floating_point()) throw new ArgumentException($"CRF emissions must be floating point, got {emissions.dtype}");
        if (emissions.shape[0] == 0 || emissions.shape[1] == 0)
            throw new ArgumentException($"CRF emissions ({string.Join(", ", emissions.shape)}) hold no step: every sequence needs at least one real step");
        return MaskLengths(mask, emissions.shape[0], emissions.shape[1]);
    }

    void CheckTags(Tensor tags, Tensor emissions, int[] lengths)
    {
        if (tags.ndim != 2 || tags.shape[0] != emissions.shape[0] || tags.shape[1] != emissions.shape[1])
            throw new ArgumentException($"CRF tags must be (batch, time) = ({emissions.shape[0]}, {emissions.shape[1]}), got ({string.Join(", ", tags.shape)})");
        if (tags.is_floating_point() || tags.dtype == ScalarType.Bool) throw new ArgumentException($"CRF tags must be integer label ids, got {tags.dtype}");
        using var cpu = tags.to(ScalarType.Int64, CPU).contiguous();
        var v = cpu.data<long>();
        long time = tags.shape[1];
        for (int i = 0; i < lengths.Length; i++)
            for (int t = 0; t < lengths[i]; t++)
                if ((ulong)v[i * time + t] >= (ulong)Labels)
                    throw new ArgumentOutOfRangeException(nameof(tags), $"CRF tags[{i}, {t}] = {v[i * time + t]} is outside 0..{Labels - 1} ({Labels} labels); only padded steps may hold other values");
    }
}

/// <summary>
/// Viterbi decoding on plain arrays (bert4keras <c>ViterbiDecoder</c>): effective transitions [labels, labels]
/// row-major [from, to], plus <see cref="CrfConstraints"/> scores. Ties go to the lower label, as numpy's argmax.
/// </summary>
public sealed class CrfDecoder
{
    readonly double[] transitions, start, end;

    /// <summary>A decoder over <paramref name="transitions"/> (labels × labels, row-major [from, to]).</summary>
    public CrfDecoder(int labels, double[] transitions, CrfConstraints? constraints = null)
    {
        if (labels < 1) throw new ArgumentOutOfRangeException(nameof(labels), $"a CRF needs at least 1 label, got {labels}");
        if (transitions.Length != labels * labels)
            throw new ArgumentException($"transitions hold {transitions.Length} values, {labels} labels need {labels}×{labels} = {labels * labels}");
        Labels = labels;
        var (s, e, t) = (constraints ?? new CrfConstraints()).Scores(labels);
        this.transitions = transitions.Select((x, i) => x + t[i]).ToArray();
        (start, end) = (s, e);
    }

    /// <summary>Number of labels.</summary>
    public int Labels { get; }

    /// <summary>The best path for one sequence: <paramref name="emissions"/> (length × labels, row-major).</summary>
    public int[] Decode(ReadOnlySpan<double> emissions, int length)
    {
        if (length < 1) throw new ArgumentOutOfRangeException(nameof(length), $"a sequence to decode needs at least one step, got {length}");
        if (emissions.Length < length * Labels)
            throw new ArgumentException($"emissions hold {emissions.Length} values, {length} steps × {Labels} labels need {length * Labels}");
        int l = Labels;
        var score = new double[l];
        var next = new double[l];
        var back = new int[length * l];
        for (int j = 0; j < l; j++) score[j] = emissions[j] + start[j];
        for (int t = 1; t < length; t++)
        {
            for (int j = 0; j < l; j++)
            {
                int best = 0;
                double bestScore = double.NegativeInfinity;
                for (int i = 0; i < l; i++)
                {
                    double s = score[i] + transitions[i * l + j];
                    if (s > bestScore) (best, bestScore) = (i, s);
                }
                back[t * l + j] = best;
                next[j] = bestScore + emissions[t * l + j];
            }
            (score, next) = (next, score);
        }
        int label = 0;
        double top = double.NegativeInfinity;
        for (int j = 0; j < l; j++)
            if (score[j] + end[j] > top) (label, top) = (j, score[j] + end[j]);
        var path = new int[length];
        for (int t = length - 1; t >= 0; t--)
        {
            path[t] = label;
            label = back[t * l + label];
        }
        return path;
    }

    /// <summary>The best path per sequence: <paramref name="emissions"/> (batch × time × labels, row-major), real lengths per row.</summary>
    public int[][] Decode(double[] emissions, int batch, int time, int[] lengths)
    {
        if (emissions.Length != batch * time * Labels)
            throw new ArgumentException($"emissions hold {emissions.Length} values, ({batch}, {time}, {Labels}) needs {batch * time * Labels}");
        if (lengths.Length != batch) throw new ArgumentException($"{lengths.Length} lengths for a batch of {batch}");
        var paths = new int[batch][];
        for (int b = 0; b < batch; b++)
        {
            if (lengths[b] < 1 || lengths[b] > time)
                throw new ArgumentOutOfRangeException(nameof(lengths), $"lengths[{b}] = {lengths[b]} is outside 1..{time}");
            paths[b] = Decode(emissions.AsSpan(b * time * Labels, time * Labels), lengths[b]);
        }
        return paths;
    }
}
