using Bert4Sharp.Checkpoints;
using Bert4Sharp.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace Bert4Sharp.Tests.Models;

public class EncoderTests
{
    internal static TransformerModel Fixture(string name, string family, Application app) =>
        TransformerModels.Build(TestPaths.Fixture("hf", name, "config.json"), TestPaths.Fixture("hf", name, "model.safetensors"), family, app,
            new BuildOptions { Device = torch.CPU });

    [Fact]
    public void RealAlbertTensorFlowIndexMapsEveryName()
    {
        string dir = TestPaths.SharedOrSkip("models/albert_tiny_zh_google");
        var config = TransformerConfig.Load(Path.Combine(dir, "albert_config_tiny_google.json"));
        using var ck = Checkpoint.Open(dir);
        var model = new TransformerModel(ModelFamily.Get("albert"), config, ModelFamily.Get("albert").Architecture(config), Application.PreTraining);
        var report = WeightLoader.Check(model, ck);
        Assert.Equal(CheckpointNaming.TensorFlow, report.Naming);
        Assert.Empty(report.Missing);
        Assert.Empty(report.Mismatched);
        Assert.Empty(report.Unexpected);                          // every non-slot variable is used
        Assert.Equal(model.parameters().Count(), report.Loaded.Count); // every parameter is found
        Assert.Equal(65, report.SkippedSlots);
        Assert.Equal(4, config.NumHiddenLayers);
    }

    [Fact]
    public void RealTruncatedAlbertBinMapsEveryName()
    {
        string dir = TestPaths.SharedOrSkip("models/albert_chinese_tiny_TRUNCATED");
        var config = TransformerConfig.Load(Path.Combine(dir, "config.json"));
        using var ck = Checkpoint.Open(Path.Combine(dir, "pytorch_model.bin"));
        var family = ModelFamily.Get("albert");
        var model = new TransformerModel(family, config, family.Architecture(config), Application.MaskedLM);
        var report = WeightLoader.Check(model, ck);
        Assert.Equal(CheckpointNaming.HuggingFace, report.Naming);
        Assert.Empty(report.Missing);
        Assert.Empty(report.Mismatched);
        Assert.Empty(report.Unexpected);
        Assert.Equal(model.parameters().Count(), report.Loaded.Count);
        Assert.Contains("pooler.weight", report.UnusedHeads);     // present in the file, not needed for MLM
        // Loading for real reads the truncated storages: the error names the tensor.
        var e = Assert.Throws<TensorDataUnavailableException>(() => WeightLoader.Load(model, ck));
        Assert.Contains("truncated", e.Message);
    }

    [Fact]
    public void PaddingDoesNotChangeRealPositions()
    {
        foreach (var (name, family) in new[] { ("bert_mlm", "bert"), ("roformer", "roformer"), ("albert", "albert") })
        {
            var model = Fixture(name, family, Application.MaskedLM);
            using var scope = torch.NewDisposeScope();
            using var _ = torch.no_grad();
            var ids = torch.tensor(new long[] { 1, 17, 250, 3, 999, 42, 2 }).unsqueeze(0);
            var alone = model.forward(ids, null, torch.ones_like(ids)).LastHiddenState;
            var padded = torch.cat([ids, torch.zeros(1, 5, dtype: ScalarType.Int64)], 1);
            var mask = torch.cat([torch.ones_like(ids), torch.zeros(1, 5, dtype: ScalarType.Int64)], 1);
            var withPad = model.forward(padded, null, mask).LastHiddenState.narrow(1, 0, 7);
            Close.Assert(withPad, alone, $"{name}: real positions with and without padding");
        }
    }

    [Fact]
    public void AlbertLayersShareOneParameterSet()
    {
        var model = Fixture("albert", "albert", Application.Encoder);
        var names = model.named_parameters().Select(p => p.name).ToList();
        Assert.Contains("layers.0.attention.qkv.weight", names);
        Assert.DoesNotContain(names, n => n.StartsWith("layers.1."));
        Assert.Equal(3, model.Architecture.Layers);
    }

    [Fact]
    public void ParameterNamesEqualTheCheckpointKeysAndSaveRoundTrips()
    {
        var model = Fixture("bert", "bert", Application.PreTraining);
        string dir = Directory.CreateTempSubdirectory("b4s-save").FullName;
        try
        {
            WeightLoader.SavePretrained(model, dir);
            using var original = Checkpoint.Open(TestPaths.Fixture("hf", "bert", "model.safetensors"));
            using var saved = Checkpoint.Open(Path.Combine(dir, "model.safetensors"));
            Assert.Equal(original.Entries.Select(e => e.Name).Order(StringComparer.Ordinal), saved.Entries.Select(e => e.Name).Order(StringComparer.Ordinal));
            foreach (var e in original.Entries) Assert.Equal(original.ReadBytes(e), saved.ReadBytes(e.Name));
            var again = TransformerModels.Build(Path.Combine(dir, "config.json"), dir, "bert", Application.PreTraining, new BuildOptions { Device = torch.CPU });
            Assert.Equal(model.Config with { ModelType = "bert" }, again.Config with { ModelType = "bert" });
        }
        finally { Directory.Delete(dir, true); }
    }

