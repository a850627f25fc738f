using Bert4Sharp.Checkpoints;
using Bert4Sharp.Generation;
using Bert4Sharp.Layers;
using Bert4Sharp.Models;
using Bert4Sharp.Tasks;
using TorchSharp;
using static TorchSharp.torch;

namespace Bert4Sharp.Tests.Models;

/// <summary>The one-core seams: loading layouts, saving every family, kernels, pooling, bad ids.</summary>
public class CoreTests
{
    /// <summary>
    /// A directory in the layout sentence-transformers ships (saved from <c>BertModel</c>): the HF BERT fixture with every
    /// <c>bert.</c> prefix dropped and the pretraining heads left out, plus config.json and a vocabulary.
    /// </summary>
    static string BaseModelDirectory(string fixture)
    {
        string dir = Directory.CreateTempSubdirectory("b4s-base").FullName;
        File.Copy(TestPaths.Fixture("hf", fixture, "config.json"), Path.Combine(dir, "config.json"));
        using var ck = Checkpoint.Open(TestPaths.Fixture("hf", fixture, "model.safetensors"));
        var kept = ck.Entries.Where(e => e.Name.StartsWith("bert.", StringComparison.Ordinal))
            .Select(e => TensorSource.From(e.Name["bert.".Length..], ck.ReadTensor(e.Name))).ToList();
        SafetensorsWriter.Write(Path.Combine(dir, "model.safetensors"), kept);
        TestPaths.WriteSyntheticVocabulary(Path.Combine(dir, "vocab.txt"));
        return dir;
    }

    [Fact]
    public void BaseModelKeysWithoutThePrefixLoadLikeTheFullModel()
    {
        string dir = BaseModelDirectory("bert");
        try
        {
            var loaded = AutoModel.Load(dir, new AutoModelOptions { Build = new BuildOptions { Device = torch.CPU } });
            Assert.Equal(CheckpointNaming.HuggingFaceBase, loaded.Report.Naming);
            Assert.True(loaded.Report.IsComplete);
            Assert.NotNull(loaded.WordPiece);
            var full = TransformerModels.Build(TestPaths.Fixture("hf", "bert", "config.json"), TestPaths.Fixture("hf", "bert", "model.safetensors"), "bert",
                Application.Encoder, new BuildOptions { Device = torch.CPU });
            var fullParams = full.named_parameters().ToDictionary(p => p.name, p => p.parameter);
            foreach (var (name, p) in loaded.Model.named_parameters()) Assert.True(p.equal(fullParams[name]).all().item<bool>(), name);
            // Asking for the MLM head of a base-model checkpoint names what is missing.
            var e = Assert.Throws<CheckpointMismatchException>(() => AutoModel.Load(dir, new AutoModelOptions { Application = Application.MaskedLM }));
            Assert.Contains("cls.predictions", e.Message);
        }
        finally { Directory.Delete(dir, true); }
    }

    [Theory]
    [InlineData("t5_v1_0")]
    [InlineData("t5_v1_1")]
    [InlineData("mt5")]
    public void EveryFamilySavesInHuggingFaceLayoutAndLoadsBack(string fixture)
    {
        string dir = TestPaths.Fixture("hf", fixture), saved = Directory.CreateTempSubdirectory("b4s-save").FullName;
        try
        {
            var model = Generation.T5Tests.Load(Path.Combine(dir, "config.json"), Path.Combine(dir, "model.safetensors"));
            model.SavePretrained(saved);
            // The names written are Hugging Face's own: every tensor of the original file, none invented.
            using (var original = Checkpoint.Open(Path.Combine(dir, "model.safetensors")))
            using (var written = Checkpoint.Open(Path.Combine(saved, "model.safetensors")))
                Assert.Equal(original.Entries.Select(e => e.Name).Where(n => !n.EndsWith("embed_tokens.weight", StringComparison.Ordinal)).Order(),
                    written.Entries.Select(e => e.Name).Order());
            var back = AutoModel.Load(saved).Model;
            Assert.Equal(Application.Seq2Seq, back.Application);
            var a = model.named_parameters().ToDictionary(p => p.name, p => p.parameter);
            foreach (var (name, p) in back.named_parameters()) Assert.True(p.equal(a[name]).all().item<bool>(), $"{fixture}: {name}");
            using var io = Checkpoint.Open(Path.Combine(dir, "io.safetensors"));
            using var g = torch.no_grad();
            Assert.True(Generation.T5Tests.Run(back, io, null, null).equal(Generation.T5Tests.Run(model, io, null, null)).all().item<bool>());
        }
        finally { Directory.Delete(saved, true); }
    }

