namespace Bert4Sharp.Tests.Tasks;

using Bert4Sharp.Checkpoints;
using Bert4Sharp.Tasks;
using Bert4Sharp.Tokenization;
using TorchSharp;
using static TorchSharp.torch;

/// <summary>
/// The multiple-choice head's option padding, loss and decoding against tests/reference/make_multiple_choice_refs.py
/// (PyTorch, float64, the loss computed question by question without padding), and the C3 / CHID input builders.
/// </summary>
public sealed class MultipleChoiceTests
{
    static readonly string RefPath = TestPaths.Fixture("tasks", "multiple_choice", "refs.safetensors");

    static Tensor Ref(string name)
    {
        using var ck = Checkpoint.Open(RefPath);
        return ck.ReadTensor(name);
    }

    static int[] Counts() => [.. Ref("counts").data<long>().ToArray().Select(c => (int)c)];

    [Fact]
    public void Padding_loss_and_gradients_match_the_reference()
    {
        using var scope = torch.NewDisposeScope();
        var pooled = Ref("pooled").requires_grad_();
        var weight = Ref("scorer.weight").requires_grad_();
        var bias = Ref("scorer.bias").requires_grad_();
        var flat = nn.functional.linear(pooled, weight, bias).squeeze(-1);                // (N)
        Close.Assert(flat, Ref("flat"), "flat scores");
        int[] counts = Counts();

        var (padded, mask) = MultipleChoiceLoss.Pad(flat, counts);
        Close.Assert(padded, Ref("padded"), "padded scores (−∞ at padded options)");
        Assert.Equal(new bool[] { true, true, true, true, true, true, false, false, true, true, true, false }, mask.reshape(-1).data<bool>().ToArray());

        var loss = MultipleChoiceLoss.Compute(flat, counts, Ref("labels").data<long>().ToArray());
        Close.Assert(loss, Ref("loss"), "loss");
        loss.backward();
        Close.Assert(pooled.grad!, Ref("grad.pooled"), "d loss / d pooled");
        Close.Assert(weight.grad!, Ref("grad.weight"), "d loss / d weight");
        Close.Assert(bias.grad!, Ref("grad.bias"), "d loss / d bias");
    }

    [Fact]
    public void Decoding_ignores_padded_options()
    {
        using var scope = torch.NewDisposeScope();
        var flat = Ref("flat").to(float32).data<float>().ToArray();
        var expected = Ref("decoded").data<long>().ToArray().Select(x => (int)x).ToArray();
        Assert.Equal(expected, MultipleChoiceDecoding.Decode(flat, Counts()));

        // Padded layout: the padded slots hold the highest scores, and are never chosen.
        var padded = Ref("padded").to(float32).nan_to_num(posinf: 1e6, neginf: 1e6).data<float>().ToArray();
        var mask = new[] { true, true, true, true, true, true, false, false, true, true, true, false };
        Assert.Equal(expected, MultipleChoiceDecoding.DecodePadded(padded, mask, 4));
        Assert.Throws<ArgumentException>(() => MultipleChoiceDecoding.DecodePadded([1f, 2f], [false, false], 2));
    }

    [Fact]
    public void The_loss_refuses_a_label_outside_its_question()
    {
        using var scope = torch.NewDisposeScope();
        var flat = torch.zeros(5);
        var e = Assert.Throws<ArgumentException>(() => MultipleChoiceLoss.Compute(flat, [3, 2], [0, 2]));
        Assert.Contains("question 1", e.Message);
        Assert.Throws<ArgumentException>(() => MultipleChoiceLoss.Pad(flat, [3, 3]));
    }

    [Fact]
    public void A_blank_is_filled_with_context_kept_around_it_and_no_surrogate_pair_split()
    {
        // 𠀀 𠀁 𠀂 (U+20000..) are one code point, two UTF-16 units each.
        const string content = "甲乙𠀀丙#idiom#丁𠀁戊己庚";
        var (full, s, e) = ChoiceInputs.FillBlank(content, "画龙𠀂睛", 100);
        Assert.Equal("甲乙𠀀丙画龙𠀂睛丁𠀁戊己庚", full);
        Assert.Equal("画龙𠀂睛", full[s..e]);

        // 4 code points of context: 2 on each side, the far ends dropped first.
        var (cut, s2, e2) = ChoiceInputs.FillBlank(content, "画龙𠀂睛", 4);
        Assert.Equal("𠀀丙画龙𠀂睛丁𠀁", cut);
        Assert.Equal("画龙𠀂睛", cut[s2..e2]);
        Assert.True(cut.EnumerateRunes().All(r => r.Value != 0xFFFD), "a surrogate pair was split");

        // A second blank in the context becomes underscores; no blank at all is an error naming the content.
        Assert.Equal("a中b_____c", ChoiceInputs.FillBlank("a#idiom#b#idiom#c", "中", 20).Text);
        var err = Assert.Throws<ArgumentException>(() => ChoiceInputs.FillBlank("没有空", "中", 10));
        Assert.Contains("#idiom#", err.Message);
    }

    static BertWordPieceTokenizer Tokenizer() =>
        new(new Vocabulary(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "甲", "乙", "丙", "丁", "画", "龙", "睛", "问", "答"]));

    [Fact]
    public void A_cloze_marks_the_candidate_tokens_with_segment_one()
    {
        var tokenizer = Tokenizer();
        var seq = ChoiceInputs.Cloze(tokenizer, "甲乙#idiom#丙丁", "画龙𠀂睛", 32);
        // [CLS] 甲 乙 画 龙 [UNK](𠀂) 睛 丙 丁 [SEP]
        Assert.Equal(new[] { 2, 5, 6, 9, 10, 1, 11, 7, 8, 3 }, seq.Ids);
        Assert.Equal(new[] { 0, 0, 0, 1, 1, 1, 1, 0, 0, 0 }, seq.Segments);

        // With 8 tokens the context keeps one character each side (8 − 2 specials − 4 candidate = 2).
        var cut = ChoiceInputs.Cloze(tokenizer, "甲乙#idiom#丙丁", "画龙𠀂睛", 8);
        Assert.Equal(new[] { 2, 6, 9, 10, 1, 11, 7, 3 }, cut.Ids);
    }

    [Fact]
    public void A_pair_keeps_question_and_option_and_cuts_the_passage_end()
    {
        int[] passage = [.. Enumerable.Range(100, 20)], question = [7, 8], option = [9];
        var seq = ChoiceInputs.Pair(passage, question, option, 12, startId: 2, endId: 3);
        Assert.Equal(new[] { 2, 100, 101, 102, 103, 104, 3, 7, 8, 3, 9, 3 }, seq.Ids);
        Assert.Equal(new[] { 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1 }, seq.Segments);

        // Question + option longer than half the room: the longer one loses its end.
        var longer = ChoiceInputs.Pair(passage, [.. Enumerable.Range(50, 10)], option, 12, 2, 3);
        Assert.Equal(new[] { 2, 100, 101, 102, 103, 3, 50, 51, 52, 3, 9, 3 }, longer.Ids);
        Assert.Throws<ArgumentOutOfRangeException>(() => ChoiceInputs.Pair(passage, question, option, 6, 2, 3));
    }
}
