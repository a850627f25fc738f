namespace Bert4Sharp.Tasks;

using Bert4Sharp.Models;
using Bert4Sharp.Tokenization;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

/// <summary>Options of <see cref="MultipleChoice"/>.</summary>
public sealed record MultipleChoiceOptions
{
    /// <summary>How each option's sequence becomes one vector (default: the pooler, else [CLS]).</summary>
    public Pooling Pooling { get; init; } = Pooling.First;
    /// <summary>Dropout on the pooled vector (training only).</summary>
    public double Dropout { get; init; } = 0.1;
}

/// <summary>One option of a question, already tokenized: token ids and segment ids of its whole sequence (with [CLS]/[SEP]).</summary>
/// <param name="Ids">Token ids.</param>
/// <param name="Segments">Segment ids, as long as <paramref name="Ids"/>.</param>
public sealed record ChoiceSequence(int[] Ids, int[] Segments);

/// <summary>A question with its options as sequences; <see cref="Answer"/> is the right option's index (−1: unknown, e.g. a test file).</summary>
/// <param name="Options">One sequence per option (at least one).</param>
/// <param name="Answer">The right option's index, or −1.</param>
public sealed record ChoiceQuestion(IReadOnlyList<ChoiceSequence> Options, int Answer);

/// <summary>
/// A batch of questions expanded to one sequence per real option (questions × their own option counts; padded options
/// are never encoded). <see cref="Counts"/> says how many sequences belong to each question, in order.
/// </summary>
public sealed class ChoiceBatch : IDisposable
{
    internal ChoiceBatch(Tensor ids, Tensor segments, Tensor mask, int[] counts, long[] labels)
    {
        Ids = ids;
        Segments = segments;
        Mask = mask;
        Counts = counts;
        Labels = labels;
    }

    /// <summary>Token ids (N, T), N = sum of <see cref="Counts"/>.</summary>
    public Tensor Ids { get; }
    /// <summary>Segment ids (N, T).</summary>
    public Tensor Segments { get; }
    /// <summary>1 at real tokens (N, T).</summary>
    public Tensor Mask { get; }
    /// <summary>Options per question (Q).</summary>
    public int[] Counts { get; }
    /// <summary>The right option per question (Q; −1 where unknown).</summary>
    public long[] Labels { get; }

    /// <inheritdoc/>
    public void Dispose() { Ids.Dispose(); Segments.Dispose(); Mask.Dispose(); }
}

/// <summary>
/// Multiple choice (C3, CHID; bert4keras's CLUE baselines): every option is encoded with its context as one sequence,
/// the pooled vector goes through dropout and a dense layer to one score, and the scores of a question's options are a
/// softmax over its options (cross-entropy against the right one). Questions with fewer options than the widest in a
/// batch get padded options that are masked out of the softmax, never encoded and never predicted.
/// Parameters <c>encoder.*</c> (as <see cref="TransformerModel"/>) and <c>scorer.*</c>.
/// </summary>
public sealed class MultipleChoice : nn.Module, ITaskHead
{
    readonly MultipleChoiceOptions options;
#pragma warning disable IDE0044
    TransformerModel encoder;
    Linear scorer;
#pragma warning restore IDE0044

    /// <summary>Puts a new one-score head on <paramref name="encoder"/> (built with <see cref="Application.Encoder"/>).</summary>
    public MultipleChoice(TransformerModel encoder, MultipleChoiceOptions? options = null) : base("multiple_choice")
    {
        this.options = options ?? new();
        this.encoder = TaskHeads.RequireEncoder(encoder);
        scorer = nn.Linear(encoder.HiddenSize, 1);
        RegisterComponents();
        TaskHeads.Initialize(this, encoder);
    }

    /// <summary>The options.</summary>
    public MultipleChoiceOptions Options => options;
    /// <summary>The encoder.</summary>
    public TransformerModel Encoder => encoder;

    /// <inheritdoc/>
    public IEncoder? Engine { get; set; }

