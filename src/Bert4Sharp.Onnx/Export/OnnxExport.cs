namespace Bert4Sharp.Onnx.Export;

using Bert4Sharp.Checkpoints;
using Bert4Sharp.Models;
using Google.Protobuf;
using Microsoft.ML.OnnxRuntime;
using TorchSharp;
using static TorchSharp.torch;

/// <summary>Options of <see cref="OnnxExport.Save(TransformerModel, string, OnnxExportOptions?)"/>.</summary>
public sealed record OnnxExportOptions
{
    /// <summary>Lowest opset every exporter path supports (LayerNormalization is opset 17).</summary>
    public const int MinOpset = 17;
    /// <summary>Highest opset written (ONNX Runtime 1.31 runs it).</summary>
    public const int MaxOpset = 21;

    /// <summary>The ai.onnx opset of the graph, <see cref="MinOpset"/>..<see cref="MaxOpset"/>.</summary>
    public int Opset { get; init; } = MinOpset;
    /// <summary>
    /// Write ONNX Runtime's fused operators where the standard graph would spell them out (com.microsoft Attention,
    /// MultiHeadAttention + RotaryEmbedding, Gelu / FastGelu); such a graph runs on ONNX Runtime only. Default true.
    /// </summary>
    public bool Fused { get; init; } = true;
    /// <summary>
    /// Causal LM and UniLM graphs take <c>past_key_values.N.key</c>/<c>.value</c> (batch, heads, past, d) and return
    /// <c>present.N.key</c>/<c>.value</c> (batch, heads, past + sequence, d): one graph for the prompt (past 0) and each
    /// step after it. Default true; models that decode without a cache (NEZHA, GAU-α, RoBERTa-style positions from
    /// padding, RealFormer) are written without.
    /// </summary>
    public bool KeyValueCache { get; init; } = true;
    /// <summary>Quantise the dense weights to int8 after writing (<see cref="OnnxQuantization.QuantizeDynamic(string, string, int)"/>).</summary>
    public bool Int8 { get; init; }
    /// <summary>
    /// Bits of the int8 weights: 8, or 7 (weights in [−63, 63], for CPUs whose u8·s8 instruction saturates, i.e. without
    /// VNNI). Default 8.
    /// </summary>
    public int Int8WeightBits { get; init; } = 8;
}

/// <summary>What <see cref="OnnxExport.Save(TransformerModel, string, OnnxExportOptions?)"/> wrote.</summary>
/// <param name="Path">The graph file (the encoder's, for an encoder–decoder).</param>
/// <param name="Outputs">Outputs of the graph at <paramref name="Path"/>, in order (<c>last_hidden_state</c> first).</param>
/// <param name="Operators">Nodes per operator.</param>
/// <param name="Bytes">Bytes written (both files of an encoder–decoder).</param>
/// <param name="Quantization">What int8 quantisation changed, when asked.</param>
public sealed record OnnxExportResult(string Path, IReadOnlyList<string> Outputs, IReadOnlyDictionary<string, int> Operators, long Bytes, QuantizationReport? Quantization)
{
    /// <summary>The decoder graph of an encoder–decoder (<see cref="OnnxExport.DecoderFileName"/> beside <see cref="Path"/>), else null.</summary>
    public string? DecoderPath { get; init; }
    /// <summary>The cross-attention key/value graph of an encoder–decoder (<see cref="OnnxExport.CrossFileName"/> beside <see cref="Path"/>), else null.</summary>
    public string? CrossPath { get; init; }
}

/// <summary>How far an exported graph run by ONNX Runtime is from the TorchSharp model on the same inputs.</summary>
/// <param name="Output">Graph output name.</param>
/// <param name="MaxAbsDiff">Largest |ONNX Runtime − TorchSharp|.</param>
/// <param name="MaxAbsExpected">Largest |TorchSharp| (the scale the difference is relative to).</param>
public sealed record ExportCheck(string Output, double MaxAbsDiff, double MaxAbsExpected);

