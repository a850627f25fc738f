namespace Bert4Sharp.Tasks.Clue;

/// <summary>Precision, recall and F1 from counts, with the counts.</summary>
/// <param name="Correct">Predicted items that are gold.</param>
/// <param name="Predicted">Items predicted.</param>
/// <param name="Gold">Gold items.</param>
/// <param name="Precision">Correct / Predicted.</param>
/// <param name="Recall">Correct / Gold.</param>
/// <param name="F1">Harmonic mean, 2·Correct / (Predicted + Gold).</param>
public readonly record struct PrfScore(long Correct, long Predicted, long Gold, double Precision, double Recall, double F1)
{
    /// <summary>The plain ratios; 0 where a denominator is 0 (CLUENER).</summary>
    public static PrfScore Exact(long correct, long predicted, long gold)
    {
        double p = predicted == 0 ? 0 : (double)correct / predicted, r = gold == 0 ? 0 : (double)correct / gold;
        return new(correct, predicted, gold, p, r, p + r == 0 ? 0 : 2 * p * r / (p + r));
    }

    /// <summary>
    /// GPLinker's smoothed ratios: X, Y, Z start at 1e-10, so P = X/Y, R = X/Z, F1 = 2X/(Y+Z). With nothing predicted
    /// P is 1 (1e-10/1e-10), as the bert4keras examples print it.
    /// </summary>
    public static PrfScore GpLinker(long correct, long predicted, long gold)
    {
        const double e = 1e-10;
        double x = correct + e, y = predicted + e, z = gold + e;
        return new(correct, predicted, gold, x / y, x / z, 2 * x / (y + z));
    }
}

/// <summary>A relation triple as DuIE scores it.</summary>
public readonly record struct SpoTriple(string Subject, string Predicate, string Object);

/// <summary>One (event type, role, text, start) tuple of a DuEE event; the trigger has role <see cref="ClueMetrics.TriggerRole"/>.</summary>
public readonly record struct EventArgument(string EventType, string Role, string Argument, int Start) : IComparable<EventArgument>
{
    /// <inheritdoc/>
    public int CompareTo(EventArgument other)
    {
        int c = string.CompareOrdinal(EventType, other.EventType);
        if (c == 0) c = string.CompareOrdinal(Role, other.Role);
        if (c == 0) c = string.CompareOrdinal(Argument, other.Argument);
        return c != 0 ? c : Start.CompareTo(other.Start);
    }
}

/// <summary>DuEE scores of GPLinker's evaluation: event level and argument level.</summary>
public sealed record DueeScore(PrfScore Event, PrfScore Argument);

/// <summary>
/// The CLUE metrics on plain arrays (CMRC2018's are in <see cref="CmrcMetric"/>). Each says which definition it follows.
/// </summary>
public static class ClueMetrics
{
    /// <summary>The role name GPLinker gives a DuEE trigger (触发词, "trigger word").</summary>
    public const string TriggerRole = "触发词";

    /// <summary>Classification accuracy: the fraction of positions where <paramref name="predicted"/> equals <paramref name="gold"/> (CLUE reports it ×100).</summary>
    public static double Accuracy<T>(IReadOnlyList<T> gold, IReadOnlyList<T> predicted)
    {
        Same(gold.Count, predicted.Count, "labels");
        if (gold.Count == 0) throw new ArgumentException("accuracy of no examples is undefined; pass at least one", nameof(gold));
        var eq = EqualityComparer<T>.Default;
        int right = 0;
        for (int i = 0; i < gold.Count; i++) if (eq.Equals(gold[i], predicted[i])) right++;
        return (double)right / gold.Count;
    }

    /// <summary>
    /// CLUENER2020 entity-level micro precision/recall/F1: an entity counts when type, start and end all match exactly.
    /// Entities are sets per sentence (a repeated prediction counts once); ratios are 0 where a denominator is 0.
    /// </summary>
    public static PrfScore EntityF1(IReadOnlyList<IEnumerable<NerEntity>> gold, IReadOnlyList<IEnumerable<NerEntity>> predicted) =>
        EntityF1ByType(gold, predicted).Overall;

