namespace Bert4Sharp.Checkpoints.TensorFlow;

using System.Buffers.Binary;

/// <summary>
/// Reads every key/value of a LevelDB-format table, the container of a TensorFlow bundle's
/// <c>.index</c>: a 48-byte footer (metaindex and index block handles, magic), an index block whose
/// values are handles of data blocks, and data blocks of prefix-compressed entries. Each block is
/// followed by a compression byte (0 none, 1 Snappy) and a masked CRC32C of block + byte.
/// </summary>
internal static class SsTable
{
    const ulong Magic = 0xdb4775248b80fb57UL;

    public static List<(byte[] Key, byte[] Value)> ReadAll(ByteSource source)
    {
        string file = source.Name;
        long len = source.Length;
        if (len < 48) throw new CheckpointFormatException(file, null, $"an SSTable ends with a 48-byte footer; the file has {len} bytes");
        byte[] footer = source.ReadArray(len - 48, 48);
        if (BinaryPrimitives.ReadUInt64LittleEndian(footer.AsSpan(40)) != Magic)
            throw new CheckpointFormatException(file, null, "bad table magic number: not a TensorFlow checkpoint index (truncated or another format)");
        var fr = new ProtoReader(footer, m => new CheckpointFormatException(file, "footer", m));
        fr.Varint(); fr.Varint();                     // metaindex handle: unused by bundles
        long indexOffset = (long)fr.Varint(), indexSize = (long)fr.Varint();
        byte[] index = ReadBlock(source, indexOffset, indexSize, "index block");
        var result = new List<(byte[], byte[])>();
        int block = 0;
        foreach (var (_, handle) in Entries(file, index, "index block"))
        {
            var hr = new ProtoReader(handle, m => new CheckpointFormatException(file, "index block", m));
            long off = (long)hr.Varint(), size = (long)hr.Varint();
            string name = $"data block {block++}";
            result.AddRange(Entries(file, ReadBlock(source, off, size, name), name));
        }
        return result;
    }

    static byte[] ReadBlock(ByteSource source, long offset, long size, string what)
    {
        string file = source.Name;
        if (offset < 0 || size < 0 || offset > source.Length || size > source.Length - offset - 5)
            throw new CheckpointFormatException(file, what, $"block [{offset}, +{size}+5) lies outside the file ({source.Length} bytes)");
        byte[] raw = source.ReadArray(offset, size + 5, what);
        uint stored = BinaryPrimitives.ReadUInt32LittleEndian(raw.AsSpan((int)size + 1));
        uint actual = Crc32C.Mask(Crc32C.Compute(raw.AsSpan(0, (int)size + 1)));
        if (stored != actual)
            throw new CheckpointIntegrityException(file, what, $"block CRC32C mismatch (stored 0x{stored:x8}, computed 0x{actual:x8})");
        byte type = raw[size];
        var body = raw.AsSpan(0, (int)size);
        switch (type)
        {
            case 0:
                return body.ToArray();
            case 1:
            {
                int n;
                try { n = Snappier.Snappy.GetUncompressedLength(body); }
                catch (Exception e) { throw new CheckpointFormatException(file, what, $"corrupt Snappy block: {e.Message}", e); }
                // Snappy cannot expand more than ~21× (a 3-byte copy of 64 bytes); refuse claims beyond that.
                if (n < 0 || n > 32L * size + 64)
                    throw new CheckpointFormatException(file, what, $"Snappy block claims {n} bytes from {size}, more than the format can encode");
                var output = new byte[n];
                try
                {
                    int written = Snappier.Snappy.Decompress(body, output);
                    if (written != n) throw new CheckpointFormatException(file, what, $"Snappy block decompressed to {written} bytes, header said {n}");
                }
                catch (CheckpointException) { throw; }
                catch (Exception e) { throw new CheckpointFormatException(file, what, $"corrupt Snappy block: {e.Message}", e); }
                return output;
            }
            default:
                throw new CheckpointFormatException(file, what, $"unknown block compression type {type}");
        }
    }

    static List<(byte[] Key, byte[] Value)> Entries(string file, byte[] block, string what)
    {
        if (block.Length < 4) throw new CheckpointFormatException(file, what, "block too short for its restart count");
        long restarts = BinaryPrimitives.ReadUInt32LittleEndian(block.AsSpan(block.Length - 4));
        long limit = block.Length - 4 - 4 * restarts;
        if (restarts > block.Length / 4 || limit < 0) throw new CheckpointFormatException(file, what, $"restart count {restarts} does not fit the block");
        var list = new List<(byte[], byte[])>();
        var r = new ProtoReader(block.AsSpan(0, (int)limit), m => new CheckpointFormatException(file, what, m));
        byte[] prev = [];
        while (!r.End)
        {
            ulong shared = r.Varint(), nonShared = r.Varint(), valueLen = r.Varint();
            if (shared > (ulong)prev.Length) throw new CheckpointFormatException(file, what, $"entry shares {shared} key bytes but the previous key has {prev.Length}");
            var keyTail = r.Raw(nonShared);
            var value = r.Raw(valueLen);
            var key = new byte[(int)shared + keyTail.Length];
            prev.AsSpan(0, (int)shared).CopyTo(key);
            keyTail.CopyTo(key.AsSpan((int)shared));
            list.Add((key, value.ToArray()));
            prev = key;
        }
        return list;
    }
}
