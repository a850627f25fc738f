using System.Globalization;
using System.Text;
using Bert4Sharp.Data;
using Bert4Sharp.Tokenization;

namespace Bert4Sharp.Tests.Tokenization;

public class BertWordPieceTokenizerTests
{
    // A small vocabulary that exercises WordPiece; ids are line numbers.
    static readonly string[] SmallVocab =
    [
        "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "北", "京", "是", "中", "国", "的", "首", "都", "，", "。", "!", "'",
        "un", "##aff", "##able", "hello", "world", "##s", "a", "i", "e", "cafe", "[", "]", "mask", "x", "##x",
    ];

    static BertWordPieceTokenizer Small(bool lower = true, bool specials = true) =>
        new(new Vocabulary(SmallVocab), new BertWordPieceOptions { LowerCase = lower, RecognizeSpecialTokens = specials });

    [Fact]
    public void CjkAndPunctuationAreTokensOfTheirOwn()
    {
        var tk = Small();
        Assert.Equal(["[CLS]", "北", "京", "是", "中", "国", "的", "首", "都", "。", "[SEP]"], tk.Tokenize("北京是中国的首都。"));
        Assert.Equal(["[CLS]", "un", "##aff", "##able", "hello", "##s", "!", "[SEP]"], tk.Tokenize("UnAffable   Hellos!"));
    }

    [Fact]
    public void AccentsAreStrippedOnlyWhenLowerCasing()
    {
        Assert.Equal(["[CLS]", "cafe", "[SEP]"], Small().Tokenize("Café"));
        // Without lower-casing the word stays as it is and is unknown (bert4keras returns the word itself).
        var cased = Small(lower: false);
        Assert.Equal(["[CLS]", "Café", "[SEP]"], cased.Tokenize("Café"));
        Assert.Equal([2, 1, 3], cased.Encode("Café").Ids);
        // Python's str.lower() maps İ to "i̇"; the dot is a combining mark and goes.
        Assert.Equal(["[CLS]", "i", "[SEP]"], Small().Tokenize("İ"));
    }

    [Fact]
    public void SpecialTokensInTheTextAreKeptOrSplitAsAsked()
    {
        Assert.Equal(["[CLS]", "北", "京", "是", "[MASK]", "国", "的", "首", "都", "[SEP]"], Small().Tokenize("北京是[MASK]国的首都"));
        Assert.Equal(["[CLS]", "北", "京", "是", "[", "mask", "]", "国", "的", "首", "都", "[SEP]"], Small(specials: false).Tokenize("北京是[MASK]国的首都"));
    }

    [Fact]
    public void UnknownAndOverlongWordsBecomeOneUnknownToken()
    {
        var tk = Small();
        var e = tk.Encode("hello qqq world");
        Assert.Equal(["[CLS]", "hello", "[UNK]", "world", "[SEP]"], e.Tokens);
        Assert.Equal(new TokenSpan(6, 9), e.Offsets[2]);
        var longWord = new string('x', 201);
        Assert.Equal(["[CLS]", "[UNK]", "[SEP]"], tk.Encode(longWord).Tokens);
        Assert.Equal(201, tk.Encode(longWord).Offsets[1].Length);
        Assert.Equal(202, tk.Encode(new string('x', 200)).Count);   // 200 is still split: x ##x ##x …
    }

    [Fact]
    public void PairsAndTruncationFollowBert4keras()
    {
        var tk = Small();
        var e = tk.Encode("北京是中国", "的首都", maxLength: 8);
        // [CLS] a [SEP] b [SEP] with 3 added tokens leaves 5: the longer text loses tokens from its end,
        // the first text on ties (numpy argmax), as bert4keras's truncate_sequences.
        Assert.Equal(["[CLS]", "北", "京", "[SEP]", "的", "首", "都", "[SEP]"], e.Tokens);
        Assert.Equal([0, 0, 0, 0, 1, 1, 1, 1], e.SegmentIds);
        Assert.Equal(new TokenSpan(1, 2), e.Offsets[5]);   // offsets of the second text point into the second text
        var left = tk.Encode("北京是中国", maxLength: 4, truncateFrom: TruncateFrom.Left);
        Assert.Equal(["[CLS]", "中", "国", "[SEP]"], left.Tokens);
        Assert.Throws<ArgumentOutOfRangeException>(() => tk.Encode("北京", "中国", maxLength: 2));
    }

    [Fact]
    public void DecodeJoinsLikeBert4keras()
    {
        var tk = Small();
        Assert.Equal("北京是中国的首都。", tk.Decode(tk.Encode("北京是中国的首都。").Ids));
        Assert.Equal("unaffable hellos!", tk.Decode(tk.Encode("unaffable hellos!").Ids));
        Assert.Equal("hello北京", tk.Decode(tk.Encode("hello 北京").Ids));
    }

