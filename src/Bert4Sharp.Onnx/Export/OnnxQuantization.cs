namespace Bert4Sharp.Onnx.Export;

using System.Runtime.InteropServices;
using Bert4Sharp.Checkpoints;
using Google.Protobuf;
using global::Onnx;
using DataType = global::Onnx.TensorProto.Types.DataType;

/// <summary>What <see cref="OnnxQuantization.QuantizeDynamic(ModelProto, int)"/> changed.</summary>
/// <param name="MatMuls">MatMul nodes replaced by <c>DynamicQuantizeMatMul</c>.</param>
/// <param name="BiasesFused">Of those, how many took the following bias Add in.</param>
/// <param name="FloatBytesBefore">Bytes of the quantised float weights.</param>
/// <param name="Int8BytesAfter">Bytes of their int8 weights plus per-column scales and zero points.</param>
/// <param name="WeightBits">Bits of the weight range used (8: [−127, 127]; 7: [−63, 63]).</param>
public sealed record QuantizationReport(int MatMuls, int BiasesFused, long FloatBytesBefore, long Int8BytesAfter, int WeightBits);

/// <summary>
/// Dynamic int8 quantisation of an ONNX graph's dense layers: every <c>MatMul</c> whose right input is a 2-D float
/// initializer (K, N) becomes ONNX Runtime's <c>com.microsoft.DynamicQuantizeMatMul</c> with symmetric int8 weights and
/// one scale per output column (max |W[:, n]| / 127), activations quantised to uint8 at run time per tensor; a following
/// <c>Add</c> of a 1-D bias initializer is folded into the node. Embeddings (Gather), norms, softmax and a tied output
/// layer (its weight is a computed transpose, not an initializer) stay float32. Works on graphs from elsewhere too
/// (PyTorch / Optimum exports write the same MatMul + Add pattern).
/// </summary>
public static class OnnxQuantization
{
    /// <summary>Quantises <paramref name="input"/> into <paramref name="output"/> (atomically); the report says what changed.</summary>
    /// <exception cref="InvalidDataException">Not an ONNX model, or nothing to quantise (names why).</exception>
    public static QuantizationReport QuantizeDynamic(string input, string output, int weightBits = 8)
    {
        ModelProto model;
        try { using var s = File.OpenRead(input); model = ModelProto.Parser.ParseFrom(s); }
        catch (InvalidProtocolBufferException e) { throw new InvalidDataException($"{input}: not an ONNX model ({e.Message})", e); }
        var report = QuantizeDynamic(model, weightBits);
        AtomicFile.Write(output, s => model.WriteTo(s));
        return report;
    }

