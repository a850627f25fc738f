using Bert4Sharp.Embeddings;
using Bert4Sharp.Tasks;

namespace Bert4Sharp.Tests.Embeddings;

/// <summary><c>b4s whiten</c> writes a whitening the other commands apply, and a model's sentence_encoder.json sets their pooling.</summary>
public class WhitenCliTests
{
    static (int Code, string Out, string Err) B4s(params string[] args) => CliTests.B4sWith(MiniLm.CliEnvironment, args);

    static float[][] Vectors(string path) => [.. Search.EmbedCliTests.ReadOutput(path).Select(r => r.Vector)];

    [Fact]
    public void WhitenThenEmbedAppliesItAndTheSavedPoolingIsUsed()
    {
        string model = Search.SearchCliTests.TinyModel("tiny-bert");
        string work = Directory.CreateTempSubdirectory("b4s-whiten").FullName;
        string corpus = Path.Combine(work, "corpus.txt"), small = Path.Combine(work, "small.txt"), output = Path.Combine(work, "out.jsonl");
        File.WriteAllLines(corpus, Enumerable.Range(0, 80).Select(i => new string([.. Enumerable.Range(0, 3 + i % 11).Select(j => (char)(0x4E00 + 150 + (i * 31 + j * 17) % 800))])));
        string[] texts = ["一丁七", "万丈三上下", "丌不与丐"];
        File.WriteAllLines(small, texts);

        var (code, stdout, stderr) = B4s("whiten", "--model", model, "--input", corpus, "--dimensions", "16");
        Assert.True(code == 0, stderr);
        Assert.Contains("64 → 16 dimensions", stdout);
        Assert.Equal(16, Whitening.Load(Path.Combine(model, Whitening.FileName), 64).Dimensions);

        (code, _, stderr) = B4s("embed", "--model", model, "--input", small, "--output", output);
        Assert.True(code == 0, stderr);
        var whitened = SentenceEncoder.Load(model).Encode(texts);                       // applies whitening.safetensors beside the model
        Assert.Equal(16, whitened[0].Length);
        var rows = Vectors(output);
        for (int i = 0; i < texts.Length; i++) Close.Assert(rows[i], whitened[i], $"whitened text {i}", atol: 1e-5);

        // A model trained with [CLS] pooling says so; the commands follow it unless --pooling is given.
        File.Delete(Path.Combine(model, Whitening.FileName));
        new SentenceEncoderOptions { Pooling = Pooling.Cls }.Save(model);
        (code, _, stderr) = B4s("embed", "--model", model, "--input", small, "--output", output);
        Assert.True(code == 0, stderr);
        var cls = SentenceEncoder.Load(model).Encode(texts);
        Assert.Equal(Pooling.Cls, SentenceEncoder.Load(model).Options.Pooling);
        Close.Assert(Vectors(output)[1], cls[1], "saved pooling (cls)", atol: 1e-5);
        (code, _, stderr) = B4s("embed", "--model", model, "--input", small, "--output", output, "--pooling", "mean");
        Assert.True(code == 0, stderr);
        Close.Assert(Vectors(output)[1], SentenceEncoder.Load(model, new SentenceEncoderOptions()).Encode(texts)[1], "--pooling mean overrides", atol: 1e-5);

        // More dimensions than 80 texts determine (at most 64 = the width here) and a bad option are refused with a reason.
        (code, _, stderr) = B4s("whiten", "--model", model, "--input", small, "--dimensions", "16");
        Assert.Equal(1, code);
        Assert.Contains("determine at most 2 directions", stderr);
        Directory.Delete(work, true);
    }
}