    [Fact]
    public void BatchEncodingPadsWithMasks()
    {
        var tk = Small();
        using var batch = tk.EncodeBatch(["北京", "北京是中国的首都"]);
        Assert.Equal(new long[] { 2, 10 }, batch.InputIds.shape);
        Assert.Equal(4, batch.AttentionMask[0].sum().item<long>());
        Assert.Equal(0, batch.InputIds[0, 9].item<long>());
        Assert.Throws<ArgumentException>(() => tk.EncodeBatch([]));
    }

    [Fact]
    public void RematchAgreesWithOffsets()
    {
        var tk = Small();
        string text = "Hello，北京 UNAFFABLE";
        var tokens = tk.Tokenize(text);
        var map = tk.Rematch(text, tokens);
        var e = tk.Encode(text);
        for (int i = 0; i < tokens.Count; i++)
        {
            if (e.Offsets[i].IsEmpty) { Assert.Empty(map[i]); continue; }
            Assert.Equal(e.Offsets[i].Start, map[i][0]);
            Assert.Equal(e.Offsets[i].End, map[i][^1] + 1);
        }
    }

    [Fact]
    public void BadInputHasDefinedResults()
    {
        var tk = Small();
        Assert.Equal(["[CLS]", "[SEP]"], tk.Tokenize(""));
        Assert.Equal(["[CLS]", "[SEP]"], tk.Tokenize(" \t\r\n\u3000 "));
        Assert.Equal(["[CLS]", "hello", "[SEP]"], tk.Tokenize("hel\0lo"));        // NUL dropped inside the word
        Assert.Equal(3, tk.Encode("\uD800").Count);                                  // a lone surrogate is an unknown word
        Assert.Equal(3, tk.Encode("שלום").Count);                                    // right-to-left text: one unknown word
        var mb = new string('a', 1 << 20);
        var e = tk.Encode(mb);
        Assert.Equal(3, e.Count);
        Assert.Equal(1 << 20, e.Offsets[1].Length);
        Assert.Throws<ArgumentNullException>(() => tk.Encode(null!));
    }

    [Fact]
    public void VocabularyFilesWithBomCrlfDuplicatesOrNoUnknown()
    {
        string dir = Directory.CreateTempSubdirectory("b4s-vocab").FullName;
        try
        {
            string p = Path.Combine(dir, "vocab.txt");
            File.WriteAllText(p, "\uFEFF[PAD]\r\n[UNK]\r\n[CLS]\r\n[SEP]\r\nhello\r\nhello\r\nworld\r\n", new UTF8Encoding(false));
            var v = Vocabulary.Load(p);
            Assert.Equal(7, v.Count);
            Assert.Equal(0, v["[PAD]"]);
            Assert.Equal(4, v["hello"]);                 // the first occurrence keeps its id
            Assert.Equal(6, v["world"]);                 // later ids stay line numbers
            Assert.Single(v.Duplicates);
            Assert.Contains("lines 5 and 6", v.Duplicates[0]);

            File.WriteAllText(p, "[PAD]\nhello\n");
            var e = Assert.Throws<ArgumentException>(() => BertWordPieceTokenizer.FromFile(p));
            Assert.Contains("[UNK]", e.Message);
            Assert.Contains(p, e.Message);
            File.WriteAllText(p, "");
            Assert.Throws<InvalidDataException>(() => Vocabulary.Load(p));
            File.WriteAllBytes(p, [0xff, 0xfe, 0x00]);
            Assert.Throws<InvalidDataException>(() => Vocabulary.Load(p));
            v.Save(p);
            Assert.Equal(v.Tokens, Vocabulary.Load(p).Tokens);
        }
        finally { Directory.Delete(dir, true); }
    }

    [Fact]
    public void CompoundTokensForNewWords()
    {
        var tk = Small();
        var spec = tk.CompoundTokens(["北京", "unaffable"]);
        Assert.Equal([5, 6], spec[0]);
        Assert.Equal([17, 18, 19], spec[1]);
        var bigger = tk.Vocabulary.Extend(["北京", "北京", "[UNK]"]);
        Assert.Equal(SmallVocab.Length + 1, bigger.Count);
        Assert.Equal(SmallVocab.Length, bigger["北京"]);
    }

