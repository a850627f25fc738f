namespace Bert4Sharp.Tasks.Clue;

using System.Globalization;
using System.Text.Json;

/// <summary>What a reader does with a record it cannot parse.</summary>
public enum MalformedPolicy
{
    /// <summary>Throw a <see cref="ClueFormatException"/> naming file, line and JSON path (the default).</summary>
    Stop,
    /// <summary>Leave the record out, count it and keep its issue in <see cref="ClueReadReport.Issues"/>.</summary>
    SkipAndCount,
}

/// <summary>How a CLUE reader treats bad records and labels outside the task's label set.</summary>
/// <param name="Policy">Malformed records: stop, or skip and count.</param>
/// <param name="DropUnknownLabels">
/// Leave out records whose label is not in the label set (e.g. OCNLI's "-" rows, which annotators could not agree on).
/// Either way they are counted in <see cref="ClueReadReport.UnknownLabels"/>.
/// </param>
public sealed record ClueReadOptions(MalformedPolicy Policy = MalformedPolicy.Stop, bool DropUnknownLabels = false)
{
    /// <summary>Stop at the first malformed record, keep unknown labels (reported).</summary>
    public static ClueReadOptions Default { get; } = new();
}

/// <summary>One malformed record: where it is and what is wrong.</summary>
/// <param name="File">The file.</param>
/// <param name="Line">1-based line of the record (JSON lines, CSV, TSV) or of the JSON token that failed; 0 when unknown.</param>
/// <param name="JsonPath">Where in the record, e.g. <c>$.target.span1_index</c> or <c>$.data[3].paragraphs[0].qas[2]</c>.</param>
/// <param name="Message">What is wrong.</param>
public sealed record ClueReadIssue(string File, int Line, string JsonPath, string Message)
{
    /// <inheritdoc/>
    public override string ToString() => $"{File} line {Line}, {JsonPath}: {Message}";
}

/// <summary>A malformed CLUE file or record, under <see cref="MalformedPolicy.Stop"/>.</summary>
public sealed class ClueFormatException(ClueReadIssue issue, Exception? inner = null)
    : FormatException(issue + ". Fix the record, or read with MalformedPolicy.SkipAndCount to leave it out.", inner)
{
    /// <summary>Where and what.</summary>
    public ClueReadIssue Issue { get; } = issue;
}

/// <summary>What a reader found: records kept, skipped, unknown labels and other counted observations.</summary>
public sealed class ClueReadReport
{
    /// <summary>Issues kept in <see cref="Issues"/> at most (the count goes on).</summary>
    public const int MaxIssues = 100;

    internal ClueReadReport(string file) => File = file;

    /// <summary>The file read.</summary>
    public string File { get; }
    /// <summary>Records returned.</summary>
    public int Records { get; internal set; }
    /// <summary>Malformed records left out (<see cref="MalformedPolicy.SkipAndCount"/>).</summary>
    public int Skipped { get; internal set; }
    /// <summary>Records left out because their label is not in the label set (<see cref="ClueReadOptions.DropUnknownLabels"/>).</summary>
    public int DroppedUnknownLabel { get; internal set; }
    /// <summary>The first <see cref="MaxIssues"/> malformed records.</summary>
    public List<ClueReadIssue> Issues { get; } = [];
    /// <summary>Labels (or types, predicates, roles) met that are not in the label set, with how often.</summary>
    public SortedDictionary<string, int> UnknownLabels { get; } = new(StringComparer.Ordinal);
    /// <summary>Other counted observations that do not make a record malformed (e.g. <c>answer_start mismatch</c>).</summary>
    public SortedDictionary<string, int> Notes { get; } = new(StringComparer.Ordinal);

    internal void Note(string what) => Notes[what] = Notes.GetValueOrDefault(what) + 1;

    /// <inheritdoc/>
    public override string ToString() =>
        $"{File}: {Records} records, {Skipped} skipped, {DroppedUnknownLabel} dropped for unknown labels"
        + (UnknownLabels.Count > 0 ? "; unknown labels " + string.Join(", ", UnknownLabels.Select(kv => $"'{kv.Key}'×{kv.Value}")) : "")
        + (Notes.Count > 0 ? "; " + string.Join(", ", Notes.Select(kv => $"{kv.Key}×{kv.Value}")) : "");
}

