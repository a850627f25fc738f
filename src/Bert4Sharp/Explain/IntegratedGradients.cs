namespace Bert4Sharp.Explain;

using System.Diagnostics;
using Bert4Sharp.Models;
using Bert4Sharp.Tasks;
using Bert4Sharp.Tokenization;
using TorchSharp;
using static TorchSharp.torch;

/// <summary>The reference input x′ the path starts from, as token embedding rows.</summary>
public enum IntegrationBaseline
{
    /// <summary>The zero vector (the paper's choice for text: "the all-zero input embedding").</summary>
    Zero,
    /// <summary>The [PAD] token's embedding row.</summary>
    Padding,
    /// <summary>The [MASK] token's embedding row: "every token masked".</summary>
    Mask,
}

/// <summary>What f, the explained output, is.</summary>
public enum AttributionScore
{
    /// <summary>The softmax probability of the target (the post explains the predicted class's probability). Attributions sum to a probability difference.</summary>
    Probability,
    /// <summary>The target's logit (unbounded; no saturation of the softmax).</summary>
    Logit,
}

/// <summary>Options of <see cref="IntegratedGradients"/>.</summary>
public sealed record IntegratedGradientsOptions
{
    /// <summary>Riemann intervals or Gauss–Legendre nodes (gradient evaluations; the trapezoid rule takes one more).</summary>
    public int Steps { get; init; } = 32;
    /// <summary>How the path integral is approximated.</summary>
    public IntegrationMethod Method { get; init; } = IntegrationMethod.GaussLegendre;
    /// <summary>The baseline's token rows.</summary>
    public IntegrationBaseline Baseline { get; init; } = IntegrationBaseline.Zero;
    /// <summary>What f is.</summary>
    public AttributionScore Score { get; init; } = AttributionScore.Probability;
    /// <summary>Interpolation points per forward/backward pass (memory ∝ this × tokens × width × layers).</summary>
    public int BatchSize { get; init; } = 16;
    /// <summary>
    /// Keep [CLS], [SEP], [MASK] and [PAD] at their own embedding in the baseline too (default). They carry structure, not
    /// content: the path then changes only content tokens, and these positions get attribution 0 (x − x′ = 0 there).
    /// False: every position starts from the baseline row.
    /// </summary>
    public bool KeepSpecialTokens { get; init; } = true;
    /// <summary>
    /// The completeness tolerance: |Σ attributions − (f(x) − f(x′))| ≤ this × |f(x) − f(x′)|. 0.05 is Sundararajan et al.'s
    /// advice ("within 5%"); above it the result is flagged <see cref="TokenAttributions.Complete"/> = false.
    /// </summary>
    public double Tolerance { get; init; } = 0.05;
    /// <summary>Throw <see cref="IncompleteAttributionException"/> instead of flagging when the gap exceeds <see cref="Tolerance"/>.</summary>
    public bool ThrowWhenIncomplete { get; init; }
    /// <summary>Tokens per input (the text is truncated to it); null: the model's maximum.</summary>
    public int? MaxLength { get; init; }

    internal void Check()
    {
        if (Steps < 1) throw new ArgumentOutOfRangeException(nameof(Steps), $"integrated gradients needs at least 1 step, got {Steps}");
        if (BatchSize < 1) throw new ArgumentOutOfRangeException(nameof(BatchSize), $"the interpolation batch needs at least 1 point, got {BatchSize}");
        if (!(Tolerance >= 0)) throw new ArgumentOutOfRangeException(nameof(Tolerance), $"the completeness tolerance must be ≥ 0, got {Tolerance}");
    }
}

/// <summary>The completeness gap was above the tolerance and <see cref="IntegratedGradientsOptions.ThrowWhenIncomplete"/> was set.</summary>
public sealed class IncompleteAttributionException(string message, TokenAttributions attributions) : Exception(message)
{
    /// <summary>The attributions that failed the check.</summary>
    public TokenAttributions Attributions { get; } = attributions;
}

