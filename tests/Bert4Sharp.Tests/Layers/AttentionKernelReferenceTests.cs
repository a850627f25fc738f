namespace Bert4Sharp.Tests.Layers;

using System.Text.Json;
using Bert4Sharp.Layers;
using TorchSharp;
using static TorchSharp.torch;

/// <summary>
/// The research attention kernels (linear, Performer, Nyströmformer, Synthesizer, FLASH), ALiBi, 2D RoPE and the GELU
/// approximations against tests/reference/make_attention_refs.py: float64 ports of each paper's / official code's
/// formulas (no Bert4Sharp code involved), fixtures in tests/fixtures/attention. Kernels with parameters are moved to
/// float64 and get the fixture's parameters copied in; every comparison runs in float64 with <see cref="Close"/>'s float64
/// defaults unless it says otherwise. A float32 run of each kernel is compared at float32-sized bounds.
/// </summary>
public sealed class AttentionKernelReferenceTests
{
    const int Heads = 2, KeySize = 8;
    static readonly KernelShape Shape = new(Heads, KeySize, KeySize);
    static readonly Dictionary<string, JsonElement> Files = [];

    static JsonElement Fixture(string file)
    {
        lock (Files)
        {
            if (!Files.TryGetValue(file, out var root))
                Files[file] = root = JsonDocument.Parse(File.ReadAllText(TestPaths.Fixture("attention", file))).RootElement;
            return root;
        }
    }

    static JsonElement Case(string file, string name) =>
        Fixture(file).GetProperty("cases").EnumerateArray().Single(c => c.GetProperty("name").GetString() == name);

    static IEnumerable<TheoryDataRow<string>> Names(string file) =>
        Fixture(file).GetProperty("cases").EnumerateArray().Select(c => new TheoryDataRow<string>(c.GetProperty("name").GetString()!));

    public static IEnumerable<TheoryDataRow<string>> LinearCases() => Names("linear.json");
    public static IEnumerable<TheoryDataRow<string>> PerformerCases() => Names("performer.json");
    public static IEnumerable<TheoryDataRow<string>> NystromCases() => Names("nystrom.json");
    public static IEnumerable<TheoryDataRow<string>> SynthesizerCases() => Names("synthesizer.json");
    public static IEnumerable<TheoryDataRow<string>> FlashCases() => Names("flash.json");
    public static IEnumerable<TheoryDataRow<string>> RelativeCases() => Names("relative.json");

    /// <summary>{"shape": [...], "data": [...]} as a float64 tensor.</summary>
    static Tensor Read(JsonElement e)
    {
        long[] shape = [.. e.GetProperty("shape").EnumerateArray().Select(x => x.GetInt64())];
        double[] data = [.. e.GetProperty("data").EnumerateArray().Select(x => x.GetDouble())];
        return torch.tensor(data, dtype: ScalarType.Float64).reshape(shape);
    }

    static Tensor Input(string file, string name) => Read(Fixture(file).GetProperty("inputs").GetProperty(name));

    static Tensor? KeyMask(JsonElement c) =>
        c.TryGetProperty("key_mask", out var m) && m.ValueKind != JsonValueKind.Null ? Read(m) : null;

    static double Scale(string file) => Fixture(file).GetProperty("scale").GetDouble();

    /// <summary>
    /// The call a layer would make: queries from position <paramref name="qFrom"/> on; key padding as an additive (B, 1, 1, Tk)
    /// mask, or, causal, the causal mask over the cache (and the padding) as (B or 1, 1, Tq, Tk).
    /// </summary>
    static AttentionCall Call(Tensor q, Tensor k, Tensor v, double scale, Tensor? keyMask, bool causal, long qFrom = 0)
    {
        long tq = q.shape[2], tk = k.shape[2];
        Tensor? mask = null;
        if (causal)
        {
            var allowed = AttentionMasks.Causal(tq, tk - tq, CPU).unsqueeze(0).unsqueeze(0);                     // (1, 1, Tq, Tk)
            if (keyMask is not null) allowed = allowed.logical_and(keyMask.to(ScalarType.Bool).unsqueeze(1).unsqueeze(1));
            mask = AttentionMasks.Additive(allowed, q.dtype);
        }
        else if (keyMask is not null) mask = AttentionMasks.Padding(keyMask, q.dtype);
        Assert.Equal(tk - tq, qFrom);
        return new AttentionCall { Query = q, Key = k, Value = v, Scale = scale, Mask = mask, Causal = causal, MaskIsCausal = causal && keyMask is null && tq == tk };
    }

