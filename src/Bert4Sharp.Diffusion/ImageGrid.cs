namespace Bert4Sharp.Diffusion;

using System.Buffers.Binary;
using System.IO.Compression;
using Bert4Sharp.Checkpoints;
using TorchSharp;
using static TorchSharp.torch;

/// <summary>
/// Sample grids as 8-bit grayscale PNG, written directly (signature, IHDR, one zlib IDAT, IEND): no plotting package and no
/// fonts, so it works wherever the tool does.
/// </summary>
public static class ImageGrid
{
    /// <summary>
    /// Writes images (B, 1, H, W) in [−1, 1] (clamped) as a grid of <paramref name="columns"/> columns with a
    /// <paramref name="padding"/>-pixel gray border, each pixel scaled by <paramref name="scale"/>. Atomic.
    /// </summary>
    /// <exception cref="ArgumentException">Not single-channel images, or bad sizes.</exception>
    public static void Write(string path, Tensor images, int columns = 8, int padding = 2, int scale = 2)
    {
        if (images.dim() != 4 || images.shape[1] != 1) throw new ArgumentException($"a grayscale grid takes (B, 1, H, W) images, got [{string.Join(", ", images.shape)}]");
        if (columns < 1 || padding < 0 || scale < 1) throw new ArgumentException($"grid columns and scale must be ≥ 1 and padding ≥ 0, got {columns}, {scale}, {padding}");
        int n = (int)images.shape[0], h = (int)images.shape[2], w = (int)images.shape[3];
        int cols = Math.Min(columns, n), rows = (n + cols - 1) / cols;
        int width = cols * (scale * w + padding) + padding, height = rows * (scale * h + padding) + padding;
        float[] values;
        using (var scope = torch.NewDisposeScope())
            values = ((images.detach().to(ScalarType.Float32).cpu().clamp(-1, 1) + 1) * 127.5f).contiguous().data<float>().ToArray();
        var pixels = new byte[height * width];
        Array.Fill(pixels, (byte)128);
        for (int i = 0; i < n; i++)
        {
            int top = padding + i / cols * (scale * h + padding), left = padding + i % cols * (scale * w + padding);
            for (int y = 0; y < h * scale; y++)
                for (int x = 0; x < w * scale; x++)
                    pixels[(top + y) * width + left + x] = (byte)Math.Round(values[i * h * w + y / scale * w + x / scale]);
        }
        WritePng(path, pixels, width, height);
    }

    /// <summary>Writes an 8-bit grayscale PNG (row-major pixels). Atomic.</summary>
    public static void WritePng(string path, byte[] pixels, int width, int height)
    {
        if (pixels.Length != width * height) throw new ArgumentException($"{pixels.Length} pixels do not make a {width}×{height} image");
        var raw = new byte[height * (width + 1)];                                        // filter byte 0 (none) per row
        for (int y = 0; y < height; y++) Array.Copy(pixels, y * width, raw, y * (width + 1) + 1, width);
        using var compressed = new MemoryStream();
        using (var z = new ZLibStream(compressed, CompressionLevel.Optimal, leaveOpen: true)) z.Write(raw);
        AtomicFile.Write(path, s =>
        {
            s.Write([0x89, (byte)'P', (byte)'N', (byte)'G', 0x0D, 0x0A, 0x1A, 0x0A]);
            var header = new byte[13];
            BinaryPrimitives.WriteInt32BigEndian(header, width);
            BinaryPrimitives.WriteInt32BigEndian(header.AsSpan(4), height);
            header[8] = 8;                                                                // bit depth
            header[9] = 0;                                                                // grayscale
            Chunk(s, "IHDR", header);
            Chunk(s, "IDAT", compressed.ToArray());
            Chunk(s, "IEND", []);
        });
    }

    static void Chunk(Stream s, string type, byte[] data)
    {
        Span<byte> word = stackalloc byte[4];
        BinaryPrimitives.WriteInt32BigEndian(word, data.Length);
        s.Write(word);
        var typed = new byte[4 + data.Length];
        for (int i = 0; i < 4; i++) typed[i] = (byte)type[i];
        data.CopyTo(typed, 4);
        s.Write(typed);
        BinaryPrimitives.WriteUInt32BigEndian(word, Crc32(typed));
        s.Write(word);
    }

    static readonly uint[] CrcTable = Enumerable.Range(0, 256).Select(n =>
    {
        uint c = (uint)n;
        for (int k = 0; k < 8; k++) c = (c & 1) != 0 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        return c;
    }).ToArray();

    /// <summary>PNG's CRC-32 (ISO 3309).</summary>
    internal static uint Crc32(ReadOnlySpan<byte> bytes)
    {
        uint c = 0xFFFFFFFFu;
        foreach (byte b in bytes) c = CrcTable[(c ^ b) & 0xFF] ^ (c >> 8);
        return c ^ 0xFFFFFFFFu;
    }
}

/// <summary>2-D points as a PNG: black dots on white over a square window, no fonts.</summary>
public static class PointPlot
{
    /// <summary>Writes points (B, 2) inside [−<paramref name="extent"/>, <paramref name="extent"/>]² to a <paramref name="size"/>-pixel PNG. Atomic.</summary>
    /// <exception cref="ArgumentException">Not (B, 2) points.</exception>
    public static void Write(string path, Tensor points, double extent = 3, int size = 256)
    {
        if (points.dim() != 2 || points.shape[1] != 2) throw new ArgumentException($"a point plot takes (B, 2) points, got [{string.Join(", ", points.shape)}]");
        var xy = points.detach().to(ScalarType.Float32).cpu().contiguous().data<float>().ToArray();
        var pixels = new byte[size * size];
        Array.Fill(pixels, (byte)255);
        for (int i = 0; i + 1 < xy.Length; i += 2)
        {
            int px = (int)((xy[i] + extent) / (2 * extent) * size), py = (int)((extent - xy[i + 1]) / (2 * extent) * size);
            for (int dy = 0; dy < 2; dy++)
                for (int dx = 0; dx < 2; dx++)
                {
                    int u = px + dx, v = py + dy;
                    if (u >= 0 && u < size && v >= 0 && v < size) pixels[v * size + u] = 0;
                }
        }
        ImageGrid.WritePng(path, pixels, size, size);
    }
}