    /// <summary>Pads every real option's sequence of <paramref name="questions"/> into one (N, T) batch on the encoder's device.</summary>
    /// <exception cref="ArgumentException">A question without options, an answer outside its options, or segments not matching ids.</exception>
    public ChoiceBatch Prepare(IReadOnlyList<ChoiceQuestion> questions, int paddingId)
    {
        if (questions.Count == 0) throw new ArgumentException("the batch has no questions", nameof(questions));
        var ids = new List<IReadOnlyList<int>>();
        var segments = new List<IReadOnlyList<int>>();
        var counts = new int[questions.Count];
        var labels = new long[questions.Count];
        for (int q = 0; q < questions.Count; q++)
        {
            var question = questions[q];
            if (question.Options.Count == 0) throw new ArgumentException($"question {q} of the batch has no options");
            if (question.Answer >= question.Options.Count) throw new ArgumentException($"question {q}: answer {question.Answer} is not one of its {question.Options.Count} options");
            foreach (var o in question.Options)
            {
                if (o.Segments.Length != o.Ids.Length) throw new ArgumentException($"question {q}: an option has {o.Ids.Length} ids but {o.Segments.Length} segment ids");
                ids.Add(o.Ids);
                segments.Add(o.Segments);
            }
            counts[q] = question.Options.Count;
            labels[q] = question.Answer;
        }
        var (idTensor, mask) = SequencePadding.Pad(ids, paddingId, encoder.Device);
        return new ChoiceBatch(idTensor, SequencePadding.PadValues(segments, 0, encoder.Device), mask, counts, labels);
    }

    /// <summary>One score per sequence (N) for ids, segments and mask (N, T).</summary>
    public Tensor Scores(Tensor ids, Tensor segments, Tensor mask)
    {
        using var scope = torch.NewDisposeScope();
        using var output = TaskHeads.Encode(this, ids, segments, mask, Pool.NeedsHiddenStates(options.Pooling));
        var x = Pool.Apply(options.Pooling, output, mask);                                // (N, H)
        if (training && options.Dropout > 0) x = nn.functional.dropout(x, options.Dropout, true);
        return scorer.forward(x).squeeze(-1).MoveToOuterDisposeScope();                    // (N)
    }

    /// <summary>The mean cross-entropy over the batch's questions (each a softmax over its own options).</summary>
    /// <exception cref="ArgumentException">A question without a known answer.</exception>
    public Tensor Loss(ChoiceBatch batch)
    {
        using var scope = torch.NewDisposeScope();
        var s = Scores(batch.Ids, batch.Segments, batch.Mask);
        return MultipleChoiceLoss.Compute(s, batch.Counts, batch.Labels).MoveToOuterDisposeScope();
    }

    /// <summary>The chosen option of each question (argmax over its real options), in evaluation mode.</summary>
    public int[] Predict(IReadOnlyList<ChoiceQuestion> questions, int paddingId, int batchSize = 8)
    {
        bool wasTraining = training;
        eval();
        var result = new List<int>(questions.Count);
        try
        {
            for (int b = 0; b < questions.Count; b += batchSize)
            {
                using var scope = torch.NewDisposeScope();
                using var g = torch.no_grad();
                using var batch = Prepare(questions.Skip(b).Take(batchSize).ToList(), paddingId);
                var flat = Scores(batch.Ids, batch.Segments, batch.Mask).to(float32).cpu().data<float>().ToArray();
                result.AddRange(MultipleChoiceDecoding.Decode(flat, batch.Counts));
            }
        }
        finally { train(wasTraining); }
        return [.. result];
    }
}

/// <summary>Option padding and the cross-entropy of <see cref="MultipleChoice"/>.</summary>
public static class MultipleChoiceLoss
{
    /// <summary>
    /// Scatters the flat scores of real options (N = sum of <paramref name="counts"/>) into (Q, K), K = the most
    /// options of any question; padded options hold −∞ (they get zero probability and zero gradient).
    /// </summary>
    /// <returns>Scores (Q, K) and the bool mask (Q, K) of real options.</returns>
    /// <exception cref="ArgumentException">The counts do not add up to the scores, or a question has no option.</exception>
    public static (Tensor Scores, Tensor Mask) Pad(Tensor flat, IReadOnlyList<int> counts)
    {
        if (flat.dim() != 1) throw new ArgumentException($"expected flat scores (N), got shape [{string.Join(", ", flat.shape)}]");
        if (counts.Count == 0 || counts.Any(c => c < 1)) throw new ArgumentException("every question needs at least one option");
        if (counts.Sum() != flat.shape[0]) throw new ArgumentException($"the option counts add up to {counts.Sum()}, but there are {flat.shape[0]} scores");
        using var scope = torch.NewDisposeScope();
        int q = counts.Count, k = counts.Max();
        var positions = new long[flat.shape[0]];
        var real = new bool[q * k];
        for (int i = 0, n = 0; i < q; i++)
            for (int j = 0; j < counts[i]; j++) { positions[n++] = (long)i * k + j; real[i * k + j] = true; }
        var index = torch.tensor(positions, device: flat.device);
        var padded = torch.full(q * k, double.NegativeInfinity, dtype: flat.dtype, device: flat.device).index_copy(0, index, flat);
        return (padded.view(q, k).MoveToOuterDisposeScope(), torch.tensor(real, device: flat.device).view(q, k).MoveToOuterDisposeScope());
    }

