using System.Text.Json;
using Bert4Sharp.Checkpoints;
using Bert4Sharp.Checkpoints.Onnx;
using TorchSharp;

namespace Bert4Sharp.Tests.Checkpoints;

/// <summary>
/// ONNX models as checkpoints: the synthetic fixture of tests/reference/make_onnx_fixtures.py (every storage
/// kind, exact bytes) and the real all-MiniLM-L6-v2 export (<see cref="MiniLm"/>).
/// </summary>
public class OnnxCheckpointTests
{
    static bool Same(torch.Tensor a, torch.Tensor b) => a.shape.SequenceEqual(b.shape) && a.equal(b).all().item<bool>();

    static string Synthetic => TestPaths.Fixture("onnx", "synthetic.onnx");

    static JsonDocument Expected() => JsonDocument.Parse(File.ReadAllBytes(TestPaths.Fixture("onnx", "expected.json")));

    static void AssertMatchesExpected(Checkpoint ck)
    {
        using var doc = Expected();
        var expected = doc.RootElement.GetProperty("entries");
        var listed = ck.Entries.Select(e => e.Name).ToList();
        Assert.Equal(expected.EnumerateObject().Select(p => p.Name).Order(StringComparer.Ordinal), listed.Order(StringComparer.Ordinal));
        foreach (var left in doc.RootElement.GetProperty("leftovers").EnumerateArray())
            Assert.Equal(OnnxCheckpoint.AnonymousNote, ck[left.GetString()!].Note);   // listed under the stored name
        foreach (var p in expected.EnumerateObject())
        {
            var e = ck[p.Name];
            Assert.Equal(TensorState.Ok, e.State);
            Assert.Equal(p.Value.GetProperty("dtype").GetString(), e.DType.DisplayName());
            Assert.Equal(p.Value.GetProperty("shape").EnumerateArray().Select(d => d.GetInt64()), e.Shape);
            Assert.True(p.Value.GetProperty("hex").GetString() == Convert.ToHexStringLower(ck.ReadBytes(e)), p.Name);
        }
    }

    [Fact]
    public void SyntheticFixtureReadsEveryStorageExactly()
    {
        using var ck = Checkpoint.Open(Synthetic);
        Assert.Equal(CheckpointFormat.Onnx, ck.Format);
        AssertMatchesExpected(ck);
        Assert.Equal("make_onnx_fixtures.py", ck.Metadata["producer_name"]);
        Assert.Equal("synthetic", ck.Metadata["fixture"]);                 // metadata_props
        Assert.Equal("ai.onnx 13", ck.Metadata["opset_import"]);
        var onnx = Assert.IsType<OnnxCheckpoint>(ck);
        Assert.Equal(["x"], onnx.GraphInputs);
        Assert.Equal(["scaled", "reshaped", "hb"], onnx.GraphOutputs);
        Assert.Contains(ck.Notes, n => n.StartsWith("1 Constant nodes", StringComparison.Ordinal));
    }

    [Fact]
    public void AnonymousMatMulWeightsAreNamedFromTheirBiasAndTransposed()
    {
        using var ck = OnnxCheckpoint.OpenFile(Synthetic);
        using var doc = Expected();
        // Entries keep file order; a renamed weight takes its stored tensor's place.
        var order = doc.RootElement.GetProperty("order").EnumerateArray().Select(e => e.GetString()!).ToList();
        Assert.Equal(order, ck.Initializers.Select(e => e.Name));
        Assert.Equal(order.Select(n => ck.RecoveredNames.FirstOrDefault(kv => kv.Value == n).Key ?? n), ck.Entries.Select(e => e.Name));
        var renamed = new Dictionary<string, string>
        {
            ["dense.weight"] = "onnx::MatMul_17",       // raw_data → strided view
            ["out.weight"] = "onnx::MatMul_18",         // packed float_data → strided view
            ["half_proj.weight"] = "19",                // float16 in int32_data → decoded, then transposed
            ["ext_proj.weight"] = "onnx::MatMul_20",    // external data → strided view into the other file
        };
        Assert.Equal(renamed.OrderBy(kv => kv.Key), ck.RecoveredNames.OrderBy(kv => kv.Key));
        foreach (var (name, stored) in renamed)
        {
            var e = ck[name];
            var s = ck.Initializers.Single(i => i.Name == stored);
            Assert.Equal([s.Shape[1], s.Shape[0]], e.Shape);
            Assert.Contains($"stored as '{stored}'", e.Note);
            using var a = ck.ReadTensor(e);
            using var b = ck.ReadTensor(s);
            Assert.True(Same(a, b.t()), name);
        }
        foreach (var left in new[] { "onnx::MatMul_99", "42", "onnx::MatMul_77" })
            Assert.Equal(left, ck[left].Name);
        Assert.False(ck.TryGetEntry("short.weight", out _));   // bias of the wrong length names nothing
    }

