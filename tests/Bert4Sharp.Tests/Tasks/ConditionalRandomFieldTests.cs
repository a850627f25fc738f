namespace Bert4Sharp.Tests.Tasks;

using System.Text.Json;
using Bert4Sharp.Tasks;
using TorchSharp;
using static TorchSharp.torch;

/// <summary>
/// <see cref="ConditionalRandomField"/> against tests/reference/make_crf_refs.py: a brute-force enumeration of every
/// path (log Z, NLL, argmax path; T ≤ 5, L ≤ 4, masks, start/end/transition constraints) and a PyTorch port of
/// bert4keras's CRF loss and Viterbi decoder (checked against the brute force in the script) for B=3, T=20, L=9 with
/// autograd gradients. float64 with float64 defaults unless said otherwise.
/// </summary>
public sealed class ConditionalRandomFieldTests
{
    static readonly JsonElement Root = JsonDocument.Parse(File.ReadAllText(TestPaths.Fixture("tasks", "crf", "crf_refs.json"))).RootElement;

    sealed record Case(int Labels, int Time, int Batch, int[] Lengths, double[] Emissions, double[] Trans, int[]? Starts, int[]? Ends,
        bool[,]? Allowed, long[] Tags, double[] LogZ, double[] Nll, int[][] Paths, JsonElement Json)
    {
        public CrfConstraints Constraints => new() { Starts = Starts, Ends = Ends, AllowedTransitions = Allowed };

        public ConditionalRandomField Crf(ScalarType dtype = ScalarType.Float64, double multiplier = 1)
        {
            var crf = new ConditionalRandomField(Labels, multiplier, Constraints);
            crf.to(dtype);
            using var t = torch.tensor(Trans, dtype: ScalarType.Float64).reshape(Labels, Labels);
            crf.SetTransitions(t);
            return crf;
        }

        public Tensor EmissionTensor(ScalarType dtype = ScalarType.Float64) => torch.tensor(Emissions, dtype: ScalarType.Float64).reshape(Batch, Time, Labels).to(dtype);
        public Tensor TagTensor() => torch.tensor(Tags).reshape(Batch, Time);
        public Tensor Mask() => torch.tensor(Enumerable.Range(0, Batch * Time).Select(i => i % Time < Lengths[i / Time] ? 1L : 0L).ToArray()).reshape(Batch, Time);
    }

    static Case Read(JsonElement c)
    {
        int[] Ints(JsonElement e) => e.EnumerateArray().Select(x => x.GetInt32()).ToArray();
        double[] Doubles(string k) => c.GetProperty(k).EnumerateArray().Select(x => x.GetDouble()).ToArray();
        int labels = c.GetProperty("labels").GetInt32();
        int[]? Optional(string k) => c.GetProperty(k).ValueKind == JsonValueKind.Null ? null : Ints(c.GetProperty(k));
        bool[,]? allowed = null;
        if (Optional("allowed") is { } flat)
        {
            allowed = new bool[labels, labels];
            for (int i = 0; i < flat.Length; i++) allowed[i / labels, i % labels] = flat[i] != 0;
        }
        return new Case(labels, c.GetProperty("time").GetInt32(), c.GetProperty("batch").GetInt32(), Ints(c.GetProperty("lengths")),
            Doubles("emissions"), Doubles("trans"), Optional("starts"), Optional("ends"), allowed,
            c.GetProperty("tags").EnumerateArray().Select(x => x.GetInt64()).ToArray(), Doubles("log_z"), Doubles("nll"),
            c.GetProperty("paths").EnumerateArray().Select(Ints).ToArray(), c);
    }

    public static TheoryData<int> SmallCases() => new(Enumerable.Range(0, Root.GetProperty("small").GetArrayLength()));

    static Case Large => Read(Root.GetProperty("large"));

    [Fact]
    public void DisallowedScoreMatchesTheReference() =>
        Assert.Equal(ConditionalRandomField.DisallowedScore, Root.GetProperty("disallowed").GetDouble());

    [Theory]
    [MemberData(nameof(SmallCases))]
    public void BruteForceLogZNllAndViterbi(int index)
    {
        var c = Read(Root.GetProperty("small")[index]);
        using var scope = torch.NewDisposeScope();
        var crf = c.Crf();
        var e = c.EmissionTensor();
        var mask = c.Mask();
        Close.Assert(crf.LogPartition(e, mask).data<double>().ToArray(), c.LogZ, $"case {index} log Z");
        Close.Assert(crf.forward(e, c.TagTensor(), mask).data<double>().ToArray(), c.Nll, $"case {index} NLL");
        var paths = crf.Decode(e, mask);
        for (int b = 0; b < c.Batch; b++) Assert.Equal(c.Paths[b], paths[b]);
    }

