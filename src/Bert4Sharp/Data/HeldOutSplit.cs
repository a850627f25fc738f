namespace Bert4Sharp.Data;

using System.Text;

/// <summary>A training set and a held-out set that share no text, and what was removed to make them so.</summary>
/// <typeparam name="T">Record type.</typeparam>
/// <param name="Train">Training records.</param>
/// <param name="HeldOut">Held-out records: none has the normalised text of a training record, none repeats another.</param>
/// <param name="Duplicates">Records removed because their normalised text had already been seen.</param>
/// <param name="Overlap">
/// Held-out records whose text also occurs in the training data: removed by <c>HeldOutSplit.Disjoint</c>; for
/// <c>HeldOutSplit.Split</c>, how many of the first held-out records a plain split (no deduplication) would
/// have shared with training, for the report.
/// </param>
public sealed record DisjointSplit<T>(IReadOnlyList<T> Train, IReadOnlyList<T> HeldOut, int Duplicates, int Overlap);

/// <summary>
/// Held-out data that never overlaps training: records are compared by their text after <see cref="Normalize"/>
/// (exact match), so a repeated text cannot be trained on and then scored as unseen.
/// </summary>
public static class HeldOutSplit
{
    /// <summary>
    /// The comparison key of a text: Unicode NFKC (full-width letters and digits become ASCII, compatibility forms
    /// fold), every run of whitespace one space, no leading or trailing whitespace. Case is kept.
    /// </summary>
    public static string Normalize(string text)
    {
        string s = text.Normalize(NormalizationForm.FormKC);
        var b = new StringBuilder(s.Length);
        bool space = false;
        foreach (char c in s)
        {
            if (char.IsWhiteSpace(c)) { space = b.Length > 0; continue; }
            if (space) { b.Append(' '); space = false; }
            b.Append(c);
        }
        return b.ToString();
    }

    /// <summary>
    /// Splits records, in the order given (shuffle first), into held-out and training: every record whose
    /// normalised text was already seen is dropped, then the first <paramref name="heldOutCount"/> remaining
    /// records are held out and the rest train.
    /// </summary>
    /// <param name="items">Records, already shuffled.</param>
    /// <param name="heldOutCount">Held-out records wanted (fewer when there are fewer distinct records).</param>
    /// <param name="text">The text of a record.</param>
    public static DisjointSplit<T> Split<T>(IEnumerable<T> items, int heldOutCount, Func<T, string> text)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(heldOutCount);
        var all = items.Select(x => (Item: x, Key: Normalize(text(x)))).ToList();
        // What a plain Take/Skip split would have shared: held-out records whose text also occurs after them.
        var naiveTrain = all.Skip(heldOutCount).Select(x => x.Key).ToHashSet(StringComparer.Ordinal);
        int overlap = all.Take(heldOutCount).Count(x => naiveTrain.Contains(x.Key));
        var seen = new HashSet<string>(StringComparer.Ordinal);
        var distinct = all.Where(x => seen.Add(x.Key)).Select(x => x.Item).ToList();
        return new DisjointSplit<T>(distinct.Skip(heldOutCount).ToList(), distinct.Take(heldOutCount).ToList(), all.Count - distinct.Count, overlap);
    }

    /// <summary>
    /// Keeps the given training records and removes from the held-out records every one whose normalised text
    /// occurs in training (<see cref="DisjointSplit{T}.Overlap"/>) or earlier in the held-out records
    /// (<see cref="DisjointSplit{T}.Duplicates"/>). For datasets that come with their own splits.
    /// </summary>
    public static DisjointSplit<T> Disjoint<T>(IEnumerable<T> train, IEnumerable<T> heldOut, Func<T, string> text)
    {
        var trainList = train.ToList();
        var trained = trainList.Select(x => Normalize(text(x))).ToHashSet(StringComparer.Ordinal);
        var seen = new HashSet<string>(StringComparer.Ordinal);
        var kept = new List<T>();
        int overlap = 0, duplicates = 0;
        foreach (var x in heldOut)
        {
            string key = Normalize(text(x));
            if (trained.Contains(key)) overlap++;
            else if (!seen.Add(key)) duplicates++;
            else kept.Add(x);
        }
        return new DisjointSplit<T>(trainList, kept, duplicates, overlap);
    }
}
