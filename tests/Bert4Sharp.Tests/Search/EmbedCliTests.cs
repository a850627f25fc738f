using System.Text.Json;
using Bert4Sharp.Embeddings;

namespace Bert4Sharp.Tests.Search;

/// <summary>
/// <c>b4s embed</c>, and <c>b4s index</c> / <c>b4s search</c> with the embedded default model (all-MiniLM-L6-v2), as
/// separate processes. The default model is extracted into the test run's cache home (<see cref="MiniLm.CacheHome"/>).
/// </summary>
public sealed class EmbedCliTests
{
    static (int Code, string Out, string Err) B4s(params string[] args) => CliTests.B4sWith(MiniLm.CliEnvironment, args);

    internal static List<(JsonElement Id, float[] Vector)> ReadOutput(string path) =>
        File.ReadLines(path).Select(line =>
        {
            using var doc = JsonDocument.Parse(line);
            return (doc.RootElement.GetProperty("id").Clone(), doc.RootElement.GetProperty("embedding").EnumerateArray().Select(e => e.GetSingle()).ToArray());
        }).ToList();

    static void AssertUnitLength(float[] v, string what) => Close.Assert(Math.Sqrt(v.Sum(x => (double)x * x)), 1.0, what, atol: 1e-5);

    [Fact]
    public void TinyModelJsonLinesKeepIdsAndEqualTheSentenceEncoder()
    {
        string model = SearchCliTests.TinyModel("tiny-bert");
        string work = Directory.CreateTempSubdirectory("b4s-embed-tiny").FullName;
        string input = Path.Combine(work, "in.jsonl");
        File.WriteAllLines(input, ["{\"id\": \"a\", \"body\": \"一丁七\"}", "", "{\"id\": 7, \"body\": \"万丈三上下\"}", "{\"body\": \"丌不与丐\", \"lang\": \"zh\"}"]);
        string output = Path.Combine(work, "out.jsonl");

        var (code, stdout, stderr) = B4s("embed", "--model", model, "--input", input, "--output", output, "--field", "body", "--batch-size", "2", "--json");
        Assert.True(code == 0, stderr);
        using (var summary = JsonDocument.Parse(stdout))
        {
            Assert.Equal(3, summary.RootElement.GetProperty("count").GetInt32());
            Assert.Equal(64, summary.RootElement.GetProperty("dimensions").GetInt32());
            Assert.Equal(0, summary.RootElement.GetProperty("truncated").GetInt32());
            Assert.Equal("torch", summary.RootElement.GetProperty("engine").GetString());
        }
        var rows = ReadOutput(output);
        Assert.Equal(["\"a\"", "7", "4"], rows.Select(r => r.Id.GetRawText()));   // ids as written; none: the line number
        var expected = SentenceEncoder.Load(model).Encode(["一丁七", "万丈三上下", "丌不与丐"]);
        for (int i = 0; i < 3; i++)
        {
            Close.Assert(rows[i].Vector, expected[i], $"text {i}", atol: 1e-5);
            AssertUnitLength(rows[i].Vector, $"text {i}");
        }
        Assert.Single(Directory.GetFiles(work, "*out.jsonl*"));   // no temporary file left

        // --max-length cuts and counts; --no-normalize keeps the raw length.
        (code, stdout, stderr) = B4s("embed", "--model", model, "--input", input, "--output", output, "--field", "body", "--max-length", "5", "--no-normalize", "--json");
        Assert.True(code == 0, stderr);
        using (var summary = JsonDocument.Parse(stdout))
            Assert.Equal(2, summary.RootElement.GetProperty("truncated").GetInt32());
        var raw = SentenceEncoder.Load(model, new SentenceEncoderOptions { MaxLength = 5, Normalize = false }).Encode(["一丁七", "万丈三上下", "丌不与丐"]);
        Close.Assert(ReadOutput(output)[1].Vector, raw[1], "truncated, not normalised", atol: 1e-5);
    }

    [Fact]
    public void BadLinesAndAWhiteningOfAnotherWidthAreNamed()
    {
        string model = SearchCliTests.TinyModel("tiny-bert");
        string work = Directory.CreateTempSubdirectory("b4s-embed-bad").FullName;
        string input = Path.Combine(work, "bad.jsonl"), output = Path.Combine(work, "out.jsonl");
        void Expect(string message, params string[] extra)
        {
            var (code, _, stderr) = B4s(["embed", "--model", model, "--input", input, "--output", output, .. extra]);
            Assert.Equal(1, code);
            Assert.StartsWith($"b4s: error: {message}", stderr);
            Assert.False(File.Exists(output));
        }
        File.WriteAllLines(input, ["{\"text\": \"一丁\"}", "{\"text\": \"七\""]);
        Expect($"{input}:2: not valid JSON");
        File.WriteAllLines(input, ["{\"text\": \"一丁\"}", "{\"body\": \"七\"}"]);
        Expect($"{input}:2: field \"text\" (a string) is missing");
        Expect($"{input}:1: field \"body\" (a string) is missing", "--field", "body");
        File.WriteAllLines(input, ["{\"text\": \"一丁\"}", "", "{\"text\": \"  \"}"]);
        Expect($"{input}:3: field \"text\" is empty");

        // A whitening fitted on the tiny model's 64-dimensional vectors, given to the 384-dimensional default.
        var tiny = SentenceEncoder.Load(model, new SentenceEncoderOptions { Normalize = false });
        var corpus = Enumerable.Range(0, 40).Select(i => string.Concat(Enumerable.Range(0, 3 + i % 4).Select(j => (char)(0x4E00 + (i * 11 + j * 5) % 800)))).ToArray();
        string whitening = Path.Combine(work, "w64.safetensors");
        Whitening.Fit(tiny.Encode(corpus), 16).Save(whitening);
        string english = Path.Combine(work, "english.txt");
        File.WriteAllLines(english, ["A short English sentence."]);
        var (code, _, stderr) = B4s("embed", "--input", english, "--output", output, "--whitening", whitening);
        Assert.Equal(1, code);
        Assert.Contains($"{whitening}: the whitening was fitted on 64-dimensional vectors but all-MiniLM-L6-v2 gives 384", stderr);

        // The same whitening fits the tiny model: 16 dimensions out.
        File.WriteAllLines(input, ["{\"text\": \"一丁\"}"]);
        (code, var stdout, stderr) = B4s("embed", "--model", model, "--input", input, "--output", output, "--whitening", whitening, "--json");
        Assert.True(code == 0, stderr);
        Assert.Equal(16, ReadOutput(output)[0].Vector.Length);
    }

