namespace Bert4Sharp.Tasks.Clue;

using System.Text.Json;
using static Bert4Sharp.Tasks.Clue.ClueReadLoop;

/// <summary>
/// Readers for the CLUE tasks (and DuIE/DuEE) in the layouts of shared/data (see its MANIFEST.md): plain records, no
/// tensors. Every reader takes <see cref="ClueReadOptions"/> (stop or skip-and-count on malformed records, drop or keep
/// unknown labels) and returns the records with a <see cref="ClueReadReport"/>. Malformed input is named by file, line
/// and JSON path; labels outside the task's label set are counted.
/// </summary>
public static class ClueReaders
{
    /// <summary>AFQMC's labels ("0" different, "1" same meaning); also CSL's.</summary>
    public static readonly IReadOnlySet<string> BinaryLabels = new HashSet<string> { "0", "1" };
    /// <summary>OCNLI/CMNLI labels (OCNLI's "-" rows are outside them).</summary>
    public static readonly IReadOnlySet<string> NliLabels = new HashSet<string> { "entailment", "neutral", "contradiction" };
    /// <summary>CLUEWSC2020 labels.</summary>
    public static readonly IReadOnlySet<string> WscLabels = new HashSet<string> { "true", "false" };
    /// <summary>IFLYTEK's 119 labels "0".."118".</summary>
    public static readonly IReadOnlySet<string> IflytekLabels = Enumerable.Range(0, 119).Select(i => i.ToString(System.Globalization.CultureInfo.InvariantCulture)).ToHashSet();
    /// <summary>The 10 CLUENER2020 entity types.</summary>
    public static readonly IReadOnlySet<string> NerTypes = new HashSet<string>
        { "address", "book", "company", "game", "government", "movie", "name", "organization", "position", "scene" };

    /// <summary>AFQMC JSON lines <c>{sentence1, sentence2, label}</c> (test: <c>id</c>, no label).</summary>
    public static ClueData<SentencePairRecord> AfqmcJson(string path, ClueReadOptions? options = null) =>
        JsonLines(path, options, BinaryLabels, (o, s) => Pair(o, s, "label"));

    /// <summary>AFQMC train as the CSV conversion staged in shared/data (header <c>sentence1,sentence2,label</c>, RFC-4180 quoting).</summary>
    public static ClueData<SentencePairRecord> AfqmcCsv(string path, ClueReadOptions? options = null) =>
        Delimited(path, ',', quoted: true, header: true, options, BinaryLabels, (f, s) =>
        {
            if (f.Count != 3) throw new RecordException("row", $"expected 3 columns (sentence1,sentence2,label), got {f.Count}");
            s.Label(f[2]);
            return new SentencePairRecord(f[0], f[1], f[2]);
        });

    /// <summary>OCNLI JSON lines; label "-" (no annotator majority) is an unknown label (drop it with <see cref="ClueReadOptions.DropUnknownLabels"/>).</summary>
    public static ClueData<SentencePairRecord> Ocnli(string path, ClueReadOptions? options = null) =>
        JsonLines(path, options, NliLabels, (o, s) => Pair(o, s, "label"));

    /// <summary>CMNLI dev as staged: TSV <c>sentence1 TAB sentence2 TAB label</c>.</summary>
    public static ClueData<SentencePairRecord> CmnliTsv(string path, ClueReadOptions? options = null) =>
        Delimited(path, '\t', quoted: false, header: false, options, NliLabels, (f, s) =>
        {
            if (f.Count != 3) throw new RecordException("row", $"expected 3 tab-separated columns, got {f.Count}");
            s.Label(f[2]);
            return new SentencePairRecord(f[0], f[1], f[2]);
        });

    /// <summary>The TNEWS label set from labels.json (<c>{label_des, label}</c> lines).</summary>
    public static IReadOnlySet<string> TnewsLabels(string labelsPath) =>
        JsonLines(labelsPath, null, null, (o, _) => Scalar(Field(o, "label", "$"), "$.label")).Records.ToHashSet();

