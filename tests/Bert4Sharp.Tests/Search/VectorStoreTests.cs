// The calls read as the Microsoft.Extensions.VectorData docs write them, without cancellation tokens.
#pragma warning disable xUnit1051
using Bert4Sharp.Search;
using Bert4Sharp.Search.VectorData;
using Microsoft.Extensions.AI;
using Microsoft.Extensions.VectorData;

namespace Bert4Sharp.Tests.Search;

/// <summary>
/// A deterministic stand-in for a sentence encoder: hashed character trigrams into 64 buckets (FNV-1a), so texts that
/// share trigrams have a high cosine similarity. Counts its calls.
/// </summary>
public sealed class TrigramEmbedder : IEmbeddingGenerator<string, Embedding<float>>
{
    public const int Dimensions = 64;
    public int Calls { get; private set; }

    public Task<GeneratedEmbeddings<Embedding<float>>> GenerateAsync(IEnumerable<string> values,
        EmbeddingGenerationOptions? options = null, CancellationToken cancellationToken = default)
    {
        Calls++;
        return Task.FromResult(new GeneratedEmbeddings<Embedding<float>>(values.Select(v => new Embedding<float>(Embed(v)))));
    }

    public static float[] Embed(string text)
    {
        var v = new float[Dimensions];
        string t = "  " + text.ToLowerInvariant() + "  ";
        for (int i = 0; i + 3 <= t.Length; i++)
        {
            uint h = 2166136261;
            foreach (char c in t.AsSpan(i, 3)) h = (h ^ c) * 16777619;
            v[h % Dimensions] += 1f;
        }
        return v;
    }

    public object? GetService(Type serviceType, object? serviceKey = null) => serviceType.IsInstanceOfType(this) ? this : null;

    public void Dispose() { }
}

public sealed class VectorStoreTests
{
    // The record type as the Microsoft.Extensions.VectorData docs write one: attributes on a plain class.
    public sealed class Hotel
    {
        [VectorStoreKey] public ulong HotelId { get; set; }
        [VectorStoreData(IsIndexed = true)] public string HotelName { get; set; } = "";
        [VectorStoreData] public string[] Tags { get; set; } = [];
        [VectorStoreData(StorageName = "stars")] public int Rating { get; set; }
        [VectorStoreVector(TrigramEmbedder.Dimensions, DistanceFunction = DistanceFunction.CosineSimilarity)]
        public string Description { get; set; } = "";
    }

    public sealed class Passage
    {
        [VectorStoreKey] public Guid Id { get; set; }
        [VectorStoreData] public string Text { get; set; } = "";
        [VectorStoreVector(4, IndexKind = IndexKind.Flat)] public ReadOnlyMemory<float> Embedding { get; set; }
    }

    [Fact]
    public async Task UsedThroughTheAbstractionsLikeTheDocsShow()
    {
        var embedder = new TrigramEmbedder();
        string root = Directory.CreateTempSubdirectory("b4s-vectorstore").FullName;
        VectorStore store = new Bert4SharpVectorStore(root, new() { EmbeddingGenerator = embedder, Model = "trigram-64" });
        VectorStoreCollection<ulong, Hotel> hotels = store.GetCollection<ulong, Hotel>("hotels");
        await hotels.EnsureCollectionExistsAsync();
        await hotels.UpsertAsync(
        [
            new Hotel { HotelId = 1, HotelName = "Seaside Inn", Tags = ["beach"], Rating = 4, Description = "A quiet hotel by the sea with a sandy beach." },
            new Hotel { HotelId = 2, HotelName = "Mountain Lodge", Tags = ["ski", "hiking"], Rating = 5, Description = "Ski slopes and mountain hiking trails from the door." },
            new Hotel { HotelId = 3, HotelName = "City Central", Tags = [], Rating = 3, Description = "Downtown rooms near the train station and museums." },
        ]);
        Assert.Equal(1, embedder.Calls); // one batch for the three descriptions

        var results = await hotels.SearchAsync("hiking trails in the mountains", top: 2).ToListAsync();
        Assert.Equal(2, results.Count);
        Assert.Equal(2UL, results[0].Record.HotelId);
        Assert.Equal("Mountain Lodge", results[0].Record.HotelName);
        Assert.Equal(["ski", "hiking"], results[0].Record.Tags);
        Assert.Equal(5, results[0].Record.Rating);
        Assert.Equal("Ski slopes and mountain hiking trails from the door.", results[0].Record.Description);
        var expectedScore = Cosine(TrigramEmbedder.Embed("hiking trails in the mountains"), TrigramEmbedder.Embed(results[0].Record.Description));
        Close.Assert(results[0].Score!.Value, expectedScore, "score = cosine of the two embeddings", atol: 1e-5);
        Assert.True(results[0].Score > results[1].Score);

        var got = await hotels.GetAsync(3);
        Assert.NotNull(got);
        Assert.Equal("City Central", got.HotelName);
        Assert.Null(await hotels.GetAsync(99));

        // The data properties live in DuckDB as JSON under their storage names.
        var index = (VectorIndex)hotels.GetService(typeof(VectorIndex))!;
        Assert.Contains("\"stars\":3", index.Get("3")!.Metadata);

        var fiveStars = await hotels.GetAsync(h => h.Rating >= 4, top: 10).Select(h => h.HotelId).ToListAsync();
        Assert.Equal([1UL, 2UL], fiveStars);

        await hotels.DeleteAsync(2);
        Assert.Null(await hotels.GetAsync(2));
        Assert.Equal(["hotels"], await store.ListCollectionNamesAsync().ToListAsync());

        // A fresh store over the same directory sees what was saved.
        using var reopened = new Bert4SharpVectorStore(root, new() { EmbeddingGenerator = embedder }).GetCollection<ulong, Hotel>("hotels");
        var again = await reopened.SearchAsync("beach by the sea", top: 5).ToListAsync();
        Assert.Equal([1UL, 3UL], again.Select(r => r.Record.HotelId).Order());
        Assert.Equal(1UL, again[0].Record.HotelId);

        await store.EnsureCollectionDeletedAsync("hotels");
        Assert.False(await store.CollectionExistsAsync("hotels"));
    }