    /// <summary>Copies fixture values into a module's named parameters (the module already float64).</summary>
    static void CopyParameters(nn.Module module, Func<string, Tensor> values)
    {
        using var _ = torch.no_grad();
        foreach (var (name, p) in module.named_parameters())
        {
            Assert.Equal(ScalarType.Float64, p.dtype);
            using var v = values(name);
            Assert.Equal(p.shape, v.shape);
            p.copy_(v);
        }
    }

    // ----- linear attention -----------------------------------------------------------------------------------------

    [Theory]
    [MemberData(nameof(LinearCases))]
    public void LinearMatchesTheReference(string name)
    {
        using var scope = torch.NewDisposeScope();
        var c = Case("linear.json", name);
        bool causal = c.GetProperty("causal").GetBoolean();
        long qFrom = c.GetProperty("q_from").GetInt64();
        var (q, k, v) = (Input("linear.json", "q"), Input("linear.json", "k"), Input("linear.json", "v"));
        q = q.narrow(2, qFrom, q.shape[2] - qFrom);
        var expected = Read(c.GetProperty("expected"));
        var keyMask = KeyMask(c);
        // The shared instance (chunks of 128: one chunk) and chunked prefix sums that cut T in uneven pieces.
        foreach (var (label, kernel) in new[] { ("factory", AttentionKernelFactory.Create("linear", null, Shape)), ("chunk 5", new LinearKernel(5)), ("chunk 3", new LinearKernel(3)) })
        {
            var call = Call(q, k, v, 1 / Math.Sqrt(KeySize), keyMask, causal, qFrom);
            Close.Assert(kernel.Attend(call), expected, $"linear {name} ({label})");
        }
        if (causal && keyMask is null)
        {
            // Causal without a mask: the flag alone says so.
            var bare = new AttentionCall { Query = q, Key = k, Value = v, Causal = true };
            Close.Assert(new LinearKernel(5).Attend(bare), expected, $"linear {name} (Causal flag, no mask)");
        }
    }

    // ----- Performer ------------------------------------------------------------------------------------------------

    static PerformerKernel Performer(int features, Tensor? projection, int chunk = 128, long seed = 7)
    {
        var options = new AttentionKernelOptions { Features = features, ChunkSize = chunk, Seed = seed };
        var kernel = (PerformerKernel)AttentionKernelFactory.Create("performer", options, Shape);
        kernel.eval();
        if (projection is not null)
        {
            kernel.to(ScalarType.Float64);
            CopyParameters(kernel, n => n == "projection" ? projection.clone() : throw new InvalidOperationException($"unexpected parameter {n}"));
            Close.Assert(kernel.Projection, projection, "projection copied into the kernel");
        }
        return kernel;
    }

    [Theory]
    [MemberData(nameof(PerformerCases))]
    public void PerformerMatchesTheReferenceWithTheGivenProjection(string name)
    {
        using var scope = torch.NewDisposeScope();
        const string F = "performer.json";
        var c = Case(F, name);
        bool causal = c.GetProperty("causal").GetBoolean();
        long qFrom = c.GetProperty("q_from").GetInt64();
        var q = Input(F, "q");
        q = q.narrow(2, qFrom, q.shape[2] - qFrom);
        var expected = Read(c.GetProperty("expected"));
        foreach (int chunk in new[] { 128, 5 })
        {
            using var kernel = Performer(16, Input(F, "projection"), chunk);
            var call = Call(q, Input(F, "k"), Input(F, "v"), Scale(F), KeyMask(c), causal, qFrom);
            Close.Assert(kernel.Attend(call), expected, $"performer {name} (chunk {chunk})");
        }
    }

