namespace Bert4Sharp.Bench;

using System.Diagnostics;
using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Bert4Sharp.Checkpoints;
using Bert4Sharp.Embeddings;
using Bert4Sharp.Tasks;
using Bert4Sharp.Tasks.Clue;
using TorchSharp;
using static TorchSharp.torch;

/// <summary>
/// The closed-form logistic regression of kexue.fm/archives/8578 against maximum likelihood (full-batch L-BFGS) on the
/// same features, AFQMC (binary, sentence pairs) and TNEWS (15 classes), dev as the held-out set (dev rows that also occur
/// in train dropped and counted). Two feature sets:
///   hashed — character 1–2-gram TF-IDF (sublinear tf, smoothed idf from train, L2-normalised) hashed into D buckets;
///   vectors — mean-pooled, unit-length sentence vectors of a pretrained encoder (default: runs/pretrain-clue/model).
/// A pair (u, v) is [u, v, |u − v|, u ⊙ v]. Fit time is wall time of the fit alone, one torch thread.
///   dotnet run -c Release --project bench/Bert4Sharp.Bench -- analytic-lr [--data DIR] [--model DIR] [--features hashed,vectors]
///       [--tasks afqmc,tnews] [--hash-dims 1024] [--pair-hash-dims 256] [--ridge 1e-4] [--l2 1e-4] [--iterations 200]
///       [--threads 1] [--cache DIR] [--output FILE]
/// </summary>
static class AnalyticLrBench
{
    /// <summary>One line of the table.</summary>
    public sealed record Row(string Task, string Features, int Dimensions, int Train, int Dev, string Method, double DevAccuracy, double TrainAccuracy,
        double FitSeconds, string Notes);