/// <summary>Records read from one file, and the report of reading them.</summary>
public sealed record ClueData<T>(IReadOnlyList<T> Records, ClueReadReport Report);

/// <summary>A record-level parse error: a JSON path and a message (the loop adds file and line).</summary>
sealed class RecordException(string path, string message) : Exception(message)
{
    public string JsonPath { get; } = path;
}

/// <summary>Per-record state while reading: the label set, the unknown-label flag, the report.</summary>
sealed class RecordScope(ClueReadReport report, IReadOnlySet<string>? labels)
{
    public ClueReadReport Report { get; } = report;
    public bool HasUnknownLabel { get; set; }

    /// <summary>Reports <paramref name="label"/> when a label set is known and it is not in it.</summary>
    public void Label(string? label, string kind = "")
    {
        if (label is null || labels is null || labels.Contains(label)) return;
        HasUnknownLabel = true;
        string key = kind.Length == 0 ? label : kind + ":" + label;
        Report.UnknownLabels[key] = Report.UnknownLabels.GetValueOrDefault(key) + 1;
    }
}

/// <summary>The shared read loops (JSON lines, delimited text, one JSON document) and JSON field helpers.</summary>
static class ClueReadLoop
{
    /// <summary>One JSON object per non-empty line; <paramref name="parse"/> turns it into a record.</summary>
    public static ClueData<T> JsonLines<T>(string path, ClueReadOptions? options, IReadOnlySet<string>? labels,
        Func<JsonElement, RecordScope, T> parse)
    {
        options ??= ClueReadOptions.Default;
        var report = new ClueReadReport(path);
        var list = new List<T>();
        int lineNo = 0;
        foreach (string raw in ReadLines(path))
        {
            lineNo++;
            string line = raw.TrimEnd('\r');
            if (line.Trim().Length == 0) continue;
            var scope = new RecordScope(report, labels);
            T record;
            try
            {
                using var doc = JsonDocument.Parse(line);
                if (doc.RootElement.ValueKind != JsonValueKind.Object) throw new RecordException("$", $"expected a JSON object, got {doc.RootElement.ValueKind}");
                record = parse(doc.RootElement, scope);
            }
            catch (JsonException e) { Fail(report, options, new ClueReadIssue(path, lineNo, "$", "not valid JSON (" + e.Message + ")"), e); continue; }
            catch (RecordException e) { Fail(report, options, new ClueReadIssue(path, lineNo, e.JsonPath, e.Message), e); continue; }
            Keep(list, record, scope, options);
        }
        report.Records = list.Count;
        return new(list, report);
    }

    /// <summary>Rows of a delimited file (RFC-4180 quoting when <paramref name="quoted"/>); the line is the row's first line.</summary>
    public static ClueData<T> Delimited<T>(string path, char separator, bool quoted, bool header, ClueReadOptions? options,
        IReadOnlySet<string>? labels, Func<IReadOnlyList<string>, RecordScope, T> parse)
    {
        options ??= ClueReadOptions.Default;
        var report = new ClueReadReport(path);
        var list = new List<T>();
        bool first = true;
        foreach (var (line, fields, error) in Rows(path, separator, quoted))
        {
            if (error is not null) { Fail(report, options, new ClueReadIssue(path, line, "row", error), null); continue; }
            if (first && header) { first = false; continue; }
            first = false;
            if (fields.Count == 1 && fields[0].Length == 0) continue;
            var scope = new RecordScope(report, labels);
            T record;
            try { record = parse(fields, scope); }
            catch (RecordException e) { Fail(report, options, new ClueReadIssue(path, line, e.JsonPath, e.Message), e); continue; }
            Keep(list, record, scope, options);
        }
        report.Records = list.Count;
        return new(list, report);
    }

