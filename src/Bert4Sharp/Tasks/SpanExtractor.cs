namespace Bert4Sharp.Tasks;

using Bert4Sharp.Models;
using Bert4Sharp.Runtime;
using Bert4Sharp.Tokenization;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

/// <summary>Options of span extraction (<see cref="SpanExtractor"/>, <see cref="SpanWindows"/>, <see cref="SpanDecoding"/>).</summary>
public sealed record SpanExtractorOptions
{
    /// <summary>Tokens per window, <c>[CLS] question [SEP] context-window [SEP]</c> included.</summary>
    public int MaxLength { get; init; } = 512;
    /// <summary>
    /// Tokens between the starts of consecutive context windows (BERT's <c>doc_stride</c>: a step, so windows overlap by
    /// the window's context length minus this); capped at the window's context length so that no token is skipped.
    /// </summary>
    public int DocStride { get; init; } = 128;
    /// <summary>Question tokens kept (the rest are cut from the right).</summary>
    public int MaxQuestionLength { get; init; } = 64;
    /// <summary>Tokens in a predicted answer at most (<c>end − start &lt; MaxAnswerLength</c>).</summary>
    public int MaxAnswerLength { get; init; } = 64;
    /// <summary>Dropout on the encoder output (training only).</summary>
    public double Dropout { get; init; } = 0.1;
}

/// <summary>A question on a context; the gold answer (if any) is the UTF-16 range [AnswerStart, AnswerEnd) of <see cref="Context"/>.</summary>
/// <param name="Question">The question.</param>
/// <param name="Context">The passage the answer is taken from.</param>
/// <param name="AnswerStart">UTF-16 start of the gold answer in the context, or −1 when unlabelled.</param>
/// <param name="AnswerEnd">UTF-16 end (exclusive) of the gold answer.</param>
public sealed record SpanExample(string Question, string Context, int AnswerStart = -1, int AnswerEnd = -1);

/// <summary>
/// One model input, <c>[CLS] question [SEP] context[a..b) [SEP]</c>, of example <see cref="Example"/>. Token positions
/// are indices into <see cref="Ids"/>; <see cref="Offsets"/> give each context token's UTF-16 range in the context
/// (empty for the question and the added tokens).
/// </summary>
/// <param name="Example">Index of the example this window belongs to.</param>
/// <param name="Ids">Token ids.</param>
/// <param name="Segments">0 for [CLS] question [SEP], 1 for the context and its [SEP].</param>
/// <param name="Offsets">Each token's UTF-16 range in the context; empty outside the context part.</param>
/// <param name="ContextStart">First context token.</param>
/// <param name="ContextEnd">One past the last context token.</param>
/// <param name="StartLabel">Gold start token: the answer's when this window holds it whole, 0 ([CLS]) when it does not, −1 unlabelled.</param>
/// <param name="EndLabel">Gold end token (inclusive), likewise.</param>
public sealed record SpanWindow(int Example, int[] Ids, int[] Segments, TokenSpan[] Offsets, int ContextStart, int ContextEnd, int StartLabel, int EndLabel);

/// <summary>A predicted answer: UTF-16 range [Start, End) of the context (−1 when the context had no token), summed logits, and the text.</summary>
public readonly record struct SpanAnswer(int Start, int End, float Score, string Text);

