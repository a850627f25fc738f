using System.Runtime.CompilerServices;
using Microsoft.Extensions.AI;
using Microsoft.Extensions.VectorData;
using Microsoft.Extensions.VectorData.ProviderServices;

namespace Bert4Sharp.Search.VectorData;

/// <summary>Options of a <see cref="Bert4SharpVectorStore"/>.</summary>
public sealed class Bert4SharpVectorStoreOptions
{
    /// <summary>Turns strings into vectors for collections whose vector property is a string, and for string searches.</summary>
    public IEmbeddingGenerator? EmbeddingGenerator { get; init; }
    /// <summary>Model name written to each new collection's manifest.</summary>
    public string Model { get; init; } = "";
    /// <summary>HNSW M of new collections.</summary>
    public int Connectivity { get; init; } = 16;
    /// <summary>HNSW efConstruction of new collections.</summary>
    public int ExpansionAdd { get; init; } = 128;
    /// <summary>HNSW ef of new collections.</summary>
    public int ExpansionSearch { get; init; } = 128;
}

/// <summary>
/// A <see cref="VectorStore"/> over a directory: each collection is a <see cref="VectorIndex"/> in a sub-directory of
/// the same name (USearch HNSW + DuckDB). Code written against <see cref="VectorStore"/> moves to a server store
/// (Qdrant, PostgreSQL pgvector, Azure AI Search) by constructing that connector instead.
/// </summary>
public sealed class Bert4SharpVectorStore : VectorStore
{
    internal const string SystemName = "bert4sharp-usearch";
    private readonly string _root;
    private readonly Bert4SharpVectorStoreOptions _options;
    // One shared index state per collection directory: every collection object of a name uses it, so they see each
    // other's writes and never save over each other.
    private readonly Dictionary<string, SharedIndex> _shared = new(StringComparer.Ordinal);

    /// <summary>A store whose collections live under <paramref name="rootDirectory"/> (created when first needed).</summary>
    public Bert4SharpVectorStore(string rootDirectory, Bert4SharpVectorStoreOptions? options = null)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(rootDirectory);
        _root = Path.GetFullPath(rootDirectory);
        _options = options ?? new Bert4SharpVectorStoreOptions();
    }

    /// <inheritdoc />
    public override VectorStoreCollection<TKey, TRecord> GetCollection<TKey, TRecord>(string name, VectorStoreCollectionDefinition? definition = null) =>
        new Bert4SharpCollection<TKey, TRecord>(Shared(name), name, _options, definition);

    /// <inheritdoc />
    public override VectorStoreCollection<object, Dictionary<string, object?>> GetDynamicCollection(string name, VectorStoreCollectionDefinition definition) =>
        new Bert4SharpCollection<object, Dictionary<string, object?>>(Shared(name), name, _options, definition, dynamic: true);

    /// <inheritdoc />
    public override async IAsyncEnumerable<string> ListCollectionNamesAsync([EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        await Task.Yield();
        if (!Directory.Exists(_root)) yield break;
        foreach (var dir in Directory.GetDirectories(_root).Order(StringComparer.Ordinal))
            if (VectorIndex.Exists(dir)) yield return Path.GetFileName(dir);
    }

    /// <inheritdoc />
    public override Task<bool> CollectionExistsAsync(string name, CancellationToken cancellationToken = default) =>
        Task.FromResult(VectorIndex.Exists(CollectionDirectory(name)));

    /// <inheritdoc />
    public override Task EnsureCollectionDeletedAsync(string name, CancellationToken cancellationToken = default) =>
        Shared(name).DeleteAsync(cancellationToken);

    /// <inheritdoc />
    protected override void Dispose(bool disposing)
    {
        if (disposing)
            lock (_shared)
            {
                foreach (var s in _shared.Values) s.Dispose();
                _shared.Clear();
            }
        base.Dispose(disposing);
    }

    /// <inheritdoc />
    public override object? GetService(Type serviceType, object? serviceKey = null) =>
        serviceKey is null && serviceType == typeof(VectorStoreMetadata)
            ? new VectorStoreMetadata { VectorStoreSystemName = SystemName, VectorStoreName = _root }
            : null;

    private SharedIndex Shared(string name)
    {
        var dir = CollectionDirectory(name);
        lock (_shared)
        {
            if (!_shared.TryGetValue(dir, out var shared)) _shared[dir] = shared = new SharedIndex(dir);
            return shared;
        }
    }

    private string CollectionDirectory(string name)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(name);
        if (name.IndexOfAny(Path.GetInvalidFileNameChars()) >= 0 || name is "." or "..")
            throw new ArgumentException($"Collection name '{name}' is not a valid directory name.", nameof(name));
        return Path.Combine(_root, name);
    }
}

/// <summary>
/// The index state of one collection directory, shared by every collection object of that name in one store: the
/// open <see cref="VectorIndex"/> (null until first needed, and again after a delete) and the gate that every
/// operation holds, since USearch adds and the DuckDB appender are not thread-safe.
/// </summary>
internal sealed class SharedIndex(string directory) : IDisposable
{
    public string Directory { get; } = directory;
    public SemaphoreSlim Gate { get; } = new(1, 1);
    public VectorIndex? Index { get; set; }

    /// <summary>Closes the index and deletes the directory, under the gate.</summary>
    public async Task DeleteAsync(CancellationToken cancellationToken)
    {
        await Gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            Index?.Dispose();
            Index = null;
            if (System.IO.Directory.Exists(Directory)) System.IO.Directory.Delete(Directory, recursive: true);
        }
        finally
        {
            Gate.Release();
        }
    }

    public void Dispose()
    {
        Index?.Dispose();
        Index = null;
    }
}

/// <summary>Maps record types onto the store: keys string, ulong or Guid; data properties JSON-serialisable; one float vector.</summary>
internal sealed class SearchModelBuilder() : CollectionModelBuilder(new CollectionModelBuildingOptions
{
    SupportsMultipleVectors = false,
    RequiresAtLeastOneVector = true,
})
{
    protected override void ValidateKeyProperty(KeyPropertyModel keyProperty)
    {
        base.ValidateKeyProperty(keyProperty);
        var t = keyProperty.Type;
        if (t != typeof(string) && t != typeof(ulong) && t != typeof(Guid) && t != typeof(object))
            throw new NotSupportedException($"Key property '{keyProperty.ModelName}' is {t.Name}; this store supports string, ulong and Guid keys.");
    }

    protected override bool IsDataPropertyTypeValid(Type type, [System.Diagnostics.CodeAnalysis.NotNullWhen(false)] out string? supportedTypes)
    {
        supportedTypes = "any type System.Text.Json can serialise (stored as JSON in DuckDB)";
        return true;
    }

    protected override bool IsVectorPropertyTypeValid(Type type, [System.Diagnostics.CodeAnalysis.NotNullWhen(false)] out string? supportedTypes)
    {
        supportedTypes = "ReadOnlyMemory<float>, float[], Embedding<float>";
        return type == typeof(ReadOnlyMemory<float>) || type == typeof(ReadOnlyMemory<float>?) || type == typeof(float[])
            || type == typeof(Embedding<float>);
    }
}