    [Fact]
    public void LargeCaseMatchesBert4kerasPortWithGradients()
    {
        var c = Large;
        using var scope = torch.NewDisposeScope();
        var crf = c.Crf();
        var e = c.EmissionTensor().requires_grad_(true);
        var nll = crf.forward(e, c.TagTensor(), c.Mask());
        Close.Assert(nll.detach().data<double>().ToArray(), c.Nll, "large NLL");
        nll.sum().backward();
        double[] Expected(string k) => c.Json.GetProperty(k).EnumerateArray().Select(x => x.GetDouble()).ToArray();
        Close.Assert(e.grad!.data<double>().ToArray(), Expected("grad_emissions"), "d NLL / d emissions");
        Close.Assert(crf.StoredTransitions.grad!.data<double>().ToArray(), Expected("grad_trans"), "d NLL / d transitions");
        var paths = crf.Decode(e.detach(), c.Mask());
        for (int b = 0; b < c.Batch; b++) Assert.Equal(c.Paths[b], paths[b]);
        Assert.Equal([20, 13, 1], paths.Select(p => p.Length));
    }

    [Fact]
    public void LargeCaseInFloat32()
    {
        // float32 emissions and transitions against the float64 reference, float32 defaults (measured: NLL 3.8e-6,
        // gradients 2.3e-6).
        var c = Large;
        using var scope = torch.NewDisposeScope();
        var crf = c.Crf(ScalarType.Float32);
        var e = c.EmissionTensor(ScalarType.Float32).requires_grad_(true);
        var nll = crf.forward(e, c.TagTensor(), c.Mask());
        var expected = torch.tensor(c.Nll, dtype: ScalarType.Float32);
        Close.Assert(nll.detach(), expected, "large NLL float32");
        nll.sum().backward();
        var grad = torch.tensor(c.Json.GetProperty("grad_emissions").EnumerateArray().Select(x => (float)x.GetDouble()).ToArray()).reshape(c.Batch, c.Time, c.Labels);
        Close.Assert(e.grad!, grad, "d NLL / d emissions float32");
        var paths = crf.Decode(e.detach(), c.Mask());
        for (int b = 0; b < c.Batch; b++) Assert.Equal(c.Paths[b], paths[b]);
    }

    [Fact]
    public void LearningRateMultiplierScalesTheStoredParameter()
    {
        var c = Large;
        using var scope = torch.NewDisposeScope();
        const double m = 10, lr = 0.01;
        var fresh = new ConditionalRandomField(9, m);
        fresh.to(ScalarType.Float64);
        Close.Assert(fresh.Transitions, fresh.StoredTransitions * m, "effective = stored × multiplier");
        // glorot-uniform divided by the multiplier: |stored| ≤ sqrt(6 / 18) / 10
        Assert.True(fresh.StoredTransitions.abs().max().ToDouble() <= Math.Sqrt(6.0 / 18) / m);

        var scaled = c.Crf(multiplier: m);
        var plain = c.Crf();
        var effective = torch.tensor(c.Trans, dtype: ScalarType.Float64).reshape(9, 9);
        Close.Assert(scaled.Transitions.detach(), effective, "effective transitions after SetTransitions");
        Close.Assert(scaled.StoredTransitions.detach(), effective / m, "stored = effective ÷ multiplier");
        Close.Assert(scaled.forward(c.EmissionTensor(), c.TagTensor(), c.Mask()).detach(), plain.forward(c.EmissionTensor(), c.TagTensor(), c.Mask()).detach(), "same NLL");

        scaled.forward(c.EmissionTensor(), c.TagTensor(), c.Mask()).sum().backward();
        plain.forward(c.EmissionTensor(), c.TagTensor(), c.Mask()).sum().backward();
        var g = plain.StoredTransitions.grad!;
        Close.Assert(scaled.StoredTransitions.grad!, g * m, "d loss / d stored = multiplier × d loss / d effective");
        // one SGD step on the stored parameter moves the effective transitions by lr · m² · gradient
        using (torch.no_grad()) scaled.StoredTransitions.sub_(scaled.StoredTransitions.grad! * lr);
        Close.Assert(scaled.Transitions.detach(), effective - g * (lr * m * m), "SGD step on the effective transitions");
    }

