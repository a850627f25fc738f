namespace Bert4Sharp.Layers;

using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

/// <summary>
/// Attention with a feature map instead of a softmax: out = φ(q)·(Σ φ(k)ᵀv) / φ(q)·Σ φ(k), O(T·m·d) instead of
/// O(T²·d) (Katharopoulos et al., "Transformers are RNNs"; kexue.fm/archives/7546). Causal attention uses prefix
/// sums, computed chunk by chunk so memory stays O(T·m + c²) rather than the O(T·m·d) of a plain cumsum; with a
/// cache, the cached keys form the starting state.
/// </summary>
internal static class LinearAttention
{
    /// <summary>
    /// φ(q) (B, h, Tq, m), φ(k) (B, h, Tk, m) (zero rows at padded keys), v (B, h, Tk, dv) → (B, h, Tq, dv). Causal:
    /// queries are the last Tq key positions and each sees the keys up to its own.
    /// </summary>
    public static Tensor Attend(Tensor fq, Tensor fk, Tensor v, bool causal, int chunk, double eps)
    {
        using var scope = torch.NewDisposeScope();
        if (!causal)
        {
            var kv = fk.transpose(-1, -2).matmul(v);                                        // (B, h, m, dv)
            var z = fk.sum(-2).unsqueeze(-1);                                                // (B, h, m, 1)
            return (fq.matmul(kv) / (fq.matmul(z) + eps)).MoveToOuterDisposeScope();
        }
        long tq = fq.shape[2], past = fk.shape[2] - tq;
        if (past < 0) throw new ArgumentException($"causal linear attention needs at least as many keys as queries, got {fk.shape[2]} keys and {tq} queries");
        // State after the cached keys: S = Σ φ(k)ᵀv (B, h, m, dv), z = Σ φ(k) (B, h, m, 1).
        var keys = fk.split([past, tq], 2);                                                 // cached, new
        var values = v.split([past, tq], 2);
        var state = keys[0].transpose(-1, -2).matmul(values[0]);
        var norm = keys[0].sum(-2).unsqueeze(-1);
        // One split per tensor, not a narrow per chunk: each narrow's backward writes a full-size gradient, which
        // made the backward quadratic in T (measured 11.7 s vs 1.5 s at T = 16,384).
        var (qs, ks, vcs) = (fq.split(chunk, 2), keys[1].split(chunk, 2), values[1].split(chunk, 2));
        var outs = new List<Tensor>();
        for (int i = 0; i < qs.Length; i++)
        {
            var (q, k, vc) = (qs[i], ks[i], vcs[i]);
            var a = q.matmul(k.transpose(-1, -2)).tril();                                   // (B, h, n, n): inside the chunk
            var num = q.matmul(state) + a.matmul(vc);
            var den = q.matmul(norm) + a.sum(-1, keepdim: true);
            outs.Add(num / (den + eps));
            state = state + k.transpose(-1, -2).matmul(vc);
            norm = norm + k.sum(-2).unsqueeze(-1);
        }
        return torch.cat(outs, 2).MoveToOuterDisposeScope();
    }
}

/// <summary>
/// Linear attention with φ(x) = elu(x) + 1 (Katharopoulos et al. 2020). φ(q)·φ(k) replaces exp(q·k/√d), so the
/// call's scale plays no part; causal via prefix sums. Takes key padding and causal masks only.
/// </summary>
public sealed class LinearKernel : IAttentionKernel
{
    readonly int chunk;

    /// <summary>A kernel whose causal prefix sums run in chunks of <paramref name="chunk"/> positions.</summary>
    public LinearKernel(int chunk = 128) => this.chunk = chunk;

    /// <inheritdoc/>
    public string Name => "linear";

    /// <inheritdoc/>
    public Tensor Attend(AttentionCall c)
    {
        using var scope = torch.NewDisposeScope();
        var (keep, causal) = KernelMasks.Resolve(c, Name);
        var fq = nn.functional.elu(c.Query, 1.0) + 1;
        var fk = nn.functional.elu(c.Key, 1.0) + 1;
        if (keep is not null) fk = fk * keep;
        return LinearAttention.Attend(fq, fk, c.Value, causal, chunk, 1e-6).MoveToOuterDisposeScope();
    }
}

