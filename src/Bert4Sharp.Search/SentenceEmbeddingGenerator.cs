using System.Collections.Concurrent;
using Bert4Sharp.Embeddings;
using Microsoft.Extensions.AI;

namespace Bert4Sharp.Search;

/// <summary>
/// A <see cref="SentenceEncoder"/> behind Microsoft.Extensions.AI's <see cref="IEmbeddingGenerator{TInput,TEmbedding}"/>,
/// so Semantic Kernel, the Microsoft.Extensions.VectorData stores (<see cref="VectorData.Bert4SharpVectorStore"/> among
/// them) and any code written against the abstraction embed with a local model.
/// </summary>
/// <remarks>
/// <para>
/// The CPU work runs on the thread pool, never on the caller's thread; calls are serialised (one forward pass at a time,
/// which is what the intra-op threads of libtorch or ONNX Runtime want); cancellation is checked between batches.
/// </para>
/// <para>
/// <see cref="EmbeddingGenerationOptions.Dimensions"/>: a request for fewer dimensions than the encoder gives is only
/// possible when the encoder carries a BERT-whitening, whose columns are ordered by variance: the first k are kept
/// (<see cref="Whitening.Truncate"/>), then the vectors are normalised as usual. Without a whitening, or for more
/// dimensions than the whitening keeps, the call throws <see cref="NotSupportedException"/> /
/// <see cref="ArgumentOutOfRangeException"/> (cutting a raw pooled vector would silently change every similarity).
/// </para>
/// <para>
/// <see cref="GeneratedEmbeddings{TEmbedding}.Usage"/> holds the input tokens ([CLS] and [SEP] included, after
/// truncation); the count of truncated texts is in <see cref="GeneratedEmbeddings{TEmbedding}.AdditionalProperties"/>
/// under <see cref="TruncatedKey"/>.
/// </para>
/// </remarks>
public sealed class SentenceEmbeddingGenerator : IEmbeddingGenerator<string, Embedding<float>>
{
    /// <summary>The provider name in <see cref="Metadata"/>.</summary>
    public const string ProviderName = "bert4sharp";
    /// <summary>Key of the truncated-text count in <see cref="GeneratedEmbeddings{TEmbedding}.AdditionalProperties"/>.</summary>
    public const string TruncatedKey = "truncated";

    readonly SentenceEncoder encoder;
    readonly bool ownsEncoder;
    readonly SemaphoreSlim gate = new(1, 1);
    readonly ConcurrentDictionary<int, SentenceEncoder> truncated = new();
    bool disposed;

    /// <summary>Wraps <paramref name="encoder"/>.</summary>
    /// <param name="encoder">The sentence encoder (pooling, whitening, normalisation already chosen).</param>
    /// <param name="modelId">The model's name, reported in <see cref="Metadata"/> and on every embedding.</param>
    /// <param name="ownsEncoder">Dispose the encoder's engine (when it is disposable) with this generator.</param>
    public SentenceEmbeddingGenerator(SentenceEncoder encoder, string modelId, bool ownsEncoder = false)
    {
        this.encoder = encoder ?? throw new ArgumentNullException(nameof(encoder));
        ArgumentException.ThrowIfNullOrWhiteSpace(modelId);
        this.ownsEncoder = ownsEncoder;
        Metadata = new EmbeddingGeneratorMetadata(ProviderName, null, modelId, encoder.Dimensions);
    }

    /// <summary>Provider "bert4sharp", the model id and the default (full) dimensions.</summary>
    public EmbeddingGeneratorMetadata Metadata { get; }

    /// <summary>The wrapped encoder.</summary>
    public SentenceEncoder Encoder => encoder;

