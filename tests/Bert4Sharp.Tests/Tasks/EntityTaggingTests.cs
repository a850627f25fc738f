namespace Bert4Sharp.Tests.Tasks;

using Bert4Sharp.Tasks;
using Bert4Sharp.Tokenization;

/// <summary>BIO/BIOES spans ↔ tags (both invalid-sequence rules), scheme constraints, and character ↔ token spans.</summary>
public sealed class EntityTaggingTests
{
    static readonly string[] Types = ["PER", "LOC", "ORG"];

    [Fact]
    public void LabelLayoutFollowsTheBert4kerasNerExample()
    {
        var bio = new TagSet(TagScheme.Bio, Types);
        Assert.Equal(["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG"], bio.Names);
        var bioes = new TagSet(TagScheme.Bioes, Types);
        Assert.Equal(13, bioes.Count);
        Assert.Equal(["O", "B-PER", "I-PER", "E-PER", "S-PER", "B-LOC"], bioes.Names.Take(6));
        Assert.Equal(8, bioes.Id("S-LOC"));
    }

    [Theory]
    [InlineData(TagScheme.Bio)]
    [InlineData(TagScheme.Bioes)]
    public void SpansRoundTrip(TagScheme scheme)
    {
        var set = new TagSet(scheme, Types);
        EntitySpan[] spans = [new(0, 1, "LOC"), new(1, 4, "PER"), new(4, 6, "PER"), new(8, 9, "ORG"), new(9, 10, "ORG")];
        var tags = set.Encode(10, spans.Reverse());
        var names = tags.Select(t => set.Names[t]).ToArray();
        if (scheme == TagScheme.Bio)
            Assert.Equal(["B-LOC", "B-PER", "I-PER", "I-PER", "B-PER", "I-PER", "O", "O", "B-ORG", "B-ORG"], names);
        else
            Assert.Equal(["S-LOC", "B-PER", "I-PER", "E-PER", "B-PER", "E-PER", "O", "O", "S-ORG", "S-ORG"], names);
        Assert.Equal(spans, set.Decode(tags, InvalidTagRule.Conlleval));
        Assert.Equal(spans, set.Decode(tags, InvalidTagRule.Bert4keras));
        Assert.Equal(spans, set.Decode(names));
        Assert.Empty(set.Decode(set.Encode(0, [])));
    }

    [Fact]
    public void InvalidBioSequences()
    {
        var set = new TagSet(TagScheme.Bio, Types);
        string[] tags = ["I-PER", "I-PER", "O", "B-LOC", "I-ORG", "I-ORG", "O", "I-LOC"];
        // conlleval/seqeval: orphan I begins an entity; a type change ends one and begins another
        Assert.Equal([new(0, 2, "PER"), new(3, 4, "LOC"), new(4, 6, "ORG"), new EntitySpan(7, 8, "LOC")], set.Decode(tags, InvalidTagRule.Conlleval));
        // bert4keras NER example: orphan I dropped; I of another type continues the open entity with its type
        Assert.Equal([new EntitySpan(3, 6, "LOC")], set.Decode(tags, InvalidTagRule.Bert4keras));
    }

    [Fact]
    public void InvalidBioesSequences()
    {
        var set = new TagSet(TagScheme.Bioes, Types);
        string[] tags = ["B-PER", "I-PER", "O", "E-LOC", "S-ORG", "I-ORG", "E-ORG", "B-PER", "B-LOC", "E-LOC"];
        Assert.Equal([new(0, 2, "PER"), new(3, 4, "LOC"), new(4, 5, "ORG"), new(5, 7, "ORG"), new(7, 8, "PER"), new EntitySpan(8, 10, "LOC")],
            set.Decode(tags, InvalidTagRule.Conlleval));
        Assert.Equal([new(0, 2, "PER"), new(4, 5, "ORG"), new(7, 8, "PER"), new EntitySpan(8, 10, "LOC")], set.Decode(tags, InvalidTagRule.Bert4keras));
    }

    [Theory]
    [InlineData(TagScheme.Bio)]
    [InlineData(TagScheme.Bioes)]
    public void ConstrainedViterbiPathsAreValidSequences(TagScheme scheme)
    {
        // Random emissions and transitions: under the scheme's constraints every decoded path reads the same under
        // both rules and re-encodes to itself.
        var set = new TagSet(scheme, Types);
        var rng = new Random(7);
        int l = set.Count;
        var decoder = new CrfDecoder(l, Enumerable.Range(0, l * l).Select(_ => rng.NextDouble() * 4 - 2).ToArray(), set.Constraints());
        for (int k = 0; k < 50; k++)
        {
            int n = rng.Next(1, 15);
            var e = Enumerable.Range(0, n * l).Select(_ => rng.NextDouble() * 6 - 3).ToArray();
            var path = decoder.Decode(e, n);
            var spans = set.Decode(path, InvalidTagRule.Conlleval);
            Assert.Equal(spans, set.Decode(path, InvalidTagRule.Bert4keras));
            Assert.Equal(path, set.Encode(n, spans));
        }
    }

