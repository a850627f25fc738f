namespace Bert4Sharp.Tests.Tasks.Clue;

using System.Text.Json;
using Bert4Sharp.Tasks.Clue;

/// <summary>
/// The C# CLUE metrics against tests/reference/clue_metrics_ref.py (an independent Python re-implementation of the
/// official algorithms), on committed prediction files built from the real dev data. Self-contained: always runs.
/// </summary>
public class ClueMetricTests
{
    static JsonElement Fixture(string name) => JsonDocument.Parse(File.ReadAllBytes(TestPaths.Fixture("tasks", "clue", name + ".json"))).RootElement;

    static void Prf(PrfScore actual, JsonElement expected, string what)
    {
        Assert.Equal(expected.GetProperty("correct").GetInt64(), actual.Correct);
        Assert.Equal(expected.GetProperty("predicted").GetInt64(), actual.Predicted);
        Assert.Equal(expected.GetProperty("gold").GetInt64(), actual.Gold);
        Close.Assert([actual.Precision, actual.Recall, actual.F1],
            [expected.GetProperty("precision").GetDouble(), expected.GetProperty("recall").GetDouble(), expected.GetProperty("f1").GetDouble()], what + " P/R/F1");
    }

    [Fact]
    public void Accuracy_matches_the_reference()
    {
        var f = Fixture("accuracy");
        var gold = f.GetProperty("gold").EnumerateArray().Select(x => x.GetString()!).ToArray();
        var pred = f.GetProperty("predicted").EnumerateArray().Select(x => x.GetString()!).ToArray();
        Close.Assert(ClueMetrics.Accuracy(gold, pred), f.GetProperty("accuracy").GetDouble(), "AFQMC accuracy");
        Assert.Throws<ArgumentException>(() => ClueMetrics.Accuracy(gold, pred[1..]));
    }

    static List<NerEntity>[] Entities(JsonElement list) =>
        [.. list.EnumerateArray().Select(s => s.EnumerateArray().Select(e => new NerEntity(e[0].GetString()!, e[1].GetInt32(), e[2].GetInt32())).ToList())];

    [Fact]
    public void Cluener_entity_f1_matches_the_reference_overall_and_by_type()
    {
        var f = Fixture("cluener");
        var (overall, byType) = ClueMetrics.EntityF1ByType(Entities(f.GetProperty("gold")), Entities(f.GetProperty("predicted")));
        var exp = f.GetProperty("expected");
        Prf(overall, exp.GetProperty("overall"), "CLUENER overall");
        var types = exp.GetProperty("by_type").EnumerateObject().ToList();
        Assert.Equal(types.Select(t => t.Name), byType.Keys);
        foreach (var t in types) Prf(byType[t.Name], t.Value, "CLUENER " + t.Name);
        Assert.True(overall.Correct < overall.Gold && overall.Correct < overall.Predicted, "the perturbations must cost both precision and recall");
    }

    [Fact]
    public void Cmrc_em_and_f1_match_the_reference_per_question_and_overall()
    {
        var f = Fixture("cmrc");
        var gold = f.GetProperty("gold").EnumerateArray()
            .Select(q => (q.GetProperty("id").GetString()!, (IReadOnlyList<string>)[.. q.GetProperty("answers").EnumerateArray().Select(a => a.GetString()!)])).ToList();
        var preds = f.GetProperty("predictions").EnumerateObject().ToDictionary(p => p.Name, p => p.Value.GetString()!);
        var per = f.GetProperty("per_question");
        var (ems, f1s, eEms, eF1s) = (new List<double>(), new List<double>(), new List<double>(), new List<double>());
        foreach (var (id, answers) in gold)
        {
            if (!per.TryGetProperty(id, out var e)) continue;
            ems.Add(CmrcMetric.ExactMatch(answers, preds[id])); eEms.Add(e.GetProperty("em").GetDouble());
            f1s.Add(CmrcMetric.F1(answers, preds[id])); eF1s.Add(e.GetProperty("f1").GetDouble());
        }
        Close.Assert(ems.ToArray(), eEms.ToArray(), "CMRC EM per question");
        Close.Assert(f1s.ToArray(), eF1s.ToArray(), "CMRC F1 per question");
        var s = CmrcMetric.Evaluate(gold, preds);
        var x = f.GetProperty("expected");
        Assert.Equal(x.GetProperty("total").GetInt32(), s.Total);
        Assert.Equal(x.GetProperty("unanswered").GetInt32(), s.Unanswered);
        Close.Assert([s.ExactMatch, s.F1], [x.GetProperty("em").GetDouble(), x.GetProperty("f1").GetDouble()], "CMRC EM/F1 (%)");
    }

