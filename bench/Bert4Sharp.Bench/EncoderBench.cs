namespace Bert4Sharp.Bench;

using System.Diagnostics;
using Bert4Sharp.Models;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;
using TorchSharp;
using static TorchSharp.torch;

/// <summary>
/// BERT-base (12 layers, hidden 768, vocab 21128), fp32, 2 threads: Bert4Sharp against ONNX Runtime (all
/// graph optimisations) running the same weights, exported at bench time by Debian's python3-torch
/// (bench/scripts/export_bert_onnx.py). Also the achieved FLOP/s as a fraction of a large-matmul peak
/// measured in the same run. Target: ≥ 1.0× ONNX Runtime.
/// </summary>
public static class EncoderBench
{
    public static int Run(string[] args)
    {
        int threads = 2, rounds = 7;
        torch.set_num_threads(threads);
        string work = Path.Combine(Path.GetTempPath(), "b4s-bench-encoder");
        Directory.CreateDirectory(work);
        var (config, model) = BertBase();
        string onnx = Path.Combine(work, "bert-base.onnx");
        // Export these very weights every run, so both sides always compute the same model.
        WeightLoader.SavePretrained(model, work);
        string? ortProblem = Export(work, onnx);

        double peak = Measure.MatmulPeak();
        Console.WriteLine($"threads {threads}; large-matmul peak (2048³ fp32, best of {Measure.PeakSamples}): {peak:F1} GFLOP/s");
        foreach (var (batch, seq) in new[] { (8, 128), (1, 32) })
        {
            var rng = new Random(batch * 1000 + seq);
            long[] ids = Enumerable.Range(0, batch * seq).Select(_ => (long)rng.Next(106, 21128)).ToArray();
            long[] zeros = new long[ids.Length], ones = Enumerable.Repeat(1L, ids.Length).ToArray();
            using var tIds = torch.tensor(ids, [batch, seq]);
            using var tSeg = torch.tensor(zeros, [batch, seq]);
            using var tMask = torch.tensor(ones, [batch, seq]);
            float[] ours = [];
            double Ours()
            {
                using var scope = torch.NewDisposeScope();
                using var g = torch.no_grad();
                var sw = Stopwatch.StartNew();
                var o = model.forward(tIds, tSeg, tMask);
                double s = sw.Elapsed.TotalSeconds;
                ours = o.LastHiddenState.data<float>().ToArray();
                return s;
            }
            double flops = Flops(config, batch, seq);
            void Report(double mine) =>
                Console.WriteLine($"batch {batch} seq {seq}: Bert4Sharp {batch / mine,8:F2} seq/s  {mine * 1e3,8:F1} ms  {flops / mine / 1e9,6:F1} GFLOP/s ({flops / mine / 1e9 / peak:P0} of peak)");
            if (ortProblem is not null)
            {
                Report(Measure.Median(Measure.Time(() => Ours(), 2, rounds)));
                Console.WriteLine($"  ONNX Runtime: skipped ({ortProblem})");
                continue;
            }
            using var options = new SessionOptions { GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_ALL, IntraOpNumThreads = threads, InterOpNumThreads = 1, ExecutionMode = ExecutionMode.ORT_SEQUENTIAL };
            using var session = new InferenceSession(onnx, options);
            var inputs = new List<NamedOnnxValue>
            {
                NamedOnnxValue.CreateFromTensor("input_ids", new DenseTensor<long>(ids, [batch, seq])),
                NamedOnnxValue.CreateFromTensor("token_type_ids", new DenseTensor<long>(zeros, [batch, seq])),
                NamedOnnxValue.CreateFromTensor("attention_mask", new DenseTensor<long>(ones, [batch, seq])),
            };
            float[] theirs = [];
            double Ort()
            {
                var sw = Stopwatch.StartNew();
                using var r = session.Run(inputs);
                double s = sw.Elapsed.TotalSeconds;
                theirs = r.First().AsEnumerable<float>().ToArray();
                return s;
            }
            // Interleaved (A B A B …), two warm-up rounds, so drift and warm caches hit both alike.
            var (a, b) = Measure.Interleave(Ours, Ort, 2, rounds);
            double ort = Measure.Median(b), own = Measure.Median(a);
            Report(own);
            double diff = ours.Zip(theirs).Max(t => Math.Abs(t.First - t.Second));
            Console.WriteLine($"  ONNX Runtime {batch / ort,8:F2} seq/s  {ort * 1e3,8:F1} ms  {flops / ort / 1e9,6:F1} GFLOP/s ({flops / ort / 1e9 / peak:P0} of peak)");
            Console.WriteLine($"  ratio Bert4Sharp / ONNX Runtime (throughput): {ort / own:F2}x (target >= 1.0x); max |diff| of outputs {diff:E1}");
        }
        return 0;
    }

    /// <summary>The benchmarks' BERT-base (12 × 768, vocabulary 21,128, no pooler), seed 1, evaluation mode.</summary>
    internal static (TransformerConfig Config, TransformerModel Model) BertBase()
    {
        var config = new TransformerConfig
        {
            VocabSize = 21128, HiddenSize = 768, NumHiddenLayers = 12, NumAttentionHeads = 12, IntermediateSize = 3072,
            MaxPositionEmbeddings = 512, HiddenDropoutProb = 0, AttentionProbsDropoutProb = 0,
        };
        var family = ModelFamily.Get("bert");
        torch.manual_seed(1);
        var model = new TransformerModel(family, config, family.Architecture(config) with { Pooler = false }, Application.Encoder);
        model.eval();
        return (config, model);
    }

    /// <summary>Forward FLOPs of the encoder on a (b, t) batch: 2 × multiply-adds of the dense layers (4H² + 2HI per token and layer) and of attention (2TH).</summary>
    internal static double Flops(TransformerConfig c, int b, int t)
    {
        double h = c.HiddenSize, i = c.IntermediateSize;
        // per token per layer: QKV + output (4H²) and FFN (2HI) multiply-adds, attention scores and mixing (2TH)
        return 2.0 * b * t * c.NumHiddenLayers * (4 * h * h + 2 * h * i + 2 * t * h);
    }

    internal static string? Export(string dir, string onnx)
    {
        string repo = AppContext.BaseDirectory;
        var d = new DirectoryInfo(repo);
        while (d is not null && !File.Exists(Path.Combine(d.FullName, "Bert4Sharp.slnx"))) d = d.Parent;
        if (d is null) return "run from inside the repository";
        string script = Path.Combine(d.FullName, "bench", "scripts", "export_bert_onnx.py");
        if (!File.Exists("/usr/bin/python3")) return "/usr/bin/python3 not found (apt-get install python3-torch python3-onnx)";
        var psi = new ProcessStartInfo("/usr/bin/python3") { RedirectStandardOutput = true, RedirectStandardError = true };
        psi.ArgumentList.Add(script);
        psi.ArgumentList.Add(dir);
        psi.ArgumentList.Add(onnx);
        using var p = Process.Start(psi)!;
        string err = p.StandardError.ReadToEnd();
        p.StandardOutput.ReadToEnd();
        p.WaitForExit();
        return p.ExitCode == 0 ? null : "export failed: " + err.Trim().Split('\n').Last();
    }
}