    /// <summary><see cref="EntityF1"/> overall and per type (types of gold or predictions, ordinal order).</summary>
    public static (PrfScore Overall, IReadOnlyDictionary<string, PrfScore> ByType) EntityF1ByType(
        IReadOnlyList<IEnumerable<NerEntity>> gold, IReadOnlyList<IEnumerable<NerEntity>> predicted)
    {
        Same(gold.Count, predicted.Count, "sentences");
        var counts = new SortedDictionary<string, long[]>(StringComparer.Ordinal);
        long[] C(string t) => counts.TryGetValue(t, out var c) ? c : counts[t] = new long[3];
        long x = 0, y = 0, z = 0;
        for (int i = 0; i < gold.Count; i++)
        {
            var g = gold[i].ToHashSet();
            var p = predicted[i].ToHashSet();
            foreach (var e in p) { C(e.Type)[1]++; y++; if (g.Contains(e)) { C(e.Type)[0]++; x++; } }
            foreach (var e in g) { C(e.Type)[2]++; z++; }
        }
        return (PrfScore.Exact(x, y, z), counts.ToDictionary(kv => kv.Key, kv => PrfScore.Exact(kv.Value[0], kv.Value[1], kv.Value[2])));
    }

    /// <summary>
    /// DuIE SPO micro F1 as the GPLinker relation-extraction example counts it: per sentence, the set of predicted
    /// triples R and gold triples T; X += |R ∩ T|, Y += |R|, Z += |T|; then <see cref="PrfScore.GpLinker"/>. Triples
    /// match on exact subject, predicate and object strings (the example compares its tokenizer's tokens, which also
    /// folds case and spaces; normalise the strings first to reproduce that).
    /// </summary>
    public static PrfScore SpoF1(IReadOnlyList<IEnumerable<SpoTriple>> gold, IReadOnlyList<IEnumerable<SpoTriple>> predicted)
    {
        Same(gold.Count, predicted.Count, "sentences");
        long x = 0, y = 0, z = 0;
        for (int i = 0; i < gold.Count; i++)
        {
            var t = gold[i].ToHashSet();
            var r = predicted[i].ToHashSet();
            x += r.Count(t.Contains);
            y += r.Count;
            z += t.Count;
        }
        return PrfScore.GpLinker(x, y, z);
    }

    /// <summary>
    /// DuEE scores as GPLinker's event-extraction evaluation (kexue.fm/archives/8926) defines them, per sentence then summed:
    /// <list type="bullet">
    /// <item>argument level: every non-trigger (event type, role, argument text, start) tuple of all events, deduplicated;
    /// a predicted tuple counts when it is among the gold tuples;</item>
    /// <item>event level: an event is its tuples sorted (trigger included), deduplicated; predicted events without a
    /// trigger are ignored; a predicted event counts when some gold event has exactly the same tuples.</item>
    /// </list>
    /// Both use <see cref="PrfScore.GpLinker"/>. Offsets are part of the tuple, so the same text at another place is wrong.
    /// </summary>
    public static DueeScore DueeF1(IReadOnlyList<IReadOnlyList<IReadOnlyList<EventArgument>>> gold,
        IReadOnlyList<IReadOnlyList<IReadOnlyList<EventArgument>>> predicted)
    {
        Same(gold.Count, predicted.Count, "sentences");
        long ex = 0, ey = 0, ez = 0, ax = 0, ay = 0, az = 0;
        for (int i = 0; i < gold.Count; i++)
        {
            var r = Dedup(predicted[i].Where(e => e.Any(a => a.Role == TriggerRole)).Select(Sorted));
            var t = Dedup(gold[i].Select(Sorted));
            ex += r.Count(e => t.Any(g => g.SequenceEqual(e)));
            ey += r.Count;
            ez += t.Count;
            var ra = predicted[i].SelectMany(e => e).Where(a => a.Role != TriggerRole).ToHashSet();
            var ta = gold[i].SelectMany(e => e).Where(a => a.Role != TriggerRole).ToHashSet();
            ax += ra.Count(ta.Contains);
            ay += ra.Count;
            az += ta.Count;
        }
        return new(PrfScore.GpLinker(ex, ey, ez), PrfScore.GpLinker(ax, ay, az));

        static EventArgument[] Sorted(IReadOnlyList<EventArgument> e) { var s = e.ToArray(); System.Array.Sort(s); return s; }
        static List<EventArgument[]> Dedup(IEnumerable<EventArgument[]> events)
        {
            var list = new List<EventArgument[]>();
            foreach (var e in events) if (!list.Any(x => x.SequenceEqual(e))) list.Add(e);
            return list;
        }
    }

    static void Same(int gold, int predicted, string what)
    {
        if (gold != predicted) throw new ArgumentException($"{gold} gold {what} but {predicted} predicted: pass one prediction per gold example, in the same order");
    }
}