/// <summary>Long contexts → overlapping windows, with the gold answer mapped to tokens (SQuAD-style preprocessing).</summary>
public static class SpanWindows
{
    /// <summary>
    /// Splits <paramref name="example"/> into windows. The answer is mapped to the first and last context token that
    /// overlap its character range; a window that does not hold both is labelled [CLS] (position 0), as in BERT's SQuAD
    /// recipe.
    /// </summary>
    /// <param name="tokenizer">A WordPiece tokenizer with start and end tokens.</param>
    /// <param name="example">The question, the context and the optional answer.</param>
    /// <param name="index">The example's index, stored in each window.</param>
    /// <param name="options">Window length, stride, question length.</param>
    /// <returns>The windows (at least one) and whether the gold answer is in none of them whole (no token overlaps it, or it is longer than a window).</returns>
    /// <exception cref="ArgumentException">The tokenizer has no start or end token, or the window cannot hold one context token.</exception>
    public static (List<SpanWindow> Windows, bool AnswerLost) Split(BertWordPieceTokenizer tokenizer, SpanExample example, int index, SpanExtractorOptions options)
    {
        if (tokenizer.StartId < 0 || tokenizer.EndId < 0) throw new ArgumentException("span extraction needs a tokenizer with [CLS] and [SEP] tokens");
        var q = tokenizer.Encode(example.Question);
        int qn = Math.Min(q.Count - 2, options.MaxQuestionLength);
        var c = tokenizer.Encode(example.Context);
        int n = c.Count - 2;                                       // context tokens, [CLS] and [SEP] left out
        int room = options.MaxLength - qn - 3;
        if (room < 1) throw new ArgumentException($"max length {options.MaxLength} leaves no room for the context after {qn} question tokens and 3 added tokens; raise it or lower the question length ({options.MaxQuestionLength})");
        int step = Math.Max(1, Math.Min(options.DocStride, room));

        // The gold answer on context tokens (0-based among the n context tokens), −1 when unlabelled or on no token.
        int goldStart = -1, goldEnd = -1;
        bool labelled = example.AnswerStart >= 0;
        if (labelled)
            for (int t = 0; t < n; t++)
            {
                var o = c.Offsets[t + 1];
                if (o.IsEmpty || o.End <= example.AnswerStart || o.Start >= example.AnswerEnd) continue;
                if (goldStart < 0) goldStart = t;
                goldEnd = t;
            }

        var windows = new List<SpanWindow>();
        bool held = false;
        for (int s = 0; ; s += step)
        {
            int e = Math.Min(s + room, n);
            int len = qn + 3 + (e - s);
            var ids = new int[len];
            var segs = new int[len];
            var offs = new TokenSpan[len];
            ids[0] = tokenizer.StartId;
            for (int i = 0; i < qn; i++) ids[1 + i] = q.Ids[1 + i];
            ids[qn + 1] = tokenizer.EndId;
            int cs = qn + 2;
            for (int i = s; i < e; i++)
            {
                ids[cs + i - s] = c.Ids[1 + i];
                offs[cs + i - s] = c.Offsets[1 + i];
            }
            ids[len - 1] = tokenizer.EndId;
            segs.AsSpan(cs).Fill(1);
            int sl = -1, el = -1;
            if (labelled)
            {
                bool inside = goldStart >= 0 && goldStart >= s && goldEnd < e;
                (sl, el) = inside ? (cs + goldStart - s, cs + goldEnd - s) : (0, 0);
                held |= inside;
            }
            windows.Add(new SpanWindow(index, ids, segs, offs, cs, cs + e - s, sl, el));
            if (e >= n) break;
        }
        return (windows, labelled && !held);
    }
}

/// <summary>Decoding of start/end logits on plain arrays, and the merge of windows back into answers.</summary>
public static class SpanDecoding
{
    /// <summary>
    /// The best span [Start, End] (token positions, inclusive) with <c>from ≤ Start ≤ End &lt; to</c> and
    /// <c>End − Start &lt; maxAnswerLength</c> by <c>start[Start] + end[End]</c>; the first such span in (Start, End)
    /// order wins ties. Start is −1 when <c>from ≥ to</c>.
    /// </summary>
    public static (int Start, int End, float Score) Best(ReadOnlySpan<float> start, ReadOnlySpan<float> end, int from, int to, int maxAnswerLength)
    {
        if (maxAnswerLength < 1) throw new ArgumentOutOfRangeException(nameof(maxAnswerLength), $"must be at least 1, got {maxAnswerLength}");
        (int, int, float) best = (-1, -1, float.NegativeInfinity);
        for (int i = from; i < to; i++)
            for (int j = i; j < Math.Min(to, i + maxAnswerLength); j++)
            {
                float s = start[i] + end[j];
                if (best.Item1 < 0 || s > best.Item3) best = (i, j, s);
            }
        return best;
    }

