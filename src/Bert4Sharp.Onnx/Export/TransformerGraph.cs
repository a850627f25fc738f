namespace Bert4Sharp.Onnx.Export;

using Bert4Sharp.Layers;
using Bert4Sharp.Models;
using TorchSharp;
using static TorchSharp.torch;
using DataType = global::Onnx.TensorProto.Types.DataType;

/// <summary>
/// Writes a <see cref="TransformerModel"/> as an ONNX graph from its <see cref="ArchitectureOptions"/> and named
/// parameters, walking the options exactly as <see cref="TransformerModel.Forward(ModelInput)"/> does: embeddings →
/// blocks (post-, pre- or around-feed-forward norm; softmax, squared-ReLU or softmax_plus scores; rotary, NEZHA
/// relative or no positions inside attention; GAU-α units) → final norm → the application's heads. Inputs
/// <c>input_ids</c>, <c>attention_mask</c> (and <c>token_type_ids</c> when the model has segments), int64
/// (batch, sequence), both axes dynamic. What the model has that the graph cannot express is refused by name
/// (<see cref="Check"/>), never written wrongly.
/// </summary>
internal sealed partial class TransformerGraph
{
    readonly TransformerModel model;
    readonly ArchitectureOptions arch;
    readonly GraphWriter g;
    readonly OnnxExportOptions options;
    readonly Dictionary<string, Tensor> parameters;
    readonly Dictionary<long, (string Sin, string Cos)> rotary = [];
    readonly Dictionary<(long, int), string> relative = [];
    string positions = "", length = "", past = "";
    string? keyPadding;
    int layer;                                                                            // the block being written (its cache slot)
    readonly List<(string Key, string Value)> presents = [];

    TransformerGraph(TransformerModel model, GraphWriter g, OnnxExportOptions options)
    {
        this.model = model;
        arch = model.Architecture;
        this.g = g;
        this.options = options;
        parameters = model.named_parameters().ToDictionary(p => p.name, p => (Tensor)p.parameter);
        Cached = options.KeyValueCache && CanCache(model);
    }

    /// <summary>The graph takes and returns a key/value cache (<c>past_key_values.N.key</c> … → <c>present.N.key</c> …).</summary>
    bool Cached { get; set; }

    /// <summary>A classification head on the encoder (pooling + dense to the labels), written as the <c>logits</c> output; or null.</summary>
    public sealed record ClassifierHead(Tasks.Pooling Pooling, Tensor Weight, Tensor? Bias);

    ClassifierHead? head;

    /// <summary>T5's relative-position score bias (1, h, T, P + T) of the stack being written, or null.</summary>
    string? positionBias;

    /// <summary>
    /// Causal LM and UniLM graphs of families whose positions allow incremental decoding (as the TorchSharp model: not
    /// NEZHA's relative tables, GAU-α or RoBERTa's positions from padding) carry a key/value cache.
    /// </summary>
    public static bool CanCache(TransformerModel model) =>
        model.Application is Application.LanguageModel or Application.UniLM && model.Architecture.Gau is null
        && model.Architecture.Layer.Attention.Position != AttentionPosition.TypicalRelative && model.Architecture.Embeddings.PositionsFromPadding is null
        && !model.Architecture.ResidualAttentionScores;

    /// <summary>Throws <see cref="NotSupportedException"/> naming the first thing of <paramref name="model"/> the exporter cannot write.</summary>
    public static void Check(TransformerModel model)
    {
        var a = model.Architecture;
        string name = model.Family.Name;
        if (a.Layer.Condition is not null) throw new NotSupportedException($"{name}: conditional LayerNorm takes a condition input the exported graph does not have");
        var kernel = a.Gau?.Kernel ?? a.Layer.Attention.Kernel ?? AttentionKernels.Softmax;
        string? made = a.Gau is { } gau ? gau.KernelName : a.Layer.Attention.KernelName;
        if (made is not null || kernel is not (SoftmaxKernel or SquaredReluKernel or SoftmaxPlusKernel))
            throw new NotSupportedException($"{name}: the attention kernel '{made ?? kernel.Name}' has no ONNX form; the exporter writes softmax, squared_relu and softmax_plus");
        if (a.Layer.Attention.Position is AttentionPosition.Alibi or AttentionPosition.Rotary2D or AttentionPosition.XlRelative or AttentionPosition.Disentangled)
            throw new NotSupportedException($"{name}: the position scheme {a.Layer.Attention.Position} has no ONNX form here; the exporter writes absolute, rotary, NEZHA and T5 positions");
    }

