namespace Bert4Sharp.Onnx;

using Bert4Sharp.Embeddings;
using Bert4Sharp.Models;
using Bert4Sharp.Tokenization;
using Microsoft.ML.OnnxRuntime;
using TorchSharp;
using static TorchSharp.torch;

/// <summary>Options of <see cref="OnnxRuntimeEncoder"/>.</summary>
public sealed record OnnxEncoderOptions
{
    /// <summary>Intra-op threads (0: ONNX Runtime's default, one per core).</summary>
    public int Threads { get; init; }
    /// <summary>Longest sequence the graph was exported for (its position table); null: from config.json beside the graph, else unbounded.</summary>
    public long? MaxLength { get; init; }
    /// <summary>Graph optimisation level (all by default).</summary>
    public GraphOptimizationLevel Optimization { get; init; } = GraphOptimizationLevel.ORT_ENABLE_ALL;
    /// <summary>
    /// Run on the CUDA execution provider (GPU 0) when this process has one (the <c>Microsoft.ML.OnnxRuntime.Gpu.Linux</c>
    /// package, CUDA 13 and a GPU); otherwise the CPU, and the model's <c>Warning</c> says why.
    /// </summary>
    public bool Cuda { get; init; }
    /// <summary>Write ONNX Runtime's per-node profile (JSON) to files starting with this path; null: off.</summary>
    public string? ProfilePrefix { get; init; }
}

/// <summary>Opens ONNX Runtime sessions with <see cref="OnnxEncoderOptions"/>: the one place the engine's session options are set.</summary>
public static class OnnxSession
{
    static readonly System.Runtime.CompilerServices.ConditionalWeakTable<InferenceSession, string> Profiled = [];

    /// <summary>Disposes <paramref name="session"/>, writing its profile first when it was opened with <see cref="OnnxEncoderOptions.ProfilePrefix"/>.</summary>
    public static void Close(InferenceSession session)
    {
        if (Profiled.Remove(session)) session.EndProfiling();                            // once: a second Dispose must not touch a released session
        session.Dispose();
    }

    /// <summary>A session for <paramref name="path"/>: a .onnx file, or a directory holding model.onnx.</summary>
    /// <exception cref="FileNotFoundException">No graph there.</exception>
    public static (InferenceSession Session, string File) OpenPath(string path, OnnxEncoderOptions options, out string? warning)
    {
        string file = Directory.Exists(path) ? Path.Combine(path, "model.onnx") : path;
        if (!File.Exists(file)) throw new FileNotFoundException($"{file}: no ONNX graph (give a .onnx file or a directory with model.onnx)", file);
        return (Open(file, options, out warning), file);
    }

    /// <summary>A session for <paramref name="file"/>; <paramref name="warning"/> says why CUDA, when asked for, is not used.</summary>
    /// <exception cref="InvalidDataException">ONNX Runtime cannot load it (its message included).</exception>
    public static InferenceSession Open(string file, OnnxEncoderOptions options, out string? warning)
    {
        using var so = new SessionOptions { GraphOptimizationLevel = options.Optimization, IntraOpNumThreads = options.Threads };
        if (options.ProfilePrefix is { } prefix) { so.ProfileOutputPathPrefix = prefix; so.EnableProfiling = true; }   // the prefix first: enabling reads it
        warning = null;
        if (options.Cuda)
        {
            try { so.AppendExecutionProvider_CUDA(0); }
            catch (Exception e) when (e is OnnxRuntimeException or EntryPointNotFoundException or DllNotFoundException)
            {
                warning = $"the CUDA execution provider is not available here ({e.Message.Split('\n')[0]}); running on the CPU; it needs the Microsoft.ML.OnnxRuntime.Gpu.Linux package (-p:OnnxRuntimeGpu=true), CUDA 13 and cuDNN 9 libraries on the loader path, and a GPU";
            }
        }
        try
        {
            var session = new InferenceSession(file, so);
            if (options.ProfilePrefix is not null) Profiled.Add(session, file);
            return session;
        }
        catch (OnnxRuntimeException e) { throw new InvalidDataException($"{file}: ONNX Runtime cannot load the graph ({e.Message})", e); }
    }
}

/// <summary>
/// An encoder exported to ONNX (Hugging Face / Optimum / sentence-transformers graphs: inputs <c>input_ids</c>,
/// <c>attention_mask</c>, optionally <c>token_type_ids</c>; a rank-3 output of hidden states and optionally a rank-2
/// pooler output) run by ONNX Runtime behind <see cref="IEncoder"/>, so pipelines and heads use it exactly as they
/// use a <see cref="TransformerModel"/>. Inputs and outputs cross as TorchSharp CPU tensors.
/// </summary>
public sealed class OnnxRuntimeEncoder : IEncoder, IMaskedLanguageModel, IDisposable
{
    readonly InferenceSession session;
    readonly string ids, mask;
    readonly string? segments;
    readonly string hidden;
    readonly string? pooled;

