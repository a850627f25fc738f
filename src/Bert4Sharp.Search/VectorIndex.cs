using System.Numerics.Tensors;
using System.Runtime.InteropServices;
using System.Text.Json;
using Cloud.Unum.USearch;

namespace Bert4Sharp.Search;

/// <summary>
/// An embedded vector index in one directory: <c>vectors.usearch</c> (a USearch HNSW graph with the float32 vectors,
/// memory-mapped when opened read-only), <c>store.duckdb</c> (keys, texts, metadata JSON) and <c>manifest.json</c>
/// (model, dimensions, metric, count). Vectors are L2-normalised on the way in, so the cosine similarity of a hit is
/// the dot product and <see cref="SearchExact"/> (brute force over the stored vectors) is the exact answer that
/// <see cref="Search"/> (HNSW) approximates. Not thread-safe for writes (serialise <see cref="Add"/>, <see cref="Remove"/>
/// and <see cref="Save"/> yourself); concurrent searches are fine.
/// </summary>
public sealed class VectorIndex : IDisposable
{
    /// <summary>File name of the HNSW graph and vectors inside an index directory.</summary>
    public const string VectorsFile = "vectors.usearch";
    /// <summary>File name of the DuckDB database of keys, texts and metadata.</summary>
    public const string StoreFile = "store.duckdb";
    /// <summary>File name of the manifest, written last by <see cref="Save"/>.</summary>
    public const string ManifestFile = "manifest.json";

    private readonly string _directory;
    private readonly USearchIndex _hnsw;
    private readonly EntryStore _store;
    private IndexManifest _manifest;
    private ulong _nextSlot;
    private float[]? _exactMatrix; // [count, dimensions] row-major, rebuilt after a change
    private ulong[]? _exactSlots;  // [count]
    private readonly Lock _exactLock = new(); // guards _exactMatrix/_exactSlots
    private bool _dirty;

    private VectorIndex(string directory, USearchIndex hnsw, EntryStore store, IndexManifest manifest, bool readOnly)
    {
        _directory = directory;
        _hnsw = hnsw;
        _store = store;
        _manifest = manifest;
        _nextSlot = manifest.NextSlot;
        IsReadOnly = readOnly;
    }

    /// <summary>Vector length.</summary>
    public int Dimensions => _manifest.Dimensions;
    /// <summary>Model name recorded when the index was created.</summary>
    public string Model => _manifest.Model;
    /// <summary>Number of entries.</summary>
    public long Count => _store.Count;
    /// <summary>True when opened memory-mapped for search only.</summary>
    public bool IsReadOnly { get; }
    /// <summary>The index directory.</summary>
    public string Directory => _directory;
    /// <summary>The HNSW search expansion (ef) used by <see cref="Search"/>; raise it for recall, lower it for speed.</summary>
    public int ExpansionSearch { get; set; }

    /// <summary>Starts a new, empty, writable index for <paramref name="directory"/>; nothing is written until <see cref="Save"/>.</summary>
    public static VectorIndex Create(string directory, VectorIndexOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        if (options.Dimensions <= 0) throw new ArgumentOutOfRangeException(nameof(options), $"Dimensions must be positive, got {options.Dimensions}.");
        if (options.Connectivity < 2 || options.ExpansionAdd <= 0 || options.ExpansionSearch <= 0)
            throw new ArgumentOutOfRangeException(nameof(options), $"HNSW parameters must be positive (connectivity >= 2): {options}.");
        var manifest = new IndexManifest
        {
            Model = options.Model, Dimensions = options.Dimensions, Connectivity = options.Connectivity,
            ExpansionAdd = options.ExpansionAdd, ExpansionSearch = options.ExpansionSearch,
        };
        var hnsw = new USearchIndex(MetricKind.Cos, ScalarKind.Float32, (ulong)options.Dimensions,
            (ulong)options.Connectivity, (ulong)options.ExpansionAdd, (ulong)options.ExpansionSearch);
        return new VectorIndex(Path.GetFullPath(directory), hnsw, EntryStore.CreateInMemory(), manifest, readOnly: false)
        { ExpansionSearch = options.ExpansionSearch, _dirty = true };
    }

