namespace Bert4Sharp.Bench;

using System.Diagnostics;
using Bert4Sharp.Models;
using Bert4Sharp.Onnx.Export;
using Microsoft.ML.OnnxRuntime;
using TorchSharp;
using static TorchSharp.torch;

/// <summary>
/// The deploy path at BERT-base shape (12 × 768, vocabulary 21128), fp32 and int8, 2 threads, batch 8 × 128 and
/// 1 × 32: ONNX Runtime on Bert4Sharp's own export (fused graph; int8 with 8- and 7-bit weights) against ONNX Runtime on
/// the PyTorch export of the same weights (Debian python3-torch, bench/scripts/export_bert_onnx.py: the peer), and the
/// TorchSharp engine. Every contender runs once per round, in turn, after two warm-up rounds; medians and ratios to the
/// peer. Also each graph's largest difference from the TorchSharp model's hidden states.
/// </summary>
public static class DeployBench
{
    /// <summary>
    /// Pause before each contender runs. ONNX Runtime's (and OpenMP's) idle workers spin for a while after a run; with six
    /// engines' thread pools on two cores, the next engine otherwise ran beside them: at 1 × 32 that cost the engine after
    /// the peer 25–45 % (Bert4Sharp fp32 measured 0.70× the peer back to back, 1.00× with this pause, 2026-12-01).
    /// </summary>
    const int Quiet = 300;

    /// <summary>B4S_ORT_PROFILE: a path prefix for ONNX Runtime's per-node profiles (one file per graph), else null.</summary>
    static readonly string? Profile = Environment.GetEnvironmentVariable("B4S_ORT_PROFILE") is { Length: > 0 } p ? p : null;

