namespace Bert4Sharp.Onnx;

using Bert4Sharp.Generation;
using Bert4Sharp.Layers;
using Microsoft.ML.OnnxRuntime;
using TorchSharp;
using static TorchSharp.torch;

/// <summary>
/// An encoder–decoder (T5, mT5) exported by <see cref="Export.OnnxExport"/> — <c>model.onnx</c> (the encoder),
/// <c>decoder_cross_model.onnx</c> (every decoder layer's cross-attention keys and values from the encoder states) and
/// <c>decoder_model.onnx</c> (the decoder with its self-attention cache) — run by ONNX Runtime. <see cref="Prepare"/>
/// encodes one input, computes its cross-attention keys and values once, and returns the <see cref="ICausalLanguageModel"/>
/// the decoders drive, as <see cref="Seq2SeqLanguageModel"/> does on the TorchSharp engine.
/// </summary>
public sealed class OnnxSeq2SeqModel : IDisposable
{
    readonly InferenceSession encoder, cross, decoder;
    readonly int layers;
    readonly (long Heads, long KeySize, long ValueSize) shape;

    /// <summary>Opens the three graphs in <paramref name="directory"/>.</summary>
    /// <exception cref="FileNotFoundException">A graph is missing (names it).</exception>
    /// <exception cref="InvalidDataException">The decoder graph lacks the expected inputs (an export from before the cross-attention graph: export again).</exception>
    public OnnxSeq2SeqModel(string directory, OnnxEncoderOptions? options = null)
    {
        options ??= new();
        string enc = Path.Combine(directory, "model.onnx"), crs = Path.Combine(directory, Export.OnnxExport.CrossFileName), dec = Path.Combine(directory, Export.OnnxExport.DecoderFileName);
        foreach (var f in new[] { enc, dec, crs })
            if (!File.Exists(f))
                throw new FileNotFoundException($"{f}: missing; b4s export onnx writes model.onnx, {Export.OnnxExport.CrossFileName} and {Export.OnnxExport.DecoderFileName} for T5/mT5 (export the model again)", f);
        var sessions = new List<InferenceSession>();
        try
        {
            foreach (var f in new[] { enc, crs, dec })
            {
                sessions.Add(OnnxSession.Open(f, options, out var warning));
                Warning ??= warning;
            }
        }
        catch { foreach (var s in sessions) OnnxSession.Close(s); throw; }
        (encoder, cross, decoder) = (sessions[0], sessions[1], sessions[2]);
        var inputs = decoder.InputMetadata;
        if (!inputs.ContainsKey("cross_key_values.0.key") || !inputs.ContainsKey("past_key_values.0.key") || !decoder.OutputMetadata.ContainsKey("logits")
            || !cross.OutputMetadata.ContainsKey("cross_key_values.0.key"))
        {
            Dispose();
            throw new InvalidDataException($"{dec}: not a decoder graph with cross-attention keys as inputs and a cache (inputs {string.Join(", ", inputs.Keys)}; outputs " +
                $"{string.Join(", ", decoder.OutputMetadata.Keys)}); decoders exported before {Export.OnnxExport.CrossFileName} existed recompute them: export the T5/mT5 model again with b4s export onnx");
        }
        layers = OrtCache.Layers(inputs);
        shape = OrtCache.HeadShape(inputs);
        VocabularySize = decoder.OutputMetadata["logits"].Dimensions[2];
    }

    /// <summary>Vocabulary size.</summary>
    public int VocabularySize { get; }

    /// <summary>Why CUDA was asked for and not used (running on the CPU), else null.</summary>
    public string? Warning { get; }

    /// <summary>
    /// Encodes <paramref name="encoderIds"/> (one sequence), computes every layer's cross-attention keys and values, and
    /// returns the decoder over them (dispose it to free them).
    /// </summary>
    /// <exception cref="ArgumentException">The input is empty, or has ids outside the vocabulary.</exception>
    public OnnxSeq2SeqDecoder Prepare(IReadOnlyList<int> encoderIds)
    {
        if (encoderIds.Count == 0) throw new ArgumentException("the encoder input is empty", nameof(encoderIds));
        var idArray = encoderIds.Select(i => (long)i).ToArray();
        using (var check = torch.tensor(idArray)) Embeddings.CheckRange(check, VocabularySize, "token", "vocab_size");
        long s = encoderIds.Count;
        var ones = Enumerable.Repeat(1L, (int)s).ToArray();
        using var ids = OrtValue.CreateTensorValueFromMemory(idArray, [1, s]);
        using var mask = OrtValue.CreateTensorValueFromMemory(ones, [1, s]);
        using var run = new RunOptions();
        using var states = encoder.Run(run, ["input_ids", "attention_mask"], [ids, mask], ["last_hidden_state"]);
        var names = Enumerable.Range(0, layers).SelectMany(i => new[] { $"cross_key_values.{i}.key", $"cross_key_values.{i}.value" }).ToList();
        var keyValues = cross.Run(run, ["encoder_hidden_states"], [states[0]], names);
        // Batch 1: the decoder graph broadcasts it over the beams, so nothing is copied per step.
        var shared = names.Zip(keyValues).Select(p => (p.First, p.Second)).Append(("encoder_attention_mask", OrtValue.CreateTensorValueFromMemory(ones, [1, s]))).ToList();
        return new OnnxSeq2SeqDecoder(this, shared, keyValues);
    }

    /// <inheritdoc/>
    public void Dispose()
    {
        OnnxSession.Close(encoder);
        OnnxSession.Close(cross);
        OnnxSession.Close(decoder);
    }

    /// <summary>The decoder over one encoded input: what the decoders (greedy, beam, sampling) drive.</summary>
    public sealed class OnnxSeq2SeqDecoder : ICausalLanguageModel, IDisposable
    {
        readonly OnnxSeq2SeqModel owner;
        readonly List<(string Name, OrtValue Value)> shared;
        readonly IDisposable results;

        internal OnnxSeq2SeqDecoder(OnnxSeq2SeqModel owner, List<(string Name, OrtValue Value)> shared, IDisposable results) =>
            (this.owner, this.shared, this.results) = (owner, shared, results);

        /// <inheritdoc/>
        public int VocabularySize => owner.VocabularySize;
        /// <inheritdoc/>
        public Device Device => CPU;
        /// <inheritdoc/>
        public KeyValueCache NewCache() => new(owner.layers);

        /// <summary>Frees the cross-attention keys and values.</summary>
        public void Dispose()
        {
            shared[^1].Value.Dispose();                                                   // the mask; the rest belong to the run's results
            results.Dispose();
        }

        /// <inheritdoc/>
        /// <exception cref="ArgumentException">Ids outside the vocabulary.</exception>
        public Tensor Logits(Tensor ids, KeyValueCache? cache) => OrtCache.Run(owner.decoder, ids, [], cache, owner.layers, VocabularySize, owner.shape, shared);
    }
}