    /// <summary>Writes the graph of <paramref name="model"/> (and <paramref name="head"/> on it) into <paramref name="g"/>; returns the output names written.</summary>
    public static IReadOnlyList<string> Write(TransformerModel model, GraphWriter g, OnnxExportOptions options, ClassifierHead? head = null)
    {
        Check(model);
        if (head is not null && model.Application != Application.Encoder) throw new NotSupportedException($"a classification head sits on an encoder, not on {model.Application}");
        if (head?.Pooling == Tasks.Pooling.FirstLastAverage) throw new NotSupportedException("first-last-average pooling reads every layer's states; export a classifier with first, cls, mean or max pooling");
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        return new TransformerGraph(model, g, options) { head = head }.Write();
    }

    bool HasSegments => arch.Embeddings.SegmentVocab > 0 || model.Application == Application.UniLM;

    IReadOnlyList<string> Write()
    {
        g.Input("input_ids", DataType.Int64, "batch", "sequence");
        g.Input("attention_mask", DataType.Int64, "batch", Cached ? "past_sequence + sequence" : "sequence");
        if (HasSegments) g.Input("token_type_ids", DataType.Int64, "batch", "sequence");
        var a = arch.Layer.Attention;
        if (Cached)
            for (int i = 0; i < arch.Layers; i++)
            {
                g.Input($"past_key_values.{i}.key", DataType.Float, "batch", (long)a.Heads, "past_sequence", (long)a.QueryKeySize);
                g.Input($"past_key_values.{i}.value", DataType.Float, "batch", (long)a.Heads, "past_sequence", (long)a.HeadSize);
            }
        length = Dim("input_ids", 1);                                                     // T
        past = Cached ? Dim("past_key_values.0.key", 2) : g.Ints([0], scalar: true);      // P: cached positions
        positions = g.Op("Range", past, g.Op("Add", past, length), g.Ints([1], scalar: true));   // (T) int64: P .. P + T − 1
        var x = Embeddings();                                                             // (B, T, H)
        if (arch.RelativeBias is { } rb) positionBias = BucketBias("relative_bias.weight", rb, bidirectional: model.Application != Application.LanguageModel);
        var mask = Mask();                                                                // (B, 1, 1 or T, T) additive
        string? scores = null;
        for (int i = 0; i < arch.Layers; i++)
        {
            string p = $"layers.{(arch.ShareLayers ? 0 : i)}";
            layer = i;
            x = arch.Gau is GauOptions gau ? GauLayer(p, x, mask, gau) : Block(p, x, mask, ref scores);
        }
        if (arch.FinalNorm) x = Norm("final_norm", x, arch.Layer.Norm, arch.Layer.Eps);
        var outputs = new List<string>();
        void Output(string name, string value, params object[] dims) { g.Output(name, value, DataType.Float, dims); outputs.Add(name); }
        int h = arch.Layer.Attention.HiddenSize;
        Output("last_hidden_state", x, "batch", "sequence", (long)h);
        string? pooled = null;
        if (parameters.ContainsKey("pooler.weight"))
        {
            pooled = g.Op("Tanh", Linear("pooler", g.Op("Gather", [x, g.Ints([0], scalar: true)], ("axis", 1L))));
            Output("pooler_output", pooled, "batch", (long)h);
        }
        if (head is { } c)
        {
            // As Pool.Apply: the pooler (else [CLS]) for First, [CLS], or the mean / max over real tokens.
            string First() => g.Op("Gather", [x, g.Ints([0], scalar: true)], ("axis", 1L));
            var m = g.Op("Unsqueeze", g.Op("Cast", ["attention_mask"], ("to", (long)DataType.Float)), g.Ints([-1]));   // (B, T, 1)
            string v = c.Pooling switch
            {
                Tasks.Pooling.First => pooled ?? First(),
                Tasks.Pooling.Cls => First(),
                Tasks.Pooling.Mean => g.Op("Div", g.Op("ReduceSum", [g.Op("Mul", x, m), g.Ints([1])], ("keepdims", 0L)), g.Op("Max", g.Op("ReduceSum", [m, g.Ints([1])], ("keepdims", 0L)), g.Float(1))),
                _ => Reduce("ReduceMax", g.Op("Where", g.Op("Equal", m, g.Float(0)), g.Float(float.NegativeInfinity), x), 1),
            };
            var logits = g.Op("MatMul", v, g.Weight("classifier.weight.T", c.Weight.t()));
            if (c.Bias is not null) logits = g.Op("Add", logits, g.Weight("classifier.bias", c.Bias));
            Output("logits", logits, "batch", c.Weight.shape[0]);
        }
        if (model.HasLanguageModelHead && model.Application != Application.Seq2Seq) Output("logits", LanguageModelHead(x), "batch", "sequence", (long)model.Config.VocabSize);
        for (int i = 0; i < presents.Count; i++)
        {
            Output($"present.{i}.key", presents[i].Key, "batch", (long)a.Heads, "past_sequence + sequence", (long)a.QueryKeySize);
            Output($"present.{i}.value", presents[i].Value, "batch", (long)a.Heads, "past_sequence + sequence", (long)a.HeadSize);
        }
        if (pooled is not null && parameters.ContainsKey("sentence.weight")) Output("seq_relationship_logits", Linear("sentence", pooled), "batch", 2L);
        if (parameters.ContainsKey("discriminator_dense.weight"))
        {
            var d = Linear("discriminator_output", Activation(model.Config.HiddenAct, Linear("discriminator_dense", x)));
            Output("discriminator_logits", g.Op("Squeeze", d, g.Ints([-1])), "batch", "sequence");
        }
        return outputs;
    }

