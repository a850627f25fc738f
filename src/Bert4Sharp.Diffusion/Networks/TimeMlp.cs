namespace Bert4Sharp.Diffusion.Networks;

using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

/// <summary>
/// A time-conditioned MLP for low-dimensional (2-D toy) data: <c>(B, D)</c> points and <c>(B)</c> times →
/// <c>(B, D + extra)</c>. The time code is added to every hidden layer. Parameters <c>time</c>, <c>input</c>,
/// <c>hidden.k</c>, <c>times.k</c>, <c>output</c>.
/// </summary>
public sealed class TimeMlp : nn.Module<Tensor, Tensor, Tensor>
{
#pragma warning disable IDE0044
    TimeEmbedding time;
    Linear input;
    ModuleList<Linear> hidden;
    ModuleList<Linear> times;
    Linear output;
#pragma warning restore IDE0044

    /// <summary>Creates the network.</summary>
    /// <param name="dimensions">Data dimensions D.</param>
    /// <param name="width">Hidden width.</param>
    /// <param name="layers">Hidden layers (≥ 1).</param>
    /// <param name="outputs">Output width (D, or D + 1 for Poisson flow's extra component).</param>
    /// <exception cref="ArgumentOutOfRangeException">A non-positive size.</exception>
    public TimeMlp(int dimensions, int width, int layers, int outputs) : base("mlp")
    {
        if (dimensions < 1) throw new ArgumentOutOfRangeException(nameof(dimensions), $"dimensions must be ≥ 1, got {dimensions}");
        if (width < 2) throw new ArgumentOutOfRangeException(nameof(width), $"width must be ≥ 2, got {width}");
        if (layers < 1) throw new ArgumentOutOfRangeException(nameof(layers), $"layers must be ≥ 1, got {layers}");
        if (outputs < 1) throw new ArgumentOutOfRangeException(nameof(outputs), $"outputs must be ≥ 1, got {outputs}");
        time = new TimeEmbedding(width % 2 == 0 ? width : width + 1, width);
        input = nn.Linear(dimensions, width);
        hidden = new ModuleList<Linear>([.. Enumerable.Range(0, layers).Select(_ => nn.Linear(width, width))]);
        times = new ModuleList<Linear>([.. Enumerable.Range(0, layers).Select(_ => nn.Linear(width, width))]);
        output = nn.Linear(width, outputs);
        RegisterComponents();
    }

    /// <inheritdoc/>
    public override Tensor forward(Tensor x, Tensor t)
    {
        using var scope = torch.NewDisposeScope();
        var emb = nn.functional.silu(time.forward(t));                                     // (B, W)
        var h = input.forward(x);                                                         // (B, W)
        for (int i = 0; i < hidden.Count; i++)
            h = hidden[i].forward(nn.functional.silu(h + times[i].forward(emb)));
        return output.forward(nn.functional.silu(h)).MoveToOuterDisposeScope();           // (B, outputs)
    }
}
