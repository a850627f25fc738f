namespace Bert4Sharp.Tasks;

using Bert4Sharp.Models;
using TorchSharp;
using static TorchSharp.torch;

/// <summary>
/// A task model: a head on a TorchSharp encoder, whose encoder can run on a second engine at inference (an
/// <c>OnnxRuntimeEncoder</c> on the exported encoder: <c>b4s clue predict --engine onnx</c>). The head's own layers and
/// its decoding stay in TorchSharp and C#; only the hidden states come from the engine.
/// </summary>
public interface ITaskHead
{
    /// <summary>The TorchSharp encoder (trained; its shape and device).</summary>
    TransformerModel Encoder { get; }
    /// <summary>
    /// The engine that computes the encoder's hidden states at inference, or null for <see cref="Encoder"/>. Only in
    /// evaluation mode: training needs the TorchSharp encoder's gradients.
    /// </summary>
    IEncoder? Engine { get; set; }
}

/// <summary>What every head on an encoder does the same way: check the encoder, initialise the new layers, follow its device.</summary>
public static class TaskHeads
{
    /// <summary>Refuses an encoder that was not built as a plain encoder (a language-model head would be wasted and its outputs differ).</summary>
    /// <exception cref="ArgumentException">Another <see cref="Application"/>.</exception>
    public static TransformerModel RequireEncoder(TransformerModel encoder)
    {
        ArgumentNullException.ThrowIfNull(encoder);
        if (encoder.Application != Application.Encoder) throw new ArgumentException($"the encoder must be built with Application.Encoder, got {encoder.Application}");
        return encoder;
    }

    /// <summary>
    /// The hidden states a head reads: from <paramref name="head"/>'s <see cref="ITaskHead.Engine"/> when one is set,
    /// moved to the head's device, else from its TorchSharp encoder.
    /// </summary>
    /// <exception cref="InvalidOperationException">An engine is set and the head is in training mode.</exception>
    public static ModelOutput Encode<THead>(THead head, Tensor ids, Tensor? segments, Tensor? mask, bool hiddenStates = false) where THead : nn.Module, ITaskHead
    {
        if (head.Engine is not { } engine) return head.Encoder.Encode(ids, segments, mask, hiddenStates);
        if (head.training)
            throw new InvalidOperationException($"{head.GetName()} is in training mode with the {engine.Engine} engine set: training runs on the TorchSharp encoder; set Engine = null first, or call eval() to predict");
        var device = engine.Device;
        var o = engine.Encode(ids.to(device), segments?.to(device), mask?.to(device), hiddenStates);
        var target = head.Encoder.Device;
        if (o.LastHiddenState.device == target) return o;
        using (o) return new ModelOutput { LastHiddenState = o.LastHiddenState.to(target), Pooled = o.Pooled?.to(target), HiddenStates = o.HiddenStates?.Select(h => h.to(target)).ToList() };
    }

    /// <summary>
    /// Initialises every parameter of <paramref name="model"/> outside <c>encoder.*</c> as BERT's dense layers —
    /// matrices N(0, initializer_range), vectors zero — and moves the model to the encoder's device.
    /// </summary>
    public static void Initialize(nn.Module model, TransformerModel encoder)
    {
        using (torch.no_grad())
            foreach (var (_, p) in model.named_parameters().Where(p => !p.name.StartsWith("encoder.", StringComparison.Ordinal)))
                if (p.dim() >= 2) p.normal_(0, encoder.Config.InitializerRange); else p.zero_();
        model.to(encoder.Device);
    }
}
