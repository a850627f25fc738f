namespace Bert4Sharp.Layers;

using TorchSharp;
using static TorchSharp.torch;

/// <summary>Activation functions by their config names.</summary>
public static class Activations
{
    /// <summary>Applies the activation named <paramref name="name"/> (gelu = erf GELU, gelu_new/gelu_tanh = tanh approximation, gelu_sigmoid/quick_gelu = x·σ(1.702x), relu, silu/swish, tanh, linear).</summary>
    /// <exception cref="ArgumentException">Unknown name.</exception>
    public static Tensor Apply(string name, Tensor x) => name switch
    {
        "gelu" or "gelu_erf" => nn.functional.gelu(x),
        "gelu_new" or "gelu_tanh" or "gelu_pytorch_tanh" or "gelu_fast" => nn.functional.gelu(x, TorchSharp.Modules.GELU.Approximate.tanh),
        "gelu_sigmoid" or "quick_gelu" => x * torch.sigmoid(1.702 * x),
        "relu" => nn.functional.relu(x),
        "silu" or "swish" => nn.functional.silu(x),
        "tanh" => x.tanh(),
        "linear" or "identity" => x.alias(),
        _ => throw new ArgumentException($"unknown activation '{name}' (known: gelu, gelu_new, gelu_sigmoid, relu, silu, swish, tanh, linear)"),
    };

    /// <summary>Throws if <paramref name="name"/> is unknown, before any weights are built.</summary>
    public static void Check(string name)
    {
        if (name is not ("gelu" or "gelu_erf" or "gelu_new" or "gelu_tanh" or "gelu_pytorch_tanh" or "gelu_fast" or "gelu_sigmoid" or "quick_gelu" or "relu" or "silu" or "swish" or "tanh" or "linear" or "identity"))
            throw new ArgumentException($"unknown activation '{name}' (known: gelu, gelu_new, gelu_sigmoid, relu, silu, swish, tanh, linear)");
    }
}