    public static int Run(string[] args)
    {
        // --cuda (bench/gpu.sh): ONNX Runtime's sessions on the CUDA execution provider, batch 32 × 128, no TorchSharp-cpu side.
        bool cuda = args.Contains("--cuda");
        args = [.. args.Where(a => a != "--cuda")];
        if (args.Length > 0 && args[0] == "decode") return Decode(args[1..], cuda);
        if (args.Length > 0 && args[0] == "seq2seq") return Seq2Seq(args[1..]);
        if (args.Length > 0 && args[0] == "classifier") return Classifier(args[1..]);
        int threads = 2, rounds = args.Length > 0 && int.TryParse(args[0], out var n) ? n : 7;
        torch.set_num_threads(threads);
        string work = Path.Combine(Path.GetTempPath(), "b4s-bench-deploy");
        Directory.CreateDirectory(work);
        var (config, model) = EncoderBench.BertBase();
        WeightLoader.SavePretrained(model, work);
        var graphs = new List<(string Name, string Path)>();
        string peer = Path.Combine(work, "pytorch.onnx");
        string? peerProblem = EncoderBench.Export(work, peer);
        if (peerProblem is null) graphs.Add(("ORT, PyTorch export (peer)", peer));
        else Console.WriteLine($"peer skipped: {peerProblem}");
        var sw = Stopwatch.StartNew();
        OnnxExport.Save(model, Path.Combine(work, "b4s.onnx"));
        Console.WriteLine($"Bert4Sharp export: {sw.Elapsed.TotalSeconds:F1} s");
        graphs.Add(("ORT, Bert4Sharp export fp32", Path.Combine(work, "b4s.onnx")));
        OnnxExport.Save(model, Path.Combine(work, "b4s-standard.onnx"), new OnnxExportOptions { Fused = false });
        graphs.Add(("ORT, Bert4Sharp export fp32, standard ops", Path.Combine(work, "b4s-standard.onnx")));
        foreach (int bits in new[] { 8, 7 })
        {
            // As `b4s export onnx --int8` writes it: the q/k/v projection a MatMul outside the fused attention, so it is
            // quantised too (quantising the fp32 graph above would leave it inside Attention in fp32).
            string q = Path.Combine(work, $"b4s-int8-{bits}.onnx");
            OnnxExport.Save(model, q, new OnnxExportOptions { Int8 = true, Int8WeightBits = bits });
            graphs.Add(($"ORT, Bert4Sharp export int8 ({bits}-bit weights)", q));
        }
        double peak = Measure.MatmulPeak();
        Console.WriteLine($"threads {threads}; large-matmul peak (2048³ fp32): {peak:F1} GFLOP/s; {rounds} rounds, medians");
        foreach (var (batch, seq) in cuda ? new[] { (32, 128), (1, 32) } : new[] { (8, 128), (1, 32) })
        {
            var rng = new Random(batch * 1000 + seq);
            long[] ids = Enumerable.Range(0, batch * seq).Select(_ => (long)rng.Next(106, 21128)).ToArray();
            long[] zeros = new long[ids.Length], ones = Enumerable.Repeat(1L, ids.Length).ToArray();
            using var tIds = torch.tensor(ids, [batch, seq]);
            using var tMask = torch.tensor(ones, [batch, seq]);
            float[] reference = [];
            var contenders = new List<(string Name, Func<(double Seconds, float[] Output)> Run, IDisposable? Owner)>();
            if (!cuda)
                contenders.Add(("TorchSharp engine", () =>
                {
                    using var scope = torch.NewDisposeScope();
                    using var g = torch.no_grad();
                    var t = Stopwatch.StartNew();
                    var o = model.forward(tIds, null, tMask);
                    double s = t.Elapsed.TotalSeconds;
                    return (s, o.LastHiddenState.data<float>().ToArray());
                }, null));
            foreach (var (name, path) in graphs)
            {
                var so = new SessionOptions { GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_ALL, IntraOpNumThreads = threads, InterOpNumThreads = 1, ExecutionMode = ExecutionMode.ORT_SEQUENTIAL };
                if (cuda) so.AppendExecutionProvider_CUDA(0);                                  // fails loudly without the GPU package: a GPU bench must not fall back
                if (Profile is not null) { so.ProfileOutputPathPrefix = Profile + Path.GetFileNameWithoutExtension(path); so.EnableProfiling = true; }
                if (Environment.GetEnvironmentVariable("B4S_DUMP_OPTIMIZED") is { Length: > 0 } dump)   // the graph ONNX Runtime actually runs, for inspection
                    so.OptimizedModelFilePath = Path.Combine(dump, Path.GetFileNameWithoutExtension(path) + ".optimized.onnx");
                var session = new InferenceSession(path, so);
                var values = new Dictionary<string, OrtValue>
                {
                    ["input_ids"] = OrtValue.CreateTensorValueFromMemory(ids, [batch, seq]),
                    ["attention_mask"] = OrtValue.CreateTensorValueFromMemory(ones, [batch, seq]),
                    ["token_type_ids"] = OrtValue.CreateTensorValueFromMemory(zeros, [batch, seq]),
                };
                var inputs = values.Where(v => session.InputMetadata.ContainsKey(v.Key)).ToList();
                string output = session.OutputMetadata.Keys.First();
                contenders.Add((name, () =>
                {
                    using var run = new RunOptions();
                    var t = Stopwatch.StartNew();
                    using var r = session.Run(run, inputs.Select(i => i.Key).ToList(), inputs.Select(i => i.Value).ToList(), [output]);
                    double s = t.Elapsed.TotalSeconds;
                    return (s, r[0].GetTensorDataAsSpan<float>().ToArray());
                }, session));
            }
            var times = contenders.Select(_ => new List<double>()).ToArray();
            var outputs = new float[contenders.Count][];
            for (int round = 0; round < rounds + 2; round++)
                for (int c = 0; c < contenders.Count; c++)
                {
                    Thread.Sleep(Quiet);                                     // the previous engine's idle threads stop spinning first
                    var (s, o) = contenders[c].Run();
                    if (round >= 2) times[c].Add(s);
                    outputs[c] = o;
                }
            reference = outputs[0];
            double flops = EncoderBench.Flops(config, batch, seq);
            int peerIndex = contenders.FindIndex(c => c.Name.Contains("peer"));
            double? peerTime = peerIndex >= 0 ? Measure.Median(times[peerIndex]) : null;
            Console.WriteLine($"\nbatch {batch} × {seq}:");
            Console.WriteLine($"  {"engine",-44} {"ms",8} {"seq/s",8} {"GFLOP/s",8} {"vs peer",8} {"max |Δ| to torch",17}");
            for (int c = 0; c < contenders.Count; c++)
            {
                double m = Measure.Median(times[c]);
                double diff = outputs[c].Zip(reference).Max(t => Math.Abs(t.First - t.Second));
                string ratio = peerTime is double p ? $"{p / m:F2}x" : "—";
                Console.WriteLine($"  {contenders[c].Name,-44} {m * 1e3,8:F1} {batch / m,8:F2} {flops / m / 1e9,8:F1} {ratio,8} {diff,17:E1}");
            }
            foreach (var c in contenders)
            {
                if (c.Owner is InferenceSession profiled && Profile is not null) profiled.EndProfiling();
                c.Owner?.Dispose();
            }
        }
        return 0;
    }

