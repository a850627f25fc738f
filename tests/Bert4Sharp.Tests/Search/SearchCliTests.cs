using System.Text.Json;
using Bert4Sharp.Search;

namespace Bert4Sharp.Tests.Search;

/// <summary><c>b4s index</c> and <c>b4s search</c> as a separate process over the tiny BERT fixture (mean pooling).</summary>
public sealed class SearchCliTests
{
    /// <summary>The tiny HF BERT fixture with the synthetic CJK vocabulary, as a model directory named <paramref name="name"/>.</summary>
    internal static string TinyModel(string name)
    {
        string dir = Path.Combine(Directory.CreateTempSubdirectory("b4s-search-model").FullName, name);
        Directory.CreateDirectory(dir);
        foreach (var f in new[] { "config.json", "model.safetensors" })
            File.Copy(TestPaths.Fixture("hf", "bert", f), Path.Combine(dir, f));
        TestPaths.WriteSyntheticVocabulary(Path.Combine(dir, "vocab.txt"));
        return dir;
    }

    [Fact]
    public void IndexThenSearchFindsTheTextItselfFirstAndHnswAgreesWithExact()
    {
        string model = TinyModel("tiny-bert");
        string work = Directory.CreateTempSubdirectory("b4s-search-cli").FullName;
        string input = Path.Combine(work, "corpus.jsonl");
        // 40 texts of CJK characters from the synthetic vocabulary, each with an id and a metadata field.
        var texts = Enumerable.Range(0, 40).Select(i => string.Concat(Enumerable.Range(0, 3 + i % 5).Select(j => (char)(0x4E00 + (i * 7 + j * 13) % 800)))).ToArray();
        File.WriteAllLines(input, texts.Select((t, i) => JsonSerializer.Serialize(new { id = $"t{i}", text = t, source = i % 2 == 0 ? "even" : "odd" })));
        string index = Path.Combine(work, "index");

        var (code, stdout, stderr) = CliTests.B4s("index", "--model", model, "--input", input, "--output", index, "--batch", "16", "--json");
        Assert.True(code == 0, stderr);
        using (var doc = JsonDocument.Parse(stdout))
        {
            Assert.Equal(40, doc.RootElement.GetProperty("count").GetInt32());
            Assert.Equal("tiny-bert", doc.RootElement.GetProperty("model").GetString());
        }

        (code, stdout, stderr) = CliTests.B4s("search", "--index", index, "--model", model, "-k", "5", "--json", texts[17]);
        Assert.True(code == 0, stderr);
        using var hits = JsonDocument.Parse(stdout);
        var first = hits.RootElement[0];
        Assert.Equal("t17", first.GetProperty("key").GetString());
        Assert.Equal(texts[17], first.GetProperty("text").GetString());
        Assert.Equal("odd", first.GetProperty("metadata").GetProperty("source").GetString());
        Close.Assert(first.GetProperty("score").GetSingle(), 1f, "a text's similarity to itself", atol: 1e-4);

        var (exactCode, exactOut, exactErr) = CliTests.B4s("search", "--index", index, "--model", model, "-k", "5", "--json", "--exact", texts[17]);
        Assert.True(exactCode == 0, exactErr);
        using var exactHits = JsonDocument.Parse(exactOut);
        Assert.Equal(exactHits.RootElement.EnumerateArray().Select(h => h.GetProperty("key").GetString()),
            hits.RootElement.EnumerateArray().Select(h => h.GetProperty("key").GetString()));

        using var opened = VectorIndex.Open(index, expectedModel: "tiny-bert");
        Assert.Equal(40, opened.Count);
    }

    [Fact]
    public void BadInputLinesAndAnIndexFromAnotherModelAreNamed()
    {
        string model = TinyModel("tiny-bert");
        string work = Directory.CreateTempSubdirectory("b4s-search-cli-bad").FullName;
        string input = Path.Combine(work, "bad.jsonl");
        File.WriteAllLines(input, ["{\"id\": 1, \"text\": \"一丁\"}", "", "{\"id\": 2, \"txt\": \"七\"}"]);
        var (code, _, stderr) = CliTests.B4s("index", "--model", model, "--input", input, "--output", Path.Combine(work, "i"));
        Assert.Equal(1, code);
        Assert.StartsWith($"b4s: error: {input}:3: field \"text\" (a string) is missing", stderr);

        File.WriteAllLines(input, ["{\"id\": 1, \"text\": \"一丁\"}", "{not json"]);
        (code, _, stderr) = CliTests.B4s("index", "--model", model, "--input", input, "--output", Path.Combine(work, "i"));
        Assert.Equal(1, code);
        Assert.StartsWith($"b4s: error: {input}:2: not valid JSON", stderr);

        File.WriteAllLines(input, ["{\"id\": \"a\", \"text\": \"一丁\"}", "{\"id\": \"a\", \"text\": \"七\"}"]);
        (code, _, stderr) = CliTests.B4s("index", "--model", model, "--input", input, "--output", Path.Combine(work, "i"));
        Assert.Equal(1, code);
        Assert.Contains($"{input}:2: id 'a' was already used on line 1", stderr);

        // Plain text lines: keys are line numbers. An index searched with another model is refused.
        string lines = Path.Combine(work, "plain.txt");
        File.WriteAllLines(lines, ["一丁七", "万丈三"]);
        (code, _, stderr) = CliTests.B4s("index", "--model", model, "--input", lines, "--output", Path.Combine(work, "plain"));
        Assert.True(code == 0, stderr);
        string other = TinyModel("other-model");
        (code, _, stderr) = CliTests.B4s("search", "--index", Path.Combine(work, "plain"), "--model", other, "一丁");
        Assert.Equal(1, code);
        Assert.Contains("built with model 'tiny-bert', not 'other-model'", stderr);
        (code, _, stderr) = CliTests.B4s("search", "--index", Path.Combine(work, "missing"), "--model", model, "一丁");
        Assert.Equal(1, code);
        Assert.Contains("does not exist", stderr);
    }
}