    /// <summary>Parses a whole-file JSON document; a syntax error names its line.</summary>
    public static JsonDocument Document(string path)
    {
        try { return JsonDocument.Parse(File.ReadAllBytes(path), new JsonDocumentOptions { AllowTrailingCommas = false }); }
        catch (JsonException e)
        {
            throw new ClueFormatException(new ClueReadIssue(path, (int)(e.LineNumber ?? -1) + 1, e.Path ?? "$", "not valid JSON (" + e.Message + ")"), e);
        }
        catch (FileNotFoundException e) { throw new FileNotFoundException($"CLUE file {path} does not exist", path, e); }
    }

    /// <summary>Runs <paramref name="parse"/> for one record of a JSON document, applying the policy.</summary>
    public static void Item<T>(string path, ClueReadOptions options, ClueReadReport report, List<T> list, RecordScope scope, Func<T> parse)
    {
        T record;
        try { record = parse(); }
        catch (RecordException e) { Fail(report, options, new ClueReadIssue(path, 0, e.JsonPath, e.Message), e); return; }
        Keep(list, record, scope, options);
    }

    /// <summary>A malformed part of a JSON document (a paragraph, a document): one skipped item under the policy.</summary>
    public static void Bad(string path, ClueReadOptions options, ClueReadReport report, RecordException e) =>
        Fail(report, options, new ClueReadIssue(path, 0, e.JsonPath, e.Message), e);

    static void Keep<T>(List<T> list, T record, RecordScope scope, ClueReadOptions options)
    {
        if (scope.HasUnknownLabel && options.DropUnknownLabels) scope.Report.DroppedUnknownLabel++;
        else list.Add(record);
    }

    static void Fail(ClueReadReport report, ClueReadOptions options, ClueReadIssue issue, Exception? inner)
    {
        if (options.Policy == MalformedPolicy.Stop) throw new ClueFormatException(issue, inner);
        report.Skipped++;
        if (report.Issues.Count < ClueReadReport.MaxIssues) report.Issues.Add(issue);
    }