    [Fact]
    public void PerformerWithManyFeaturesApproachesSoftmax()
    {
        using var scope = torch.NewDisposeScope();
        var m = Fixture("performer.json").GetProperty("many_features");
        var (q, k, v, projection) = (Read(m.GetProperty("q")), Read(m.GetProperty("k")), Read(m.GetProperty("v")), Read(m.GetProperty("projection")));
        var (favor, softmax) = (Read(m.GetProperty("expected")), Read(m.GetProperty("softmax")));
        double scale = Scale("performer.json");
        using var given = Performer((int)projection.shape[0], projection);
        var call = new AttentionCall { Query = q, Key = k, Value = v, Scale = scale };
        var output = given.Attend(call);
        Close.Assert(output, favor, "performer, m = 4096, given projection");
        // Exact softmax is what FAVOR+ estimates: with 4,096 random features the reference lands 0.055 from it at worst
        // (outputs of size ≤ 0.8); the bound leaves room for another draw, but not for a wrong formula (measured on these
        // inputs and this projection: scale instead of √scale on q and k 0.17 away, no √scale 0.39, no ‖x‖²/2 0.22).
        const double ApproxAtol = 0.1, ApproxRtol = 0.05;
        Close.Assert(output, softmax, "performer, m = 4096, given projection vs exact softmax", atol: ApproxAtol, rtol: ApproxRtol);
        Close.Assert(AttentionKernels.Softmax.Attend(call), softmax, "exact softmax kernel vs reference softmax");
        // The kernel's own orthogonal draw (seeded) estimates softmax as well.
        using var drawn = Performer(4096, null, seed: 11);
        using var cast = q.to(ScalarType.Float32);
        var own = drawn.Attend(new AttentionCall { Query = cast, Key = k.to(ScalarType.Float32), Value = v.to(ScalarType.Float32), Scale = scale });
        Close.Assert(own.to(ScalarType.Float64), softmax, "performer, m = 4096, own draw vs exact softmax", atol: ApproxAtol, rtol: ApproxRtol);
    }

    [Fact]
    public void PerformerOutputOfRealTokensIgnoresWhatThePaddingHolds()
    {
        using var scope = torch.NewDisposeScope();
        const string F = "performer.json";
        var keyMask = KeyMask(Case(F, "noncausal_padded"))!;
        using var kernel = Performer(16, Input(F, "projection"));
        var (q, k, v) = (Input(F, "q"), Input(F, "k"), Input(F, "v"));
        var a = kernel.Attend(Call(q, k, v, Scale(F), keyMask, false));
        var pad = (1 - keyMask).unsqueeze(1).unsqueeze(-1);                                                    // (B, 1, T, 1)
        var b = kernel.Attend(Call(q, k + 5 * pad, v - 3 * pad, Scale(F), keyMask, false));
        Close.Assert(b, a, "performer with other padding content");
    }

    // ----- Nyströmformer --------------------------------------------------------------------------------------------

    [Theory]
    [MemberData(nameof(NystromCases))]
    public void NystromMatchesTheReference(string name)
    {
        using var scope = torch.NewDisposeScope();
        const string F = "nystrom.json";
        var c = Case(F, name);
        var options = new AttentionKernelOptions
        {
            Landmarks = c.GetProperty("landmarks").GetInt32(),
            ConvKernel = c.GetProperty("conv_kernel").GetInt32(),
            PinvIterations = Fixture(F).GetProperty("pinv_iterations").GetInt32(),
        };
        using var kernel = (NystromKernel)AttentionKernelFactory.Create("nystrom", options, Shape);
        kernel.to(ScalarType.Float64);
        CopyParameters(kernel, n => n == "conv.weight" ? Input(F, "conv_weight") : throw new InvalidOperationException($"unexpected parameter {n}"));
        Assert.Equal(options.ConvKernel > 0 ? 1 : 0, kernel.parameters().Count());
        var call = Call(Input(F, "q"), Input(F, "k"), Input(F, "v"), Scale(F), KeyMask(c), false);
        Close.Assert(kernel.Attend(call), Read(c.GetProperty("expected")), $"nystrom {name}");
    }

    [Fact]
    public void NystromSegmentMeansMatchTheReference()
    {
        using var scope = torch.NewDisposeScope();
        foreach (var m in Fixture("nystrom.json").GetProperty("segment_means").EnumerateArray())
        {
            long t = m.GetProperty("t").GetInt64();
            int l = m.GetProperty("l").GetInt32();
            // Entries 1/n to float64 round-off (the fixture keeps 13 digits): float32 entries (off by up to 1e-8) made a float64
            // kernel's landmarks, and so its output, float32-accurate.
            Close.Assert(NystromKernel.SegmentMeans(t, l, CPU, ScalarType.Float64), Read(m.GetProperty("expected")), $"segment means T = {t}, L = {l}",
                atol: 1e-13, rtol: 1e-12);
        }
    }

