using Bert4Sharp.Bench;
using Bert4Sharp.Search;

namespace Bert4Sharp.Tests.Search;

public sealed class VectorIndexTests
{
    private static VectorIndex Build(string dir, float[][] vectors, VectorIndexOptions options)
    {
        var index = VectorIndex.Create(dir, options);
        index.Add(vectors.Select((v, i) => new VectorEntry($"doc{i}", $"text {i}", $"{{\"n\":{i}}}", v)).ToArray());
        return index;
    }

    [Fact]
    public void HnswRecallAt10AgainstExactSearchIsAtLeast095()
    {
        // 20k clustered unit vectors, d = 384, 200 held-out queries; M = 16, efConstruction = 128, ef = 128.
        const int n = 20_000, d = 384, queries = 200, k = 10;
        var data = ClusteredVectors.Make(n + queries, d, clusters: 100, noise: 0.05f, seed: 7);
        string dir = Directory.CreateTempSubdirectory("b4s-recall").FullName;
        using var index = Build(dir, data[..n], new VectorIndexOptions(d, "synthetic", Connectivity: 16, ExpansionAdd: 128, ExpansionSearch: 128));
        double hits = 0;
        for (int q = n; q < n + queries; q++)
        {
            var approx = index.Search(data[q], k).Select(h => h.Key).ToHashSet();
            var exact = index.SearchExact(data[q], k);
            Assert.Equal(k, exact.Count);
            hits += exact.Count(h => approx.Contains(h.Key));
        }
        double recall = hits / (queries * k);
        Assert.True(recall >= 0.95, $"recall@10 of HNSW against exact search is {recall:F4}, below 0.95");
    }

    [Fact]
    public void ExactSearchEqualsAPlainDotProductRanking()
    {
        const int d = 32;
        var data = ClusteredVectors.Make(500, d, clusters: 10, noise: 0.3f, seed: 3);
        using var index = Build(Directory.CreateTempSubdirectory("b4s-exact").FullName, data[..499], new VectorIndexOptions(d));
        var query = data[499];
        var expected = Enumerable.Range(0, 499)
            .Select(i => (Key: $"doc{i}", Score: (float)Enumerable.Range(0, d).Sum(j => (double)data[i][j] * query[j])))
            .OrderByDescending(p => p.Score).Take(7).ToArray();
        var actual = index.SearchExact(query, 7);
        Assert.Equal(expected.Select(e => e.Key), actual.Select(h => h.Key));
        Close.Assert(actual.Select(h => h.Score).ToArray(), expected.Select(e => e.Score).ToArray(), "exact scores vs dot products", atol: 1e-5);
        // HNSW reports the same cosine similarity for the same hits (1 − USearch's cosine distance).
        var approx = index.Search(query, 1);
        Close.Assert(approx[0].Score, expected[0].Score, "HNSW top score", atol: 1e-5);
        Assert.Equal("text " + expected[0].Key[3..], actual[0].Text);
        Assert.Equal("{\"n\":" + expected[0].Key[3..] + "}", actual[0].Metadata);
    }

    [Fact]
    public void SaveReopenMemoryMappedGivesIdenticalResults()
    {
        const int d = 48;
        var data = ClusteredVectors.Make(2_010, d, clusters: 20, noise: 0.2f, seed: 11);
        string dir = Directory.CreateTempSubdirectory("b4s-reopen").FullName;
        List<IReadOnlyList<VectorHit>> before = [], beforeExact = [];
        using (var index = Build(dir, data[..2_000], new VectorIndexOptions(d, "m")))
        {
            index.Save();
            for (int q = 2_000; q < 2_010; q++) { before.Add(index.Search(data[q], 5)); beforeExact.Add(index.SearchExact(data[q], 5)); }
        }
        Assert.Empty(Directory.GetFiles(dir, "*.tmp-*"));
        using var reopened = VectorIndex.Open(dir, expectedModel: "m");
        Assert.True(reopened.IsReadOnly);
        Assert.Equal(2_000, reopened.Count);
        for (int q = 2_000; q < 2_010; q++)
        {
            Assert.Equal(before[q - 2_000], reopened.Search(data[q], 5));
            Assert.Equal(beforeExact[q - 2_000], reopened.SearchExact(data[q], 5));
        }
        Assert.Throws<InvalidOperationException>(() => reopened.Add([new VectorEntry("x", null, null, data[0])]));
    }

