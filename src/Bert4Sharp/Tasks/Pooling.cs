namespace Bert4Sharp.Tasks;

using Bert4Sharp.Models;
using Bert4Sharp.Runtime;
using TorchSharp;
using static TorchSharp.torch;

/// <summary>How hidden states (B, T, H) become one vector per text.</summary>
public enum Pooling
{
    /// <summary>The pooler's output when the model has one, else the first token's ([CLS]) hidden state (bert4keras's usual classifier input).</summary>
    First,
    /// <summary>The mean of the final hidden states over real tokens (suits encoders pretrained with MLM only, whose [CLS] learned nothing special).</summary>
    Mean,
    /// <summary>The first token's final hidden state, never the pooler.</summary>
    Cls,
    /// <summary>The element-wise maximum over real tokens.</summary>
    Max,
    /// <summary>The mean over real tokens of the average of the first block's and the last block's outputs (SimCSE's "first-last-avg").</summary>
    FirstLastAverage,
}

/// <summary>The one implementation of every <see cref="Pooling"/>, shared by classifiers, sentence vectors and the encode command.</summary>
public static class Pool
{
    /// <summary>Whether <paramref name="pooling"/> needs every layer's hidden states (ask the encoder for them).</summary>
    public static bool NeedsHiddenStates(Pooling pooling) => pooling == Pooling.FirstLastAverage;

    /// <summary>
    /// One vector (B, H) per row of <paramref name="output"/>; <paramref name="mask"/> is (B, T), 1 at real tokens
    /// (null: every token is real).
    /// </summary>
    /// <exception cref="ArgumentException">First-last averaging without the hidden states.</exception>
    public static Tensor Apply(Pooling pooling, ModelOutput output, Tensor? mask)
    {
        using var scope = torch.NewDisposeScope();
        var h = output.LastHiddenState;                                                   // (B, T, H)
        var m = (mask ?? torch.ones(h.shape[0], h.shape[1], device: h.device)).unsqueeze(-1).to(h.dtype);   // (B, T, 1)
        Tensor Mean(Tensor x) => (x * m).sum(1) / m.sum(1).clamp_min(1);
        var v = pooling switch
        {
            Pooling.First => output.Pooled ?? h.select(1, 0),
            Pooling.Cls => h.select(1, 0),
            Pooling.Mean => Mean(h),
            Pooling.Max => h.MaskedFill(m == 0, double.NegativeInfinity).amax([1]),
            Pooling.FirstLastAverage => output.HiddenStates is { Count: > 1 } all
                ? Mean((all[1] + all[^1]) / 2)
                : throw new ArgumentException("first-last averaging needs every layer's hidden states (run the encoder with OutputHiddenStates)"),
            _ => throw new ArgumentOutOfRangeException(nameof(pooling), pooling, null),
        };
        return v.MoveToOuterDisposeScope();
    }
}
