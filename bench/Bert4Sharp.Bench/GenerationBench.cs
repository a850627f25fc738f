namespace Bert4Sharp.Bench;

using System.Diagnostics;
using Bert4Sharp.Generation;
using Bert4Sharp.Models;
using TorchSharp;

/// <summary>
/// GPT-2-small shape (12 layers, hidden 768, vocab 21128), random weights, fp32, 2 threads: greedy tokens/s
/// with and without the key/value cache at 128 and 512 new tokens (target: cached ≥ 8× uncached at 512),
/// beam-4 cost per token relative to greedy, and per-token latency against a floor computed in the same
/// run (one token's matmul FLOPs at the measured large-matmul peak; target within 1.5×).
/// </summary>
public static class GenerationBench
{
    public static int Run(string[] args)
    {
        torch.set_num_threads(2);
        bool quick = args.Contains("--quick");
        var config = new TransformerConfig { VocabSize = 21128, HiddenSize = 768, NumHiddenLayers = 12, NumAttentionHeads = 12, MaxPositionEmbeddings = 1024, LayerNormEps = 1e-5, HiddenAct = "gelu_new" };
        torch.manual_seed(1);
        var model = TransformerModels.Create(config, "gpt2", Application.LanguageModel);
        model.eval();
        var lm = new CausalLanguageModel(model);
        int[] prompt = Enumerable.Range(0, 16).Select(i => 200 + i * 37).ToArray();
        double peak = Measure.MatmulPeak();                                   // best of several samples
        double tokenFlops = 2.0 * (12 * (4.0 * 768 * 768 + 2.0 * 768 * 3072) + 21128.0 * 768);
        Console.WriteLine($"threads 2; matmul peak {peak:F1} GFLOP/s; one token's matmul work {tokenFlops / 1e6:F0} MFLOP -> floor {tokenFlops / peak / 1e6:F2} ms/token");
        // At batch 1 every weight is read once per token for two FLOPs per weight: the bound is memory, not FLOPs.
        double tokenBytes = 4.0 * (tokenFlops / 2);
        double bandwidth = ReadBandwidth();
        Console.WriteLine($"read bandwidth {bandwidth / 1e9:F1} GB/s (sum over 1 GB); one token reads {tokenBytes / 1e6:F0} MB of weights -> bandwidth floor {tokenBytes / bandwidth * 1e3:F1} ms/token");
        foreach (int n in quick ? new[] { 128 } : new[] { 128, 512 })
        {
            var o = new DecodingOptions { MaxNewTokens = n };
            AutoRegressiveDecoder.Greedy(lm, prompt, o with { MaxNewTokens = 4 });
            // The sides of each comparison interleaved: cached, uncached, cached, uncached … (and beam 4 beside cached greedy).
            int rounds = quick ? 1 : n <= 128 ? 3 : 2;
            var (cachedRuns, uncachedRuns) = Measure.InterleaveTimed(() => AutoRegressiveDecoder.Greedy(lm, prompt, o), () => AutoRegressiveDecoder.Greedy(lm, prompt, o, useCache: false), 0, rounds);
            double cached = Measure.Median(cachedRuns), uncached = Measure.Median(uncachedRuns);
            Console.WriteLine($"{n} new tokens ({rounds} interleaved rounds): cached {n / cached,7:F1} tok/s ({cached / n * 1e3:F1} ms/token, {cached / n / (tokenFlops / peak / 1e9):F1}x the FLOP floor, {cached / n / (tokenBytes / bandwidth):F2}x the bandwidth floor), uncached {n / uncached,6:F1} tok/s; cached/uncached speed-up {uncached / cached:F1}x (target >= 8x at 512)");
            if (n == 128)
            {
                var (greedyRuns, beamRuns) = Measure.InterleaveTimed(() => AutoRegressiveDecoder.Greedy(lm, prompt, o), () => AutoRegressiveDecoder.BeamSearch(lm, prompt, 4, o), 0, rounds);
                double greedy = Measure.Median(greedyRuns), beam = Measure.Median(beamRuns);
                Console.WriteLine($"beam 4, {n} tokens: {beam / n * 1e3:F1} ms per generated token = {beam / greedy:F2}x greedy (4 sequences per step in one batch)");
            }
        }
        return 0;
    }

    /// <summary>Bytes per second of a 2-thread sum over 1 GB of float32 (the best of five, after a warm-up: like the matmul peak, a floor is set by the fastest run).</summary>
    internal static double ReadBandwidth()
    {
        using var big = torch.ones(256L * 1024 * 1024);
        var times = Measure.Time(() => { using var s = big.sum(); }, 1, 5);
        return big.numel() * 4.0 / times.Min();
    }
}
