namespace Bert4Sharp.Checkpoints;

using System.Buffers.Binary;
using System.Numerics;

/// <summary>CRC-32C (Castagnoli), as LevelDB tables and TensorFlow bundles use it, with their masking.</summary>
public static class Crc32C
{
    /// <summary>CRC-32C of <paramref name="data"/> (hardware-accelerated where available).</summary>
    public static uint Compute(ReadOnlySpan<byte> data) => ~Append(~0u, data);

    /// <summary>Continues an unfinalised CRC over more bytes.</summary>
    public static uint Append(uint crc, ReadOnlySpan<byte> data)
    {
        while (data.Length >= 8)
        {
            crc = BitOperations.Crc32C(crc, BinaryPrimitives.ReadUInt64LittleEndian(data));
            data = data[8..];
        }
        foreach (byte b in data) crc = BitOperations.Crc32C(crc, b);
        return crc;
    }

    /// <summary>LevelDB's mask: rotate right by 15 and add a constant, so CRCs of CRCs stay distinct.</summary>
    public static uint Mask(uint crc) => ((crc >> 15) | (crc << 17)) + 0xa282ead8u;

    /// <summary>Inverse of <see cref="Mask"/>.</summary>
    public static uint Unmask(uint masked)
    {
        uint rot = masked - 0xa282ead8u;
        return (rot >> 17) | (rot << 15);
    }
}