    [Fact]
    public void ConstraintsForbidPathsInLossAndDecoding()
    {
        // BIO over one type (O, B, I): I may not start and may not follow O.
        using var scope = torch.NewDisposeScope();
        var tagSet = new TagSet(TagScheme.Bio, ["X"]);
        var crf = new ConditionalRandomField(3, constraints: tagSet.Constraints());
        crf.to(ScalarType.Float64);
        crf.SetTransitions(torch.zeros(3, 3, dtype: ScalarType.Float64));
        var e = torch.tensor(new double[] { 0, 1, 5, 3, 0, 0.5, 0, 0, 5 }).reshape(1, 3, 3);   // I is best at steps 0 and 2, O at step 1
        Assert.Equal([[1, 2, 2]], crf.Decode(e));
        var bad = crf.forward(e, torch.tensor(new long[] { 2, 0, 0 }).reshape(1, 3), null).ToDouble();
        Assert.True(bad > -ConditionalRandomField.DisallowedScore / 2, $"a path starting with I must be ~impossible, NLL {bad}");
    }

    [Fact]
    public void BadInputGivesClearErrors()
    {
        using var scope = torch.NewDisposeScope();
        var crf = new ConditionalRandomField(4);
        var e = torch.randn(2, 3, 4);
        var tags = torch.tensor(new long[] { 0, 1, 2, 3, -1, -1 }).reshape(2, 3);
        var ok = torch.tensor(new long[] { 1, 1, 1, 1, 0, 0 }).reshape(2, 3);
        Assert.Equal(2, crf.forward(e, tags, ok).shape[0]);                        // padded tags are ignored

        var ex = Assert.Throws<ArgumentOutOfRangeException>(() => crf.forward(e, tags, null));
        Assert.Contains("tags[1, 1] = -1 is outside 0..3", ex.Message);
        var big = torch.tensor(new long[] { 0, 9, 2, 3, 0, 0 }).reshape(2, 3);
        Assert.Contains("tags[0, 1] = 9", Assert.Throws<ArgumentOutOfRangeException>(() => crf.forward(e, big, ok)).Message);
        var gap = torch.tensor(new long[] { 1, 0, 1, 1, 1, 1 }).reshape(2, 3);
        Assert.Contains("mask row 0 has a gap: 0 at position 1, then 1 at position 2", Assert.Throws<ArgumentException>(() => crf.Decode(e, gap)).Message);
        var empty = torch.tensor(new long[] { 1, 1, 1, 0, 0, 0 }).reshape(2, 3);
        Assert.Contains("mask row 1 has no real step", Assert.Throws<ArgumentException>(() => crf.LogPartition(e, empty)).Message);
        Assert.Contains("a mask holds only 0 and 1", Assert.Throws<ArgumentException>(() => crf.Decode(e, ok * 2)).Message);
        Assert.Contains("the mask must be (batch, time) = (2, 3)", Assert.Throws<ArgumentException>(() => crf.Decode(e, torch.ones(2, 4))).Message);
        Assert.Contains("must be (batch, time, 4)", Assert.Throws<ArgumentException>(() => crf.Decode(torch.randn(2, 3, 5))).Message);
        Assert.Contains("hold no step", Assert.Throws<ArgumentException>(() => crf.Decode(torch.randn(2, 0, 4))).Message);
        Assert.Contains("must be integer label ids", Assert.Throws<ArgumentException>(() => crf.forward(e, tags.to(ScalarType.Float32), ok)).Message);
        Assert.Contains("outside 0..3", Assert.Throws<ArgumentOutOfRangeException>(() => new ConditionalRandomField(4, constraints: new() { Starts = [4] })).Message);
        Assert.Contains("is 2×2", Assert.Throws<ArgumentException>(() => new ConditionalRandomField(4, constraints: new() { AllowedTransitions = new bool[2, 2] })).Message);
        Assert.Throws<ArgumentOutOfRangeException>(() => new ConditionalRandomField(4, lrMultiplier: 0));
        var decoder = crf.Decoder();
        Assert.Contains("lengths[1] = 0 is outside 1..3", Assert.Throws<ArgumentOutOfRangeException>(() => decoder.Decode(new double[24], 2, 3, [3, 0])).Message);
        Assert.Contains("(2, 3, 4) needs 24", Assert.Throws<ArgumentException>(() => decoder.Decode(new double[23], 2, 3, [3, 3])).Message);
    }
}
