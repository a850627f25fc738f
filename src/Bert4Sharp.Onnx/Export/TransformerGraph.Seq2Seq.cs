namespace Bert4Sharp.Onnx.Export;

using Bert4Sharp.Models;
using TorchSharp;
using DataType = global::Onnx.TensorProto.Types.DataType;

/// <summary>The encoder–decoder parts: T5's bucketed relative bias and the decoder graph with cross attention and a cache.</summary>
internal sealed partial class TransformerGraph
{
    /// <summary>
    /// Writes the decoder of an encoder–decoder (T5, <see cref="Application.Seq2Seq"/>): inputs <c>input_ids</c> (B, T),
    /// <c>encoder_attention_mask</c> (E, S), the cross-attention keys and values <c>cross_key_values.N.key</c>/<c>.value</c>
    /// (E, h, S, d) that <see cref="WriteCross(TransformerModel, GraphWriter, OnnxExportOptions)"/>'s graph computes once per input, and the self-attention cache
    /// <c>past_key_values.N.key</c>/<c>.value</c>; outputs <c>logits</c> and <c>present.N.key</c>/<c>.value</c>. E is B, or 1
    /// for one input decoded by B beams or samples (broadcast, never copied).
    /// </summary>
    public static IReadOnlyList<string> WriteDecoder(TransformerModel model, GraphWriter g, OnnxExportOptions options) =>
        Seq2SeqGraph(model, g, options).WriteDecoder();

    /// <summary>
    /// Writes the cross-attention keys and values of every decoder layer from the encoder's states: input
    /// <c>encoder_hidden_states</c> (B, S, H), outputs <c>cross_key_values.N.key</c> (B, h, S, dk) and <c>.value</c> (B, h, S, dv).
    /// Run once per encoded input, so a decoding step no longer multiplies S × H by H per layer twice (as the TorchSharp
    /// engine keeps them in <see cref="Layers.KeyValueCache.Cross"/>).
    /// </summary>
    public static IReadOnlyList<string> WriteCross(TransformerModel model, GraphWriter g, OnnxExportOptions options) =>
        Seq2SeqGraph(model, g, options).WriteCross();

    static TransformerGraph Seq2SeqGraph(TransformerModel model, GraphWriter g, OnnxExportOptions options)
    {
        Check(model);
        if (model.Application != Application.Seq2Seq || model.Architecture.Decoder is null)
            throw new NotSupportedException($"{model.Family.Name} built for {model.Application} has no decoder to export");
        return new TransformerGraph(model, g, options) { Cached = true };
    }

    IReadOnlyList<string> WriteCross()
    {
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        var dec = arch.Decoder!;
        var a = dec.Layer.Attention;
        int h = a.Heads, dk = a.QueryKeySize, dv = a.HeadSize;
        g.Input("encoder_hidden_states", DataType.Float, "batch", "encoder_sequence", (long)a.HiddenSize);
        var outputs = new List<string>();
        for (int i = 0; i < dec.Layers; i++)
        {
            string p = $"decoder_layers.{i}.cross_attention";
            var kv = g.Node("Split", [Linear(p + ".kv", "encoder_hidden_states"), g.Ints([h * dk, h * dv])], 2, "", [("axis", -1L)]);
            g.Output($"cross_key_values.{i}.key", Heads(kv[0], h, dk), DataType.Float, "batch", (long)h, "encoder_sequence", (long)dk);
            g.Output($"cross_key_values.{i}.value", Heads(kv[1], h, dv), DataType.Float, "batch", (long)h, "encoder_sequence", (long)dv);
            outputs.Add($"cross_key_values.{i}.key");
            outputs.Add($"cross_key_values.{i}.value");
        }
        return outputs;
    }

