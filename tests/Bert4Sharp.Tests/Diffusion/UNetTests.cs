using Bert4Sharp.Diffusion.Networks;
using TorchSharp;
using static TorchSharp.torch;

namespace Bert4Sharp.Tests.Diffusion;

/// <summary>The networks' construction invariants.</summary>
public sealed class UNetTests
{
    [Fact]
    public void A_fresh_unet_has_finite_parameters_unit_group_norms_and_predicts_zero()
    {
        // TorchSharp 0.107's GroupNorm leaves weight and bias uninitialised; several seeds caught NaN there before the fix.
        for (int seed = 0; seed < 3; seed++)
        {
            torch.manual_seed(seed);
            using var net = new UNet(new UNetOptions { Channels = [8, 16, 16], Groups = 4 });
            foreach (var (name, p) in net.named_parameters())
            {
                Assert.True(p.isfinite().all().ToBoolean(), $"seed {seed}: {name} is not finite");
                if (name.EndsWith("norm1.weight") || name.EndsWith("norm.weight")) Assert.True(p.eq(1).all().ToBoolean(), $"{name} should start at 1");
            }
            using var x = torch.randn(4, 1, 28, 28);
            using var t = torch.rand(4);
            using var y = net.forward(x, t);
            Assert.Equal([4L, 1L, 28L, 28L], y.shape);
            Assert.Equal(0, y.abs().max().ToDouble());                                   // the zero-initialised last convolution
        }
        Assert.Throws<ArgumentException>(() => new UNet(new UNetOptions { Channels = [12, 16], Groups = 8 }));
        Assert.Throws<ArgumentException>(() => new UNet(new UNetOptions { ImageSize = 14, Channels = [8, 8, 8, 8] }));
    }

    [Fact]
    public void Time_mlp_maps_points_and_times_to_the_output_width()
    {
        using var mlp = new TimeMlp(2, 32, 2, 3);
        using var y = mlp.forward(torch.randn(5, 2), torch.rand(5));
        Assert.Equal([5L, 3L], y.shape);
        using var e = TimeEmbedding.Sinusoid(torch.tensor(new[] { 0f, 0.5f }), 8);
        // t = 0: sin 0 = 0 and cos 0 = 1 for every frequency.
        Close.Assert(e[0], torch.tensor(new[] { 0f, 0, 0, 0, 1, 1, 1, 1 }), "sinusoid at t = 0");
    }
}
