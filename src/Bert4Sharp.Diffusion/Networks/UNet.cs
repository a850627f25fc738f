namespace Bert4Sharp.Diffusion.Networks;

using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

/// <summary>Sizes of a <see cref="UNet"/>.</summary>
public sealed record UNetOptions
{
    /// <summary>Image channels in (1 for MNIST).</summary>
    public int InputChannels { get; init; } = 1;
    /// <summary>Channels out (the input's, plus one for Poisson flow's extra field component).</summary>
    public int OutputChannels { get; init; } = 1;
    /// <summary>Channels at each resolution, from the full one down; every level after the first halves the size.</summary>
    public IReadOnlyList<int> Channels { get; init; } = [32, 64, 64];
    /// <summary>Self-attention at resolutions of this side or below (7 for 28×28 input: the lowest level only).</summary>
    public int AttentionResolution { get; init; } = 7;
    /// <summary>Groups of every group norm (must divide each channel count).</summary>
    public int Groups { get; init; } = 8;
    /// <summary>Image side (square images); must halve evenly down the levels.</summary>
    public int ImageSize { get; init; } = 28;

    /// <summary>Checks the sizes; names the field and value.</summary>
    /// <exception cref="ArgumentException">Sizes that do not fit together.</exception>
    public void Validate()
    {
        if (InputChannels < 1 || OutputChannels < 1) throw new ArgumentException($"input and output channels must be ≥ 1, got {InputChannels} and {OutputChannels}");
        if (Channels.Count < 1) throw new ArgumentException("Channels needs at least one level");
        foreach (int c in Channels)
            if (c < Groups || c % Groups != 0) throw new ArgumentException($"every channel count must be a multiple of Groups ({Groups}), got {c}");
        int side = ImageSize;
        for (int i = 1; i < Channels.Count; i++)
        {
            if (side % 2 != 0) throw new ArgumentException($"image side {ImageSize} does not halve evenly {Channels.Count - 1} times (odd side {side} at level {i})");
            side /= 2;
        }
    }
}

/// <summary>
/// A small U-Net for diffusion (Ho et al. 2020's shape, scaled down): residual blocks with group norm and the time
/// embedding added in the middle, strided-convolution downsampling, nearest-neighbour upsampling, skip connections by
/// concatenation, and single-head self-attention at low resolution. <c>(B, C, H, W)</c> images and <c>(B)</c> times in
/// [0, 1] → <c>(B, C_out, H, W)</c>.
/// </summary>
public sealed class UNet : nn.Module<Tensor, Tensor, Tensor>
{
    readonly int levels;
#pragma warning disable IDE0044
    TimeEmbedding time;
    Conv2d input;
    ModuleList<ResidualBlock> down;
    ModuleList<nn.Module<Tensor, Tensor>> downAttention;
    ModuleList<Conv2d> downsample;
    ResidualBlock middle1;
    SelfAttention2d middleAttention;
    ResidualBlock middle2;
    ModuleList<ResidualBlock> up;
    ModuleList<nn.Module<Tensor, Tensor>> upAttention;
    ModuleList<Conv2d> upsample;
    GroupNorm outputNorm;
    Conv2d output;
#pragma warning restore IDE0044

    /// <summary>Builds the network.</summary>
    /// <exception cref="ArgumentException">Options that do not fit together.</exception>
    public UNet(UNetOptions options) : base("unet")
    {
        options.Validate();
        var ch = options.Channels;
        levels = ch.Count;
        int embed = 4 * ch[0];
        time = new TimeEmbedding(ch[0], embed);
        input = nn.Conv2d(options.InputChannels, ch[0], 3, padding: 1);
        down = new ModuleList<ResidualBlock>();
        downAttention = new ModuleList<nn.Module<Tensor, Tensor>>();
        downsample = new ModuleList<Conv2d>();
        up = new ModuleList<ResidualBlock>();
        upAttention = new ModuleList<nn.Module<Tensor, Tensor>>();
        upsample = new ModuleList<Conv2d>();
        int side = options.ImageSize, previous = ch[0];
        for (int i = 0; i < levels; i++)
        {
            down.Add(new ResidualBlock(previous, ch[i], embed, options.Groups));
            downAttention.Add(side <= options.AttentionResolution ? new SelfAttention2d(ch[i], options.Groups) : nn.Identity());
            if (i < levels - 1) { downsample.Add(nn.Conv2d(ch[i], ch[i], 3, stride: 2, padding: 1)); side /= 2; }
            previous = ch[i];
        }
        middle1 = new ResidualBlock(previous, previous, embed, options.Groups);
        middleAttention = new SelfAttention2d(previous, options.Groups);
        middle2 = new ResidualBlock(previous, previous, embed, options.Groups);
        for (int i = levels - 1; i >= 0; i--)
        {
            up.Add(new ResidualBlock(previous + ch[i], ch[i], embed, options.Groups));
            upAttention.Add(side <= options.AttentionResolution ? new SelfAttention2d(ch[i], options.Groups) : nn.Identity());
            if (i > 0) { upsample.Add(nn.Conv2d(ch[i], ch[i], 3, padding: 1)); side *= 2; }
            previous = ch[i];
        }
        outputNorm = GroupNorms.Create(options.Groups, ch[0]);
        output = nn.Conv2d(ch[0], options.OutputChannels, 3, padding: 1);
        RegisterComponents();
        // The last convolution starts at zero (as in the DDPM code): the untrained network predicts 0.
        using var noGrad = torch.no_grad();
        output.weight!.zero_();
        output.bias!.zero_();
    }

