using System.Text.Json;
using Bert4Sharp.Models;
using Bert4Sharp.Tasks;
using Bert4Sharp.Tokenization;
using TorchSharp;

namespace Bert4Sharp.Tests.Tasks;

/// <summary>
/// GPLinker: decoding on hand-built score arrays against the Python reference (tests/reference/make_gplinker_refs.py),
/// batch preparation (gold cells, dropped spans), and both extractors fitting a few texts on a tiny BERT end to end.
/// The sparse multilabel loss itself is checked against Python in <see cref="GlobalPointerTests"/>.
/// </summary>
public class GpLinkerTests
{
    static readonly JsonElement Refs = JsonDocument.Parse(File.ReadAllText(TestPaths.Fixture("tasks", "gplinker", "decoding.json"))).RootElement;

    static float[] Floats(JsonElement e) => [.. e.EnumerateArray().Select(x => (float)x.GetDouble())];
    static int[] Ints(JsonElement e) => [.. e.EnumerateArray().Select(x => x.GetInt32())];

    public static TheoryData<int> RelationCases() => [.. Enumerable.Range(0, Refs.GetProperty("relations").GetArrayLength())];
    public static TheoryData<int> EventCases() => [.. Enumerable.Range(0, Refs.GetProperty("events").GetArrayLength())];

    [Theory]
    [MemberData(nameof(RelationCases))]
    public void RelationDecodingMatchesTheReference(int index)
    {
        var c = Refs.GetProperty("relations")[index];
        int t = c.GetProperty("T").GetInt32(), p = c.GetProperty("P").GetInt32(), n = c.GetProperty("length").GetInt32();
        var got = GpLinkerRelationDecoding.Decode(Floats(c.GetProperty("entity")), Floats(c.GetProperty("head")), Floats(c.GetProperty("tail")), p, t, n, out bool capped);
        var expected = c.GetProperty("triples").EnumerateArray().Select(Ints).Select(x => new TokenRelation(x[0], x[1], x[2], x[3], x[4])).ToList();
        Assert.False(capped);
        Assert.NotEmpty(expected);
        Assert.Equal(expected, got);
    }

    [Fact]
    public void RelationDecodingKeepsTheBestEntitiesWhenCapped()
    {
        var c = Refs.GetProperty("relations")[0];
        var got = GpLinkerRelationDecoding.Decode(Floats(c.GetProperty("entity")), Floats(c.GetProperty("head")), Floats(c.GetProperty("tail")),
            c.GetProperty("P").GetInt32(), c.GetProperty("T").GetInt32(), c.GetProperty("length").GetInt32(), out bool capped, maxEntities: 1);
        Assert.True(capped);   // subjects (1,2), (4,4) tie at 2.0; objects (3,3), (5,6), (1,2) tie at 1.5: the first of each in (start, end) order stays
        Assert.Equal([new TokenRelation(1, 2, 0, 1, 2)], got);
    }

    [Theory]
    [MemberData(nameof(EventCases))]
    public void EventDecodingMatchesTheReference(int index)
    {
        var c = Refs.GetProperty("events")[index];
        int t = c.GetProperty("T").GetInt32(), n = c.GetProperty("length").GetInt32();
        var got = GpLinkerEventDecoding.Decode(Floats(c.GetProperty("argument")), Floats(c.GetProperty("head")), Floats(c.GetProperty("tail")), t, n,
            Ints(c.GetProperty("labelType")), [.. c.GetProperty("labelTrigger").EnumerateArray().Select(x => x.GetBoolean())], out bool capped);
        var expected = c.GetProperty("events").EnumerateArray().Select(e => e.EnumerateArray().Select(Ints).Select(x => new TokenArgument(x[0], x[1], x[2])).ToList()).ToList();
        Assert.False(capped);
        Assert.NotEmpty(expected);
        Assert.Equal(expected.Count, got.Count);
        for (int i = 0; i < expected.Count; i++) Assert.Equal(expected[i], got[i]);
    }

    [Fact]
    public void CliqueSearchSplitsTwoEventsThatShareAnArgument()
    {
        // trigger 1 and trigger 2 both link to the shared argument S, and each to its own argument; the triggers are not linked.
        TokenArgument t1 = new(2, 1, 1), t2 = new(2, 5, 5), s = new(0, 3, 4), x = new(1, 2, 2), y = new(1, 6, 7);
        var links = new HashSet<(int, int, int, int)>();
        foreach (var (a, b) in new[] { (t1, s), (t1, x), (s, x), (t2, s), (t2, y), (s, y) })
        {
            links.Add((a.Start, a.End, b.Start, b.End));
            links.Add((b.Start, b.End, a.Start, a.End));
        }
        var events = GpLinkerEventDecoding.Cliques([s, x, y, t1, t2], links);
        Assert.Equal(2, events.Count);
        Assert.Contains(events, e => e.SequenceEqual([s, x, t1]));
        Assert.Contains(events, e => e.SequenceEqual([s, y, t2]));
    }

    static (TransformerModel Encoder, BertWordPieceTokenizer Tokenizer) Tiny() => TestPaths.TinyBertEncoder();

