namespace Bert4Sharp.Tests.Bench;

using Bert4Sharp.Bench;
using static Bert4Sharp.Bench.ClueBaselines;

/// <summary>The ML.NET peer baselines' code path (featurize, train, score) and the majority class, on a tiny separable toy.</summary>
public class ClueBaselinesTests
{
    // Class "甲" texts draw only from the first four characters, class "乙" texts only from the last four: separable by any character.
    static List<Example> Toy(int n, int seed)
    {
        const string A = "山川河海", B = "金木水火";
        var g = new Random(seed);
        return [.. Enumerable.Range(0, n).Select(i =>
        {
            string pool = i % 2 == 0 ? A : B;
            string text = new([.. Enumerable.Range(0, 4 + g.Next(5)).Select(_ => pool[g.Next(pool.Length)])]);
            return new Example(text + Separator + text[0], i % 2 == 0 ? "甲" : "乙");
        })];
    }

    [Theory]
    [InlineData("lbfgs")]
    [InlineData("sdca")]
    public void A_separable_toy_is_classified_exactly(string name)
    {
        var trainer = name == "sdca" ? Trainer.Sdca : Trainer.Lbfgs;
        var train = Toy(40, 1);
        var dev = Toy(20, 2);
        var r = TrainAndScore(train, dev, trainer, new Options(trainer));
        Assert.Equal(dev.Count, (int)Math.Round(r.Accuracy * dev.Count));      // all 20 right
        Assert.Equal(name, r.Trainer);
    }

    [Fact]
    public void The_majority_class_is_the_most_frequent_train_label_scored_on_dev()
    {
        var train = new List<Example> { new("a", "x"), new("b", "y"), new("c", "y"), new("d", "z") };
        var dev = new List<Example> { new("e", "y"), new("f", "x"), new("g", "x"), new("h", "x") };
        var (label, accuracy) = Majority(train, dev);
        Assert.Equal("y", label);
        Close.Assert(accuracy, 0.25, "majority accuracy: 1 of 4");
        // Ties go to the ordinally smallest label, so the baseline does not depend on file order.
        Assert.Equal("x", Majority([new("a", "y"), new("b", "x")], dev).Label);
        Assert.Throws<ArgumentException>(() => Majority([], dev));
    }

    [Fact]
    public void Evaluate_reports_counts_majority_and_one_result_per_trainer()
    {
        var d = new TaskData("toy", Toy(40, 3), Toy(10, 4), "");
        var r = Evaluate(d, new Options(Trainer.Both));
        Assert.Equal((40, 10, 2), (r.TrainCount, r.DevCount, r.Classes));
        Assert.Equal(["sdca", "lbfgs"], r.MlNet.Select(m => m.Trainer));
        Close.Assert(r.MajorityAccuracy, 0.5, "toy dev is balanced");
    }
}
