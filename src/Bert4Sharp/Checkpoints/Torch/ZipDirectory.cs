namespace Bert4Sharp.Checkpoints.Torch;

using System.Buffers.Binary;
using System.Text;

/// <summary>
/// The central directory of a zip archive, read directly so that stored (uncompressed) members can be
/// read at their file offsets without extracting them. PyTorch's writer stores every member
/// uncompressed and 64-byte aligned; Zip64 records are understood.
/// </summary>
internal sealed class ZipDirectory
{
    public sealed record Member(string Name, int Method, long CompressedSize, long Size, long LocalHeaderOffset);

    readonly ByteSource source;
    public readonly List<Member> Members = [];

    public ZipDirectory(ByteSource source)
    {
        this.source = source;
        string file = source.Name;
        long len = source.Length;
        if (len < 22) throw new CheckpointFormatException(file, null, "too short to be a zip archive");
        int tailLen = (int)Math.Min(len, 22 + 65535);
        byte[] tail = source.ReadArray(len - tailLen, tailLen);
        int eocd = -1;
        for (int i = tailLen - 22; i >= 0; i--)
        {
            if (BinaryPrimitives.ReadUInt32LittleEndian(tail.AsSpan(i)) == 0x06054b50) { eocd = i; break; }
        }
        if (eocd < 0) throw new CheckpointFormatException(file, null, "no zip end-of-central-directory record (truncated or not a zip)");
        long entries = BinaryPrimitives.ReadUInt16LittleEndian(tail.AsSpan(eocd + 10));
        long cdSize = BinaryPrimitives.ReadUInt32LittleEndian(tail.AsSpan(eocd + 12));
        long cdOffset = BinaryPrimitives.ReadUInt32LittleEndian(tail.AsSpan(eocd + 16));
        if (entries == 0xFFFF || cdSize == 0xFFFFFFFF || cdOffset == 0xFFFFFFFF)
        {
            long eocdAbs = len - tailLen + eocd;
            if (eocdAbs < 20) throw new CheckpointFormatException(file, null, "Zip64 locator missing");
            byte[] loc = source.ReadArray(eocdAbs - 20, 20);
            if (BinaryPrimitives.ReadUInt32LittleEndian(loc) != 0x07064b50) throw new CheckpointFormatException(file, null, "Zip64 locator missing");
            long z64 = (long)BinaryPrimitives.ReadUInt64LittleEndian(loc.AsSpan(8));
            if (z64 < 0 || z64 > len - 56) throw new CheckpointFormatException(file, null, "Zip64 end record lies outside the file");
            byte[] rec = source.ReadArray(z64, 56);
            if (BinaryPrimitives.ReadUInt32LittleEndian(rec) != 0x06064b50) throw new CheckpointFormatException(file, null, "bad Zip64 end record signature");
            entries = (long)BinaryPrimitives.ReadUInt64LittleEndian(rec.AsSpan(32));
            cdSize = (long)BinaryPrimitives.ReadUInt64LittleEndian(rec.AsSpan(40));
            cdOffset = (long)BinaryPrimitives.ReadUInt64LittleEndian(rec.AsSpan(48));
        }
        if (cdOffset < 0 || cdSize < 0 || cdOffset > len || cdSize > len - cdOffset)
            throw new CheckpointFormatException(file, null, $"central directory [{cdOffset}, +{cdSize}) lies outside the file ({len} bytes)");
        if (entries > cdSize / 46) throw new CheckpointFormatException(file, null, $"{entries} entries cannot fit a central directory of {cdSize} bytes");
        byte[] cd = source.ReadArray(cdOffset, cdSize);
        int p = 0;
        for (long e = 0; e < entries; e++)
        {
            if (p + 46 > cd.Length || BinaryPrimitives.ReadUInt32LittleEndian(cd.AsSpan(p)) != 0x02014b50)
                throw new CheckpointFormatException(file, null, $"central directory entry {e} is corrupt");
            int method = BinaryPrimitives.ReadUInt16LittleEndian(cd.AsSpan(p + 10));
            long comp = BinaryPrimitives.ReadUInt32LittleEndian(cd.AsSpan(p + 20));
            long size = BinaryPrimitives.ReadUInt32LittleEndian(cd.AsSpan(p + 24));
            int nameLen = BinaryPrimitives.ReadUInt16LittleEndian(cd.AsSpan(p + 28));
            int extraLen = BinaryPrimitives.ReadUInt16LittleEndian(cd.AsSpan(p + 30));
            int commentLen = BinaryPrimitives.ReadUInt16LittleEndian(cd.AsSpan(p + 32));
            long local = BinaryPrimitives.ReadUInt32LittleEndian(cd.AsSpan(p + 42));
            if (p + 46L + nameLen + extraLen + commentLen > cd.Length)
                throw new CheckpointFormatException(file, null, $"central directory entry {e} runs past the directory");
            string name = Encoding.UTF8.GetString(cd, p + 46, nameLen);
            var extra = cd.AsSpan(p + 46 + nameLen, extraLen);
            while (extra.Length >= 4)
            {
                int id = BinaryPrimitives.ReadUInt16LittleEndian(extra), n = BinaryPrimitives.ReadUInt16LittleEndian(extra[2..]);
                if (n > extra.Length - 4) break;
                var body = extra.Slice(4, n);
                if (id == 1)
                {
                    int q = 0;
                    if (size == 0xFFFFFFFF && q + 8 <= body.Length) { size = (long)BinaryPrimitives.ReadUInt64LittleEndian(body[q..]); q += 8; }
                    if (comp == 0xFFFFFFFF && q + 8 <= body.Length) { comp = (long)BinaryPrimitives.ReadUInt64LittleEndian(body[q..]); q += 8; }
                    if (local == 0xFFFFFFFF && q + 8 <= body.Length) { local = (long)BinaryPrimitives.ReadUInt64LittleEndian(body[q..]); }
                }
                extra = extra[(4 + n)..];
            }
            CheckName(file, name);
            if (size < 0 || comp < 0 || local < 0 || local > len)
                throw new CheckpointFormatException(file, name, "member sizes or offset are out of range");
            Members.Add(new Member(name, method, comp, size, local));
            p += 46 + nameLen + extraLen + commentLen;
        }
    }