    /// <summary>
    /// GPT-2-small shape (12 × 768, vocabulary 21,128), batch 1, greedy 128 new tokens after a 16-token prompt, 2 threads:
    /// the TorchSharp engine against ONNX Runtime on Bert4Sharp's export (fp32 and int8) through its key/value cache, in
    /// turn per round; per-token time against the memory-bandwidth floor (every fp32 weight read once per token) measured
    /// in the same run.
    /// </summary>
    static int Decode(string[] args, bool cuda = false)
    {
        int rounds = args.Length > 0 && int.TryParse(args[0], out var r) ? r : 3, tokens = 128;
        torch.set_num_threads(2);
        var config = new TransformerConfig { VocabSize = 21128, HiddenSize = 768, NumHiddenLayers = 12, NumAttentionHeads = 12, MaxPositionEmbeddings = 1024, LayerNormEps = 1e-5, HiddenAct = "gelu_new" };
        torch.manual_seed(1);
        var model = TransformerModels.Create(config, "gpt2", Application.LanguageModel, new BuildOptions { Device = torch.CPU });
        string work = Path.Combine(Path.GetTempPath(), "b4s-bench-decode");
        Directory.CreateDirectory(work);
        OnnxExport.Save(model, Path.Combine(work, "fp32.onnx"));
        OnnxExport.Save(model, Path.Combine(work, "int8.onnx"), new OnnxExportOptions { Int8 = true });
        var options = new Bert4Sharp.Onnx.OnnxEncoderOptions { Threads = 2, Cuda = cuda, ProfilePrefix = Profile };
        using var fp32 = new Bert4Sharp.Onnx.OnnxCausalLanguageModel(Path.Combine(work, "fp32.onnx"), options);
        using var int8 = new Bert4Sharp.Onnx.OnnxCausalLanguageModel(Path.Combine(work, "int8.onnx"), options);
        if (fp32.Warning is { } w) throw new InvalidOperationException(w);
        var sides = new (string Name, Generation.ICausalLanguageModel Lm)[]
        {
            ("TorchSharp engine", new Generation.CausalLanguageModel(model)), ("ORT, Bert4Sharp export fp32", fp32), ("ORT, Bert4Sharp export int8", int8),
        };
        int[] prompt = Enumerable.Range(0, 16).Select(i => 200 + i * 37).ToArray();
        var decoding = new Generation.DecodingOptions { MaxNewTokens = tokens };
        double tokenBytes = 4.0 * (12 * (4.0 * 768 * 768 + 2.0 * 768 * 3072) + 21128.0 * 768);
        double bandwidth = GenerationBench.ReadBandwidth(), floor = tokenBytes / bandwidth;
        Console.WriteLine($"read bandwidth {bandwidth / 1e9:F1} GB/s; one token reads {tokenBytes / 1e6:F0} MB of fp32 weights -> floor {floor * 1e3:F1} ms/token; {rounds} rounds, medians");
        var times = sides.Select(_ => new List<double>()).ToArray();
        var outputs = new List<int>[sides.Length];
        for (int round = 0; round <= rounds; round++)
            for (int i = 0; i < sides.Length; i++)
            {
                Thread.Sleep(Quiet);
                var sw = Stopwatch.StartNew();
                outputs[i] = Generation.AutoRegressiveDecoder.Greedy(sides[i].Lm, prompt, round == 0 ? decoding with { MaxNewTokens = 4 } : decoding);
                if (round > 0) times[i].Add(sw.Elapsed.TotalSeconds / tokens);
            }
        Console.WriteLine($"  {"engine",-30} {"ms/token",9} {"tok/s",7} {"x floor",8}  same tokens as torch");
        for (int i = 0; i < sides.Length; i++)
        {
            double m = Measure.Median(times[i]);
            int same = outputs[i].Zip(outputs[0]).TakeWhile(p => p.First == p.Second).Count() - prompt.Length;
            Console.WriteLine($"  {sides[i].Name,-30} {m * 1e3,9:F1} {1 / m,7:F1} {m / floor,8:F2}  {same} of {tokens}");
        }
        return 0;
    }

