using System.Globalization;
using TorchSharp;
using static TorchSharp.torch;

namespace Bert4Sharp.Tests;

/// <summary>What one comparison measured: the largest |actual − expected| and the worst ratio of a difference to its allowed bound.</summary>
public readonly record struct Closeness(double MaxAbsDiff, double WorstRatio, long Elements);

/// <summary>
/// The one floating-point comparison of the tests, as <c>torch.testing.assert_close</c>: elementwise
/// <c>|actual − expected| ≤ atol + rtol·|expected|</c>. Defaults follow the less precise type: float32 atol 1e-5,
/// rtol 1.3e-6; float64 atol 1e-7, rtol 1e-7; float16 atol 1e-5, rtol 1e-3; bfloat16 atol 1e-5, rtol 1.6e-2;
/// integer and bool tensors exactly. Equal infinities are equal; NaN is never close (unless <c>equalNan</c>).
/// Shapes must be equal (and dtypes, for tensors). A test that needs other bounds passes them and says why.
/// </summary>
/// <remarks>
/// With <c>B4S_CLOSE_LOG</c> set to a file path, every comparison appends a tab-separated line (what, elements,
/// max |diff|, worst diff/bound ratio): how much room each bound leaves on this CPU.
/// </remarks>
public static class Close
{
    public const double Float32Atol = 1e-5, Float32Rtol = 1.3e-6;
    public const double Float64Atol = 1e-7, Float64Rtol = 1e-7;

    static readonly object LogLock = new();

    /// <summary>
    /// An atol that follows the tensor's scale: <paramref name="atol"/>·max(1, max|expected|). For outputs whose
    /// float32 round-off comes from large terms summed into every element rather than from the element itself: head
    /// logits after further GEMMs over the final hidden state, T5's residual stream at 1e5. A caller says why.
    /// </summary>
    public static double AtolAtScale(Tensor expected, double atol = Float32Atol)
    {
        using var m = expected.abs().max();
        return atol * Math.Max(1, m.ToDouble());
    }

    /// <summary>Asserts two tensors are close elementwise; <paramref name="what"/> names them in the failure message.</summary>
    public static Closeness Assert(Tensor actual, Tensor expected, string what, double? atol = null, double? rtol = null, bool equalNan = false)
    {
        var (a, e, shape, dtype) = Read(actual, expected, what);
        var (dAtol, dRtol) = Defaults(dtype);
        return Check(a, e, shape, what, atol ?? dAtol, rtol ?? dRtol, equalNan, dtype == ScalarType.Float64 ? "R" : "G9");
    }

    /// <summary>float32 arrays (float32 defaults).</summary>
    public static Closeness Assert(float[] actual, float[] expected, string what, double? atol = null, double? rtol = null, bool equalNan = false)
    {
        SameLength(actual.Length, expected.Length, what);
        return Check(actual.Select(x => (double)x).ToArray(), expected.Select(x => (double)x).ToArray(), [actual.Length], what,
            atol ?? Float32Atol, rtol ?? Float32Rtol, equalNan, "G9");
    }

    /// <summary>float64 arrays (float64 defaults).</summary>
    public static Closeness Assert(double[] actual, double[] expected, string what, double? atol = null, double? rtol = null, bool equalNan = false)
    {
        SameLength(actual.Length, expected.Length, what);
        return Check(actual, expected, [actual.Length], what, atol ?? Float64Atol, rtol ?? Float64Rtol, equalNan, "R");
    }

    /// <summary>A float32 scalar (float32 defaults).</summary>
    public static Closeness Assert(float actual, float expected, string what, double? atol = null, double? rtol = null) =>
        Check([actual], [expected], [], what, atol ?? Float32Atol, rtol ?? Float32Rtol, false, "G9");

    /// <summary>A float64 scalar (float64 defaults). A value computed in float32 and widened is a float32 value: pass float32 bounds.</summary>
    public static Closeness Assert(double actual, double expected, string what, double? atol = null, double? rtol = null) =>
        Check([actual], [expected], [], what, atol ?? Float64Atol, rtol ?? Float64Rtol, false, "R");

    /// <summary>
    /// Asserts two tensors are NOT close: at least one element has |actual − other| &gt; atol + rtol·|other|
    /// (e.g. "changing the positions changes the output by more than 1e-3").
    /// </summary>
    public static Closeness AssertNot(Tensor actual, Tensor other, string what, double atol, double rtol = 0)
    {
        var (a, e, shape, _) = Read(actual, other, what);
        var c = Measure(a, e, atol, rtol, false, out long bad, out _);
        Log(what + " (must differ)", c);
        if (bad == 0)
            Xunit.Assert.Fail($"{what}: expected to differ somewhere by more than atol {G(atol)} + rtol {G(rtol)}·|other|, but every one of the "
                + $"{a.Length} elements is within it (max |diff| {c.MaxAbsDiff:E3}, shape [{string.Join(", ", shape)}]).");
        return c;
    }

