namespace Bert4Sharp.Bench;

using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using Bert4Sharp.Training;

/// <summary>
/// The research kit's small training experiments (issue: "measured against the blog's analysis"), each a masked-LM
/// pretraining run from scratch on real Chinese text (LCSTS summaries and articles from ../shared/data, RoFormerV2's
/// character vocabulary), all with the same data, seed, batches and step count:
///   dotnet run -c Release --project bench/Bert4Sharp.Bench -- attention-train [--steps N] [--depth N] [--depth-lr LR] [--depth-init STD] [--length N] [--batch N] [--minutes M] [--kernels a,b] [--small] [--probe-only] [--clip NORM|0] [--only kernels|depth|gau|realformer] [--output DIR]
/// <list type="number">
/// <item>kernels: RoFormerV2 4 × 256 (<c>--small</c>: 2 × 128, 2 heads) with each attention kernel (or the <c>--kernels</c> listed), packed sequences of <c>--length</c> (128);</item>
/// <item>depth: <c>--depth</c> thin layers (default 48; 64 wide) with Post-LN, Pre-LN and DeepNorm at <c>--depth-lr</c> (1e-3) without warm-up,
/// weights drawn with standard deviation <c>--depth-init</c> (0.02; 1/√64 = 0.125 is Xavier's scale, where DeepNet's analysis applies); first
/// each stack's gradient norm per block at initialisation (one batch of the same shape);</item>
/// <item>gau: GAU-α 4 layers with and without warm-up ("does GAU still need warm-up?", kexue.fm/archives/8990);</item>
/// <item>realformer: Post-LN BERT 6 × 256 with and without RealFormer's residual scores.</item>
/// </list>
/// With <c>--minutes</c> every run also stops at that wall-clock budget (loss after equal time). Every run clips the gradient norm at <c>--clip</c> (1.0; 0 for none). Each line gives the steps, the median step time, the training loss of the last 50 steps and the held-out MLM
/// loss/accuracy at the end; a PNG per experiment plots the training loss against the step and against the time.
/// </summary>
static class AttentionExperiments
{
    sealed record Variant(string Experiment, string Name, string Family, Dictionary<string, object> Config, double LearningRate, long Warmup);

