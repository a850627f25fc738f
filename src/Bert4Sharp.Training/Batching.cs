namespace Bert4Sharp.Training;

/// <summary>How <see cref="Batching.Batches{T}"/> cuts a dataset into batches.</summary>
public sealed record BatchingOptions
{
    /// <summary>Examples per batch.</summary>
    public int BatchSize { get; init; } = 32;
    /// <summary>Shuffle (with a buffer for streamed data, all of it for lists).</summary>
    public bool Shuffle { get; init; } = true;
    /// <summary>
    /// Examples held for shuffling a stream (a random one leaves as each new one comes in, as tf.data does).
    /// Null: an <see cref="IReadOnlyList{T}"/> is shuffled whole, any other sequence with 10,000.
    /// </summary>
    public int? ShuffleBuffer { get; init; }
    /// <summary>
    /// Bucketing: this many batches' worth of examples are sorted by length before being cut, so a batch pads
    /// to similar lengths; the batches then leave in random order. 0 for none. Needs a length function.
    /// </summary>
    public int BucketBatches { get; init; }
    /// <summary>Drop the last, smaller batch of an epoch.</summary>
    public bool DropLast { get; init; }

    /// <summary>Checks ranges.</summary>
    public void Validate()
    {
        if (BatchSize < 1) throw new ArgumentOutOfRangeException(nameof(BatchSize), $"BatchSize must be ≥ 1, got {BatchSize}");
        if (ShuffleBuffer is int b && b < 1) throw new ArgumentOutOfRangeException(nameof(ShuffleBuffer), $"ShuffleBuffer must be ≥ 1, got {b}");
        if (BucketBatches < 0) throw new ArgumentOutOfRangeException(nameof(BucketBatches), $"BucketBatches must be ≥ 0, got {BucketBatches}");
    }
}

/// <summary>Deterministic batching: the same (data, seed, epoch) always gives the same batches, which is what makes resume exact.</summary>
public static class Batching
{
    /// <summary>The batches of one epoch; the order depends only on <paramref name="seed"/> and <paramref name="epoch"/>.</summary>
    public static IEnumerable<IReadOnlyList<T>> Batches<T>(IEnumerable<T> data, BatchingOptions options, int seed, int epoch, Func<T, int>? length = null)
    {
        options.Validate();
        if (options.BucketBatches > 0 && length is null) throw new ArgumentException("bucketing needs a length function", nameof(length));
        var rng = new Random(StableSeed.Mix(seed, epoch, 0x5EED));
        var stream = options.Shuffle ? Shuffled(data, options.ShuffleBuffer ?? (data is IReadOnlyList<T> l ? Math.Max(1, l.Count) : 10_000), rng) : data;
        return options.BucketBatches > 0 ? Bucketed(stream, options, length!, rng) : Plain(stream, options);
    }

    /// <summary>Buffered shuffle: with a buffer at least the data size this is a uniform permutation.</summary>
    public static IEnumerable<T> Shuffled<T>(IEnumerable<T> data, int buffer, Random rng)
    {
        var pool = new List<T>(Math.Min(buffer, 1 << 16));
        foreach (var x in data)
        {
            if (pool.Count < buffer) { pool.Add(x); continue; }
            int i = rng.Next(pool.Count);
            yield return pool[i];
            pool[i] = x;
        }
        for (int n = pool.Count; n > 0; n--)
        {
            int i = rng.Next(n);
            yield return pool[i];
            pool[i] = pool[n - 1];
        }
    }

    static IEnumerable<IReadOnlyList<T>> Plain<T>(IEnumerable<T> data, BatchingOptions o)
    {
        var batch = new List<T>(o.BatchSize);
        foreach (var x in data)
        {
            batch.Add(x);
            if (batch.Count == o.BatchSize) { yield return batch; batch = new List<T>(o.BatchSize); }
        }
        if (batch.Count > 0 && !o.DropLast) yield return batch;
    }

    static IEnumerable<IReadOnlyList<T>> Bucketed<T>(IEnumerable<T> data, BatchingOptions o, Func<T, int> length, Random rng)
    {
        int window = o.BatchSize * o.BucketBatches;
        var pool = new List<T>(window);
        foreach (var x in data)
        {
            pool.Add(x);
            if (pool.Count == window)
            {
                foreach (var b in Cut(pool, o, length, rng, last: false)) yield return b;
                pool.Clear();
            }
        }
        foreach (var b in Cut(pool, o, length, rng, last: true)) yield return b;
    }

    static List<IReadOnlyList<T>> Cut<T>(List<T> pool, BatchingOptions o, Func<T, int> length, Random rng, bool last)
    {
        var sorted = pool.Select((x, i) => (x, i)).OrderBy(p => length(p.x)).ThenBy(p => p.i).Select(p => p.x).ToList();
        var batches = new List<IReadOnlyList<T>>();
        for (int i = 0; i < sorted.Count; i += o.BatchSize)
        {
            var b = sorted.GetRange(i, Math.Min(o.BatchSize, sorted.Count - i));
            if (b.Count < o.BatchSize && last && o.DropLast) continue;
            batches.Add(b);
        }
        for (int n = batches.Count; n > 1; n--)
        {
            int j = rng.Next(n);
            (batches[n - 1], batches[j]) = (batches[j], batches[n - 1]);
        }
        return batches;
    }
}

/// <summary>
/// Seeds derived from (seed, step, …) that are the same in every process. <see cref="HashCode.Combine{T1, T2}"/> is
/// randomised per process, so a data order built from it changed between a run and its resume in a new process (and
/// would differ between the ranks of a distributed run).
/// </summary>
static class StableSeed
{
    /// <summary>SplitMix64 over the values in order, folded to a non-negative 31-bit seed.</summary>
    internal static int Mix(params ReadOnlySpan<long> values)
    {
        ulong h = 0x9E3779B97F4A7C15;
        foreach (long v in values)
        {
            h ^= unchecked((ulong)v);
            h = unchecked(h + 0x9E3779B97F4A7C15);
            h = unchecked((h ^ (h >> 30)) * 0xBF58476D1CE4E5B9);
            h = unchecked((h ^ (h >> 27)) * 0x94D049BB133111EB);
            h ^= h >> 31;
        }
        return (int)(h & 0x7FFF_FFFF);
    }
}
