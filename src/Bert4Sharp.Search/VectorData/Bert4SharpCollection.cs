using System.Globalization;
using System.Linq.Expressions;
using System.Runtime.CompilerServices;
using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.Extensions.AI;
using Microsoft.Extensions.VectorData;
using Microsoft.Extensions.VectorData.ProviderServices;

namespace Bert4Sharp.Search.VectorData;

/// <summary>
/// A collection of a <see cref="Bert4SharpVectorStore"/>: one <see cref="VectorIndex"/> directory. Keys are stored as
/// strings (ulong in decimal, Guid as "D"), data properties as one JSON object in DuckDB (by storage name), the vector
/// in USearch (cosine; <c>IndexKind.Flat</c> searches exactly, anything else uses HNSW). A string vector property is
/// embedded through the configured <see cref="IEmbeddingGenerator"/> and its text kept. Every upsert or delete call
/// saves the index (atomically), so batch your upserts. All collection objects of one name from one store share one
/// open index and one gate, so they see each other's writes and calls from several threads are serialised. Search filters are not supported (a server connector has them).
/// </summary>
/// <typeparam name="TKey">string, ulong or Guid (object for dynamic collections).</typeparam>
/// <typeparam name="TRecord">The record type (attributes or a <see cref="VectorStoreCollectionDefinition"/>).</typeparam>
public sealed class Bert4SharpCollection<TKey, TRecord> : VectorStoreCollection<TKey, TRecord>
    where TKey : notnull
    where TRecord : class
{
    private readonly SharedIndex _shared;
    private readonly string _directory;
    private readonly Bert4SharpVectorStoreOptions _options;
    private readonly CollectionModel _model;
    private readonly VectorPropertyModel _vector;

    internal Bert4SharpCollection(SharedIndex shared, string name, Bert4SharpVectorStoreOptions options,
        VectorStoreCollectionDefinition? definition, bool dynamic = false)
    {
        _shared = shared;
        _directory = shared.Directory;
        Name = name;
        _options = options;
        var builder = new SearchModelBuilder();
        _model = dynamic
            ? builder.BuildDynamic(definition ?? throw new ArgumentNullException(nameof(definition)), options.EmbeddingGenerator)
            : builder.Build(typeof(TRecord), typeof(TKey), definition, options.EmbeddingGenerator);
        _vector = _model.VectorProperty;
        if (_vector.DistanceFunction is DistanceFunction.CosineDistance)
            throw new NotSupportedException($"Vector property '{_vector.ModelName}': distance function CosineDistance is not supported; " +
                "this store returns cosine similarities as scores (higher is closer): use CosineSimilarity.");
        if (_vector.DistanceFunction is not null and not DistanceFunction.CosineSimilarity)
            throw new NotSupportedException($"Vector property '{_vector.ModelName}': distance function {_vector.DistanceFunction} is not supported; this store uses cosine similarity.");
    }

    /// <inheritdoc />
    public override string Name { get; }

    /// <inheritdoc />
    public override Task<bool> CollectionExistsAsync(CancellationToken cancellationToken = default) =>
        Task.FromResult(VectorIndex.Exists(_directory));

    /// <inheritdoc />
    public override Task EnsureCollectionExistsAsync(CancellationToken cancellationToken = default) =>
        Locked(EnsureExists, cancellationToken);

    /// <inheritdoc />
    public override Task EnsureCollectionDeletedAsync(CancellationToken cancellationToken = default) =>
        _shared.DeleteAsync(cancellationToken);

    /// <inheritdoc />
    public override async Task<TRecord?> GetAsync(TKey key, RecordRetrievalOptions? options = null, CancellationToken cancellationToken = default)
    {
        var k = KeyToString(key);
        var entry = await Locked(() => Index().Get(k), cancellationToken).ConfigureAwait(false);
        return entry is null ? null : ToRecord(entry.Key, entry.Text, entry.Metadata, options?.IncludeVectors == true ? entry.Vector : null);
    }

    /// <inheritdoc />
    public override async IAsyncEnumerable<TRecord> GetAsync(Expression<Func<TRecord, bool>> filter, int top,
        FilteredRecordRetrievalOptions<TRecord>? options = null, [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(filter);
        ArgumentOutOfRangeException.ThrowIfLessThan(top, 1);
        if (options?.OrderBy is not null) throw new NotSupportedException("OrderBy is not supported by the Bert4Sharp embedded store.");
        var predicate = filter.Compile();
        // Read a snapshot under the gate; filter and yield outside it.
        var entries = await Locked(() =>
        {
            var index = Index();
            return index.Keys().Select(key => index.Get(key)!).ToList();
        }, cancellationToken).ConfigureAwait(false);
        int skip = options?.Skip ?? 0, returned = 0;
        foreach (var entry in entries)
        {
            cancellationToken.ThrowIfCancellationRequested();
            var record = ToRecord(entry.Key, entry.Text, entry.Metadata, options?.IncludeVectors == true ? entry.Vector : null);
            if (!predicate(record)) continue;
            if (skip > 0) { skip--; continue; }
            yield return record;
            if (++returned == top) yield break;
        }
    }

    /// <inheritdoc />
    public override Task DeleteAsync(TKey key, CancellationToken cancellationToken = default) => DeleteAsync([key], cancellationToken);

    /// <inheritdoc />
    public override Task DeleteAsync(IEnumerable<TKey> keys, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(keys);
        var strings = keys.Select(k => KeyToString(k)).ToList();
        return Locked(() =>
        {
            var index = Index();
            if (index.Remove(strings) > 0) index.Save();
        }, cancellationToken);
    }

    /// <inheritdoc />
    public override Task UpsertAsync(TRecord record, CancellationToken cancellationToken = default) => UpsertAsync([record], cancellationToken);

    /// <inheritdoc />
    public override async Task UpsertAsync(IEnumerable<TRecord> records, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(records);
        var list = records.ToList();
        if (list.Count == 0) return;
        var values = list.Select(r => _vector.GetValueAsObject(r)).ToList();
        var vectors = new ReadOnlyMemory<float>[list.Count];
        var texts = new string?[list.Count];
        var toGenerate = new List<int>();
        for (int i = 0; i < list.Count; i++)
        {
            if (TryVector(values[i], out var v)) vectors[i] = v;
            else { toGenerate.Add(i); texts[i] = values[i]?.ToString(); }
        }
        if (toGenerate.Count > 0)
        {
            if (_vector.EmbeddingGenerator is null)
                throw new InvalidOperationException($"Vector property '{_vector.ModelName}' holds {values[toGenerate[0]]?.GetType().Name ?? "null"}, " +
                    "not a vector, and no IEmbeddingGenerator is configured (Bert4SharpVectorStoreOptions.EmbeddingGenerator or the property's own).");
            var generated = await _vector.GenerateEmbeddingsAsync(toGenerate.Select(i => values[i]!), cancellationToken).ConfigureAwait(false);
            for (int j = 0; j < toGenerate.Count; j++) vectors[toGenerate[j]] = ((Embedding<float>)generated[j]).Vector;
        }
        var entries = new VectorEntry[list.Count];
        for (int i = 0; i < list.Count; i++)
            entries[i] = new VectorEntry(KeyToString(_model.KeyProperty.GetValueAsObject(list[i]), i), texts[i], DataToJson(list[i]), vectors[i]);
        await Locked(() =>
        {
            EnsureExists();
            var index = Index();
            index.Add(entries);
            index.Save();
        }, cancellationToken).ConfigureAwait(false);
    }

    /// <inheritdoc />
    public override async IAsyncEnumerable<VectorSearchResult<TRecord>> SearchAsync<TInput>(TInput searchValue, int top,
        VectorSearchOptions<TRecord>? options = null, [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(searchValue);
        ArgumentOutOfRangeException.ThrowIfLessThan(top, 1);
        options ??= new VectorSearchOptions<TRecord>();
        if (options.Filter is not null)
            throw new NotSupportedException("Search filters are not supported by the Bert4Sharp embedded store; filter the hits, or use a server connector.");
        ReadOnlyMemory<float> query;
        if (!TryVector(searchValue, out query))
        {
            if (_vector.EmbeddingGenerator is null)
                throw new InvalidOperationException($"Searching with a {typeof(TInput).Name} needs an IEmbeddingGenerator (Bert4SharpVectorStoreOptions.EmbeddingGenerator); or pass a ReadOnlyMemory<float>.");
            query = ((Embedding<float>)await _vector.GenerateEmbeddingAsync(searchValue, cancellationToken).ConfigureAwait(false)).Vector;
        }
        int k = top + options.Skip;
        bool exact = _vector.IndexKind == IndexKind.Flat, includeVectors = options.IncludeVectors;
        var found = await Locked(() =>
        {
            var index = Index();
            var hits = exact ? index.SearchExact(query.Span, k) : index.Search(query.Span, k);
            return hits.Skip(options.Skip)
                .Select(hit => (Hit: hit, Vector: includeVectors ? index.Get(hit.Key)!.Vector : (ReadOnlyMemory<float>?)null))
                .ToList();
        }, cancellationToken).ConfigureAwait(false);
        foreach (var (hit, vector) in found)
        {
            if (options.ScoreThreshold is { } threshold && hit.Score < threshold) continue;
            yield return new VectorSearchResult<TRecord>(ToRecord(hit.Key, hit.Text, hit.Metadata, vector), hit.Score);
        }
    }

    /// <inheritdoc />
    public override object? GetService(Type serviceType, object? serviceKey = null) =>
        serviceKey is not null ? null
        : serviceType == typeof(VectorStoreCollectionMetadata)
            ? new VectorStoreCollectionMetadata { VectorStoreSystemName = Bert4SharpVectorStore.SystemName, VectorStoreName = Path.GetDirectoryName(_directory), CollectionName = Name }
        : serviceType == typeof(VectorIndex) ? Index()
        : null;

    private async Task<T> Locked<T>(Func<T> action, CancellationToken cancellationToken)
    {
        await _shared.Gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            return action();
        }
        finally
        {
            _shared.Gate.Release();
        }
    }

    private Task Locked(Action action, CancellationToken cancellationToken) =>
        Locked(() => { action(); return true; }, cancellationToken);

    // Under the gate.
    private void EnsureExists()
    {
        if (_shared.Index is null && !VectorIndex.Exists(_directory))
        {
            var index = VectorIndex.Create(_directory, new VectorIndexOptions(_vector.Dimensions, _options.Model,
                _options.Connectivity, _options.ExpansionAdd, _options.ExpansionSearch));
            try
            {
                index.Save();
            }
            catch
            {
                index.Dispose();
                throw;
            }
            _shared.Index = index;
        }
    }

    // Under the gate (GetService reads it without: the caller then owns the synchronisation).
    private VectorIndex Index()
    {
        if (_shared.Index is { } open) return open;
        if (!VectorIndex.Exists(_directory))
            throw new VectorStoreException($"Collection '{Name}' does not exist at '{_directory}': call EnsureCollectionExistsAsync or upsert first.")
            { VectorStoreSystemName = Bert4SharpVectorStore.SystemName, CollectionName = Name };
        var index = VectorIndex.Open(_directory, writable: true, expectedModel: _options.Model.Length > 0 ? _options.Model : null);
        if (index.Dimensions != _vector.Dimensions)
        {
            index.Dispose();
            throw new VectorStoreException($"Collection '{Name}' holds {index.Dimensions}-dimensional vectors; the record type declares {_vector.Dimensions}.");
        }
        return _shared.Index = index;
    }

    private static bool TryVector(object? value, out ReadOnlyMemory<float> vector)
    {
        switch (value)
        {
            case ReadOnlyMemory<float> m: vector = m; return true;
            case float[] a: vector = a; return true;
            case Embedding<float> e: vector = e.Vector; return true;
            default: vector = default; return false;
        }
    }

    private string DataToJson(TRecord record)
    {
        var obj = new JsonObject();
        foreach (var p in _model.DataProperties)
            obj[p.StorageName] = JsonSerializer.SerializeToNode(p.GetValueAsObject(record), p.Type);
        return obj.ToJsonString();
    }

    private TRecord ToRecord(string key, string? text, string? metadata, ReadOnlyMemory<float>? vector)
    {
        var record = _model.CreateRecord<TRecord>();
        _model.KeyProperty.SetValueAsObject(record, ParseKey(key));
        var data = metadata is null ? null : JsonNode.Parse(metadata) as JsonObject;
        foreach (var p in _model.DataProperties)
            if (data is not null && data.TryGetPropertyValue(p.StorageName, out var node) && node is not null)
                p.SetValueAsObject(record, node.Deserialize(p.Type));
        if (_vector.Type == typeof(string) && text is not null) _vector.SetValueAsObject(record, text);
        else if (vector is { } v)
            _vector.SetValueAsObject(record, _vector.Type == typeof(float[]) ? v.ToArray()
                : _vector.Type == typeof(Embedding<float>) ? new Embedding<float>(v) : v);
        return record;
    }

    private string KeyToString(object? key, int record = -1) => key switch
    {
        null => throw new ArgumentException((record >= 0 ? $"Record {record}: key" : "Key") +
            $" property '{_model.KeyProperty.ModelName}' is null; every record needs a non-null key.", record >= 0 ? "records" : "key"),
        string s => s,
        ulong u => u.ToString(CultureInfo.InvariantCulture),
        Guid g => g.ToString("D"),
        _ => throw new NotSupportedException($"Key {key} is {key.GetType().Name}; this store supports string, ulong and Guid keys."),
    };

    private object ParseKey(string key)
    {
        var t = _model.KeyProperty.Type;
        return t == typeof(ulong) ? ulong.Parse(key, CultureInfo.InvariantCulture)
            : t == typeof(Guid) ? Guid.Parse(key)
            : key;
    }
}