    /// <inheritdoc />
    /// <exception cref="ArgumentException">An empty or whitespace-only value (its position named).</exception>
    /// <exception cref="NotSupportedException"><see cref="EmbeddingGenerationOptions.Dimensions"/> differs from the encoder's and it has no whitening.</exception>
    /// <exception cref="ArgumentOutOfRangeException"><see cref="EmbeddingGenerationOptions.Dimensions"/> below 1 or above what the whitening keeps.</exception>
    public async Task<GeneratedEmbeddings<Embedding<float>>> GenerateAsync(IEnumerable<string> values,
        EmbeddingGenerationOptions? options = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(values);
        ObjectDisposedException.ThrowIf(disposed, this);
        if (options?.ModelId is { Length: > 0 } requested && requested != Metadata.DefaultModelId)
            throw new NotSupportedException($"this generator serves model '{Metadata.DefaultModelId}', not '{requested}': construct one per model");
        var target = ForDimensions(options?.Dimensions);
        var texts = values as IReadOnlyList<string> ?? values.ToList();
        if (texts.Count == 0) return new GeneratedEmbeddings<Embedding<float>>();

        await gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        EmbeddingResult result;
        try
        {
            ObjectDisposedException.ThrowIf(disposed, this); // disposed while this call waited
            result = await Task.Run(() => target.Embed(texts, null, cancellationToken), cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            gate.Release();
        }
        var now = DateTimeOffset.UtcNow;
        long tokens = result.TokenCounts.Sum(c => (long)c);
        return new GeneratedEmbeddings<Embedding<float>>(result.Vectors.Select(v => new Embedding<float>(v) { ModelId = Metadata.DefaultModelId, CreatedAt = now }))
        {
            Usage = new UsageDetails { InputTokenCount = tokens, TotalTokenCount = tokens },
            AdditionalProperties = new AdditionalPropertiesDictionary { [TruncatedKey] = result.Truncated },
        };
    }

    /// <summary>The encoder giving <paramref name="dimensions"/> values per vector (null: all).</summary>
    SentenceEncoder ForDimensions(int? dimensions)
    {
        if (dimensions is not int k || k == encoder.Dimensions) return encoder;
        if (k < 1) throw new ArgumentOutOfRangeException(nameof(EmbeddingGenerationOptions.Dimensions), k, "EmbeddingGenerationOptions.Dimensions must be at least 1");
        if (encoder.Whitening is null)
            throw new NotSupportedException($"EmbeddingGenerationOptions.Dimensions = {k}, but '{Metadata.DefaultModelId}' gives {encoder.Dimensions}-dimensional vectors and has no whitening to reduce them: fit a BERT-whitening (b4s whiten) or leave Dimensions unset");
        if (k > encoder.Whitening.Dimensions)
            throw new ArgumentOutOfRangeException(nameof(EmbeddingGenerationOptions.Dimensions), k, $"'{Metadata.DefaultModelId}' gives at most {encoder.Whitening.Dimensions} dimensions (its whitening keeps {encoder.Whitening.Dimensions}); ask for 1 to {encoder.Whitening.Dimensions}");
        return truncated.GetOrAdd(k, n => encoder.With(encoder.Whitening.Truncate(n)));
    }

    /// <inheritdoc />
    public object? GetService(Type serviceType, object? serviceKey = null)
    {
        ArgumentNullException.ThrowIfNull(serviceType);
        if (serviceKey is not null) return null;
        if (serviceType == typeof(EmbeddingGeneratorMetadata)) return Metadata;
        if (serviceType.IsInstanceOfType(this)) return this;
        if (serviceType.IsInstanceOfType(encoder)) return encoder;
        if (serviceType.IsInstanceOfType(encoder.Encoder)) return encoder.Encoder;
        return null;
    }

    /// <summary>
    /// Waits for a call in flight to finish, then disposes the encoder's engine when this generator owns it; calls
    /// still waiting then throw <see cref="ObjectDisposedException"/>.
    /// </summary>
    public void Dispose()
    {
        if (disposed) return;
        // The gate is taken, never disposed: a SemaphoreSlim without its wait handle holds nothing to free, and
        // disposing it under a waiting call would make that call's Release throw.
        gate.Wait();
        try
        {
            if (disposed) return;
            disposed = true;
            if (ownsEncoder && encoder.Encoder is IDisposable d) d.Dispose();
        }
        finally
        {
            gate.Release();
        }
    }
}
