namespace Bert4Sharp.Tests;

/// <summary>Where the repository, its fixtures and the shared real material are.</summary>
public static class TestPaths
{
    public static string RepoRoot { get; } = FindRepoRoot();

    public static string Fixtures => Path.Combine(RepoRoot, "tests", "fixtures");

    public static string Fixture(params string[] parts) => Path.Combine([Fixtures, .. parts]);

    /// <summary>../shared beside the checkout, or $B4S_SHARED.</summary>
    public static string SharedRoot => Environment.GetEnvironmentVariable("B4S_SHARED") is { Length: > 0 } s
        ? s : Path.GetFullPath(Path.Combine(RepoRoot, "..", "shared"));

    /// <summary>A path under ../shared; skips the test with the reason when it is absent.</summary>
    public static string SharedOrSkip(string relative)
    {
        string p = Path.Combine(SharedRoot, relative);
        if (!File.Exists(p) && !Directory.Exists(p))
            Assert.Skip($"needs the real material {relative} from ../shared (looked in {SharedRoot}); a fresh clone without ../shared skips this test. Set B4S_SHARED to point elsewhere.");
        return p;
    }

    /// <summary>
    /// A 1,000-token vocabulary laid out like Google's Chinese one ([PAD], [unusedN], [UNK]=100, [CLS]=101,
    /// [SEP]=102, [MASK]=103, then CJK characters from U+4E00), matching the HF fixtures' vocab size.
    /// </summary>
    public static void WriteSyntheticVocabulary(string path)
    {
        var vocab = new List<string> { "[PAD]" };
        vocab.AddRange(Enumerable.Range(1, 99).Select(i => $"[unused{i}]"));
        vocab.AddRange(["[UNK]", "[CLS]", "[SEP]", "[MASK]"]);
        vocab.AddRange(Enumerable.Range(0, 1000 - vocab.Count).Select(i => ((char)(0x4E00 + i)).ToString()));
        File.WriteAllLines(path, vocab);
    }

    /// <summary>The tiny HF BERT fixture as an encoder on the CPU, with a tokenizer over <see cref="WriteSyntheticVocabulary"/> (one token per CJK character).</summary>
    public static (Bert4Sharp.Models.TransformerModel Encoder, Bert4Sharp.Tokenization.BertWordPieceTokenizer Tokenizer) TinyBertEncoder()
    {
        string vocab = Path.Combine(Path.GetTempPath(), $"b4s-tiny-vocab-{Guid.NewGuid():N}.txt");
        WriteSyntheticVocabulary(vocab);
        var tokenizer = Bert4Sharp.Tokenization.BertWordPieceTokenizer.FromFile(vocab, new Bert4Sharp.Tokenization.BertWordPieceOptions());
        File.Delete(vocab);
        var encoder = Bert4Sharp.Models.TransformerModels.Build(Fixture("hf", "bert", "config.json"), Fixture("hf", "bert", "model.safetensors"), "bert",
            Bert4Sharp.Models.Application.Encoder, new Bert4Sharp.Models.BuildOptions { Device = TorchSharp.torch.CPU });
        return (encoder, tokenizer);
    }

    static string FindRepoRoot()
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "Bert4Sharp.slnx"))) dir = dir.Parent;
        return dir?.FullName ?? throw new InvalidOperationException("cannot find Bert4Sharp.slnx above " + AppContext.BaseDirectory);
    }
}