    [Fact]
    public async Task GuidKeysVectorsGivenDirectlyAndFlatIndexSearchesExactly()
    {
        using var store = new Bert4SharpVectorStore(Directory.CreateTempSubdirectory("b4s-vectorstore-guid").FullName);
        var passages = store.GetCollection<Guid, Passage>("passages");
        var ids = Enumerable.Range(0, 3).Select(i => new Guid(i + 1, 0, 0, new byte[8])).ToArray();
        await passages.UpsertAsync(
        [
            new Passage { Id = ids[0], Text = "x", Embedding = new float[] { 1, 0, 0, 0 } },
            new Passage { Id = ids[1], Text = "y", Embedding = new float[] { 0, 1, 0, 0 } },
            new Passage { Id = ids[2], Text = "xy", Embedding = new float[] { 1, 1, 0, 0 } },
        ]);
        var hits = await passages.SearchAsync(new ReadOnlyMemory<float>([2, 0.1f, 0, 0]), top: 2,
            new VectorSearchOptions<Passage> { IncludeVectors = true }).ToListAsync();
        Assert.Equal([ids[0], ids[2]], hits.Select(h => h.Record.Id));
        Close.Assert(hits[1].Record.Embedding.ToArray(), [MathF.Sqrt(0.5f), MathF.Sqrt(0.5f), 0, 0], "stored vectors come back normalised", atol: 1e-6);

        var noGenerator = await Assert.ThrowsAsync<InvalidOperationException>(async () => await passages.SearchAsync("text", top: 1).ToListAsync());
        Assert.Contains("IEmbeddingGenerator", noGenerator.Message);
        await Assert.ThrowsAsync<ArgumentException>(async () => await passages.SearchAsync(new ReadOnlyMemory<float>(new float[3]), top: 1).ToListAsync());
        await Assert.ThrowsAsync<ArgumentOutOfRangeException>(async () => await passages.SearchAsync(new ReadOnlyMemory<float>(new float[4]), top: 0).ToListAsync());
        await Assert.ThrowsAsync<NotSupportedException>(async () => await passages.SearchAsync(new ReadOnlyMemory<float>([1, 0, 0, 0]), top: 1,
            new VectorSearchOptions<Passage> { Filter = p => p.Text == "x" }).ToListAsync());
        await Assert.ThrowsAsync<VectorStoreException>(() => store.GetCollection<Guid, Passage>("missing").GetAsync(ids[0]));
    }

    private static float Cosine(float[] a, float[] b)
    {
        double dot = 0, na = 0, nb = 0;
        for (int i = 0; i < a.Length; i++) { dot += a[i] * b[i]; na += a[i] * a[i]; nb += b[i] * b[i]; }
        return (float)(dot / Math.Sqrt(na * nb));
    }
}