    string Param(string name) => parameters.TryGetValue(name, out var t) ? g.Weight(name, t)
        : throw new InvalidOperationException($"{model.Family.Name}: the model has no parameter '{name}' the graph needs (exporter and model disagree)");

    /// <summary>Dimension <paramref name="axis"/> of <paramref name="input"/> as an int64 scalar.</summary>
    string Dim(string input, long axis) => g.Op("Squeeze", g.Op("Slice", g.Op("Shape", input), g.Ints([axis]), g.Ints([axis + 1])), g.Ints([0]));

    /// <summary>x · Wᵀ + b for the Linear named <paramref name="name"/> (weight stored transposed, (in, out), as MatMul takes it).</summary>
    string Linear(string name, string x)
    {
        string w = name + ".weight";
        if (!parameters.TryGetValue(w, out var weight)) throw new InvalidOperationException($"{model.Family.Name}: no parameter '{w}'");
        var y = g.Op("MatMul", x, g.Weight(w + ".T", weight.t()));
        return parameters.ContainsKey(name + ".bias") ? g.Op("Add", y, Param(name + ".bias")) : y;
    }

    string Activation(string name, string x) => name switch
    {
        "gelu" or "gelu_erf" => Gelu(x),
        "gelu_new" or "gelu_tanh" or "gelu_pytorch_tanh" or "gelu_fast" => GeluTanh(x),
        "gelu_sigmoid" or "quick_gelu" => g.Op("Mul", x, g.Op("Sigmoid", g.Op("Mul", x, g.Float(1.702f)))),
        "relu" => g.Op("Relu", x),
        "silu" or "swish" => g.Op("Mul", x, g.Op("Sigmoid", x)),
        "tanh" => g.Op("Tanh", x),
        "linear" or "identity" => x,
        _ => throw new NotSupportedException($"activation '{name}' has no ONNX form here"),
    };

    /// <summary>Exact GELU: x·½(1 + erf(x/√2)) (ONNX Runtime fuses the pattern; opset 20 has Gelu itself).</summary>
    string Gelu(string x)
    {
        if (options.Fused) return g.Contrib("Gelu", [x]);
        if (g.Opset >= 20) return g.Op("Gelu", [x], ("approximate", "none"));
        var erf = g.Op("Erf", g.Op("Div", x, g.Float(MathF.Sqrt(2))));
        return g.Op("Mul", g.Op("Mul", x, g.Op("Add", erf, g.Float(1))), g.Float(0.5f));
    }

    /// <summary>tanh GELU: ½x(1 + tanh(√(2/π)(x + 0.044715x³))).</summary>
    string GeluTanh(string x)
    {
        if (options.Fused) return g.Contrib("FastGelu", [x]);
        if (g.Opset >= 20) return g.Op("Gelu", [x], ("approximate", "tanh"));
        var cube = g.Op("Mul", g.Op("Mul", x, x), x);
        var inner = g.Op("Mul", g.Op("Add", x, g.Op("Mul", cube, g.Float(0.044715f))), g.Float(MathF.Sqrt(2 / MathF.PI)));
        return g.Op("Mul", g.Op("Mul", x, g.Op("Add", g.Op("Tanh", inner), g.Float(1))), g.Float(0.5f));
    }

    /// <summary>A norm over the last axis (LayerNorm, parameter-free RMS, RMS with gain).</summary>
    string Norm(string name, string x, NormKind kind, double eps)
    {
        if (kind == NormKind.LayerNorm)
            return g.Op("LayerNormalization", [x, Param(name + ".weight"), Param(name + ".bias")], ("axis", -1L), ("epsilon", eps));
        var meanSquare = ReduceMean(g.Op("Mul", x, x));
        var y = g.Op("Mul", x, g.Op("Reciprocal", g.Op("Sqrt", g.Op("Add", meanSquare, g.Float((float)eps)))));
        return kind == NormKind.Rms ? g.Op("Mul", y, Param(name + ".weight")) : y;
    }

    string ReduceMean(string x) => Reduce("ReduceMean", x, -1, keep: true);

