namespace Bert4Sharp.Layers;

using Bert4Sharp.Runtime;
using TorchSharp;
using static TorchSharp.torch;

/// <summary>
/// The attention masks every model family shares: which keys a query may see, and the additive form that
/// attention adds to its scores (0 where visible, the most negative float elsewhere, as Hugging Face).
/// </summary>
public static class AttentionMasks
{
    /// <summary>
    /// (T, past + T) booleans for causal attention with <paramref name="past"/> cached positions:
    /// query i sits at position past + i and sees keys 0..past + i.
    /// </summary>
    public static Tensor Causal(long t, long past, Device device) =>
        torch.ones(t, past + t, dtype: ScalarType.Bool, device: device).tril(past);

    /// <summary>Turns a boolean "may attend" tensor into an additive bias of the same shape.</summary>
    public static Tensor Additive(Tensor allowed, ScalarType dtype) =>
        torch.zeros(allowed.shape, dtype: dtype, device: allowed.device).MaskedFill(allowed.logical_not(), torch.finfo(dtype).min);

    /// <summary>A (B, T) padding mask (nonzero at real tokens, 0 at padding) as an additive (B, 1, 1, T) bias.</summary>
    public static Tensor Padding(Tensor mask, ScalarType dtype) =>
        Additive(mask.to(ScalarType.Bool).unsqueeze(1).unsqueeze(1), dtype);
}
