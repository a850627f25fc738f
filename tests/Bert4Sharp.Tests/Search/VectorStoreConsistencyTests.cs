// The calls read as the Microsoft.Extensions.VectorData docs write them, without cancellation tokens.
#pragma warning disable xUnit1051
using Bert4Sharp.Search;
using Bert4Sharp.Search.VectorData;
using Microsoft.Extensions.VectorData;

namespace Bert4Sharp.Tests.Search;

/// <summary>Regressions: shared collection state, CosineDistance, null keys, mixed saves, the model check.</summary>
public sealed class VectorStoreConsistencyTests
{
    public sealed class Doc
    {
        [VectorStoreKey] public string? Id { get; set; }
        [VectorStoreData] public string Text { get; set; } = "";
        [VectorStoreVector(4)] public ReadOnlyMemory<float> Embedding { get; set; }
    }

    public sealed class DistanceDoc
    {
        [VectorStoreKey] public string Id { get; set; } = "";
        [VectorStoreVector(4, DistanceFunction = DistanceFunction.CosineDistance)] public ReadOnlyMemory<float> Embedding { get; set; }
    }

    private static Doc D(string id, float x) => new() { Id = id, Text = id, Embedding = new float[] { 1, x, 0, 0 } };

    [Fact]
    public async Task TwoCollectionObjectsForOneNameSeeEachOthersRecordsAndADeleteIsNotUndone()
    {
        using var store = new Bert4SharpVectorStore(Directory.CreateTempSubdirectory("b4s-shared").FullName);
        var a = store.GetCollection<string, Doc>("docs");
        var b = store.GetCollection<string, Doc>("docs");
        await a.UpsertAsync(D("a", 0.1f));
        await b.UpsertAsync(D("b", 0.2f));
        await a.UpsertAsync(D("c", 0.3f));
        foreach (var c in new[] { a, b })
            Assert.Equal(["a", "b", "c"], await c.GetAsync(_ => true, top: 10).Select(d => d.Id!).ToListAsync());
        // Saved on disk too: a fresh store sees all three.
        using var fresh = new Bert4SharpVectorStore(Path.GetDirectoryName(((VectorIndex)a.GetService(typeof(VectorIndex))!).Directory)!);
        Assert.Equal(3, await fresh.GetCollection<string, Doc>("docs").GetAsync(_ => true, top: 10).CountAsync());

        // Deleted through the store: the object that had it open does not bring the old records back.
        await store.EnsureCollectionDeletedAsync("docs");
        await a.UpsertAsync(D("d", 0.4f));
        Assert.Equal(["d"], await b.GetAsync(_ => true, top: 10).Select(d => d.Id!).ToListAsync());
    }

    [Fact]
    public async Task ConcurrentUpsertsFromSeveralTasksAllLand()
    {
        using var store = new Bert4SharpVectorStore(Directory.CreateTempSubdirectory("b4s-concurrent").FullName);
        var collections = Enumerable.Range(0, 3).Select(_ => store.GetCollection<string, Doc>("docs")).ToArray();
        await Task.WhenAll(Enumerable.Range(0, 24).Select(i => Task.Run(() =>
            collections[i % collections.Length].UpsertAsync(D($"k{i}", i / 24f)))));
        var keys = await collections[0].GetAsync(_ => true, top: 100).Select(d => d.Id!).ToListAsync();
        Assert.Equal(Enumerable.Range(0, 24).Select(i => $"k{i}").Order(StringComparer.Ordinal), keys.Order(StringComparer.Ordinal));
        using var reopened = VectorIndex.Open(((VectorIndex)collections[1].GetService(typeof(VectorIndex))!).Directory);
        Assert.Equal(24, reopened.Count);
    }

    [Fact]
    public void CosineDistanceIsRefusedBecauseScoresAreSimilarities()
    {
        using var store = new Bert4SharpVectorStore(Directory.CreateTempSubdirectory("b4s-distance").FullName);
        var e = Assert.Throws<NotSupportedException>(() => store.GetCollection<string, DistanceDoc>("docs"));
        Assert.Contains("use CosineSimilarity", e.Message);
    }

    [Fact]
    public async Task ANullKeyIsAnArgumentExceptionNamingTheKeyProperty()
    {
        using var store = new Bert4SharpVectorStore(Directory.CreateTempSubdirectory("b4s-nullkey").FullName);
        var docs = store.GetCollection<string, Doc>("docs");
        var e = await Assert.ThrowsAsync<ArgumentException>(() => docs.UpsertAsync([D("a", 0), D(null!, 1)]));
        Assert.Contains("Record 1", e.Message);
        Assert.Contains("'Id'", e.Message);
    }

    [Fact]
    public async Task OpeningACollectionChecksTheStoresModel()
    {
        string root = Directory.CreateTempSubdirectory("b4s-model").FullName;
        using (var store = new Bert4SharpVectorStore(root, new() { Model = "model-a" }))
            await store.GetCollection<string, Doc>("docs").UpsertAsync(D("a", 0));
        using var other = new Bert4SharpVectorStore(root, new() { Model = "model-b" });
        var e = await Assert.ThrowsAsync<InvalidDataException>(() => other.GetCollection<string, Doc>("docs").GetAsync("a"));
        Assert.Contains("model-a", e.Message);
        using var any = new Bert4SharpVectorStore(root); // no model given: not checked
        Assert.NotNull(await any.GetCollection<string, Doc>("docs").GetAsync("a"));
    }

    [Fact]
    public void FilesFromDifferentSavesAreRefusedOnOpen()
    {
        string dir = Directory.CreateTempSubdirectory("b4s-mixed").FullName;
        string older = Directory.CreateTempSubdirectory("b4s-mixed-old").FullName;
        using (var index = VectorIndex.Create(dir, new VectorIndexOptions(4)))
        {
            index.Add([new VectorEntry("a", null, null, new float[] { 1, 0, 0, 0 }), new VectorEntry("b", null, null, new float[] { 0, 1, 0, 0 })]);
            index.Save();
            File.Copy(Path.Combine(dir, VectorIndex.StoreFile), Path.Combine(older, VectorIndex.StoreFile));
            // Replace-only upsert: the counts stay equal, so only the save id tells the files apart.
            index.Add([new VectorEntry("a", "new", null, new float[] { 0, 0, 1, 0 })]);
            index.Save();
        }
        using (var ok = VectorIndex.Open(dir)) Assert.Equal(2, ok.Count);
        // A crash after the store rename but before the manifest: simulated by putting the older store file back.
        File.Copy(Path.Combine(older, VectorIndex.StoreFile), Path.Combine(dir, VectorIndex.StoreFile), overwrite: true);
        var e = Assert.Throws<InvalidDataException>(() => VectorIndex.Open(dir));
        Assert.Contains("interrupted while saving", e.Message);
        Assert.Contains("rebuild it", e.Message);
        Assert.Throws<InvalidDataException>(() => VectorIndex.Open(dir, writable: true));
    }
}
