namespace Bert4Sharp.Onnx;

using Bert4Sharp.Generation;
using Bert4Sharp.Layers;
using Microsoft.ML.OnnxRuntime;
using TorchSharp;
using static TorchSharp.torch;

/// <summary>
/// An encoder–decoder (T5, mT5) exported by <see cref="Export.OnnxExport"/> — <c>model.onnx</c> (the encoder) and
/// <c>decoder_model.onnx</c> (the decoder with its self-attention cache) — run by ONNX Runtime. <see cref="Prepare"/>
/// encodes one input and returns the <see cref="ICausalLanguageModel"/> the decoders drive, as
/// <see cref="Seq2SeqLanguageModel"/> does on the TorchSharp engine.
/// </summary>
public sealed class OnnxSeq2SeqModel : IDisposable
{
    readonly InferenceSession encoder, decoder;
    readonly int layers;
    readonly long heads, keySize, valueSize;

    /// <summary>Opens the two graphs in <paramref name="directory"/>.</summary>
    /// <exception cref="FileNotFoundException">A graph is missing (names it).</exception>
    /// <exception cref="InvalidDataException">The decoder graph lacks the expected inputs.</exception>
    public OnnxSeq2SeqModel(string directory, OnnxEncoderOptions? options = null)
    {
        options ??= new();
        string enc = Path.Combine(directory, "model.onnx"), dec = Path.Combine(directory, Export.OnnxExport.DecoderFileName);
        foreach (var f in new[] { enc, dec })
            if (!File.Exists(f)) throw new FileNotFoundException($"{f}: missing; b4s export onnx writes model.onnx and {Export.OnnxExport.DecoderFileName} for T5/mT5", f);
        encoder = OnnxSession.Open(enc, options, out var warning);
        try { decoder = OnnxSession.Open(dec, options, out _); }
        catch { encoder.Dispose(); throw; }
        Warning = warning;
        var inputs = decoder.InputMetadata;
        if (!inputs.ContainsKey("encoder_hidden_states") || !inputs.ContainsKey("past_key_values.0.key") || !decoder.OutputMetadata.ContainsKey("logits"))
        {
            Dispose();
            throw new InvalidDataException($"{dec}: not a decoder graph with a cache (inputs {string.Join(", ", inputs.Keys)}; outputs {string.Join(", ", decoder.OutputMetadata.Keys)}); export the T5/mT5 model again with b4s export onnx");
        }
        layers = OrtCache.Layers(inputs);
        (heads, keySize, valueSize) = OrtCache.HeadShape(inputs);
        VocabularySize = decoder.OutputMetadata["logits"].Dimensions[2];
    }

    /// <summary>Vocabulary size.</summary>
    public int VocabularySize { get; }

    /// <summary>Why CUDA was asked for and not used (running on the CPU), else null.</summary>
    public string? Warning { get; }

    /// <summary>Encodes <paramref name="encoderIds"/> (one sequence) and returns the decoder over it (dispose it to free the encoder states).</summary>
    /// <exception cref="ArgumentException">The input is empty.</exception>
    public OnnxSeq2SeqDecoder Prepare(IReadOnlyList<int> encoderIds)
    {
        if (encoderIds.Count == 0) throw new ArgumentException("the encoder input is empty", nameof(encoderIds));
        long s = encoderIds.Count;
        using var ids = OrtValue.CreateTensorValueFromMemory(encoderIds.Select(i => (long)i).ToArray(), [1, s]);
        using var mask = OrtValue.CreateTensorValueFromMemory(Enumerable.Repeat(1L, (int)s).ToArray(), [1, s]);
        using var run = new RunOptions();
        using var results = encoder.Run(run, ["input_ids", "attention_mask"], [ids, mask], ["last_hidden_state"]);
        return new OnnxSeq2SeqDecoder(this, OrtCache.Torch(results[0]).DetachFromDisposeScope());
    }

    /// <inheritdoc/>
    public void Dispose()
    {
        OnnxSession.Close(encoder);
        OnnxSession.Close(decoder);
    }

    /// <summary>The decoder over one encoded input: what the decoders (greedy, beam, sampling) drive.</summary>
    public sealed class OnnxSeq2SeqDecoder : ICausalLanguageModel, IDisposable
    {
        readonly OnnxSeq2SeqModel owner;
        readonly Tensor memory;

        internal OnnxSeq2SeqDecoder(OnnxSeq2SeqModel owner, Tensor memory) => (this.owner, this.memory) = (owner, memory);

        /// <inheritdoc/>
        public int VocabularySize => owner.VocabularySize;
        /// <inheritdoc/>
        public Device Device => CPU;
        /// <inheritdoc/>
        public KeyValueCache NewCache() => new(owner.layers);
        /// <summary>Frees the encoder states.</summary>
        public void Dispose() => memory.Dispose();

        /// <inheritdoc/>
        public Tensor Logits(Tensor ids, KeyValueCache? cache)
        {
            long b = ids.shape[0], s = memory.shape[1];
            // The encoder states repeated to the decoding batch (beams), as the TorchSharp adapter does.
            using var expanded = memory.expand(b, -1, -1).contiguous();
            var values = new List<(string Name, OrtValue Value)>
            {
                ("input_ids", OrtCache.Ids(ids)),
                ("encoder_hidden_states", OrtCache.Ort(expanded, [])),
                ("encoder_attention_mask", OrtValue.CreateTensorValueFromMemory(Enumerable.Repeat(1L, (int)(b * s)).ToArray(), [b, s])),
            };
            return OrtCache.Run(owner.decoder, values, cache, owner.layers, b, owner.heads, owner.keySize, owner.valueSize);
        }
    }
}