/// <summary>
/// Integrated gradients (Sundararajan, Taly and Yan, "Axiomatic Attribution for Deep Networks", 2017; Su Jianlin,
/// kexue.fm/archives/7533) for a sequence classifier's class or a masked-LM prediction. The path runs in the space of
/// token embedding rows (<see cref="ModelInput.TokenEmbeddings"/>) from a baseline x′ to the input x; positions and
/// segments stay as they are. Token i's attribution is Σₕ (xᵢₕ − x′ᵢₕ)·∫₀¹ ∂f/∂xᵢₕ(x′ + α(x − x′)) dα, the integral by
/// <see cref="PathIntegral"/>; completeness (Σᵢ attributionᵢ = f(x) − f(x′)) is checked against a stated tolerance.
/// </summary>
public static class IntegratedGradients
{
    /// <summary>Explains class <paramref name="target"/> (default: the predicted class) of <paramref name="model"/> for a text or text pair.</summary>
    /// <param name="model">The classifier (put in evaluation mode for the computation and restored after).</param>
    /// <param name="tokenizer">Its tokenizer.</param>
    /// <param name="text">Text A.</param>
    /// <param name="pair">Text B, or null.</param>
    /// <param name="target">Label index to explain, or null for the predicted one.</param>
    /// <param name="labels">Label names in index order (for the result), or null for the indices.</param>
    /// <param name="options">Steps, method, baseline …</param>
    /// <exception cref="ArgumentOutOfRangeException">A target outside the labels, or bad options.</exception>
    /// <exception cref="IncompleteAttributionException">The gap exceeds the tolerance and the options say to throw.</exception>
    public static TokenAttributions Explain(SequenceClassifier model, BertWordPieceTokenizer tokenizer, string text, string? pair = null, int? target = null,
        IReadOnlyList<string>? labels = null, IntegratedGradientsOptions? options = null)
    {
        options ??= new();
        options.Check();
        if (labels is not null && labels.Count != model.Labels) throw new ArgumentException($"{labels.Count} label names for a classifier with {model.Labels} labels");
        if (target is int t && (t < 0 || t >= model.Labels))
            throw new ArgumentOutOfRangeException(nameof(target), $"target label {t} is outside [0, {model.Labels})");
        var encoded = Encode(tokenizer, text, pair, options, model.Encoder.MaxLength);
        // f over embedding rows (b, T, E) → (b) with logits (b, labels) on the side for the prediction.
        Tensor Logits(Tensor ids, Tensor segments, Tensor rows) => model.Forward(new ModelInput(ids) { Segments = segments, TokenEmbeddings = rows });
        string Name(int i) => labels?[i] ?? i.ToString(System.Globalization.CultureInfo.InvariantCulture);
        return Run(model, model.Encoder, tokenizer, encoded, text, pair, Logits, -1, target, Name, options);
    }

    /// <summary>
    /// Explains a masked-LM prediction: the probability (or logit) of <paramref name="targetToken"/> (default: the top
    /// prediction) at the <paramref name="maskIndex"/>-th [MASK] of <paramref name="text"/>.
    /// </summary>
    /// <param name="model">A model built with <see cref="Application.MaskedLM"/> or <see cref="Application.PreTraining"/>.</param>
    /// <param name="tokenizer">Its tokenizer.</param>
    /// <param name="text">Text with at least one [MASK].</param>
    /// <param name="targetToken">The token whose probability is explained (a vocabulary entry), or null for the top prediction.</param>
    /// <param name="maskIndex">Which [MASK] (0: the first).</param>
    /// <param name="options">Steps, method, baseline …</param>
    /// <exception cref="ArgumentException">No MLM head, no [MASK] (or fewer than <paramref name="maskIndex"/> + 1), a target not in the vocabulary.</exception>
    /// <exception cref="IncompleteAttributionException">The gap exceeds the tolerance and the options say to throw.</exception>
    public static TokenAttributions ExplainMask(TransformerModel model, BertWordPieceTokenizer tokenizer, string text, string? targetToken = null, int maskIndex = 0,
        IntegratedGradientsOptions? options = null)
    {
        options ??= new();
        options.Check();
        if (model.Application is not (Application.MaskedLM or Application.PreTraining))
            throw new ArgumentException($"explaining a [MASK] needs a model with an MLM head (Application.MaskedLM); this one is {model.Application}");
        var encoded = Encode(tokenizer, text, null, options, model.MaxLength);
        var masks = Enumerable.Range(0, encoded.Count).Where(i => encoded.Ids[i] == tokenizer.MaskId).ToList();
        if (masks.Count == 0) throw new ArgumentException($"the text has no {tokenizer.Options.MaskingToken} to explain (a masked-LM explanation needs one): '{text}'");
        if (maskIndex < 0 || maskIndex >= masks.Count) throw new ArgumentOutOfRangeException(nameof(maskIndex), $"mask {maskIndex} asked for, the text has {masks.Count} (0-based)");
        int position = masks[maskIndex];
        int? target = null;
        if (targetToken is not null)
            target = tokenizer.Vocabulary[targetToken] is int id && id >= 0 ? id
                : throw new ArgumentException($"target token '{targetToken}' is not in the vocabulary ({tokenizer.Vocabulary.Count} entries)");
        Tensor Logits(Tensor ids, Tensor segments, Tensor rows)
        {
            bool compute = model.ComputeLogits;
            model.ComputeLogits = false;                                                     // only the one position's (b, V) logits, not (b, T, V)
            try
            {
                using var scope = torch.NewDisposeScope();
                using var output = model.Forward(new ModelInput(ids) { Segments = segments, TokenEmbeddings = rows });
                return model.LanguageModelLogits(output.LastHiddenState.select(1, position)).MoveToOuterDisposeScope();   // (b, V)
            }
            finally { model.ComputeLogits = compute; }
        }
        return Run(model, model, tokenizer, encoded, text, null, Logits, position, target, tokenizer.Vocabulary.IdToToken, options);
    }