    public static int Run(string[] args)
    {
        string data = BenchArgs.Value(args, "--data") ?? ClueBaselines.DefaultDataDirectory();
        string model = BenchArgs.Value(args, "--model") ?? "runs/pretrain-clue/model";
        string[] featureSets = (BenchArgs.Value(args, "--features") ?? "hashed,vectors").Split(',');
        string[] tasks = (BenchArgs.Value(args, "--tasks") ?? "afqmc,tnews").Split(',');
        int hashDims = BenchArgs.Get(args, "--hash-dims", 1024);
        int pairHashDims = BenchArgs.Get(args, "--pair-hash-dims", 256);
        double ridge = BenchArgs.Get(args, "--ridge", 1e-4);
        double l2 = BenchArgs.Get(args, "--l2", 1e-4);
        int iterations = BenchArgs.Get(args, "--iterations", 200);
        int threads = BenchArgs.Get(args, "--threads", 1);
        string cache = BenchArgs.Value(args, "--cache") ?? Path.Combine("runs", "analytic-lr");
        string? output = BenchArgs.Value(args, "--output");
        if (featureSets.Contains("vectors") && !File.Exists(Path.Combine(model, "config.json")))
        {
            Console.Error.WriteLine($"analytic-lr: the sentence-vector features need an encoder directory, and {model} has no config.json; " +
                "make it with `b4s pretrain recipes/pretrain-roformer-v2-clue.json` (writes runs/pretrain-clue/model), pass --model DIR, or use --features hashed");
            return 2;
        }
        torch.set_num_threads(threads);
        Directory.CreateDirectory(cache);

        var rows = new List<Row>();
        SentenceEncoder? encoder = null;
        foreach (var task in tasks)
        {
            var set = Load(task, data);
            Console.WriteLine($"{task}: train {set.TrainLabels.Length}, dev {set.DevLabels.Length} ({set.Notes}), {set.Classes} classes");
            foreach (var kind in featureSets)
            {
                (Tensor Train, Tensor Dev) features;
                string notes;
                if (kind == "hashed")
                {
                    int d = set.Pairs ? pairHashDims : hashDims;
                    var tfidf = HashedTfIdf.Fit(set.TrainTexts.SelectMany(t => t), d);
                    features = (Build(set.TrainTexts, t => tfidf.Transform(t)), Build(set.DevTexts, t => tfidf.Transform(t)));
                    notes = $"char 1–2-gram TF-IDF hashed to {d}" + (set.Pairs ? " per side" : "");
                }
                else if (kind == "vectors")
                {
                    encoder ??= SentenceEncoder.Load(model, new SentenceEncoderOptions { Pooling = Pooling.Mean, Normalize = true, BatchSize = 64 }, whitening: false);
                    var enc = encoder;
                    var train = CachedVectors(enc, model, cache, $"{task}-train", set.TrainTexts);
                    var dev = CachedVectors(enc, model, cache, $"{task}-dev", set.DevTexts);
                    features = (Combine(train, set.Pairs), Combine(dev, set.Pairs));
                    notes = $"mean-pooled unit vectors of {Path.GetFileName(Path.GetFullPath(Path.Combine(model, "..")))}/model ({enc.Dimensions})";
                }
                else throw new ArgumentException($"--features: unknown set '{kind}' (hashed, vectors)");
                int dims = (int)features.Train.shape[1];
                Console.WriteLine($"  {kind}: {dims} features");

                var sw = Stopwatch.StartNew();
                var analytic = AnalyticLogisticRegression.Fit(features.Train, set.TrainLabels, new AnalyticLogisticRegressionOptions { Ridge = ridge }, set.Classes);
                double analyticSeconds = sw.Elapsed.TotalSeconds;
                rows.Add(new Row(task, kind, dims, set.TrainLabels.Length, set.DevLabels.Length, "closed form",
                    analytic.Accuracy(features.Dev, set.DevLabels), analytic.Accuracy(features.Train, set.TrainLabels), analyticSeconds, $"{notes}; ridge {ridge}"));
                Print(rows[^1]);

                sw.Restart();
                var (mle, report) = MaximumLikelihoodLogisticRegression.Fit(features.Train, set.TrainLabels,
                    new MaximumLikelihoodOptions { L2 = l2, MaxIterations = iterations }, set.Classes);
                double mleSeconds = sw.Elapsed.TotalSeconds;
                rows.Add(new Row(task, kind, dims, set.TrainLabels.Length, set.DevLabels.Length, "MLE (L-BFGS)",
                    mle.Accuracy(features.Dev, set.DevLabels), mle.Accuracy(features.Train, set.TrainLabels), mleSeconds,
                    $"{notes}; L2 {l2}; {report.Iterations} iterations, stopped: {report.Stopped}, loss {report.Loss:F4}, max|grad| {report.GradientMax:E1}"));
                Print(rows[^1]);
                features.Train.Dispose();
                features.Dev.Dispose();
            }
            double majority = set.DevLabels.GroupBy(l => l).Max(g => g.Count()) / (double)set.DevLabels.Length;
            Console.WriteLine($"  {task} dev majority class: {majority:P2}");
        }

        Console.WriteLine();
        Console.WriteLine("| task | features | dims | method | dev acc | train acc | fit s |");
        Console.WriteLine("|---|---|---:|---|---:|---:|---:|");
        foreach (var r in rows)
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"| {r.Task} | {r.Features} | {r.Dimensions} | {r.Method} | {r.DevAccuracy:P2} | {r.TrainAccuracy:P2} | {r.FitSeconds:F2} |"));
        if (output is not null)
            AtomicFile.WriteAllText(output, JsonSerializer.Serialize(rows, new JsonSerializerOptions { WriteIndented = true }));
        return 0;
    }

    static void Print(Row r) => Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
        $"    {r.Method,-14} dev {r.DevAccuracy:P2}  train {r.TrainAccuracy:P2}  fit {r.FitSeconds:F2}s  ({r.Notes})"));

    /// <summary>A task's texts (one or two per example) and class indices, dev deduplicated against train.</summary>
    sealed record TaskSet(bool Pairs, string[][] TrainTexts, int[] TrainLabels, string[][] DevTexts, int[] DevLabels, int Classes, string Notes);

    static TaskSet Load(string task, string data)
    {
        string F(string split) => Path.Combine(data, ClueTasks.Get(task).Split(split)?.File ?? throw new InvalidOperationException($"{task} has no staged {split} split"));
        switch (task)
        {
            case "afqmc":
            {
                var train = ClueReaders.AfqmcCsv(F("train")).Records;
                var dev = ClueReaders.AfqmcJson(F("dev")).Records;
                var seen = train.Select(r => r.Sentence1 + "\u0001" + r.Sentence2).ToHashSet();
                var kept = dev.Where(r => !seen.Contains(r.Sentence1 + "\u0001" + r.Sentence2) && !seen.Contains(r.Sentence2 + "\u0001" + r.Sentence1)).ToList();
                return new(true, [.. train.Select(r => new[] { r.Sentence1, r.Sentence2 })], [.. train.Select(r => int.Parse(r.Label!, CultureInfo.InvariantCulture))],
                    [.. kept.Select(r => new[] { r.Sentence1, r.Sentence2 })], [.. kept.Select(r => int.Parse(r.Label!, CultureInfo.InvariantCulture))], 2,
                    $"{dev.Count - kept.Count} dev pairs also in train (either order) dropped");
            }
            case "tnews":
            {
                var labels = ClueReaders.TnewsLabels(Path.Combine(data, "tnews", "labels.json"));
                var index = labels.Order(StringComparer.Ordinal).Select((l, i) => (l, i)).ToDictionary(p => p.l, p => p.i);
                var train = ClueReaders.Tnews(F("train"), labels).Records;
                var dev = ClueReaders.Tnews(F("dev"), labels).Records;
                var seen = train.Select(r => r.Sentence).ToHashSet();
                var kept = dev.Where(r => !seen.Contains(r.Sentence)).ToList();
                return new(false, [.. train.Select(r => new[] { r.Sentence })], [.. train.Select(r => index[r.Label!])],
                    [.. kept.Select(r => new[] { r.Sentence })], [.. kept.Select(r => index[r.Label!])], labels.Count,
                    $"{dev.Count - kept.Count} dev titles also in train dropped; title only");
            }
            default: throw new ArgumentException($"--tasks: '{task}' is not supported here (afqmc, tnews)");
        }
    }

    // (rows, features) float32 from per-text vectors; pairs become [u, v, |u − v|, u ⊙ v].
    static Tensor Build(string[][] texts, Func<string, float[]> featurize)
    {
        var first = texts.Select(t => t.Select(featurize).ToArray()).ToArray();
        int d = first[0][0].Length;
        var sides = Enumerable.Range(0, first[0].Length).Select(s => torch.tensor(first.SelectMany(r => r[s]).ToArray(), [first.Length, d])).ToArray();
        var result = Combine(sides, sides.Length == 2);
        foreach (var s in sides) s.Dispose();
        return result;
    }

    static Tensor Combine(Tensor[] sides, bool pairs)
    {
        if (!pairs) return sides[0].alias();
        using var scope = torch.NewDisposeScope();
        var (u, v) = (sides[0], sides[1]);
        return torch.cat([u, v, (u - v).abs(), u * v], 1).MoveToOuterDisposeScope();   // (N, 4d)
    }

    // Sentence vectors per side, cached under the cache folder by a hash of the model path and the texts.
    static Tensor[] CachedVectors(SentenceEncoder encoder, string model, string cache, string name, string[][] texts)
    {
        var sides = new Tensor[texts[0].Length];
        for (int s = 0; s < sides.Length; s++)
        {
            var list = texts.Select(t => t[s]).ToArray();
            string key = Convert.ToHexString(SHA256.HashData(Encoding.UTF8.GetBytes(Path.GetFullPath(model) + "\n" + string.Join("\n", list))))[..16];
            string path = Path.Combine(cache, $"{name}-{s}-{key}.safetensors");
            if (File.Exists(path))
            {
                using var ck = Checkpoint.Open(path);
                sides[s] = ck.ReadTensor("vectors");
                continue;
            }
            var sw = Stopwatch.StartNew();
            var result = encoder.Embed(list);
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"  embedded {name} side {s}: {list.Length} texts in {sw.Elapsed.TotalSeconds:F0}s ({result.Truncated} truncated)"));
            sides[s] = torch.tensor(result.Vectors.SelectMany(v => v).ToArray(), [list.Length, result.Vectors[0].Length]);
            SafetensorsWriter.Write(path, [TensorSource.From("vectors", sides[s])]);
        }
        return sides;
    }
}