    /// <summary>True when <paramref name="directory"/> holds a saved index (its manifest exists).</summary>
    public static bool Exists(string directory) => File.Exists(Path.Combine(directory, ManifestFile));

    /// <summary>
    /// Opens a saved index. Read-only (the default) memory-maps the vectors (USearch <c>view</c>) and reads DuckDB in
    /// place; writable loads both into memory so that <see cref="Add"/>/<see cref="Remove"/> + <see cref="Save"/> work.
    /// </summary>
    /// <param name="directory">The index directory.</param>
    /// <param name="writable">Load for changes instead of memory-mapping.</param>
    /// <param name="expectedModel">When given, the manifest's model must equal it.</param>
    /// <exception cref="DirectoryNotFoundException">No index there.</exception>
    /// <exception cref="InvalidDataException">A file is missing, unreadable or disagrees with the manifest.</exception>
    public static VectorIndex Open(string directory, bool writable = false, string? expectedModel = null)
    {
        directory = Path.GetFullPath(directory);
        if (!System.IO.Directory.Exists(directory))
            throw new DirectoryNotFoundException($"No vector index at '{directory}': the directory does not exist (build one with `b4s index`).");
        var manifestPath = Path.Combine(directory, ManifestFile);
        if (!File.Exists(manifestPath))
            throw new InvalidDataException($"'{directory}' is not a vector index: {ManifestFile} is missing (an unfinished save, or the wrong directory).");
        IndexManifest manifest;
        try
        {
            manifest = JsonSerializer.Deserialize<IndexManifest>(File.ReadAllText(manifestPath), IndexManifest.Json)
                ?? throw new InvalidDataException("null manifest");
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{manifestPath}: not valid JSON ({e.Message}).", e);
        }
        if (manifest.Format != IndexManifest.FormatName || manifest.Version != 1)
            throw new InvalidDataException($"{manifestPath}: format '{manifest.Format}' version {manifest.Version}; expected '{IndexManifest.FormatName}' version 1.");
        if (manifest.Dimensions <= 0 || manifest.Metric != "cos")
            throw new InvalidDataException($"{manifestPath}: dimensions {manifest.Dimensions}, metric '{manifest.Metric}'; expected positive dimensions and metric 'cos'.");
        if (expectedModel is not null && !string.Equals(manifest.Model, expectedModel, StringComparison.Ordinal))
            throw new InvalidDataException($"{manifestPath}: the index was built with model '{manifest.Model}', not '{expectedModel}'; " +
                "query it with the same model or rebuild it.");

        var vectorsPath = Path.Combine(directory, VectorsFile);
        var storePath = Path.Combine(directory, StoreFile);
        foreach (var p in new[] { vectorsPath, storePath })
            if (!File.Exists(p)) throw new InvalidDataException($"Vector index '{directory}' is incomplete: {Path.GetFileName(p)} is missing.");

        USearchIndex hnsw;
        try
        {
            hnsw = new USearchIndex(vectorsPath, view: !writable);
        }
        catch (Exception e) when (e is USearchException or SEHException or AccessViolationException)
        {
            throw new InvalidDataException($"{vectorsPath}: not a readable USearch index ({e.Message}).", e);
        }
        EntryStore store;
        try
        {
            store = writable ? EntryStore.LoadIntoMemory(storePath) : EntryStore.OpenReadOnly(storePath);
        }
        catch (Exception e) when (e is not InvalidDataException)
        {
            hnsw.Dispose();
            throw new InvalidDataException($"{storePath}: not a readable DuckDB store ({e.Message}).", e);
        }
        var index = new VectorIndex(directory, hnsw, store, manifest, readOnly: !writable) { ExpansionSearch = manifest.ExpansionSearch };
        try
        {
            if ((long)hnsw.Dimensions() != manifest.Dimensions)
                throw new InvalidDataException($"{vectorsPath}: {hnsw.Dimensions()} dimensions, the manifest says {manifest.Dimensions}.");
            if (manifest.SaveId is not null && (store.SaveId != manifest.SaveId
                    || (manifest.VectorsBytes > 0 && new FileInfo(vectorsPath).Length != manifest.VectorsBytes)))
                throw new InvalidDataException($"The index at '{directory}' was interrupted while saving: its files come from different saves " +
                    $"({ManifestFile} save {manifest.SaveId}, {StoreFile} save {store.SaveId ?? "none"}, {VectorsFile} " +
                    $"{new FileInfo(vectorsPath).Length} bytes where the manifest says {manifest.VectorsBytes}); rebuild it.");
            if ((long)hnsw.Size() != manifest.Count || store.Count != manifest.Count)
                throw new InvalidDataException($"Vector index '{directory}' is inconsistent: manifest {manifest.Count} entries, " +
                    $"{VectorsFile} {hnsw.Size()}, {StoreFile} {store.Count} (a save was interrupted: rebuild the index).");
        }
        catch
        {
            index.Dispose();
            throw;
        }
        return index;
    }

