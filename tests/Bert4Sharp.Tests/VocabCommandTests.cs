using Bert4Sharp.Tests.Tokenization;
using Bert4Sharp.Tokenization;
using Bert4Sharp.Training;

namespace Bert4Sharp.Tests;

/// <summary><c>b4s vocab build</c> (WoBERT's vocabulary) and the recipes' <c>pre_tokenize</c> key.</summary>
public class VocabCommandTests
{
    static string Vocab(string dir)
    {
        string path = Path.Combine(dir, "vocab.txt");
        File.WriteAllLines(path, ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", .. "我们在北京天气很好今天中国人民的是首都".Select(c => c.ToString())]);
        return path;
    }

    [Fact]
    public void BuildsTheWordVocabularyFromACorpus()
    {
        JiebaTestSupport.SegmenterOrSkip();
        string dir = Directory.CreateTempSubdirectory("b4s-vocab").FullName;
        try
        {
            string corpus = Path.Combine(dir, "corpus.jsonl");
            File.WriteAllLines(corpus, ["""{"text": "今天北京天气很好"}""", """{"text": "北京是中国的首都"}""", """{"text": "我们在北京"}"""]);
            var (code, stdout, stderr) = CliTests.B4s("vocab", "build", "--base", Vocab(dir), "--corpus", corpus, "--format", "jsonl", "--fields", "text",
                "--min-count", "2", "--output", Path.Combine(dir, "out"));
            Assert.True(code == 0, stderr + stdout);
            var vocab = Vocabulary.Load(Path.Combine(dir, "out", "vocab.txt"));
            Assert.Equal(Vocabulary.Load(Path.Combine(dir, "vocab.txt")).Count + 1, vocab.Count);   // only 北京 occurs twice
            Assert.Equal("北京", vocab.IdToToken(vocab.Count - 1));
            Assert.Equal(["北京\t3"], File.ReadAllLines(Path.Combine(dir, "out", "words.tsv")));
        }
        finally { Directory.Delete(dir, true); }
    }

    [Theory]
    [InlineData("missing-corpus", "corpus file not found")]
    [InlineData("min-count", "minimum count must be at least 1")]
    [InlineData("no-corpus", "give the text to count words on")]
    [InlineData("no-fields", "needs --fields")]
    public void BadInputIsAClearError(string what, string expected)
    {
        string dir = Directory.CreateTempSubdirectory("b4s-vocab-bad").FullName;
        try
        {
            string corpus = Path.Combine(dir, "corpus.txt");
            File.WriteAllText(corpus, "北京\n");
            string[] common = ["vocab", "build", "--base", Vocab(dir), "--output", Path.Combine(dir, "out")];
            string[] args = what switch
            {
                "missing-corpus" => [.. common, "--corpus", Path.Combine(dir, "nope.txt")],
                "min-count" => [.. common, "--corpus", corpus, "--min-count", "0"],
                "no-corpus" => common,
                _ => [.. common, "--corpus", corpus, "--format", "jsonl"],
            };
            var (code, _, stderr) = CliTests.B4s(args);
            Assert.Equal(1, code);
            Assert.Contains(expected, stderr);
            Assert.False(Directory.Exists(Path.Combine(dir, "out")));
        }
        finally { Directory.Delete(dir, true); }
    }

    [Fact]
    public void RecipesNameABadPreTokenizer()
    {
        string dir = Directory.CreateTempSubdirectory("b4s-vocab-recipe").FullName;
        try
        {
            string path = Path.Combine(dir, "r.json");
            File.WriteAllText(path, """{ "family": "roformer_v2", "init_model": "m", "pre_tokenize": "thulac", "corpus": [{ "file": "c.txt" }] }""");
            var e = Assert.Throws<InvalidDataException>(() => Recipe.Load<PretrainRecipe>(path));
            Assert.Contains("'pre_tokenize' must be jieba or none", e.Message);
            // With init_model, 'config' and 'vocab' come from the model directory.
            File.WriteAllText(path, """{ "family": "roformer_v2", "init_model": "m", "pre_tokenize": "jieba", "corpus": [{ "file": "c.txt" }] }""");
            Assert.Equal("jieba", Recipe.Load<PretrainRecipe>(path).PreTokenize);
            File.WriteAllText(path, """{ "model": "m", "train": { "file": "t" }, "dev": { "file": "d" }, "pre_tokenize": "words" }""");
            Assert.Contains("'pre_tokenize' must be jieba or none", Assert.Throws<InvalidDataException>(() => Recipe.Load<TrainRecipe>(path)).Message);
        }
        finally { Directory.Delete(dir, true); }
    }
}