    /// <summary>ReduceMean / ReduceMax over one axis: the axes are an input from opset 18, an attribute before.</summary>
    string Reduce(string op, string x, long axis, bool keep = false) => g.Opset >= 18
        ? g.Op(op, [x, g.Ints([axis])], ("keepdims", keep ? 1L : 0L))
        : g.Op(op, [x], ("axes", new long[] { axis }), ("keepdims", keep ? 1L : 0L));

    string Embeddings()
    {
        var e = arch.Embeddings;
        var x = g.Op("Gather", Param("embeddings.word.weight"), "input_ids");            // (B, T, E)
        if (e.PositionsFromPadding is int pad)
        {
            // RoBERTa: a real token's position is pad + its rank among the real tokens; padding sits at pad.
            var real = g.Op("Cast", [g.Op("Not", g.Op("Equal", "input_ids", g.Ints([pad], scalar: true)))], ("to", (long)DataType.Int64));
            var pos = g.Op("Add", g.Op("Mul", g.Op("CumSum", real, g.Ints([1], scalar: true)), real), g.Ints([pad], scalar: true));
            x = g.Op("Add", x, g.Op("Gather", Param("embeddings.position.weight"), pos));
        }
        else if (e.SinusoidalPositions) x = g.Op("Add", x, Sinusoid(e.Width));
        else if (e.MaxPositions > 0)
        {
            string table;
            if (e.HierarchicalAlpha is double a)
            {
                // Hierarchical decomposition: position i·n + j ↦ α·u_i + (1−α)·u_j, u = (p − α·p₀)/(1−α).
                var p = parameters["embeddings.position.weight"];
                var u = g.Weight("embeddings.position.hierarchical", (p - a * p.narrow(0, 0, 1)) / (1 - a));
                var n = g.Ints([e.MaxPositions], scalar: true);
                var hi = g.Op("Gather", u, g.Op("Div", positions, n));
                var lo = g.Op("Gather", u, g.Op("Mod", positions, n));
                table = g.Op("Add", g.Op("Mul", hi, g.Float((float)a)), g.Op("Mul", lo, g.Float((float)(1 - a))));
            }
            else table = g.Op("Gather", Param("embeddings.position.weight"), positions);   // (T, E)
            x = g.Op("Add", x, table);
        }
        if (e.SegmentVocab > 0) x = g.Op("Add", x, g.Op("Gather", Param("embeddings.segment.weight"), "token_type_ids"));
        if (e.Norm is NormKind k) x = Norm("embeddings.norm", x, k, e.Eps);
        if (e.ProjectTo is not null) x = Linear("embeddings.project", x);
        return x;
    }

    /// <summary>Positions 0..T−1 as float64 (T, 1) times 1/10000^(2j/d): the angles of sinusoidal tables, (T, d/2).</summary>
    string Angles(long dim)
    {
        var inv = Enumerable.Range(0, (int)(dim / 2)).Select(j => 1.0 / Math.Pow(10000.0, 2.0 * j / dim)).ToArray();
        var pos = g.Op("Unsqueeze", g.Op("Cast", [positions], ("to", (long)DataType.Double)), g.Ints([1]));
        return g.Op("Mul", pos, g.Doubles(inv));
    }

    /// <summary>Vaswani's table [sin θ₀, cos θ₀, sin θ₁, …] (T, d), computed in float64 and cast, as the embedding layer does.</summary>
    string Sinusoid(long dim)
    {
        var angles = Angles(dim);
        var pairs = g.Op("Concat", [g.Op("Unsqueeze", g.Op("Sin", angles), g.Ints([-1])), g.Op("Unsqueeze", g.Op("Cos", angles), g.Ints([-1]))], ("axis", -1L));
        return g.Op("Cast", [g.Op("Reshape", pairs, g.Ints([-1, dim]))], ("to", (long)DataType.Float));
    }

    /// <summary>Rotary (sin, cos) tables (T, d), each angle repeated for its pair, once per width.</summary>
    (string Sin, string Cos) Rotary(long dim)
    {
        if (rotary.TryGetValue(dim, out var t)) return t;
        var angles = Angles(dim);
        string Repeat(string a)
        {
            var u = g.Op("Unsqueeze", a, g.Ints([-1]));
            return g.Op("Cast", [g.Op("Reshape", g.Op("Concat", [u, u], ("axis", -1L)), g.Ints([-1, dim]))], ("to", (long)DataType.Float));
        }
        t = (Repeat(g.Op("Sin", angles)), Repeat(g.Op("Cos", angles)));
        rotary[dim] = t;
        return t;
    }

