namespace Bert4Sharp.Runtime;

using TorchSharp;
using static TorchSharp.torch;

/// <summary>Tensor operations whose TorchSharp form has a lifetime hazard.</summary>
public static class TensorExtensions
{
    /// <summary>
    /// <c>x.masked_fill(mask, value)</c> with the scalar kept alive until the native call returns. TorchSharp converts a
    /// <see cref="double"/> to a <see cref="Scalar"/> object implicitly and passes only its handle, so under GC pressure
    /// the object can be finalised during the call and libtorch reads freed memory (seen once as c10's "toFloat"
    /// overflow check failing on a −∞ fill in a parallel test run).
    /// </summary>
    public static Tensor MaskedFill(this Tensor x, Tensor mask, double value)
    {
        using Scalar fill = value;
        return x.masked_fill(mask, fill);
    }

    /// <summary><see cref="MaskedFill(Tensor, Tensor, double)"/> with an integer value (labels, tags).</summary>
    public static Tensor MaskedFill(this Tensor x, Tensor mask, long value)
    {
        using Scalar fill = value;
        return x.masked_fill(mask, fill);
    }
}
