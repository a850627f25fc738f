namespace Bert4Sharp.Layers;

using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

/// <summary>
/// Nyströmformer (Xiong et al. 2021; kexue.fm's matrix-decomposition view of attention): softmax(QKᵀ) ≈
/// softmax(Q K̃ᵀ) · pinv(softmax(Q̃ K̃ᵀ)) · softmax(Q̃ Kᵀ), with landmarks Q̃, K̃ the means of L contiguous segments
/// of the queries and keys, the pseudo-inverse by the paper's iteration Z ← ¼ Z (13I − AZ(15I − AZ(7I − AZ)))
/// from Z₀ = Aᵀ / (max column sum · max row sum), and a depthwise convolution over the values added to the
/// output (the official skip, kernel 33). Queries and keys are each scaled by scale^½; padded keys are zeroed
/// before the segment means, as the official code. L ≥ T gives exact softmax attention. Not causal.
/// Parameter <c>conv.weight</c> (h, 1, k, 1) when the convolution is on.
/// </summary>
public sealed class NystromKernel : nn.Module, IAttentionKernel
{
    readonly int landmarks, iterations;
#pragma warning disable IDE0044
    Conv2d? conv;
#pragma warning restore IDE0044

    /// <summary>A kernel for heads of <paramref name="shape"/>.</summary>
    public NystromKernel(KernelShape shape, AttentionKernelOptions o) : base("kernel")
    {
        (landmarks, iterations) = (o.Landmarks, o.PinvIterations);
        if (o.ConvKernel > 0)
            conv = nn.Conv2d(shape.Heads, shape.Heads, (o.ConvKernel, 1), padding: (o.ConvKernel / 2, 0), groups: shape.Heads, bias: false);
        RegisterComponents();
    }

    /// <inheritdoc/>
    public string Name => "nystrom";

    /// <inheritdoc/>
    public Tensor Attend(AttentionCall c)
    {
        using var scope = torch.NewDisposeScope();
        var (keep, causal) = KernelMasks.Resolve(c, Name);
        if (causal) throw new NotSupportedException("the nystrom kernel is bidirectional: its landmarks mix every position, so it cannot be causal; use linear, performer or flash for a language model");
        double root = Math.Sqrt(c.Scale);
        var q = c.Query * root;                                                             // (B, h, T, dk)
        var k = c.Key * root;
        if (keep is not null) k = k * keep;
        var bias = keep is null ? null : (1 - keep.transpose(-1, -2)) * -1e9;             // (B, 1, 1, T): padded keys out of softmaxes over keys
        long t = k.shape[2];
        Tensor o;
        if (landmarks >= t)
        {
            var s = q.matmul(k.transpose(-1, -2));
            o = (bias is null ? s : s + bias).softmax(-1).matmul(c.Value);
        }
        else
        {
            var means = SegmentMeans(t, landmarks, q.device, q.dtype);                      // (L, T)
            var ql = means.matmul(q);                                                       // (B, h, L, dk)
            var kl = means.matmul(k);
            var k1 = q.matmul(kl.transpose(-1, -2)).softmax(-1);                            // (B, h, T, L)
            var k2 = ql.matmul(kl.transpose(-1, -2)).softmax(-1);                           // (B, h, L, L)
            var s3 = ql.matmul(k.transpose(-1, -2));
            var k3 = (bias is null ? s3 : s3 + bias).softmax(-1);                           // (B, h, L, T)
            o = k1.matmul(PseudoInverse(k2, iterations)).matmul(k3.matmul(c.Value));
        }
        if (conv is not null) o = o + conv.forward(keep is null ? c.Value : c.Value * keep);
        return o.MoveToOuterDisposeScope();
    }

    /// <summary>
    /// (L, T) averaging matrix: row l averages positions ⌊lT/L⌋ .. ⌊(l+1)T/L⌋ − 1 (the official equal segments when
    /// L divides T; nearly equal ones otherwise).
    /// </summary>
    public static Tensor SegmentMeans(long t, int l, Device device, ScalarType dtype)
    {
        var m = new double[l * t];                                                          // float64, then cast: a float64 call gets float64 means
        for (int i = 0; i < l; i++)
        {
            long from = i * t / l, to = (i + 1) * t / l;
            for (long j = from; j < to; j++) m[i * t + j] = 1.0 / (to - from);
        }
        return torch.tensor(m, [l, t]).to(dtype, device);
    }

    /// <summary>The paper's iterative Moore–Penrose pseudo-inverse of (…, L, L) softmax matrices.</summary>
    public static Tensor PseudoInverse(Tensor a, int iterations)
    {
        using var scope = torch.NewDisposeScope();
        long n = a.shape[^1];
        var eye = torch.eye(n, dtype: a.dtype, device: a.device);
        // Z₀ = Aᵀ / (‖A‖₁‖A‖∞): the largest column sum times the largest row sum (rows of a softmax sum to 1).
        var z = a.transpose(-1, -2) / (a.sum(-2).amax([-1], keepdim: true).unsqueeze(-1) * a.sum(-1).amax([-1], keepdim: true).unsqueeze(-1));
        for (int i = 0; i < iterations; i++)
        {
            var az = a.matmul(z);
            z = 0.25 * z.matmul(13 * eye - az.matmul(15 * eye - az.matmul(7 * eye - az)));
        }
        return z.MoveToOuterDisposeScope();
    }
}