    /// <summary>
    /// Sentence vectors on ONNX Runtime from a model directory (model.onnx + vocab.txt, e.g. <c>b4s export onnx</c> output or
    /// the built-in model): the directory's pooling options and whitening as <see cref="SentenceEncoder.FromDirectory"/> reads them.
    /// The encoder is <see cref="SentenceEncoder.Encoder"/> (dispose it with the sentence encoder's owner).
    /// </summary>
    /// <exception cref="FileNotFoundException">No vocab.txt or no graph.</exception>
    public static SentenceEncoder LoadSentenceEncoder(string directory, SentenceEncoderOptions? options = null, OnnxEncoderOptions? engine = null, bool whitening = true)
    {
        string vocab = Path.Combine(directory, "vocab.txt");
        if (!File.Exists(vocab)) throw new FileNotFoundException($"{directory}: no vocab.txt; sentence vectors need the model's WordPiece vocabulary", vocab);
        var tokenizer = BertWordPieceTokenizer.FromFile(vocab, new BertWordPieceOptions { LowerCase = true });   // as AutoModel reads vocab.txt
        return SentenceEncoder.FromDirectory(new OnnxRuntimeEncoder(directory, engine), tokenizer, directory, options, whitening);
    }

    /// <summary>Opens <paramref name="path"/> (a .onnx file, or a directory holding model.onnx).</summary>
    /// <exception cref="FileNotFoundException">No graph there.</exception>
    /// <exception cref="InvalidDataException">The graph has no <c>input_ids</c>/<c>attention_mask</c> inputs or no rank-3 float output.</exception>
    public OnnxRuntimeEncoder(string path, OnnxEncoderOptions? options = null)
    {
        options ??= new();
        (session, string file) = OnnxSession.OpenPath(path, options, out var warning);
        Warning = warning;
        GraphPath = file;
        var inputs = session.InputMetadata;
        string Input(string name) => inputs.ContainsKey(name) ? name
            : throw new InvalidDataException($"{file}: the graph has no '{name}' input (it has {string.Join(", ", inputs.Keys)}); export the encoder with input_ids, attention_mask[, token_type_ids]");
        ids = Input("input_ids");
        mask = Input("attention_mask");
        segments = inputs.ContainsKey("token_type_ids") ? "token_type_ids" : null;
        var outputs = session.OutputMetadata;
        if (inputs.Keys.Any(k => k.StartsWith("past_key_values.", StringComparison.Ordinal)))
            throw new InvalidDataException($"{file}: a decoding graph with a key/value cache, not an encoder; open it with OnnxCausalLanguageModel (b4s generate --engine onnx)");
        hidden = outputs.ContainsKey("last_hidden_state") ? "last_hidden_state"
            : outputs.FirstOrDefault(o => o.Value.Dimensions.Length == 3 && o.Value.ElementType == typeof(float)).Key
            ?? throw new InvalidDataException($"{file}: no float (batch, sequence, hidden) output among {string.Join(", ", outputs.Keys)}");
        int h = outputs[hidden].Dimensions[2];
        if (h <= 0) throw new InvalidDataException($"{file}: the hidden size of '{hidden}' is not fixed in the graph");
        // The pooler by its Hugging Face name; else the one rank-2 output of the hidden width, unless it is a
        // sentence-transformers embedding (mean-pooled, maybe normalised) or a head's logits, which are not a pooler.
        var rank2 = outputs.Where(o => o.Value.Dimensions.Length == 2 && o.Value.ElementType == typeof(float) && o.Value.Dimensions[1] == h).Select(o => o.Key).ToList();
        pooled = rank2.Contains("pooler_output") ? "pooler_output"
            : rank2.Count == 1 && !rank2[0].Contains("embedding", StringComparison.OrdinalIgnoreCase) && !rank2[0].Contains("logits", StringComparison.OrdinalIgnoreCase) ? rank2[0] : null;
        foreach (var name in new[] { ids, mask, segments }.OfType<string>())
            if (inputs[name].ElementType != typeof(long) && inputs[name].ElementType != typeof(int))
                throw new InvalidDataException($"{file}: input '{name}' is {inputs[name].ElementType.Name}; int64 or int32 ids are expected");
        HiddenSize = h;
        // The length the exporter recorded (n² for hierarchical positions), else config.json beside the graph.
        MaxLength = options.MaxLength
            ?? (session.ModelMetadata.CustomMetadataMap.TryGetValue("bert4sharp.max_length", out var recorded) && long.TryParse(recorded, out var ml) ? ml : (long?)null)
            ?? MaxLengthFromConfig(System.IO.Path.GetDirectoryName(Path.GetFullPath(file))!);
        application = session.ModelMetadata.CustomMetadataMap.GetValueOrDefault("bert4sharp.application");
    }

