using Bert4Sharp.Tokenization;

namespace Bert4Sharp.Tests.Tokenization;

/// <summary>WoBERT's word vocabulary (counting, threshold, order) and word pre-tokenised encoding.</summary>
public class WordVocabularyTests
{
    static readonly string[] Specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"];

    static Vocabulary Characters(string chars) => new([.. Specials, .. chars.Select(c => c.ToString()), "ab", "##cd"]);

    // Texts already segmented with spaces, so counting is checked apart from jieba.
    static IEnumerable<string> BySpace(string s) => s.Split(' ', StringSplitOptions.RemoveEmptyEntries);

    [Fact]
    public void KeepsCharactersAndAppendsFrequentWordsByCountThenOrdinally()
    {
        var chars = Characters("北京上海天气今好中国人民的");
        string[] texts =
        [
            "北京 天气 今天 北京 上海",     // 今天: 天 is a character, 今 too: eligible
            "上海 天气 北京 中国 人民",
            "上海 天气 中国 的 好",          // single characters are never words
            "北京 上海 中国 人民 ab xyz 北京ab 东京",   // non-CJK, mixed, unknown character (东): never words
        ];
        var result = WordVocabulary.Build(chars, texts, BySpace, new WordVocabularyOptions { MinCount = 2, MaxWords = null });
        // counts: 北京 4, 上海 4, 天气 3, 中国 3, 人民 2, 今天 1 (below the threshold)
        Assert.Equal(["上海", "北京", "中国", "天气", "人民"], result.Words.Select(w => w.Word));   // ties in ordinal order: 上 (U+4E0A) < 北 (U+5317)
        Assert.Equal([4L, 4, 3, 3, 2], result.Words.Select(w => w.Count));
        Assert.Equal(6, result.Candidates);
        Assert.Equal(4, result.Texts);
        // The character vocabulary keeps its ids; the words follow in the same order.
        Assert.Equal(chars.Count + 5, result.Vocabulary.Count);
        for (int i = 0; i < chars.Count; i++) Assert.Equal(chars.IdToToken(i), result.Vocabulary.IdToToken(i));
        Assert.Equal(chars.Count, result.Vocabulary["上海"]);
        Assert.Equal(chars.Count + 4, result.Vocabulary["人民"]);
        Assert.Equal(result.Vocabulary.Count, Enumerable.Range(0, result.Vocabulary.Count).Select(result.Vocabulary.IdToToken).Distinct().Count());

        // The cap keeps the most frequent; the same input gives the same vocabulary whatever the text order.
        var capped = WordVocabulary.Build(chars, texts.Reverse(), BySpace, new WordVocabularyOptions { MinCount = 1, MaxWords = 3 });
        Assert.Equal(["上海", "北京", "中国"], capped.Words.Select(w => w.Word));
        var all = WordVocabulary.Build(chars, texts.Reverse(), BySpace, new WordVocabularyOptions { MinCount = 1, MaxWords = null });
        Assert.Equal("今天", all.Words[^1].Word);
    }

    [Fact]
    public void EligibleWordsAreNewCjkWordsOfKnownCharacters()
    {
        var chars = Characters("北京天气");
        Assert.True(WordVocabulary.IsEligible("北京", chars));
        Assert.False(WordVocabulary.IsEligible("北", chars));                   // one character
        Assert.False(WordVocabulary.IsEligible("北京天", chars, minLength: 4));
        Assert.False(WordVocabulary.IsEligible("东京", chars));                 // 东 is not a token: no row to start from
        Assert.False(WordVocabulary.IsEligible("北京ab", chars));               // not all CJK
        Assert.False(WordVocabulary.IsEligible("ab", chars));                   // already a token
        var grown = chars.Extend(["北京"]);
        Assert.False(WordVocabulary.IsEligible("北京", grown));
    }