/// <summary>Character 1–2-gram TF-IDF hashed (FNV-1a) into a fixed number of buckets: sublinear tf, smoothed idf, unit length.</summary>
sealed class HashedTfIdf
{
    readonly double[] idf;

    HashedTfIdf(double[] idf) => this.idf = idf;

    public static HashedTfIdf Fit(IEnumerable<string> texts, int buckets)
    {
        var df = new double[buckets];
        long docs = 0;
        foreach (var t in texts)
        {
            docs++;
            foreach (int b in Bucketed(t, buckets).Distinct()) df[b]++;
        }
        return new HashedTfIdf([.. df.Select(d => Math.Log((1.0 + docs) / (1.0 + d)) + 1.0)]);
    }

    public float[] Transform(string text)
    {
        var tf = new double[idf.Length];
        foreach (int b in Bucketed(text, idf.Length)) tf[b]++;
        double norm = 0;
        for (int i = 0; i < tf.Length; i++)
        {
            if (tf[i] > 0) tf[i] = (1 + Math.Log(tf[i])) * idf[i];
            norm += tf[i] * tf[i];
        }
        norm = norm > 0 ? Math.Sqrt(norm) : 1;
        return [.. tf.Select(v => (float)(v / norm))];
    }

    static IEnumerable<int> Bucketed(string text, int buckets)
    {
        var chars = text.EnumerateRunes().Select(r => r.ToString()).ToArray();
        for (int i = 0; i < chars.Length; i++)
        {
            yield return Bucket("1" + chars[i], buckets);
            if (i + 1 < chars.Length) yield return Bucket("2" + chars[i] + chars[i + 1], buckets);
        }
    }

    static int Bucket(string gram, int buckets)
    {
        uint h = 2166136261;
        foreach (char c in gram) { h ^= c; h *= 16777619; }
        return (int)(h % (uint)buckets);
    }
}