    /// <summary>The mean over questions of −log softmax(scores of its real options)[answer].</summary>
    /// <param name="flat">Scores of the real options (N), question by question.</param>
    /// <param name="counts">Options per question (Q).</param>
    /// <param name="labels">The right option per question (Q).</param>
    /// <exception cref="ArgumentException">A label outside its question's options.</exception>
    public static Tensor Compute(Tensor flat, IReadOnlyList<int> counts, IReadOnlyList<long> labels)
    {
        if (labels.Count != counts.Count) throw new ArgumentException($"{labels.Count} labels for {counts.Count} questions");
        for (int i = 0; i < labels.Count; i++)
            if (labels[i] < 0 || labels[i] >= counts[i]) throw new ArgumentException($"question {i}: label {labels[i]} is not one of its {counts[i]} options (a question without an answer cannot be trained on)");
        using var scope = torch.NewDisposeScope();
        var (scores, _) = Pad(flat, counts);                                               // (Q, K), −∞ at padded options
        var target = torch.tensor(labels.ToArray(), device: flat.device);
        return nn.functional.cross_entropy(scores, target).MoveToOuterDisposeScope();
    }
}

/// <summary>Decoding of <see cref="MultipleChoice"/> scores on plain arrays (shared by any engine).</summary>
public static class MultipleChoiceDecoding
{
    /// <summary>The argmax of each question's real options from flat scores (question by question, <paramref name="counts"/> each); ties take the first.</summary>
    /// <exception cref="ArgumentException">The counts do not add up to the scores.</exception>
    public static int[] Decode(IReadOnlyList<float> flat, IReadOnlyList<int> counts)
    {
        if (counts.Sum() != flat.Count) throw new ArgumentException($"the option counts add up to {counts.Sum()}, but there are {flat.Count} scores");
        var result = new int[counts.Count];
        for (int i = 0, n = 0; i < counts.Count; n += counts[i], i++)
            result[i] = Argmax(flat, n, counts[i]);
        return result;
    }

    /// <summary>The argmax of each row of padded scores (Q, K) over the options <paramref name="mask"/> marks real (row-major arrays); ties take the first.</summary>
    /// <exception cref="ArgumentException">Mismatched lengths, or a row without a real option.</exception>
    public static int[] DecodePadded(IReadOnlyList<float> scores, IReadOnlyList<bool> mask, int options)
    {
        if (options < 1 || scores.Count != mask.Count || scores.Count % options != 0)
            throw new ArgumentException($"{scores.Count} scores and {mask.Count} mask entries do not make rows of {options} options");
        var result = new int[scores.Count / options];
        for (int i = 0; i < result.Length; i++)
        {
            int best = -1;
            for (int j = 0; j < options; j++)
                if (mask[i * options + j] && (best < 0 || scores[i * options + j] > scores[i * options + best])) best = j;
            result[i] = best >= 0 ? best : throw new ArgumentException($"question {i} has no real option");
        }
        return result;
    }

    static int Argmax(IReadOnlyList<float> s, int from, int count)
    {
        int best = 0;
        for (int j = 1; j < count; j++) if (s[from + j] > s[from + best]) best = j;
        return best;
    }
}

/// <summary>How C3 and CHID questions become <see cref="ChoiceSequence"/>s.</summary>
public static class ChoiceInputs
{
    /// <summary>The blank CHID (FewCLUE) marks in its content.</summary>
    public const string Blank = "#idiom#";

    /// <summary>Token ids of <paramref name="text"/> without the start and end tokens.</summary>
    public static int[] Pieces(BertWordPieceTokenizer tokenizer, string text)
    {
        var ids = tokenizer.Encode(text).Ids;
        int from = tokenizer.StartId >= 0 ? 1 : 0, to = ids.Count - (tokenizer.EndId >= 0 ? 1 : 0);
        return [.. ids.Skip(from).Take(to - from)];
    }