    /// <summary>
    /// Adds (or replaces, by key) a batch of entries. Vectors are checked (dimensions, finite, non-zero) and
    /// normalised before anything is changed, so a bad entry leaves the index as it was.
    /// </summary>
    public void Add(IReadOnlyList<VectorEntry> entries)
    {
        ArgumentNullException.ThrowIfNull(entries);
        ThrowIfReadOnly();
        var vectors = new float[entries.Count][];
        var seen = new HashSet<string>(StringComparer.Ordinal);
        for (int i = 0; i < entries.Count; i++)
        {
            var e = entries[i];
            if (string.IsNullOrEmpty(e.Key)) throw new ArgumentException($"Entry {i}: the key is empty.", nameof(entries));
            if (!seen.Add(e.Key)) throw new ArgumentException($"Entry {i}: key '{e.Key}' appears twice in one batch.", nameof(entries));
            vectors[i] = Normalised(e.Vector.Span, $"entry {i} (key '{e.Key}')");
        }
        var slots = new ulong[entries.Count];
        for (int i = 0; i < entries.Count; i++)
        {
            if (_store.TryGetSlot(entries[i].Key, out var old))
            {
                _hnsw.Remove(old);
                _store.Delete(old, entries[i].Key);
            }
            slots[i] = _nextSlot++;
        }
        _hnsw.Add(slots, vectors);
        _store.Insert(slots, entries);
        Changed();
    }

    /// <summary>Removes the entries with these keys; returns how many existed.</summary>
    public int Remove(IEnumerable<string> keys)
    {
        ArgumentNullException.ThrowIfNull(keys);
        ThrowIfReadOnly();
        int removed = 0;
        foreach (var key in keys)
        {
            if (!_store.TryGetSlot(key, out var slot)) continue;
            _hnsw.Remove(slot);
            _store.Delete(slot, key);
            removed++;
        }
        if (removed > 0) Changed();
        return removed;
    }

    /// <summary>The entry stored under <paramref name="key"/> (its vector normalised), or null.</summary>
    public VectorEntry? Get(string key)
    {
        ArgumentNullException.ThrowIfNull(key);
        if (!_store.TryGetSlot(key, out var slot)) return null;
        var row = _store.Rows([slot])[slot];
        _hnsw.Get(slot, out float[] vector);
        return new VectorEntry(row.Key, row.Text, row.Metadata, vector);
    }

