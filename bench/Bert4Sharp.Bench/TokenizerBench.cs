namespace Bert4Sharp.Bench;

using System.Diagnostics;
using Bert4Sharp.Data;
using Bert4Sharp.Tokenization;
using Microsoft.ML.Tokenizers;

/// <summary>
/// Tokenisation throughput on the real corpus (tests/reference/corpus.json over ../shared/data), single
/// thread, against Microsoft.ML.Tokenizers in the same run: WordPiece vs its BertTokenizer (target ≥ 1.0×),
/// SentencePiece Unigram vs its SentencePieceTokenizer, and jieba segmentation in characters per second.
/// </summary>
public static class TokenizerBench
{
    public static int Run(string[] args)
    {
        string repo = FindRepo();
        string shared = args.Length > 0 ? args[0] : Path.GetFullPath(Path.Combine(repo, "..", "shared"));
        var corpus = TextRecords.ReadCorpus(Path.Combine(repo, "tests", "reference", "corpus.json"), Path.Combine(shared, "data")).Select(c => c.Text).ToArray();
        long chars = corpus.Sum(s => (long)s.Length);
        Console.WriteLine($"corpus: {corpus.Length} sentences, {chars:N0} chars; single thread; median of 5 interleaved rounds");

        string vocab = Path.Combine(shared, "models", "albert_tiny_zh_google", "vocab.txt");
        var ours = BertWordPieceTokenizer.FromFile(vocab, new BertWordPieceOptions { LowerCase = true });
        var ml = BertTokenizer.Create(vocab, new BertOptions { LowerCaseBeforeTokenization = true, ApplyBasicTokenization = true, IndividuallyTokenizeCjk = true, RemoveNonSpacingMarks = true, SplitOnSpecialTokens = true });
        var (a, b) = Time(() => { foreach (var s in corpus) ours.Encode(s); }, () => { foreach (var s in corpus) ml.EncodeToIds(s); });
        Console.WriteLine($"WordPiece   Bert4Sharp (ids+offsets)  {corpus.Length / a,10:N0} sentences/s");
        Console.WriteLine($"WordPiece   ML.Tokenizers (ids)       {corpus.Length / b,10:N0} sentences/s");
        Console.WriteLine($"ratio Bert4Sharp / ML.Tokenizers: {b / a:F2}x   (target >= 1.0x)");

        string model = Path.Combine(repo, "tests", "fixtures", "tokenization", "sp_unigram.model");
        var sp = SpTokenizer.FromFile(model);
        SentencePieceTokenizer mlsp;
        using (var f = File.OpenRead(model)) mlsp = SentencePieceTokenizer.Create(f, false, false);
        var (c, d) = Time(() => { foreach (var s in corpus) sp.EncodeToIds(s); }, () => { foreach (var s in corpus) mlsp.EncodeToIds(s, false, false); });
        Console.WriteLine($"SentencePiece unigram: Bert4Sharp {corpus.Length / c:N0}/s, ML.Tokenizers {corpus.Length / d:N0}/s, ratio {d / c:F2}x (Bert4Sharp adds the charsmap normaliser ML skips)");

        if (DataCache.FindJieba() is not null)
        {
            var jieba = JiebaSegmenter.FromCache();
            var (e, g) = Time(() => { foreach (var s in corpus) jieba.Cut(s); }, () => { foreach (var s in corpus) jieba.Cut(s, hmm: true); });
            Console.WriteLine($"jieba HMM=False: {chars / e / 1e6:F2} M chars/s;  HMM=True: {chars / g / 1e6:F2} M chars/s");
        }
        else Console.WriteLine("jieba: dictionary not cached (b4s data get jieba-dict)");
        return 0;
    }

    /// <summary>Median seconds of two bodies over 5 interleaved rounds (A B A B …) after one warm-up round.</summary>
    static (double A, double B) Time(Action a, Action b)
    {
        var (xs, ys) = Measure.InterleaveTimed(a, b, 1, 5);
        return (Measure.Median(xs), Measure.Median(ys));
    }

    static string FindRepo()
    {
        var d = new DirectoryInfo(AppContext.BaseDirectory);
        while (d is not null && !File.Exists(Path.Combine(d.FullName, "Bert4Sharp.slnx"))) d = d.Parent;
        return d?.FullName ?? throw new InvalidOperationException("run from inside the repository");
    }
}
