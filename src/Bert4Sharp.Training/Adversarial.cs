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
    public override void AfterBackward(StepResult first, Func<StepResult> again)
    {
        if (embeddings.grad is not Tensor g) return;
        using var scope = torch.NewDisposeScope();
        var saved = embeddings.detach().clone();                                          // restored exactly, not by subtraction
        using (torch.no_grad()) embeddings.add_(epsilon * g / (g.norm() + 1e-8));
        try { again().Loss.backward(); }
        finally { using (torch.no_grad()) embeddings.copy_(saved); }
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

/// <summary>
/// Virtual adversarial training (Miyato et al. 2018) on the token embedding matrix, as in the bert4keras
/// example the blog discusses (kexue.fm/archives/7466): one power iteration finds the direction r in which the
/// output distribution changes most, then KL(p(E) ‖ p(E + ε·r/‖r‖)) × <paramref name="weight"/> is added to
/// the loss. Needs <see cref="StepResult.Output"/> (logits). Works without labels, so unlabelled batches count.
/// </summary>
/// <param name="embeddings">The token embedding matrix.</param>
/// <param name="epsilon">Size of the adversarial perturbation.</param>
/// <param name="xi">Size of the probing perturbation of the power iteration.</param>
/// <param name="weight">Weight of the VAT loss.</param>
public sealed class VirtualAdversarialTraining(Parameter embeddings, double epsilon = 1.0, double xi = 10.0, double weight = 1.0) : TrainingTechnique
{
    /// <summary>KL(softmax(p) ‖ softmax(q)) summed over classes, averaged over rows.</summary>
    static Tensor Kl(Tensor p, Tensor q)
    {
        static Tensor Wide(Tensor x) => x.dtype is ScalarType.BFloat16 or ScalarType.Float16 ? x.to(ScalarType.Float32) : x;
        var lp = nn.functional.log_softmax(Wide(p), -1);
        var lq = nn.functional.log_softmax(Wide(q), -1);
        return (lp.exp() * (lp - lq)).sum(-1).mean();
    }

    /// <inheritdoc/>
    public override void AfterBackward(StepResult first, Func<StepResult> again)
    {
        if (first.Output is not Tensor output) throw new InvalidOperationException("virtual adversarial training needs the step's logits: return them as StepResult.Output");
        using var scope = torch.NewDisposeScope();
        var clean = output.detach();
        // Power iteration: the gradient of the KL at a small random probe gives the most sensitive direction.
        var probe = torch.randn_like(embeddings);
        probe = xi * probe / (probe.norm() + 1e-8);
        Tensor g;
        var saved = embeddings.detach().clone();
        using (torch.no_grad()) embeddings.add_(probe);
        try
        {
            var kl = Kl(clean, again().Output!);
            g = torch.autograd.grad([kl], [embeddings], allow_unused: true)[0];
        }
        finally { using (torch.no_grad()) embeddings.copy_(saved); }
        if (g is null || g.IsInvalid) return;
        var r = (epsilon * g / (g.norm() + 1e-8)).detach();
        using (torch.no_grad()) embeddings.add_(r);
        try { (weight * Kl(clean, again().Output!)).backward(); }
        finally { using (torch.no_grad()) embeddings.copy_(saved); }
    }
}

/// <summary>
/// Gaussian noise on the token embedding matrix during each training step (the blog's random-perturbation
/// baseline for adversarial training): E + N(0, σ²) for the forward and backward pass, then E again.
/// </summary>
/// <param name="embeddings">The token embedding matrix.</param>
/// <param name="std">Noise standard deviation σ.</param>
public sealed class EmbeddingNoise(Parameter embeddings, double std) : TrainingTechnique
{
    Tensor? saved;

    /// <inheritdoc/>
    public override void BeforeForward()
    {
        using var noGrad = torch.no_grad();
        saved = embeddings.detach().clone().DetachFromDisposeScope();
        using var noise = torch.randn_like(embeddings) * std;
        embeddings.add_(noise);
    }

    /// <inheritdoc/>
    public override void AfterStep()
    {
        if (saved is null) return;
        using (torch.no_grad()) embeddings.copy_(saved);
        saved.Dispose();
        saved = null;
    }
}
