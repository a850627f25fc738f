namespace Bert4Sharp.Layers;

using TorchSharp.Modules;
using static TorchSharp.torch;

/// <summary>Fast application of a <see cref="Linear"/> layer.</summary>
internal static class Dense
{
    /// <summary>
    /// <c>x · Wᵀ + b</c> as a plain matmul plus an in-place bias add. libtorch 2.10's <c>linear</c> takes a
    /// slower kernel for some shapes on CPU (measured: 1024×768 · 768×2304, the fused QKV of BERT-base at
    /// batch 8 × 128, ran at 76 GFLOP/s through <c>linear</c> and 181 GFLOP/s through <c>matmul</c>).
    /// </summary>
    public static Tensor Apply(Linear layer, Tensor x)
    {
        var y = x.matmul(layer.weight!.t());
        if (layer.bias is not null) y.add_(layer.bias);
        return y;
    }
}
