namespace Bert4Sharp.Tests.Training;

using Bert4Sharp.Checkpoints;
using Bert4Sharp.Layers;
using Bert4Sharp.Models;
using Bert4Sharp.Runtime;
using Bert4Sharp.Training;
using TorchSharp;
using static TorchSharp.torch;
using Adam = Bert4Sharp.Training.Adam;
using OptimizerOptions = Bert4Sharp.Training.OptimizerOptions;

/// <summary>
/// The precision policy with the hardware detection mocked both ways, the operations that stay in fp32 around a
/// 16-bit model, 16-bit training through the Trainer (master weights, loss scaling, resume), and the CLI's choice
/// and warning. Serial: the global torch RNG.
/// </summary>
[Collection("serial")]
public sealed class PrecisionTests : IDisposable
{
    readonly string dir = Directory.CreateTempSubdirectory("b4s-precision").FullName;

    public void Dispose()
    {
        try { Directory.Delete(dir, true); } catch (IOException) { }
    }

    static readonly string[] AllFlags = ["avx2", "avx512f", "avx512_bf16", "amx_bf16", "avx512_fp16", "amx_fp16"];

    /// <summary>Every subset of the flags that matter, on the CPU, and GPUs of each generation.</summary>
    public static TheoryData<string> FlagSets() => [.. Enumerable.Range(0, 1 << AllFlags.Length).Select(m => string.Join(' ', AllFlags.Where((_, i) => (m >> i & 1) == 1)))];

    [Theory]
    [MemberData(nameof(FlagSets))]
    public void Auto_never_chooses_an_emulated_path(string flags)
    {
        var hw = HardwareSupport.FromFlags(flags.Split(' ', StringSplitOptions.RemoveEmptyEntries));
        foreach (bool training in new[] { true, false })
        {
            var cpu = PrecisionPolicy.Resolve(Precision.Auto, DeviceType.CPU, hw, training);
            Assert.True(cpu.Native, $"[{flags}] auto chose {cpu.Name}, which this CPU emulates");
            Assert.Null(cpu.Warning);
            // bf16 exactly when the CPU has bf16 dot products; never fp16 on a CPU (bf16 has fp32's range, no loss scaling).
            Assert.Equal(flags.Contains("bf16") ? Precision.Bf16 : Precision.Fp32, cpu.Chosen);
        }
    }

    [Fact]
    public void Explicit_bf16_or_fp16_on_a_cpu_without_them_runs_and_warns_with_the_measured_cost()
    {
        var avx2 = HardwareSupport.FromFlags(["avx2", "fma"], cpuModel: "AMD EPYC 7B13");
        var bf16 = PrecisionPolicy.Resolve(Precision.Bf16, DeviceType.CPU, avx2, training: true);
        Assert.Equal((Precision.Bf16, false, false), (bf16.Chosen, bf16.Native, bf16.LossScaling));
        Assert.Contains("AMD EPYC 7B13", bf16.Warning);
        Assert.Contains("no native bf16", bf16.Warning);
        Assert.Contains("slower than fp32", bf16.Warning);
        Assert.Contains("--precision fp32", bf16.Warning);
        var fp16 = PrecisionPolicy.Resolve(Precision.Fp16, DeviceType.CPU, avx2, training: true);
        Assert.Equal((Precision.Fp16, false, true), (fp16.Chosen, fp16.Native, fp16.LossScaling));
        Assert.False(PrecisionPolicy.Resolve(Precision.Fp16, DeviceType.CPU, avx2, training: false).LossScaling);

        var zen4 = HardwareSupport.FromFlags(["avx2", "avx512f", "avx512_bf16"]);
        var native = PrecisionPolicy.Resolve(Precision.Bf16, DeviceType.CPU, zen4, training: true);
        Assert.True(native.Native);
        Assert.Null(native.Warning);
        Assert.Equal(Precision.Fp32, PrecisionPolicy.Resolve(Precision.Fp32, DeviceType.CPU, zen4, training: true).Chosen);
    }

