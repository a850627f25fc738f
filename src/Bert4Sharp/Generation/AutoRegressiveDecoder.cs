namespace Bert4Sharp.Generation;

using Bert4Sharp.Layers;
using TorchSharp;
using static TorchSharp.torch;

/// <summary>Options shared by the decoders (bert4keras <c>AutoRegressiveDecoder</c>: end id, max/min length).</summary>
public sealed record DecodingOptions
{
    /// <summary>Tokens to generate at most.</summary>
    public int MaxNewTokens { get; init; } = 32;
    /// <summary>The end token; generation of a sequence stops when it is produced. Null: never stop early.</summary>
    public int? EndId { get; init; }
    /// <summary>Beam search: divide a finished hypothesis's log-probability by (generated length)^LengthPenalty.</summary>
    public double LengthPenalty { get; init; } = 1.0;
    /// <summary>Beam search: stop as soon as there are as many finished hypotheses as beams (Hugging Face <c>early_stopping=True</c>).</summary>
    public bool EarlyStopping { get; init; } = true;
}

/// <summary>Greedy and beam-search decoding with a key/value cache (Hugging Face <c>generate</c> semantics).</summary>
public static class AutoRegressiveDecoder
{
    /// <summary>
    /// Greedy decoding: the arg-max token each step, fed back through the cache. Returns prompt + generated
    /// tokens (the end token included when produced).
    /// </summary>
    /// <exception cref="ArgumentException">Empty prompt, or an end id outside the vocabulary.</exception>
    public static List<int> Greedy(ICausalLanguageModel model, IReadOnlyList<int> prompt, DecodingOptions options, bool useCache = true)
    {
        Validate(model, prompt, options);
        var output = prompt.ToList();
        using var g = torch.no_grad();
        using var cache = useCache ? model.NewCache() : null;
        var next = prompt.Select(i => (long)i).ToArray();
        for (int step = 0; step < options.MaxNewTokens; step++)
        {
            using var scope = torch.NewDisposeScope();
            var input = useCache ? torch.tensor(next, device: model.Device).unsqueeze(0) : torch.tensor(output.Select(i => (long)i).ToArray(), device: model.Device).unsqueeze(0);
            var logits = model.Logits(input, cache);
            int token = (int)logits[0, -1].argmax().item<long>();
            output.Add(token);
            if (token == options.EndId) break;
            next = [token];
        }
        return output;
    }

    /// <summary>
    /// Batched beam search over one prompt with <paramref name="beams"/> beams in one batch and a shared
    /// cache, as Hugging Face: each step keeps the top 2·beams continuations of all beams by cumulative
    /// log-probability; a continuation ending in the end token (ranked within the first <paramref name="beams"/>)
    /// becomes a finished hypothesis scored by log-probability / generated-length^LengthPenalty. Returns the best hypothesis.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="beams"/> is less than 1.</exception>
    public static List<int> BeamSearch(ICausalLanguageModel model, IReadOnlyList<int> prompt, int beams, DecodingOptions options)
    {
        if (beams < 1) throw new ArgumentOutOfRangeException(nameof(beams), $"beam size must be at least 1, got {beams}");
        Validate(model, prompt, options);
        using var g = torch.no_grad();
        using var cache = model.NewCache();
        var sequences = Enumerable.Range(0, beams).Select(_ => prompt.ToList()).ToList();
        var scores = new double[beams];
        for (int i = 1; i < beams; i++) scores[i] = -1e9;   // only the first beam is live at the start
        var finished = new List<(List<int> Tokens, double Score)>();
        int promptLength = prompt.Count;
        var input = torch.tensor(prompt.Select(i => (long)i).ToArray(), device: model.Device).unsqueeze(0).expand(beams, -1).contiguous();
        for (int step = 0; step < options.MaxNewTokens; step++)
        {
            using var scope = torch.NewDisposeScope();
            var logProbs = model.Logits(input, cache)[.., -1].log_softmax(-1).to(ScalarType.Float64);   // (beams, V)
            var total = logProbs + torch.tensor(scores, device: logProbs.device).unsqueeze(1);
            int v = (int)total.shape[1];
            var (top, idx) = total.flatten().topk(2 * beams);
            var topScores = top.cpu().data<double>().ToArray();
            var topIdx = idx.cpu().data<long>().ToArray();
            var nextSequences = new List<List<int>>();
            var nextScores = new List<double>();
            var nextRows = new List<long>();
            var nextTokens = new List<long>();
            for (int rank = 0; rank < topIdx.Length && nextSequences.Count < beams; rank++)
            {
                int beam = (int)(topIdx[rank] / v), token = (int)(topIdx[rank] % v);
                if (token == options.EndId)
                {
                    if (rank >= beams) continue;
                    var done = sequences[beam].Append(token).ToList();
                    finished.Add((done, topScores[rank] / Math.Pow(done.Count - promptLength, options.LengthPenalty)));
                    continue;
                }
                nextSequences.Add(sequences[beam].Append(token).ToList());
                nextScores.Add(topScores[rank]);
                nextRows.Add(beam);
                nextTokens.Add(token);
            }
            sequences = nextSequences;
            scores = [.. nextScores];
            if (options.EarlyStopping && finished.Count >= beams) break;
            cache.Select(torch.tensor(nextRows.ToArray(), device: model.Device));
            input.Dispose();
            input = torch.tensor(nextTokens.ToArray(), device: model.Device).unsqueeze(1).DetachFromDisposeScope();
        }
        input.Dispose();
        // Unfinished beams compete too, scored the same way.
        for (int i = 0; i < sequences.Count; i++)
            finished.Add((sequences[i], scores[i] / Math.Pow(Math.Max(1, sequences[i].Count - promptLength), options.LengthPenalty)));
        return finished.OrderByDescending(f => f.Score).First().Tokens;
    }

    internal static void Validate(ICausalLanguageModel model, IReadOnlyList<int> prompt, DecodingOptions options)
    {
        if (prompt.Count == 0) throw new ArgumentException("the prompt is empty: give at least a start token", nameof(prompt));
        if (options.EndId is int e && (e < 0 || e >= model.VocabularySize))
            throw new ArgumentException($"end id {e} is outside the vocabulary [0, {model.VocabularySize})");
        if (options.MaxNewTokens < 0) throw new ArgumentOutOfRangeException(nameof(options), $"MaxNewTokens must be ≥ 0, got {options.MaxNewTokens}");
        if (prompt.Any(t => t < 0 || t >= model.VocabularySize)) throw new ArgumentException($"the prompt holds ids outside [0, {model.VocabularySize})");
    }
}
