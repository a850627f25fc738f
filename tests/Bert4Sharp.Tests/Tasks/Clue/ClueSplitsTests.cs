namespace Bert4Sharp.Tests.Tasks.Clue;

using Bert4Sharp.Tasks.Clue;

/// <summary>The carve of a held-out split from one labelled file (CMNLI): deterministic, order-free, disjoint by text.</summary>
public class ClueSplitsTests
{
    static List<SentencePairRecord> Pairs(int n)
    {
        var labels = ClueReaders.NliLabels.Order(StringComparer.Ordinal).ToArray();
        var list = Enumerable.Range(0, n).Select(i => new SentencePairRecord($"前提{i}", $"假设{i % 97}", labels[i % 3])).ToList();
        // Repeated pairs, one with another label: they must stay together.
        list.Add(list[5] with { Label = labels[(5 + 1) % 3] });
        list.Add(list[17]);
        return list;
    }

    [Fact]
    public void The_carve_is_deterministic_order_free_and_disjoint()
    {
        var records = Pairs(2000);
        var a = ClueSplits.CarveDev(records, ClueSplits.PairKey, 0.2);
        var b = ClueSplits.CarveDev(records, ClueSplits.PairKey, 0.2);
        Assert.Equal(a.Train, b.Train);
        Assert.Equal(a.Dev, b.Dev);

        var shuffled = records.OrderBy(r => ClueSplits.Hash(r.Sentence2 + r.Sentence1 + r.Label)).ToList();
        var c = ClueSplits.CarveDev(shuffled, ClueSplits.PairKey, 0.2);
        Assert.Equal(a.Dev.Select(ClueSplits.PairKey).Order(StringComparer.Ordinal), c.Dev.Select(ClueSplits.PairKey).Order(StringComparer.Ordinal));

        var devKeys = a.Dev.Select(ClueSplits.PairKey).ToHashSet();
        Assert.DoesNotContain(a.Train, r => devKeys.Contains(ClueSplits.PairKey(r)));
        Assert.Equal(records.Count, a.Train.Count + a.Dev.Count);
        Assert.Equal((2, 0), (a.DuplicateKeys, a.CrossSideRemoved));
        // A binomial share of 2002 keys: 0.2 ± 0.04 is about 4.5 standard deviations.
        Close.Assert((double)a.Dev.Count / records.Count, 0.2, "held-out share", atol: 0.04, rtol: 0);
    }

    [Fact]
    public void The_hash_is_pinned()
    {
        // The first 8 bytes of SHA-256(UTF-8 "前提0\t假设0"), from Python's hashlib: a change of hash would silently move every carved split.
        Assert.Equal(0x9224BF57845B7AA5UL, ClueSplits.Hash("前提0\t假设0"));
    }

    [Theory]
    [InlineData(0.0)]
    [InlineData(1.0)]
    [InlineData(double.NaN)]
    public void A_fraction_outside_zero_one_is_refused(double fraction) =>
        Assert.Throws<ArgumentOutOfRangeException>(() => ClueSplits.CarveDev(Pairs(10), ClueSplits.PairKey, fraction));

    [Fact]
    public void The_real_cmnli_carve_is_disjoint_and_about_a_fifth()
    {
        string path = TestPaths.SharedOrSkip("data/cmnli/dev.txt");
        var all = ClueReaders.CmnliTsv(path, new ClueReadOptions(DropUnknownLabels: true)).Records;
        var carve = ClueSplits.CarveDev(all, ClueSplits.PairKey, 0.2);
        var devKeys = carve.Dev.Select(ClueSplits.PairKey).ToHashSet();
        Assert.DoesNotContain(carve.Train, r => devKeys.Contains(ClueSplits.PairKey(r)));
        Close.Assert((double)carve.Dev.Count / all.Count, 0.2, "held-out share of CMNLI", atol: 0.02, rtol: 0);
    }
}
