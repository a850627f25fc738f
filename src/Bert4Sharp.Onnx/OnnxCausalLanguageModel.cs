namespace Bert4Sharp.Onnx;

using System.Runtime.InteropServices;
using Bert4Sharp.Generation;
using Bert4Sharp.Layers;
using Microsoft.ML.OnnxRuntime;
using TorchSharp;
using static TorchSharp.torch;

/// <summary>
/// A causal LM or UniLM graph written by <see cref="Export.OnnxExport"/> (inputs <c>past_key_values.N.key</c>/<c>.value</c>,
/// outputs <c>logits</c> and <c>present.N.key</c>/<c>.value</c>) run by ONNX Runtime behind
/// <see cref="ICausalLanguageModel"/>, so greedy, beam search, sampling and streaming decode on it exactly as on the
/// TorchSharp model. The cache lives in a <see cref="KeyValueCache"/> (beam search reorders it as usual); for UniLM the
/// first call is the source (segment 0) and later tokens are target (segment 1), as <see cref="CausalLanguageModel"/>.
/// </summary>
public sealed class OnnxCausalLanguageModel : ICausalLanguageModel, IDisposable
{
    readonly InferenceSession session;
    readonly int layers;
    readonly long maxLength;
    readonly (long Heads, long KeySize, long ValueSize) shape;
    readonly bool unilm, segments;

    /// <summary>Opens <paramref name="path"/> (a .onnx file, or a directory holding model.onnx).</summary>
    /// <exception cref="FileNotFoundException">No graph there.</exception>
    /// <exception cref="InvalidDataException">The graph has no cache inputs or no logits output (names what it has).</exception>
    public OnnxCausalLanguageModel(string path, OnnxEncoderOptions? options = null)
    {
        options ??= new();
        (session, string file) = OnnxSession.OpenPath(path, options, out var warning);
        Warning = warning;
        var inputs = session.InputMetadata;
        layers = OrtCache.Layers(inputs);
        if (layers == 0 || !inputs.ContainsKey("input_ids") || !inputs.ContainsKey("attention_mask") || !session.OutputMetadata.ContainsKey("logits"))
        {
            session.Dispose();
            throw new InvalidDataException($"{file}: not a causal LM graph with a key/value cache (inputs {string.Join(", ", inputs.Keys)}; outputs {string.Join(", ", session.OutputMetadata.Keys)}); " +
                "b4s export onnx writes one for GPT families and LM/UniLM applications, except NEZHA, GAU-α, RoBERTa-style positions and RealFormer, which decode without a cache: use the torch engine for those");
        }
        shape = OrtCache.HeadShape(inputs);
        VocabularySize = session.OutputMetadata["logits"].Dimensions[2];
        var meta = session.ModelMetadata.CustomMetadataMap;
        unilm = meta.TryGetValue("bert4sharp.application", out var app) && app == "UniLM";
        maxLength = meta.TryGetValue("bert4sharp.max_length", out var m) && long.TryParse(m, out var ml) ? ml : long.MaxValue;
        segments = inputs.ContainsKey("token_type_ids");
        GraphPath = file;
    }

    /// <summary>The graph file.</summary>
    public string GraphPath { get; }

    /// <summary>Why CUDA was asked for and not used (running on the CPU), else null.</summary>
    public string? Warning { get; }

    /// <inheritdoc/>
    public int VocabularySize { get; }

    /// <inheritdoc/>
    public Device Device => CPU;

    /// <inheritdoc/>
    public KeyValueCache NewCache() => new(layers);

    /// <inheritdoc/>
    /// <exception cref="ArgumentException">Bad shapes, UniLM without a cache, more positions than the graph's table, or ids outside the vocabulary.</exception>
    public Tensor Logits(Tensor ids, KeyValueCache? cache)
    {
        if (ids.dim() != 2) throw new ArgumentException($"ids must be (batch, length), got shape [{string.Join(", ", ids.shape)}]");
        if (cache is null && unilm) throw new ArgumentException("UniLM decoding without a cache would need the source length; use the cache");
        long b = ids.shape[0], t = ids.shape[1], past = cache?.Length ?? 0;
        if (past + t > maxLength) throw new ArgumentException($"the sequence needs {past + t} positions but {GraphPath} takes {maxLength}; generate fewer tokens");
        bool source = cache is null || past == 0 || !unilm;
        var values = new List<(string Name, OrtValue Value)>
        {
            ("attention_mask", OrtValue.CreateTensorValueFromMemory(Enumerable.Repeat(1L, (int)(b * (past + t))).ToArray(), [b, past + t])),
        };
        if (segments) values.Add(("token_type_ids", OrtValue.CreateTensorValueFromMemory(Enumerable.Repeat(source ? 0L : 1L, (int)(b * t)).ToArray(), [b, t])));
        return OrtCache.Run(session, ids, values, cache, layers, VocabularySize, shape);
    }

    /// <inheritdoc/>
    public void Dispose() => OnnxSession.Close(session);
}