    /// <summary>
    /// The answer of each example: the best span of each of its windows (inside the context part), the best score across
    /// windows (the first window wins ties), mapped to the context's UTF-16 range through the token offsets.
    /// </summary>
    /// <param name="examples">The examples the windows came from.</param>
    /// <param name="windows">Their windows, <see cref="SpanWindow.Example"/> indexing <paramref name="examples"/>.</param>
    /// <param name="logits">Start and end logits of each window (at least as long as its ids).</param>
    /// <param name="maxAnswerLength">Tokens in an answer at most.</param>
    public static SpanAnswer[] Merge(IReadOnlyList<SpanExample> examples, IReadOnlyList<SpanWindow> windows, IReadOnlyList<(float[] Start, float[] End)> logits, int maxAnswerLength)
    {
        if (logits.Count != windows.Count) throw new ArgumentException($"{windows.Count} windows but {logits.Count} logit pairs");
        var best = new (int Window, int Start, int End, float Score)[examples.Count];
        Array.Fill(best, (-1, -1, -1, float.NegativeInfinity));
        for (int w = 0; w < windows.Count; w++)
        {
            var win = windows[w];
            var (s, e, score) = Best(logits[w].Start, logits[w].End, win.ContextStart, win.ContextEnd, maxAnswerLength);
            if (s >= 0 && (best[win.Example].Window < 0 || score > best[win.Example].Score)) best[win.Example] = (w, s, e, score);
        }
        var answers = new SpanAnswer[examples.Count];
        for (int i = 0; i < examples.Count; i++)
        {
            var (w, s, e, score) = best[i];
            if (w < 0) { answers[i] = new SpanAnswer(-1, -1, float.NegativeInfinity, ""); continue; }
            int a = windows[w].Offsets[s].Start, b = windows[w].Offsets[e].End;
            answers[i] = new SpanAnswer(a, b, score, examples[i].Context[a..b]);
        }
        return answers;
    }
}

/// <summary>The span-extraction loss: cross-entropy of the start and of the end position over the candidate tokens, averaged.</summary>
public static class SpanExtractionLoss
{
    /// <summary>
    /// <c>(CE(start) + CE(end)) / 2</c>, each the mean over the batch of the cross-entropy of the gold position, the logits
    /// of non-candidate tokens (question, added tokens other than [CLS], padding) set to −∞.
    /// </summary>
    /// <param name="logits">(B, T, 2): start and end logits.</param>
    /// <param name="candidates">(B, T) bool: the positions an answer may start or end at ([CLS] and the context).</param>
    /// <param name="starts">(B) int64 gold start positions (must be candidates).</param>
    /// <param name="ends">(B) int64 gold end positions (must be candidates).</param>
    public static Tensor Compute(Tensor logits, Tensor candidates, Tensor starts, Tensor ends)
    {
        using var scope = torch.NewDisposeScope();
        var masked = logits.MaskedFill(candidates.logical_not().unsqueeze(-1), float.NegativeInfinity);   // (B, T, 2)
        var ls = nn.functional.cross_entropy(masked[.., .., 0], starts);
        var le = nn.functional.cross_entropy(masked[.., .., 1], ends);
        return ((ls + le) / 2).MoveToOuterDisposeScope();
    }
}

/// <summary>A padded batch of <see cref="SpanWindow"/>s.</summary>
public sealed class SpanBatch : IDisposable
{
    internal SpanBatch(Tensor ids, Tensor segments, Tensor mask, Tensor candidates, Tensor starts, Tensor ends)
    {
        (Ids, Segments, Mask, Candidates, Starts, Ends) = (ids, segments, mask, candidates, starts, ends);
    }

    /// <summary>Token ids (B, T).</summary>
    public Tensor Ids { get; }
    /// <summary>Segment ids (B, T).</summary>
    public Tensor Segments { get; }
    /// <summary>1 at real tokens (B, T).</summary>
    public Tensor Mask { get; }
    /// <summary>[CLS] and the context tokens (B, T) bool.</summary>
    public Tensor Candidates { get; }
    /// <summary>Gold starts (B) int64 (0 for unlabelled windows).</summary>
    public Tensor Starts { get; }
    /// <summary>Gold ends (B) int64.</summary>
    public Tensor Ends { get; }

    /// <inheritdoc/>
    public void Dispose() { Ids.Dispose(); Segments.Dispose(); Mask.Dispose(); Candidates.Dispose(); Starts.Dispose(); Ends.Dispose(); }
}

/// <summary>
/// Span-extraction reading comprehension (SQuAD / CMRC2018): an encoder and a dense layer to a start and an end logit per
/// token; trained with <see cref="SpanExtractionLoss"/> on <see cref="SpanWindows"/>, decoded with <see cref="SpanDecoding"/>.
/// Parameters <c>encoder.*</c> and <c>span.*</c>.
/// </summary>
public sealed class SpanExtractor : nn.Module, ITaskHead
{
    readonly SpanExtractorOptions options;
#pragma warning disable IDE0044
    TransformerModel encoder;
    Linear span;
#pragma warning restore IDE0044

    /// <summary>Puts a new start/end head on <paramref name="encoder"/> (built with <see cref="Application.Encoder"/>).</summary>
    public SpanExtractor(TransformerModel encoder, SpanExtractorOptions? options = null) : base("span_extractor")
    {
        this.options = options ?? new();
        this.encoder = TaskHeads.RequireEncoder(encoder);
        span = nn.Linear(encoder.HiddenSize, 2);
        RegisterComponents();
        TaskHeads.Initialize(this, encoder);
    }

