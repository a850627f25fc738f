namespace Bert4Sharp.Bench;

using System.Diagnostics;
using Bert4Sharp.Search;

/// <summary>
/// HNSW (USearch, through <see cref="VectorIndex"/>) against exact search on clustered random unit vectors: build
/// time, file sizes, memory-mapped open, query latency p50/p99 and recall@10 for several search expansions (ef).
/// The peer is the exact brute-force search of the same index, in the same run.
/// </summary>
static class SearchBench
{
    public static int Run(string[] args)
    {
        int count = Arg(args, "--count", 100_000), queries = Arg(args, "--queries", 200), dims = Arg(args, "--dims", 384);
        int connectivity = Arg(args, "--connectivity", 16), expansionAdd = Arg(args, "--expansion-add", 128);
        float noise = float.Parse(BenchArgs.Value(args, "--noise") ?? "0.05", System.Globalization.CultureInfo.InvariantCulture);
        var efs = (BenchArgs.Value(args, "--ef") ?? "32,64,128,256").Split(',').Select(int.Parse).ToArray();
        const int k = 10;

        var sw = Stopwatch.StartNew();
        var data = ClusteredVectors.Make(count + queries, dims, clusters: Math.Max(10, count / 200), noise: noise, seed: 1);
        Console.WriteLine($"{count} vectors + {queries} queries, d = {dims}, clustered (noise {noise}), made in {sw.Elapsed.TotalSeconds:F1} s");

        string dir = Directory.CreateTempSubdirectory("b4s-search-bench").FullName;
        try
        {
            sw.Restart();
            using (var build = VectorIndex.Create(dir, new VectorIndexOptions(dims, "synthetic", connectivity, expansionAdd, efs[0])))
            {
                for (int start = 0; start < count; start += 10_000)
                {
                    int n = Math.Min(10_000, count - start);
                    build.Add(Enumerable.Range(start, n).Select(i => new VectorEntry($"v{i}", $"text {i}", null, data[i])).ToArray());
                }
                double addSeconds = sw.Elapsed.TotalSeconds;
                build.Save();
                Console.WriteLine($"build (M = {connectivity}, efConstruction = {expansionAdd}): add {addSeconds:F1} s ({count / addSeconds:F0} vectors/s, one thread), " +
                    $"save {sw.Elapsed.TotalSeconds - addSeconds:F1} s");
            }
            foreach (var f in Directory.GetFiles(dir).Order())
                Console.WriteLine($"  {Path.GetFileName(f),-16} {new FileInfo(f).Length / 1e6,8:F1} MB");

            sw.Restart();
            using var index = VectorIndex.Open(dir, expectedModel: "synthetic");
            Console.WriteLine($"open read-only (memory-mapped): {sw.Elapsed.TotalMilliseconds:F0} ms");

            var qs = data[count..];
            sw.Restart();
            index.SearchExact(qs[0], k); // reads every vector back from the mapped file once
            Console.WriteLine($"exact search, first query (loads the {count}×{dims} matrix): {sw.Elapsed.TotalMilliseconds:F0} ms");
            var exact = new List<HashSet<string>>();
            var exactTimes = new List<double>();
            foreach (var q in qs)
            {
                var t = Stopwatch.StartNew();
                var hits = index.SearchExact(q, k);
                exactTimes.Add(t.Elapsed.TotalMilliseconds);
                exact.Add(hits.Select(h => h.Key).ToHashSet());
            }

            Console.WriteLine();
            Console.WriteLine("| search | ef | recall@10 | p50 ms | p99 ms | queries/s (one thread) |");
            Console.WriteLine("|---|---:|---:|---:|---:|---:|");
            Console.WriteLine($"| exact (brute force) | – | 1.0000 | {Measure.Percentile(exactTimes, 50):F2} | {Measure.Percentile(exactTimes, 99):F2} | {1000 / exactTimes.Average():F0} |");
            foreach (int ef in efs)
            {
                index.ExpansionSearch = ef;
                foreach (var q in qs.Take(20)) index.Search(q, k); // warm-up
                var times = new List<double>();
                double found = 0;
                for (int i = 0; i < qs.Length; i++)
                {
                    var t = Stopwatch.StartNew();
                    var hits = index.Search(qs[i], k);
                    times.Add(t.Elapsed.TotalMilliseconds);
                    found += hits.Count(h => exact[i].Contains(h.Key));
                }
                Console.WriteLine($"| HNSW | {ef} | {found / (qs.Length * k):F4} | {Measure.Percentile(times, 50):F3} | {Measure.Percentile(times, 99):F3} | {1000 / times.Average():F0} |");
            }
            Console.WriteLine("(latency includes reading the hits' keys and texts from DuckDB)");
            return 0;
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }


    private static int Arg(string[] args, string name, int fallback) => BenchArgs.Get(args, name, fallback);
}
