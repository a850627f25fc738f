namespace Bert4Sharp.Models;

using static TorchSharp.torch;

/// <summary>
/// The encoder seam: ids, segments and mask in, hidden states out. Pipelines, sentence embeddings, task heads at
/// inference and the server see only this, so a second engine (an ONNX Runtime session) can stand in for the
/// TorchSharp model without changing them.
/// </summary>
public interface IEncoder
{
    /// <summary>The engine's name (torch, onnxruntime).</summary>
    string Engine { get; }
    /// <summary>Width of the hidden states.</summary>
    int HiddenSize { get; }
    /// <summary>Longest sequence the model takes.</summary>
    long MaxLength { get; }
    /// <summary>Device inputs should be created on.</summary>
    Device Device { get; }
    /// <summary>
    /// Hidden states (B, T, H) of ids (B, T) int64 with optional segment ids (B, T) and attention mask (B, T, 1 at
    /// real tokens), plus the pooler output when the model has one and, when asked, every layer's states.
    /// </summary>
    ModelOutput Encode(Tensor ids, Tensor? segments, Tensor? attentionMask, bool outputHiddenStates = false);
}

/// <summary>
/// An engine that also has a masked-LM head: logits (B, T, V) for ids (B, T), optional segments and mask. What
/// <see cref="TransformerPipeline.FillMask"/> needs from an encoder that is not a <see cref="TransformerModel"/>
/// (an exported MLM graph on ONNX Runtime).
/// </summary>
public interface IMaskedLanguageModel
{
    /// <summary>Whether this engine has the head (the graph has a <c>logits</c> output).</summary>
    bool HasMaskedLanguageModelHead { get; }
    /// <summary>MLM logits (B, T, V).</summary>
    Tensor MaskedLanguageModelLogits(Tensor ids, Tensor? segments, Tensor? attentionMask);
}

