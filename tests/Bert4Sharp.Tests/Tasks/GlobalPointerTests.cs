namespace Bert4Sharp.Tests.Tasks;

using Bert4Sharp.Checkpoints;
using Bert4Sharp.Tasks;
using TorchSharp;
using static TorchSharp.torch;

/// <summary>
/// GlobalPointer, EfficientGlobalPointer, their losses and decoding against tests/reference/make_global_pointer_refs.py
/// (a PyTorch port of bert4keras's layers and multilabel cross-entropies, float64). The modules run in float64 and are
/// compared with <see cref="Close"/>'s float64 defaults; a float32 run is compared at float32 bounds.
/// </summary>
public sealed class GlobalPointerTests
{
    const int B = 2, T = 8, H = 16, Types = 3, D = 8;
    static readonly string RefPath = TestPaths.Fixture("tasks", "global_pointer", "refs.safetensors");

    static Tensor Ref(string name)
    {
        using var ck = Checkpoint.Open(RefPath);
        return ck.ReadTensor(name);
    }

    static GlobalPointerHead Head(string kind, bool rope = true, bool tril = true, ScalarType dtype = ScalarType.Float64)
    {
        var options = new GlobalPointerOptions { Types = Types, HeadSize = D, Rope = rope, TrilMask = tril };
        GlobalPointerHead head = kind == "gp" ? new GlobalPointer(H, options) : new EfficientGlobalPointer(H, options);
        head.to(dtype);
        using var ck = Checkpoint.Open(RefPath);
        using (torch.no_grad())
            foreach (var (name, p) in head.named_parameters())
                p.copy_(ck.ReadTensor($"{kind}.{name}"));
        return head;
    }

    static List<GlobalPointerSpan>[] Gold()
    {
        var rows = Ref("gold").data<long>().ToArray();
        var gold = Enumerable.Range(0, B).Select(_ => new List<GlobalPointerSpan>()).ToArray();
        for (int r = 0; r < rows.Length; r += 4) gold[rows[r]].Add(new GlobalPointerSpan((int)rows[r + 1], (int)rows[r + 2], (int)rows[r + 3]));
        return gold;
    }

    [Theory]
    [InlineData("gp", true), InlineData("gp", false), InlineData("egp", true), InlineData("egp", false)]
    public void ScoresMatchTheReference(string kind, bool ropeTril)
    {
        using var head = Head(kind, ropeTril, ropeTril);
        using var scores = head.forward(Ref("hidden"), Ref("mask"));
        var expected = Ref($"{kind}.{(ropeTril ? "rope_tril" : "plain")}.scores");
        Close.Assert(scores, expected, $"{kind} scores");
        // padding rows/columns are −∞, and with the mask the lower triangle too
        Assert.True(double.IsNegativeInfinity(scores[1, 0, 6, 2].item<double>()));
        Assert.Equal(ropeTril, double.IsNegativeInfinity(scores[0, 0, 5, 2].item<double>()));
    }

    [Theory]
    [InlineData("gp"), InlineData("egp")]
    public void Float32ScoresMatchTheReference(string kind)
    {
        using var head = Head(kind, dtype: ScalarType.Float32);
        using var scores = head.forward(Ref("hidden").to(ScalarType.Float32), Ref("mask"));
        var expected = Ref($"{kind}.rope_tril.scores");
        // float32 weights and inputs are the float64 ones rounded: the error follows the scores' scale
        double atol = Close.AtolAtScale(expected.nan_to_num(0, 0, 0));
        Close.Assert(scores.to(ScalarType.Float64), expected, $"{kind} float32 scores", atol: atol, rtol: Close.Float32Rtol);
    }

    [Fact]
    public void NoMaskMeansEveryTokenIsReal()
    {
        using var head = Head("gp");
        var hidden = Ref("hidden")[..1];
        using var a = head.forward(hidden, null);
        using var b = head.forward(hidden, torch.ones(1, T, ScalarType.Bool));
        Close.Assert(a, b, "no mask vs all-true mask");
    }

    [Theory]
    [InlineData("gp"), InlineData("egp")]
    public void LossesAndGradientsMatchTheReference(string kind)
    {
        using var head = Head(kind);
        var gold = Gold();
        foreach (var form in new[] { GlobalPointerLossForm.Dense, GlobalPointerLossForm.Sparse })
        {
            string f = form == GlobalPointerLossForm.Dense ? "dense" : "sparse";
            using var hidden = Ref("hidden").requires_grad_(true);
            var scores = head.forward(hidden, Ref("mask"));
            Close.Assert(GlobalPointerLoss.Rows(scores, gold, form), Ref($"{kind}.{f}_rows"), $"{kind} {f} rows");
            var options = new GlobalPointerLossOptions
            {
                Form = form,
                Reduction = form == GlobalPointerLossForm.Dense ? GlobalPointerReduction.MeanOverRows : GlobalPointerReduction.SumTypesMeanBatch,
            };
            var loss = GlobalPointerLoss.Compute(scores, gold, options);
            Close.Assert(loss, Ref($"{kind}.{f}_loss"), $"{kind} {f} loss");
            loss.backward();
            Close.Assert(hidden.grad!, Ref($"{kind}.{f}_grad"), $"{kind} {f} d loss / d hidden");
        }
    }