/// <summary>
/// Performer's FAVOR+ (Choromanski et al., "Rethinking Attention with Performers"; kexue.fm/archives/7921):
/// softmax attention approximated with positive random features φ(x) = exp(Wx − ‖x‖²/2)/√m, W's rows orthogonal
/// blocks of a Gaussian's QR with χ-distributed lengths, so E[φ(q)·φ(k)] = exp(q·k). Both sides are scaled by
/// √scale first (exp(scale·q·k) is what softmax weighs), stabilised by subtracting a maximum (per query row; over
/// all unpadded keys), which cancels in the normalisation but for <see cref="AttentionKernelOptions.FeatureEpsilon"/>
/// added to every feature. The projection (m, dk) is a frozen parameter, redrawn every
/// <see cref="AttentionKernelOptions.RedrawInterval"/> training calls. Parameter <c>projection</c>.
/// </summary>
public sealed class PerformerKernel : nn.Module, IAttentionKernel
{
    readonly double featureEps;
    readonly int features, keySize, redrawInterval, chunk;
    readonly bool orthogonal;
    readonly Generator? generator;
    long trainingCalls;
#pragma warning disable IDE0044
    Parameter projection;
#pragma warning restore IDE0044

    /// <summary>A kernel for heads of <paramref name="shape"/>.</summary>
    public PerformerKernel(KernelShape shape, AttentionKernelOptions o) : base("kernel")
    {
        (features, keySize, redrawInterval, chunk, orthogonal) = (o.Features, shape.KeySize, o.RedrawInterval, o.ChunkSize, o.Orthogonal);
        featureEps = o.FeatureEpsilon;
        generator = o.Seed is long s ? new Generator((ulong)s) : null;
        projection = new Parameter(Draw(), requires_grad: false);
        RegisterComponents();
    }

    /// <inheritdoc/>
    public string Name => "performer";

    /// <summary>The current projection (m, dk).</summary>
    public Tensor Projection => projection;

    /// <summary>Replaces the projection with a new draw (what training does every redraw interval).</summary>
    public void Redraw()
    {
        using var _ = torch.no_grad();
        using var fresh = Draw();
        projection.copy_(fresh);
    }