    [Theory]
    [InlineData(0, 10, 2, "minimum count")]
    [InlineData(-3, 10, 2, "minimum count")]
    [InlineData(1, 0, 2, "maximum number of words")]
    [InlineData(1, 10, 1, "minimum word length")]
    public void BadOptionsAreRejectedWithTheirName(int minCount, int maxWords, int minLength, string expected)
    {
        var e = Assert.Throws<ArgumentOutOfRangeException>(() =>
            WordVocabulary.Build(Characters("北京"), ["北京"], BySpace, new WordVocabularyOptions { MinCount = minCount, MaxWords = maxWords, MinLength = minLength }));
        Assert.Contains(expected, e.Message);
    }

    [Fact]
    public void JiebaPreTokenisationKeepsVocabularyWordsWholeAndSplitsTheRestWithOffsets()
    {
        var jieba = JiebaTestSupport.SegmenterOrSkip();
        var vocab = Characters("我在北京天安门看升旗仪式和").Extend(["北京", "天安门", "仪式"]);
        var tk = new BertWordPieceTokenizer(vocab, new BertWordPieceOptions { LowerCase = true, PreTokenizer = PreTokenization.Create(PreTokenization.Jieba) });
        string text = "我在北京天安门看升旗仪式和AB";
        Assert.Equal(["我", "在", "北京", "天安门", "看", "升旗仪式", "和", "AB"], jieba.Cut(text));   // what jieba (no HMM) segments
        var e = tk.Encode(text);
        // In-vocabulary words are one token. 升旗仪式 is not a token: its characters, even though 仪式 is one (WoBERT
        // never re-segments a jieba word); "AB" is lower-cased to the WordPiece token "ab".
        Assert.Equal(["[CLS]", "我", "在", "北京", "天安门", "看", "升", "旗", "仪", "式", "和", "ab", "[SEP]"], e.Tokens);
        for (int i = 1; i < e.Count - 1; i++)
            Assert.Equal(e.Tokens[i], text[e.Offsets[i].Start..e.Offsets[i].End].ToLowerInvariant());
        Assert.Equal(new TokenSpan(2, 4), e.Offsets[3]);
        Assert.Equal(new TokenSpan(4, 7), e.Offsets[4]);
        Assert.Equal(new TokenSpan(13, 15), e.Offsets[11]);

        // Without the pre-tokenizer the same vocabulary gives characters only: the word model's tokens are fewer.
        var chars = new BertWordPieceTokenizer(vocab, new BertWordPieceOptions { LowerCase = true });
        Assert.Equal(e.Count + 3, chars.Encode(text).Count);
    }

    [Fact]
    public void PreTokenizerIsRecordedInTheModelDirectory()
    {
        string dir = Directory.CreateTempSubdirectory("b4s-pretok").FullName;
        try
        {
            Assert.Null(PreTokenization.Read(dir));
            File.WriteAllText(Path.Combine(dir, PreTokenization.ConfigFileName), """{"do_lower_case": true}""");
            Assert.Null(PreTokenization.Read(dir));
            PreTokenization.Write(dir, PreTokenization.Jieba);
            Assert.Equal("jieba", PreTokenization.Read(dir));
            Assert.Contains("do_lower_case", File.ReadAllText(Path.Combine(dir, PreTokenization.ConfigFileName)));   // other keys kept
            Assert.Null(PreTokenization.Create("none"));
            var e = Assert.Throws<ArgumentException>(() => PreTokenization.Create("thulac"));
            Assert.Contains("'thulac' is unknown", e.Message);
            File.WriteAllText(Path.Combine(dir, PreTokenization.ConfigFileName), """{"pre_tokenizer": 3}""");
            Assert.Contains("must be a string", Assert.Throws<InvalidDataException>(() => PreTokenization.Read(dir)).Message);
            File.WriteAllText(Path.Combine(dir, PreTokenization.ConfigFileName), "{not json");
            Assert.Contains("not valid JSON", Assert.Throws<InvalidDataException>(() => PreTokenization.Read(dir)).Message);
        }
        finally { Directory.Delete(dir, true); }
    }
}