    static (double[] A, double[] E, long[] Shape, ScalarType DType) Read(Tensor actual, Tensor expected, string what)
    {
        if (!actual.shape.SequenceEqual(expected.shape))
            Xunit.Assert.Fail($"{what}: shape [{string.Join(", ", actual.shape)}] (actual) vs [{string.Join(", ", expected.shape)}] (expected).");
        if (actual.dtype != expected.dtype)
            Xunit.Assert.Fail($"{what}: dtype {actual.dtype} (actual) vs {expected.dtype} (expected); convert one explicitly and say why.");
        using var scope = torch.NewDisposeScope();
        double[] Flat(Tensor t) => t.detach().to(torch.CPU).to(ScalarType.Float64).contiguous().flatten().data<double>().ToArray();
        return (Flat(actual), Flat(expected), actual.shape, actual.dtype);
    }

    static (double Atol, double Rtol) Defaults(ScalarType dtype) => dtype switch
    {
        ScalarType.Float32 or ScalarType.ComplexFloat32 => (Float32Atol, Float32Rtol),
        ScalarType.Float64 or ScalarType.ComplexFloat64 => (Float64Atol, Float64Rtol),
        ScalarType.Float16 => (1e-5, 1e-3),
        ScalarType.BFloat16 => (1e-5, 1.6e-2),
        _ => (0, 0),   // integers and bool: exact
    };

    static void SameLength(int a, int e, string what)
    {
        if (a != e) Xunit.Assert.Fail($"{what}: {a} elements (actual) vs {e} (expected).");
    }

    static Closeness Measure(double[] a, double[] e, double atol, double rtol, bool equalNan, out long bad, out long worst)
    {
        double maxDiff = 0, worstRatio = 0;
        bad = 0;
        worst = -1;
        for (long i = 0; i < a.Length; i++)
        {
            double x = a[i], y = e[i];
            if (x == y || (equalNan && double.IsNaN(x) && double.IsNaN(y))) continue;
            double diff = Math.Abs(x - y), allowed = atol + rtol * Math.Abs(y);
            // NaN or an infinity on one side only, or different infinities: never close.
            double ratio = double.IsFinite(diff) ? (allowed > 0 ? diff / allowed : double.PositiveInfinity) : double.PositiveInfinity;
            if (!double.IsFinite(diff) || diff > allowed) bad++;
            if (double.IsFinite(diff)) maxDiff = Math.Max(maxDiff, diff); else maxDiff = double.PositiveInfinity;
            if (ratio > worstRatio || worst < 0) { worstRatio = ratio; worst = i; }
        }
        return new Closeness(maxDiff, worstRatio, a.Length);
    }

    static Closeness Check(double[] a, double[] e, long[] shape, string what, double atol, double rtol, bool equalNan, string format)
    {
        if (atol < 0 || rtol < 0 || double.IsNaN(atol) || double.IsNaN(rtol))
            throw new ArgumentOutOfRangeException(nameof(atol), $"{what}: tolerances must be ≥ 0 (atol {atol}, rtol {rtol}).");
        var c = Measure(a, e, atol, rtol, equalNan, out long bad, out long worst);
        Log(what, c);
        if (bad > 0)
        {
            double x = a[worst], y = e[worst], allowed = atol + rtol * Math.Abs(y);
            Xunit.Assert.Fail($"{what}: {bad} of {a.Length} elements not close (|actual − expected| ≤ atol + rtol·|expected|, atol {G(atol)}, rtol {G(rtol)}). "
                + $"Worst at {Index(worst, shape)}: actual {x.ToString(format, CultureInfo.InvariantCulture)}, expected {y.ToString(format, CultureInfo.InvariantCulture)}, "
                + $"|diff| {Math.Abs(x - y):E3} > allowed {allowed:E3} ({c.WorstRatio:F2}× the bound); largest |diff| anywhere {c.MaxAbsDiff:E3}.");
        }
        return c;
    }

    static string G(double v) => v.ToString("G3", CultureInfo.InvariantCulture);

    static string Index(long flat, long[] shape)
    {
        if (shape.Length == 0) return "the scalar";
        var idx = new long[shape.Length];
        for (int d = shape.Length - 1; d >= 0; d--)
        {
            idx[d] = shape[d] == 0 ? 0 : flat % shape[d];
            flat = shape[d] == 0 ? 0 : flat / shape[d];
        }
        return $"[{string.Join(", ", idx)}] of shape [{string.Join(", ", shape)}]";
    }

    static void Log(string what, Closeness c)
    {
        if (Environment.GetEnvironmentVariable("B4S_CLOSE_LOG") is not { Length: > 0 } path) return;
        lock (LogLock)
            File.AppendAllText(path, string.Create(CultureInfo.InvariantCulture,
                $"{TestContext.Current.Test?.TestDisplayName}\t{what}\t{c.Elements}\t{c.MaxAbsDiff:E3}\t{c.WorstRatio:F3}\n"));
    }
}
