using TorchSharp;
using Xunit.Sdk;
using static TorchSharp.torch;

namespace Bert4Sharp.Tests;

/// <summary>The comparison helper itself: the bound, the defaults per dtype, non-finite values and the failure message.</summary>
public class CloseTests
{
    [Fact]
    public void BoundIsAtolPlusRtolTimesExpected()
    {
        // float32 defaults: at expected 100 the bound is 1e-5 + 1.3e-4.
        Close.Assert(torch.tensor(new[] { 100.0001f, 1f }), torch.tensor(new[] { 100f, 1f }), "within rtol");
        var e = Assert.Throws<FailException>(() => Close.Assert(torch.tensor(new[] { 1f, 2f, 3.0001f }).reshape(1, 3), torch.tensor(new[] { 1f, 2f, 3f }).reshape(1, 3), "row"));
        Assert.Contains("row: 1 of 3 elements not close", e.Message);
        Assert.Contains("[0, 2] of shape [1, 3]", e.Message);
        Assert.Contains("actual 3.0000999", e.Message);        // float32 values print with 9 significant digits
        Assert.Contains("expected 3,", e.Message);
        Assert.Contains("allowed 1.390E-005", e.Message);
        // float64 defaults are tighter; explicit bounds override.
        Assert.Throws<FailException>(() => Close.Assert(1.000001, 1.0, "double"));
        Close.Assert(1.000001, 1.0, "double, loose", atol: 1e-5);
        Close.Assert(1.000001f, 1f, "float");
        Assert.Throws<FailException>(() => Close.Assert(new[] { 0.0, 1e-6 }, new[] { 0.0, 0.0 }, "array"));
    }

    [Fact]
    public void DefaultsFollowTheDtype()
    {
        using var scope = torch.NewDisposeScope();
        var x = torch.tensor(new[] { 1.0f, 2.0f });
        var y = torch.tensor(new[] { 1.01f, 2.0f });
        Close.Assert(y.to(ScalarType.BFloat16), x.to(ScalarType.BFloat16), "bf16: rtol 1.6e-2");
        Assert.Throws<FailException>(() => Close.Assert(y.to(ScalarType.Float16), x.to(ScalarType.Float16), "fp16: rtol 1e-3"));
        Assert.Throws<FailException>(() => Close.Assert(torch.tensor(new long[] { 1, 3 }), torch.tensor(new long[] { 1, 2 }), "integers are exact"));
        var dtype = Assert.Throws<FailException>(() => Close.Assert(x, x.to(ScalarType.Float64), "mixed"));
        Assert.Contains("dtype", dtype.Message);
        var shape = Assert.Throws<FailException>(() => Close.Assert(x, x.unsqueeze(0), "shapes"));
        Assert.Contains("shape [2] (actual) vs [1, 2]", shape.Message);
    }

    [Fact]
    public void NonFiniteValues()
    {
        Close.Assert(new[] { double.PositiveInfinity, double.NegativeInfinity }, new[] { double.PositiveInfinity, double.NegativeInfinity }, "equal infinities");
        Assert.Throws<FailException>(() => Close.Assert(new[] { double.PositiveInfinity }, new[] { double.NegativeInfinity }, "opposite infinities"));
        Assert.Throws<FailException>(() => Close.Assert(new[] { double.NaN }, new[] { double.NaN }, "NaN"));
        Close.Assert(new[] { double.NaN }, new[] { double.NaN }, "NaN allowed", equalNan: true);
        Assert.Throws<FailException>(() => Close.Assert(new[] { double.NaN }, new[] { 1.0 }, "NaN vs a number", atol: 1e9));
    }

    [Fact]
    public void AssertNotWantsADifferenceBeyondTheBound()
    {
        using var scope = torch.NewDisposeScope();
        var x = torch.zeros(3);
        Close.AssertNot(x + torch.tensor(new[] { 0f, 0f, 0.01f }), x, "one element moved", atol: 1e-3);
        var e = Assert.Throws<FailException>(() => Close.AssertNot(x + 1e-4f, x, "tiny move", atol: 1e-3));
        Assert.Contains("tiny move: expected to differ", e.Message);
    }
}
