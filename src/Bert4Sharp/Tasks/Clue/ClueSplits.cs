namespace Bert4Sharp.Tasks.Clue;

using System.Security.Cryptography;
using System.Text;

/// <summary>
/// A held-out split carved from one labelled file (for tasks where only dev is staged, e.g. CMNLI).
/// </summary>
/// <param name="Train">The records kept for training, in input order.</param>
/// <param name="Dev">The records held out, in input order.</param>
/// <param name="DuplicateKeys">Records whose key equals an earlier record's key. They share its side, so no held-out key
/// occurs in training; they are kept (not dropped), and counted so a run can report them.</param>
/// <param name="CrossSideRemoved">Training records removed because their key, or one of their texts, also occurs among the
/// held-out ones (equal keys hash alike, so only shared texts remove anything).</param>
public sealed record ClueCarve<T>(IReadOnlyList<T> Train, IReadOnlyList<T> Dev, int DuplicateKeys, int CrossSideRemoved);

/// <summary>Deterministic splits of CLUE records, shared by the runs and baselines that have to carve their own held-out data.</summary>
public static class ClueSplits
{
    /// <summary>
    /// Splits <paramref name="records"/> into train and held-out dev by a stable hash of <paramref name="key"/> (for a
    /// sentence pair: <see cref="PairKey"/>): a record goes to dev when the first 8 bytes of SHA-256(UTF-8 key), read
    /// as an unsigned big-endian number, fall below <paramref name="fraction"/> × 2⁶⁴. The split depends on the keys
    /// only — not on the order of the file, the process, the platform or a seed — so every run and every engine carves
    /// the same split, and equal keys (duplicate texts, possibly with different labels) always land on the same side:
    /// no held-out text occurs in training. The dev share is <paramref name="fraction"/> in expectation, not exactly.
    /// </summary>
    /// <param name="records">The labelled records (e.g. the whole CMNLI dev).</param>
    /// <param name="key">The text that identifies a record (what must not leak from dev into train).</param>
    /// <param name="fraction">Expected share held out, in (0, 1), e.g. 0.2.</param>
    /// <param name="texts">The texts of a record that must not leak either (e.g. both sentences of a pair when the key is
    /// the premise): a training record with any of them among the held-out records' texts is removed and counted.</param>
    public static ClueCarve<T> CarveDev<T>(IReadOnlyList<T> records, Func<T, string> key, double fraction, Func<T, IEnumerable<string>>? texts = null)
    {
        ArgumentNullException.ThrowIfNull(records);
        ArgumentNullException.ThrowIfNull(key);
        if (!(fraction > 0 && fraction < 1))
            throw new ArgumentOutOfRangeException(nameof(fraction), fraction, "the held-out fraction must be strictly between 0 and 1 (e.g. 0.2)");
        ulong cut = (ulong)(fraction * 18446744073709551616.0);     // fraction × 2⁶⁴ (fraction < 1, so it fits)
        var train = new List<T>();
        var dev = new List<T>();
        var seen = new HashSet<string>(StringComparer.Ordinal);
        var devKeys = new HashSet<string>(StringComparer.Ordinal);
        int duplicates = 0;
        foreach (var r in records)
        {
            string k = key(r) ?? throw new ArgumentException("the key function returned null", nameof(key));
            if (!seen.Add(k)) duplicates++;
            if (Hash(k) < cut) { dev.Add(r); devKeys.Add(k); }
            else train.Add(r);
        }
        var devTexts = texts is null ? [] : dev.SelectMany(texts).ToHashSet(StringComparer.Ordinal);
        int before = train.Count;
        train.RemoveAll(r => devKeys.Contains(key(r)) || texts is not null && texts(r).Any(devTexts.Contains));
        return new ClueCarve<T>(train, dev, duplicates, before - train.Count);
    }

    /// <summary>
    /// The split of a sentence-pair file carved by premise, as the CMNLI runs and baselines use it: the key is the
    /// normalised first sentence (<see cref="Data.HeldOutSplit.Normalize"/>), so every hypothesis of one premise lands on
    /// the same side, and training pairs sharing either sentence (normalised) with a held-out pair are removed.
    /// </summary>
    public static ClueCarve<T> CarveByPremise<T>(IReadOnlyList<T> records, Func<T, string> premise, Func<T, string?> hypothesis, double fraction = 0.2) =>
        CarveDev(records, r => Data.HeldOutSplit.Normalize(premise(r)), fraction,
            r => hypothesis(r) is { } h ? [Data.HeldOutSplit.Normalize(premise(r)), Data.HeldOutSplit.Normalize(h)] : [Data.HeldOutSplit.Normalize(premise(r))]);

    /// <summary>The key of a sentence pair: both sentences joined by a tab (neither CLUE pair file has tabs inside a sentence).</summary>
    public static string PairKey(SentencePairRecord r) => r.Sentence1 + "\t" + r.Sentence2;

    /// <summary>The first 8 bytes of SHA-256 of the UTF-8 key, big-endian.</summary>
    public static ulong Hash(string key)
    {
        Span<byte> digest = stackalloc byte[32];
        SHA256.HashData(Encoding.UTF8.GetBytes(key), digest);
        return System.Buffers.Binary.BinaryPrimitives.ReadUInt64BigEndian(digest);
    }
}
