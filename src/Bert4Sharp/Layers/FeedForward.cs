namespace Bert4Sharp.Layers;

using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

/// <summary>Position-wise feed-forward: <c>outer(act(inner(x)))</c>. Parameters <c>inner</c>, <c>outer</c>.</summary>
public sealed class FeedForward : nn.Module<Tensor, Tensor>
{
    readonly string activation;
#pragma warning disable IDE0044
    Linear inner;
    Linear outer;
#pragma warning restore IDE0044

    /// <summary>Creates the layer.</summary>
    public FeedForward(int hidden, int intermediate, string activation, bool useBias = true, string name = "ffn") : base(name)
    {
        Activations.Check(activation);
        this.activation = activation;
        inner = nn.Linear(hidden, intermediate, hasBias: useBias);
        outer = nn.Linear(intermediate, hidden, hasBias: useBias);
        RegisterComponents();
    }

    /// <inheritdoc/>
    public override Tensor forward(Tensor x)
    {
        using var scope = torch.NewDisposeScope();
        return Dense.Apply(outer, Activations.Apply(activation, Dense.Apply(inner, x))).MoveToOuterDisposeScope();
    }
}
