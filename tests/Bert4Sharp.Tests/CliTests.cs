using System.Diagnostics;
using System.Text.Json;
using Bert4Sharp.Checkpoints;

namespace Bert4Sharp.Tests;

/// <summary>The b4s tool run as a separate process, the way scripts use it (--json, exit codes, stderr).</summary>
public class CliTests
{
    internal static (int Code, string Out, string Err) B4s(params string[] args) => B4sWith(null, args);

    /// <summary>b4s with environment variables set for it (PATH resolved here, so dotnet itself is always found).</summary>
    internal static (int Code, string Out, string Err) B4sWith(IReadOnlyDictionary<string, string>? environment, params string[] args)
    {
        string dll = Path.Combine(AppContext.BaseDirectory, "b4s.dll");
        string dotnet = (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':').Select(d => Path.Combine(d, "dotnet")).FirstOrDefault(File.Exists) ?? "dotnet";
        var psi = new ProcessStartInfo(dotnet) { RedirectStandardOutput = true, RedirectStandardError = true };
        psi.ArgumentList.Add(dll);
        foreach (var a in args) psi.ArgumentList.Add(a);
        foreach (var (k, v) in environment ?? new Dictionary<string, string>()) psi.Environment[k] = v;
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(120_000)) { p.Kill(true); throw new TimeoutException("b4s " + string.Join(' ', args)); }
        return (p.ExitCode, stdout.Result, stderr.Result);
    }

    [Fact]
    public void InspectJsonListsTheTensors()
    {
        var (code, stdout, stderr) = B4s("inspect", "--json", TestPaths.Fixture("checkpoints", "torch_legacy.pt"));
        Assert.True(code == 0, stderr);
        using var doc = JsonDocument.Parse(stdout);
        Assert.Equal("TorchLegacy", doc.RootElement.GetProperty("format").GetString());
        var tensors = doc.RootElement.GetProperty("tensors").EnumerateArray().ToList();
        Assert.Equal(18, tensors.Count);
        var f16 = tensors.Single(t => t.GetProperty("name").GetString() == "f16");
        Assert.Equal("float16", f16.GetProperty("dtype").GetString());
        Assert.Equal(14, f16.GetProperty("bytes").GetInt64());
        Assert.Equal(18, doc.RootElement.GetProperty("totals").GetProperty("tensors").GetInt32());
    }

    [Fact]
    public void GenerateRunsABertForKerasGpt2MlDirectory()
    {
        // bert4keras layout: bert_config.json without model_type (--family), TF checkpoint, vocab.txt.
        string src = TestPaths.Fixture("ports", "gpt2_ml");
        string dir = Directory.CreateTempSubdirectory("b4s-gen").FullName;
        try
        {
            foreach (var f in Directory.GetFiles(src).Where(f => !f.EndsWith("io.safetensors"))) File.Copy(f, Path.Combine(dir, Path.GetFileName(f)));
            File.WriteAllLines(Path.Combine(dir, "vocab.txt"), new[] { "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]" }.Concat(Enumerable.Range(0, 995).Select(i => ((char)('一' + i)).ToString())));
            var (code, stdout, stderr) = B4s("generate", "--model", dir, "--family", "gpt2_ml", "--max-new-tokens", "8", "--json", "一丁七");
            Assert.True(code == 0, stderr);
            using var doc = JsonDocument.Parse(stdout);
            var ids = doc.RootElement.GetProperty("ids").EnumerateArray().Select(x => x.GetInt32()).ToList();
            var lm = new Bert4Sharp.Generation.CausalLanguageModel(Bert4Sharp.Models.TransformerModels.Build(Path.Combine(dir, "bert_config.json"), dir, "gpt2_ml", Bert4Sharp.Models.Application.LanguageModel));
            var prompt = Bert4Sharp.Tokenization.BertWordPieceTokenizer.FromFile(Path.Combine(dir, "vocab.txt"), new() { EndToken = null }).Encode("一丁七").Ids.ToList();
            Assert.Equal([2, 5, 6, 8], prompt);                                              // [CLS] 一 丁 七, no [SEP]
            var expected = Bert4Sharp.Generation.AutoRegressiveDecoder.Greedy(lm, prompt, new Bert4Sharp.Generation.DecodingOptions { MaxNewTokens = 8 }).Skip(4);
            Assert.Equal(expected, ids);
            var (code2, _, stderr2) = B4s("generate", "--model", dir, "一丁七");
            Assert.Equal(1, code2);
            Assert.Contains("has no model_type; pass the family (--family", stderr2);
            // Sampling with top-k 1 (and a seed) is greedy decoding again.
            var (code3, stdout3, stderr3) = B4s("generate", "--model", dir, "--family", "gpt2_ml", "--max-new-tokens", "8", "--top-k", "1", "--seed", "3", "--json", "一丁七");
            Assert.True(code3 == 0, stderr3);
            using var doc3 = JsonDocument.Parse(stdout3);
            Assert.Equal(expected, doc3.RootElement.GetProperty("ids").EnumerateArray().Select(x => x.GetInt32()));
            // Exported to ONNX (with its key/value cache), the same greedy and beam outputs on ONNX Runtime.
            string onnx = Path.Combine(dir, "onnx");
            var (code4, _, stderr4) = B4s("export", "onnx", "--model", dir, "--family", "gpt2_ml", "--output", onnx);
            Assert.True(code4 == 0, stderr4);
            foreach (var decoding in new[] { Array.Empty<string>(), ["--beam", "3"] })
            {
                var (c5, torchOut, e5) = B4s([.. new[] { "generate", "--model", dir, "--family", "gpt2_ml", "--max-new-tokens", "8", "--json" }, .. decoding, "一丁七"]);
                var (c6, onnxOut, e6) = B4s([.. new[] { "generate", "--model", onnx, "--engine", "onnx", "--max-new-tokens", "8", "--json" }, .. decoding, "一丁七"]);
                Assert.True(c5 == 0 && c6 == 0, e5 + e6);
                Assert.Equal(JsonDocument.Parse(torchOut).RootElement.GetProperty("ids").ToString(), JsonDocument.Parse(onnxOut).RootElement.GetProperty("ids").ToString());
            }
        }
        finally { Directory.Delete(dir, true); }
    }

    [Fact]
    public void GenerateRunsAT5DirectoryOnBothEngines()
    {
        // The t5.1.0 fixture (vocabulary 1,000) with a SentencePiece model whose pieces for this prompt are all below 1,000.
        string dir = Directory.CreateTempSubdirectory("b4s-gen-t5").FullName;
        try
        {
            foreach (var f in new[] { "config.json", "model.safetensors" }) File.Copy(Path.Combine(TestPaths.Fixture("hf", "t5_v1_0"), f), Path.Combine(dir, f));
            File.Copy(TestPaths.Fixture("tokenization", "sp_unigram.model"), Path.Combine(dir, "spiece.model"));
            const string prompt = "他们在这里，我们的";
            string onnx = Path.Combine(dir, "onnx");
            var (code, stdout, stderr) = B4s("export", "onnx", "--model", dir, "--output", onnx);
            Assert.True(code == 0, stderr);
            Assert.Contains(Bert4Sharp.Onnx.Export.OnnxExport.CrossFileName, stdout);
            foreach (var decoding in new[] { Array.Empty<string>(), ["--beam", "3"] })
            {
                var (c1, torchOut, e1) = B4s([.. new[] { "generate", "--model", dir, "--max-new-tokens", "8", "--json" }, .. decoding, prompt]);
                var (c2, onnxOut, e2) = B4s([.. new[] { "generate", "--model", onnx, "--engine", "onnx", "--max-new-tokens", "8", "--json" }, .. decoding, prompt]);
                Assert.True(c1 == 0 && c2 == 0, e1 + e2);
                var ids = JsonDocument.Parse(torchOut).RootElement.GetProperty("ids");
                Assert.Equal(8, ids.GetArrayLength());
                Assert.Equal(ids.ToString(), JsonDocument.Parse(onnxOut).RootElement.GetProperty("ids").ToString());
            }
            // A prompt the model's vocabulary cannot hold (中国人民 has piece 1479): the same one-line error on both engines.
            foreach (var (model, engine) in new[] { (dir, "torch"), (onnx, "onnx") })
            {
                var (c, o, e) = B4s("generate", "--model", model, "--engine", engine, "中国人民");
                Assert.Equal(1, c);
                Assert.Equal("", o);
                Assert.StartsWith("b4s: error: token id 1479 is outside [0, 1000) (vocab_size of the model)", e);
            }
        }
        finally { Directory.Delete(dir, true); }
    }

    [Theory]
    [InlineData("--seed 1", "--seed only applies to sampling")]
    [InlineData("--keep-end-token", "--keep-end-token only applies to sampling")]
    [InlineData("--seed 1 --keep-end-token", "--seed and --keep-end-token only apply to sampling")]
    [InlineData("--beam 2 --top-p 0.9", "--beam cannot be combined with --top-p")]
    [InlineData("--beam 2 --seed 1", "--beam cannot be combined with --seed")]
    [InlineData("--temperature 0.7 --keep-end-token", "add --top-k or --top-p, or drop --keep-end-token")]
    [InlineData("--top-p 1.5", "--top-p must be in (0, 1], got 1.5")]
    public void GenerateRefusesDecodingFlagsThatWouldBeIgnored(string flags, string message)
    {
        // The flags are checked before the model is loaded, so no model is needed to see the error.
        var (code, stdout, stderr) = B4s(["generate", "--model", "/no/such/model", .. flags.Split(' '), "prompt"]);
        Assert.Equal(1, code);
        Assert.Equal("", stdout);
        Assert.Single(stderr.Trim().Split('\n'));
        Assert.StartsWith("b4s: error: ", stderr);
        Assert.Contains(message, stderr);
    }

    [Fact]
    public void DataFetchFailuresAreOneLineErrorsWithExitCode1()
    {
        // No npm or apt-get on PATH and an empty cache: the fetch fails as it does offline or without the tools.
        string empty = Directory.CreateTempSubdirectory("b4s-nopath").FullName;
        string cache = Directory.CreateTempSubdirectory("b4s-cache").FullName;
        try
        {
            var env = new Dictionary<string, string> { ["PATH"] = empty, ["B4S_CACHE"] = cache };
            var (code, _, stderr) = B4sWith(env, "data", "get", "jieba-dict", "--json");
            Assert.Equal(1, code);
            Assert.Single(stderr.Trim().Split('\n'));
            Assert.StartsWith("b4s: error: could not fetch the jieba dictionary (apt: apt-get is not installed or not on PATH; npm: npm is not installed or not on PATH)", stderr);
            Assert.Contains("npm ping", stderr);

            (code, _, stderr) = B4sWith(env, "quickstart", "--minutes", "0.01", "--output", Path.Combine(cache, "out"));
            Assert.Equal(1, code);
            Assert.Single(stderr.Trim().Split('\n'));
            Assert.StartsWith("b4s: error: could not fetch the Tang poems (npm package chinese-poetry@2.0.1): npm is not installed or not on PATH; install npm", stderr);
            Assert.Contains(Path.Combine(cache, "chinese-poetry", "tang.txt"), stderr);          // what to do offline
            Assert.DoesNotContain("unexpected", stderr);
        }
        finally
        {
            Directory.Delete(empty, true);
            Directory.Delete(cache, true);
        }
    }

    [Fact]
    public void InspectRealAlbertIndexSaysTheShardIsAbsent()
    {
        string dir = TestPaths.SharedOrSkip("models/albert_tiny_zh_google");
        var (code, stdout, stderr) = B4s("inspect", "--json", dir);
        Assert.True(code == 0, stderr);
        using var doc = JsonDocument.Parse(stdout);
        Assert.Equal(97, doc.RootElement.GetProperty("tensors").GetArrayLength());
        Assert.Contains("absent", doc.RootElement.GetProperty("notes")[0].GetString());
        Assert.Equal(65, doc.RootElement.GetProperty("totals").GetProperty("by_state").GetProperty("slot").GetInt32());
        Assert.Equal("312", doc.RootElement.GetProperty("config").GetProperty("hidden_size").GetString());
    }

    [Theory]
    [InlineData("torch_zip.pt")]
    [InlineData("torch_legacy.pt")]
    [InlineData("reference.safetensors")]
    [InlineData("tf_bundle.index")]
    public void ConvertRoundTripsBitIdentically(string file)
    {
        string input = TestPaths.Fixture("checkpoints", file);
        string outDir = Directory.CreateTempSubdirectory("b4s-convert").FullName;
        try
        {
            var (code, stdout, stderr) = B4s("convert", "--json", "--include-slots", input, outDir);
            Assert.True(code == 0, stderr);
            using var doc = JsonDocument.Parse(stdout);
            Assert.Empty(doc.RootElement.GetProperty("skipped").EnumerateArray());
            using var a = Checkpoint.Open(input);
            using var b = Checkpoint.Open(Path.Combine(outDir, "model.safetensors"));
            Assert.Equal(a.Entries.Select(e => e.Name).Order(StringComparer.Ordinal), b.Entries.Select(e => e.Name).Order(StringComparer.Ordinal));
            foreach (var e in a.Entries)
            {
                Assert.Equal(e.Shape, b[e.Name].Shape);
                Assert.Equal(e.DType, b[e.Name].DType);
                Assert.Equal(a.ReadBytes(e), b.ReadBytes(e.Name));
            }
        }
        finally { Directory.Delete(outDir, true); }
    }

    [Fact]
    public void InspectAnOnnxModelListsTheRecoveredNames()
    {
        var (code, stdout, stderr) = B4s("inspect", "--json", MiniLm.ModelPath);
        Assert.True(code == 0, stderr);
        using var doc = JsonDocument.Parse(stdout);
        Assert.Equal("Onnx", doc.RootElement.GetProperty("format").GetString());
        var tensors = doc.RootElement.GetProperty("tensors").EnumerateArray().ToList();
        Assert.Equal(148, tensors.Count);
        var w = tensors.Single(t => t.GetProperty("name").GetString() == "encoder.layer.3.intermediate.dense.weight");
        Assert.Equal([1536L, 384], w.GetProperty("shape").EnumerateArray().Select(d => d.GetInt64()));
        Assert.Equal("float32", w.GetProperty("dtype").GetString());
        Assert.Contains("stored as '977'", w.GetProperty("note").GetString());
        Assert.Contains(doc.RootElement.GetProperty("notes").EnumerateArray(), n => n.GetString()!.StartsWith("36 anonymous MatMul weights", StringComparison.Ordinal));
        Assert.Equal("input_ids, attention_mask, token_type_ids", doc.RootElement.GetProperty("metadata").GetProperty("inputs").GetString());
    }

    [Fact]
    public void ConvertAnOnnxModelToSafetensors()
    {
        string input = TestPaths.Fixture("onnx", "synthetic.onnx");
        string outDir = Directory.CreateTempSubdirectory("b4s-convert").FullName;
        try
        {
            var (code, stdout, stderr) = B4s("convert", "--json", input, outDir);
            Assert.True(code == 0, stderr);
            using var doc = JsonDocument.Parse(stdout);
            Assert.Equal("Onnx", doc.RootElement.GetProperty("format").GetString());
            using var a = Checkpoint.Open(input);
            using var b = Checkpoint.Open(Path.Combine(outDir, "model.safetensors"));
            Assert.Equal(a.Entries.Select(e => e.Name).Order(StringComparer.Ordinal), b.Entries.Select(e => e.Name).Order(StringComparer.Ordinal));
            foreach (var e in a.Entries)
            {
                Assert.Equal(e.Shape, b[e.Name].Shape);
                Assert.Equal(a.ReadBytes(e), b.ReadBytes(e.Name));   // recovered weights land as [out, in]
            }
        }
        finally { Directory.Delete(outDir, true); }
    }

    [Fact]
    public void ErrorsAreOneLineOnStderrWithANonZeroExitCode()
    {
        var (code, stdout, stderr) = B4s("inspect", TestPaths.Fixture("checkpoints", "evil_zip.pt"));
        Assert.Equal(1, code);
        Assert.Equal("", stdout);
        Assert.Single(stderr.Trim().Split('\n'));
        Assert.Contains("posix.system", stderr);

        (code, _, stderr) = B4s("inspect", "--json", "/no/such/model");
        Assert.Equal(1, code);
        Assert.StartsWith("b4s: error: /no/such/model", stderr);
    }

    [Fact]
    public void ConvertRefusesUnreadableTensorsUnlessAsked()
    {
        string bin = TestPaths.SharedOrSkip("models/albert_chinese_tiny_TRUNCATED/pytorch_model.bin");
        string outDir = Directory.CreateTempSubdirectory("b4s-convert").FullName;
        try
        {
            var (code, _, stderr) = B4s("convert", bin, outDir);
            Assert.Equal(1, code);
            Assert.Contains("--skip-unreadable", stderr);
            (code, var stdout, stderr) = B4s("convert", "--json", "--skip-unreadable", bin, outDir);
            Assert.True(code == 0, stderr);
            using var doc = JsonDocument.Parse(stdout);
            Assert.Equal(17, doc.RootElement.GetProperty("tensors").GetInt32());
            Assert.Equal(15, doc.RootElement.GetProperty("skipped").GetArrayLength());
        }
        finally { Directory.Delete(outDir, true); }
    }

    [Fact]
    public void DoctorReportsTheEngineAndTheFix()
    {
        var (code, stdout, stderr) = B4s("doctor", "--json");
        Assert.True(code == 0, stderr);
        using var doc = JsonDocument.Parse(stdout);
        Assert.True(doc.RootElement.GetProperty("torch_initialised").GetBoolean());
        Assert.StartsWith("2.10", doc.RootElement.GetProperty("libtorch").GetString());
        Assert.Equal("cpu", doc.RootElement.GetProperty("default_device").GetString());
        var fix = doc.RootElement.GetProperty("runtime_fix");
        if (fix.GetProperty("system_has_glibcxx_3_4_32").ValueKind == JsonValueKind.False)
            Assert.True(fix.GetProperty("applied").GetBoolean());
    }
}