    // ----- Synthesizer ----------------------------------------------------------------------------------------------

    static SynthesizerKernel Synthesizer(JsonElement c, ScalarType dtype)
    {
        var root = Fixture("synthesizer.json");
        string[] parts = [.. c.GetProperty("parts").EnumerateArray().Select(p => p.GetString()!)];
        double[] mix = [.. c.GetProperty("mix").EnumerateArray().Select(p => p.GetDouble())];
        var options = new AttentionKernelOptions { MaxLength = root.GetProperty("max_length").GetInt32(), Rank = root.GetProperty("rank").GetInt32(), Components = parts, Seed = 3 };
        string kernelName = c.GetProperty("kernel").GetString()!;
        var kernel = (SynthesizerKernel)AttentionKernelFactory.Create(kernelName.StartsWith("synthesizer_", StringComparison.Ordinal) ? kernelName : "synthesizer_mixture", options, Shape);
        kernel.eval();
        kernel.to(ScalarType.Float64);
        CopyParameters(kernel, n => n == "mix" ? torch.tensor(mix, dtype: ScalarType.Float64) : Read(root.GetProperty("parameters").GetProperty(n)));
        Assert.Equal(parts.Length > 1, kernel.Mix is not null);
        kernel.to(dtype);
        return kernel;
    }

    static AttentionCall SynthesizerCall(JsonElement c, ScalarType dtype)
    {
        const string F = "synthesizer.json";
        var (q, k, v) = (Input(F, "q").to(dtype), Input(F, "k").to(dtype), Input(F, "v").to(dtype));
        long qFrom = c.GetProperty("q_from").GetInt64();
        q = q.narrow(2, qFrom, q.shape[2] - qFrom);
        var keyMask = Read(Fixture(F).GetProperty("key_mask"));
        return c.GetProperty("mask").GetString() switch
        {
            "full" => new AttentionCall { Query = q, Key = k, Value = v, Scale = Scale(F) },
            "padded" => Call(q, k, v, Scale(F), keyMask, false),
            _ => Call(q, k, v, Scale(F), keyMask, true, qFrom),
        };
    }

    [Theory]
    [MemberData(nameof(SynthesizerCases))]
    public void SynthesizerMatchesTheReference(string name)
    {
        using var scope = torch.NewDisposeScope();
        var c = Case("synthesizer.json", name);
        using var kernel = Synthesizer(c, ScalarType.Float64);
        Close.Assert(kernel.Attend(SynthesizerCall(c, ScalarType.Float64)), Read(c.GetProperty("expected")), $"synthesizer {name}");
    }

    // ----- FLASH ----------------------------------------------------------------------------------------------------

    [Theory]
    [MemberData(nameof(FlashCases))]
    public void FlashMatchesTheReference(string name)
    {
        using var scope = torch.NewDisposeScope();
        const string F = "flash.json";
        var c = Case(F, name);
        var kernel = AttentionKernelFactory.Create("flash", new AttentionKernelOptions { ChunkSize = c.GetProperty("chunk").GetInt32() }, Shape);
        var call = Call(Input(F, "q"), Input(F, "k"), Input(F, "v"), Scale(F), KeyMask(c), c.GetProperty("causal").GetBoolean());
        Close.Assert(kernel.Attend(call), Read(c.GetProperty("expected")), $"flash {name}");
    }

    // ----- float32 --------------------------------------------------------------------------------------------------

    public static IEnumerable<TheoryDataRow<string, string>> Float32Cases() =>
    [
        new("linear.json", "causal_cache_left_padded"), new("performer.json", "causal_padded"), new("nystrom.json", "L5_padded"),
        new("synthesizer.json", "dense+softmax/offset_causal_padded"), new("flash.json", "C5_causal_padded"),
    ];

