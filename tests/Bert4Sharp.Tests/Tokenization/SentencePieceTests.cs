using Bert4Sharp.Tokenization;

namespace Bert4Sharp.Tests.Tokenization;

/// <summary>SentencePiece models trained by Debian's python3-sentencepiece on the real corpus; ids must be identical.</summary>
public class SentencePieceTests
{
    [Theory]
    [InlineData("sp_unigram.model", "sp_unigram_ids.txt")]
    [InlineData("sp_bpe.model", "sp_bpe_ids.txt")]
    public void IdsMatchPythonSentencePiece(string model, string reference)
    {
        var sp = SpTokenizer.FromFile(TestPaths.Fixture("tokenization", model));
        Assert.Equal(8000, sp.VocabularySize);
        var corpus = TestCorpus.Load();
        var expected = File.ReadAllLines(TestPaths.Fixture("tokenization", reference));
        Assert.True(expected.Length >= 2000);
        var diffs = new List<string>();
        for (int i = 0; i < expected.Length; i++)
        {
            string got = string.Join(" ", sp.EncodeToIds(corpus[i].Text));
            if (got != expected[i] && diffs.Count < 5) diffs.Add($"{corpus[i].Source}#{corpus[i].Index}: got {got} expected {expected[i]}");
        }
        Assert.True(diffs.Count == 0, string.Join("\n", diffs));
    }

    [Fact]
    public void Bert4kerasConventions()
    {
        var sp = SpTokenizer.FromFile(TestPaths.Fixture("tokenization", "sp_unigram.model"));
        var ids = sp.Encode("北京是中国的首都", maxLength: 5);
        Assert.Equal(5, ids.Count);
        Assert.Equal(sp.EndId, ids[^1]);
        Assert.Equal("</s>", sp.IdToPiece(sp.EndId));
        Assert.Equal("", sp.IdToPiece(123_456));
        var full = sp.Encode("北京是中国的首都");
        Assert.Equal("北京是中国的首都", sp.Decode(full));
        Assert.Equal("</s>", sp.Tokenize("你好")[^1]);
    }

    [Fact]
    public void CorruptModelIsAClearError()
    {
        string bad = Path.GetTempFileName();
        try
        {
            var bytes = File.ReadAllBytes(TestPaths.Fixture("tokenization", "sp_bpe.model"));
            File.WriteAllBytes(bad, bytes.AsSpan(0, bytes.Length / 3).ToArray());
            var e = Assert.Throws<InvalidDataException>(() => SpTokenizer.FromFile(bad));
            Assert.Contains(bad, e.Message);
            File.WriteAllText(bad, "this is not a model");
            Assert.Throws<InvalidDataException>(() => SpTokenizer.FromFile(bad));
        }
        finally { File.Delete(bad); }
    }
}
