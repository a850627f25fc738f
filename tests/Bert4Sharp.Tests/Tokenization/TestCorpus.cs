using Bert4Sharp.Data;

namespace Bert4Sharp.Tests.Tokenization;

/// <summary>Real sentences from ../shared/data, as tests/reference/corpus.json describes (same rule as the Python scripts).</summary>
public static class TestCorpus
{
    static List<TextRecords.CorpusText>? cached;

    /// <summary>All corpus sentences; skips the calling test when ../shared/data is absent.</summary>
    public static IReadOnlyList<TextRecords.CorpusText> Load()
    {
        string data = TestPaths.SharedOrSkip("data");
        return cached ??= TextRecords.ReadCorpus(Path.Combine(TestPaths.RepoRoot, "tests", "reference", "corpus.json"), data);
    }
}
