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
/// <param name="CrossSideRemoved">Training records removed because their key also occurs among the held-out ones: always 0
/// for a carve by key hash (equal keys hash alike), checked and reported all the same.</param>
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
    public static ClueCarve<T> CarveDev<T>(IReadOnlyList<T> records, Func<T, string> key, double fraction)
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
        int before = train.Count;
        train.RemoveAll(r => devKeys.Contains(key(r)));
        return new ClueCarve<T>(train, dev, duplicates, before - train.Count);
    }

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
