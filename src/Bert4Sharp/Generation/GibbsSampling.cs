namespace Bert4Sharp.Generation;

using Bert4Sharp.Models;
using Bert4Sharp.Runtime;
using Bert4Sharp.Tokenization;
using TorchSharp;
using static TorchSharp.torch;

/// <summary>Options of <see cref="GibbsSampler"/>.</summary>
public sealed record GibbsSamplingOptions
{
    /// <summary>Gibbs steps: each masks one position of the span and resamples it from the MLM (bert4keras's example: 10,000).</summary>
    public int Steps { get; init; } = 1000;

    /// <summary>Steps discarded before states are recorded (bert4keras's <c>converged_steps</c>).</summary>
    public int BurnIn { get; init; } = 100;

    /// <summary>Record every this many steps after the burn-in (1 = every state, as bert4keras).</summary>
    public int RecordEvery { get; init; } = 1;

    /// <summary>Divide the logits by this before sampling (1 = the MLM's own conditional, which is what makes it Gibbs sampling).</summary>
    public double Temperature { get; init; } = 1.0;

    /// <summary>Sample among the k most likely tokens only, or null for the whole vocabulary.</summary>
    public int? TopK { get; init; }

    /// <summary>Token ids never sampled (e.g. [CLS], [SEP], [PAD], [MASK], [UNK]).</summary>
    public IReadOnlyList<int> ForbiddenIds { get; init; } = [];

    /// <summary>Random seed (position choice and token draws); null for a random one.</summary>
    public int? Seed { get; init; }

    /// <summary>Rejects impossible settings.</summary>
    /// <exception cref="ArgumentException">A value out of range.</exception>
    public void Validate()
    {
        if (Steps < 1) throw new ArgumentException($"Steps must be ≥ 1, got {Steps}");
        if (BurnIn < 0 || BurnIn >= Steps) throw new ArgumentException($"BurnIn must be in [0, Steps = {Steps}), got {BurnIn}");
        if (RecordEvery < 1) throw new ArgumentException($"RecordEvery must be ≥ 1, got {RecordEvery}");
        if (!(Temperature > 0) || double.IsInfinity(Temperature)) throw new ArgumentException($"Temperature must be a finite value > 0, got {Temperature}");
        if (TopK is < 1) throw new ArgumentException($"TopK must be ≥ 1, got {TopK}");
    }
}

/// <summary>
/// Where a chain starts: token ids (with [CLS]/[SEP] as the model expects) and the positions it may resample; every
/// other position (special tokens, a fixed prefix) stays as given.
/// </summary>
/// <param name="Ids">The initial token ids.</param>
/// <param name="Positions">Indices into <paramref name="Ids"/> that the chain resamples.</param>
public sealed record GibbsStart(IReadOnlyList<int> Ids, IReadOnlyList<int> Positions)
{
    /// <summary>
    /// [CLS] prefix [MASK]×<paramref name="length"/> [SEP]: the chain samples the masks (bert4keras's start without an
    /// initial sentence); the prefix, if any, is fixed and conditions every draw.
    /// </summary>
    /// <exception cref="ArgumentException">A length below one.</exception>
    public static GibbsStart Masked(BertWordPieceTokenizer tokenizer, int length, string? prefix = null)
    {
        if (length < 1) throw new ArgumentException($"length must be ≥ 1, got {length}", nameof(length));
        var fixedIds = prefix is { Length: > 0 } ? tokenizer.Encode(prefix).Ids.Skip(1).SkipLast(1).ToList() : [];
        var ids = new List<int> { tokenizer.StartId };
        ids.AddRange(fixedIds);
        int first = ids.Count;
        ids.AddRange(Enumerable.Repeat(tokenizer.MaskId, length));
        ids.Add(tokenizer.EndId);
        return new GibbsStart(ids, [.. Enumerable.Range(first, length)]);
    }

    /// <summary>
    /// A sentence as the start (bert4keras's <c>init_sent</c>): every token after the first <paramref name="fixedTokens"/>
    /// is resampled.
    /// </summary>
    /// <exception cref="ArgumentException">Nothing left to resample.</exception>
    public static GibbsStart FromText(BertWordPieceTokenizer tokenizer, string text, int fixedTokens = 0)
    {
        var ids = tokenizer.Encode(text).Ids.ToList();                 // [CLS] … [SEP]
        int tokens = ids.Count - 2;
        if (fixedTokens < 0 || fixedTokens >= tokens)
            throw new ArgumentException($"fixedTokens must leave at least one of the text's {tokens} tokens to sample, got {fixedTokens}", nameof(fixedTokens));
        return new GibbsStart(ids, [.. Enumerable.Range(1 + fixedTokens, tokens - fixedTokens)]);
    }
}

/// <summary>A chain's recorded states and its final state.</summary>
/// <param name="States">Token ids after each recorded step (after the burn-in, every <see cref="GibbsSamplingOptions.RecordEvery"/> steps).</param>
/// <param name="Final">The state after the last step.</param>
public sealed record GibbsResult(IReadOnlyList<int[]> States, int[] Final);

