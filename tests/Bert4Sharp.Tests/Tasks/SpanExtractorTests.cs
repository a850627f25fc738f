namespace Bert4Sharp.Tests.Tasks;

using Bert4Sharp.Checkpoints;
using Bert4Sharp.Models;
using Bert4Sharp.Tasks;
using Bert4Sharp.Tasks.Clue;
using Bert4Sharp.Tokenization;
using Bert4Sharp.Training;
using TorchSharp;
using static TorchSharp.torch;

/// <summary>
/// The span-extraction head: window splitting and gold mapping on hand cases (a non-BMP character, answers across window
/// boundaries), decoding against a brute-force enumeration, merging back to context text, and the head + loss against
/// tests/reference/make_span_extractor_refs.py (float64).
/// </summary>
public sealed class SpanExtractorTests
{
    static readonly string RefPath = TestPaths.Fixture("tasks", "span_extractor", "refs.safetensors");

    // 𠀀 (U+20000) is a CJK character outside the BMP: its own token, [UNK] here, two UTF-16 units long.
    const string Context = "甲乙𠀀丙丁戊己";
    static readonly BertWordPieceTokenizer Tokenizer = new(new Vocabulary(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "问", "甲", "乙", "丙", "丁", "戊", "己"]));

    static Tensor Ref(string name)
    {
        using var ck = Checkpoint.Open(RefPath);
        return ck.ReadTensor(name);
    }

    [Fact]
    public void Windows_overlap_by_the_stride_and_carry_context_offsets()
    {
        // [CLS] 问 [SEP] + 4 context tokens + [SEP] = 8; stride 2 → context tokens [0,4), [2,6), [4,7)
        var options = new SpanExtractorOptions { MaxLength = 8, DocStride = 2 };
        // the answer 丙丁戊 is UTF-16 [4, 7): context tokens 3..5, whole only in the second window
        var (windows, lost) = SpanWindows.Split(Tokenizer, new SpanExample("问", Context, 4, 7), 5, options);
        Assert.False(lost);
        Assert.Equal(3, windows.Count);
        Assert.All(windows, w => Assert.Equal(5, w.Example));
        Assert.Equal([2, 4, 3, 5, 6, 1, 7, 3], windows[0].Ids);                 // [CLS] 问 [SEP] 甲 乙 𠀀→[UNK] 丙 [SEP]
        Assert.Equal([0, 0, 0, 1, 1, 1, 1, 1], windows[0].Segments);
        Assert.Equal([2, 4, 3, 1, 7, 8, 9, 3], windows[1].Ids);                 // 𠀀 丙 丁 戊
        Assert.Equal([2, 4, 3, 8, 9, 10, 3], windows[2].Ids);                   // 丁 戊 己, shorter
        Assert.Equal((3, 7), (windows[0].ContextStart, windows[0].ContextEnd));
        Assert.Equal((3, 6), (windows[2].ContextStart, windows[2].ContextEnd));
        Assert.Equal(new TokenSpan(2, 4), windows[1].Offsets[3]);               // the surrogate pair
        Assert.Equal(new TokenSpan(4, 5), windows[1].Offsets[4]);
        Assert.True(windows[1].Offsets[0].IsEmpty && windows[1].Offsets[1].IsEmpty && windows[1].Offsets[7].IsEmpty);
        Assert.Equal((0, 0), (windows[0].StartLabel, windows[0].EndLabel));     // cut by the window's end → [CLS]
        Assert.Equal((4, 6), (windows[1].StartLabel, windows[1].EndLabel));
        Assert.Equal((0, 0), (windows[2].StartLabel, windows[2].EndLabel));     // its start is before the window

        var unlabelled = SpanWindows.Split(Tokenizer, new SpanExample("问", Context), 0, options).Windows;
        Assert.All(unlabelled, w => Assert.Equal((-1, -1), (w.StartLabel, w.EndLabel)));
    }

    [Fact]
    public void An_answer_across_every_window_boundary_is_lost_and_a_stride_past_the_window_skips_nothing()
    {
        // room 3, stride 3: context tokens [0,3), [3,6), [6,7); 𠀀丙丁 (tokens 2..4) is whole in none
        var (windows, lost) = SpanWindows.Split(Tokenizer, new SpanExample("问", Context, 2, 6), 0, new SpanExtractorOptions { MaxLength = 7, DocStride = 3 });
        Assert.True(lost);
        Assert.Equal(3, windows.Count);
        Assert.All(windows, w => Assert.Equal((0, 0), (w.StartLabel, w.EndLabel)));

        // a stride larger than the room steps by the room
        var (wide, _) = SpanWindows.Split(Tokenizer, new SpanExample("问", Context), 0, new SpanExtractorOptions { MaxLength = 7, DocStride = 100 });
        Assert.Equal(7, wide.Sum(w => w.ContextEnd - w.ContextStart));
        Assert.Throws<ArgumentException>(() => SpanWindows.Split(Tokenizer, new SpanExample("问", Context), 0, new SpanExtractorOptions { MaxLength = 4 }));
    }

    [Fact]
    public void Merge_takes_the_best_window_and_returns_the_original_text()
    {
        var options = new SpanExtractorOptions { MaxLength = 8, DocStride = 2, MaxAnswerLength = 3 };
        var examples = new[] { new SpanExample("问", Context), new SpanExample("问", "") };
        var windows = examples.SelectMany((e, i) => SpanWindows.Split(Tokenizer, e, i, options).Windows).ToList();
        Assert.Equal(4, windows.Count);                                         // the empty context still gets a window
        var logits = windows.Select(w => (Start: new float[w.Ids.Length], End: new float[w.Ids.Length])).ToList();
        // window 0: 乙𠀀 (positions 4..5) scores 3; window 1: 𠀀丙 (3..4) scores 5; the question token scores 100 but is no candidate
        logits[0].Start[4] = 1; logits[0].End[5] = 2;
        logits[1].Start[3] = 2; logits[1].End[4] = 3;
        logits[1].Start[1] = 100; logits[1].End[1] = 100;
        logits[1].Start[0] = 50; logits[1].End[0] = 50;                         // nor is [CLS]
        var answers = SpanDecoding.Merge(examples, windows, logits, options.MaxAnswerLength);
        Assert.Equal(new SpanAnswer(2, 5, 5, "𠀀丙"), answers[0]);
        Assert.Equal(-1, answers[1].Start);
        Assert.Equal("", answers[1].Text);

        logits[0].End[5] = 4;                                                   // 乙𠀀 ties at 5: the first window wins ties
        Assert.Equal("乙𠀀", SpanDecoding.Merge(examples, windows, logits, options.MaxAnswerLength)[0].Text);
    }

    [Fact]
    public void Decoding_matches_a_brute_force_enumeration()
    {
        var rng = new Random(7);
        for (int trial = 0; trial < 300; trial++)
        {
            int n = rng.Next(1, 20);
            var start = Enumerable.Range(0, n).Select(_ => (float)Math.Round(rng.NextDouble() * 4 - 2, 1)).ToArray();   // rounded: ties happen
            var end = Enumerable.Range(0, n).Select(_ => (float)Math.Round(rng.NextDouble() * 4 - 2, 1)).ToArray();
            int from = rng.Next(0, n), to = rng.Next(from, n + 1), max = rng.Next(1, 6);
            (int, int, float) expected = (-1, -1, float.NegativeInfinity);
            for (int i = 0; i < n; i++)
                for (int j = 0; j < n; j++)
                    if (i <= j && j - i < max && i >= from && j < to && (expected.Item1 < 0 || start[i] + end[j] > expected.Item3))
                        expected = (i, j, start[i] + end[j]);
            Assert.Equal(expected, SpanDecoding.Best(start, end, from, to, max));
        }
    }

    [Fact]
    public void Head_and_loss_match_the_reference()
    {
        var config = new TransformerConfig { VocabSize = 16, HiddenSize = 8, NumHiddenLayers = 1, NumAttentionHeads = 2, IntermediateSize = 16, MaxPositionEmbeddings = 16 };
        using var model = new SpanExtractor(TransformerModels.Create(config, "roformer_v2", Application.Encoder));
        model.to(ScalarType.Float64);
        using (var ck = Checkpoint.Open(RefPath))
        using (torch.no_grad())
            foreach (var (name, p) in model.named_parameters().Where(p => p.name.StartsWith("span.", StringComparison.Ordinal)))
                p.copy_(ck.ReadTensor(name));
        using var hidden = Ref("hidden").requires_grad_(true);
        using var logits = model.HeadLogits(hidden);
        Close.Assert(logits, Ref("logits"), "span logits");
        using var candidates = Ref("candidates").to(ScalarType.Bool);
        using var loss = SpanExtractionLoss.Compute(logits, candidates, Ref("starts"), Ref("ends"));
        Close.Assert(loss, Ref("loss"), "span loss");
        loss.backward();
        Close.Assert(hidden.grad!, Ref("grad"), "d loss / d hidden");
    }

    [Fact]
    public void Training_answers_off_their_start_are_found_by_search_or_dropped()
    {
        CmrcRecord R(string context, string text, int start) => new("c", context, "q", "问", [new CmrcAnswer(text, start)]);
        var (examples, notAtStart, found, notFound) = MrcRuns.TrainingExamples([
            R("𠀀甲乙丙", "乙丙", 2),          // code point 2 = UTF-16 3
            R("甲乙甲乙甲乙", "甲乙", 3),      // off by one: the nearest occurrence (UTF-16 2 or 4: 2 comes first)
            R("甲乙", "戊", 0),
        ]);
        Assert.Equal((1, 1), (notAtStart - found, notFound));
        Assert.Equal(2, examples.Count);
        Assert.Equal((3, 5), (examples[0].AnswerStart, examples[0].AnswerEnd));
        Assert.Equal((2, 4), (examples[1].AnswerStart, examples[1].AnswerEnd));
        Assert.Equal(1, found);
    }
}
