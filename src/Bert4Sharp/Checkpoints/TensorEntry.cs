namespace Bert4Sharp.Checkpoints;

/// <summary>Whether a listed tensor's data can be read.</summary>
public enum TensorState
{
    /// <summary>Listed and fully present.</summary>
    Ok,
    /// <summary>Listed, but the file ends before its last byte.</summary>
    Truncated,
    /// <summary>An optimiser slot or counter (adam_m, adam_v, global_step…): readable, skipped by model loading.</summary>
    Slot,
    /// <summary>Listed, but the file (data shard) that holds it is absent.</summary>
    Missing,
}

/// <summary>One tensor of a checkpoint: name, dtype, shape and a lazy handle on its bytes.</summary>
public sealed class TensorEntry
{
    internal TensorEntry(string name, TensorDType dtype, long[] shape, TensorState state, TensorLocator locator, string? note = null)
    {
        Name = name;
        DType = dtype;
        Shape = shape;
        ElementCount = ShapeMath.ElementCount(shape);
        ByteCount = ElementCount * dtype.ElementSize();
        State = state;
        Locator = locator;
        Note = note;
    }

    /// <summary>The name as stored in the checkpoint.</summary>
    public string Name { get; }

    /// <summary>Element type.</summary>
    public TensorDType DType { get; }

    /// <summary>Dimensions, outermost first; empty for a scalar.</summary>
    public IReadOnlyList<long> Shape { get; }

    /// <summary>Number of elements (1 for a scalar, 0 for an empty tensor).</summary>
    public long ElementCount { get; }

    /// <summary>Size of the tensor's data when contiguous.</summary>
    public long ByteCount { get; }

    /// <summary>Whether the data can be read.</summary>
    public TensorState State { get; }

    /// <summary>Why the state is not <see cref="TensorState.Ok"/>, or other remarks (tied storage…).</summary>
    public string? Note { get; }

    internal TensorLocator Locator { get; }

    /// <summary>The shape as PyTorch prints it, e.g. <c>[21128, 128]</c>.</summary>
    public string ShapeText => "[" + string.Join(", ", Shape) + "]";

    /// <inheritdoc/>
    public override string ToString() => $"{Name} {DType.DisplayName()} {ShapeText} {State}";
}

/// <summary>Knows where one tensor's bytes are and how to bring them back contiguous.</summary>
internal abstract class TensorLocator
{
    /// <summary>Writes the tensor's bytes, contiguous and row-major, into <paramref name="destination"/>.</summary>
    public abstract void ReadInto(TensorEntry entry, Span<byte> destination);

    /// <summary>Zero-copy view when the bytes are contiguous in a mapped or in-memory source (CRCs are not checked).</summary>
    public virtual bool TryGetSpan(TensorEntry entry, out ReadOnlySpan<byte> span)
    {
        span = default;
        return false;
    }
}

/// <summary>Locator for a tensor whose data cannot be read; raises the reason.</summary>
internal sealed class UnavailableLocator(string file, string reason) : TensorLocator
{
    public override void ReadInto(TensorEntry entry, Span<byte> destination) =>
        throw new TensorDataUnavailableException(file, entry.Name, reason);
}

/// <summary>Contiguous bytes at a known offset of a source, optionally checked by TensorFlow's masked CRC32C.</summary>
internal sealed class ContiguousLocator(ByteSource source, long offset, uint? maskedCrc32C = null) : TensorLocator
{
    public override bool TryGetSpan(TensorEntry entry, out ReadOnlySpan<byte> span) =>
        source.TryGetSpan(offset, (int)entry.ByteCount, out span);

    public override void ReadInto(TensorEntry entry, Span<byte> destination)
    {
        if (destination.Length != entry.ByteCount)
            throw new ArgumentException($"destination has {destination.Length} bytes, tensor '{entry.Name}' needs {entry.ByteCount}");
        source.Read(offset, destination, entry.Name);
        if (maskedCrc32C is uint expected)
        {
            uint actual = Crc32C.Mask(Crc32C.Compute(destination));
            if (actual != expected)
                throw new CheckpointIntegrityException(source.Name, entry.Name, $"CRC32C mismatch: stored 0x{expected:x8}, computed 0x{actual:x8}; the data shard is corrupt");
        }
    }
}