/// <summary>
/// Export to ONNX from C#: writes a <see cref="TransformerModel"/>'s graph from its architecture description and named
/// weights (no tracing), for ONNX Runtime (<see cref="OnnxRuntimeEncoder"/>) or any ONNX runtime when
/// <see cref="OnnxExportOptions.Fused"/> is off.
/// </summary>
public static class OnnxExport
{
    /// <summary>
    /// Writes <paramref name="model"/> to <paramref name="path"/> atomically (a failed export leaves any earlier file
    /// untouched). Inputs <c>input_ids</c>, <c>attention_mask</c>, <c>token_type_ids</c> (when the model has segments) and,
    /// for cached LM / UniLM graphs, <c>past_key_values.N.key</c>/<c>.value</c>; outputs <c>last_hidden_state</c>, then
    /// <c>pooler_output</c>, <c>logits</c>, <c>present.N.key</c>/<c>.value</c>, <c>seq_relationship_logits</c>,
    /// <c>discriminator_logits</c> as the application has them. An encoder–decoder also gets <see cref="CrossFileName"/>
    /// and <see cref="DecoderFileName"/> beside <paramref name="path"/>.
    /// </summary>
    /// <exception cref="NotSupportedException">The model has something the exporter cannot write (named).</exception>
    /// <exception cref="ArgumentOutOfRangeException">Opset outside the supported range.</exception>
    public static OnnxExportResult Save(TransformerModel model, string path, OnnxExportOptions? options = null)
    {
        options ??= new();
        TransformerGraph.Check(model);
        var (outputs, operators, quantization) = Write(model, path, options, (m, g, o) => TransformerGraph.Write(m, g, o));
        string? decoder = null, cross = null;
        long bytes = new FileInfo(path).Length;
        if (model.Application == Application.Seq2Seq)
        {
            string dir = Path.GetDirectoryName(Path.GetFullPath(path))!;
            (decoder, cross) = (Path.Combine(dir, DecoderFileName), Path.Combine(dir, CrossFileName));
            var graphs = new (string File, Func<TransformerModel, GraphWriter, OnnxExportOptions, IReadOnlyList<string>> Graph)[]
            {
                (cross, TransformerGraph.WriteCross), (decoder, TransformerGraph.WriteDecoder),
            };
            foreach (var (file, graph) in graphs)
            {
                var d = Write(model, file, options, graph);
                bytes += new FileInfo(file).Length;
                operators = operators.Concat(d.Operators).GroupBy(kv => kv.Key).ToDictionary(kv => kv.Key, kv => kv.Sum(x => x.Value));
                if (quantization is not null && d.Quantization is { } dq)
                    quantization = new QuantizationReport(quantization.MatMuls + dq.MatMuls, quantization.BiasesFused + dq.BiasesFused,
                        quantization.FloatBytesBefore + dq.FloatBytesBefore, quantization.Int8BytesAfter + dq.Int8BytesAfter, dq.WeightBits);
            }
        }
        return new OnnxExportResult(path, outputs, operators, bytes, quantization) { DecoderPath = decoder, CrossPath = cross };
    }

    /// <summary>
    /// Writes a fine-tuned classifier (<see cref="Tasks.SequenceClassifier"/>: encoder + pooling + dense) as one graph whose
    /// <c>logits</c> output is (batch, labels), beside <c>last_hidden_state</c> (and <c>pooler_output</c>).
    /// </summary>
    /// <exception cref="NotSupportedException">First-last-average pooling (it reads every layer), or what <see cref="Save(TransformerModel, string, OnnxExportOptions?)"/> refuses.</exception>
    public static OnnxExportResult Save(Tasks.SequenceClassifier classifier, string path, OnnxExportOptions? options = null)
    {
        options ??= new();
        var head = new TransformerGraph.ClassifierHead(classifier.Pooling, classifier.Classifier.weight!, classifier.Classifier.bias);
        var (outputs, operators, quantization) = Write(classifier.Encoder, path, options, (m, g, o) => TransformerGraph.Write(m, g, o, head));
        return new OnnxExportResult(path, outputs, operators, new FileInfo(path).Length, quantization);
    }

    /// <summary>The decoder graph of an encoder–decoder, written beside the encoder's <c>model.onnx</c>.</summary>
    public const string DecoderFileName = "decoder_model.onnx";

    /// <summary>
    /// The graph computing an encoder–decoder's cross-attention keys and values from the encoder states (once per input),
    /// written beside the encoder's <c>model.onnx</c>.
    /// </summary>
    public const string CrossFileName = "decoder_cross_model.onnx";

    static (IReadOnlyList<string> Outputs, IReadOnlyDictionary<string, int> Operators, QuantizationReport? Quantization) Write(TransformerModel model, string path,
        OnnxExportOptions options, Func<TransformerModel, GraphWriter, OnnxExportOptions, IReadOnlyList<string>> graph)
    {
        if (options.Opset is < OnnxExportOptions.MinOpset or > OnnxExportOptions.MaxOpset)
            throw new ArgumentOutOfRangeException(nameof(options), $"opset {options.Opset} is outside {OnnxExportOptions.MinOpset}..{OnnxExportOptions.MaxOpset}");
        var g = new GraphWriter(options.Opset);
        var outputs = graph(model, g, options);
        var proto = g.Model(new Dictionary<string, string>
        {
            ["bert4sharp.family"] = model.Family.Name,
            ["bert4sharp.application"] = model.Application.ToString(),
            ["bert4sharp.max_length"] = model.MaxLength.ToString(System.Globalization.CultureInfo.InvariantCulture),
        });
        QuantizationReport? report = options.Int8 ? OnnxQuantization.QuantizeDynamic(proto, options.Int8WeightBits) : null;
        long size = proto.Graph.Initializer.Sum(t => (long)t.RawData.Length);               // protobuf sizes are int: check before serialising
        if (size > int.MaxValue - (64 << 20))
            throw new NotSupportedException($"the weights are {size >> 20} MiB; one protobuf file stops at 2 GiB (export with --int8, or a smaller model)");
        AtomicFile.Write(path, s => proto.WriteTo(s));
        return (outputs, g.OpCounts, report);
    }