    /// <summary>
    /// m × dk Gaussian rows; orthogonal: dk × dk blocks of Q from the QR of a Gaussian matrix, stacked and cut to m
    /// rows, each scaled by the length of an independent Gaussian vector (so rows keep the Gaussian's length law).
    /// </summary>
    Tensor Draw()
    {
        using var scope = torch.NewDisposeScope();
        if (!orthogonal) return torch.randn(features, keySize, generator: generator).MoveToOuterDisposeScope();
        var blocks = new List<Tensor>();
        for (int rows = 0; rows < features; rows += keySize)
        {
            var (q, _) = torch.linalg.qr(torch.randn(keySize, keySize, generator: generator));
            blocks.Add(q.t());
        }
        var w = torch.cat(blocks, 0).narrow(0, 0, features);                               // (m, dk), orthonormal rows per block
        var lengths = torch.randn(features, keySize, generator: generator).norm(1);        // χ(dk) lengths
        return (w * lengths.unsqueeze(1)).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// φ(x) for x (B, h, T, dk) already scaled; <paramref name="query"/> stabilises per row, keys over all rows but the
    /// padded ones (<paramref name="keep"/> (B or 1, 1, T, 1), 0 at padding): through <paramref name="eps"/> the maximum
    /// does not cancel, so a maximum over padding would make the real tokens' output depend on what the padding holds.
    /// </summary>
    internal static Tensor Features(Tensor x, Tensor projection, bool query, double eps, Tensor? keep = null)
    {
        using var scope = torch.NewDisposeScope();
        var dash = x.matmul(projection.t().to(x.dtype));                                    // (B, h, T, m)
        var diag = x.square().sum(-1, keepdim: true) / 2;                                   // ‖x‖²/2
        Tensor max;
        if (query) max = dash.amax([-1], keepdim: true);
        else if (keep is null) max = dash.amax([-1, -2], keepdim: true);
        else
        {
            max = dash.masked_fill(keep == 0, double.NegativeInfinity).amax([-1, -2], keepdim: true);
            max = torch.where(max.isneginf(), torch.zeros_like(max), max);                   // every key padded
        }
        var phi = (torch.exp(dash - diag - max.detach()) + eps) / Math.Sqrt(projection.shape[0]);
        return phi.MoveToOuterDisposeScope();
    }

    /// <inheritdoc/>
    public Tensor Attend(AttentionCall c)
    {
        using var scope = torch.NewDisposeScope();
        var (keep, causal) = KernelMasks.Resolve(c, Name);
        if (training && redrawInterval > 0 && ++trainingCalls % redrawInterval == 0) Redraw();
        double root = Math.Sqrt(c.Scale);                                                   // exp((√s q)·(√s k)) = exp(s q·k)
        var fq = Features(c.Query * root, projection, query: true, featureEps);
        var fk = Features(c.Key * root, projection, query: false, featureEps, keep);
        if (keep is not null) fk = fk * keep;
        return LinearAttention.Attend(fq, fk, c.Value, causal, chunk, featureEps > 0 ? 0 : 1e-30).MoveToOuterDisposeScope();
    }
}

/// <summary>
/// FLASH's mixed chunk attention (Hua et al., "Transformer Quality in Linear Time", kexue.fm/archives/8934): the
/// sequence is cut into chunks of C; inside a chunk, squared-ReLU attention relu(s·q·kᵀ)²/C (causal within the
/// chunk when the call is); across chunks, linear attention without a feature map, s·q·(Σ kᵀv)/T over every
/// chunk (non-causal) or the earlier chunks only (causal). FLASH derives the quadratic and linear queries and
/// keys from one shared projection by separate per-dimension scales; through this seam both parts see the
/// layer's q and k. O(T·C·d + T·d²).
/// </summary>
public sealed class FlashKernel : IAttentionKernel
{
    readonly int chunk;

    /// <summary>A kernel with chunks (FLASH's groups) of <paramref name="chunk"/> positions.</summary>
    public FlashKernel(int chunk) => this.chunk = chunk > 0 ? chunk : throw new ArgumentException($"chunk size must be positive, got {chunk}");

    /// <inheritdoc/>
    public string Name => "flash";

    /// <inheritdoc/>
    public Tensor Attend(AttentionCall c)
    {
        using var scope = torch.NewDisposeScope();
        var (keep, causal) = KernelMasks.Resolve(c, Name);
        long tq = c.Query.shape[2], tk = c.Key.shape[2];
        if (tq != tk) throw new NotSupportedException("the flash kernel keeps no key/value cache: decode without one (or use softmax, linear or performer)");
        var q = c.Query * c.Scale;
        var k = keep is null ? c.Key : c.Key * keep;
        var v = keep is null ? c.Value : c.Value * keep;
        var global = causal ? null : k.transpose(-1, -2).matmul(v) / tk;                   // (B, h, dk, dv)
        var state = causal ? torch.zeros([.. q.shape[..2], q.shape[3], v.shape[3]], dtype: q.dtype, device: q.device) : null;
        var outs = new List<Tensor>();
        // One split per tensor (a narrow per chunk makes the backward quadratic in T, as in LinearAttention).
        var (qs, ks, vs, keeps) = (q.split(chunk, 2), k.split(chunk, 2), v.split(chunk, 2), keep?.split(chunk, 2));
        for (int i = 0; i < qs.Length; i++)
        {
            var (qc, kc, vc) = (qs[i], ks[i], vs[i]);
            var w = nn.functional.relu(qc.matmul(kc.transpose(-1, -2))).square() / chunk;  // (B, h, n, n)
            if (causal) w = w.tril();
            if (keeps is not null) w = w * keeps[i].transpose(-1, -2);
            var quadratic = w.matmul(vc);
            outs.Add(quadratic + qc.matmul(causal ? state! : global!));
            if (causal) state = state! + kc.transpose(-1, -2).matmul(vc) / tk;
        }
        return torch.cat(outs, 2).MoveToOuterDisposeScope();
    }
}
