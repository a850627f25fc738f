using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Bert4Sharp.Tokenization;

namespace Bert4Sharp.Tests.Tokenization;

/// <summary>
/// Token ids and offsets equal to a port of bert4keras's Tokenizer running on Python's own unicodedata
/// (tests/reference/make_tokenizer_refs.py), on all 20,500 corpus sentences.
/// </summary>
public class Bert4kerasReferenceTests
{
    static string H8(IEnumerable<int> values) =>
        Convert.ToHexStringLower(SHA1.HashData(Encoding.ASCII.GetBytes(string.Join(",", values))))[..8];

    [Theory]
    [InlineData("models/albert_tiny_zh_google/vocab.txt", true, "bert4keras_albert_lower.txt")]
    [InlineData("models/albert_tiny_zh_google/vocab.txt", false, "bert4keras_albert_cased.txt")]
    [InlineData("models/roformer_v2_char_small/vocab.txt", true, "bert4keras_roformer_lower.txt")]
    public void IdsAndOffsetsMatchBert4keras(string vocab, bool lowerCase, string reference)
    {
        var tk = BertWordPieceTokenizer.FromFile(TestPaths.SharedOrSkip(vocab),
            new BertWordPieceOptions { LowerCase = lowerCase, RecognizeSpecialTokens = false });
        var corpus = TestCorpus.Load();
        var expected = File.ReadAllLines(TestPaths.Fixture("tokenization", reference));
        Assert.Equal(corpus.Count, expected.Length);
        var bad = new List<string>();
        for (int i = 0; i < corpus.Count; i++)
        {
            var e = tk.Encode(corpus[i].Text);
            string got = H8(e.Ids) + " " + H8(e.Offsets.SelectMany(o => new[] { o.Start, o.End }));
            if (got != expected[i] && bad.Count < 5)
                bad.Add($"{corpus[i].Source}#{corpus[i].Index} ids/spans {got} expected {expected[i]}: {string.Join(" ", e.Tokens)}");
        }
        Assert.True(bad.Count == 0, string.Join("\n", bad));
    }

    [Theory]
    [InlineData("models/albert_tiny_zh_google/vocab.txt", "simplified_albert.json")]
    [InlineData("models/roformer_v2_char_small/vocab.txt", "simplified_roformer.json")]
    public void SimplifiedVocabularyKeepsTheSameTokens(string vocab, string reference)
    {
        var v = Vocabulary.Load(TestPaths.SharedOrSkip(vocab));
        var (small, keep) = v.Simplify(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]);
        using var doc = JsonDocument.Parse(File.ReadAllBytes(TestPaths.Fixture("tokenization", reference)));
        var expected = doc.RootElement.GetProperty("keep_tokens").EnumerateArray().Select(x => x.GetInt32()).ToArray();
        Assert.Equal(expected, keep);
        Assert.Equal(expected.Length, small.Count);
        Assert.Equal("[MASK]", small.IdToToken(4));
        for (int i = 0; i < keep.Length; i++) Assert.Equal(v.IdToToken(keep[i]), small.IdToToken(i));
    }
}