/// <summary>
/// Gibbs sampling from a masked language model (bert4keras example <c>basic_gibbs_sampling_via_mlm.py</c>; Su, "Gibbs
/// sampling with BERT", kexue.fm/archives/8119): repeatedly pick a position of the span uniformly, replace it by [MASK],
/// and draw a token from the MLM's distribution there given all the others. If the MLM's conditionals were exact
/// p(x_i | x_¬i) of one joint distribution, the chain's stationary distribution would be that joint; in practice it
/// samples sentences the MLM finds plausible.
/// </summary>
public static class GibbsSampler
{
    /// <summary>Runs one chain.</summary>
    /// <param name="model">The MLM (<see cref="TransformerMaskedLanguageModel"/> wraps a <see cref="TransformerModel"/>).</param>
    /// <param name="start">Initial ids and the positions to resample.</param>
    /// <param name="maskId">The [MASK] id written at the position being resampled.</param>
    /// <param name="options">Steps, burn-in, temperature, top-k, seed.</param>
    /// <exception cref="ArgumentException">Empty span, a position out of range, or bad options.</exception>
    public static GibbsResult Sample(IMaskedLanguageModel model, GibbsStart start, int maskId, GibbsSamplingOptions? options = null)
    {
        options ??= new GibbsSamplingOptions();
        options.Validate();
        if (!model.HasMaskedLanguageModelHead) throw new ArgumentException("the model has no masked-LM head (build it with Application.MaskedLM)", nameof(model));
        if (start.Positions.Count == 0) throw new ArgumentException("the start has no position to sample", nameof(start));
        foreach (int p in start.Positions)
            if (p < 0 || p >= start.Ids.Count) throw new ArgumentException($"position {p} is outside the {start.Ids.Count} ids", nameof(start));
        var rng = options.Seed is int seed ? new Random(seed) : new Random();
        var ids = start.Ids.ToArray();
        var states = new List<int[]>();
        using var noGrad = torch.no_grad();
        var forbidden = options.ForbiddenIds.Select(i => (long)i).ToArray();
        using var forbiddenIds = forbidden.Length > 0 ? torch.tensor(forbidden) : null;          // built once for every step
        for (int step = 0; step < options.Steps; step++)
        {
            using var scope = torch.NewDisposeScope();
            int position = start.Positions[rng.Next(start.Positions.Count)];
            ids[position] = maskId;
            var input = torch.tensor(ids.Select(i => (long)i).ToArray()).unsqueeze(0);                // (1, T)
            var logits = model.MaskedLanguageModelLogits(input, torch.zeros_like(input), null)[0, position]
                .to(ScalarType.Float64).cpu() / options.Temperature;                                     // (V)
            if (forbiddenIds is not null) logits.index_fill_(0, forbiddenIds, double.NegativeInfinity);
            if (options.TopK is int k && k < logits.shape[0])
            {
                var kth = logits.topk(k).values[k - 1];
                logits = logits.masked_fill(logits.lt(kth), double.NegativeInfinity);
            }
            var probs = logits.softmax(0).data<double>().ToArray();
            ids[position] = Draw(probs, rng.NextDouble());
            if (step >= options.BurnIn && (step - options.BurnIn) % options.RecordEvery == 0) states.Add((int[])ids.Clone());
        }
        return new GibbsResult(states, ids);
    }

    // Inverse-CDF draw of one index; u in [0, 1).
    static int Draw(double[] probs, double u)
    {
        double total = 0;
        for (int i = 0; i < probs.Length; i++) total += probs[i];
        if (!(total > 0)) throw new InvalidOperationException("every token is forbidden or has probability 0 at this position");
        double target = u * total, cumulative = 0;
        int last = 0;
        for (int i = 0; i < probs.Length; i++)
        {
            if (probs[i] <= 0) continue;
            cumulative += probs[i];
            last = i;
            if (target < cumulative) return i;
        }
        return last;
    }
}

/// <summary>A <see cref="TransformerModel"/> built with <see cref="Application.MaskedLM"/> seen as an <see cref="IMaskedLanguageModel"/>.</summary>
public sealed class TransformerMaskedLanguageModel : IMaskedLanguageModel
{
    readonly TransformerModel model;

    /// <summary>Wraps <paramref name="model"/> (not owned).</summary>
    /// <exception cref="ArgumentException">The model has no MLM head.</exception>
    public TransformerMaskedLanguageModel(TransformerModel model)
    {
        if (model.Application is not (Application.MaskedLM or Application.PreTraining))
            throw new ArgumentException($"a masked LM needs a model built with Application.MaskedLM, this one is {model.Application}", nameof(model));
        this.model = model;
    }

    /// <inheritdoc/>
    public bool HasMaskedLanguageModelHead => true;

    /// <inheritdoc/>
    public Tensor MaskedLanguageModelLogits(Tensor ids, Tensor? segments, Tensor? attentionMask)
    {
        using var scope = torch.NewDisposeScope();
        var device = model.Device;
        using var output = model.forward(ids.to(device), segments?.to(device), attentionMask?.to(device));
        return PrecisionPolicy.Fp32Handle(output.Logits!).MoveToOuterDisposeScope();
    }
}