    [Theory]
    [InlineData("gp"), InlineData("egp")]
    public void DenseAndSparseAgreeOnTheSameGold(string kind)
    {
        using var head = Head(kind);
        using var scores = head.forward(Ref("hidden"), Ref("mask"));
        var gold = Gold();
        // the sparse form (mask_zero) never counts cell (0, 0) as a negative: take it out of the dense form too
        using var without00 = scores.clone();
        without00[.., .., 0, 0] = torch.tensor(double.NegativeInfinity, ScalarType.Float64);
        Close.Assert(GlobalPointerLoss.Rows(scores, gold, GlobalPointerLossForm.Sparse),
            GlobalPointerLoss.Rows(without00, gold, GlobalPointerLossForm.Dense), $"{kind} sparse vs dense rows");
        Close.AssertNot(GlobalPointerLoss.Rows(scores, gold, GlobalPointerLossForm.Dense),
            GlobalPointerLoss.Rows(without00, gold, GlobalPointerLossForm.Dense), "dense counts (0, 0) as a negative", atol: 1e-6);
    }

    [Fact]
    public void MultilabelDenseEqualsSparseWithoutMaskZero()
    {
        var g = new Generator(7);
        using var scores = torch.randn([4, 3, 10], generator: g, dtype: ScalarType.Float64) * 3;
        scores[.., .., 9] = torch.tensor(double.NegativeInfinity, ScalarType.Float64);   // an excluded class
        long[] idx = [0, 4, 2, 3, 5, 8, 1, 7, 6, 2, 3, 8, 0, 1, 4, 5, 6, 7, 2, 8, 3, 5, 1, 0];
        using var positives = torch.tensor(idx, [4, 3, 2]);
        using var labels = torch.zeros(4, 3, 10, ScalarType.Float64).scatter_(-1, positives, torch.ones(4, 3, 2, ScalarType.Float64));
        var dense = MultilabelLoss.Dense(scores, labels);
        Close.Assert(MultilabelLoss.Sparse(scores, positives), dense, "sparse (no mask_zero) vs dense");
        // the blog's formula, written out: log(1 + Σ_neg e^s) + log(1 + Σ_pos e^−s)
        var s = scores.data<double>().ToArray();
        var expected = new double[12];
        for (int r = 0; r < 12; r++)
        {
            double neg = 1, pos = 1;
            for (int c = 0; c < 9; c++)
                if (idx[2 * r] == c || idx[2 * r + 1] == c) pos += Math.Exp(-s[r * 10 + c]); else neg += Math.Exp(s[r * 10 + c]);
            expected[r] = Math.Log(neg) + Math.Log(pos);
        }
        Close.Assert(dense.reshape(-1).data<double>().ToArray(), expected, "dense vs the written-out formula");
    }

    [Theory]
    [InlineData("gp"), InlineData("egp")]
    public void DecodingMatchesTheReference(string kind)
    {
        using var head = Head(kind);
        using var scores = head.forward(Ref("hidden"), Ref("mask"));
        var decoded = GlobalPointerDecoding.Decode(scores);
        var rows = Ref($"{kind}.decoded").data<long>().ToArray();
        var expected = Enumerable.Range(0, B).Select(_ => new List<GlobalPointerSpan>()).ToArray();
        for (int r = 0; r < rows.Length; r += 4) expected[rows[r]].Add(new GlobalPointerSpan((int)rows[r + 1], (int)rows[r + 2], (int)rows[r + 3]));
        for (int b = 0; b < B; b++) Assert.Equal(expected[b], decoded[b]);
        Assert.All(decoded[1], s => Assert.True(s.End < 5 && s.Start <= s.End));
        Assert.All(GlobalPointerDecoding.Decode(scores, threshold: 1e6f), Assert.Empty);
    }