    /// <summary>The options.</summary>
    public SpanExtractorOptions Options => options;
    /// <summary>The encoder.</summary>
    public TransformerModel Encoder => encoder;

    /// <inheritdoc/>
    public IEncoder? Engine { get; set; }

    /// <summary>The head alone: hidden states (B, T, H) → start and end logits (B, T, 2).</summary>
    public Tensor HeadLogits(Tensor hidden) => span.forward(hidden);

    /// <summary>Start and end logits (B, T, 2).</summary>
    public Tensor Logits(Tensor ids, Tensor segments, Tensor mask)
    {
        using var scope = torch.NewDisposeScope();
        using var output = TaskHeads.Encode(this, ids, segments, mask);
        var x = output.LastHiddenState;                                            // (B, T, H)
        if (training && options.Dropout > 0) x = nn.functional.dropout(x, options.Dropout, true);
        return span.forward(x).MoveToOuterDisposeScope();
    }

    /// <summary>Pads windows into a batch on the encoder's device; unlabelled windows get targets 0.</summary>
    public SpanBatch Prepare(IReadOnlyList<SpanWindow> windows, int paddingId)
    {
        var (ids, mask) = SequencePadding.Pad(windows.Select(w => (IReadOnlyList<int>)w.Ids).ToList(), paddingId, encoder.Device);
        var segments = SequencePadding.PadValues(windows.Select(w => (IReadOnlyList<int>)w.Segments).ToList(), 0, encoder.Device);
        long t = ids.shape[1];
        var cand = new bool[windows.Count * t];
        for (int b = 0; b < windows.Count; b++)
        {
            cand[b * t] = true;
            for (int i = windows[b].ContextStart; i < windows[b].ContextEnd; i++) cand[b * t + i] = true;
        }
        var candidates = torch.tensor(cand, [windows.Count, t], device: encoder.Device);
        var starts = torch.tensor(windows.Select(w => (long)Math.Max(0, w.StartLabel)).ToArray(), device: encoder.Device);
        var ends = torch.tensor(windows.Select(w => (long)Math.Max(0, w.EndLabel)).ToArray(), device: encoder.Device);
        return new SpanBatch(ids, segments, mask, candidates, starts, ends);
    }

    /// <summary>The training loss of a batch.</summary>
    public Tensor Loss(SpanBatch batch)
    {
        using var scope = torch.NewDisposeScope();
        var logits = Logits(batch.Ids, batch.Segments, batch.Mask);
        return SpanExtractionLoss.Compute(logits, batch.Candidates, batch.Starts, batch.Ends).MoveToOuterDisposeScope();
    }

    /// <summary>Start and end logits of each window as plain arrays (evaluation mode, no gradients).</summary>
    public List<(float[] Start, float[] End)> WindowLogits(IReadOnlyList<SpanWindow> windows, int paddingId, int batchSize = 32)
    {
        bool wasTraining = training;
        eval();
        var result = new List<(float[], float[])>(windows.Count);
        try
        {
            for (int b = 0; b < windows.Count; b += batchSize)
            {
                using var scope = torch.NewDisposeScope();
                using var g = torch.no_grad();
                var chunk = windows.Skip(b).Take(batchSize).ToList();
                using var batch = Prepare(chunk, paddingId);
                var logits = Logits(batch.Ids, batch.Segments, batch.Mask).to(ScalarType.Float32).cpu();   // (B, T, 2)
                long t = logits.shape[1];
                var flat = logits.data<float>().ToArray();
                for (int i = 0; i < chunk.Count; i++)
                {
                    var s = new float[t];
                    var e = new float[t];
                    for (int k = 0; k < t; k++) { s[k] = flat[(i * t + k) * 2]; e[k] = flat[(i * t + k) * 2 + 1]; }
                    result.Add((s, e));
                }
            }
        }
        finally { train(wasTraining); }
        return result;
    }

    /// <summary>Answers to <paramref name="examples"/> (their gold answers, if any, are ignored).</summary>
    public SpanAnswer[] Predict(BertWordPieceTokenizer tokenizer, IReadOnlyList<SpanExample> examples, int batchSize = 32)
    {
        var windows = examples.SelectMany((e, i) => SpanWindows.Split(tokenizer, e with { AnswerStart = -1, AnswerEnd = -1 }, i, options).Windows).ToList();
        return SpanDecoding.Merge(examples, windows, WindowLogits(windows, tokenizer.PaddingId, batchSize), options.MaxAnswerLength);
    }
}