    static long MaxLengthFromConfig(string directory)
    {
        string config = System.IO.Path.Combine(directory, "config.json");
        return File.Exists(config) && TransformerConfig.Load(config).MaxPositionEmbeddings is > 0 and var m ? m : int.MaxValue;
    }

    /// <summary>The graph file.</summary>
    public string GraphPath { get; }

    /// <summary>Why CUDA was asked for and not used (running on the CPU), else null.</summary>
    public string? Warning { get; }

    /// <inheritdoc/>
    public string Engine => "onnxruntime";
    /// <inheritdoc/>
    public int HiddenSize { get; }
    /// <inheritdoc/>
    public long MaxLength { get; }
    /// <inheritdoc/>
    public Device Device => CPU;

    /// <inheritdoc/>
    /// <exception cref="NotSupportedException">Every layer's hidden states were asked for (the graph exposes only the last).</exception>
    public ModelOutput Encode(Tensor inputIds, Tensor? segmentIds, Tensor? attentionMask, bool outputHiddenStates = false)
    {
        if (outputHiddenStates) throw new NotSupportedException($"{GraphPath} exposes only its last hidden states; use the TorchSharp engine for every layer's states");
        var o = Run(pooled is null ? [hidden] : [hidden, pooled], inputIds, segmentIds, attentionMask);
        return new ModelOutput { LastHiddenState = o[0], Pooled = pooled is null ? null : o[1] };
    }

    readonly string? application;

    /// <inheritdoc/>
    /// <remarks>A (B, T, V) <c>logits</c> output of a graph that is not a causal LM or UniLM (as the exporter records it).</remarks>
    public bool HasMaskedLanguageModelHead => session.OutputMetadata.TryGetValue("logits", out var l) && l.Dimensions.Length == 3
        && application is null or nameof(Application.MaskedLM) or nameof(Application.PreTraining);

    /// <inheritdoc/>
    /// <exception cref="ArgumentException">The graph has no (B, T, V) <c>logits</c> output.</exception>
    public Tensor MaskedLanguageModelLogits(Tensor ids, Tensor? segments, Tensor? attentionMask) => HasMaskedLanguageModelHead
        ? Run(["logits"], ids, segments, attentionMask)[0]
        : throw new ArgumentException($"{GraphPath} has no (batch, sequence, vocabulary) logits output; export the model with --application mlm");

    /// <summary>
    /// Any outputs of the graph by name (e.g. <c>logits</c> of an exported classifier) for ids (B, T), optional segments
    /// and mask, as float32 CPU tensors.
    /// </summary>
    /// <exception cref="ArgumentException">Bad shapes, too long, or an output the graph does not have (names the ones it has).</exception>
    public Tensor[] Run(IReadOnlyList<string> outputs, Tensor inputIds, Tensor? segmentIds, Tensor? attentionMask)
    {
        foreach (var name in outputs)
            if (!session.OutputMetadata.ContainsKey(name)) throw new ArgumentException($"{GraphPath} has no output '{name}' (it has {string.Join(", ", session.OutputMetadata.Keys)})");
        if (inputIds.dim() != 2) throw new ArgumentException($"ids must be (batch, length), got shape [{string.Join(", ", inputIds.shape)}]");
        long b = inputIds.shape[0], t = inputIds.shape[1];
        if (t > MaxLength) throw new ArgumentException($"the sequence needs {t} positions but {GraphPath} takes {MaxLength}; truncate the text");
        long[] shape = [b, t];
        long[] Values(Tensor x) => x.to(ScalarType.Int64).cpu().contiguous().data<long>().ToArray();
        // Each input in the element type the graph declares (int64 as exported by PyTorch, int32 by some converters).
        OrtValue Input(string name, long[] v) => session.InputMetadata[name].ElementType == typeof(int)
            ? OrtValue.CreateTensorValueFromMemory(v.Select(x => checked((int)x)).ToArray(), shape)
            : OrtValue.CreateTensorValueFromMemory(v, shape);
        var names = new List<string> { ids, mask };
        var values = new List<OrtValue>
        {
            Input(ids, Values(inputIds)),
            Input(mask, attentionMask is null ? Enumerable.Repeat(1L, (int)(b * t)).ToArray() : Values(attentionMask)),
        };
        if (segments is not null)
        {
            names.Add(segments);
            values.Add(Input(segments, segmentIds is null ? new long[b * t] : Values(segmentIds)));
        }
        try
        {
            using var run = new RunOptions();
            using var results = session.Run(run, names, values, outputs);
            return [.. results.Select(OrtCache.Torch)];
        }
        finally { foreach (var v in values) v.Dispose(); }
    }

    /// <inheritdoc/>
    public void Dispose() => OnnxSession.Close(session);
}