    [Fact]
    public void WoBertPreTokenizerKeepsVocabularyWordsWhole()
    {
        var jieba = DataCache.FindJieba() is null ? null : JiebaSegmenter.FromCache();
        if (jieba is null) Assert.Skip("needs the jieba dictionary: run 'b4s data get jieba-dict'");
        var vocab = new Vocabulary([.. SmallVocab, "北京", "首都"]);
        var tk = new BertWordPieceTokenizer(vocab, new BertWordPieceOptions { LowerCase = true, PreTokenizer = s => jieba.Cut(s) });
        var e = tk.Encode("北京是中国的首都");
        Assert.Equal(["[CLS]", "北京", "是", "中", "国", "的", "首都", "[SEP]"], e.Tokens);
        Assert.Equal(new TokenSpan(0, 2), e.Offsets[1]);
        Assert.Equal(new TokenSpan(6, 8), e.Offsets[6]);
    }

    /// <summary>Random Unicode (ASCII, CJK, astral, marks, controls, lone surrogates, spaces): no exception, and every offset reproduces its token.</summary>
    [Fact]
    public void OffsetsReproduceTokensOnRandomUnicode()
    {
        string vocabPath = Path.Combine(TestPaths.SharedRoot, "models", "albert_tiny_zh_google", "vocab.txt");
        var vocab = File.Exists(vocabPath) ? Vocabulary.Load(vocabPath) : new Vocabulary(SmallVocab);
        foreach (bool lower in new[] { true, false })
        {
            var tk = new BertWordPieceTokenizer(vocab, new BertWordPieceOptions { LowerCase = lower });
            var rng = new Random(lower ? 1 : 2);
            int[][] pools =
            [
                [.. Enumerable.Range(0x20, 0x5F)], [.. Enumerable.Range(0x4E00, 300)], [0x1F600, 0x1F680, 0x20000, 0x2A6D6],
                [0x301, 0x308, 0x0E33, 0x093F], [0, 1, 0x1F, 0x7F, 0x200B, 0x200D, 0xFEFF, 0xFFFD], [0xD800, 0xDC00],
                [' ', '\t', '\n', 0x3000, 0x2028, 0xA0], [0xC0, 0xE9, 0x130, 0x3A3, 0xFF21, 0xFF10, 0xFF01, 0x2160, 0x2460, 0xF900],
            ];
            for (int n = 0; n < 3000; n++)
            {
                var sb = new StringBuilder();
                int len = rng.Next(0, 40);
                for (int k = 0; k < len; k++)
                {
                    var pool = pools[rng.Next(pools.Length)];
                    int cp = pool[rng.Next(pool.Length)];
                    if (cp is >= 0xD800 and <= 0xDFFF) sb.Append((char)cp); else sb.Append(char.ConvertFromUtf32(cp));
                }
                string text = sb.ToString();
                var e = tk.Encode(text);
                var raw = tk.Tokenize(text);
                Assert.Equal(raw.Count, e.Count);
                for (int i = 0; i < e.Count; i++)
                {
                    var span = e.Offsets[i];
                    if (span.IsEmpty) { Assert.True(i == 0 || i == e.Count - 1 || raw[i].StartsWith('['), $"empty span for {raw[i]}"); continue; }
                    string piece = raw[i].StartsWith("##") ? raw[i][2..] : raw[i];
                    string original = text[span.Start..span.End];
                    // Final sigma depends on context outside the span: compare σ and ς as one letter.
                    Assert.Equal(piece.Replace('\u03C2', '\u03C3'), Normalize(original, lower).Replace('\u03C2', '\u03C3'));
                }
                _ = tk.Decode(e.Ids);
            }
        }
    }

    static string Normalize(string s, bool lower)
    {
        var sb = new StringBuilder();
        for (int i = 0; i < s.Length; i++)
        {
            string ch;
            int len = 1;
            if (char.IsHighSurrogate(s[i]) && i + 1 < s.Length && char.IsLowSurrogate(s[i + 1])) { ch = s.Substring(i, 2); len = 2; }
            else ch = s[i].ToString();
            if (lower && !char.IsSurrogate(ch[0]))
            {
                var r = Rune.GetRuneAt(ch, 0);
                ch = r.Value == 0x130 ? "i\u0307" : (r.Value == 0x3A3 ? FinalSigma(s, i) : Rune.ToLowerInvariant(r).ToString());
                ch = new string(ch.Normalize(NormalizationForm.FormD).Where(c => CharUnicodeInfo.GetUnicodeCategory(c) != UnicodeCategory.NonSpacingMark).ToArray());
            }
            foreach (var c in ch)
                if (!(char.IsSurrogate(c) ? false : CharClasses.IsDropped(c))) sb.Append(c);
            i += len - 1;
        }
        return sb.ToString();
    }

    static string FinalSigma(string s, int i)
    {
        static bool Cased(char c) => char.IsUpper(c) || char.IsLower(c);
        return i > 0 && Cased(s[i - 1]) && !(i + 1 < s.Length && Cased(s[i + 1])) ? "\u03C2" : "\u03C3";
    }
}