    [Fact]
    public void UpsertReplacesByKeyAndRemoveDeletesAndBothSurviveSave()
    {
        const int d = 8;
        string dir = Directory.CreateTempSubdirectory("b4s-upsert").FullName;
        float[] a = [1, 0, 0, 0, 0, 0, 0, 0], b = [0, 1, 0, 0, 0, 0, 0, 0], c = [0, 0, 1, 0, 0, 0, 0, 0];
        using (var index = VectorIndex.Create(dir, new VectorIndexOptions(d)))
        {
            index.Add([new("a", "first", null, a), new("b", null, null, b)]);
            index.Add([new("a", "moved", null, c)]);
            Assert.Equal(2, index.Count);
            Assert.Equal("a", index.Search(c, 1)[0].Key);
            Assert.Equal("moved", index.Get("a")!.Text);
            index.Save();
        }
        using (var index = VectorIndex.Open(dir, writable: true))
        {
            Assert.Equal(1, index.Remove(["b", "missing"]));
            index.Save();
        }
        using var final = VectorIndex.Open(dir);
        Assert.Equal(["a"], final.Keys());
        Assert.Equal("a", final.SearchExact(b, 5).Single().Key);
        Close.Assert(final.Get("a")!.Vector.ToArray(), c, "stored vector of a", atol: 1e-6);
    }

    [Fact]
    public void BadInputsGiveClearErrors()
    {
        string dir = Directory.CreateTempSubdirectory("b4s-bad").FullName;
        using (var index = VectorIndex.Create(dir, new VectorIndexOptions(4, "model-a")))
        {
            index.Add([new("a", null, null, new float[] { 1, 2, 3, 4 })]);
            var e = Assert.Throws<ArgumentException>(() => index.Search(new float[3], 1));
            Assert.Contains("3 dimensions", e.Message);
            Assert.Contains("4-dimensional", e.Message);
            Assert.Throws<ArgumentOutOfRangeException>(() => index.Search(new float[] { 1, 0, 0, 0 }, 0));
            Assert.Throws<ArgumentOutOfRangeException>(() => index.SearchExact(new float[] { 1, 0, 0, 0 }, -1));
            Assert.Contains("all zeros", Assert.Throws<ArgumentException>(() => index.Search(new float[4], 1)).Message);
            Assert.Contains("appears twice", Assert.Throws<ArgumentException>(() =>
                index.Add([new("z", null, null, new float[] { 1, 0, 0, 0 }), new("z", null, null, new float[] { 0, 1, 0, 0 })])).Message);
            Assert.Contains("not finite", Assert.Throws<ArgumentException>(() =>
                index.Add([new("n", null, null, new float[] { float.NaN, 0, 0, 0 })])).Message);
            Assert.Equal(1, index.Count);
            index.Save();
        }
        Assert.Contains("model-a", Assert.Throws<InvalidDataException>(() => VectorIndex.Open(dir, expectedModel: "model-b")).Message);
        Assert.Throws<DirectoryNotFoundException>(() => VectorIndex.Open(Path.Combine(dir, "nowhere")));
        Assert.Contains("manifest.json is missing", Assert.Throws<InvalidDataException>(() => VectorIndex.Open(Directory.CreateTempSubdirectory("b4s-empty").FullName)).Message);

        // A truncated USearch file is refused with the file named, not a native crash.
        string broken = Directory.CreateTempSubdirectory("b4s-broken").FullName;
        foreach (var f in Directory.GetFiles(dir)) File.Copy(f, Path.Combine(broken, Path.GetFileName(f)));
        File.WriteAllBytes(Path.Combine(broken, VectorIndex.VectorsFile), new byte[10]);
        Assert.Contains(VectorIndex.VectorsFile, Assert.Throws<InvalidDataException>(() => VectorIndex.Open(broken)).Message);
        // A store that is not a DuckDB file.
        File.Copy(Path.Combine(dir, VectorIndex.VectorsFile), Path.Combine(broken, VectorIndex.VectorsFile), overwrite: true);
        File.WriteAllText(Path.Combine(broken, VectorIndex.StoreFile), "not a database");
        Assert.Contains(VectorIndex.StoreFile, Assert.Throws<InvalidDataException>(() => VectorIndex.Open(broken)).Message);
    }
}