    /// <summary>
    /// Encoder–decoder decoding at T5-base shape (12 + 12 layers × 768, relu, vocabulary 32128), random weights, one source of
    /// 256 tokens, 32 new tokens, 2 threads: greedy and 4-beam search on the TorchSharp engine and on ONNX Runtime (fp32,
    /// int8), each in turn per round after a warm-up; the encoding (ONNX: with the cross-attention keys and values) and
    /// the time per new token after it.
    /// </summary>
    static int Seq2Seq(string[] args)
    {
        int rounds = args.Length > 0 && int.TryParse(args[0], out var r) ? r : 3, tokens = 32, source = 256;
        torch.set_num_threads(2);
        string work = Path.Combine(Path.GetTempPath(), "b4s-bench-seq2seq");
        Directory.CreateDirectory(work);
        var config = TransformerConfig.FromJson("""
            {"model_type": "t5", "d_model": 768, "d_kv": 64, "num_heads": 12, "d_ff": 3072, "num_layers": 12, "num_decoder_layers": 12,
             "vocab_size": 32128, "feed_forward_proj": "relu", "relative_attention_num_buckets": 32, "relative_attention_max_distance": 128,
             "layer_norm_epsilon": 1e-6, "tie_word_embeddings": true, "decoder_start_token_id": 0, "eos_token_id": 1}
            """u8, "T5-base shape");
        torch.manual_seed(1);
        var model = TransformerModels.Create(config, "t5", Application.Seq2Seq, new BuildOptions { Device = torch.CPU });
        foreach (var (name, int8) in new[] { ("fp32", false), ("int8", true) })
        {
            Directory.CreateDirectory(Path.Combine(work, name));
            OnnxExport.Save(model, Path.Combine(work, name, "model.onnx"), new OnnxExportOptions { Int8 = int8 });
        }
        var options = new Bert4Sharp.Onnx.OnnxEncoderOptions { Threads = 2, ProfilePrefix = Profile };
        using var fp32 = new Bert4Sharp.Onnx.OnnxSeq2SeqModel(Path.Combine(work, "fp32"), options);
        using var q8 = new Bert4Sharp.Onnx.OnnxSeq2SeqModel(Path.Combine(work, "int8"), options);
        int[] input = Enumerable.Range(0, source).Select(i => 100 + i * 97 % 30000).ToArray();
        var sides = new (string Name, Func<Generation.ICausalLanguageModel> Prepare)[]
        {
            ("TorchSharp engine", () => new Generation.Seq2SeqLanguageModel(model, input)),
            ("ORT, Bert4Sharp export fp32", () => fp32.Prepare(input)),
            ("ORT, Bert4Sharp export int8", () => q8.Prepare(input)),
        };
        var decoding = new Generation.DecodingOptions { MaxNewTokens = tokens };
        Console.WriteLine($"T5-base shape, source {source} tokens, {tokens} new tokens, {rounds} rounds, medians: encoding (ms), then ms per new token");
        foreach (int beams in new[] { 1, 4 })
        {
            var (encode, step) = (sides.Select(_ => new List<double>()).ToArray(), sides.Select(_ => new List<double>()).ToArray());
            var outputs = new List<int>[sides.Length];
            for (int round = 0; round <= rounds; round++)
                for (int i = 0; i < sides.Length; i++)
                {
                    Thread.Sleep(Quiet);
                    using var scope = torch.NewDisposeScope();
                    var sw = Stopwatch.StartNew();
                    var lm = sides[i].Prepare();
                    double encoded = sw.Elapsed.TotalSeconds;
                    var o = round == 0 ? decoding with { MaxNewTokens = 2 } : decoding;
                    outputs[i] = beams == 1 ? Generation.AutoRegressiveDecoder.Greedy(lm, [0], o) : Generation.AutoRegressiveDecoder.BeamSearch(lm, [0], beams, o);
                    double all = sw.Elapsed.TotalSeconds;
                    (lm as IDisposable)?.Dispose();
                    if (round == 0) continue;
                    encode[i].Add(encoded);
                    step[i].Add((all - encoded) / tokens);
                }
            Console.WriteLine($"  {(beams == 1 ? "greedy" : $"beam {beams}"),-8} {"engine",-30} {"encode ms",10} {"ms/token",9} {"vs torch",9}  same tokens as torch");
            double torchStep = Measure.Median(step[0]);
            for (int i = 0; i < sides.Length; i++)
            {
                double m = Measure.Median(step[i]);
                int same = outputs[i].Zip(outputs[0]).TakeWhile(p => p.First == p.Second).Count() - 1;
                Console.WriteLine($"  {"",-8} {sides[i].Name,-30} {Measure.Median(encode[i]) * 1e3,10:F0} {m * 1e3,9:F1} {torchStep / m,8:F2}x  {same} of {outputs[0].Count - 1}");
            }
        }
        return 0;
    }