    /// <summary>The TNEWS label names from labels.json: each label's <c>label_des</c> (the label itself when that is null).</summary>
    public static IReadOnlyDictionary<string, string> TnewsLabelNames(string labelsPath)
    {
        var map = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var (label, name) in JsonLines(labelsPath, null, null, (o, _) =>
        {
            string label = Scalar(Field(o, "label", "$"), "$.label");
            var description = Field(o, "label_des", "$");                                    // required, as in labels.json
            return (label, description.ValueKind == JsonValueKind.Null ? label : Scalar(description, "$.label_des"));
        }).Records)
            map[label] = name;
        return map;
    }

    /// <summary>TNEWS JSON lines <c>{label, label_desc, sentence, keywords, label_des}</c>; labels checked against <paramref name="labels"/> (e.g. <see cref="TnewsLabels"/>).</summary>
    public static ClueData<SentenceRecord> Tnews(string path, IReadOnlySet<string>? labels, ClueReadOptions? options = null) =>
        JsonLines(path, options, labels, (o, s) =>
        {
            string? label = OptStr(o, "label");
            s.Label(label);
            return new SentenceRecord(Str(o, "sentence"), label, OptStr(o, "label_desc"), OptStr(o, "id"), OptStr(o, "keywords"));
        });

    /// <summary>IFLYTEK (FewCLUE) JSON lines <c>{label: int, label_des, sentence, id}</c>.</summary>
    public static ClueData<SentenceRecord> Iflytek(string path, ClueReadOptions? options = null) =>
        JsonLines(path, options, IflytekLabels, (o, s) =>
        {
            string? label = OptStr(o, "label");
            s.Label(label);
            return new SentenceRecord(Str(o, "sentence"), label, OptStr(o, "label_des"), OptStr(o, "id"));
        });

    /// <summary>CSL (FewCLUE) JSON lines <c>{id, abst, keyword: [..], label}</c>.</summary>
    public static ClueData<CslRecord> Csl(string path, ClueReadOptions? options = null) =>
        JsonLines(path, options, BinaryLabels, (o, s) =>
        {
            string? label = OptStr(o, "label");
            s.Label(label);
            return new CslRecord(Str(o, "abst"), Strings(Array(o, "keyword"), "$.keyword"), label, OptStr(o, "id"));
        });

    /// <summary>CLUEWSC2020 JSON lines; each span's text must be found at its index.</summary>
    public static ClueData<WscRecord> Wsc(string path, ClueReadOptions? options = null) =>
        JsonLines(path, options, WscLabels, (o, s) =>
        {
            string text = Str(o, "text");
            var t = Field(o, "target", "$");
            WscSpan Span(int k)
            {
                var span = new WscSpan(Int(t, $"span{k}_index", "$.target"), Str(t, $"span{k}_text", "$.target"));
                SpanAt(text, span.Index, span.Text, $"$.target.span{k}_index");
                return span;
            }
            string? label = OptStr(o, "label");
            s.Label(label);
            return new WscRecord(text, Span(1), Span(2), label, o.TryGetProperty("idx", out _) ? Int(o, "idx") : o.TryGetProperty("id", out _) ? Int(o, "id") : null);
        });

    /// <summary>
    /// CLUENER2020 JSON lines <c>{text, label: {type: {entity: [[start, end], ..]}}}</c> (test: <c>{id, text}</c>). Spans are
    /// inclusive code-point ranges and must hold the entity string; types outside the 10 are reported.
    /// </summary>
    public static ClueData<NerRecord> Cluener(string path, ClueReadOptions? options = null) =>
        JsonLines(path, options, NerTypes, (o, s) =>
        {
            string text = Str(o, "text");
            var labels = new Dictionary<string, IReadOnlyDictionary<string, IReadOnlyList<(int, int)>>>(StringComparer.Ordinal);
            if (o.TryGetProperty("label", out var l) && l.ValueKind != JsonValueKind.Null)
            {
                if (l.ValueKind != JsonValueKind.Object) throw new RecordException("$.label", $"expected an object, got {l.ValueKind}");
                foreach (var type in l.EnumerateObject())
                {
                    s.Label(type.Name);
                    string at = $"$.label.{type.Name}";
                    if (type.Value.ValueKind != JsonValueKind.Object) throw new RecordException(at, $"expected an object entity → spans, got {type.Value.ValueKind}");
                    var entities = new Dictionary<string, IReadOnlyList<(int, int)>>(StringComparer.Ordinal);
                    foreach (var ent in type.Value.EnumerateObject())
                    {
                        string eat = $"{at}[\"{ent.Name}\"]";
                        if (ent.Value.ValueKind != JsonValueKind.Array) throw new RecordException(eat, "expected a list of [start, end] spans");
                        var spans = new List<(int, int)>();
                        int k = 0;
                        foreach (var sp in ent.Value.EnumerateArray())
                        {
                            string sat = $"{eat}[{k++}]";
                            if (sp.ValueKind != JsonValueKind.Array || sp.GetArrayLength() != 2
                                || !sp[0].TryGetInt32(out int a) || !sp[1].TryGetInt32(out int b))
                                throw new RecordException(sat, $"expected [start, end] integers, got {sp.GetRawText()}");
                            if (b < a) throw new RecordException(sat, $"end {b} before start {a}");
                            SpanAt(text, a, ent.Name, sat);
                            if (ClueText.CodePoints(ent.Name) != b - a + 1) throw new RecordException(sat, $"[{a}, {b}] is {b - a + 1} characters but '{ent.Name}' has {ClueText.CodePoints(ent.Name)}");
                            spans.Add((a, b));
                        }
                        entities[ent.Name] = spans;
                    }
                    labels[type.Name] = entities;
                }
            }
            return new NerRecord(text, labels, OptStr(o, "id"));
        });

    /// <summary>
    /// CMRC2018 SQuAD-style JSON <c>{data: [{paragraphs: [{id, context, qas: [{question, id, answers: [{text, answer_start}]}]}]}]}</c>,
    /// one record per question. An answer not found at its <c>answer_start</c> is counted as the note
    /// <c>answer_start mismatch</c> (the official dev has some; the metric uses answer texts only). A question without
    /// <c>answers</c> (an unlabelled test file) is kept with no answers and counted as the note <c>unlabelled question</c>.
    /// </summary>
    public static ClueData<CmrcRecord> Cmrc2018(string path, ClueReadOptions? options = null)
    {
        options ??= ClueReadOptions.Default;
        var report = new ClueReadReport(path);
        var list = new List<CmrcRecord>();
        using var doc = Document(path);
        var data = Array(doc.RootElement, "data");
        int di = 0;
        foreach (var article in data.EnumerateArray())
        {
            string aat = $"$.data[{di++}]";
            int pi = 0;
            JsonElement paragraphs;
            try { paragraphs = Array(article, "paragraphs", aat); }
            catch (RecordException e) { Bad(path, options, report, e); continue; }
            foreach (var para in paragraphs.EnumerateArray())
            {
                string pat = $"{aat}.paragraphs[{pi++}]";
                string context, cid;
                JsonElement qas;
                try { (context, cid, qas) = (Str(para, "context", pat), OptStr(para, "id", pat) ?? "", Array(para, "qas", pat)); }
                catch (RecordException e) { Bad(path, options, report, e); continue; }
                int qi = 0;
                foreach (var qa in qas.EnumerateArray())
                {
                    string qat = $"{pat}.qas[{qi++}]";
                    Item(path, options, report, list, new RecordScope(report, null), () =>
                    {
                        var answers = new List<CmrcAnswer>();
                        int ai = 0;
                        List<JsonElement> given = qa.TryGetProperty("answers", out var field) && field.ValueKind != JsonValueKind.Null ? [.. Array(qa, "answers", qat).EnumerateArray()] : [];
                        foreach (var an in given)
                        {
                            string anat = $"{qat}.answers[{ai++}]";
                            var a = new CmrcAnswer(Str(an, "text", anat), Int(an, "answer_start", anat));
                            try { SpanAt(context, a.Start, a.Text, anat); } catch (RecordException) { report.Note("answer_start mismatch"); }
                            answers.Add(a);
                        }
                        if (answers.Count == 0) report.Note("unlabelled question");
                        return new CmrcRecord(cid, context, Str(qa, "id", qat).Trim(), Str(qa, "question", qat), answers);
                    });
                }
            }
        }
        report.Records = list.Count;
        return new(list, report);
    }

    /// <summary>C3 JSON array of documents <c>[[context lines], [{question, choice: [..], answer}], id]</c>, one record per question; the answer must be one of the choices.</summary>
    public static ClueData<C3Record> C3(string path, ClueReadOptions? options = null)
    {
        options ??= ClueReadOptions.Default;
        var report = new ClueReadReport(path);
        var list = new List<C3Record>();
        using var doc = Document(path);
        if (doc.RootElement.ValueKind != JsonValueKind.Array)
            throw new ClueFormatException(new ClueReadIssue(path, 1, "$", $"expected a JSON array of documents, got {doc.RootElement.ValueKind}"));
        int di = 0;
        foreach (var d in doc.RootElement.EnumerateArray())
        {
            string dat = $"$[{di++}]";
            if (d.ValueKind != JsonValueKind.Array || d.GetArrayLength() != 3 || d[0].ValueKind != JsonValueKind.Array || d[1].ValueKind != JsonValueKind.Array)
            {
                Bad(path, options, report, new RecordException(dat, "expected [[context lines], [questions], id]"));
                continue;
            }
            List<string> context;
            try { context = Strings(d[0], dat + "[0]"); }
            catch (RecordException e) { Bad(path, options, report, e); continue; }
            string id = d[2].ValueKind == JsonValueKind.String ? d[2].GetString()! : d[2].GetRawText();
            int qi = 0;
            foreach (var q in d[1].EnumerateArray())
            {
                string qat = $"{dat}[1][{qi++}]";
                Item(path, options, report, list, new RecordScope(report, null), () =>
                {
                    var choices = Strings(Array(q, "choice", qat), qat + ".choice");
                    string? answer = OptStr(q, "answer", qat);
                    int index = answer is null ? -1 : choices.IndexOf(answer);
                    if (answer is not null && index < 0) throw new RecordException(qat + ".answer", $"'{answer}' is not one of the {choices.Count} choices");
                    return new C3Record(id, context, Str(q, "question", qat), choices, answer, index);
                });
            }
        }
        report.Records = list.Count;
        return new(list, report);
    }

    /// <summary>CHID (FewCLUE) JSON lines <c>{id, candidates: [7], content with #idiom#, answer}</c>.</summary>
    public static ClueData<ChidRecord> Chid(string path, ClueReadOptions? options = null) =>
        JsonLines(path, options, null, (o, scope) =>
        {
            var candidates = Strings(Array(o, "candidates"), "$.candidates");
            string content = Str(o, "content");
            if (!content.Contains("#idiom#", StringComparison.Ordinal)) throw new RecordException("$.content", "has no #idiom# blank");
            int? answer = o.TryGetProperty("answer", out _) ? Int(o, "answer") : null;
            if (answer is int a && (a < 0 || a >= candidates.Count)) throw new RecordException("$.answer", $"{a} is not an index into the {candidates.Count} candidates");
            return new ChidRecord(content, candidates, answer, o.TryGetProperty("id", out _) ? Int(o, "id") : null);
        });

    /// <summary>The DuIE predicates of all_50_schemas (<c>{object_type, predicate, subject_type}</c> lines).</summary>
    public static IReadOnlySet<string> DuiePredicates(string schemaPath) =>
        JsonLines(schemaPath, null, null, (o, _) => Str(o, "predicate")).Records.ToHashSet();

    /// <summary>DuIE 1.0 JSON lines <c>{text, spo_list: [{subject, predicate, object, subject_type, object_type}], postag}</c>; predicates checked against <paramref name="predicates"/>.</summary>
    public static ClueData<DuieRecord> Duie(string path, IReadOnlySet<string>? predicates, ClueReadOptions? options = null) =>
        JsonLines(path, options, predicates, (o, s) =>
        {
            var spos = new List<DuieSpo>();
            int k = 0;
            if (o.TryGetProperty("spo_list", out var sl) && sl.ValueKind != JsonValueKind.Null)
                foreach (var spo in Array(o, "spo_list").EnumerateArray())
                {
                    string at = $"$.spo_list[{k++}]";
                    var x = new DuieSpo(Str(spo, "subject", at), Str(spo, "predicate", at), Str(spo, "object", at), OptStr(spo, "subject_type", at), OptStr(spo, "object_type", at));
                    s.Label(x.Predicate);
                    spos.Add(x);
                }
            return new DuieRecord(Str(o, "text"), spos);
        });

    /// <summary>The DuEE schema: event type → its roles (event_schema.json lines <c>{event_type, role_list: [{role}]}</c>).</summary>
    public static IReadOnlyDictionary<string, IReadOnlySet<string>> DueeSchema(string schemaPath) =>
        JsonLines(schemaPath, null, null, (o, _) => (Str(o, "event_type"),
            (IReadOnlySet<string>)Array(o, "role_list").EnumerateArray().Select((r, i) => Str(r, "role", $"$.role_list[{i}]")).ToHashSet()))
        .Records.ToDictionary(x => x.Item1, x => x.Item2);

    /// <summary>
    /// DuEE 1.0 JSON lines <c>{text, id, event_list: [{event_type, trigger, trigger_start_index, arguments: [{role, argument, argument_start_index}]}]}</c>.
    /// Triggers and arguments must be found at their start; event types (<c>type:</c>) and roles (<c>role:</c>) outside
    /// <paramref name="schema"/> are reported.
    /// </summary>
    public static ClueData<DueeRecord> Duee(string path, IReadOnlyDictionary<string, IReadOnlySet<string>>? schema, ClueReadOptions? options = null)
    {
        var known = schema?.SelectMany(kv => kv.Value.Select(r => "role:" + kv.Key + "/" + r).Append("type:" + kv.Key)).ToHashSet();
        return JsonLines(path, options, known, (o, s) =>
        {
            string text = Str(o, "text");
            var events = new List<DueeEvent>();
            int ei = 0;
            if (o.TryGetProperty("event_list", out var el) && el.ValueKind != JsonValueKind.Null)
                foreach (var e in Array(o, "event_list").EnumerateArray())
                {
                    string at = $"$.event_list[{ei++}]";
                    string type = Str(e, "event_type", at), trigger = Str(e, "trigger", at);
                    int ts = Int(e, "trigger_start_index", at);
                    SpanAt(text, ts, trigger, at + ".trigger_start_index");
                    s.Label("type:" + type);
                    var args = new List<DueeArgument>();
                    int ai = 0;
                    foreach (var a in Array(e, "arguments", at).EnumerateArray())
                    {
                        string aat = $"{at}.arguments[{ai++}]";
                        var arg = new DueeArgument(Str(a, "role", aat), Str(a, "argument", aat), Int(a, "argument_start_index", aat));
                        SpanAt(text, arg.Start, arg.Argument, aat + ".argument_start_index");
                        if (schema is not null && schema.ContainsKey(type)) s.Label("role:" + type + "/" + arg.Role);
                        args.Add(arg);
                    }
                    events.Add(new DueeEvent(type, trigger, ts, args));
                }
            return new DueeRecord(text, OptStr(o, "id"), events);
        });
    }

    static SentencePairRecord Pair(JsonElement o, RecordScope s, string labelKey)
    {
        string? label = OptStr(o, labelKey);
        s.Label(label);
        return new SentencePairRecord(Str(o, "sentence1"), Str(o, "sentence2"), label, OptStr(o, "id"));
    }
}