    [Fact]
    public void T5EncoderAloneIsAnEncoder()
    {
        // Application.Encoder on T5 builds the encoder stack only (sentence-T5 style); the decoder's weights are reported as unused heads.
        string dir = TestPaths.Fixture("hf", "t5_v1_1");
        var encoder = TransformerModels.Build(Path.Combine(dir, "config.json"), Path.Combine(dir, "model.safetensors"), "t5", Application.Encoder);
        Assert.Equal(0, encoder.DecoderLayers);
        var seq2seq = Generation.T5Tests.Load(Path.Combine(dir, "config.json"), Path.Combine(dir, "model.safetensors"));
        using var io = Checkpoint.Open(Path.Combine(dir, "io.safetensors"));
        using var g = torch.no_grad();
        IEncoder e = encoder;
        var a = e.Encode(io.ReadTensor("input_ids"), null, io.ReadTensor("attention_mask")).LastHiddenState;
        var b = seq2seq.Forward(new ModelInput(io.ReadTensor("input_ids")) { AttentionMask = io.ReadTensor("attention_mask") }).LastHiddenState;
        Assert.True(a.equal(b).all().item<bool>());
        Assert.Throws<InvalidOperationException>(() => encoder.Decode(new DecoderInput(io.ReadTensor("decoder_input_ids"), a)));
        Assert.Throws<ArgumentException>(() => TransformerModels.Build(Path.Combine(dir, "config.json"), null, "t5", Application.MaskedLM));
    }

    [Fact]
    public void IdsOutsideTheVocabularyAreNamedNotCrashed()
    {
        var model = TransformerModels.Build(TestPaths.Fixture("hf", "bert", "config.json"), TestPaths.Fixture("hf", "bert", "model.safetensors"), "bert");
        using var g = torch.no_grad();
        var e = Assert.Throws<ArgumentException>(() => model.forward(torch.tensor(new long[] { 1, 5000 }).unsqueeze(0), null, null));
        Assert.Contains("token id 5000 is outside [0, 1000)", e.Message);
        e = Assert.Throws<ArgumentException>(() => model.forward(torch.tensor(new long[] { 1, 5 }).unsqueeze(0), torch.tensor(new long[] { 0, 7 }).unsqueeze(0), null));
        Assert.Contains("segment id 7 is outside [0, 2)", e.Message);
        Assert.Throws<ArgumentException>(() => model.forward(torch.tensor(new long[] { -1, 5 }).unsqueeze(0), null, null));
    }

    [Fact]
    public void PoolingsAgreeWithTheirDefinitions()
    {
        using var scope = torch.NewDisposeScope();
        var h = torch.randn(2, 4, 3);
        var first = torch.randn(2, 4, 3);
        var mask = torch.tensor(new long[,] { { 1, 1, 1, 1 }, { 1, 1, 0, 0 } });
        var output = new ModelOutput { LastHiddenState = h, HiddenStates = [torch.randn(2, 4, 3), first, h] };
        var mean = Pool.Apply(Pooling.Mean, output, mask);
        Assert.True(mean[1].allclose(h[1, ..2].mean([0L]), 1e-6, 1e-6));
        var max = Pool.Apply(Pooling.Max, output, mask);
        Assert.True(max[1].equal(h[1, ..2].amax([0L])).all().item<bool>());
        var fla = Pool.Apply(Pooling.FirstLastAverage, output, mask);
        Assert.True(fla[1].allclose(((first[1, ..2] + h[1, ..2]) / 2).mean([0L]), 1e-6, 1e-6));
        Assert.True(Pool.Apply(Pooling.Cls, output, mask).equal(h.select(1, 0)).all().item<bool>());
        Assert.Throws<ArgumentException>(() => Pool.Apply(Pooling.FirstLastAverage, new ModelOutput { LastHiddenState = h }, mask));
    }

    [Fact]
    public void AKernelIsASeam()
    {
        // A kernel written outside the library (here: softmax computed by hand) plugs into attention without touching it.
        var bert = TransformerModels.Build(TestPaths.Fixture("hf", "bert", "config.json"), TestPaths.Fixture("hf", "bert", "model.safetensors"), "bert");
        var arch = bert.Architecture with { Layer = bert.Architecture.Layer with { Attention = bert.Architecture.Layer.Attention with { Kernel = new HandSoftmax() } } };
        var custom = new TransformerModel(bert.Family, bert.Config, arch, Application.Encoder);
        var src = bert.named_parameters().ToDictionary(p => p.name, p => p.parameter);
        using (torch.no_grad()) foreach (var (name, p) in custom.named_parameters()) p.copy_(src[name]);
        custom.eval();
        using var io = Checkpoint.Open(TestPaths.Fixture("hf", "bert", "io.safetensors"));
        using var g = torch.no_grad();
        var ids = io.ReadTensor("input_ids");
        var mask = io.ReadTensor("attention_mask");
        var a = bert.forward(ids, null, mask).LastHiddenState;
        var b = custom.forward(ids, null, mask).LastHiddenState;
        Close.Assert(b, a, "hand-written softmax kernel vs SDPA");
        Assert.True(HandSoftmax.Calls > 0);
    }

    sealed class HandSoftmax : ScoreKernel
    {
        public static int Calls;
        public override string Name => "hand_softmax";
        public override Tensor Weights(Tensor scores, Tensor? mask)
        {
            Interlocked.Increment(ref Calls);
            var s = mask is null ? scores : scores + mask;
            var e = (s - s.amax([-1L], keepdim: true)).exp();
            return e / e.sum(-1, keepdim: true);
        }
    }
}