    // Characters of the synthetic vocabulary (U+4E00…), one token each; [CLS] is token 0, so character i is token i + 1.
    static readonly RelationExample[] Relations =
    [
        new("丁七万丈三上下", [new(0, 2, "p0", 3, 5), new(0, 2, "p1", 6, 7)]),
        new("不与丐丑专且", [new(2, 4, "p1", 5, 6), new(2, 4, "p0", 5, 6)]),   // one pair, two predicates
        new("丝丞丟丠両丢", []),
    ];

    [Fact]
    public void RelationBatchHoldsTheGoldCellsAndCountsTruncatedRelations()
    {
        var (encoder, tokenizer) = Tiny();
        var model = new GpLinkerRelationExtractor(encoder, ["p0", "p1"], new GpLinkerOptions { HeadSize = 16 });
        using var batch = model.Prepare(tokenizer, [Relations[0]], 6);   // [CLS] + 4 characters + [SEP]: 丈三 and 下 are cut
        Assert.Equal(2, batch.Dropped);
        using var full = model.Prepare(tokenizer, [Relations[0]], 32);
        Assert.Equal(0, full.Dropped);
        Assert.Equal([new GlobalPointerSpan(0, 1, 2), new GlobalPointerSpan(1, 4, 5), new GlobalPointerSpan(0, 1, 2), new GlobalPointerSpan(1, 7, 7)], full.Nodes[0]);
        Assert.Equal([new GlobalPointerSpan(0, 1, 4), new GlobalPointerSpan(1, 1, 7)], full.Heads[0]);
        Assert.Equal([new GlobalPointerSpan(0, 2, 5), new GlobalPointerSpan(1, 2, 7)], full.Tails[0]);
        Assert.Throws<ArgumentException>(() => model.Prepare(tokenizer, [new RelationExample("丁七", [new(0, 1, "p9", 1, 2)])], 32));
    }

    [Fact]
    public void RelationExtractorFitsAndPredictsCharacterSpans()
    {
        torch.manual_seed(1);
        var (encoder, tokenizer) = Tiny();
        var model = new GpLinkerRelationExtractor(encoder, ["p0", "p1"], new GpLinkerOptions { HeadSize = 16, Dropout = 0 });
        Fit(model, () => model.Prepare(tokenizer, Relations, 32), b => model.Loss(b));
        var predicted = model.Predict(tokenizer, Relations.Select(e => e.Text).ToList(), 32, out int capped);
        Assert.Equal(0, capped);
        for (int i = 0; i < Relations.Length; i++)
            Assert.Equal(Relations[i].Relations.OrderBy(r => (r.SubjectStart, r.Predicate, r.ObjectStart)), predicted[i].OrderBy(r => (r.SubjectStart, r.Predicate, r.ObjectStart)));
    }

    const string Trigger = "触发词";

    static readonly EventExample[] Events =
    [
        // An A event and a B event sharing the argument 丘丙 (different types: grouped apart).
        new("丕世丗丘丙业丛东", [[new("A", Trigger, 2, 3), new("A", "r", 3, 5)], [new("B", Trigger, 6, 7), new("B", "r", 3, 5)]]),
        // Two A events sharing the argument 丟: the triggers are not linked, so the clique search splits them.
        new("丝丞丟丠両丢并", [[new("A", Trigger, 1, 2), new("A", "r", 2, 3)], [new("A", Trigger, 4, 5), new("A", "r", 2, 3)]]),
        new("丁七万丈三上下", []),
    ];

    [Fact]
    public void EventExtractorFitsAndSplitsEventsThatShareAnArgument()
    {
        torch.manual_seed(1);
        var (encoder, tokenizer) = Tiny();
        var model = new GpLinkerEventExtractor(encoder, [("B", "r"), ("A", Trigger), ("A", "r"), ("B", Trigger)], Trigger, new GpLinkerOptions { HeadSize = 16, Dropout = 0 });
        Assert.Equal([("A", "r"), ("A", Trigger), ("B", "r"), ("B", Trigger)], model.Labels);   // ordinal: 'r' (U+0072) < 触 (U+89E6)
        Fit(model, () => model.Prepare(tokenizer, Events, 32), b => model.Loss(b));
        var predicted = model.Predict(tokenizer, Events.Select(e => e.Text).ToList(), 32, out int capped);
        Assert.Equal(0, capped);
        static string Key(IEnumerable<EventSpan> e) => string.Join(";", e.OrderBy(a => (a.Start, a.Role)).Select(a => $"{a.EventType}/{a.Role}/{a.Start}-{a.End}"));
        for (int i = 0; i < Events.Length; i++)
            Assert.Equal(Events[i].Events.Select(Key).Order(), predicted[i].Select(Key).Order());
    }

    static void Fit<TBatch>(torch.nn.Module model, Func<TBatch> prepare, Func<TBatch, torch.Tensor> loss) where TBatch : IDisposable
    {
        var optimizer = torch.optim.Adam(model.parameters(), lr: 3e-3);
        model.train();
        float first = 0, last = 0;
        for (int step = 0; step < 150; step++)
        {
            using var scope = torch.NewDisposeScope();
            using var batch = prepare();
            var l = loss(batch);
            optimizer.zero_grad();
            l.backward();
            optimizer.step();
            last = l.item<float>();
            if (step == 0) first = last;
        }
        Assert.True(last < first / 10, $"loss {first} → {last}");
    }
}
