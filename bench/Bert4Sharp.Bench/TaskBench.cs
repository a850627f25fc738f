namespace Bert4Sharp.Bench;

using Bert4Sharp.Models;
using Bert4Sharp.Tasks;
using Bert4Sharp.Tasks.Clue;
using Bert4Sharp.Tokenization;
using Bert4Sharp.Training;
using TorchSharp;
using static TorchSharp.torch;

/// <summary>
/// Task-head throughput on the default CLUE encoder (recipes/configs/roformer-v2-4x256.json, random weights, the
/// roformer_v2_char_small vocabulary), fp32 on the CPU, against the large-matmul peak measured in the same run:
/// <list type="number">
/// <item>fine-tuning a <see cref="SequenceClassifier"/> (forward, cross-entropy, backward, Adam), batch 32 × 64 and
/// 32 × 128 tokens (no padding), in tokens/s and achieved GFLOP/s as a fraction of the peak. Training FLOPs ≈ 3 ×
/// forward = 6 × (dense encoder parameters, 4H² + 2HI per layer) × tokens + 12·L·B·T²·H for attention scores and
/// mixing (+ the classifier, 6·B·H·C), embeddings counted as lookups (no FLOPs);</item>
/// <item>prediction, texts/s on CLUENER2020 dev texts (tokenizing, padding per batch of 32, forward, decoding to host
/// arrays): the classifier (argmax) and the <see cref="EntityRecognizer"/> with a GlobalPointer head; their forward
/// FLOPs from the padded batch shapes, as a fraction of the peak.</item>
/// </list>
///   dotnet run -c Release --project bench/Bert4Sharp.Bench -- tasks [--quick] [--data DIR] [--vocab FILE]
/// </summary>
static class TaskBench
{
    public static int Run(string[] args)
    {
        bool quick = args.Contains("--quick");
        string? Arg(string name) { int i = Array.IndexOf(args, name); return i >= 0 && i + 1 < args.Length ? args[i + 1] : null; }
        string repo = RepositoryRoot();
        string shared = Environment.GetEnvironmentVariable("B4S_SHARED") ?? Path.Combine(repo, "..", "shared");
        string data = Arg("--data") ?? Path.Combine(shared, "data");
        string vocab = Arg("--vocab") ?? Path.Combine(shared, "models", "roformer_v2_char_small", "vocab.txt");
        string config = Path.Combine(repo, "recipes", "configs", "roformer-v2-4x256.json");
        foreach (var f in new[] { vocab, Path.Combine(data, "cluener2020", "dev.json") })
            if (!File.Exists(f)) throw new FileNotFoundException($"tasks bench: {f} not found (set B4S_SHARED or pass --data DIR / --vocab FILE)");

        int threads = torch.get_num_threads();
        double peak = Measure.MatmulPeak();
        Console.WriteLine($"CPU {ClueBaselines.CpuModel()}, {Environment.ProcessorCount} processors; torch threads {threads}; " +
            $"large-matmul peak (2048³ fp32, best of {Measure.PeakSamples}): {peak:F1} GFLOP/s");
        var options = new ClueRunOptions { DataDirectory = data, Output = Path.GetTempPath(), Config = config, Vocabulary = vocab };

        // 1. Fine-tuning steps of a 15-label classifier (TNEWS-sized head).
        torch.manual_seed(1);
        var (encoder, tokenizer, source) = ClueRun.Encoder(options);
        Console.WriteLine($"encoder: {source}");
        var c = encoder.Config;
        const int Labels = 15, Batch = 32;
        var classifier = new SequenceClassifier(encoder, Labels);
        classifier.train();
        var opt = new Training.Adam(classifier.named_parameters().Select(p => (p.name, p.parameter)), new OptimizerOptions { LearningRate = 1e-4, WeightDecay = 0.01 });
        foreach (int seq in new[] { 64, 128 })
        {
            var g = new Random(seq);
            using var ids = torch.tensor(Enumerable.Range(0, Batch * seq).Select(_ => (long)g.Next(106, c.VocabSize)).ToArray(), [Batch, seq]);
            using var mask = torch.ones(Batch, seq, dtype: ScalarType.Int64);
            using var labels = torch.tensor(Enumerable.Range(0, Batch).Select(_ => (long)g.Next(Labels)).ToArray(), [Batch]);
            void Step()
            {
                using var scope = torch.NewDisposeScope();
                var loss = nn.functional.cross_entropy(classifier.forward(ids, null, mask), labels);
                loss.backward();
                opt.Step();
                opt.ZeroGrad();
                _ = loss.ToDouble();
            }
            var times = Measure.Time(Step, 2, quick ? 3 : 8);
            double t = Measure.Median(times);
            double flops = 3 * (EncoderBench.Flops(c, Batch, seq) + 2.0 * Batch * c.HiddenSize * Labels);
            Console.WriteLine($"classifier fine-tuning, batch {Batch} x {seq}: {t * 1e3:F0} ms/step (median of {times.Count}), {Batch * seq / t:F0} tokens/s, " +
                $"{flops / t / 1e9:F1} GFLOP/s = {flops / t / 1e9 / peak:P0} of the matmul peak");
        }
        opt.Dispose();

        // 2. Prediction on CLUENER2020 dev texts.
        var texts = ClueReaders.Cluener(Path.Combine(data, "cluener2020", "dev.json")).Records.Select(r => r.Text).ToList();
        if (quick) texts = texts.Take(256).ToList();
        const int MaxLength = 128, PredictBatch = 32;
        var padded = Enumerable.Range(0, (texts.Count + PredictBatch - 1) / PredictBatch)
            .Select(b => texts.Skip(b * PredictBatch).Take(PredictBatch).ToList())
            .Select(batch => (batch.Count, T: batch.Max(t => tokenizer.Encode(t, maxLength: MaxLength).Ids.Count))).ToList();
        double encoderFlops = padded.Sum(p => EncoderBench.Flops(c, p.Count, p.T));
        int rounds = quick ? 2 : 3;

        classifier.eval();
        int[] Classify()
        {
            var result = new List<int>(texts.Count);
            for (int b = 0; b < texts.Count; b += PredictBatch)
            {
                using var scope = torch.NewDisposeScope();
                using var noGrad = torch.no_grad();
                var enc = texts.Skip(b).Take(PredictBatch).Select(t => tokenizer.Encode(t, maxLength: MaxLength)).ToList();
                var (pids, pmask) = SequencePadding.Pad(enc.Select(e => e.Ids).ToList(), tokenizer.PaddingId, encoder.Device);
                result.AddRange(classifier.forward(pids, null, pmask).argmax(-1).data<long>().Select(x => (int)x));
            }
            return [.. result];
        }
        double cls = Measure.Median(Measure.Time(() => Classify(), 1, rounds));
        double clsFlops = encoderFlops + padded.Sum(p => 2.0 * p.Count * c.HiddenSize * Labels);
        Console.WriteLine($"classifier prediction, {texts.Count} CLUENER dev texts (batch {PredictBatch}, padded per batch, mean padded length {padded.Average(p => p.T):F1}): " +
            $"{texts.Count / cls:F0} texts/s, {clsFlops / cls / 1e9:F1} GFLOP/s = {clsFlops / cls / 1e9 / peak:P0} of the matmul peak");

        torch.manual_seed(2);
        var (nerEncoder, _, _) = ClueRun.Encoder(options);
        var types = ClueReaders.NerTypes.Order(StringComparer.Ordinal).ToList();
        var ner = new EntityRecognizer(nerEncoder, types, new EntityRecognizerOptions { Head = EntityHead.GlobalPointer });
        double ent = Measure.Median(Measure.Time(() => ner.Predict(tokenizer, texts, MaxLength, PredictBatch), 1, rounds));
        int head = ner.Options.PointerHeadSize;
        // GlobalPointer: a dense H → types × 2 × head projection per token, then types × T² × head scores.
        double nerFlops = encoderFlops + padded.Sum(p => 2.0 * p.Count * p.T * c.HiddenSize * types.Count * 2 * head + 2.0 * p.Count * types.Count * p.T * p.T * head);
        Console.WriteLine($"entity recognizer (GlobalPointer, {types.Count} types, head {head}) prediction, same texts: {texts.Count / ent:F0} texts/s, " +
            $"{nerFlops / ent / 1e9:F1} GFLOP/s = {nerFlops / ent / 1e9 / peak:P0} of the matmul peak; {cls / ent:F2}x the classifier's texts/s");
        return 0;
    }

    static string RepositoryRoot()
    {
        for (var d = new DirectoryInfo(AppContext.BaseDirectory); d is not null; d = d.Parent)
            if (File.Exists(Path.Combine(d.FullName, "Bert4Sharp.slnx"))) return d.FullName;
        for (var d = new DirectoryInfo(Environment.CurrentDirectory); d is not null; d = d.Parent)
            if (File.Exists(Path.Combine(d.FullName, "Bert4Sharp.slnx"))) return d.FullName;
        throw new DirectoryNotFoundException("tasks bench: run it from inside the repository (recipes/configs is read from there)");
    }
}