    [Fact]
    public void BadSpansAndTags()
    {
        var set = new TagSet(TagScheme.Bio, Types);
        Assert.Contains("overlaps span 1 at token 2", Assert.Throws<ArgumentException>(() => set.Encode(5, [new(0, 3, "PER"), new(2, 4, "LOC")])).Message);
        Assert.Contains("outside 0..5 or empty", Assert.Throws<ArgumentException>(() => set.Encode(5, [new(3, 6, "PER")])).Message);
        Assert.Contains("outside 0..5 or empty", Assert.Throws<ArgumentException>(() => set.Encode(5, [new(3, 3, "PER")])).Message);
        Assert.Contains("type 'MISC', not one of PER, LOC, ORG", Assert.Throws<ArgumentException>(() => set.Encode(5, [new(0, 1, "MISC")])).Message);
        Assert.Contains("tag 7 at position 1 is outside 0..6", Assert.Throws<ArgumentOutOfRangeException>(() => set.Decode([0, 7])).Message);
        Assert.Contains("tag 'S-PER' is not in this Bio tag set", Assert.Throws<ArgumentException>(() => set.Decode(["S-PER"])).Message);
        Assert.Contains("listed twice", Assert.Throws<ArgumentException>(() => new TagSet(TagScheme.Bio, ["A", "A"])).Message);
    }

    [Fact]
    public void CharacterSpansThroughTokenizerOffsets()
    {
        var dir = Directory.CreateTempSubdirectory("b4s-tagging-");
        try
        {
            var vocab = Path.Combine(dir.FullName, "vocab.txt");
            TestPaths.WriteSyntheticVocabulary(vocab);
            var tokenizer = BertWordPieceTokenizer.FromFile(vocab);
            const string text = "一丁 七万xyz丈";                           // [CLS] 一 丁 七 万 [UNK]=xyz 丈 [SEP]
            var enc = tokenizer.Encode(text);
            Assert.Equal(8, enc.Count);
            Assert.Equal(new TokenSpan(5, 8), enc.Offsets[5]);
            EntitySpan[] chars = [new(0, 2, "PER"), new(3, 5, "LOC"), new(6, 8, "ORG"), new(2, 3, "ORG"), new(5, 9, "LOC")];
            var exact = TokenSpans.FromCharacters(enc.Offsets, chars);
            Assert.Equal([new(1, 3, "PER"), new(3, 5, "LOC"), new EntitySpan(5, 7, "LOC")], exact.Spans);
            Assert.Equal((1, 1), (exact.Misaligned, exact.Unmapped));          // "yz" inside [UNK]; the space touches no token
            var widened = TokenSpans.FromCharacters(enc.Offsets, chars, SpanAlignment.Expand);
            Assert.Equal([new(1, 3, "PER"), new(3, 5, "LOC"), new(5, 6, "ORG"), new EntitySpan(5, 7, "LOC")], widened.Spans);
            Assert.Equal((1, 1), (widened.Misaligned, widened.Unmapped));
            // back to characters: aligned spans round trip, [CLS]/[SEP] at the edges are left out
            Assert.Equal([new(0, 2, "PER"), new(3, 5, "LOC"), new EntitySpan(5, 9, "LOC")], TokenSpans.ToCharacters(enc.Offsets, exact.Spans));
            Assert.Equal(new EntitySpan(0, 1, "PER"), TokenSpans.ToCharacters(enc.Offsets, new EntitySpan(0, 2, "PER")));
            Assert.Null(TokenSpans.ToCharacters(enc.Offsets, new EntitySpan(7, 8, "PER")));
            Assert.Contains("outside 0..8", Assert.Throws<ArgumentException>(() => TokenSpans.ToCharacters(enc.Offsets, new EntitySpan(7, 9, "PER"))).Message);
            Assert.Contains("is empty or starts before 0", Assert.Throws<ArgumentException>(() => TokenSpans.FromCharacters(enc.Offsets, [new(4, 4, "PER")])).Message);
        }
        finally { dir.Delete(true); }
    }
}