    [Fact]
    public void DecodingOnPlainArrays()
    {
        var scores = Enumerable.Repeat(-1f, 2 * 2 * 3 * 3).ToArray();
        scores[1] = 0.5f;                     // b0, type 0, (0, 1)
        scores[9 + 8] = 2f;                   // b0, type 1, (2, 2)
        scores[18 + 4] = 0.1f;                // b1, type 0, (1, 1)
        scores[18 + 5] = float.NegativeInfinity;
        var d = GlobalPointerDecoding.Decode(scores, 2, 2, 3);
        Assert.Equal([new(0, 0, 1), new(1, 2, 2)], d[0]);
        Assert.Equal([new GlobalPointerSpan(0, 1, 1)], d[1]);
        Assert.Equal([new GlobalPointerSpan(1, 2, 2)], GlobalPointerDecoding.Decode(scores, 2, 2, 3, threshold: 1f)[0]);
        var e = Assert.Throws<ArgumentException>(() => GlobalPointerDecoding.Decode(scores, 2, 2, 4));
        Assert.Contains("needs 64", e.Message);
    }

    [Fact]
    public void WithoutTheTriangleMaskStartAfterEndIsAllowed()
    {
        using var head = Head("gp", rope: false, tril: false);
        using var scores = head.forward(Ref("hidden"), Ref("mask"));
        List<GlobalPointerSpan>[] gold = [[new(1, 5, 2)], []];
        using var loss = GlobalPointerLoss.Compute(scores, gold);
        Assert.True(double.IsFinite(loss.item<double>()));
    }

    [Fact]
    public void BadGoldSpansAreRejected()
    {
        using var head = Head("gp");
        using var scores = head.forward(Ref("hidden"), Ref("mask"));
        List<GlobalPointerSpan>[] G(GlobalPointerSpan s) => [[s], []];

        var e = Assert.Throws<ArgumentOutOfRangeException>(() => GlobalPointerLoss.Compute(scores, G(new(0, 2, T))));
        Assert.Contains("positions must lie in the sequence [0, 8)", e.Message);
        e = Assert.Throws<ArgumentOutOfRangeException>(() => GlobalPointerLoss.Compute(scores, G(new(0, -1, 2))));
        Assert.Contains("positions", e.Message);
        e = Assert.Throws<ArgumentOutOfRangeException>(() => GlobalPointerLoss.Compute(scores, G(new(3, 1, 2))));
        Assert.Contains("unknown type 3", e.Message);
        // on padding (the second item has 5 tokens) or below the diagonal: a masked cell
        var a = Assert.Throws<ArgumentException>(() => GlobalPointerLoss.Compute(scores, [[], [new(0, 2, 6)]]));
        Assert.Contains("gold[1] span (type 0, 2..6) lies on a masked cell", a.Message);
        a = Assert.Throws<ArgumentException>(() => GlobalPointerLoss.Compute(scores, G(new(0, 4, 2))));
        Assert.Contains("start > end", a.Message);
        a = Assert.Throws<ArgumentException>(() => GlobalPointerLoss.Compute(scores, G(new(0, 0, 0)), new() { Form = GlobalPointerLossForm.Sparse }));
        Assert.Contains("cell (0, 0) as padding", a.Message);
        a = Assert.Throws<ArgumentException>(() => GlobalPointerLoss.Compute(scores, [[]]));
        Assert.Contains("gold has 1 batch items but the scores have 2", a.Message);
        // a span listed twice counts once, in both forms
        foreach (var form in new[] { GlobalPointerLossForm.Dense, GlobalPointerLossForm.Sparse })
            Close.Assert(GlobalPointerLoss.Rows(scores, [[new(0, 1, 3), new(0, 1, 3)], []], form),
                GlobalPointerLoss.Rows(scores, [[new(0, 1, 3)], []], form), $"duplicate gold, {form}");
    }

    [Fact]
    public void BadInputsAreRejected()
    {
        using var head = Head("egp");
        var a = Assert.Throws<ArgumentException>(() => head.forward(torch.zeros(2, T, H + 1, ScalarType.Float64), null));
        Assert.Contains($"hidden states must be (B, T, {H})", a.Message);
        a = Assert.Throws<ArgumentException>(() => head.forward(torch.zeros(2, T, H, ScalarType.Float64), torch.ones(2, T + 1)));
        Assert.Contains("mask must be (B, T) = (2, 8)", a.Message);
        Assert.Throws<ArgumentOutOfRangeException>(() => new GlobalPointer(H, new GlobalPointerOptions { Types = 0 }));
        Assert.Throws<ArgumentOutOfRangeException>(() => new EfficientGlobalPointer(H, new GlobalPointerOptions { Types = 2, HeadSize = 7 }));
        using var s = torch.zeros(2, 5, ScalarType.Float64);
        var r = Assert.Throws<ArgumentOutOfRangeException>(() => MultilabelLoss.Sparse(s, torch.tensor(new long[] { 1, 5 }, [2, 1])));
        Assert.Contains("[0, 5)", r.Message);
        a = Assert.Throws<ArgumentException>(() => MultilabelLoss.Dense(s, torch.zeros(2, 4)));
        Assert.Contains("labels must have the scores' shape", a.Message);
    }
}
