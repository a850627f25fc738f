namespace Bert4Sharp.Checkpoints.TensorFlow;

/// <summary>Minimal protobuf wire-format reader for the few TensorFlow messages a bundle needs.</summary>
internal ref struct ProtoReader(ReadOnlySpan<byte> data, Func<string, Exception> error)
{
    readonly ReadOnlySpan<byte> data = data;
    int pos;

    public readonly bool End => pos >= data.Length;

    public ulong Varint()
    {
        ulong v = 0;
        for (int shift = 0; shift < 64; shift += 7)
        {
            if (pos >= data.Length) throw error("truncated varint");
            byte b = data[pos++];
            v |= (ulong)(b & 0x7f) << shift;
            if (b < 0x80) return v;
        }
        throw error("varint longer than 10 bytes");
    }

    public (int Field, int WireType) Tag()
    {
        ulong t = Varint();
        if (t >> 3 == 0 || t >> 3 > int.MaxValue) throw error($"bad field number in tag {t}");
        return ((int)(t >> 3), (int)(t & 7));
    }

    public uint Fixed32()
    {
        if (pos + 4 > data.Length) throw error("truncated fixed32");
        uint v = System.Buffers.Binary.BinaryPrimitives.ReadUInt32LittleEndian(data[pos..]);
        pos += 4;
        return v;
    }

    /// <summary>The next <paramref name="n"/> raw bytes (no length prefix).</summary>
    public ReadOnlySpan<byte> Raw(ulong n)
    {
        if (n > (ulong)(data.Length - pos)) throw error($"{n} bytes requested, {data.Length - pos} remain");
        var s = data.Slice(pos, (int)n);
        pos += (int)n;
        return s;
    }

    public ReadOnlySpan<byte> Bytes()
    {
        ulong n = Varint();
        if (n > (ulong)(data.Length - pos)) throw error($"length-delimited field of {n} bytes runs past the record");
        var s = data.Slice(pos, (int)n);
        pos += (int)n;
        return s;
    }

    public void Skip(int wireType)
    {
        switch (wireType)
        {
            case 0: Varint(); break;
            case 1: if (pos + 8 > data.Length) throw error("truncated fixed64"); pos += 8; break;
            case 2: Bytes(); break;
            case 5: Fixed32(); break;
            default: throw error($"unsupported wire type {wireType}");
        }
    }
}