    static IEnumerable<string> ReadLines(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"CLUE file {path} does not exist", path);
        return File.ReadLines(path);
    }

    static IEnumerable<(int Line, List<string> Fields, string? Error)> Rows(string path, char sep, bool quoted)
    {
        string text = File.Exists(path) ? File.ReadAllText(path) : throw new FileNotFoundException($"CLUE file {path} does not exist", path);
        int i = 0, line = 1;
        while (i < text.Length)
        {
            int start = line;
            var fields = new List<string>();
            var cur = new System.Text.StringBuilder();
            bool inQuotes = false, wasQuoted = false;
            string? error = null;
            for (; i < text.Length; i++)
            {
                char c = text[i];
                if (inQuotes)
                {
                    if (c == '"')
                    {
                        if (i + 1 < text.Length && text[i + 1] == '"') { cur.Append('"'); i++; }
                        else inQuotes = false;
                    }
                    else { if (c == '\n') line++; cur.Append(c); }
                    continue;
                }
                if (c == '\n') { i++; line++; break; }
                if (c == '\r') continue;
                if (c == sep) { fields.Add(cur.ToString()); cur.Clear(); wasQuoted = false; continue; }
                if (quoted && c == '"')
                {
                    if (cur.Length == 0 && !wasQuoted) { inQuotes = wasQuoted = true; continue; }
                    error ??= $"stray quote at column {fields.Count + 1}";
                }
                cur.Append(c);
            }
            if (inQuotes) error = "quoted field not closed before the end of the file";
            fields.Add(cur.ToString());
            yield return (start, fields, error);
        }
    }

    // ---- JSON field helpers (a missing or mistyped field is a RecordException naming its path) ----

    public static JsonElement Field(JsonElement obj, string name, string at)
    {
        if (obj.ValueKind != JsonValueKind.Object) throw new RecordException(at, $"expected an object, got {obj.ValueKind}");
        return obj.TryGetProperty(name, out var v) ? v : throw new RecordException($"{at}.{name}", "missing");
    }

    public static string Str(JsonElement obj, string name, string at = "$")
    {
        var v = Field(obj, name, at);
        return v.ValueKind == JsonValueKind.String ? v.GetString()! : throw new RecordException($"{at}.{name}", $"expected a string, got {v.ValueKind}");
    }

    public static string? OptStr(JsonElement obj, string name, string at = "$") =>
        obj.TryGetProperty(name, out var v) && v.ValueKind != JsonValueKind.Null ? Scalar(v, $"{at}.{name}") : null;

    public static int Int(JsonElement obj, string name, string at = "$")
    {
        var v = Field(obj, name, at);
        return v.ValueKind == JsonValueKind.Number && v.TryGetInt32(out int n) ? n
            : v.ValueKind == JsonValueKind.String && int.TryParse(v.GetString(), NumberStyles.Integer, CultureInfo.InvariantCulture, out n) ? n
            : throw new RecordException($"{at}.{name}", $"expected an integer, got {v.ValueKind} {v.GetRawText()}");
    }

    /// <summary>A string or number field as text (labels are "0" in some files and 0 in others).</summary>
    public static string Scalar(JsonElement v, string at) => v.ValueKind switch
    {
        JsonValueKind.String => v.GetString()!,
        JsonValueKind.Number => v.GetRawText(),
        JsonValueKind.True => "true",
        JsonValueKind.False => "false",
        _ => throw new RecordException(at, $"expected a string or number, got {v.ValueKind}"),
    };

    public static JsonElement Array(JsonElement obj, string name, string at = "$")
    {
        var v = Field(obj, name, at);
        return v.ValueKind == JsonValueKind.Array ? v : throw new RecordException($"{at}.{name}", $"expected an array, got {v.ValueKind}");
    }

    public static List<string> Strings(JsonElement arr, string at)
    {
        var list = new List<string>();
        int k = 0;
        foreach (var e in arr.EnumerateArray())
        {
            list.Add(e.ValueKind == JsonValueKind.String ? e.GetString()! : throw new RecordException($"{at}[{k}]", $"expected a string, got {e.ValueKind}"));
            k++;
        }
        return list;
    }

    /// <summary>Checks that <paramref name="text"/> holds <paramref name="span"/> at <paramref name="start"/>.</summary>
    /// <remarks>Offsets in the CLUE files count Unicode code points (Python string indices), not UTF-16 units.</remarks>
    public static void SpanAt(string text, int start, string span, string at)
    {
        int u = ClueText.Utf16Index(text, start);
        if (start < 0 || u < 0 || u + span.Length > text.Length)
            throw new RecordException(at, $"span '{span}' at {start} runs outside the text ({ClueText.CodePoints(text)} characters)");
        if (string.CompareOrdinal(text, u, span, 0, span.Length) != 0)
            throw new RecordException(at, $"the text at {start} is '{text.Substring(u, span.Length)}', not '{span}'");
    }
}

/// <summary>Character offsets as the CLUE files (and Python) count them: Unicode code points.</summary>
public static class ClueText
{
    /// <summary>Number of code points in <paramref name="text"/>.</summary>
    public static int CodePoints(string text)
    {
        int n = 0;
        for (int i = 0; i < text.Length; i++, n++)
            if (char.IsHighSurrogate(text[i]) && i + 1 < text.Length && char.IsLowSurrogate(text[i + 1])) i++;
        return n;
    }

    /// <summary>The UTF-16 index of code point <paramref name="codePoint"/> (the length when it is the end); −1 when out of range.</summary>
    public static int Utf16Index(string text, int codePoint)
    {
        if (codePoint < 0) return -1;
        int i = 0;
        for (int n = 0; n < codePoint; n++)
        {
            if (i >= text.Length) return -1;
            i += char.IsHighSurrogate(text[i]) && i + 1 < text.Length && char.IsLowSurrogate(text[i + 1]) ? 2 : 1;
        }
        return i;
    }

    /// <summary>The substring of code points [<paramref name="start"/>, <paramref name="endInclusive"/>].</summary>
    public static string Span(string text, int start, int endInclusive)
    {
        int a = Utf16Index(text, start), b = Utf16Index(text, endInclusive + 1);
        if (a < 0 || b < 0 || b < a) throw new ArgumentOutOfRangeException(nameof(start), $"span [{start}, {endInclusive}] is outside a text of {CodePoints(text)} characters");
        return text[a..b];
    }
}
