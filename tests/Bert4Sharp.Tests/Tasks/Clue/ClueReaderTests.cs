namespace Bert4Sharp.Tests.Tasks.Clue;

using Bert4Sharp.Tasks.Clue;

/// <summary>The CLUE readers: bad input named by file, line and path under both policies (always run); the real staged files (skip without ../shared).</summary>
public class ClueReaderTests
{
    static string Temp(string name, string content)
    {
        string dir = Path.Combine(Path.GetTempPath(), "b4s-clue-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(dir);
        string p = Path.Combine(dir, name);
        File.WriteAllText(p, content);
        return p;
    }

    [Fact]
    public void Malformed_json_line_stops_with_file_line_and_path_or_is_skipped_and_counted()
    {
        string p = Temp("wsc.json",
            "{\"target\": {\"span1_index\": 0, \"span1_text\": \"小明\", \"span2_index\": 3, \"span2_text\": \"他\"}, \"label\": \"true\", \"text\": \"小明说他来\"}\n"
            + "{\"target\": {\"span1_index\": 1, \"span1_text\": \"小明\", \"span2_index\": 3, \"span2_text\": \"他\"}, \"label\": \"true\", \"text\": \"小明说他来\"}\n"
            + "\n{not json\n"
            + "{\"target\": {\"span1_index\": 0, \"span1_text\": \"小明\", \"span2_index\": 3, \"span2_text\": \"他\"}, \"label\": \"maybe\", \"text\": \"小明说他来\"}\n");
        var e = Assert.Throws<ClueFormatException>(() => ClueReaders.Wsc(p));
        Assert.Equal(2, e.Issue.Line);
        Assert.Equal("$.target.span1_index", e.Issue.JsonPath);
        Assert.Contains(p, e.Message);
        Assert.Contains("SkipAndCount", e.Message);

        var d = ClueReaders.Wsc(p, new ClueReadOptions(MalformedPolicy.SkipAndCount));
        Assert.Equal(2, d.Records.Count);
        Assert.Equal(2, d.Report.Skipped);
        Assert.Equal([2, 4], d.Report.Issues.Select(i => i.Line));
        Assert.Equal(1, d.Report.UnknownLabels["maybe"]);
        var dropped = ClueReaders.Wsc(p, new ClueReadOptions(MalformedPolicy.SkipAndCount, DropUnknownLabels: true));
        Assert.Single(dropped.Records);
        Assert.Equal(1, dropped.Report.DroppedUnknownLabel);
    }

    [Fact]
    public void Cluener_spans_are_checked_and_typed()
    {
        string good = "{\"text\": \"去北京大学\", \"label\": {\"organization\": {\"北京大学\": [[1, 4]]}, \"planet\": {\"北京\": [[1, 2]]}}}\n";
        var d = ClueReaders.Cluener(Temp("ner.json", good));
        Assert.Equal([new NerEntity("organization", 1, 4), new NerEntity("planet", 1, 2)], d.Records[0].Entities());
        Assert.Equal(1, d.Report.UnknownLabels["planet"]);
        var e = Assert.Throws<ClueFormatException>(() => ClueReaders.Cluener(Temp("ner.json", "{\"text\": \"去北京大学\", \"label\": {\"name\": {\"北京\": [[2, 3]]}}}\n")));
        Assert.Equal(1, e.Issue.Line);
        Assert.Equal("$.label.name[\"北京\"][0]", e.Issue.JsonPath);
        // Offsets count code points, as in Python: an emoji before the entity is one character.
        var emoji = ClueReaders.Cluener(Temp("ner.json", "{\"text\": \"😀北京\", \"label\": {\"address\": {\"北京\": [[1, 2]]}}}\n"));
        Assert.Equal("北京", ClueText.Span(emoji.Records[0].Text, 1, 2));
    }

    [Fact]
    public void Csv_quoting_and_bad_rows_are_reported_by_line()
    {
        string p = Temp("train.csv", "sentence1,sentence2,label\n\"a,b\",\"say \"\"hi\"\"\",1\nx,y\nc,d,2\n");
        var e = Assert.Throws<ClueFormatException>(() => ClueReaders.AfqmcCsv(p));
        Assert.Equal(3, e.Issue.Line);
        var d = ClueReaders.AfqmcCsv(p, new ClueReadOptions(MalformedPolicy.SkipAndCount));
        Assert.Equal(new SentencePairRecord("a,b", "say \"hi\"", "1"), d.Records[0]);
        Assert.Equal(1, d.Report.Skipped);
        Assert.Equal(1, d.Report.UnknownLabels["2"]);
    }

    [Fact]
    public void Cmrc_and_c3_name_the_json_path()
    {
        string cmrc = Temp("cmrc.json", "{\"data\": [{\"paragraphs\": [{\"id\": \"P\", \"context\": \"北京是首都\", \"qas\": ["
            + "{\"question\": \"首都?\", \"id\": \"Q1\", \"answers\": [{\"text\": \"北京\", \"answer_start\": 0}, {\"text\": \"北京\", \"answer_start\": 3}]},"
            + "{\"question\": \"?\", \"id\": \"Q2\", \"answers\": [{\"text\": \"北京\"}]}]}]}]}");
        var e = Assert.Throws<ClueFormatException>(() => ClueReaders.Cmrc2018(cmrc));
        Assert.Equal("$.data[0].paragraphs[0].qas[1].answers[0].answer_start", e.Issue.JsonPath);
        var d = ClueReaders.Cmrc2018(cmrc, new ClueReadOptions(MalformedPolicy.SkipAndCount));
        Assert.Single(d.Records);
        Assert.Equal(1, d.Report.Notes["answer_start mismatch"]);
        // An unlabelled (test-format) question has no answers at all: kept with none, and counted.
        var test = ClueReaders.Cmrc2018(Temp("test.json", "{\"data\": [{\"paragraphs\": [{\"id\": \"P\", \"context\": \"北京是首都\", \"qas\": [{\"question\": \"首都?\", \"id\": \"T1\"}]}]}]}"));
        Assert.Empty(Assert.Single(test.Records).Answers);
        Assert.Equal(1, test.Report.Notes["unlabelled question"]);
        var bad = Assert.Throws<ClueFormatException>(() => ClueReaders.Cmrc2018(Temp("x.json", "{\"data\": [\n{\"paragraphs\": [}\n]}")));
        Assert.Equal(2, bad.Issue.Line);

        string c3 = Temp("c3.json", "[[[\"男：你好\"], [{\"question\": \"谁?\", \"choice\": [\"男\", \"女\"], \"answer\": \"男\"}, {\"question\": \"?\", \"choice\": [\"a\"], \"answer\": \"b\"}], \"1-1\"]]");
        var ce = Assert.Throws<ClueFormatException>(() => ClueReaders.C3(c3));
        Assert.Equal("$[0][1][1].answer", ce.Issue.JsonPath);
        var cd = ClueReaders.C3(c3, new ClueReadOptions(MalformedPolicy.SkipAndCount));
        Assert.Equal(0, cd.Records[0].AnswerIndex);
    }

    [Fact]
    public void Task_descriptors_say_what_is_missing()
    {
        Assert.False(ClueTasks.Get("tnews").HasFullTrain);
        Assert.True(ClueTasks.Get("cluener2020").HasFullTrain);
        Assert.Null(ClueTasks.Get("cmrc2018").Split("train"));
        Assert.Equal(ClueMetricKind.EventArgumentF1, ClueTasks.Get("duee").Metric);
        Assert.Throws<ArgumentException>(() => ClueTasks.Get("nope"));
    }

    /// <summary>Every staged split reads cleanly with the record count the descriptor (from the manifest) says.</summary>
    [Fact]
    public void Real_files_read_with_the_manifest_counts()
    {
        string root = TestPaths.SharedOrSkip("data");
        string P(string f) => Path.Combine(root, f);
        var tnewsLabels = ClueReaders.TnewsLabels(P("tnews/labels.json"));
        var predicates = ClueReaders.DuiePredicates(P("duie/all_50_schemas"));
        var schema = ClueReaders.DueeSchema(P("duee/event_schema.json"));
        Assert.Equal(15, tnewsLabels.Count);
        Assert.Equal(49, predicates.Count);   // 50 schema lines: one predicate occurs with two type pairs
        Assert.Equal(65, schema.Count);
        var reports = new List<string>();
        foreach (var task in ClueTasks.All)
            foreach (var split in task.Splits)
            {
                string f = P(split.File);
                ClueReadReport r = task.Name switch
                {
                    "afqmc" => f.EndsWith(".csv") ? ClueReaders.AfqmcCsv(f).Report : ClueReaders.AfqmcJson(f).Report,
                    "tnews" => ClueReaders.Tnews(f, tnewsLabels).Report,
                    "iflytek" => ClueReaders.Iflytek(f).Report,
                    "ocnli" => ClueReaders.Ocnli(f).Report,
                    "cmnli" => ClueReaders.CmnliTsv(f).Report,
                    "csl" => ClueReaders.Csl(f).Report,
                    "cluewsc2020" => ClueReaders.Wsc(f).Report,
                    "cluener2020" => ClueReaders.Cluener(f).Report,
                    "cmrc2018" => ClueReaders.Cmrc2018(f).Report,
                    "c3" => ClueReaders.C3(f).Report,
                    "chid" => ClueReaders.Chid(f).Report,
                    "duie" => ClueReaders.Duie(f, predicates).Report,
                    "duee" => ClueReaders.Duee(f, schema).Report,
                    _ => throw new InvalidOperationException(task.Name),
                };
                reports.Add(r.ToString());
                Assert.True(split.Records == r.Records, $"{task.Name}/{split.Name}: {r.Records} records, manifest says {split.Records} ({r})");
                Assert.Equal(0, r.Skipped);
                if (task.Name != "ocnli") Assert.True(r.UnknownLabels.Count == 0, r.ToString());
            }
        TestContext.Current.TestOutputHelper?.WriteLine(string.Join("\n", reports));
        var ocnli = ClueReaders.Ocnli(P("ocnli/dev.json"), new ClueReadOptions(DropUnknownLabels: true));
        Assert.Equal(2950, ocnli.Records.Count);
        Assert.Equal(50, ocnli.Report.UnknownLabels["-"]);
        Assert.Equal(200, ClueReaders.Cmrc2018(P("cmrc2018/cmrc2018_dev.json")).Report.Notes["answer_start mismatch"]);
    }
}