    /// <summary>x·cos + rotate(x)·sin with rotate((x₀, x₁)) = (−x₁, x₀) over interleaved pairs of the last axis.</summary>
    string Rotate(string x, long dim, int rank)
    {
        var (sin, cos) = Rotary(dim);
        long[] pairShape = [.. Enumerable.Repeat(0L, rank - 1), dim / 2, 2];
        var halves = g.Node("Split", [g.Op("Reshape", x, g.Ints(pairShape)), g.Ints([1, 1])], 2, "", [("axis", -1L)]);
        var rotated = g.Op("Reshape", g.Op("Concat", [g.Op("Neg", halves[1]), halves[0]], ("axis", -1L)), g.Ints([.. Enumerable.Repeat(0L, rank - 1), dim]));
        return g.Op("Add", g.Op("Mul", x, cos), g.Op("Mul", rotated, sin));
    }

    /// <summary>NEZHA's relative table (T, T, d): the sinusoid of clip(key − query, −m, m) + m.</summary>
    string Relative(long dim, int m)
    {
        if (relative.TryGetValue((dim, m), out var r)) return r;
        using var table = Layers.Embeddings.Sinusoid(torch.arange(2 * m + 1, dtype: ScalarType.Float64), dim).to(ScalarType.Float32);
        var rows = g.Weight($"relative_positions_{dim}_{m}", table);
        var dist = g.Op("Sub", g.Op("Unsqueeze", positions, g.Ints([0])), g.Op("Unsqueeze", positions, g.Ints([1])));   // (T, T): key − query
        var index = g.Op("Add", g.Op("Clip", dist, g.Ints([-m], scalar: true), g.Ints([m], scalar: true)), g.Ints([m], scalar: true));
        r = g.Op("Gather", rows, index);
        relative[(dim, m)] = r;
        return r;
    }

    /// <summary>Key positions 0 .. P + T − 1 (int64), written once per graph.</summary>
    string Keys() => keys ??= g.Op("Range", g.Ints([0], scalar: true), g.Op("Add", past, length), g.Ints([1], scalar: true));
    string? keys;

    /// <summary>An int64 (B, S) mask input (1 = real) as the additive (B, 1, 1, S) bias the model adds.</summary>
    string PaddingBias(string maskInput)
    {
        var keep = g.Op("Cast", [maskInput], ("to", (long)DataType.Float));
        return g.Op("Unsqueeze", g.Op("Mul", g.Op("Sub", g.Float(1), keep), g.Float(float.MinValue)), g.Ints([1, 2]));
    }

    /// <summary>Causal over every key: key position ≤ query position (queries at P .. P + T − 1), as an additive (T, P + T) bias.</summary>
    string CausalBias() =>
        g.Op("Where", g.Op("LessOrEqual", g.Op("Unsqueeze", Keys(), g.Ints([0])), g.Op("Unsqueeze", positions, g.Ints([1]))), g.Float(0), g.Float(float.MinValue));

    /// <summary>The additive mask (B, 1, 1, T) from attention_mask, plus the application's structure (causal, UniLM) as (B or 1, 1, T, T).</summary>
    string Mask()
    {
        float min = float.MinValue;
        var padding = PaddingBias("attention_mask");                                     // (B, 1, 1, T)
        if (model.Application is not (Application.LanguageModel or Application.UniLM)) return padding;
        var causal = CausalBias();                                                        // (T, P + T)
        string structure = causal;
        if (model.Application == Application.UniLM)
        {
            // Without a cache: key k visible to query j when cumsum(segments)[k] ≤ cumsum(segments)[j]. With one, new
            // tokens see the cache and the new ones causally (as the model): the segment mask, padded in front by P
            // visible keys so both have P + T columns, is chosen when P = 0.
            var idx = g.Op("CumSum", "token_type_ids", g.Ints([1], scalar: true));                                            // (B, T)
            var unilm = g.Op("Where", g.Op("LessOrEqual", g.Op("Unsqueeze", idx, g.Ints([1])), g.Op("Unsqueeze", idx, g.Ints([2]))), g.Float(0), g.Float(min));   // (B, T, T)
            if (Cached)
            {
                var pads = g.Op("Concat", [g.Ints([0, 0]), g.Op("Unsqueeze", past, g.Ints([0])), g.Ints([0, 0, 0])], ("axis", 0L));
                unilm = g.Op("Pad", unilm, pads, g.Float(0));
                structure = g.Op("Where", g.Op("Greater", past, g.Ints([0], scalar: true)), causal, unilm);                   // (B, T, P + T)
            }
            else structure = unilm;
        }
        structure = g.Op("Unsqueeze", structure, g.Ints(model.Application == Application.LanguageModel ? [0, 1] : [1]));   // (1 or B, 1, T, P + T)
        return g.Op("Add", padding, structure);                                           // as the model adds them
    }

