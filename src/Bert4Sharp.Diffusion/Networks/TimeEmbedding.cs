namespace Bert4Sharp.Diffusion.Networks;

using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

/// <summary>
/// The transformer's sinusoidal position code applied to a continuous time (Ho et al. 2020, appendix B), followed by a
/// two-layer MLP: time in [0, 1] (scaled by 1000, so t = k/1000 gets DDPM's integer code) → <c>(B, width)</c>.
/// Parameters <c>first</c>, <c>second</c>.
/// </summary>
public sealed class TimeEmbedding : nn.Module<Tensor, Tensor>
{
    readonly int frequencies;
#pragma warning disable IDE0044
    Linear first;
    Linear second;
#pragma warning restore IDE0044

    /// <summary>Creates the embedding.</summary>
    /// <param name="frequencies">Width of the sinusoidal code (even).</param>
    /// <param name="width">Output width.</param>
    /// <exception cref="ArgumentOutOfRangeException">An odd or non-positive width.</exception>
    public TimeEmbedding(int frequencies, int width) : base("time")
    {
        if (frequencies < 2 || frequencies % 2 != 0) throw new ArgumentOutOfRangeException(nameof(frequencies), $"the sinusoidal width must be even and ≥ 2, got {frequencies}");
        if (width < 1) throw new ArgumentOutOfRangeException(nameof(width), $"the time embedding width must be ≥ 1, got {width}");
        this.frequencies = frequencies;
        first = nn.Linear(frequencies, width);
        second = nn.Linear(width, width);
        RegisterComponents();
    }

    /// <summary>The sinusoidal code alone: <c>[sin(1000·t·ω_k), cos(1000·t·ω_k)]</c>, ω_k = 10000^(−k/(half−1)).</summary>
    /// <param name="time">(B) times in [0, 1].</param>
    /// <param name="frequencies">Code width (even).</param>
    public static Tensor Sinusoid(Tensor time, int frequencies)
    {
        using var scope = torch.NewDisposeScope();
        int half = frequencies / 2;
        var k = torch.arange(half, dtype: ScalarType.Float32, device: time.device);
        var omega = torch.exp(k * (-Math.Log(10000) / Math.Max(1, half - 1)));          // (half)
        var angle = (time.to(ScalarType.Float32) * 1000).unsqueeze(1) * omega.unsqueeze(0);   // (B, half)
        return torch.cat([angle.sin(), angle.cos()], 1).MoveToOuterDisposeScope();       // (B, frequencies)
    }

    /// <inheritdoc/>
    public override Tensor forward(Tensor time)
    {
        using var scope = torch.NewDisposeScope();
        var h = first.forward(Sinusoid(time, frequencies));
        return second.forward(nn.functional.silu(h)).MoveToOuterDisposeScope();
    }
}
