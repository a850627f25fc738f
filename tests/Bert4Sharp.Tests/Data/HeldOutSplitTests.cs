namespace Bert4Sharp.Tests.Data;

using System.Text.RegularExpressions;
using Bert4Sharp.Data;

/// <summary>Held-out data never overlaps training: exact match after normalisation, on toy lists and on the real data sets.</summary>
public class HeldOutSplitTests
{
    [Fact]
    public void Normalisation_folds_width_and_whitespace_but_keeps_case()
    {
        Assert.Equal("ABC 12", HeldOutSplit.Normalize("  ＡＢＣ\t\u3000１２\n"));
        Assert.Equal("春眠 不觉晓", HeldOutSplit.Normalize("春眠  不觉晓 "));
        Assert.NotEqual(HeldOutSplit.Normalize("Abc"), HeldOutSplit.Normalize("abc"));
    }

    [Fact]
    public void Split_drops_repeats_before_taking_the_held_out_records()
    {
        string[] items = ["a", "b", "a ", "c", "b", "d", "e", "ｃ"];
        var s = HeldOutSplit.Split(items, 2, x => x);
        Assert.Equal(["a", "b"], s.HeldOut);
        Assert.Equal(["c", "d", "e"], s.Train);
        Assert.Equal(3, s.Duplicates);                  // "a ", the second "b", "ｃ"
        Assert.Equal(2, s.Overlap);                     // a plain Take(2)/Skip(2) would have trained on "a " and "b"
        var keys = s.Train.Select(HeldOutSplit.Normalize).ToHashSet();
        Assert.DoesNotContain(s.HeldOut, h => keys.Contains(HeldOutSplit.Normalize(h)));
        Assert.Equal(5, HeldOutSplit.Split(items, 9, x => x).HeldOut.Count);
    }

    [Fact]
    public void Disjoint_removes_held_out_records_seen_in_training_or_before()
    {
        var s = HeldOutSplit.Disjoint(["x", "y"], ["y", "z", "z", " x", "w"], t => t);
        Assert.Equal(["z", "w"], s.HeldOut);
        Assert.Equal(["x", "y"], s.Train);
        Assert.Equal(2, s.Overlap);
        Assert.Equal(1, s.Duplicates);
    }

    [Fact]
    public void Real_xiangqi_games_repeat_and_the_split_keeps_them_out_of_the_held_out_set()
    {
        string dir = TestPaths.SharedOrSkip("data/xiangqi");
        // As examples/XiangqiGpt reads them: the move lines of the PGN files, move numbers dropped, shuffled with seed 42.
        var games = Directory.GetFiles(dir, "*.pgn").Order().SelectMany(File.ReadLines).Where(l => l.Length > 0 && char.IsAsciiDigit(l[0]))
            .Select(l => Regex.Replace(l, @"\d+\.", " ").Split(' ', StringSplitOptions.RemoveEmptyEntries)).ToList();
        var rng = new Random(42);
        games = games.OrderBy(_ => rng.Next()).ToList();
        var s = HeldOutSplit.Split(games, 100, g => string.Join(' ', g));
        Assert.Equal(2516, games.Count);
        Assert.Equal(115, s.Duplicates);
        Assert.Equal(9, s.Overlap);
        Assert.Equal(100, s.HeldOut.Count);
        var trained = s.Train.Select(g => string.Join(' ', g)).ToHashSet();
        Assert.DoesNotContain(s.HeldOut, g => trained.Contains(string.Join(' ', g)));
    }

    [Fact]
    public void Real_lcsts_validation_articles_that_occur_in_training_are_left_out()
    {
        string dir = TestPaths.SharedOrSkip("data/lcsts");
        static List<(string Summary, string Text)> Read(string path) => File.ReadLines(path).Select(l => l.Split('\t'))
            .Where(c => c.Length >= 2 && c[0].Length > 0 && c[1].Length > 0).Select(c => (c[0], c[1])).ToList();
        var s = HeldOutSplit.Disjoint(Read(Path.Combine(dir, "train.tsv")), Read(Path.Combine(dir, "val.tsv")), e => e.Text);
        Assert.Equal(49, s.Overlap);
        Assert.Equal(3, s.Duplicates);
        Assert.Equal(948, s.HeldOut.Count);
    }
}
