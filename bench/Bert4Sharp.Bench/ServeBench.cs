namespace Bert4Sharp.Bench;

using System.Diagnostics;
using System.Globalization;
using System.Net.Http.Json;
using System.Text.Json;
using Bert4Sharp.Serving;

/// <summary>
/// Load test of <c>b4s serve</c> on loopback: N concurrent clients each send one-sentence embedding requests
/// (all-MiniLM-L6-v2 on ONNX Runtime, sentences from the repository's XML docs) for a fixed time, against the same server
/// built twice — micro-batching off (<c>--max-batch 1</c>: requests run one after another) and on — then every answer is
/// compared with the sentence embedded alone.
///   dotnet run -c Release --project bench/Bert4Sharp.Bench -- serve [--clients N] [--seconds S] [--max-batch B] [--delay-ms D]
/// </summary>
static class ServeBench
{
    public static int Run(string[] args)
    {
        int clients = BenchArgs.Get(args, "--clients", 16), maxBatch = BenchArgs.Get(args, "--max-batch", 64);
        double seconds = BenchArgs.Get(args, "--seconds", 20.0), delay = BenchArgs.Get(args, "--delay-ms", 0.0);
        string dir = EmbeddingBench.ExtractModel();
        try
        {
            var texts = EmbeddingBench.Corpus(EmbeddingBench.ReferenceDocsDirectory(), 512);
            Console.WriteLine($"{clients} clients, {seconds:F0} s per setting, one sentence per request ({texts.Length} distinct sentences), all-MiniLM-L6-v2 on ONNX Runtime, {Environment.ProcessorCount} CPUs");
            float[][]? alone = null;
            foreach (var (name, batch) in new[] { ("no micro-batching (max batch 1)", 1), ($"micro-batching (max batch {maxBatch}, wait {delay} ms)", maxBatch) })
            {
                var options = new ServeOptions { Models = [new ModelSpec("minilm", dir, "onnx")], MaxBatch = batch, MaxBatchDelay = TimeSpan.FromMilliseconds(delay), MaxConcurrentRequests = clients + 4 };
                var server = ServerApp.Create(options, ["http://127.0.0.1:0"], _ => { });
                server.StartAsync().GetAwaiter().GetResult();
                var encoder = ((EmbeddingModel)server.Models["minilm"]).Encoder;
                alone ??= [.. texts.Select(t => encoder.Embed([t]).Vectors[0])];
                var (latencies, answers, elapsed) = Load(server.Addresses[0], texts, clients, seconds);
                var model = (EmbeddingModel)server.Models["minilm"];
                double worst = answers.Max(a => MaxAbs(a.Vector, alone[a.Index]));
                int wrong = answers.Count(a => WorstRatio(a.Vector, alone[a.Index]) > 1);
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"{name}: {answers.Count / elapsed:F1} requests/s, latency p50 {Measure.Percentile(latencies, 50):F1} ms, p99 {Measure.Percentile(latencies, 99):F1} ms; " +
                    $"{model.Batcher.Batches} forward passes for {model.Batcher.Inputs} texts (largest {model.Batcher.Largest}); " +
                    $"answers outside 2e-5 + 1e-4·|x| of the sentence embedded alone: {wrong} of {answers.Count} (largest |Δ| {worst:G3})"));
                server.DisposeAsync().AsTask().GetAwaiter().GetResult();
            }
            return 0;
        }
        finally { Directory.Delete(dir, recursive: true); }
    }

    static (List<double> Latencies, List<(int Index, float[] Vector)> Answers, double Elapsed) Load(string url, string[] texts, int clients, double seconds)
    {
        using var http = new HttpClient { BaseAddress = new Uri(url), Timeout = TimeSpan.FromMinutes(1) };
        var latencies = new List<double>();
        var answers = new List<(int, float[])>();
        var clock = Stopwatch.StartNew();
        var stop = TimeSpan.FromSeconds(seconds);
        var tasks = Enumerable.Range(0, clients).Select(c => Task.Run(async () =>
        {
            var rng = new Random(c);
            while (clock.Elapsed < stop)
            {
                int i = rng.Next(texts.Length);
                var sw = Stopwatch.StartNew();
                using var response = await http.PostAsJsonAsync("/v1/embeddings", new { input = texts[i] });
                response.EnsureSuccessStatusCode();
                var doc = JsonDocument.Parse(await response.Content.ReadAsStringAsync());
                var v = doc.RootElement.GetProperty("data")[0].GetProperty("embedding").EnumerateArray().Select(x => x.GetSingle()).ToArray();
                double ms = sw.Elapsed.TotalMilliseconds;
                lock (answers) { answers.Add((i, v)); latencies.Add(ms); }
            }
        })).ToArray();
        Task.WaitAll(tasks);
        return (latencies, answers, clock.Elapsed.TotalSeconds);
    }

    /// <summary>The worst |a − b| / (atol + rtol·|b|) with the serving test's bounds (atol 2e-5, rtol 1e-4): above 1 is a wrong answer.</summary>
    static double WorstRatio(float[] a, float[] b) => a.Zip(b).Max(p => Math.Abs(p.First - p.Second) / (2e-5 + 1e-4 * Math.Abs(p.Second)));

    static double MaxAbs(float[] a, float[] b) => a.Zip(b).Max(p => Math.Abs((double)p.First - p.Second));

}