    /// <summary>Quantises <paramref name="model"/> in place.</summary>
    /// <param name="model">The graph.</param>
    /// <param name="weightBits">8 (default) or 7: weights in [−63, 63] leave headroom for CPUs without VNNI, whose u8·s8 instruction saturates pairs of products.</param>
    /// <exception cref="InvalidDataException">The graph has no MatMul with a float weight initializer (int8 would change nothing).</exception>
    public static QuantizationReport QuantizeDynamic(ModelProto model, int weightBits = 8)
    {
        if (weightBits is not (7 or 8)) throw new ArgumentOutOfRangeException(nameof(weightBits), $"weight bits must be 7 or 8, got {weightBits}");
        int qmax = (1 << (weightBits - 1)) - 1;
        var graph = model.Graph;
        var initializers = graph.Initializer.ToDictionary(t => t.Name);
        var consumers = new Dictionary<string, List<NodeProto>>();
        foreach (var n in graph.Node)
            foreach (var i in n.Input) { if (!consumers.TryGetValue(i, out var l)) consumers[i] = l = []; l.Add(n); }
        var quantised = new Dictionary<string, (string W, string Scale, string Zero)>();
        var removed = new HashSet<NodeProto>();
        int matmuls = 0, fused = 0;
        long before = 0, after = 0;
        var nodes = graph.Node.ToList();
        for (int idx = 0; idx < nodes.Count; idx++)
        {
            var node = nodes[idx];
            if (node.OpType != "MatMul" || node.Domain is not ("" or "ai.onnx") || node.Input.Count != 2) continue;
            if (!initializers.TryGetValue(node.Input[1], out var w) || w.DataType != (int)DataType.Float || w.Dims.Count != 2) continue;
            if (initializers.ContainsKey(node.Input[0])) continue;
            long k = w.Dims[0], n = w.Dims[1];
            if (!quantised.TryGetValue(w.Name, out var q))
            {
                var values = Floats(w);
                if (values.Length != k * n) continue;                                      // external data: left as it is
                var (bytes, scales) = Quantize(values, k, n, qmax);
                string wName = w.Name + "_int8", sName = w.Name + "_scale", zName = w.Name + "_zero_point";
                graph.Initializer.Add(GraphWriter.Initializer(wName, DataType.Int8, [k, n], bytes));
                graph.Initializer.Add(GraphWriter.Initializer(sName, DataType.Float, [n], MemoryMarshal.AsBytes(scales.AsSpan()).ToArray()));
                graph.Initializer.Add(GraphWriter.Initializer(zName, DataType.Int8, [n], new byte[n]));
                q = (wName, sName, zName);
                quantised[w.Name] = q;
                before += k * n * 4;
                after += k * n + n * 5;
            }
            // A following Add of a (N) bias, when it is the MatMul's only consumer, goes into the node.
            string outputName = node.Output[0], bias = "";
            if (consumers.TryGetValue(outputName, out var users) && users.Count == 1 && users[0].OpType == "Add" && users[0].Input.Count == 2)
            {
                var add = users[0];
                string other = add.Input[0] == outputName ? add.Input[1] : add.Input[0];
                if (initializers.TryGetValue(other, out var b) && b.DataType == (int)DataType.Float && b.Dims.Count == 1 && b.Dims[0] == n)
                {
                    bias = other;
                    outputName = add.Output[0];
                    removed.Add(add);
                    fused++;
                }
            }
            var dq = new NodeProto { OpType = "DynamicQuantizeMatMul", Domain = "com.microsoft", Name = node.Name + "_int8" };
            dq.Input.AddRange([node.Input[0], q.W, q.Scale, q.Zero, bias]);
            dq.Output.Add(outputName);
            nodes[idx] = dq;
            matmuls++;
        }
        if (matmuls == 0) throw new InvalidDataException("the graph has no MatMul with a float weight initializer: int8 dynamic quantisation has nothing to change");
        graph.Node.Clear();
        graph.Node.AddRange(nodes.Where(x => !removed.Contains(x)));
        // Float weights no node reads any more are dropped.
        var used = graph.Node.SelectMany(x => x.Input).Concat(graph.Output.Select(o => o.Name)).ToHashSet();
        var keep = graph.Initializer.Where(t => used.Contains(t.Name)).ToList();
        graph.Initializer.Clear();
        graph.Initializer.AddRange(keep);
        if (!model.OpsetImport.Any(o => o.Domain == "com.microsoft")) model.OpsetImport.Add(new OperatorSetIdProto { Domain = "com.microsoft", Version = 1 });
        return new QuantizationReport(matmuls, fused, before, after, weightBits);
    }

    /// <summary>Symmetric per-column int8: scale_n = max_k |W[k, n]| / qmax, q = round(W / scale).</summary>
    static (byte[] Bytes, float[] Scales) Quantize(float[] w, long k, long n, int qmax)
    {
        var scales = new float[n];
        for (long r = 0; r < k; r++)
            for (long c = 0; c < n; c++) scales[c] = Math.Max(scales[c], Math.Abs(w[r * n + c]));
        for (long c = 0; c < n; c++) scales[c] = scales[c] > 0 ? scales[c] / qmax : 1;
        var bytes = new byte[k * n];
        for (long r = 0; r < k; r++)
            for (long c = 0; c < n; c++)
                bytes[r * n + c] = unchecked((byte)(sbyte)Math.Clamp(MathF.Round(w[r * n + c] / scales[c]), -qmax, qmax));
        return (bytes, scales);
    }

    static float[] Floats(TensorProto t) => t.RawData.Length > 0 ? MemoryMarshal.Cast<byte, float>(t.RawData.Span).ToArray() : [.. t.FloatData];
}