    /// <summary>Approximate k nearest neighbours by cosine similarity (HNSW), best first.</summary>
    /// <param name="query">A vector of <see cref="Dimensions"/> values (normalised here; need not be on input).</param>
    /// <param name="k">How many hits, at least 1; fewer come back when the index holds fewer entries.</param>
    public IReadOnlyList<VectorHit> Search(ReadOnlySpan<float> query, int k)
    {
        var q = CheckQuery(query, k);
        if (Count == 0) return [];
        // USearch searches with a candidate list of max(ef, wanted): asking for ef results applies this index's ef
        // even to a memory-mapped file, whose saved header does not carry it.
        int wanted = Math.Max(k, ExpansionSearch);
        int found = _hnsw.Search(q, wanted, out ulong[] slots, out float[] distances);
        int n = Math.Min(found, k);
        var scores = new float[n];
        for (int i = 0; i < n; i++) scores[i] = 1f - distances[i];
        return Hits(slots.AsSpan(0, n), scores);
    }

    /// <summary>Exact k nearest neighbours: the dot product with every stored vector, best first (ties: insertion order).</summary>
    public IReadOnlyList<VectorHit> SearchExact(ReadOnlySpan<float> query, int k)
    {
        var q = CheckQuery(query, k);
        if (Count == 0) return [];
        var (matrix, slots) = ExactMatrix();
        int d = Dimensions;
        // Min-heap of the k best so far: the root is the worst kept (lowest score; on ties the later slot).
        var heap = new PriorityQueue<int, (float Score, ulong Slot)>(k + 1,
            Comparer<(float Score, ulong Slot)>.Create((a, b) => a.Score != b.Score ? a.Score.CompareTo(b.Score) : b.Slot.CompareTo(a.Slot)));
        for (int i = 0; i < slots.Length; i++)
        {
            float s = TensorPrimitives.Dot(matrix.AsSpan(i * d, d), q);
            if (heap.Count < k) heap.Enqueue(i, (s, slots[i]));
            else if (heap.TryPeek(out _, out var worst) && (s > worst.Score || (s == worst.Score && slots[i] < worst.Slot)))
                heap.EnqueueDequeue(i, (s, slots[i]));
        }
        var best = new (float Score, ulong Slot)[heap.Count];
        for (int i = best.Length - 1; i >= 0; i--)
        {
            heap.TryDequeue(out _, out var p);
            best[i] = p;
        }
        return Hits(best.Select(b => b.Slot).ToArray(), best.Select(b => b.Score).ToArray());
    }

    /// <summary>
    /// Writes the index to its directory atomically per file: each file goes to a temporary name, is flushed to disk
    /// and moved into place, the manifest last. Each save has a new id, written to the manifest and to the DuckDB
    /// file's <c>meta</c> table (with the USearch file's length in the manifest), so <see cref="Open"/> refuses a
    /// directory whose files come from different saves (a crash between the renames).
    /// </summary>
    public void Save()
    {
        ThrowIfReadOnly();
        System.IO.Directory.CreateDirectory(_directory);
        string tag = $".tmp-{Environment.ProcessId}-{Guid.NewGuid():N}";
        var vectorsTmp = Path.Combine(_directory, VectorsFile + tag);
        var storeTmp = Path.Combine(_directory, StoreFile + tag);
        try
        {
            string saveId = Guid.NewGuid().ToString("N");
            _hnsw.Save(vectorsTmp);
            _store.SaveTo(storeTmp, saveId);
            FlushToDisk(vectorsTmp);
            FlushToDisk(storeTmp);
            var manifest = _manifest with
            {
                Count = Count, NextSlot = _nextSlot, ExpansionSearch = ExpansionSearch,
                SaveId = saveId, VectorsBytes = new FileInfo(vectorsTmp).Length,
            };
            File.Move(vectorsTmp, Path.Combine(_directory, VectorsFile), overwrite: true);
            File.Move(storeTmp, Path.Combine(_directory, StoreFile), overwrite: true);
            Bert4Sharp.Checkpoints.AtomicFile.WriteAllText(Path.Combine(_directory, ManifestFile), JsonSerializer.Serialize(manifest, IndexManifest.Json));
            _manifest = manifest;
            _dirty = false;
        }
        finally
        {
            foreach (var p in new[] { vectorsTmp, storeTmp })
                if (File.Exists(p)) File.Delete(p);
        }
    }

