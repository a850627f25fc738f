using System.Diagnostics;
using System.Text.Json;
using Bert4Sharp.Models;
using TorchSharp;

namespace Bert4Sharp.Tests.Models;

public class PipelineTests
{
    /// <summary>A model directory: the HF BERT-MLM fixture plus a 1,000-token vocabulary laid out like Google's Chinese one.</summary>
    static string ModelDir()
    {
        string dir = Directory.CreateTempSubdirectory("b4s-model").FullName;
        File.Copy(TestPaths.Fixture("hf", "bert_mlm", "config.json"), Path.Combine(dir, "config.json"));
        File.Copy(TestPaths.Fixture("hf", "bert_mlm", "model.safetensors"), Path.Combine(dir, "model.safetensors"));
        TestPaths.WriteSyntheticVocabulary(Path.Combine(dir, "vocab.txt"));
        return dir;
    }

    [Fact]
    public void FillMaskAndEncode()
    {
        string dir = ModelDir();
        try
        {
            var p = TransformerPipeline.Load(dir, application: Application.MaskedLM, options: new BuildOptions { Device = torch.CPU });
            string text = "一丁[MASK]七万";
            var c = p.FillMask(text, topK: 4);
            Assert.Equal(4, c.Count);
            Assert.True(c.Zip(c.Skip(1)).All(t => t.First.Probability >= t.Second.Probability));
            Assert.Equal(text.Replace("[MASK]", c[0].Token), c[0].Text);
            // The same as taking the arg-max of the model's logits by hand.
            var e = p.Tokenizer.Encode(text);
            using var ids = torch.tensor(e.Ids.Select(i => (long)i).ToArray()).unsqueeze(0);
            using var g = torch.no_grad();
            using var o = p.Model.forward(ids, null, null);
            Assert.Equal(c[0].Id, (int)o.Logits![0, 3].argmax().item<long>());

            var enc = TransformerPipeline.Load(dir, options: new BuildOptions { Device = torch.CPU });
            Assert.Null(enc.Model.Architecture.Pooler ? "pooler" : null);   // this checkpoint has none
            var batch = enc.Encode(["一丁七", "万丈三上下不与丐丑专且"]);
            var single = enc.Encode(["一丁七"]);
            Assert.Equal(64, batch.Mean[0].Length);
            Close.Assert(batch.Mean[0], single.Mean[0], "mean pooling of the first text, batched vs alone");
            Assert.Throws<ArgumentException>(() => enc.Encode([]));
            Assert.Throws<ArgumentException>(() => enc.FillMask("一[MASK]"));
            Assert.Throws<ArgumentException>(() => p.FillMask("没有"));
            // SavePretrained writes a directory that loads back to the same predictions.
            string saved = Path.Combine(dir, "saved");
            var files = p.SavePretrained(saved);
            Assert.Equal(3, files.Count);
            var back = TransformerPipeline.Load(saved, application: Application.MaskedLM, options: new BuildOptions { Device = torch.CPU });
            Assert.Equal(c.Select(x => x.Id), back.FillMask(text, topK: 4).Select(x => x.Id));
        }
        finally { Directory.Delete(dir, true); }
    }

    [Fact]
    public void CliEncodeAndFillMask()
    {
        string dir = ModelDir();
        try
        {
            var (code, stdout, stderr) = Run("fill-mask", "--json", "--model", dir, "--top-k", "2", "一丁[MASK]七万");
            Assert.True(code == 0, stderr);
            using var doc = JsonDocument.Parse(stdout);
            Assert.Equal(2, doc.RootElement.GetArrayLength());
            (code, stdout, stderr) = Run("encode", "--json", "--threads", "1", "--model", dir, "一丁七", "万丈三");
            Assert.True(code == 0, stderr);
            using var enc = JsonDocument.Parse(stdout);
            Assert.Equal(2, enc.RootElement.GetProperty("mean").GetArrayLength());
            (code, _, stderr) = Run("encode", "--model", dir, "--family", "bart", "x");
            Assert.Equal(1, code);
            Assert.Contains("unknown model family 'bart'", stderr);
        }
        finally { Directory.Delete(dir, true); }
    }

    static (int, string, string) Run(params string[] args)
    {
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true };
        psi.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "b4s.dll"));
        foreach (var a in args) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        var o = p.StandardOutput.ReadToEndAsync();
        var e = p.StandardError.ReadToEndAsync();
        p.WaitForExit(120_000);
        return (p.ExitCode, o.Result, e.Result);
    }
}
