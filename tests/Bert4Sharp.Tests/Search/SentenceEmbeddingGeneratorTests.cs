using Bert4Sharp.Embeddings;
using Bert4Sharp.Search;
using Bert4Sharp.Search.VectorData;
using Microsoft.Extensions.AI;
using Microsoft.Extensions.VectorData;

namespace Bert4Sharp.Tests.Search;

/// <summary><see cref="SentenceEmbeddingGenerator"/> used only through Microsoft.Extensions.AI's and VectorData's public surface.</summary>
public sealed class SentenceEmbeddingGeneratorTests
{
    static readonly Lazy<SentenceEncoder> tiny = new(() =>
    {
        var (model, tokenizer) = TestPaths.TinyBertEncoder();
        model.eval();
        return new SentenceEncoder(model, tokenizer, new SentenceEncoderOptions { BatchSize = 4 });
    });

    /// <summary>Texts of CJK characters the synthetic vocabulary holds one token each for.</summary>
    static string Text(int i, int length) => string.Concat(Enumerable.Range(0, length).Select(j => (char)(0x4E00 + (i * 7 + j * 13) % 800)));

    [Fact]
    public async Task VectorsTokensAndMetadataMatchTheSentenceEncoder()
    {
        var encoder = tiny.Value;
        IEmbeddingGenerator<string, Embedding<float>> generator = new SentenceEmbeddingGenerator(encoder, "tiny-bert");
        var texts = Enumerable.Range(0, 9).Select(i => Text(i, 2 + i % 6)).ToArray();
        var expected = encoder.Embed(texts, cancellation: TestContext.Current.CancellationToken);

        var generated = await generator.GenerateAsync(texts, cancellationToken: TestContext.Current.CancellationToken);
        Assert.Equal(texts.Length, generated.Count);
        for (int i = 0; i < texts.Length; i++)
        {
            Close.Assert(generated[i].Vector.ToArray(), expected.Vectors[i], $"text {i}", atol: 1e-6);
            Assert.Equal("tiny-bert", generated[i].ModelId);
            Assert.Equal(encoder.Dimensions, generated[i].Dimensions);
        }
        // Each text is [CLS] + one token per character + [SEP].
        Assert.Equal(texts.Sum(t => t.Length + 2), generated.Usage!.InputTokenCount);
        Assert.Equal(0, generated.AdditionalProperties![SentenceEmbeddingGenerator.TruncatedKey]);

        // The extension methods of the abstraction: one vector, and one embedding.
        var one = await generator.GenerateVectorAsync(texts[3], cancellationToken: TestContext.Current.CancellationToken);
        Close.Assert(one.ToArray(), expected.Vectors[3], "GenerateVectorAsync", atol: 1e-6);
        double norm = Math.Sqrt(one.ToArray().Sum(x => (double)x * x));
        Close.Assert(norm, 1.0, "unit length", atol: 1e-5);

        var metadata = generator.GetService<EmbeddingGeneratorMetadata>();
        Assert.NotNull(metadata);
        Assert.Equal("bert4sharp", metadata.ProviderName);
        Assert.Equal("tiny-bert", metadata.DefaultModelId);
        Assert.Equal(64, metadata.DefaultModelDimensions);
        Assert.Same(encoder, generator.GetService<SentenceEncoder>());
        Assert.Null(generator.GetService<EmbeddingGeneratorMetadata>("some key"));
        Assert.Empty(await generator.GenerateAsync([], cancellationToken: TestContext.Current.CancellationToken));
    }

    [Fact]
    public async Task DimensionsNeedAWhiteningAndAreTruncatedToIt()
    {
        var encoder = tiny.Value.With(new SentenceEncoderOptions { Normalize = false });
        var corpus = Enumerable.Range(0, 120).Select(i => Text(i, 3 + i % 7)).ToArray();
        using var plain = new SentenceEmbeddingGenerator(tiny.Value, "tiny-bert");
        var ct = TestContext.Current.CancellationToken;

        var error = await Assert.ThrowsAsync<NotSupportedException>(() => plain.GenerateAsync(corpus[..2], new EmbeddingGenerationOptions { Dimensions = 16 }, ct));
        Assert.Contains("has no whitening", error.Message);
        // Asking for the width it has is not a reduction.
        Assert.Equal(64, (await plain.GenerateAsync(corpus[..1], new EmbeddingGenerationOptions { Dimensions = 64 }, ct))[0].Dimensions);

        var whitening = Whitening.Fit(encoder.Encode(corpus), 48);
        using var whitened = new SentenceEmbeddingGenerator(tiny.Value.With(whitening), "tiny-bert-w48");
        Assert.Equal(48, whitened.Metadata.DefaultModelDimensions);
        var got = await whitened.GenerateAsync(corpus[..5], new EmbeddingGenerationOptions { Dimensions = 16 }, ct);
        var expected = tiny.Value.With(whitening.Truncate(16)).Encode(corpus[..5]);
        for (int i = 0; i < 5; i++)
        {
            Assert.Equal(16, got[i].Dimensions);
            Close.Assert(got[i].Vector.ToArray(), expected[i], $"text {i} truncated to 16", atol: 1e-6);
        }
        var tooMany = await Assert.ThrowsAsync<ArgumentOutOfRangeException>(() => whitened.GenerateAsync(corpus[..2], new EmbeddingGenerationOptions { Dimensions = 49 }, ct));
        Assert.Contains("at most 48 dimensions", tooMany.Message);
        await Assert.ThrowsAsync<NotSupportedException>(() => whitened.GenerateAsync(corpus[..2], new EmbeddingGenerationOptions { ModelId = "other" }, ct));
    }

    [Fact]
    public async Task CancelledAndEmptyInputsAreRefused()
    {
        using var generator = new SentenceEmbeddingGenerator(tiny.Value, "tiny-bert");
        using var cts = new CancellationTokenSource();
        await cts.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => generator.GenerateAsync([Text(1, 3)], null, cts.Token));
        var error = await Assert.ThrowsAsync<ArgumentException>(() => generator.GenerateAsync([Text(1, 3), "  "], null, TestContext.Current.CancellationToken));
        Assert.Contains("text 1 is empty", error.Message);
    }

    public sealed class Note
    {
        [VectorStoreKey] public ulong Id { get; set; }
        [VectorStoreVector(64, DistanceFunction = DistanceFunction.CosineSimilarity)] public string Text { get; set; } = "";
    }

    [Fact]
    public async Task PluggedIntoTheVectorStoreATextQueryFindsItsText()
    {
        var ct = TestContext.Current.CancellationToken;
        using var generator = new SentenceEmbeddingGenerator(tiny.Value, "tiny-bert");
        using var store = new Bert4SharpVectorStore(Directory.CreateTempSubdirectory("b4s-generator-store").FullName,
            new Bert4SharpVectorStoreOptions { EmbeddingGenerator = generator, Model = "tiny-bert" });
        var notes = store.GetCollection<ulong, Note>("notes");
        await notes.EnsureCollectionExistsAsync(ct);
        var texts = Enumerable.Range(0, 30).Select(i => Text(i, 4 + i % 5)).ToArray();
        await notes.UpsertAsync(texts.Select((t, i) => new Note { Id = (ulong)i, Text = t }), ct);

        var hits = await notes.SearchAsync(texts[11], top: 3, cancellationToken: ct).ToListAsync(ct);
        Assert.Equal(11UL, hits[0].Record.Id);
        Close.Assert(hits[0].Score!.Value, 1.0, "a text's cosine with itself", atol: 1e-4);
    }
}