    /// <summary>
    /// <c>[CLS] passage [SEP] question [SEP] option [SEP]</c> (segment 0 up to the first [SEP], 1 after) in at most
    /// <paramref name="maxLength"/> tokens. The question and option stay whole unless together they exceed half of the
    /// room (then the longer of the two loses tokens from its end); the passage takes the rest and loses tokens from its
    /// END (its beginning is kept, as in bert4keras's C3 baseline).
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="maxLength"/> leaves no room for the four special tokens and one token of each part.</exception>
    public static ChoiceSequence Pair(IReadOnlyList<int> passage, IReadOnlyList<int> question, IReadOnlyList<int> option, int maxLength, int startId, int endId)
    {
        if (maxLength < 8) throw new ArgumentOutOfRangeException(nameof(maxLength), $"a passage/question/option sequence needs at least 8 tokens, got {maxLength}");
        int room = maxLength - 4;
        int q = question.Count, o = option.Count, half = room / 2;
        while (q + o > half) { if (q >= o) q--; else o--; }
        int p = Math.Min(passage.Count, room - q - o);
        var ids = new List<int>(p + q + o + 4) { startId };
        ids.AddRange(passage.Take(p));
        ids.Add(endId);
        int first = ids.Count;
        ids.AddRange(question.Take(q));
        ids.Add(endId);
        ids.AddRange(option.Take(o));
        ids.Add(endId);
        var segments = new int[ids.Count];
        segments.AsSpan(first).Fill(1);
        return new ChoiceSequence([.. ids], segments);
    }

    /// <summary>
    /// Fills the first <see cref="Blank"/> of <paramref name="content"/> with <paramref name="candidate"/> and keeps at
    /// most <paramref name="contextCodePoints"/> code points of context around it: the longer side loses code points
    /// from its far end, one at a time, so the blank stays near the middle. Surrogate pairs are never split; any other
    /// blank in the kept context becomes <c>_____</c>.
    /// </summary>
    /// <returns>The filled text and the candidate's UTF-16 range [Start, End) in it.</returns>
    /// <exception cref="ArgumentException">No blank in <paramref name="content"/>.</exception>
    public static (string Text, int Start, int End) FillBlank(string content, string candidate, int contextCodePoints)
    {
        int at = content.IndexOf(Blank, StringComparison.Ordinal);
        if (at < 0) throw new ArgumentException($"the content has no {Blank} blank: '{(content.Length > 40 ? content[..40] + "…" : content)}'");
        var left = CodePoints(content[..at].Replace(Blank, "_____", StringComparison.Ordinal));
        var right = CodePoints(content[(at + Blank.Length)..].Replace(Blank, "_____", StringComparison.Ordinal));
        int l = 0, r = right.Count;                                                        // keep left[l..], right[..r]
        while (left.Count - l + r > Math.Max(0, contextCodePoints))
        {
            if (left.Count - l >= r) l++; else r--;
        }
        string before = string.Concat(left.Skip(l)), after = string.Concat(right.Take(r));
        return (before + candidate + after, before.Length, before.Length + candidate.Length);
    }

    /// <summary>
    /// A CHID candidate's sequence: <see cref="FillBlank"/> with room for <paramref name="maxLength"/> tokens, encoded as
    /// one text; the candidate's tokens get segment 1 (the rest 0) so the model sees where the blank was.
    /// </summary>
    public static ChoiceSequence Cloze(BertWordPieceTokenizer tokenizer, string content, string candidate, int maxLength)
    {
        int candidateLength = CodePoints(candidate).Count;
        var (text, start, end) = FillBlank(content, candidate, maxLength - 2 - candidateLength);
        var encoded = tokenizer.Encode(text, maxLength: maxLength);
        var segments = new int[encoded.Count];
        for (int i = 0; i < encoded.Count; i++)
        {
            var s = encoded.Offsets[i];
            if (!s.IsEmpty && s.Start < end && s.End > start) segments[i] = 1;
        }
        return new ChoiceSequence([.. encoded.Ids], segments);
    }

    static List<string> CodePoints(string s)
    {
        var list = new List<string>(s.Length);
        for (int i = 0; i < s.Length; i++)
            list.Add(char.IsHighSurrogate(s[i]) && i + 1 < s.Length && char.IsLowSurrogate(s[i + 1]) ? s.Substring(i++, 2) : s[i].ToString());
        return list;
    }
}