    string Block(string p, string x, string mask, ref string? scores)
    {
        var o = arch.Layer;
        switch (o.Placement)
        {
            case NormPlacement.Pre:
                x = g.Op("Add", x, Attention(p + ".attention", Norm(p + ".attention_norm", x, o.Norm, o.Eps), mask, ref scores));
                return g.Op("Add", x, FeedForward(p + ".ffn", Norm(p + ".ffn_norm", x, o.Norm, o.Eps)));
            case NormPlacement.AroundFeedForward:
                x = g.Op("Add", x, Attention(p + ".attention", x, mask, ref scores));
                return Norm(p + ".ffn_norm", g.Op("Add", x, FeedForward(p + ".ffn", Norm(p + ".attention_norm", x, o.Norm, o.Eps))), o.Norm, o.Eps);
            default:                                                                     // post-norm; DeepNorm scales the residual by α
                x = AddNorm(p + ".attention_norm", x, Attention(p + ".attention", x, mask, ref scores));
                return AddNorm(p + ".ffn_norm", x, FeedForward(p + ".ffn", x));
        }
    }

    string Residual(string x) => arch.Layer.ResidualScale == 1 ? x : g.Op("Mul", x, g.Float((float)arch.Layer.ResidualScale));

    /// <summary>
    /// Post-norm's norm(α·residual + y): in the fused graph a LayerNorm over an unscaled residual is ONNX Runtime's
    /// <c>SkipLayerNormalization</c> (the sum and the norm in one pass), else Add and the norm.
    /// </summary>
    string AddNorm(string name, string residual, string y)
    {
        var o = arch.Layer;
        if (options.Fused && o.Norm == NormKind.LayerNorm && o.ResidualScale == 1)
            return g.Contrib("SkipLayerNormalization", [y, residual, Param(name + ".weight"), Param(name + ".bias")], ("epsilon", o.Eps));
        return Norm(name, g.Op("Add", Residual(residual), y), o.Norm, o.Eps);
    }

    string FeedForward(string p, string x)
    {
        var o = arch.Layer;
        var h = Linear(p + ".inner", x);
        if (o.GatedFeedForward)
        {
            var parts = g.Node("Split", [h, g.Ints([o.IntermediateSize, o.IntermediateSize])], 2, "", [("axis", -1L)]);
            h = g.Op("Mul", Activation(o.Activation, parts[0]), parts[1]);
        }
        else h = Activation(o.Activation, h);
        return Linear(p + ".outer", h);
    }

    /// <summary>(B, T, n·d) → (B, n, T, d).</summary>
    string Heads(string x, int n, int d) => g.Op("Transpose", [g.Op("Reshape", x, g.Ints([0, 0, n, d]))], ("perm", new long[] { 0, 2, 1, 3 }));

    /// <summary>
    /// Whether attention goes to ONNX Runtime's fused attention operators: softmax scores; no positions inside attention,
    /// rotary on queries and keys, or T5's bucketed bias (an additive bias); nothing that needs the scores. The mask is a
    /// padding mask (+ causal for LM), or UniLM's / a T5 decoder's whole mask as an additive bias. Cached graphs (LM,
    /// UniLM, T5's decoder) qualify too: <c>MultiHeadAttention</c> takes the past keys and values and returns the present ones.
    /// </summary>
    bool FusedAttention(AttentionOptions a) =>
        options.Fused && (a.Kernel ?? AttentionKernels.Softmax) is SoftmaxKernel
        && a.Position is AttentionPosition.None or AttentionPosition.Rotary or AttentionPosition.RelativeBuckets
        && !a.RotateValues && !arch.ResidualAttentionScores;

    string Attention(string p, string x, string mask, ref string? previousScores)
    {
        var a = arch.Layer.Attention;
        int h = a.Heads, dk = a.QueryKeySize, dv = a.HeadSize;
        if (FusedAttention(a)) return MultiHead(p, x, a, mask);
        var qkv = g.Node("Split", [Linear(p + ".qkv", x), g.Ints([h * dk, h * dk, h * dv])], 3, "", [("axis", -1L)]);
        string q = Heads(qkv[0], h, dk), k = Heads(qkv[1], h, dk), v = Heads(qkv[2], h, dv);   // (B, h, T, d)
        if (a.Position == AttentionPosition.Rotary)
        {
            q = Rotate(q, dk, 4);
            k = Rotate(k, dk, 4);
            if (a.RotateValues) v = Rotate(v, dv, 4);
        }
        if (Cached)
        {
            k = g.Op("Concat", [$"past_key_values.{layer}.key", k], ("axis", 2L));                  // (B, h, P + T, d)
            v = g.Op("Concat", [$"past_key_values.{layer}.value", v], ("axis", 2L));
            presents.Add((k, v));
        }
        string? rel = a.Position == AttentionPosition.TypicalRelative ? Relative(dk, a.MaxRelativePosition) : null;
        var s = g.Op("MatMul", q, g.Op("Transpose", [k], ("perm", new long[] { 0, 1, 3, 2 })));   // (B, h, T, T)
        if (rel is not null) s = g.Op("Add", s, g.Op("Einsum", [q, rel], ("equation", "bhjd,jkd->bhjk")));
        double scale = a.Scale ?? 1.0 / Math.Sqrt(dk);
        if (scale != 1) s = g.Op("Mul", s, g.Float((float)scale));
        if (a.Position == AttentionPosition.RelativeBuckets) s = g.Op("Add", s, positionBias ?? throw new InvalidOperationException("relative-bucket attention without the stack's bias"));
        if (previousScores is not null) s = g.Op("Add", s, previousScores);
        if (arch.ResidualAttentionScores) previousScores = s;
        var w = Weights(a.Kernel ?? AttentionKernels.Softmax, s, mask);
        var o = g.Op("MatMul", w, v);                                                     // (B, h, T, dv)
        if (rel is not null) o = g.Op("Add", o, g.Op("Einsum", [w, rel], ("equation", "bhjk,jkd->bhjd")));
        var merged = g.Op("Reshape", g.Op("Transpose", [o], ("perm", new long[] { 0, 2, 1, 3 })), g.Ints([0, 0, h * dv]));
        return Linear(p + ".output", merged);
    }