    [Fact]
    public void MappedInMemoryDirectoryAndSniffedOpensAgree()
    {
        using var plain = Checkpoint.Open(Synthetic);
        using var mapped = Checkpoint.OpenMapped(Synthetic);
        AssertMatchesExpected(mapped);
        Assert.True(mapped.TryGetSpan(mapped["embeddings.word_embeddings.weight"], out var span));
        Assert.Equal(plain.ReadBytes("embeddings.word_embeddings.weight"), span.ToArray());
        Assert.True(mapped.TryGetSpan(mapped["ext.weight"], out _));               // external file mapped too
        Assert.False(mapped.TryGetSpan(mapped["dense.weight"], out _));            // transposed: no zero-copy view

        // In memory: the name locates the external data file.
        using (var mem = Checkpoint.Open(File.ReadAllBytes(Synthetic), Synthetic)) AssertMatchesExpected(mem);

        string dir = Directory.CreateTempSubdirectory("b4s-onnx").FullName;
        try
        {
            File.Copy(Synthetic, Path.Combine(dir, "model.onnx"));
            File.Copy(TestPaths.Fixture("onnx", "synthetic.weights"), Path.Combine(dir, "synthetic.weights"));
            File.WriteAllText(Path.Combine(dir, "vocab.txt"), "[PAD]\n");
            using (var fromDir = Checkpoint.Open(dir))
            {
                Assert.Equal(CheckpointFormat.Onnx, fromDir.Format);
                AssertMatchesExpected(fromDir);
            }
            // No .onnx extension: recognised by the ModelProto's first fields.
            File.Move(Path.Combine(dir, "model.onnx"), Path.Combine(dir, "graph.pb"));
            using var sniffed = Checkpoint.Open(Path.Combine(dir, "graph.pb"));
            Assert.Equal(CheckpointFormat.Onnx, sniffed.Format);
            AssertMatchesExpected(sniffed);
        }
        finally { Directory.Delete(dir, true); }
    }

    /// <summary>The parameters of HF BertModel for all-MiniLM-L6-v2, with their PyTorch shapes.</summary>
    static Dictionary<string, long[]> MiniLmParameters()
    {
        var p = new Dictionary<string, long[]>
        {
            ["embeddings.position_ids"] = [1, 512],
            ["embeddings.word_embeddings.weight"] = [30522, 384],
            ["embeddings.position_embeddings.weight"] = [512, 384],
            ["embeddings.token_type_embeddings.weight"] = [2, 384],
            ["embeddings.LayerNorm.weight"] = [384],
            ["embeddings.LayerNorm.bias"] = [384],
            ["pooler.dense.weight"] = [384, 384],
            ["pooler.dense.bias"] = [384],
        };
        for (int l = 0; l < 6; l++)
        {
            string L = $"encoder.layer.{l}.";
            foreach (var lin in new[] { "attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense" })
            {
                p[L + lin + ".weight"] = [384, 384];
                p[L + lin + ".bias"] = [384];
            }
            p[L + "intermediate.dense.weight"] = [1536, 384];
            p[L + "intermediate.dense.bias"] = [1536];
            p[L + "output.dense.weight"] = [384, 1536];
            p[L + "output.dense.bias"] = [384];
            foreach (var ln in new[] { "attention.output.LayerNorm", "output.LayerNorm" })
            {
                p[L + ln + ".weight"] = [384];
                p[L + ln + ".bias"] = [384];
            }
        }
        return p;
    }

    [Fact]
    public void MiniLmInitializersAreNamedAsBertModelParametersOrListed()
    {
        using var ck = OnnxCheckpoint.OpenFile(MiniLm.ModelPath);
        var hf = MiniLmParameters();
        Assert.Equal(104, hf.Count);
        Assert.Equal(148, ck.Initializers.Count);
        Assert.Equal(148, ck.Entries.Count);
        foreach (var (name, shape) in hf)
        {
            Assert.True(ck.TryGetEntry(name, out var e), $"{name} is not listed");
            Assert.Equal(shape, e.Shape);
            Assert.Equal(TensorState.Ok, e.State);
        }
        var rest = ck.Entries.Where(e => !hf.ContainsKey(e.Name)).ToList();
        Assert.Equal(44, rest.Count);   // the attention reshapes' shape constants keep their numbers
        Assert.All(rest, e =>
        {
            Assert.True(OnnxCheckpoint.IsAnonymousName(e.Name), e.Name);
            Assert.Equal(OnnxCheckpoint.AnonymousNote, e.Note);
            Assert.Equal(TensorDType.I64, e.DType);
            Assert.Equal([1L], e.Shape);
        });
        Assert.Equal(36, ck.RecoveredNames.Count);
        Assert.Equal("938", ck.RecoveredNames["encoder.layer.0.intermediate.dense.weight"]);
        Assert.Equal(["input_ids", "attention_mask", "token_type_ids"], ck.GraphInputs);
        Assert.Equal("last_hidden_state", ck.GraphOutputs[0]);
        Assert.Equal("pytorch", ck.Metadata["producer_name"]);
    }

