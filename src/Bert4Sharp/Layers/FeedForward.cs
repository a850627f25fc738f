namespace Bert4Sharp.Layers;

using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

/// <summary>
/// Position-wise feed-forward: <c>outer(act(inner(x)))</c>, or gated (GLU variants, Shazeer 2020; T5 v1.1's
/// gated-gelu): <c>outer(act(x·A) ⊙ (x·B))</c> with A and B stacked in <c>inner</c> (rows 0..I-1 and I..2I-1).
/// Parameters <c>inner</c>, <c>outer</c>.
/// </summary>
public sealed class FeedForward : nn.Module<Tensor, Tensor>
{
    readonly string activation;
    readonly bool gated;
    readonly int intermediate;
#pragma warning disable IDE0044
    Linear inner;
    Linear outer;
#pragma warning restore IDE0044

    /// <summary>Creates the layer.</summary>
    public FeedForward(int hidden, int intermediate, string activation, bool useBias = true, bool gated = false, string name = "ffn") : base(name)
    {
        Activations.Check(activation);
        this.activation = activation;
        this.gated = gated;
        this.intermediate = intermediate;
        inner = nn.Linear(hidden, gated ? 2 * intermediate : intermediate, hasBias: useBias);
        outer = nn.Linear(intermediate, hidden, hasBias: useBias);
        RegisterComponents();
    }

    /// <inheritdoc/>
    public override Tensor forward(Tensor x)
    {
        using var scope = torch.NewDisposeScope();
        var h = Dense.Apply(inner, x);
        if (gated)
        {
            var parts = h.split(intermediate, -1);
            h = Activations.Apply(activation, parts[0]) * parts[1];
        }
        else h = Activations.Apply(activation, h);
        return Dense.Apply(outer, h).MoveToOuterDisposeScope();
    }
}