    /// <summary>
    /// Attention through ONNX Runtime's kernels (see <see cref="FusedAttention"/>): <c>com.microsoft.Attention</c> without
    /// positions (measured at BERT-base shape: level with the traced PyTorch graph at 8 × 128), else
    /// <c>RotaryEmbedding</c> on q and k and <c>MultiHeadAttention</c>; with a cache, <c>MultiHeadAttention</c> with
    /// <c>past_key</c>/<c>past_value</c> in and <c>present_key</c>/<c>present_value</c> out (causal from position P on).
    /// UniLM's <paramref name="mask"/> (B, 1, T, P + T), padding included, and a T5 decoder's causal mask plus its bucketed
    /// bias go in whole as <c>attention_bias</c>; elsewhere the bucketed bias (1, h, T, P + T) goes there beside the
    /// padding mask.
    /// </summary>
    string MultiHead(string p, string x, AttentionOptions a, string mask)
    {
        int h = a.Heads, dk = a.QueryKeySize, dv = a.HeadSize;
        bool decoder = Cached && model.Application == Application.Seq2Seq;                // the decoder graph has no padding input
        bool wholeMask = model.Application == Application.UniLM || decoder;
        if (!wholeMask) keyPadding ??= g.Op("Cast", ["attention_mask"], ("to", (long)DataType.Int32));
        string padding = wholeMask ? "" : keyPadding!;
        string? buckets = a.Position == AttentionPosition.RelativeBuckets ? positionBias ?? throw new InvalidOperationException("relative-bucket attention without the stack's bias") : null;
        string bias = (wholeMask, buckets) switch
        {
            (true, null) => mask,
            (true, _) => g.Op("Add", mask, buckets),
            (false, _) => buckets ?? "",
        };
        var attributes = new (string, object)[] { ("num_heads", (long)h), ("scale", a.Scale ?? 1.0 / Math.Sqrt(dk)), ("unidirectional", model.Application == Application.LanguageModel ? 1L : 0L) };
        if (a.Position == AttentionPosition.None && !options.Int8 && !Cached && !wholeMask)
        {
            // Without rotary: ONNX Runtime's Attention, which projects q, k, v with one GEMM straight into its head layout
            // (for int8 the projection stays a MatMul, which quantisation turns into DynamicQuantizeMatMul).
            string w = g.Weight(p + ".qkv.weight.T", parameters[p + ".qkv.weight"].t());
            string b = parameters.ContainsKey(p + ".qkv.bias") ? Param(p + ".qkv.bias") : g.Weight(p + ".qkv.zero_bias", torch.zeros(2 * h * dk + h * dv));
            var attention = g.Contrib("Attention", [x, w, b, padding], [.. attributes, ("qkv_hidden_sizes", new long[] { h * dk, h * dk, h * dv })]);
            return Linear(p + ".output", attention);
        }
        var parts = g.Node("Split", [Linear(p + ".qkv", x), g.Ints([h * dk, h * dk, h * dv])], 3, "", [("axis", -1L)]);   // (B, T, h·d) each
        string q = parts[0], k = parts[1];
        if (a.Position == AttentionPosition.Rotary)
        {
            // ONNX Runtime's rotary with interleaved pairs is RoFormer's; caches (T, d/2) from the same float64 angles, at
            // positions P .. P + T − 1 (so the position offset stays 0 with a cache).
            var angles = Angles(dk);
            string cos = g.Op("Cast", [g.Op("Cos", angles)], ("to", (long)DataType.Float)), sin = g.Op("Cast", [g.Op("Sin", angles)], ("to", (long)DataType.Float));
            string Rotated(string t) => g.Contrib("RotaryEmbedding", [t, g.Ints([0]), cos, sin], ("interleaved", 1L), ("num_heads", (long)h));
            (q, k) = (Rotated(q), Rotated(k));
        }
        if (Cached)
        {
            // The padding mask is (B, P + T) here; the kernel concatenates the past itself.
            var o = g.Node("MultiHeadAttention", [q, k, parts[2], "", padding, bias, $"past_key_values.{layer}.key", $"past_key_values.{layer}.value"], 3, "com.microsoft", attributes);
            presents.Add((o[1], o[2]));                                                   // (B, h, P + T, d)
            return Linear(p + ".output", o[0]);
        }
        string[] inputs = bias == "" ? [q, k, parts[2], "", padding] : [q, k, parts[2], "", padding, bias];
        return Linear(p + ".output", g.Contrib("MultiHeadAttention", inputs, attributes));
    }

