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
    /// Batched beam search over one prompt with <paramref name="beams"/> beams in one batch and a shared cache,
    /// as Hugging Face transformers' <c>generate(num_beams=…)</c> (its vectorised <c>_beam_search</c>, v4.50 to 5.x):
    /// each step ranks the top 2·beams continuations of all running beams by cumulative log-probability. A
    /// continuation ending in the end token (or reaching <see cref="DecodingOptions.MaxNewTokens"/>) is finished;
    /// those ranked within the first <paramref name="beams"/> compete for the <paramref name="beams"/> finished
    /// slots with score log-probability / generated-length^<see cref="DecodingOptions.LengthPenalty"/> (the end
    /// token counted). The best unfinished continuations run on. The search stops when every slot is finished
    /// and <see cref="DecodingOptions.EarlyStopping"/> is set (running beams are then dropped), when the best
    /// running beam scored at its current length cannot beat the worst finished one, or at the maximum length,
    /// where the top <paramref name="beams"/> continuations count as finished. Returns the best finished
    /// sequence: prompt + generated tokens, the end token included when produced.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="beams"/> is less than 1.</exception>
    public static List<int> BeamSearch(ICausalLanguageModel model, IReadOnlyList<int> prompt, int beams, DecodingOptions options)
    {
        if (beams < 1) throw new ArgumentOutOfRangeException(nameof(beams), $"beam size must be at least 1, got {beams}");
        Validate(model, prompt, options);
        if (options.MaxNewTokens == 0) return prompt.ToList();
        const double Dead = -1e9;   // transformers' "very large negative" score: beams that must not be picked
        using var g = torch.no_grad();
        using var cache = model.NewCache();
        var running = Enumerable.Range(0, beams).Select(_ => prompt.ToList()).ToList();
        var runningScores = new double[beams];
        for (int i = 1; i < beams; i++) runningScores[i] = Dead;   // only the first beam is live at the start
        var finished = new List<(List<int> Tokens, double Score)>(beams + 1);   // best first, at most `beams`
        var input = torch.tensor(prompt.Select(i => (long)i).ToArray(), device: model.Device).unsqueeze(0).expand(beams, -1).contiguous();
        try
        {
            for (int generated = 1; ; generated++)   // the length of every candidate this step, without the prompt
            {
                using var scope = torch.NewDisposeScope();
                var logProbs = model.Logits(input, cache)[.., -1].log_softmax(-1).to(ScalarType.Float64);   // (beams, V)
                var total = logProbs + torch.tensor(runningScores, device: model.Device).unsqueeze(1);
                int v = (int)total.shape[1];
                var (top, idx) = total.flatten().topk(Math.Min(2 * beams, beams * v));   // one end token: max(2, 1 + 1)·beams
                var topScores = top.cpu().data<double>().ToArray();
                var topIdx = idx.cpu().data<long>().ToArray();
                bool atMax = generated >= options.MaxNewTokens;
                double penalty = Math.Pow(generated, options.LengthPenalty);
                var next = new List<(int Beam, int Token, double Score)>(beams);
                for (int rank = 0; rank < topIdx.Length; rank++)
                {
                    int beam = (int)(topIdx[rank] / v), token = (int)(topIdx[rank] % v);
                    if (token != options.EndId && !atMax)
                    {
                        if (next.Count < beams) next.Add((beam, token, topScores[rank]));
                        continue;
                    }
                    // Finished: only the first `beams` ranks may enter the finished slots (the rest are spares).
                    if (rank < beams) AddFinished(finished, beams, running[beam].Append(token).ToList(), topScores[rank] / penalty);
                }
                if (atMax || next.Count == 0) break;    // every continuation reached the maximum length (or none is left)
                running = next.Select(n => running[n.Beam].Append(n.Token).ToList()).ToList();
                runningScores = next.Select(n => n.Score).ToArray();
                if (finished.Count == beams)
                {
                    if (options.EarlyStopping) break;   // all slots finished: running beams are dropped
                    // Can the best running beam, scored at its current length, still beat the worst finished one?
                    if (!(runningScores[0] / Math.Pow(generated, options.LengthPenalty) > finished[^1].Score)) break;
                }
                cache.Select(torch.tensor(next.Select(n => (long)n.Beam).ToArray(), device: model.Device));
                input.Dispose();
                input = torch.tensor(next.Select(n => (long)n.Token).ToArray(), device: model.Device).unsqueeze(1).DetachFromDisposeScope();
            }
        }
        finally { input.Dispose(); }
        return finished.Count > 0 ? finished[0].Tokens : running[0];
    }

    /// <summary>Inserts a finished hypothesis into the best-first list and keeps the best <paramref name="capacity"/> (ties: the earlier stays ahead).</summary>
    static void AddFinished(List<(List<int> Tokens, double Score)> finished, int capacity, List<int> tokens, double score)
    {
        int at = finished.FindIndex(f => score > f.Score);
        if (at < 0) at = finished.Count;
        if (at >= capacity) return;
        finished.Insert(at, (tokens, score));
        if (finished.Count > capacity) finished.RemoveAt(finished.Count - 1);
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
