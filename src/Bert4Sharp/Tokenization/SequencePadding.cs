namespace Bert4Sharp.Tokenization;

using TorchSharp;
using static TorchSharp.torch;

/// <summary>
/// The one way sequences of ids become a padded (B, T) int64 tensor (bert4keras <c>sequence_padding</c>):
/// tokenizer batches, language-model batches, classifier batches and MLM batches all go through it.
/// </summary>
public static class SequencePadding
{
    /// <summary>
    /// Right-pads <paramref name="sequences"/> with <paramref name="padValue"/> to the longest (or to
    /// <paramref name="length"/>, truncating longer ones) and returns (B, T) values with the (B, T) 1/0 mask of real positions.
    /// </summary>
    /// <exception cref="ArgumentException">An empty batch, or a non-positive length.</exception>
    public static (Tensor Values, Tensor Mask) Pad(IReadOnlyList<IReadOnlyList<int>> sequences, long padValue = 0, Device? device = null, int? length = null)
    {
        var (values, mask, b, t) = Arrays(sequences, padValue, length);
        return (torch.tensor(values, [b, t], device: device), torch.tensor(mask, [b, t], device: device));
    }

    /// <summary>Like <see cref="Pad"/> without the mask (segment ids, labels padded with −100).</summary>
    public static Tensor PadValues(IReadOnlyList<IReadOnlyList<int>> sequences, long padValue = 0, Device? device = null, int? length = null)
    {
        var (values, _, b, t) = Arrays(sequences, padValue, length);
        return torch.tensor(values, [b, t], device: device);
    }

    static (long[] Values, long[] Mask, int B, int T) Arrays(IReadOnlyList<IReadOnlyList<int>> sequences, long padValue, int? length)
    {
        ArgumentNullException.ThrowIfNull(sequences);
        if (sequences.Count == 0) throw new ArgumentException("the batch is empty: pass at least one sequence", nameof(sequences));
        if (length is <= 0) throw new ArgumentException($"the padded length must be positive, got {length}", nameof(length));
        int b = sequences.Count, t = length ?? Math.Max(1, sequences.Max(s => s.Count));
        var values = new long[b * t];
        var mask = new long[b * t];
        Array.Fill(values, padValue);
        for (int i = 0; i < b; i++)
        {
            var s = sequences[i];
            for (int j = 0, n = Math.Min(s.Count, t); j < n; j++) { values[i * t + j] = s[j]; mask[i * t + j] = 1; }
        }
        return (values, mask, b, t);
    }
}
