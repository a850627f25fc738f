namespace Bert4Sharp.Generation;

using System.Runtime.CompilerServices;
using Bert4Sharp.Layers;
using Bert4Sharp.Runtime;
using TorchSharp;
using static TorchSharp.torch;

/// <summary>How the next token is chosen and which tokens are allowed (logits processors).</summary>
public sealed record SamplingOptions
{
    /// <summary>Divide logits by this before sampling (&gt; 0; 1 = unchanged).</summary>
    public double Temperature { get; init; } = 1.0;
    /// <summary>Keep only the k most likely tokens (≥ 1), or null.</summary>
    public int? TopK { get; init; }
    /// <summary>Keep the smallest set of most likely tokens whose probability reaches p, in (0, 1], or null.</summary>
    public double? TopP { get; init; }
    /// <summary>
    /// "Consistent" top-k/top-p from the blog post on decoders that cannot stop (kexue.fm/archives/9124 idea):
    /// the end token always stays among the candidates, with its own probability, so truncation never
    /// removes the possibility of stopping.
    /// </summary>
    public bool KeepEndToken { get; init; }
    /// <summary>Repetition penalty (CTRL): logits of tokens already present are divided by it when positive, multiplied when negative. 1 = off.</summary>
    public double RepetitionPenalty { get; init; } = 1.0;
    /// <summary>Forbid repeating any n-gram of this size (0 = off).</summary>
    public int NoRepeatNgramSize { get; init; }
    /// <summary>The end token is forbidden before this many new tokens (bert4keras <c>minlen</c>).</summary>
    public int MinNewTokens { get; init; }
    /// <summary>Random seed (reproducible sampling); null for a random one.</summary>
    public int? Seed { get; init; }

    internal void Validate()
    {
        if (!(Temperature > 0)) throw new ArgumentOutOfRangeException(nameof(Temperature), $"temperature must be > 0, got {Temperature}");
        if (TopK is < 1) throw new ArgumentOutOfRangeException(nameof(TopK), $"top-k must be at least 1, got {TopK}");
        if (TopP is double p && !(p > 0 && p <= 1)) throw new ArgumentOutOfRangeException(nameof(TopP), $"top-p must be in (0, 1], got {p}");
        if (!(RepetitionPenalty > 0)) throw new ArgumentOutOfRangeException(nameof(RepetitionPenalty), $"repetition penalty must be > 0, got {RepetitionPenalty}");
        if (NoRepeatNgramSize < 0) throw new ArgumentOutOfRangeException(nameof(NoRepeatNgramSize), $"n-gram size must be ≥ 0, got {NoRepeatNgramSize}");
        if (MinNewTokens < 0) throw new ArgumentOutOfRangeException(nameof(MinNewTokens), $"MinNewTokens must be ≥ 0, got {MinNewTokens}");
    }
}

/// <summary>Logits processors and sampling, one sequence at a time (rows of a batch are independent).</summary>
public static class LogitsProcessing
{
    /// <summary>
    /// Applies repetition penalty, n-gram blocking, the minimum length, temperature, then top-k and top-p
    /// (with the end token kept when asked) to one row of logits (V); returns filtered log-weights where
    /// removed tokens are −∞.
    /// </summary>
    public static Tensor Process(Tensor logits, IReadOnlyList<int> sequence, int generated, SamplingOptions s, int? endId)
    {
        using var scope = torch.NewDisposeScope();
        var x = logits.to(ScalarType.Float32).clone();
        if (s.RepetitionPenalty != 1.0 && sequence.Count > 0)
        {
            var seen = torch.tensor(sequence.Distinct().Select(i => (long)i).ToArray(), device: x.device);
            var vals = x.index_select(0, seen);
            vals = torch.where(vals > 0, vals / s.RepetitionPenalty, vals * s.RepetitionPenalty);
            x.index_copy_(0, seen, vals);
        }
        if (s.NoRepeatNgramSize > 0 && sequence.Count >= s.NoRepeatNgramSize - 1)
        {
            int n = s.NoRepeatNgramSize;
            var prefix = sequence.Skip(sequence.Count - (n - 1)).ToList();
            var banned = new HashSet<long>();
            for (int i = 0; i + n <= sequence.Count; i++)
                if (Enumerable.Range(0, n - 1).All(j => sequence[i + j] == prefix[j])) banned.Add(sequence[i + n - 1]);
            if (banned.Count > 0) x.index_fill_(0, torch.tensor(banned.ToArray(), device: x.device), float.NegativeInfinity);
        }
        if (endId is int e && generated < s.MinNewTokens) x[e] = float.NegativeInfinity;
        if (s.Temperature != 1.0) x = x / s.Temperature;
        float endLogit = endId is int e2 ? x[e2].item<float>() : float.NegativeInfinity;
        if (s.TopK is int k && k < x.shape[0])
        {
            var kth = x.topk(k).values[-1];
            x = x.MaskedFill(x < kth, float.NegativeInfinity);
        }
        if (s.TopP is double p && p < 1)
        {
            var (sorted, order) = x.sort(descending: true);
            var cum = sorted.softmax(0).cumsum(0);
            // Drop a token when the mass before it already reaches p (the most likely token always stays).
            var drop = (cum - sorted.softmax(0)) >= p;
            var mask = torch.zeros_like(drop).index_copy(0, order, drop);
            x = x.MaskedFill(mask, float.NegativeInfinity);
        }
        if (s.KeepEndToken && endId is int e3 && !float.IsNegativeInfinity(endLogit) && float.IsNegativeInfinity(x[e3].item<float>()))
            x[e3] = endLogit;
        return x.MoveToOuterDisposeScope();
    }
}

