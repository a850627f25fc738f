namespace Bert4Sharp.Training;

using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

/// <summary>
/// FGM adversarial training on the token embedding matrix (Miyato et al.; bert4keras <c>adversarial_training</c>,
/// kexue.fm/archives/7234): after the normal backward pass, move the embeddings by ε·g/‖g‖ along their gradient,
/// add the gradients of the loss at that point, and move them back.
/// </summary>
/// <param name="embeddings">The token embedding matrix (e.g. <c>TransformerModel.TokenEmbeddings</c>).</param>
/// <param name="epsilon">Perturbation size (bert4keras examples use 0.5–1).</param>
public sealed class FastGradientMethod(Parameter embeddings, double epsilon) : TrainingTechnique
{
    /// <inheritdoc/>
    public override void AfterBackward(Func<Tensor> lossAgain)
    {
        if (embeddings.grad is not Tensor g) return;
        using var scope = torch.NewDisposeScope();
        Tensor delta;
        using (torch.no_grad())
        {
            delta = epsilon * g / (g.norm() + 1e-8);
            embeddings.add_(delta);
        }
        try { lossAgain().backward(); }
        finally { using (torch.no_grad()) embeddings.sub_(delta); }
    }
}

/// <summary>
/// Gradient penalty on the token embeddings (kexue.fm/archives/7234, bert4keras <c>loss_with_gradient_penalty</c>):
/// loss + ½·ε·‖∂loss/∂E‖², differentiated through the gradient (double backward).
/// </summary>
/// <param name="embeddings">The token embedding matrix.</param>
/// <param name="epsilon">Penalty weight (bert4keras examples use 1).</param>
public sealed class GradientPenalty(Parameter embeddings, double epsilon) : TrainingTechnique
{
    /// <inheritdoc/>
    public override Tensor BeforeBackward(Tensor loss)
    {
        var g = torch.autograd.grad([loss], [embeddings], retain_graph: true, create_graph: true)[0];
        return loss + 0.5 * epsilon * g.square().sum();
    }
}