    [Fact]
    public void DefaultModelEqualsTheSentenceEncoderInProcess()
    {
        string work = Directory.CreateTempSubdirectory("b4s-embed-default").FullName;
        string input = Path.Combine(work, "texts.txt"), output = Path.Combine(work, "out.jsonl");
        string[] texts = ["The cat sits outside.", "A man is playing guitar.", "The new movie is awesome, I loved every minute of it!"];
        File.WriteAllLines(input, texts);
        var (code, stdout, stderr) = B4s("embed", "--input", input, "--output", output, "--json");
        Assert.True(code == 0, stderr);
        using (var summary = JsonDocument.Parse(stdout))
        {
            Assert.Equal("all-MiniLM-L6-v2", summary.RootElement.GetProperty("model").GetString());
            Assert.Equal("onnxruntime", summary.RootElement.GetProperty("engine").GetString());
            Assert.Equal(384, summary.RootElement.GetProperty("dimensions").GetInt32());
        }
        var rows = ReadOutput(output);
        Assert.Equal(["1", "2", "3"], rows.Select(r => r.Id.GetRawText()));
        // In process: the torch engine over the same extracted directory (MiniLm.Directory is the b4s cache).
        var expected = SentenceEncoder.Load(MiniLm.Directory).Encode(texts);
        for (int i = 0; i < texts.Length; i++)
        {
            Close.Assert(rows[i].Vector, expected[i], $"text {i}: onnx engine in b4s vs torch in process", atol: 2e-5);
            AssertUnitLength(rows[i].Vector, $"text {i}");
        }
        Assert.True(SentenceEncoder.Cosine(expected[0], expected[1]) < 0.5, "unrelated sentences are far apart");
    }

    /// <summary>200 short English sentences: 198 from a grammar of people, deeds and times, plus two hand-written targets.</summary>
    internal static List<string> EnglishCorpus()
    {
        string[] who = ["the doctor", "a teacher", "my neighbour", "the pilot", "a farmer", "the child", "an engineer", "the old man", "a student", "the singer"];
        string[] did = ["repaired the broken bicycle", "planted tomatoes in the garden", "read a long novel", "painted the fence blue", "cooked dinner for the family",
            "watched the football match", "wrote a letter to a friend", "cleaned the kitchen floor", "walked the dog in the park", "bought fresh bread at the market"];
        string[] when = ["on Monday morning", "after the storm", "before sunrise", "during the holidays", "late at night"];
        var all = (from w in who from d in did from t in when select $"{char.ToUpperInvariant(w[0])}{w[1..]} {d} {t}.").ToList();
        var rng = new Random(13);
        var corpus = all.OrderBy(_ => rng.Next()).Take(198).ToList();
        corpus.Insert(57, "The chef cooked a spicy curry in the small restaurant kitchen.");
        corpus.Insert(141, "Stock prices fell sharply after the central bank raised interest rates.");
        return corpus;
    }

    [Fact]
    public void IndexAndSearchWithTheDefaultModelFindParaphrases()
    {
        string work = Directory.CreateTempSubdirectory("b4s-default-search").FullName;
        string input = Path.Combine(work, "corpus.txt"), index = Path.Combine(work, "index");
        var corpus = EnglishCorpus();
        File.WriteAllLines(input, corpus);
        var (code, stdout, stderr) = B4s("index", "--input", input, "--output", index, "--json");
        Assert.True(code == 0, stderr);
        using (var summary = JsonDocument.Parse(stdout))
        {
            Assert.Equal(200, summary.RootElement.GetProperty("count").GetInt32());
            Assert.Equal("all-MiniLM-L6-v2", summary.RootElement.GetProperty("model").GetString());
        }
        // Paraphrases sharing almost no words with their targets, among 198 distractors (several about cooking and kitchens).
        foreach (var (query, target) in new[]
        {
            ("A cook made a hot curry dish in a tiny restaurant.", "The chef cooked a spicy curry in the small restaurant kitchen."),
            ("Share values dropped steeply when the central bank increased borrowing costs.", "Stock prices fell sharply after the central bank raised interest rates."),
        })
        {
            (code, stdout, stderr) = B4s("search", "--index", index, "-k", "3", "--json", query);
            Assert.True(code == 0, stderr);
            using var hits = JsonDocument.Parse(stdout);
            Assert.Equal(target, hits.RootElement[0].GetProperty("text").GetString());
            Assert.Equal((corpus.IndexOf(target) + 1).ToString(), hits.RootElement[0].GetProperty("key").GetString());
        }
        // Searching the default model's index with another model is refused.
        (code, _, stderr) = B4s("search", "--index", index, "--model", SearchCliTests.TinyModel("tiny-bert"), "一丁");
        Assert.Equal(1, code);
        Assert.Contains("built with model 'all-MiniLM-L6-v2', not 'tiny-bert'", stderr);
    }
}
