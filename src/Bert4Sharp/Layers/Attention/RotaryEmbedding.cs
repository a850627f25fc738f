namespace Bert4Sharp.Layers;

using TorchSharp;
using static TorchSharp.torch;

/// <summary>
/// Rotary position embedding, RoFormer/bert4keras form: interleaved pairs (x₀,x₁),(x₂,x₃)… rotated by
/// angle position·10000^(−2i/d) (Su et al., "RoFormer", kexue.fm/archives/8265). Tables are computed in
/// float64 and cast, as Hugging Face does, so results match to float32 rounding.
/// </summary>
public static class RotaryEmbedding
{
    /// <summary>(sin, cos) of shape [T, d], each value repeated for its pair: [s₀,s₀,s₁,s₁,…].</summary>
    public static (Tensor Sin, Tensor Cos) Tables(long length, long dim, Device device, ScalarType dtype)
    {
        using var scope = torch.NewDisposeScope();
        var pos = torch.arange(length, dtype: ScalarType.Float64).unsqueeze(1);                       // (T, 1)
        var inv = torch.pow(10000.0, torch.arange(0, dim, 2, dtype: ScalarType.Float64) / dim).reciprocal(); // (d/2)
        var angle = pos * inv.unsqueeze(0);                                                            // (T, d/2)
        var sin = angle.sin().repeat_interleave(2, 1).to(dtype, device);
        var cos = angle.cos().repeat_interleave(2, 1).to(dtype, device);
        return (sin.MoveToOuterDisposeScope(), cos.MoveToOuterDisposeScope());
    }

    /// <summary>(sin, cos) of shape (B, 1, T, d) for position ids (B, T) (any integer or float positions), computed in float64 and cast.</summary>
    public static (Tensor Sin, Tensor Cos) TablesAt(Tensor positions, long dim, ScalarType dtype)
    {
        using var scope = torch.NewDisposeScope();
        var pos = positions.to(ScalarType.Float64).unsqueeze(-1);                                      // (B, T, 1)
        var inv = torch.pow(10000.0, torch.arange(0, dim, 2, dtype: ScalarType.Float64, device: positions.device) / dim).reciprocal();
        var angle = pos * inv;                                                                         // (B, T, d/2)
        var sin = angle.sin().repeat_interleave(2, -1).to(dtype).unsqueeze(1);                        // (B, 1, T, d)
        var cos = angle.cos().repeat_interleave(2, -1).to(dtype).unsqueeze(1);
        return (sin.MoveToOuterDisposeScope(), cos.MoveToOuterDisposeScope());
    }

    /// <summary>Rotates <paramref name="x"/> of shape (B, heads, T, d) by the tables for positions 0..T-1.</summary>
    public static Tensor Apply(Tensor x, Tensor sin, Tensor cos)
    {
        using var scope = torch.NewDisposeScope();
        // rotate_half for interleaved pairs: (x0, x1) -> (-x1, x0)
        var pairs = x.view([.. x.shape[..^1], x.shape[^1] / 2, 2]);
        var rotated = torch.stack([-pairs.select(-1, 1), pairs.select(-1, 0)], -1).view(x.shape);
        return (x * cos + rotated * sin).MoveToOuterDisposeScope();
    }
}
