namespace Bert4Sharp.Tasks;

using Bert4Sharp.Models;
using TorchSharp;
using static TorchSharp.torch;

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