    [Fact]
    public void On_gpus_auto_follows_the_compute_capability_and_fp16_gets_loss_scaling()
    {
        HardwareSupport Gpu(string csv) => HardwareSupport.FromFlags(["avx2"], HardwareSupport.ParseNvidiaSmi(csv));
        var h200 = PrecisionPolicy.Resolve(Precision.Auto, DeviceType.CUDA, Gpu("NVIDIA H200, 9.0\n"), training: true);
        Assert.Equal((Precision.Bf16, true, false), (h200.Chosen, h200.Native, h200.LossScaling));
        var t4 = PrecisionPolicy.Resolve(Precision.Auto, DeviceType.CUDA, Gpu("Tesla T4, 7.5"), training: true);
        Assert.Equal((Precision.Fp16, true, true), (t4.Chosen, t4.Native, t4.LossScaling));
        Assert.False(PrecisionPolicy.Resolve(Precision.Auto, DeviceType.CUDA, Gpu("Tesla T4, 7.5"), training: false).LossScaling);
        Assert.Equal(Precision.Fp32, PrecisionPolicy.Resolve(Precision.Auto, DeviceType.CUDA, Gpu("Tesla P100, 6.0"), training: true).Chosen);
        Assert.Equal(Precision.Fp32, PrecisionPolicy.Resolve(Precision.Auto, DeviceType.CUDA, Gpu("Old GPU, [N/A]"), training: true).Chosen);
        var bf16OnT4 = PrecisionPolicy.Resolve(Precision.Bf16, DeviceType.CUDA, Gpu("Tesla T4, 7.5"), training: true);
        Assert.False(bf16OnT4.Native);
        Assert.Contains("no bf16 tensor cores", bf16OnT4.Warning);
        // The second GPU is the one asked for.
        var two = Gpu("Tesla T4, 7.5\nNVIDIA A100-SXM4-80GB, 8.0");
        Assert.Equal(2, two.Gpus.Count);
        Assert.Equal(new Version(8, 0), two.Gpus[1].ComputeCapability);
        Assert.Equal(Precision.Bf16, PrecisionPolicy.Resolve(Precision.Auto, DeviceType.CUDA, two, training: true, gpuIndex: 1).Chosen);
    }

    [Fact]
    public void Names_parse_and_a_warning_is_written_once_per_process()
    {
        Assert.Equal(Precision.Bf16, PrecisionPolicy.Parse("BFloat16"));
        Assert.Equal(Precision.Fp16, PrecisionPolicy.Parse("half"));
        Assert.Equal(Precision.Auto, PrecisionPolicy.Parse(" auto "));
        var e = Assert.Throws<ArgumentException>(() => PrecisionPolicy.Parse("fp8"));
        Assert.Contains("'fp8' is unknown; use fp32, bf16, fp16 or auto", e.Message);
        var plan = new PrecisionPlan(Precision.Bf16, Precision.Bf16, false, false, "test", "a warning only this test writes " + Guid.NewGuid());
        var lines = new List<string>();
        PrecisionPolicy.Report(plan, lines.Add);
        PrecisionPolicy.Report(plan, lines.Add);
        Assert.Equal(2, lines.Count(l => l.StartsWith("precision: bf16")));
        Assert.Single(lines, l => l.StartsWith("warning: "));
    }

    static TransformerModel Tiny(string family, int seed = 1)
    {
        torch.manual_seed(seed);
        var config = new TransformerConfig
        {
            ModelType = family, VocabSize = 200, HiddenSize = 32, NumHiddenLayers = 2, NumAttentionHeads = 2, IntermediateSize = 64,
            HiddenDropoutProb = 0, AttentionProbsDropoutProb = 0, MaxPositionEmbeddings = 64,
        };
        var model = TransformerModels.Build(config, null, ModelFamily.Get(family), Application.MaskedLM, new BuildOptions { Device = CPU }, out _);
        model.eval();
        return model;
    }

