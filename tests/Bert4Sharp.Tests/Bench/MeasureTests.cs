namespace Bert4Sharp.Tests.Bench;

using Bert4Sharp.Bench;

/// <summary>The benchmarks' statistics: a true median, and comparisons run interleaved.</summary>
public class MeasureTests
{
    [Fact]
    public void The_median_of_an_even_count_is_the_mean_of_the_middle_two()
    {
        Tests.Close.Assert(Measure.Median([3.0, 1.0, 2.0]), 2.0, "median of 3");
        Tests.Close.Assert(Measure.Median([4.0, 1.0, 3.0, 2.0]), 2.5, "median of 4");   // not 3.0, the upper middle value
        Tests.Close.Assert(Measure.Median([7.0]), 7.0, "median of 1");
        Assert.Throws<ArgumentException>(() => Measure.Median([]));
    }

    [Fact]
    public void The_two_sides_of_a_comparison_alternate()
    {
        var order = new List<string>();
        var (a, b) = Measure.Interleave(() => { order.Add("A"); return 1.0; }, () => { order.Add("B"); return 2.0; }, warmup: 1, rounds: 3);
        Assert.Equal("ABABABAB", string.Concat(order));
        Assert.Equal([1.0, 1.0, 1.0], a);
        Assert.Equal([2.0, 2.0, 2.0], b);
    }
}