/// <summary>
/// A PyTorch view into a storage: element offset and strides, possibly non-contiguous or sharing
/// the storage with other tensors. Reads the covered part of the storage and gathers.
/// </summary>
internal sealed class StridedLocator(ByteSource source, long storageStart, long storageBytesAvailable, long storageElements,
    int elementSize, long storageOffset, long[] shape, long[] stride) : TensorLocator
{
    public override bool TryGetSpan(TensorEntry entry, out ReadOnlySpan<byte> span)
    {
        span = default;
        if (entry.ElementCount == 0 || !ShapeMath.IsContiguous(shape, stride)) return false;
        long start = storageStart + storageOffset * elementSize;
        return (storageOffset * elementSize + entry.ByteCount) <= storageBytesAvailable && source.TryGetSpan(start, (int)entry.ByteCount, out span);
    }

    public override void ReadInto(TensorEntry entry, Span<byte> destination)
    {
        if (destination.Length != entry.ByteCount)
            throw new ArgumentException($"destination has {destination.Length} bytes, tensor '{entry.Name}' needs {entry.ByteCount}");
        if (entry.ElementCount == 0) return;
        var (lo, hi) = ShapeMath.Span(shape, stride, storageOffset);
        if (lo < 0 || hi >= storageElements)
            throw new CheckpointFormatException(source.Name, entry.Name, $"view reaches elements {lo}..{hi} of a storage of {storageElements}");
        long needBytes = (hi + 1) * elementSize;
        if (needBytes > storageBytesAvailable)
            throw new TensorDataUnavailableException(source.Name, entry.Name, $"the file is truncated: the tensor needs {needBytes} bytes of its storage, {Math.Max(0, storageBytesAvailable)} are present");
        if (ShapeMath.IsContiguous(shape, stride))
        {
            source.Read(storageStart + lo * elementSize, destination, entry.Name);
            return;
        }
        byte[] window = source.ReadArray(storageStart + lo * elementSize, (hi - lo + 1) * elementSize, entry.Name);
        ShapeMath.Gather(window, elementSize, shape, stride, storageOffset - lo, destination);
    }
}

internal static class ShapeMath
{
    public static long ElementCount(IReadOnlyList<long> shape)
    {
        long n = 1;
        foreach (long d in shape)
        {
            if (d < 0) throw new ArgumentOutOfRangeException(nameof(shape), "negative dimension");
            n = checked(n * d);
        }
        return n;
    }

    public static bool IsContiguous(long[] shape, long[] stride)
    {
        long expect = 1;
        for (int i = shape.Length - 1; i >= 0; i--)
        {
            if (shape[i] != 1 && stride[i] != expect) return false;
            expect *= shape[i];
        }
        return true;
    }

    /// <summary>Smallest and largest storage element a view touches.</summary>
    public static (long Lo, long Hi) Span(long[] shape, long[] stride, long offset)
    {
        long lo = offset, hi = offset;
        for (int i = 0; i < shape.Length; i++)
        {
            long reach = checked((shape[i] - 1) * stride[i]);
            if (reach < 0) lo = checked(lo + reach); else hi = checked(hi + reach);
        }
        return (lo, hi);
    }

    public static void Gather(ReadOnlySpan<byte> storage, int elementSize, long[] shape, long[] stride, long offset, Span<byte> destination)
    {
        if (shape.Length == 2 && shape[0] > 0 && shape[1] > 0)
        {
            switch (elementSize)
            {
                case 1: Gather2D<byte>(storage, shape[0], shape[1], stride[0], stride[1], offset, destination); return;
                case 2: Gather2D<ushort>(storage, shape[0], shape[1], stride[0], stride[1], offset, destination); return;
                case 4: Gather2D<uint>(storage, shape[0], shape[1], stride[0], stride[1], offset, destination); return;
                case 8: Gather2D<ulong>(storage, shape[0], shape[1], stride[0], stride[1], offset, destination); return;
            }
        }
        var index = new long[shape.Length];
        long count = ElementCount(shape);
        for (long n = 0; n < count; n++)
        {
            long src = offset;
            for (int d = 0; d < shape.Length; d++) src += index[d] * stride[d];
            storage.Slice((int)(src * elementSize), elementSize).CopyTo(destination.Slice((int)(n * elementSize), elementSize));
            for (int d = shape.Length - 1; d >= 0; d--)
            {
                if (++index[d] < shape[d]) break;
                index[d] = 0;
            }
        }
    }

    // 2-D views (transposes above all) in 64 × 64 tiles, so that the strided side stays in L1.
    static void Gather2D<T>(ReadOnlySpan<byte> storage, long rows, long cols, long rowStride, long colStride, long offset, Span<byte> destination)
        where T : unmanaged
    {
        var src = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, T>(storage);
        var dst = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, T>(destination);
        const int Tile = 64;
        for (long r0 = 0; r0 < rows; r0 += Tile)
        {
            long r1 = Math.Min(rows, r0 + Tile);
            for (long c0 = 0; c0 < cols; c0 += Tile)
            {
                long c1 = Math.Min(cols, c0 + Tile);
                for (long r = r0; r < r1; r++)
                {
                    long at = offset + r * rowStride + c0 * colStride;
                    int d = (int)(r * cols + c0);
                    for (long c = c0; c < c1; c++, at += colStride) dst[d++] = src[(int)at];
                }
            }
        }
    }
}