    static EncodedText Encode(BertWordPieceTokenizer tokenizer, string text, string? pair, IntegratedGradientsOptions options, long modelMax)
    {
        ArgumentNullException.ThrowIfNull(text);
        if (text.Length == 0 && string.IsNullOrEmpty(pair)) throw new ArgumentException("the text to explain is empty");
        int max = (int)Math.Min(options.MaxLength ?? int.MaxValue, Math.Min(modelMax, int.MaxValue));
        var e = tokenizer.Encode(text, pair, max == int.MaxValue ? null : max);
        if (e.Ids.Count(i => i != tokenizer.StartId && i != tokenizer.EndId) == 0) throw new ArgumentException($"the text '{text}' has no tokens besides [CLS]/[SEP] to attribute to");
        return e;
    }

    /// <summary>The engine shared by both targets: one text, f = score of the target from <paramref name="logits"/>.</summary>
    static TokenAttributions Run(nn.Module module, TransformerModel encoder, BertWordPieceTokenizer tokenizer, EncodedText encoded, string text, string? pair,
        Func<Tensor, Tensor, Tensor, Tensor> logits, int maskPosition, int? target, Func<int, string> name, IntegratedGradientsOptions options)
    {
        var clock = Stopwatch.StartNew();
        bool wasTraining = module.training;
        module.eval();
        try
        {
            using var scope = torch.NewDisposeScope();
            var device = encoder.Device;
            long t = encoded.Count;
            var ids = torch.tensor(encoded.Ids.Select(i => (long)i).ToArray(), device: device).unsqueeze(0);          // (1, T)
            var segments = torch.tensor(encoded.SegmentIds.Select(i => (long)i).ToArray(), device: device).unsqueeze(0);
            var table = encoder.TokenEmbeddings;                                                                  // (V, E)
            // Both ends of the path and, without gradients, the prediction there: f(x), f(x′) and the predicted index.
            Tensor x, baseline, ends;
            using (torch.no_grad())
            {
                x = table.index_select(0, ids.squeeze(0)).detach();                                              // (T, E)
                baseline = BaselineRows(options.Baseline, table, tokenizer, t).to(x.dtype);                      // (T, E)
                if (options.KeepSpecialTokens)
                {
                    var keep = torch.tensor(encoded.Ids.Select(i => IsSpecial(tokenizer, i)).ToArray(), device: device).unsqueeze(-1);   // (T, 1)
                    baseline = torch.where(keep, x, baseline);
                }
                ends = logits(ids.expand(2, t), segments.expand(2, t), torch.stack([x, baseline])).to(ScalarType.Float64).cpu();   // (2, C)
            }
            var probabilities = ends.softmax(-1);
            int predicted = (int)probabilities[0].argmax().item<long>();
            int targetIndex = target ?? predicted;
            double Score(Tensor row) => options.Score == AttributionScore.Probability ? row.softmax(-1)[targetIndex].item<double>() : row[targetIndex].item<double>();
            double fx = Score(ends[0]), fBaseline = Score(ends[1]);

            var (alphas, weights) = PathIntegral.Nodes(options.Method, options.Steps);
            var integral = torch.zeros([t, x.shape[1]], ScalarType.Float64, device);                             // ∫ ∂f/∂x dα, (T, E)
            var delta = x - baseline;                                                                             // (T, E)
            for (int start = 0; start < alphas.Length; start += options.BatchSize)
            {
                using var step = torch.NewDisposeScope();
                int b = Math.Min(options.BatchSize, alphas.Length - start);
                var alpha = torch.tensor(alphas.AsSpan(start, b).ToArray(), device: device).to(x.dtype).view(b, 1, 1);        // (b, 1, 1)
                var points = (baseline.unsqueeze(0) + alpha * delta.unsqueeze(0)).detach().requires_grad_(true);          // (b, T, E)
                var l = logits(ids.expand(b, t), segments.expand(b, t), points);                                          // (b, C)
                if (Runtime.PrecisionPolicy.IsHalf(l.dtype)) l = l.to(ScalarType.Float32);                              // softmax in fp32 at least
                var f = options.Score == AttributionScore.Probability ? l.softmax(-1).select(1, targetIndex) : l.select(1, targetIndex);   // (b)
                var grad = torch.autograd.grad([f.sum()], [points])[0];                                                   // (b, T, E): each point's own gradient
                var w = torch.tensor(weights.AsSpan(start, b).ToArray(), ScalarType.Float64, device).view(b, 1, 1);
                using (torch.no_grad()) integral.add_((grad.to(ScalarType.Float64) * w).sum(dim: 0));                 // (T, E), in place
            }
            var contribution = (delta.to(ScalarType.Float64) * integral).cpu();                                  // (T, E)
            double[] scores = contribution.sum(-1).data<double>().ToArray();
            double[] norms = contribution.norm(-1).data<double>().ToArray();
            double sum = scores.Sum(), difference = fx - fBaseline, gap = sum - difference;
            double relative = Math.Abs(gap) / Math.Max(Math.Abs(difference), 1e-12);
            var probs = probabilities[0].data<double>().ToArray();
            var result = new TokenAttributions
            {
                Text = text, Pair = pair, Tokens = encoded.Tokens, Offsets = encoded.Offsets, SegmentIds = encoded.SegmentIds, Scores = scores, Norms = norms,
                TargetIndex = targetIndex, Target = name(targetIndex), TargetProbability = probs[targetIndex],
                PredictedIndex = predicted, Predicted = name(predicted), PredictedProbability = probs[predicted],
                MaskPosition = maskPosition < 0 ? null : maskPosition, Score = options.Score, InputScore = fx, BaselineScore = fBaseline,
                Gap = gap, RelativeGap = relative, Tolerance = options.Tolerance, Complete = relative <= options.Tolerance,
                Method = options.Method, Steps = options.Steps, Evaluations = alphas.Length, Baseline = options.Baseline, Elapsed = clock.Elapsed,
            };
            if (!result.Complete && options.ThrowWhenIncomplete)
                throw new IncompleteAttributionException($"completeness gap {relative:P2} of f(x) − f(x′) = {difference:G4} is above the tolerance {options.Tolerance:P2} " +
                    $"({options.Method}, {options.Steps} steps); use more steps or Gauss–Legendre", result);
            return result;
        }
        finally
        {
            if (wasTraining) module.train();
        }
    }

    static bool IsSpecial(BertWordPieceTokenizer tokenizer, int id) =>
        id == tokenizer.StartId || id == tokenizer.EndId || id == tokenizer.MaskId || id == tokenizer.PaddingId;

    static Tensor BaselineRows(IntegrationBaseline baseline, Tensor table, BertWordPieceTokenizer tokenizer, long t) => baseline switch
    {
        IntegrationBaseline.Zero => torch.zeros([t, table.shape[1]], table.dtype, table.device),
        IntegrationBaseline.Padding => Row(table, tokenizer.PaddingId, tokenizer.Options.PaddingToken).expand(t, -1),
        IntegrationBaseline.Mask => Row(table, tokenizer.MaskId, tokenizer.Options.MaskingToken).expand(t, -1),
        _ => throw new ArgumentOutOfRangeException(nameof(baseline), baseline, "unknown baseline"),
    };

    static Tensor Row(Tensor table, int id, string token) => id >= 0 && id < table.shape[0]
        ? table[id].detach().unsqueeze(0)
        : throw new ArgumentException($"the baseline needs the {token} token, which is not in this model's vocabulary");
}