    /// <summary>
    /// Each kernel in float32 (what models run) against the float64 reference: inputs and parameters rounded to float32
    /// (relative 6e-8) and float32 arithmetic over sums of ≤ 16·8 terms and, for Nyström, six pseudo-inverse iterations.
    /// Measured worst |diff| is about 1e-6 on outputs of size ≤ 3; atol 2e-5 and rtol 1e-4 leave a wide margin yet
    /// catch any formula slip (which moves outputs by 1e-3 or more).
    /// </summary>
    [Theory]
    [MemberData(nameof(Float32Cases))]
    public void Float32KernelsStayCloseToTheReference(string file, string name)
    {
        using var scope = torch.NewDisposeScope();
        var c = Case(file, name);
        var f32 = ScalarType.Float32;
        var expected = Read(c.GetProperty("expected"));
        Tensor output;
        if (file == "synthesizer.json")
        {
            using var kernel = Synthesizer(c, f32);
            output = kernel.Attend(SynthesizerCall(c, f32));
        }
        else
        {
            var (q, k, v) = (Input(file, "q").to(f32), Input(file, "k").to(f32), Input(file, "v").to(f32));
            long qFrom = c.TryGetProperty("q_from", out var qf) ? qf.GetInt64() : 0;
            q = q.narrow(2, qFrom, q.shape[2] - qFrom);
            bool causal = c.TryGetProperty("causal", out var cp) && cp.GetBoolean();
            var call = Call(q, k, v, file == "linear.json" ? 1 / Math.Sqrt(KeySize) : Scale(file), KeyMask(c), causal, qFrom);
            IAttentionKernel kernel = file switch
            {
                "linear.json" => new LinearKernel(5),
                "performer.json" => Performer(16, Input(file, "projection"), 5),
                "flash.json" => AttentionKernelFactory.Create("flash", new AttentionKernelOptions { ChunkSize = c.GetProperty("chunk").GetInt32() }, Shape),
                _ => AttentionKernelFactory.Create("nystrom", new AttentionKernelOptions { Landmarks = c.GetProperty("landmarks").GetInt32(), ConvKernel = c.GetProperty("conv_kernel").GetInt32() }, Shape),
            };
            if (kernel is NystromKernel nystrom)
            {
                nystrom.to(ScalarType.Float64);
                CopyParameters(nystrom, _ => Input(file, "conv_weight"));
            }
            if (kernel is nn.Module module) module.to(f32);                                                     // Performer: the given projection, rounded
            output = kernel.Attend(call);
        }
        Assert.Equal(f32, output.dtype);
        Close.Assert(output.to(ScalarType.Float64), expected, $"{file} {name} in float32", atol: 2e-5, rtol: 1e-4);
    }

    // ----- positions ------------------------------------------------------------------------------------------------

    [Fact]
    public void AlibiSlopesAndBiasMatchTheReference()
    {
        using var scope = torch.NewDisposeScope();
        var root = Fixture("positions.json");
        foreach (var s in root.GetProperty("alibi_slopes").EnumerateObject())
        {
            double[] expected = [.. s.Value.EnumerateArray().Select(x => x.GetDouble())];
            Close.Assert(PositionContext.AlibiSlopes(int.Parse(s.Name, System.Globalization.CultureInfo.InvariantCulture)), expected, $"ALiBi slopes for {s.Name} heads");
        }
        foreach (var b in root.GetProperty("alibi_bias").EnumerateArray())
        {
            int heads = b.GetProperty("heads").GetInt32();
            long length = b.GetProperty("length").GetInt64(), past = b.GetProperty("past").GetInt64();
            using var ctx = new PositionContext(length, past, CPU, ScalarType.Float64);
            Close.Assert(ctx.Alibi(heads), Read(b.GetProperty("expected")), $"ALiBi bias, {heads} heads, {length} queries after {past}");
        }
    }

    [Fact]
    public void Rotary2DScoresMatchTheReference()
    {
        using var scope = torch.NewDisposeScope();
        var r = Fixture("positions.json").GetProperty("rope2d");
        long dim = r.GetProperty("dim").GetInt64();
        var ids = Read(r.GetProperty("position_ids")).to(ScalarType.Int64);                                   // (B, T, 2)
        var (q, k) = (Read(r.GetProperty("q")), Read(r.GetProperty("k")));
        using var ctx = new PositionContext(ids.shape[1], 0, CPU, ScalarType.Float64) { PositionIds = ids };
        var (sin, cos) = ctx.Rotary2D(dim);
        var (qr, kr) = (RotaryEmbedding.Apply(q, sin, cos), RotaryEmbedding.Apply(k, sin, cos));
        Close.Assert(qr, Read(r.GetProperty("q_rotated")), "2D RoPE rotated queries");
        Close.Assert(kr, Read(r.GetProperty("k_rotated")), "2D RoPE rotated keys");
        var scores = qr.matmul(kr.transpose(-1, -2));
        // The reference scores come from the relative form, a function of (Δrow, Δcolumn) only.
        Close.Assert(scores, Read(r.GetProperty("scores")), "2D RoPE scores vs the relative form");
        // Both sequences hold the same content, the second on a grid shifted by (2, 5) (token 5 of the first moved away).
        var keep = torch.tensor(Enumerable.Range(0, (int)ids.shape[1]).Where(i => i != 5).Select(i => (long)i).ToArray());
        Close.Assert(scores[1].index_select(1, keep).index_select(2, keep), scores[0].index_select(1, keep).index_select(2, keep), "2D RoPE scores under a shift",
            atol: 1e-12, rtol: 1e-12);
    }