    static void CheckName(string file, string name)
    {
        if (name.Length == 0 || name.StartsWith('/') || name.StartsWith('\\') || name.Contains(':') ||
            name.Replace('\\', '/').Split('/').Any(s => s == ".."))
            throw new CheckpointFormatException(file, name, "zip member path is absolute or climbs out of the archive ('..'); refusing the file");
    }

    /// <summary>File offset of a stored member's data; checks the local header.</summary>
    public long DataOffset(Member m)
    {
        string file = source.Name;
        if (m.Method != 0)
            throw new CheckpointFormatException(file, m.Name, $"member is compressed (method {m.Method}); torch.save stores members uncompressed, so this file was repacked: unzip and re-zip with 'zip -0'");
        if (m.LocalHeaderOffset > source.Length - 30) throw new CheckpointFormatException(file, m.Name, "local header lies outside the file");
        byte[] h = source.ReadArray(m.LocalHeaderOffset, 30, m.Name);
        if (BinaryPrimitives.ReadUInt32LittleEndian(h) != 0x04034b50) throw new CheckpointFormatException(file, m.Name, "bad local header signature");
        long start = m.LocalHeaderOffset + 30 + BinaryPrimitives.ReadUInt16LittleEndian(h.AsSpan(26)) + BinaryPrimitives.ReadUInt16LittleEndian(h.AsSpan(28));
        if (start > source.Length || m.Size > source.Length - start || m.CompressedSize != m.Size)
            throw new CheckpointFormatException(file, m.Name, $"member data [{start}, +{m.Size}) lies outside the file ({source.Length} bytes)");
        return start;
    }

    /// <summary>The whole content of a stored member.</summary>
    public byte[] ReadAll(Member m) => source.ReadArray(DataOffset(m), m.Size, m.Name);
}