    /// <summary>Scores (…, Tq, Tk) + mask → weights, by kernel.</summary>
    string Weights(IAttentionKernel kernel, string scores, string mask)
    {
        var masked = g.Op("Add", scores, mask);
        switch (kernel)
        {
            case SquaredReluKernel:
                var r = g.Op("Relu", masked);
                return g.Op("Div", g.Op("Mul", r, r), VisibleKeys(mask));
            case SoftmaxPlusKernel:
                var n = g.Op("Log", g.Op("Max", VisibleKeys(mask), g.Float(16)));
                return g.Op("Softmax", [g.Op("Mul", masked, g.Op("Div", n, g.Float(MathF.Log(512))))], ("axis", -1L));
            default:
                return g.Op("Softmax", [masked], ("axis", -1L));
        }
    }

    /// <summary>Keys each query may see (…, Tq or 1, 1), counted from the additive mask.</summary>
    string VisibleKeys(string mask)
    {
        var visible = g.Op("Cast", [g.Op("Equal", mask, g.Float(0))], ("to", (long)DataType.Float));
        return g.Op("ReduceSum", [visible, g.Ints([-1])], ("keepdims", 1L));
    }

    string GauLayer(string p, string x, string mask, GauOptions o)
    {
        string u0 = p + ".gau";
        var h = Activation(o.Activation, Linear(u0 + ".i_dense", x));                    // (B, T, 2U + S)
        var parts = g.Node("Split", [h, g.Ints([o.Units, o.Units, o.KeySize])], 3, "", [("axis", -1L)]);
        string u = parts[0], v = parts[1], qk = parts[2];
        var q = g.Op("Mul", qk, Param(u0 + ".q_gamma"));
        var k = g.Op("Mul", qk, Param(u0 + ".k_gamma"));
        if (o.UseBias) { q = g.Op("Add", q, Param(u0 + ".q_beta")); k = g.Op("Add", k, Param(u0 + ".k_beta")); }
        if (o.Rotary) { q = Rotate(q, o.KeySize, 3); k = Rotate(k, o.KeySize, 3); }
        // One head: (B, T, S) → (B, 1, T, S), as the kernel sees it.
        string One(string t) => g.Op("Unsqueeze", t, g.Ints([1]));
        var s = g.Op("Mul", g.Op("MatMul", One(q), g.Op("Transpose", [One(k)], ("perm", new long[] { 0, 1, 3, 2 }))), g.Float((float)(1.0 / Math.Sqrt(o.KeySize))));
        var w = Weights(o.Kernel ?? AttentionKernels.SoftmaxPlus, s, mask);
        var mixed = g.Op("Squeeze", g.Op("MatMul", w, One(v)), g.Ints([1]));             // (B, T, U)
        var y = Linear(u0 + ".o_dense", g.Op("Mul", u, mixed));
        return Norm(p + ".norm", g.Op("Add", x, y), arch.Layer.Norm, arch.Layer.Eps);
    }

    string LanguageModelHead(string x)
    {
        var y = x;
        if (parameters.ContainsKey("mlm_dense.weight")) y = Activation(arch.MlmActivation, Linear("mlm_dense", y));
        if (arch.MlmTransform && arch.MlmNorm is NormKind k) y = Norm("mlm_norm", y, k, arch.Layer.Eps);   // as the model: the norm belongs to the transform
        if (arch.HeadScale is double s) y = g.Op("Mul", y, g.Float((float)s));
        if (parameters.ContainsKey("lm_head.weight")) return Linear("lm_head", y);
        // Tied: the token embeddings (V, E), transposed once by ONNX Runtime's constant folding, not stored twice.
        var logits = g.Op("MatMul", y, g.Op("Transpose", [Param("embeddings.word.weight")], ("perm", new long[] { 1, 0 })));
        return parameters.ContainsKey("mlm_bias") ? g.Op("Add", logits, Param("mlm_bias")) : logits;
    }
}