    IReadOnlyList<string> WriteDecoder()
    {
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        var dec = arch.Decoder!;
        var a = dec.Layer.Attention;
        g.Input("input_ids", DataType.Int64, "batch", "sequence");
        g.Input("encoder_attention_mask", DataType.Int64, "encoder_batch", "encoder_sequence");
        for (int i = 0; i < dec.Layers; i++)
        {
            g.Input($"cross_key_values.{i}.key", DataType.Float, "encoder_batch", (long)a.Heads, "encoder_sequence", (long)a.QueryKeySize);
            g.Input($"cross_key_values.{i}.value", DataType.Float, "encoder_batch", (long)a.Heads, "encoder_sequence", (long)a.HeadSize);
        }
        for (int i = 0; i < dec.Layers; i++)
        {
            g.Input($"past_key_values.{i}.key", DataType.Float, "batch", (long)a.Heads, "past_sequence", (long)a.QueryKeySize);
            g.Input($"past_key_values.{i}.value", DataType.Float, "batch", (long)a.Heads, "past_sequence", (long)a.HeadSize);
        }
        length = Dim("input_ids", 1);
        past = Dim("past_key_values.0.key", 2);
        positions = g.Op("Range", past, g.Op("Add", past, length), g.Ints([1], scalar: true));   // P .. P + T − 1
        var x = g.Op("Gather", Param("embeddings.word.weight"), "input_ids");            // (B, T, H): T5 embeds tokens only
        if (arch.RelativeBias is { } rb) positionBias = BucketBias("decoder_relative_bias.weight", rb, bidirectional: false);
        // Causal over the cache and the new tokens; the memory mask over the encoder states.
        var mask = g.Op("Unsqueeze", CausalBias(), g.Ints([0, 1]));                     // (1, 1, T, P + T)
        var memoryMask = PaddingBias("encoder_attention_mask");                          // (E, 1, 1, S)
        string? scores = null;
        var o = dec.Layer;
        for (int i = 0; i < dec.Layers; i++)
        {
            string p = $"decoder_layers.{i}";
            layer = i;
            x = g.Op("Add", x, Attention(p + ".attention", Norm(p + ".attention_norm", x, o.Norm, o.Eps), mask, ref scores));
            x = g.Op("Add", x, CrossAttention(p + ".cross_attention", i, Norm(p + ".cross_attention_norm", x, o.Norm, o.Eps), memoryMask));
            x = g.Op("Add", x, FeedForward(p + ".ffn", Norm(p + ".ffn_norm", x, o.Norm, o.Eps)));
        }
        x = Norm("decoder_norm", x, o.Norm, o.Eps);
        var outputs = new List<string> { "logits" };
        g.Output("logits", LanguageModelHead(x), DataType.Float, "batch", "sequence", (long)model.Config.VocabSize);
        for (int i = 0; i < presents.Count; i++)
        {
            g.Output($"present.{i}.key", presents[i].Key, DataType.Float, "batch", (long)a.Heads, "past_sequence + sequence", (long)a.QueryKeySize);
            g.Output($"present.{i}.value", presents[i].Value, DataType.Float, "batch", (long)a.Heads, "past_sequence + sequence", (long)a.HeadSize);
            outputs.Add($"present.{i}.key");
            outputs.Add($"present.{i}.value");
        }
        return outputs;
    }

    /// <summary>
    /// Queries from <paramref name="x"/>, keys and values of <paramref name="layer"/> from the graph's
    /// <c>cross_key_values</c> inputs, softmax over the memory mask. Standard ops: MatMul broadcasts an encoder batch of 1
    /// over the decoding batch.
    /// </summary>
    string CrossAttention(string p, int layer, string x, string memoryMask)
    {
        var a = arch.Decoder!.Layer.Attention;
        int h = a.Heads, dk = a.QueryKeySize, dv = a.HeadSize;
        var q = Heads(Linear(p + ".q", x), h, dk);                                        // (B, h, T, dk)
        string k = $"cross_key_values.{layer}.key", v = $"cross_key_values.{layer}.value"; // (E, h, S, d)
        var s = g.Op("MatMul", q, g.Op("Transpose", [k], ("perm", new long[] { 0, 1, 3, 2 })));   // (B, h, T, S)
        double scale = a.Scale ?? 1.0 / Math.Sqrt(dk);
        if (scale != 1) s = g.Op("Mul", s, g.Float((float)scale));
        var w = g.Op("Softmax", [g.Op("Add", s, memoryMask)], ("axis", -1L));
        var merged = g.Op("Reshape", g.Op("Transpose", [g.Op("MatMul", w, v)], ("perm", new long[] { 0, 2, 1, 3 })), g.Ints([0, 0, h * dv]));
        return Linear(p + ".output", merged);
    }

    /// <summary>
    /// T5's relative bias (1, h, T, P + T): the learned (buckets, h) table gathered at the bucket of key − query, the
    /// bucket computed as <see cref="Layers.RelativePositionBias.Bucket"/> does (exact below half the buckets,
    /// logarithmic up to the maximum distance in float32, one bucket beyond; by sign when bidirectional).
    /// </summary>
    string BucketBias(string weight, RelativeBiasOptions o, bool bidirectional)
    {
        var relative = g.Op("Sub", g.Op("Unsqueeze", Keys(), g.Ints([0])), g.Op("Unsqueeze", positions, g.Ints([1])));   // (T, P + T): key − query
        int n = o.Buckets;
        string offset = g.Ints([0], scalar: true);
        if (bidirectional)
        {
            n /= 2;
            offset = g.Op("Mul", g.Op("Cast", [g.Op("Greater", relative, g.Ints([0], scalar: true))], ("to", (long)DataType.Int64)), g.Ints([n], scalar: true));
            relative = g.Op("Abs", relative);
        }
        else relative = g.Op("Neg", g.Op("Min", relative, g.Ints([0], scalar: true)));
        int exact = n / 2;
        var small = g.Op("Less", relative, g.Ints([exact], scalar: true));
        var logRatio = g.Op("Log", g.Op("Div", g.Op("Cast", [relative], ("to", (long)DataType.Float)), g.Float(exact)));
        var scaled = g.Op("Mul", g.Op("Div", logRatio, g.Float((float)Math.Log((double)o.MaxDistance / exact))), g.Float(n - exact));
        var large = g.Op("Min", g.Op("Add", g.Op("Cast", [scaled], ("to", (long)DataType.Int64)), g.Ints([exact], scalar: true)), g.Ints([n - 1], scalar: true));
        var bucket = g.Op("Add", offset, g.Op("Where", small, relative, large));         // (T, P + T)
        var values = g.Op("Gather", Param(weight), bucket);                                // (T, P + T, h)
        return g.Op("Unsqueeze", g.Op("Transpose", [values], ("perm", new long[] { 2, 0, 1 })), g.Ints([0]));
    }
}