    [Theory]
    [InlineData("bert", ScalarType.BFloat16)]
    [InlineData("roformer_v2", ScalarType.BFloat16)]
    [InlineData("nezha", ScalarType.Float16)]
    public void A_16_bit_model_speaks_fp32_at_the_encoder_seam_and_stays_close_to_fp32(string family, ScalarType type)
    {
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        var reference = Tiny(family);
        var half = Tiny(family);
        half.to(type);
        var ids = torch.tensor(new long[] { 2, 15, 27, 33, 48, 3, 0, 0, 2, 99, 101, 7, 8, 9, 10, 3 }, [2, 8]);
        var mask = ids.ne(0).to(ScalarType.Int64);
        var expected = reference.Encode(ids, null, mask, outputHiddenStates: true);
        var actual = half.Encode(ids, null, mask, outputHiddenStates: true);
        Assert.Equal(ScalarType.Float32, actual.LastHiddenState.dtype);
        Assert.All(actual.HiddenStates!, h => Assert.Equal(ScalarType.Float32, h.dtype));
        Assert.Same(actual.HiddenStates![^1], actual.LastHiddenState);
        // bf16 keeps 8 mantissa bits (relative step 2⁻⁸ ≈ 0.4 %), fp16 11; two blocks of rounding on layer-normed
        // states of size ~1: 0.1 absolute + 5 % relative is loose for fp16 and still fails for a wrong model.
        var keep = mask.to(ScalarType.Bool).unsqueeze(-1);
        Close.Assert(actual.LastHiddenState.masked_select(keep), expected.LastHiddenState.masked_select(keep), $"{family} {type} vs fp32 hidden states", atol: 0.1, rtol: 0.05);
        // The logits leave through the fill-mask seam in fp32 too.
        var pipelineLogits = PrecisionPolicy.Fp32Handle(half.forward(ids, null, mask).Logits!);
        Assert.Equal(ScalarType.Float32, pipelineLogits.dtype);
    }

    [Fact]
    public void A_fully_masked_row_in_fp16_stays_finite_because_scores_are_widened_before_the_mask()
    {
        // bert4keras's lesson: its mask value 1e12 overflows float16 (max 65,504), hence set_infinity. Here the mask is
        // fp16's most negative finite value; scores −100 plus that overflow to −∞ in fp16, and a row of −∞ is NaN after softmax.
        using var scope = torch.NewDisposeScope();
        var q = torch.full(1, 1, 2, 4, 5.0).to(ScalarType.Float16);
        var k = torch.full(1, 1, 3, 4, -5.0).to(ScalarType.Float16);                        // q·k = −100
        var v = torch.arange(12, dtype: ScalarType.Float32).reshape(1, 1, 3, 4).to(ScalarType.Float16);
        var allowed = torch.tensor(new[] { true, true, true, false, false, false }, [1, 1, 2, 3]);   // row 2 sees nothing
        var mask = AttentionMasks.Additive(allowed, ScalarType.Float16);
        var call = new AttentionCall { Query = q, Key = k, Value = v, Mask = mask, Scale = 1, KeepScores = true };    // KeepScores: the explicit path
        var o = new SoftmaxKernel().Attend(call);
        Assert.Equal(ScalarType.Float16, o.dtype);
        Assert.True(torch.isfinite(o).all().ToBoolean(), "a fully masked fp16 row became NaN");
        var naive = ((q.matmul(k.transpose(-1, -2)) + mask).softmax(-1)).matmul(v);          // the same in fp16 throughout
        Assert.False(torch.isfinite(naive).all().ToBoolean(), "the naive fp16 path no longer overflows: this test lost its point");
        Close.Assert(o[0, 0, 0].to(ScalarType.Float32), v[0, 0].to(ScalarType.Float32).mean([0]), "visible row: uniform weights over equal scores", atol: 1e-3, rtol: 1e-3);
    }

    [Fact]
    public void Norms_of_16_bit_inputs_are_computed_in_fp32_and_rounded_once()
    {
        using var scope = torch.NewDisposeScope();
        torch.manual_seed(4);
        var x = (torch.randn(3, 5, 64) * 30 + 100).to(ScalarType.BFloat16);                  // a large mean: where a bf16 mean of squares loses digits
        foreach (var kind in new[] { NormKind.LayerNorm, NormKind.ScaleFree, NormKind.Rms })
        {
            var norm = new Norm(64, kind, 1e-6);
            var expected = norm.forward(x.to(ScalarType.Float32)).to(ScalarType.BFloat16);
            norm.to(ScalarType.BFloat16);
            var actual = norm.forward(x);
            Assert.Equal(ScalarType.BFloat16, actual.dtype);
            Close.Assert(actual.to(ScalarType.Float32), expected.to(ScalarType.Float32), $"{kind} of bf16 input vs fp32 rounded once", atol: 0, rtol: 0);
        }
    }