    public static int Run(string[] args)
    {
        long steps = BenchArgs.Get(args, "--steps", 300L);
        int depth = BenchArgs.Get(args, "--depth", 48);
        double depthLr = BenchArgs.Get(args, "--depth-lr", 1e-3);
        double depthInit = BenchArgs.Get(args, "--depth-init", 0.02);
        int length = BenchArgs.Get(args, "--length", 128);
        int batch = BenchArgs.Get(args, "--batch", 16);
        bool small = args.Contains("--small");
        var kernels = (BenchArgs.Value(args, "--kernels") ?? "softmax,linear,performer,nystrom,flash,synthesizer_random,synthesizer_dense,synthesizer_mixture").Split(',');
        double minutes = BenchArgs.Get(args, "--minutes", 0.0);                            // > 0: every run stops at this wall-clock budget (equal time)
        double clip = BenchArgs.Get(args, "--clip", 1.0);                                   // 0: no gradient clipping (divergence shows)
        string only = BenchArgs.Get(args, "--only", "");
        string output = BenchArgs.Get(args, "--output", Path.Combine("docs", "img", "attention"));
        string shared = Path.GetDirectoryName(ClueBaselines.DefaultDataDirectory())!;
        string vocab = Path.Combine(shared, "models", "roformer_v2_char_small", "vocab.txt");
        string corpus = Path.Combine(shared, "data", "lcsts", "train.tsv");
        if (!File.Exists(vocab) || !File.Exists(corpus)) { Console.Error.WriteLine($"needs {vocab} and {corpus} (../shared)"); return 2; }
        Directory.CreateDirectory(output);
        var runs = Path.Combine(Path.GetTempPath(), "b4s-attention-train-" + Environment.ProcessId);

        Dictionary<string, object> Small(params (string, object)[] extra)
        {
            var c = new Dictionary<string, object>
            {
                ["hidden_size"] = 256, ["num_hidden_layers"] = 4, ["num_attention_heads"] = 4, ["intermediate_size"] = 1024, ["hidden_act"] = "relu",
                ["hidden_dropout_prob"] = 0.0, ["attention_probs_dropout_prob"] = 0.0, ["type_vocab_size"] = 2,
            };
            foreach (var (k, v) in extra) c[k] = v;
            return c;
        }
        var kernelOptions = new Dictionary<string, object> { ["features"] = 128, ["landmarks"] = 32, ["chunk_size"] = 32, ["max_length"] = Math.Max(128, length), ["seed"] = 1 };
        var variants = new List<Variant>();
        (string, object)[] size = small ? [("hidden_size", 128), ("num_hidden_layers", 2), ("num_attention_heads", 2), ("intermediate_size", 512)] : [];
        foreach (var k in kernels)
            variants.Add(new("kernels", k, "roformer_v2", Small([.. size, ("attention_kernel", k), ("attention_kernel_options", kernelOptions)]), 1e-3, 50));
        Dictionary<string, object> Deep(string placement) => Small(("hidden_size", 64), ("num_hidden_layers", depth), ("num_attention_heads", 2), ("intermediate_size", 256), ("norm_placement", placement), ("initializer_range", depthInit));
        foreach (var p in new[] { "post", "pre", "deepnorm" })
            variants.Add(new("depth", $"{p}{(p == "deepnorm" ? "" : "-ln")} x{depth}", "bert", Deep(p), depthLr, 0));
        foreach (long w in new long[] { 0, 100 })
            variants.Add(new("gau", $"gau-alpha, warm-up {w}", "gau_alpha", Small(("attention_key_size", 128), ("hidden_act", "swish"), ("num_hidden_layers", 4)), 1e-3, w));
        foreach (bool rf in new[] { false, true })
            variants.Add(new("realformer", rf ? "realformer" : "post-ln", "bert", Small(("num_hidden_layers", 6), ("residual_attention_scores", rf)), 5e-4, 50));
        if (only.Length > 0) variants = variants.Where(v => v.Experiment == only).ToList();

        var device = Runtime.TorchInfo.DefaultDevice;
        foreach (var v in variants.Where(v => v.Experiment == "depth")) GradientProbe(v, File.ReadLines(vocab).Count(), length, depthLr);
        if (args.Contains("--probe-only")) return 0;
        Console.WriteLine($"attention experiments: {steps} steps each{(minutes > 0 ? $" or {minutes} minutes of wall clock, whichever comes first" : "")}, batch {batch} × {length}, LCSTS ({corpus}), on {(device.type == TorchSharp.DeviceType.CUDA ? "CUDA" : $"the CPU ({TorchSharp.torch.get_num_threads()} threads)")}, seed 42");
        var curves = new Dictionary<string, List<(string Name, List<(double Step, double Seconds, double Loss)> Points)>>();
        foreach (var v in variants)
        {
            string dir = Path.Combine(runs, v.Experiment + "-" + v.Name.Replace(' ', '_').Replace(',', '_'));
            var recipe = new PretrainRecipe
            {
                Family = v.Family, Config = JsonSerializer.SerializeToElement(v.Config), Vocab = vocab,
                Corpus = [new CorpusSourceRecipe { File = corpus, Format = "tsv", Fields = ["0", "1"] }],
                HeldOut = 300, MaxLength = length, WholeWordMasking = false, BatchSize = batch, MaxSteps = steps, EvalEvery = steps, CheckpointEvery = steps * 10,
                LogEvery = 10, Seed = 42, Output = dir, Minutes = minutes > 0 ? minutes : null,
                Optimizer = new OptimizerRecipe { LearningRate = v.LearningRate, WarmupSteps = v.Warmup, ClipNorm = clip > 0 ? clip : null },
            };
            recipe.Validate();
            var clock = Stopwatch.StartNew();
            RunResult result;
            try { result = Pretraining.Run(recipe, log: _ => { }, progress: ProgressDisplay.None, overwrite: true); }
            catch (Exception e) when (e is InvalidOperationException or ArgumentException or NotSupportedException)
            {
                Console.WriteLine($"{v.Experiment,-10} {v.Name,-24} failed: {e.Message}");
                continue;
            }
            var points = ReadLoss(Path.Combine(dir, "metrics.jsonl"), clock.Elapsed.TotalSeconds, result.Training.Steps, batch);
            double last = points.Count == 0 ? double.NaN : points.TakeLast(5).Average(p => p.Loss);
            double stepMs = clock.Elapsed.TotalMilliseconds / Math.Max(1, result.Training.Steps);
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"{v.Experiment,-10} {v.Name,-24} {result.Training.Steps,5} steps  {stepMs,6:F0} ms/step (run incl. eval)  train loss (last 50 steps) {last,7:F3}  held-out MLM loss {result.Metrics["mlm_loss"],7:F3}  accuracy {result.Metrics["mlm_accuracy"],6:P1}  {result.Training.StopReason}"));
            if (!curves.TryGetValue(v.Experiment, out var list)) curves[v.Experiment] = list = [];
            list.Add((v.Name, points));
        }
        foreach (var (experiment, series) in curves)
        {
            foreach (bool time in new[] { false, true })
            {
                var plot = new ScottPlot.Plot();
                foreach (var (name, points) in series)
                {
                    var s = plot.Add.Scatter(points.Select(p => time ? p.Seconds : p.Step).ToArray(), points.Select(p => p.Loss).ToArray());
                    s.LegendText = name;
                    s.MarkerSize = 0;
                }
                plot.XLabel(time ? "seconds (training only, from the logged throughput)" : "step");
                plot.YLabel("training MLM loss");
                plot.Title($"{experiment}: MLM loss by {(time ? "time" : "step")}");
                plot.ShowLegend();
                string png = Path.Combine(output, $"train-{experiment}-{(time ? "time" : "step")}.png");
                plot.SavePng(png, 720, 420);
                Console.WriteLine($"wrote {png}");
            }
        }
        try { Directory.Delete(runs, true); } catch (IOException) { }
        return 0;
    }

    /// <summary>
    /// DeepNet's two diagnostics for one stack, on MLM-shaped batches (16 × <paramref name="length"/> random ids and targets):
    /// the gradient norm of each block at initialisation (first, middle, last block; Post-LN's gradients are uneven across
    /// depth, Xiong et al. 2020), and the model update ‖F(x; θₜ) − F(x; θ₀)‖ / ‖F(x; θ₀)‖ of the final hidden states on a
    /// fixed batch after t = 1, 5 and 20 Adam steps at <paramref name="lr"/> without warm-up (DeepNet §3: Post-LN's early
    /// updates grow with depth; DeepNorm bounds them), with the gradient norms of the first and last block at step 20.
    /// </summary>
    static void GradientProbe(Variant v, int vocabSize, int length, double lr)
    {
        var config = JsonSerializer.Deserialize<Models.TransformerConfig>(JsonSerializer.Serialize(v.Config))! with { VocabSize = vocabSize };
        TorchSharp.torch.manual_seed(42);
        using var model = Models.TransformerModels.Create(config, v.Family, Models.Application.MaskedLM);
        model.train();
        int layers = config.NumHiddenLayers;
        var fixedIds = TorchSharp.torch.randint(5, vocabSize, [16, length], device: model.Device);
        TorchSharp.torch.Tensor Hidden()
        {
            using var _ = TorchSharp.torch.no_grad();
            using var o = model.Forward(new Models.ModelInput(fixedIds));
            return o.LastHiddenState.detach().clone();
        }
        double[] Step(Action? optimizerStep)
        {
            using var scope = TorchSharp.torch.NewDisposeScope();
            model.zero_grad();
            var ids = TorchSharp.torch.randint(5, vocabSize, [16, length], device: model.Device);
            var targets = TorchSharp.torch.randint(5, vocabSize, [16, length], device: model.Device);
            using var output = model.Forward(new Models.ModelInput(ids));
            TorchSharp.torch.nn.functional.cross_entropy(output.Logits!.flatten(0, 1), targets.flatten()).backward();
            var norms = new double[layers];
            foreach (var (name, p) in model.named_parameters())
            {
                if (!name.StartsWith("layers.", StringComparison.Ordinal) || p.grad is null) continue;
                norms[int.Parse(name.Split('.')[1], CultureInfo.InvariantCulture)] += p.grad.square().sum().item<float>();
            }
            optimizerStep?.Invoke();
            return [.. norms.Select(Math.Sqrt)];
        }
        using var f0 = Hidden();
        var init = Step(null);
        using var adam = TorchSharp.torch.optim.Adam(model.parameters(), lr);
        var update = new Dictionary<int, double>();
        double[] last = init;
        for (int t = 1; t <= 20; t++)
        {
            last = Step(() => adam.step());
            if (t is 1 or 5 or 20)
            {
                using var f = Hidden();
                update[t] = (f - f0).norm().item<float>() / f0.norm().item<float>();
            }
        }
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"{v.Name,-16} gradient norm at init: block 0 {init[0]:E2}, block {layers / 2} {init[layers / 2]:E2}, block {layers - 1} {init[^1]:E2} (first/last {init[0] / init[^1]:F2}); " +
            $"model update ‖ΔF‖/‖F₀‖ after 1/5/20 Adam steps at lr {lr:G3}: {update[1]:F3} / {update[5]:F3} / {update[20]:F3}; gradient first/last block at step 20: {last[0]:E2} / {last[^1]:E2}"));
    }

    /// <summary>(step, seconds, loss) from metrics.jsonl; seconds accumulate each window's examples / examples_per_s.</summary>
    static List<(double Step, double Seconds, double Loss)> ReadLoss(string path, double total, long steps, int batch)
    {
        var points = new List<(double, double, double)>();
        if (!File.Exists(path)) return points;
        double seconds = 0, previous = 0;
        foreach (var line in File.ReadLines(path))
        {
            using var doc = JsonDocument.Parse(line);
            var r = doc.RootElement;
            if (!r.TryGetProperty("loss", out var loss) || !r.TryGetProperty("step", out var step)) continue;
            double s = step.GetDouble();
            if (r.TryGetProperty("examples_per_s", out var eps) && eps.GetDouble() > 0) seconds += (s - previous) * batch / eps.GetDouble();
            else seconds = total * s / Math.Max(1, steps);
            previous = s;
            points.Add((s, seconds, loss.GetDouble()));
        }
        return points;
    }
}
