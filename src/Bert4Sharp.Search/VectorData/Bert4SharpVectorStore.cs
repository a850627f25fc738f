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

    /// <summary>A store whose collections live under <paramref name="rootDirectory"/> (created when first needed).</summary>
    public Bert4SharpVectorStore(string rootDirectory, Bert4SharpVectorStoreOptions? options = null)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(rootDirectory);
        _root = Path.GetFullPath(rootDirectory);
        _options = options ?? new Bert4SharpVectorStoreOptions();
    }

    /// <inheritdoc />
    public override VectorStoreCollection<TKey, TRecord> GetCollection<TKey, TRecord>(string name, VectorStoreCollectionDefinition? definition = null) =>
        new Bert4SharpCollection<TKey, TRecord>(CollectionDirectory(name), name, _options, definition);

    /// <inheritdoc />
    public override VectorStoreCollection<object, Dictionary<string, object?>> GetDynamicCollection(string name, VectorStoreCollectionDefinition definition) =>
        new Bert4SharpCollection<object, Dictionary<string, object?>>(CollectionDirectory(name), name, _options, definition, dynamic: true);

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
    public override Task EnsureCollectionDeletedAsync(string name, CancellationToken cancellationToken = default)
    {
        var dir = CollectionDirectory(name);
        if (Directory.Exists(dir)) Directory.Delete(dir, recursive: true);
        return Task.CompletedTask;
    }

    /// <inheritdoc />
    public override object? GetService(Type serviceType, object? serviceKey = null) =>
        serviceKey is null && serviceType == typeof(VectorStoreMetadata)
            ? new VectorStoreMetadata { VectorStoreSystemName = SystemName, VectorStoreName = _root }
            : null;

    private string CollectionDirectory(string name)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(name);
        if (name.IndexOfAny(Path.GetInvalidFileNameChars()) >= 0 || name is "." or "..")
            throw new ArgumentException($"Collection name '{name}' is not a valid directory name.", nameof(name));
        return Path.Combine(_root, name);
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