    /// <summary>
    /// Runs <paramref name="path"/> with ONNX Runtime and <paramref name="model"/> with TorchSharp on the same random
    /// ids (batch 2, the second row padded after half its length), and reports the difference per output.
    /// </summary>
    public static IReadOnlyList<ExportCheck> Verify(TransformerModel model, string path, int length = 16, int seed = 0) => Verify(model, null, path, length, seed);

    /// <summary>As <see cref="Verify(TransformerModel, string, int, int)"/> for an exported classifier: its <c>logits</c> against <see cref="Tasks.SequenceClassifier.forward"/>.</summary>
    public static IReadOnlyList<ExportCheck> Verify(Tasks.SequenceClassifier classifier, string path, int length = 16, int seed = 0) =>
        Verify(classifier.Encoder, classifier.forward, path, length, seed);

    static IReadOnlyList<ExportCheck> Verify(TransformerModel model, Func<Tensor, Tensor?, Tensor?, Tensor>? logits, string path, int length, int seed)
    {
        using var scope = torch.NewDisposeScope();
        return Compare(model, path, length, seed, logits)
            .Select(c => new ExportCheck(c.Output, (c.Got - c.Want).abs().max().ToDouble(), c.Want.abs().max().ToDouble())).ToList();
    }

    /// <summary>Each graph output next to the TorchSharp model's (float32, CPU), on <see cref="Verify(TransformerModel, string, int, int)"/>'s inputs; tensors in the caller's scope.</summary>
    internal static List<(string Output, Tensor Got, Tensor Want)> Compare(TransformerModel model, string path, int length = 16, int seed = 0,
        Func<Tensor, Tensor?, Tensor?, Tensor>? classifierLogits = null)
    {
        using var noGrad = torch.no_grad();
        long t = Math.Min(length, model.MaxLength);
        var gen = new Generator((ulong)seed);
        var ids = torch.randint(1, model.Config.VocabSize, [2, t], generator: gen, dtype: ScalarType.Int64);
        var mask = torch.ones(2, t, dtype: ScalarType.Int64);
        mask[1, TensorIndex.Slice(t / 2)] = torch.tensor(0L);
        var segments = torch.zeros(2, t, dtype: ScalarType.Int64);
        if (model.Architecture.Embeddings.SegmentVocab > 1 || model.Application == Application.UniLM)
            segments[TensorIndex.Colon, TensorIndex.Slice(t / 2)] = torch.tensor(1L);
        bool wasTraining = model.training;
        model.eval();
        using var expected = model.Forward(new ModelInput(ids.to(model.Device)) { Segments = segments.to(model.Device), AttentionMask = mask.to(model.Device) });
        var headLogits = classifierLogits?.Invoke(ids.to(model.Device), segments.to(model.Device), mask.to(model.Device));
        if (wasTraining) model.train();
        using var so = new SessionOptions();
        using var session = new InferenceSession(path, so);
        long[] shape = [2, t];
        var inputs = new Dictionary<string, OrtValue>
        {
            ["input_ids"] = OrtValue.CreateTensorValueFromMemory(ids.data<long>().ToArray(), shape),
            ["attention_mask"] = OrtValue.CreateTensorValueFromMemory(mask.data<long>().ToArray(), shape),
        };
        if (session.InputMetadata.ContainsKey("token_type_ids")) inputs["token_type_ids"] = OrtValue.CreateTensorValueFromMemory(segments.data<long>().ToArray(), shape);
        foreach (var (name, meta) in session.InputMetadata.Where(i => i.Key.StartsWith("past_key_values.", StringComparison.Ordinal)))
            inputs[name] = OrtValue.CreateTensorValueFromMemory(Array.Empty<float>(), [2, meta.Dimensions[1], 0, meta.Dimensions[3]]);   // an empty cache
        try
        {
            var names = session.OutputMetadata.Keys.ToList();
            using var run = new RunOptions();
            using var results = session.Run(run, inputs.Keys.ToList(), inputs.Values.ToList(), names);
            var pairs = new List<(string, Tensor, Tensor)>();
            for (int i = 0; i < names.Count; i++)
            {
                Tensor? reference = names[i] switch
                {
                    "last_hidden_state" => expected.LastHiddenState,
                    "pooler_output" => expected.Pooled,
                    "logits" => headLogits ?? expected.Logits,
                    "seq_relationship_logits" => expected.SentenceLogits,
                    "discriminator_logits" => expected.DiscriminatorLogits,
                    _ => null,
                };
                if (reference is null) continue;
                var got = torch.tensor(results[i].GetTensorDataAsSpan<float>().ToArray(), results[i].GetTensorTypeAndShape().Shape);
                pairs.Add((names[i], got, reference.cpu().to(ScalarType.Float32).alias()));
            }
            return pairs;
        }
        finally { foreach (var v in inputs.Values) v.Dispose(); }
    }
}