/// <summary>Random sampling and streaming on top of <see cref="ICausalLanguageModel"/>.</summary>
public static class Sampler
{
    /// <summary>
    /// Draws <paramref name="samples"/> continuations of <paramref name="prompt"/> in one batch with a shared
    /// prompt cache (bert4keras <c>random_sample(n)</c>). Each stops at the end token or the length limit.
    /// </summary>
    public static List<List<int>> Sample(ICausalLanguageModel model, IReadOnlyList<int> prompt, DecodingOptions options, SamplingOptions sampling, int samples = 1)
    {
        sampling.Validate();
        if (samples < 1) throw new ArgumentOutOfRangeException(nameof(samples), $"samples must be at least 1, got {samples}");
        AutoRegressiveDecoder.Validate(model, prompt, options);
        var generator = new torch.Generator((ulong)(sampling.Seed ?? Random.Shared.Next()));
        using var g = torch.no_grad();
        using var cache = model.NewCache();
        var sequences = Enumerable.Range(0, samples).Select(_ => prompt.ToList()).ToList();
        var alive = Enumerable.Repeat(true, samples).ToArray();
        var input = torch.tensor(prompt.Select(i => (long)i).ToArray(), device: model.Device).unsqueeze(0).expand(samples, -1).contiguous();
        for (int step = 0; step < options.MaxNewTokens && alive.Any(a => a); step++)
        {
            using var scope = torch.NewDisposeScope();
            var last = model.Logits(input, cache)[.., -1];                                      // (n, V)
            var next = new long[samples];
            for (int i = 0; i < samples; i++)
            {
                if (!alive[i]) { next[i] = options.EndId ?? 0; continue; }
                var w = LogitsProcessing.Process(last[i], sequences[i], step, sampling, options.EndId);
                next[i] = torch.multinomial(w.softmax(0), 1, generator: generator).item<long>();
                sequences[i].Add((int)next[i]);
                if (next[i] == options.EndId) alive[i] = false;
            }
            input.Dispose();
            input = torch.tensor(next, device: model.Device).unsqueeze(1).DetachFromDisposeScope();
        }
        input.Dispose();
        return sequences;
    }

    /// <summary>
    /// Streams the tokens of one continuation as they are produced (greedy when <paramref name="sampling"/>
    /// is null). Cancelling ends the stream cleanly; the cache is released either way.
    /// </summary>
    public static async IAsyncEnumerable<int> Stream(ICausalLanguageModel model, IReadOnlyList<int> prompt, DecodingOptions options,
        SamplingOptions? sampling = null, [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        sampling?.Validate();
        AutoRegressiveDecoder.Validate(model, prompt, options);
        var generator = new torch.Generator((ulong)(sampling?.Seed ?? Random.Shared.Next()));
        using var cache = model.NewCache();
        var sequence = prompt.ToList();
        var next = prompt.Select(i => (long)i).ToArray();
        for (int step = 0; step < options.MaxNewTokens; step++)
        {
            if (cancellationToken.IsCancellationRequested) yield break;
            int token;
            using (var scope = torch.NewDisposeScope())
            using (var g = torch.no_grad())
            {
                var logits = model.Logits(torch.tensor(next, device: model.Device).unsqueeze(0), cache)[0, -1];
                token = sampling is null
                    ? (int)logits.argmax().item<long>()
                    : (int)torch.multinomial(LogitsProcessing.Process(logits, sequence, step, sampling, options.EndId).softmax(0), 1, generator: generator).item<long>();
            }
            sequence.Add(token);
            yield return token;
            if (token == options.EndId) yield break;
            next = [token];
            await Task.Yield();
        }
    }
}