    [Fact]
    public void MiniLmRecoveredWeightsAreTheStoredInitializersTransposed()
    {
        using var ck = OnnxCheckpoint.OpenFile(MiniLm.ModelPath);
        foreach (var (name, stored) in ck.RecoveredNames)
        {
            using var scope = torch.NewDisposeScope();
            var a = ck.ReadTensor(name);
            var b = ck.ReadTensor(ck.Initializers.Single(i => i.Name == stored));
            Assert.True(Same(a, b.t()), $"{name} ≠ {stored}ᵀ");
        }
        // And the directory opens to the same model.
        using var fromDir = Checkpoint.Open(MiniLm.Directory);
        Assert.Equal(CheckpointFormat.Onnx, fromDir.Format);
        Assert.Equal(ck.Entries.Select(e => e.Name), fromDir.Entries.Select(e => e.Name));
    }

    [Fact]
    public void MiniLmCutShortIsReportedAsTruncated()
    {
        var full = File.ReadAllBytes(MiniLm.ModelPath);
        foreach (int cut in new[] { 3, 100, full.Length / 2, full.Length - 1 })
        {
            var e = Assert.Throws<CheckpointFormatException>(() => Checkpoint.Open(full.AsMemory(0, cut), "model.onnx"));
            Assert.Equal("model.onnx", e.FilePath);
            Assert.Contains("truncated", e.Message);
        }
    }

    /// <summary>
    /// The names mean what they say: a plain BERT forward pass written here from the recovered weights
    /// (nn.Linear convention, weight [out, in]) reproduces ONNX Runtime's last_hidden_state on the original graph.
    /// </summary>
    [Fact]
    public void MiniLmWeightsUnderTheirNamesReproduceOnnxRuntime()
    {
        // "[CLS] hello world [SEP]" and a padded pair with segment ids; ids from the package's vocab.txt.
        var vocab = File.ReadAllLines(MiniLm.VocabPath);
        Assert.Equal(30522, vocab.Length);
        long Id(string t) => Array.IndexOf(vocab, t);
        long[] ids = [Id("[CLS]"), Id("hello"), Id("world"), Id("[SEP]"), Id("[PAD]"), Id("[PAD]"),
                      Id("[CLS]"), Id("the"), Id("cat"), Id("[SEP]"), Id("sat"), Id("[SEP]")];
        Assert.DoesNotContain(-1L, ids);
        long[] mask = [1, 1, 1, 1, 0, 0, 1, 1, 1, 1, 1, 1];
        long[] types = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1];
        var (expected, shape) = MiniLm.RunOnnx(ids, mask, types, batch: 2, sequence: 6);
        Assert.Equal([2L, 6, 384], shape);

        using var ck = Checkpoint.Open(MiniLm.ModelPath);
        using var scope = torch.NewDisposeScope();
        using var _ = torch.no_grad();
        torch.Tensor W(string n) => ck.ReadTensor(n);
        var tIds = torch.tensor(ids, [2, 6]);
        var x = W("embeddings.word_embeddings.weight")[tIds] + W("embeddings.position_embeddings.weight")[torch.arange(6)]
            + W("embeddings.token_type_embeddings.weight")[torch.tensor(types, [2, 6])];
        torch.Tensor Norm(torch.Tensor t, string p) => torch.nn.functional.layer_norm(t, [384], W(p + ".weight"), W(p + ".bias"), 1e-12);
        torch.Tensor Linear(torch.Tensor t, string p) => torch.nn.functional.linear(t, W(p + ".weight"), W(p + ".bias"));
        x = Norm(x, "embeddings.LayerNorm");
        var additive = ((1 - torch.tensor(mask, [2, 6]).to(torch.float32)) * -10000f).view(2, 1, 1, 6);
        for (int l = 0; l < 6; l++)
        {
            string L = $"encoder.layer.{l}.";
            torch.Tensor Heads(torch.Tensor t) => t.view(2, 6, 12, 32).transpose(1, 2);
            var q = Heads(Linear(x, L + "attention.self.query"));
            var k = Heads(Linear(x, L + "attention.self.key"));
            var v = Heads(Linear(x, L + "attention.self.value"));
            var probs = torch.softmax(q.matmul(k.transpose(-1, -2)) / MathF.Sqrt(32) + additive, -1);
            var context = probs.matmul(v).transpose(1, 2).reshape(2, 6, 384);
            x = Norm(Linear(context, L + "attention.output.dense") + x, L + "attention.output.LayerNorm");
            var h = torch.nn.functional.gelu(Linear(x, L + "intermediate.dense"));
            x = Norm(Linear(h, L + "output.dense") + x, L + "output.LayerNorm");
        }
        float[] actual = x.contiguous().data<float>().ToArray();
        const double atol = 2e-5, rtol = 2e-5;   // measured worst |a − b|: 8.3e-6 at a value of 1.39
        double worst = 0;
        int at = -1;
        for (int i = 0; i < expected.Length; i++)
        {
            double excess = Math.Abs(actual[i] - expected[i]) - (atol + rtol * Math.Abs(expected[i]));
            if (at < 0 || excess > worst) (worst, at) = (excess, i);
        }
        Assert.True(worst <= 0, $"element {at}: {actual[at]} vs ONNX Runtime {expected[at]} (|a − b| > {atol} + {rtol}·|b| by {worst:G3})");
    }
}