    List<PretrainingSequence> Data() => TrainerTests.Sequences(32, 3);

    (TrainingResult Result, TransformerModel Model, Adam Optimizer) Fit(Precision precision, string output, long steps, bool resume = false)
    {
        var tokenizer = TrainerTests.Tokenizer(dir);
        var mlm = new MaskedLanguageModeling(tokenizer);
        var model = TrainerTests.TinyRoFormerV2(5, dropout: 0);
        var plan = PrecisionPolicy.Resolve(precision, DeviceType.CPU, HardwareSupport.FromFlags(["avx2", "avx512_bf16", "avx512_fp16"]), training: true);
        plan.Apply(model);
        var optimizer = new Adam(model.named_parameters().Select(p => (p.name, p.parameter)), new OptimizerOptions
        {
            LearningRate = 3e-3, LossScaling = plan.LossScaling ? new DynamicLossScale(InitialScale: 1024) : null,
        });
        var trainer = new Trainer<PretrainingSequence>(model, optimizer, (b, ctx) => mlm.Step(model, b, ctx), new TrainerOptions
        {
            MaxSteps = steps, Epochs = 10, Batching = new BatchingOptions { BatchSize = 8 }, Seed = 7, OutputDirectory = output, Resume = resume,
            CheckpointEverySteps = 2, Progress = ProgressDisplay.None, Precision = plan,
        });
        return (trainer.Fit(Data(), null, TestContext.Current.CancellationToken), model, optimizer);
    }

    [Fact]
    public void Bf16_and_fp16_training_keep_fp32_masters_follow_the_fp32_losses_and_resume_only_in_their_precision()
    {
        var (fp32, _, o32) = Fit(Precision.Fp32, Path.Combine(dir, "fp32"), 6);
        var (bf16, bModel, o16) = Fit(Precision.Bf16, Path.Combine(dir, "bf16"), 6);
        Assert.Equal(Precision.Bf16, PrecisionPolicy.Of(bModel));
        // Masters and moments in fp32, parameters the rounded copies.
        var state = o16.StateDict();
        var master = state.Where(kv => kv.Key.EndsWith("/master")).ToList();
        Assert.Equal(bModel.parameters().Count(), master.Count);
        Assert.All(master, kv => Assert.Equal(ScalarType.Float32, kv.Value.dtype));
        foreach (var (name, p) in bModel.named_parameters())
            Close.Assert(p.to(ScalarType.Float32), state[name + "/master"].to(ScalarType.BFloat16).to(ScalarType.Float32), $"{name} is its master rounded", atol: 0, rtol: 0);
        // The same losses as fp32 within bf16's rounding (8 mantissa bits over a few steps), falling like them.
        Close.Assert(bf16.Losses.ToArray(), fp32.Losses.ToArray(), "bf16 vs fp32 losses", atol: 0.05, rtol: 0.02);
        var (fp16, _, o16b) = Fit(Precision.Fp16, Path.Combine(dir, "fp16"), 6);
        Assert.NotNull(o16b.Options.LossScaling);
        Assert.All(fp16.Losses, l => Assert.True(double.IsFinite(l)));
        Close.Assert(fp16.Losses.ToArray(), fp32.Losses.ToArray(), "fp16 (loss-scaled) vs fp32 losses", atol: 0.05, rtol: 0.02);
        o32.Dispose(); o16.Dispose(); o16b.Dispose();

        // A bf16 checkpoint resumes in bf16 (exactly: masters and moments are in it) and is refused by an fp32 run.
        var (full, fullModel, o1) = Fit(Precision.Bf16, Path.Combine(dir, "full"), 6);
        Fit(Precision.Bf16, Path.Combine(dir, "cut"), 4).Optimizer.Dispose();
        var (resumed, resumedModel, o2) = Fit(Precision.Bf16, Path.Combine(dir, "cut"), 6, resume: true);
        Close.Assert(resumed.Losses.ToArray(), full.Losses.Skip(4).ToArray(), "bf16 resumed vs uninterrupted losses", atol: 1e-6, rtol: 0);
        var want = fullModel.state_dict();
        foreach (var (name, t) in resumedModel.state_dict()) Close.Assert(t.to(ScalarType.Float32), want[name].to(ScalarType.Float32), $"{name} resumed vs uninterrupted", atol: 0, rtol: 0);
        var e = Assert.Throws<CheckpointFormatException>(() => Fit(Precision.Fp32, Path.Combine(dir, "cut"), 8, resume: true));
        Assert.Contains("trained in bf16 but this run computes in fp32: resume with --precision bf16", e.Message);
        o1.Dispose(); o2.Dispose();
    }

