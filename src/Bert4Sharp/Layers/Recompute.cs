namespace Bert4Sharp.Layers;

using TorchSharp;
using static TorchSharp.torch;

/// <summary>
/// Recompute (gradient checkpointing, Chen et al. 2016, arxiv.org/abs/1604.06174; bert4keras <c>RECOMPUTE=1</c>):
/// a block's forward runs without keeping its activations; the backward pass runs the forward again, with the
/// random state of the first run so dropout draws the same masks, and differentiates that. Memory for
/// activations drops from every intermediate of every block to one input per block, for one extra forward.
/// The replayed state is the CPU generator's: on CUDA, blocks with dropout would draw new masks in the
/// recomputation (TorchSharp 0.107 exposes no CUDA generator state), so use it there with dropout 0 or accept
/// that the gradient belongs to other masks.
/// </summary>
public sealed class Recompute : autograd.MultiTensorFunction<Recompute>
{
    /// <inheritdoc/>
    public override string Name => "Recompute";

    /// <summary>Applies <paramref name="block"/> to <paramref name="x"/> (and the additive mask) with recomputation in the backward pass.</summary>
    public static Tensor Apply(nn.Module<Tensor, Tensor?, Tensor> block, Tensor x, Tensor? mask)
    {
        var parameters = block.parameters().Where(p => p.requires_grad).ToArray();
        object[] args = [block, x, mask!, .. parameters];
        return apply(args)[0];
    }

    /// <inheritdoc/>
    public override List<Tensor> forward(autograd.AutogradContext ctx, params object[] vars)
    {
        var block = (nn.Module<Tensor, Tensor?, Tensor>)vars[0];
        var x = (Tensor)vars[1];
        var mask = vars[2] as Tensor;
        ctx.save_data("block", block);
        using (var state = torch.random.get_rng_state()) ctx.save_data("rng", state.bytes.ToArray());
        ctx.save_data("parameters", vars.Length - 3);
        ctx.save_for_backward([x, mask!]);
        return [block.forward(x, mask)];
    }

    /// <inheritdoc/>
    public override List<Tensor> backward(autograd.AutogradContext ctx, List<Tensor> gradOutputs)
    {
        var block = (nn.Module<Tensor, Tensor?, Tensor>)ctx.get_data("block");
        var saved = ctx.get_saved_variables();
        using var rng = torch.tensor((byte[])ctx.get_data("rng"), dtype: ScalarType.Byte);
        var parameters = block.parameters().Where(p => p.requires_grad).ToArray();
        var now = torch.random.get_rng_state();
        List<Tensor> grads;
        using (var scope = torch.NewDisposeScope())
        {
            torch.random.set_rng_state(rng);
            try
            {
                using var enable = torch.enable_grad();
                var x = saved[0].detach().requires_grad_(true);
                var mask = saved.Count > 1 && saved[1] is { IsInvalid: false } m ? m : null;
                var y = block.forward(x, mask);
                grads = torch.autograd.grad([y], [x, .. parameters], [gradOutputs[0]], allow_unused: true).ToList();
                foreach (var g in grads) g?.MoveToOuterDisposeScope();
            }
            finally
            {
                torch.random.set_rng_state(now);
                now.Dispose();
            }
        }
        return [null!, grads[0], null!, .. grads.Skip(1)];
    }
}