    /// <summary>
    /// A fine-tuned classifier (a <c>b4s clue train</c> model directory) on its task's whole dev set: the TorchSharp
    /// engine, then ONNX Runtime on the classifier exported in fp32 and int8 — dev accuracy, agreement with the torch
    /// predictions, texts/s (2 threads, each engine once after a warm-up on 64 texts).
    /// </summary>
    static int Classifier(string[] args)
    {
        string Arg(string name, string fallback) => Array.IndexOf(args, name) is int i and >= 0 && i + 1 < args.Length ? args[i + 1] : fallback;
        string dir = Arg("--model", "runs/clue/tnews/model"), data = Arg("--data", "../shared/data");
        torch.set_num_threads(2);
        using var classifier = Bert4Sharp.Training.TextClassifier.Load(dir);
        var run = Bert4Sharp.Training.ClassificationRun.All.First(r => r.Task == classifier.Options.Task);
        var dev = run.Splits(data, _ => { }).Dev;
        string work = Path.Combine(Path.GetTempPath(), "b4s-bench-classifier");
        Directory.CreateDirectory(work);
        OnnxExport.Save(classifier.Model, Path.Combine(work, "fp32.onnx"));
        OnnxExport.Save(classifier.Model, Path.Combine(work, "int8.onnx"), new OnnxExportOptions { Int8 = true });
        var options = new Bert4Sharp.Onnx.OnnxEncoderOptions { Threads = 2 };
        using var fp32 = new Bert4Sharp.Onnx.OnnxRuntimeEncoder(Path.Combine(work, "fp32.onnx"), options);
        using var int8 = new Bert4Sharp.Onnx.OnnxRuntimeEncoder(Path.Combine(work, "int8.onnx"), options);
        Func<Tensor, Tensor, Tensor, Tensor> Graph(Bert4Sharp.Onnx.OnnxRuntimeEncoder e) => (ids, segments, mask) => e.Run(["logits"], ids, segments, mask)[0];
        var engines = new (string Name, Func<Tensor, Tensor, Tensor, Tensor>? Logits)[] { ("TorchSharp engine", null), ("ORT, export fp32", Graph(fp32)), ("ORT, export int8", Graph(int8)) };
        Console.WriteLine($"{classifier.Options.Task}: {dev.Count:N0} dev examples, {classifier.Labels.Count} labels, model {dir}");
        Console.WriteLine($"  {"engine",-20} {"accuracy",9} {"same as torch",14} {"texts/s",8}");
        List<Bert4Sharp.Training.ClassPrediction>? reference = null;
        foreach (var (name, logits) in engines)
        {
            classifier.Predict(dev.Take(64).ToList(), logits);
            var sw = Stopwatch.StartNew();
            var predicted = classifier.Predict(dev, logits);
            double seconds = sw.Elapsed.TotalSeconds;
            reference ??= predicted.ToList();
            double accuracy = dev.Zip(predicted).Count(p => p.First.Label == p.Second.Label) / (double)dev.Count;
            double same = predicted.Zip(reference).Count(p => p.First.Index == p.Second.Index) / (double)dev.Count;
            Console.WriteLine($"  {name,-20} {accuracy,9:P2} {same,14:P2} {dev.Count / seconds,8:F0}");
        }
        return 0;
    }
}