/// <summary>
/// The key/value cache across the ONNX Runtime boundary: <see cref="KeyValueCache"/> tensors in, presents back into it.
/// Neither direction copies: the inputs are ONNX Runtime views of the TorchSharp tensors' memory, and the graph writes its
/// logits and presents straight into TorchSharp tensors allocated for them (per token, two copies of the whole cache
/// through managed arrays had cost about 12 % of a GPT-2-small step, 2026-12-01).
/// </summary>
internal static class OrtCache
{
    /// <summary>
    /// Checks <paramref name="ids"/> (B, T) against the vocabulary (as the TorchSharp engine's embedding does; else ONNX
    /// Runtime's Gather fails with a native message), adds them as <c>input_ids</c> and <c>past_key_values.N.key</c>/<c>.value</c>
    /// from <paramref name="cache"/> (empty (B, h, 0, d) without one) to <paramref name="values"/>, runs, stores
    /// <c>present.N.*</c> into the cache and returns the logits (B, T, V); disposes the inputs in <paramref name="values"/>,
    /// not those in <paramref name="shared"/> (owned by the caller, reused across steps).
    /// </summary>
    /// <exception cref="ArgumentException">An id outside [0, <paramref name="vocabulary"/>).</exception>
    public static Tensor Run(InferenceSession session, Tensor ids, List<(string Name, OrtValue Value)> values, KeyValueCache? cache, int layers, long vocabulary,
        (long Heads, long KeySize, long ValueSize) shape, IReadOnlyList<(string Name, OrtValue Value)>? shared = null)
    {
        var (heads, keySize, valueSize) = shape;
        long batch = ids.shape[0], length = ids.shape[1];
        try { Embeddings.CheckRange(ids, vocabulary, "token", "vocab_size"); }
        catch { foreach (var (_, v) in values) v.Dispose(); throw; }
        values.Add(("input_ids", Ids(ids)));
        long total = (cache?.Length ?? 0) + length;
        var outputs = new List<(string Name, Tensor Tensor)> { ("logits", torch.empty(batch, length, vocabulary)) };
        try
        {
            for (int i = 0; i < layers; i++)
            {
                var kv = cache?[i];
                values.Add(($"past_key_values.{i}.key", Ort(kv?.Key, [batch, heads, 0, keySize])));
                values.Add(($"past_key_values.{i}.value", Ort(kv?.Value, [batch, heads, 0, valueSize])));
                if (cache is null) continue;
                outputs.Add(($"present.{i}.key", torch.empty(batch, heads, total, keySize)));
                outputs.Add(($"present.{i}.value", torch.empty(batch, heads, total, valueSize)));
            }
            var inputs = shared is null ? values : [.. values, .. shared];
            var views = outputs.Select(o => View(o.Tensor)).ToList();
            try
            {
                using var run = new RunOptions();
                session.Run(run, inputs.Select(v => v.Name).ToList(), inputs.Select(v => v.Value).ToList(), outputs.Select(o => o.Name).ToList(), views);
            }
            finally { foreach (var v in views) v.Dispose(); }
            if (cache is not null)
                for (int i = 0; i < layers; i++) cache.Set(i, outputs[1 + 2 * i].Tensor, outputs[2 + 2 * i].Tensor);
            return outputs[0].Tensor;
        }
        finally { foreach (var (_, v) in values) v.Dispose(); }
    }

    /// <summary>Layers of a cached graph: how many <c>past_key_values.N.key</c> inputs it takes.</summary>
    public static int Layers(IReadOnlyDictionary<string, NodeMetadata> inputs) =>
        inputs.Keys.Count(k => k.StartsWith("past_key_values.", StringComparison.Ordinal) && k.EndsWith(".key", StringComparison.Ordinal));

    /// <summary>Heads, key width and value width of a cached graph, from its <c>past_key_values.0.*</c> inputs.</summary>
    public static (long Heads, long KeySize, long ValueSize) HeadShape(IReadOnlyDictionary<string, NodeMetadata> inputs)
    {
        var key = inputs["past_key_values.0.key"].Dimensions;
        return (key[1], key[3], inputs["past_key_values.0.value"].Dimensions[3]);
    }

    /// <summary>
    /// A float tensor as an ONNX Runtime value — a view of its memory when it is a contiguous float32 CPU tensor (valid
    /// while the tensor lives), else one block copy — or an empty one of <paramref name="emptyShape"/>.
    /// </summary>
    public static OrtValue Ort(Tensor? t, long[] emptyShape)
    {
        if (t is null) return OrtValue.CreateTensorValueFromMemory(Array.Empty<float>(), emptyShape);
        if (t.dtype == ScalarType.Float32 && t.device_type == DeviceType.CPU && t.is_contiguous()) return View(t);
        using var c = t.to(ScalarType.Float32).cpu().contiguous();
        var data = new float[c.numel()];
        MemoryMarshal.Cast<byte, float>(c.bytes).CopyTo(data);      // element-wise accessors cost ~10× a block copy on a cache of megabytes
        return OrtValue.CreateTensorValueFromMemory(data, t.shape);
    }

    /// <summary>An ONNX Runtime view of a contiguous float32 CPU tensor's memory (no copy; dispose it before the tensor).</summary>
    static unsafe OrtValue View(Tensor t)
    {
        var bytes = t.bytes;
        fixed (byte* p = bytes)                                                                       // native memory: it does not move
            return OrtValue.CreateTensorValueWithData(OrtMemoryInfo.DefaultInstance, Microsoft.ML.OnnxRuntime.Tensors.TensorElementType.Float, t.shape, (IntPtr)p, bytes.Length);
    }

    /// <summary>An ONNX Runtime float output as a TorchSharp tensor (one block copy).</summary>
    public static Tensor Torch(OrtValue v)
    {
        var t = torch.empty(v.GetTensorTypeAndShape().Shape, ScalarType.Float32);
        v.GetTensorDataAsSpan<float>().CopyTo(MemoryMarshal.Cast<byte, float>(t.bytes));
        return t;
    }

    /// <summary>int64 ids as an ONNX Runtime value.</summary>
    public static OrtValue Ids(Tensor ids) => OrtValue.CreateTensorValueFromMemory(ids.to(ScalarType.Int64).cpu().contiguous().data<long>().ToArray(), ids.shape);
}
