namespace Bert4Sharp.Tasks.Clue;

/// <summary>A sentence-pair example (AFQMC, OCNLI, CMNLI). <paramref name="Label"/> is null in unlabelled test files.</summary>
public sealed record SentencePairRecord(string Sentence1, string Sentence2, string? Label, string? Id = null);

/// <summary>A single-sentence example (TNEWS, IFLYTEK); labels as the file spells them ("0".."14", "0".."118").</summary>
public sealed record SentenceRecord(string Sentence, string? Label, string? LabelName = null, string? Id = null, string? Keywords = null);

/// <summary>A CSL example: a paper abstract, its keywords, label "1" when all are real and "0" when one is fake.</summary>
public sealed record CslRecord(string Abstract, IReadOnlyList<string> Keywords, string? Label, string? Id = null);

/// <summary>A span of a CLUEWSC2020 text: code-point index and the text found there.</summary>
public sealed record WscSpan(int Index, string Text);

/// <summary>A CLUEWSC2020 example: does the pronoun <paramref name="Span2"/> refer to <paramref name="Span1"/> ("true"/"false")? <paramref name="Idx"/>: the file's <c>idx</c> (train, dev) or <c>id</c> (test).</summary>
public sealed record WscRecord(string Text, WscSpan Span1, WscSpan Span2, string? Label, int? Idx = null);

/// <summary>A named entity: type and inclusive code-point span [<paramref name="Start"/>, <paramref name="End"/>].</summary>
public readonly record struct NerEntity(string Type, int Start, int End);

/// <summary>
/// A CLUENER2020 example. <paramref name="Labels"/> is type → entity string → its [start, end] spans (inclusive, code
/// points), as in the file; empty for the unlabelled test.
/// </summary>
public sealed record NerRecord(string Text, IReadOnlyDictionary<string, IReadOnlyDictionary<string, IReadOnlyList<(int Start, int End)>>> Labels, string? Id = null)
{
    /// <summary>The labels flattened to (type, start, end), in file order.</summary>
    public IReadOnlyList<NerEntity> Entities() =>
        [.. Labels.SelectMany(t => t.Value.SelectMany(e => e.Value.Select(s => new NerEntity(t.Key, s.Start, s.End))))];
}

/// <summary>A CMRC2018 answer: its text and code-point offset in the context.</summary>
public sealed record CmrcAnswer(string Text, int Start);

/// <summary>One CMRC2018 question with its (SQuAD-style) paragraph.</summary>
public sealed record CmrcRecord(string ContextId, string Context, string Id, string Question, IReadOnlyList<CmrcAnswer> Answers);

/// <summary>One C3 question: the document's dialogue/text lines, the question, its choices and the answer's index in them.</summary>
public sealed record C3Record(string DocumentId, IReadOnlyList<string> Context, string Question, IReadOnlyList<string> Choices, string? Answer, int AnswerIndex);

/// <summary>A CHID (FewCLUE) example: content with one <c>#idiom#</c> blank, 7 candidates, the right one's index.</summary>
public sealed record ChidRecord(string Content, IReadOnlyList<string> Candidates, int? Answer, int? Id = null);

/// <summary>A (subject, predicate, object) triple of DuIE with its entity types.</summary>
public sealed record DuieSpo(string Subject, string Predicate, string Object, string? SubjectType = null, string? ObjectType = null)
{
    /// <summary>The triple the metric compares.</summary>
    public SpoTriple Triple => new(Subject, Predicate, Object);
}

/// <summary>A DuIE 1.0 example: text and its triples.</summary>
public sealed record DuieRecord(string Text, IReadOnlyList<DuieSpo> Spos);

/// <summary>A DuEE argument: role, text and code-point start.</summary>
public sealed record DueeArgument(string Role, string Argument, int Start);

/// <summary>A DuEE event: type, trigger (text, start) and arguments.</summary>
public sealed record DueeEvent(string EventType, string Trigger, int TriggerStart, IReadOnlyList<DueeArgument> Arguments)
{
    /// <summary>The event as GPLinker's evaluation sees it: the trigger as role <see cref="ClueMetrics.TriggerRole"/>, then the arguments.</summary>
    public IReadOnlyList<EventArgument> Tuples() =>
        [new(EventType, ClueMetrics.TriggerRole, Trigger, TriggerStart), .. Arguments.Select(a => new EventArgument(EventType, a.Role, a.Argument, a.Start))];
}

/// <summary>A DuEE 1.0 example.</summary>
public sealed record DueeRecord(string Text, string? Id, IReadOnlyList<DueeEvent> Events);