    /// <summary>True when there are changes that <see cref="Save"/> has not written.</summary>
    public bool HasUnsavedChanges => _dirty;

    /// <summary>Every key in insertion order.</summary>
    public IReadOnlyList<string> Keys() => _store.AllRows().Select(r => r.Key).ToArray();

    /// <inheritdoc />
    public void Dispose()
    {
        _hnsw.Dispose();
        _store.Dispose();
    }

    private static void FlushToDisk(string path)
    {
        using var fs = new FileStream(path, FileMode.Open, FileAccess.ReadWrite, FileShare.None);
        fs.Flush(flushToDisk: true);
    }

    private void Changed()
    {
        lock (_exactLock)
        {
            _exactMatrix = null;
            _exactSlots = null;
        }
        _dirty = true;
    }

    private (float[] Matrix, ulong[] Slots) ExactMatrix()
    {
        lock (_exactLock) return ExactMatrixLocked();
    }

    private (float[] Matrix, ulong[] Slots) ExactMatrixLocked()
    {
        if (_exactMatrix is not null && _exactSlots is not null) return (_exactMatrix, _exactSlots);
        // The vectors are read back from USearch (float32, stored normalised): one copy of them on disk.
        var slots = _store.AllSlots();
        int d = Dimensions;
        var matrix = new float[(long)slots.Length * d];
        for (int i = 0; i < slots.Length; i++)
        {
            if (_hnsw.Get(slots[i], out float[] v) != 1)
                throw new InvalidDataException($"Vector index '{_directory}': slot {slots[i]} is in {StoreFile} but not in {VectorsFile}.");
            v.CopyTo(matrix.AsSpan(i * d, d));
        }
        _exactMatrix = matrix;
        _exactSlots = slots;
        return (matrix, slots);
    }

    private IReadOnlyList<VectorHit> Hits(ReadOnlySpan<ulong> slots, float[] scores)
    {
        var rows = _store.Rows(slots.ToArray());
        var hits = new VectorHit[slots.Length];
        for (int i = 0; i < hits.Length; i++)
        {
            if (!rows.TryGetValue(slots[i], out var row))
                throw new InvalidDataException($"Vector index '{_directory}': slot {slots[i]} is in {VectorsFile} but not in {StoreFile}.");
            hits[i] = new VectorHit(row.Key, scores[i], row.Text, row.Metadata);
        }
        return hits;
    }

    private float[] CheckQuery(ReadOnlySpan<float> query, int k)
    {
        if (k <= 0) throw new ArgumentOutOfRangeException(nameof(k), k, "k (the number of hits) must be at least 1.");
        return Normalised(query, "the query");
    }

    private float[] Normalised(ReadOnlySpan<float> v, string what)
    {
        if (v.Length != Dimensions)
            throw new ArgumentException($"{what} has {v.Length} dimensions; this index holds {Dimensions}-dimensional vectors" +
                (Model.Length > 0 ? $" from model '{Model}'." : "."));
        float norm = TensorPrimitives.Norm(v);
        if (!float.IsFinite(norm) || norm == 0f)
            throw new ArgumentException($"{what} is {(norm == 0f ? "all zeros" : "not finite (NaN or infinity)")}: it has no direction to compare.");
        var result = new float[v.Length];
        TensorPrimitives.Divide(v, norm, result);
        return result;
    }

    private void ThrowIfReadOnly()
    {
        if (IsReadOnly) throw new InvalidOperationException($"Vector index '{_directory}' is open read-only (memory-mapped); open it with writable: true to change it.");
    }
}