    /// <inheritdoc/>
    public override Tensor forward(Tensor x, Tensor t)
    {
        using var scope = torch.NewDisposeScope();
        var emb = time.forward(t);                                                        // (B, 4·C0)
        var h = input.forward(x);                                                         // (B, C0, H, W)
        var skips = new List<Tensor>();
        for (int i = 0; i < levels; i++)
        {
            h = downAttention[i].forward(down[i].forward(h, emb));                        // (B, C_i, H/2^i, W/2^i)
            skips.Add(h);
            if (i < levels - 1) h = downsample[i].forward(h);
        }
        h = middle2.forward(middleAttention.forward(middle1.forward(h, emb)), emb);
        for (int j = 0; j < levels; j++)
        {
            h = torch.cat([h, skips[levels - 1 - j]], 1);                                 // (B, C + C_skip, h, w)
            h = upAttention[j].forward(up[j].forward(h, emb));
            if (j < levels - 1)
                h = upsample[j].forward(nn.functional.interpolate(h, scale_factor: [2.0, 2.0], mode: InterpolationMode.Nearest));
        }
        return output.forward(nn.functional.silu(outputNorm.forward(h))).MoveToOuterDisposeScope();
    }
}

/// <summary>
/// Group norm → SiLU → 3×3 conv, plus the projected time embedding, → group norm → SiLU → 3×3 conv, added to the input
/// (through a 1×1 conv when the channel count changes). <c>(B, C_in, H, W)</c>, <c>(B, E)</c> → <c>(B, C_out, H, W)</c>.
/// </summary>
public sealed class ResidualBlock : nn.Module<Tensor, Tensor, Tensor>
{
#pragma warning disable IDE0044
    GroupNorm norm1;
    Conv2d conv1;
    Linear time;
    GroupNorm norm2;
    Conv2d conv2;
    nn.Module<Tensor, Tensor> skip;
#pragma warning restore IDE0044

    /// <summary>Creates the block.</summary>
    public ResidualBlock(int inChannels, int outChannels, int embedding, int groups) : base("res")
    {
        norm1 = GroupNorms.Create(Math.Min(groups, inChannels), inChannels);
        conv1 = nn.Conv2d(inChannels, outChannels, 3, padding: 1);
        time = nn.Linear(embedding, outChannels);
        norm2 = GroupNorms.Create(groups, outChannels);
        conv2 = nn.Conv2d(outChannels, outChannels, 3, padding: 1);
        skip = inChannels == outChannels ? nn.Identity() : nn.Conv2d(inChannels, outChannels, 1);
        RegisterComponents();
    }

    /// <inheritdoc/>
    public override Tensor forward(Tensor x, Tensor emb)
    {
        using var scope = torch.NewDisposeScope();
        var h = conv1.forward(nn.functional.silu(norm1.forward(x)));
        h = h + time.forward(nn.functional.silu(emb)).unsqueeze(-1).unsqueeze(-1);      // (B, C, 1, 1) broadcast
        h = conv2.forward(nn.functional.silu(norm2.forward(h)));
        return (skip.forward(x) + h).MoveToOuterDisposeScope();
    }
}

/// <summary>Single-head self-attention over the pixels of a feature map, with a residual: <c>(B, C, H, W)</c> → same.</summary>
public sealed class SelfAttention2d : nn.Module<Tensor, Tensor>
{
#pragma warning disable IDE0044
    GroupNorm norm;
    Conv2d qkv;
    Conv2d projection;
#pragma warning restore IDE0044

    /// <summary>Creates the layer.</summary>
    public SelfAttention2d(int channels, int groups) : base("attention")
    {
        norm = GroupNorms.Create(groups, channels);
        qkv = nn.Conv2d(channels, 3 * channels, 1);
        projection = nn.Conv2d(channels, channels, 1);
        RegisterComponents();
    }

    /// <inheritdoc/>
    public override Tensor forward(Tensor x)
    {
        using var scope = torch.NewDisposeScope();
        long b = x.shape[0], c = x.shape[1], h = x.shape[2], w = x.shape[3];
        var parts = qkv.forward(norm.forward(x)).reshape(b, 3, c, h * w).unbind(1);     // 3 × (B, C, HW)
        var q = parts[0].transpose(1, 2);                                                // (B, HW, C)
        var k = parts[1];                                                                // (B, C, HW)
        var v = parts[2].transpose(1, 2);                                                // (B, HW, C)
        var weights = torch.softmax(torch.bmm(q, k) / Math.Sqrt(c), -1);                 // (B, HW, HW)
        var mixed = torch.bmm(weights, v).transpose(1, 2).reshape(b, c, h, w);           // (B, C, H, W)
        return (x + projection.forward(mixed)).MoveToOuterDisposeScope();
    }
}

/// <summary>Group norms with their affine parameters set.</summary>
static class GroupNorms
{
    /// <summary>
    /// <c>nn.GroupNorm</c> with weight 1 and bias 0 written explicitly: TorchSharp 0.107 leaves them uninitialised (memory
    /// as found, sometimes NaN), which made the first loss NaN for some seeds.
    /// </summary>
    internal static GroupNorm Create(int groups, int channels)
    {
        var norm = nn.GroupNorm(groups, channels);
        using var noGrad = torch.no_grad();
        norm.weight!.fill_(1);
        norm.bias!.zero_();
        return norm;
    }
}