    [Fact]
    public void FourThreadsGiveTheSequentialResults()
    {
        var model = Fixture("roformer", "roformer", Application.MaskedLM);
        var inputs = Enumerable.Range(0, 8).Select(i => Enumerable.Range(0, 5 + i).Select(j => (long)((i * 37 + j * 11) % 990 + 5)).ToArray()).ToArray();
        float[] Run(long[] x)
        {
            using var s = torch.NewDisposeScope();
            using var g = torch.no_grad();
            var t = torch.tensor(x).unsqueeze(0);
            return model.forward(t, null, null).Logits!.data<float>().ToArray();
        }
        var sequential = inputs.Select(Run).ToArray();
        var parallel = new float[inputs.Length][];
        Parallel.For(0, inputs.Length, new ParallelOptions { MaxDegreeOfParallelism = 4 }, i => parallel[i] = Run(inputs[i]));
        for (int i = 0; i < inputs.Length; i++) Assert.Equal(sequential[i], parallel[i]);
    }

    [Fact]
    public void BadInputsNameTheFieldAndBothValues()
    {
        string dir = Directory.CreateTempSubdirectory("b4s-bad").FullName;
        try
        {
            var json = File.ReadAllText(TestPaths.Fixture("hf", "bert", "config.json"));
            File.WriteAllText(Path.Combine(dir, "config.json"), json.Replace("\"hidden_size\": 64", "\"hidden_size\": 96"));
            var e = Assert.Throws<CheckpointMismatchException>(() => TransformerModels.Build(Path.Combine(dir, "config.json"),
                TestPaths.Fixture("hf", "bert", "model.safetensors"), "bert", Application.PreTraining));
            Assert.Contains("embeddings.word.weight: checkpoint [1000, 64]", e.Message);
            Assert.Contains("model [1000, 96]", e.Message);

            File.WriteAllText(Path.Combine(dir, "config.json"), json.Replace("\"num_hidden_layers\": 3", "\"num_hidden_layers\": 4"));
            e = Assert.Throws<CheckpointMismatchException>(() => TransformerModels.Build(Path.Combine(dir, "config.json"),
                TestPaths.Fixture("hf", "bert", "model.safetensors"), "bert", Application.PreTraining));
            Assert.Contains("layers.3.attention.qkv.weight", e.Message);
            var partial = TransformerModels.Build(Path.Combine(dir, "config.json"), TestPaths.Fixture("hf", "bert", "model.safetensors"), "bert",
                Application.PreTraining, new BuildOptions { Strict = false, Device = torch.CPU });
            Assert.Equal(4, partial.Architecture.Layers);

            File.WriteAllText(Path.Combine(dir, "config.json"), json.Replace("\"num_attention_heads\": 4", "\"num_attention_heads\": 5"));
            var c = Assert.Throws<InvalidDataException>(() => TransformerConfig.Load(Path.Combine(dir, "config.json")));
            Assert.Contains("num_attention_heads must divide hidden_size, got 5 and 64", c.Message);

            Assert.Throws<ArgumentException>(() => ModelFamily.Get("bart"));
            var model = Fixture("bert_mlm", "bert", Application.MaskedLM);
            var tooLong = torch.ones(1, 65, dtype: ScalarType.Int64);
            var l = Assert.Throws<ArgumentException>(() => model.forward(tooLong, null, null));
            Assert.Contains("needs 65 positions but the model has 64", l.Message);
            Assert.Throws<ArgumentException>(() => model.forward(torch.zeros(0, 3, dtype: ScalarType.Int64), null, null));
            // A checkpoint of another family.
            var f = Assert.Throws<CheckpointMismatchException>(() => TransformerModels.Build(TestPaths.Fixture("hf", "albert", "config.json"),
                TestPaths.Fixture("hf", "bert", "model.safetensors"), "albert", Application.MaskedLM));
            Assert.Contains("none of the albert names were found", f.Message);
        }
        finally { Directory.Delete(dir, true); }
    }
}

/// <summary>Counts live native tensors, so nothing else may run at the same time.</summary>
[CollectionDefinition("serial", DisableParallelization = true)]
public sealed class SerialCollection;

[Collection("serial")]
public class EncoderLeakTests
{
    static TransformerModel Fixture(string name, string family, Application app) => EncoderTests.Fixture(name, family, app);

    [Fact]
    public void NativeTensorCountStaysFlatOver1000Forwards()
    {
        var model = Fixture("bert_mlm", "bert", Application.MaskedLM);
        var ids = torch.tensor(new long[] { 1, 17, 250, 3, 999, 42, 2 }).unsqueeze(0);
        void Step() { using var s = torch.NewDisposeScope(); using var g = torch.no_grad(); model.forward(ids, null, null); }
        for (int i = 0; i < 10; i++) Step();
        // Let earlier tests' undisposed tensors be finalized first, so only this loop is counted: until the count is
        // stable, since a finalized object can release tensors that only the next collection finalizes.
        long before = -1;
        for (int round = 0; round < 10 && before != Tensor.TotalCount; round++)
        {
            before = Tensor.TotalCount;
            GC.Collect();
            GC.WaitForPendingFinalizers();
            GC.Collect();
        }
        before = Tensor.TotalCount;
        for (int i = 0; i < 1000; i++) Step();
        Assert.Equal(before, Tensor.TotalCount);
    }
}