    /// <summary>
    /// Transformer-XL (causal, with a memory), XLNet (bidirectional, padded) and DeBERTa-v2 (clipped span, padded): the
    /// score bias of <see cref="XlRelativePosition"/> / <see cref="DisentangledAttention"/> and the softmax attention
    /// with it, against the official formulations (XL's _rel_shift, XLNet's rel_shift_bnij, Hugging Face's gathers).
    /// </summary>
    [Theory]
    [MemberData(nameof(RelativeCases))]
    public void RelativePositionsMatchTheReference(string name)
    {
        using var scope = torch.NewDisposeScope();
        var c = Case("relative.json", name);
        var (q, k, v) = (Read(c.GetProperty("q")), Read(c.GetProperty("k")), Read(c.GetProperty("v")));
        bool causal = c.GetProperty("causal").GetBoolean();
        long past = c.GetProperty("past").GetInt64(), tq = q.shape[2];
        var keyMask = KeyMask(c);
        using var positions = new PositionContext(tq, past, CPU, ScalarType.Float64);
        Tensor bias;
        double scale;
        if (c.GetProperty("scheme").GetString() == "xl")
        {
            scale = Scale("relative.json");
            var xl = new XlRelativePosition(Fixture("relative.json").GetProperty("width").GetInt32(), Heads, KeySize);
            xl.to(ScalarType.Float64);
            CopyParameters(xl, n => Read(c.GetProperty(n == "proj.weight" ? "proj" : n)));
            bias = xl.Bias(q, k, positions, scale);
        }
        else
        {
            int span = c.GetProperty("span").GetInt32();
            scale = 1 / Math.Sqrt(3.0 * KeySize);
            bias = DisentangledAttention.Bias(q, k, Read(c.GetProperty("relative_query")), Read(c.GetProperty("relative_key")), positions.DisentangledIndex(span), scale);
        }
        var mask = Call(q, k, v, scale, keyMask, causal, past).Mask;
        var call = new AttentionCall { Query = q, Key = k, Value = v, Scale = scale, Mask = mask, Causal = causal, PositionBias = bias };
        var visible = (mask is null ? torch.zeros_like(bias) : mask.expand(bias.shape)) == 0;
        Close.Assert(bias.masked_fill(visible.logical_not(), 0), Read(c.GetProperty("bias_masked")), $"{name}: score bias");
        Close.Assert(AttentionKernels.Softmax.Attend(call), Read(c.GetProperty("expected")), $"{name}: attention output");
    }

    // ----- GELU -----------------------------------------------------------------------------------------------------

    [Theory]
    [InlineData("gelu_new"), InlineData("gelu_sigmoid")]
    public void GeluApproximationErrorsMatchTheReference(string name)
    {
        using var scope = torch.NewDisposeScope();
        var root = Fixture("gelu.json");
        var grid = root.GetProperty("grid");
        var x = torch.arange(grid.GetProperty("from").GetInt64(), grid.GetProperty("to").GetInt64() + 1, dtype: ScalarType.Float64) / grid.GetProperty("divisor").GetDouble();
        var err = (Activations.Apply(name, x) - Activations.Apply("gelu", x)).abs();
        long at = err.argmax().item<long>();
        var expected = root.GetProperty("approximations").GetProperty(name);
        Close.Assert(err[at].item<double>(), expected.GetProperty("max_abs_error").GetDouble(), $"{name}: max |{name} − gelu|", atol: 1e-6, rtol: 1e-3);
        // The error is even in x (gelu(−x) = gelu(x) − x, the approximations alike), so compare |x|; two grid steps of room.
        Close.Assert(Math.Abs(x[at].item<double>()), expected.GetProperty("abs_at").GetDouble(), $"{name}: where the error peaks", atol: 2e-4, rtol: 0);
    }
}