    [Fact]
    public void Cmrc_mixed_segmentation_matches_the_official_one_with_nltk()
    {
        var cases = Fixture("segmentation").EnumerateArray().ToList();
        Assert.True(cases.Count > 500, $"only {cases.Count} segmentation cases");
        var bad = new List<string>();
        foreach (var c in cases)
        {
            string text = c.GetProperty("text").GetString()!;
            var expected = c.GetProperty("tokens").EnumerateArray().Select(t => t.GetString()!).ToList();
            var actual = CmrcMetric.MixedSegmentation(text);
            if (!actual.SequenceEqual(expected)) bad.Add($"'{text}': [{string.Join(" | ", actual)}] vs [{string.Join(" | ", expected)}]");
        }
        Assert.True(bad.Count == 0, $"{bad.Count} of {cases.Count} segmentations differ:\n" + string.Join("\n", bad.Take(20)));
    }

    [Fact]
    public void Cmrc_hand_cases_follow_the_script()
    {
        Assert.Equal(["约", "3.5", "亿", "美", "元"], CmrcMetric.MixedSegmentation("约3.5亿美元"));
        Assert.Equal(["iphone", "6", "plus"], CmrcMetric.MixedSegmentation(" iPhone 6 Plus "));
        Assert.Equal(["ab"], CmrcMetric.MixedSegmentation("a-b"));             // punctuation dropped inside the run
        Assert.Equal(["a", "-", "b"], CmrcMetric.MixedSegmentation("a-b", removePunctuation: false));
        Assert.Equal(1.0, CmrcMetric.ExactMatch(["《红楼梦》"], "红楼梦。"));
        Assert.Equal(0.0, CmrcMetric.ExactMatch(["红楼梦"], "红楼梦…"));        // a single … is not on the list
        Close.Assert(CmrcMetric.F1(["北京大学", "北大"], "北京"), 2 * (1.0 * 0.5) / 1.5, "F1 = best over answers (2/4 recall)");
        Assert.Equal(2, CmrcMetric.LongestCommonRun(["a", "b", "c", "d"], ["x", "b", "c", "a"]));
    }

    static List<SpoTriple>[] Triples(JsonElement list) =>
        [.. list.EnumerateArray().Select(s => s.EnumerateArray().Select(t => new SpoTriple(t[0].GetString()!, t[1].GetString()!, t[2].GetString()!)).ToList())];

    [Fact]
    public void Duie_spo_f1_matches_the_reference()
    {
        var f = Fixture("duie");
        Prf(ClueMetrics.SpoF1(Triples(f.GetProperty("gold")), Triples(f.GetProperty("predicted"))), f.GetProperty("expected"), "DuIE SPO");
    }

    static List<List<EventArgument>>[] Events(JsonElement list) =>
        [.. list.EnumerateArray().Select(s => s.EnumerateArray().Select(e => e.EnumerateArray()
            .Select(a => new EventArgument(a[0].GetString()!, a[1].GetString()!, a[2].GetString()!, a[3].GetInt32())).ToList()).ToList())];

    [Fact]
    public void Duee_event_and_argument_f1_match_the_reference()
    {
        var f = Fixture("duee");
        var s = ClueMetrics.DueeF1(Events(f.GetProperty("gold")), Events(f.GetProperty("predicted")));
        Prf(s.Event, f.GetProperty("expected").GetProperty("event"), "DuEE event level");
        Prf(s.Argument, f.GetProperty("expected").GetProperty("argument"), "DuEE argument level");
    }

    [Fact]
    public void GpLinker_smoothing_gives_precision_one_when_nothing_is_predicted()
    {
        var s = PrfScore.GpLinker(0, 0, 5);
        Close.Assert([s.Precision, s.Recall, s.F1], [1.0, 2e-11, 4e-11], "GPLinker 1e-10 smoothing", atol: 1e-12);
        var e = PrfScore.Exact(0, 0, 5);
        Assert.Equal((0.0, 0.0, 0.0), (e.Precision, e.Recall, e.F1));
    }
}
