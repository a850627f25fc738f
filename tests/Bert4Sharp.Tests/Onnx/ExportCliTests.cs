namespace Bert4Sharp.Tests.Onnx;

/// <summary><c>b4s export onnx</c>: the exported directory serves <c>--engine onnx</c> with the torch engine's vectors; mistakes are refused with a reason.</summary>
public class ExportCliTests
{
    static (int Code, string Out, string Err) B4s(params string[] args) => CliTests.B4sWith(MiniLm.CliEnvironment, args);

    static float[][] Vectors(string path) => [.. Search.EmbedCliTests.ReadOutput(path).Select(r => r.Vector)];

    [Fact]
    public void ExportThenEmbedOnOnnxRuntimeGivesTheTorchVectors()
    {
        string model = Search.SearchCliTests.TinyModel("tiny-bert-export");
        string work = Directory.CreateTempSubdirectory("b4s-export-cli").FullName;
        string exported = Path.Combine(work, "onnx"), input = Path.Combine(work, "texts.txt");
        File.WriteAllLines(input, ["一丁七", "万丈三上下", "丌不与丐"]);
        try
        {
            var (code, stdout, stderr) = B4s("export", "onnx", "--model", model, "--output", exported);
            Assert.True(code == 0, stderr);
            Assert.Contains("last_hidden_state", stdout);
            Assert.Contains("max |ORT − torch|", stdout);
            foreach (var f in new[] { "model.onnx", "config.json", "vocab.txt" }) Assert.True(File.Exists(Path.Combine(exported, f)), f);
            (code, _, stderr) = B4s("embed", "--model", model, "--input", input, "--output", Path.Combine(work, "torch.jsonl"));
            Assert.True(code == 0, stderr);
            (code, _, stderr) = B4s("embed", "--model", exported, "--engine", "onnx", "--input", input, "--output", Path.Combine(work, "onnx.jsonl"));
            Assert.True(code == 0, stderr);
            var (torchRows, onnxRows) = (Vectors(Path.Combine(work, "torch.jsonl")), Vectors(Path.Combine(work, "onnx.jsonl")));
            for (int i = 0; i < torchRows.Length; i++) Close.Assert(onnxRows[i], torchRows[i], $"text {i}", atol: 2e-5, rtol: 1e-4);

            // Nothing is overwritten unasked, the model directory is never the target, and int8 says what it changed.
            (code, _, stderr) = B4s("export", "onnx", "--model", model, "--output", exported);
            Assert.Equal(1, code);
            Assert.Contains("--overwrite", stderr);
            (code, _, stderr) = B4s("export", "onnx", "--model", model, "--output", model);
            Assert.Equal(1, code);
            Assert.Contains("the model directory itself", stderr);
            (code, stdout, stderr) = B4s("export", "onnx", "--model", model, "--output", exported, "--overwrite", "--int8", "--no-verify");
            Assert.True(code == 0, stderr);
            Assert.Contains("int8:", stdout);
        }
        finally { Directory.Delete(work, true); }
    }
}