    [Fact]
    public void The_trainer_refuses_a_plan_the_model_was_not_converted_to()
    {
        var model = TrainerTests.TinyRoFormerV2(5, dropout: 0);
        using var optimizer = new Adam(model.named_parameters().Select(p => (p.name, p.parameter)), new OptimizerOptions());
        var plan = PrecisionPolicy.Resolve(Precision.Bf16, DeviceType.CPU, HardwareSupport.FromFlags(["avx512_bf16"]), training: true);
        var mlm = new MaskedLanguageModeling(TrainerTests.Tokenizer(dir));
        var trainer = new Trainer<PretrainingSequence>(model, optimizer, (b, ctx) => mlm.Step(model, b, ctx), new TrainerOptions { Progress = ProgressDisplay.None, Precision = plan });
        var e = Assert.Throws<ArgumentException>(() => trainer.Fit(Data(), null, TestContext.Current.CancellationToken));
        Assert.Contains("TrainerOptions.Precision is bf16 but the model's parameters are fp32: call plan.Apply(model)", e.Message);
    }

    [Fact]
    public void The_cli_reports_auto_s_choice_on_either_kind_of_cpu_and_warns_for_emulated_bf16()
    {
        TestPaths.WriteSyntheticVocabulary(Path.Combine(dir, "vocab.txt"));
        var rng = new Random(5);
        File.WriteAllLines(Path.Combine(dir, "corpus.txt"), Enumerable.Range(0, 200).Select(_ =>
            new string(Enumerable.Range(0, rng.Next(5, 25)).Select(_ => (char)(0x4E00 + rng.Next(0, 300))).ToArray())));
        string recipe = Path.Combine(dir, "pretrain.json");
        File.WriteAllText(recipe, """
            { "family": "roformer_v2", "config": { "hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64 },
              "vocab": "vocab.txt", "corpus": [ { "file": "corpus.txt" } ], "held_out": 16, "max_length": 32, "whole_word_masking": false,
              "batch_size": 8, "max_steps": 2, "eval_every": 1000, "log_every": 1, "output": "out" }
            """);
        (int, string, string) Run(string flags, params string[] extra) =>
            CliTests.B4sWith(new Dictionary<string, string> { [HardwareSupport.CpuFlagsVariable] = flags, ["OMP_NUM_THREADS"] = "1" }, ["pretrain", recipe, "--overwrite", .. extra]);

        var (c1, out1, err1) = Run("avx2 fma", "--precision", "auto");
        Assert.True(c1 == 0, err1);
        Assert.Contains("precision: fp32 — auto chose fp32: this CPU", out1);
        var (c2, out2, err2) = Run("avx2 avx512f avx512_bf16", "--precision", "auto");
        Assert.True(c2 == 0, err2);
        Assert.Contains("precision: bf16 — auto chose bf16: this CPU has native bf16 (avx512_bf16)", out2);
        var (c3, out3, err3) = Run("avx2 fma", "--precision", "bf16");
        Assert.True(c3 == 0, err3);
        Assert.Equal(1, out3.Split('\n').Count(l => l.Contains("warning: this CPU") && l.Contains("has no native bf16")));
        Assert.Contains("held-out MLM accuracy", out3);
        // The model saved from a bf16 run loads and encodes in fp32.
        var (c4, out4, err4) = CliTests.B4s("encode", "--model", Path.Combine(dir, "out", "model"), "--json", "一丁");
        Assert.True(c4 == 0, err4);
        Assert.Contains("\"mean\"", out4);
        var (c5, _, err5) = Run("avx2", "--precision", "fp8");
        Assert.Equal(1, c5);
        Assert.Contains("'precision': precision 'fp8' is unknown; use fp32, bf16, fp16 or auto", err5);
    }
}
