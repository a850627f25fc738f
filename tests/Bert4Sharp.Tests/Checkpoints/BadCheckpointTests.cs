using System.Buffers.Binary;
using System.IO.Compression;
using System.Text;
using Bert4Sharp.Checkpoints;
using Bert4Sharp.Checkpoints.Onnx;
using Bert4Sharp.Checkpoints.TensorFlow;

namespace Bert4Sharp.Tests.Checkpoints;

/// <summary>Each kind of bad input raises a documented <see cref="CheckpointException"/> naming the file and the entry.</summary>
public class BadCheckpointTests
{
    static byte[] Fixture(string name) => File.ReadAllBytes(TestPaths.Fixture("checkpoints", name));

    static byte[] Safetensors(string header, int dataBytes)
    {
        var h = Encoding.UTF8.GetBytes(header);
        var b = new byte[8 + h.Length + dataBytes];
        BinaryPrimitives.WriteUInt64LittleEndian(b, (ulong)h.Length);
        h.CopyTo(b, 8);
        return b;
    }

    static T Fails<T>(byte[] data, string name = "bad.bin") where T : CheckpointException
    {
        var e = Assert.Throws<T>(() =>
        {
            using var ck = Checkpoint.Open(data, name);
            foreach (var entry in ck.Entries) ck.ReadBytes(entry);
        });
        Assert.Equal(name, e.FilePath);
        Assert.StartsWith(name, e.Message);
        Assert.DoesNotContain('\n', e.Message);
        return e;
    }

    [Fact]
    public void WrongMagicIsNamed()
    {
        var e = Fails<CheckpointFormatException>(Encoding.ASCII.GetBytes("GIF89a this is not a checkpoint at all"));
        Assert.Contains("unknown checkpoint format", e.Message);
        var legacy = Fixture("torch_legacy.pt");
        legacy[5] ^= 0x40;   // inside the 10-byte magic number
        Assert.Contains("magic", Fails<CheckpointFormatException>(legacy).Message);
    }

    [Theory]
    [InlineData("torch_zip.pt")]
    [InlineData("torch_legacy.pt")]
    [InlineData("reference.safetensors")]
    public void TruncatedFilesFailCleanly(string file)
    {
        var full = Fixture(file);
        foreach (int cut in new[] { 1, 7, 9, 40, full.Length / 3, full.Length / 2, full.Length - 100, full.Length - 1 })
            Assert.ThrowsAny<CheckpointException>(() =>
            {
                using var ck = Checkpoint.Open(full.AsMemory(0, cut), file);
                foreach (var e in ck.Entries) ck.ReadBytes(e);
            });
    }

    [Fact]
    public void SafetensorsHeaderLengthPastEndOfFile()
    {
        var b = Safetensors("{}", 0);
        BinaryPrimitives.WriteUInt64LittleEndian(b, 1_000_000);
        Assert.Contains("header length 1000000 is past the end", Fails<CheckpointFormatException>(b).Message);
        BinaryPrimitives.WriteUInt64LittleEndian(b, ulong.MaxValue);
        Fails<CheckpointFormatException>(b);
    }

    [Fact]
    public void SafetensorsOffsetsPastEndOfFile()
    {
        var e = Fails<CheckpointFormatException>(Safetensors("{\"w\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", 8));
        Assert.Equal("w", e.EntryName);
        Assert.Contains("past the end of the data section", e.Message);
    }

    [Fact]
    public void SafetensorsOverlappingOffsets()
    {
        var e = Fails<CheckpointFormatException>(Safetensors(
            "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12));
        Assert.Contains("overlap", e.Message);
    }

    [Fact]
    public void SafetensorsDtypeShapeByteCountMismatch()
    {
        var e = Fails<CheckpointFormatException>(Safetensors("{\"w\":{\"dtype\":\"F16\",\"shape\":[3,2],\"data_offsets\":[0,24]}}", 24));
        Assert.Contains("needs 12 bytes but data_offsets span 24", e.Message);
    }

    [Fact]
    public void SafetensorsUnknownDtype()
    {
        var e = Fails<CheckpointFormatException>(Safetensors("{\"w\":{\"dtype\":\"F8_E4M3\",\"shape\":[2],\"data_offsets\":[0,2]}}", 2));
        Assert.Contains("unknown dtype 'F8_E4M3'", e.Message);
        Assert.Equal("w", e.EntryName);
    }

    [Fact]
    public void SafetensorsHeaderThatIsNotJson()
    {
        Assert.Contains("not valid JSON", Fails<CheckpointFormatException>(Safetensors("{\"w\":", 0)).Message);
    }

    [Fact]
    public void ZipMemberThatClimbsOutOfTheArchiveIsRefused()
    {
        var ms = new MemoryStream();
        using (var zip = new ZipArchive(ms, ZipArchiveMode.Create, leaveOpen: true))
        {
            using (var src = new ZipArchive(new MemoryStream(Fixture("torch_zip.pt"))))
                foreach (var entry in src.Entries)
                {
                    var dst = zip.CreateEntry(entry.FullName, CompressionLevel.NoCompression);
                    using var i = entry.Open();
                    using var o = dst.Open();
                    i.CopyTo(o);
                }
            using var evil = zip.CreateEntry("torch_zip/../../etc/evil", CompressionLevel.NoCompression).Open();
            evil.Write("x"u8);
        }
        var e = Fails<CheckpointFormatException>(ms.ToArray(), "slip.pt");
        Assert.Equal("torch_zip/../../etc/evil", e.EntryName);
        Assert.Contains("climbs out", e.Message);
    }

    [Fact]
    public void CompressedZipMembersGetAnActionableError()
    {
        var ms = new MemoryStream();
        using (var zip = new ZipArchive(ms, ZipArchiveMode.Create, leaveOpen: true))
        using (var src = new ZipArchive(new MemoryStream(Fixture("torch_zip.pt"))))
            foreach (var entry in src.Entries)
            {
                var dst = zip.CreateEntry(entry.FullName, CompressionLevel.Optimal);
                using var i = entry.Open();
                using var o = dst.Open();
                i.CopyTo(o);
            }
        Assert.Contains("compressed", Fails<CheckpointFormatException>(ms.ToArray(), "deflated.pt").Message);
    }

    [Fact]
    public void CrcMismatchInTensorFlowShardNamesTheTensor()
    {
        var index = Fixture("tf_bundle.index");
        var data = Fixture("tf_bundle.data-00000-of-00001");
        using var good = TensorFlowCheckpoint.Open(index, [data], "tf");
        var target = good["f64"];
        // Find where f64 lives and flip one bit in it.
        byte[] bytes = good.ReadBytes(target);
        int at = data.AsSpan().IndexOf(bytes);
        Assert.True(at >= 0);
        var bad = (byte[])data.Clone();
        bad[at + 3] ^= 0x01;
        using var ck = TensorFlowCheckpoint.Open(index, [bad], "tf");
        var e = Assert.Throws<CheckpointIntegrityException>(() => ck.ReadBytes("f64"));
        Assert.Equal("f64", e.EntryName);
        Assert.Contains("CRC32C mismatch", e.Message);
        Assert.Equal(good.ReadBytes("i8"), ck.ReadBytes("i8"));   // the other tensors still read
    }

    [Fact]
    public void CrcMismatchInTensorFlowIndexBlock()
    {
        var index = Fixture("tf_bundle.index");
        index[10] ^= 0x20;
        var e = Assert.Throws<CheckpointIntegrityException>(() => TensorFlowCheckpoint.Open(index, [], "tf"));
        Assert.Contains("CRC32C", e.Message);
    }

    [Fact]
    public void CorruptSnappyBlockInTheRealAlbertIndex()
    {
        var index = File.ReadAllBytes(TestPaths.SharedOrSkip("models/albert_tiny_zh_google/albert_model.ckpt.index"));
        using (var ok = TensorFlowCheckpoint.Open(index, [], "albert")) Assert.Equal(97, ok.Entries.Count);
        // The first data block starts at offset 0; find where it ends: the first position followed by
        // compression type 1 (Snappy) and a valid masked CRC of block + type.
        int end = Enumerable.Range(4, index.Length - 60).First(i =>
            index[i] == 1 && BinaryPrimitives.ReadUInt32LittleEndian(index.AsSpan(i + 1)) == Crc32C.Mask(Crc32C.Compute(index.AsSpan(0, i + 1))));
        // Corrupt the Snappy stream (its varint preamble now claims ~4 GB), then fix the CRC so that the
        // decompressor, not the checksum, has to notice.
        var bad = (byte[])index.Clone();
        bad[0] = 0xff; bad[1] = 0xff; bad[2] = 0xff; bad[3] = 0x0f;
        BinaryPrimitives.WriteUInt32LittleEndian(bad.AsSpan(end + 1), Crc32C.Mask(Crc32C.Compute(bad.AsSpan(0, end + 1))));
        var e = Assert.Throws<CheckpointFormatException>(() => TensorFlowCheckpoint.Open(bad, [], "albert"));
        Assert.Contains("Snappy", e.Message);
        Assert.Equal("data block 0", e.EntryName);
        // And a scrambled body with a plausible length.
        var bad2 = (byte[])index.Clone();
        for (int i = 8; i < Math.Min(end, 40); i++) bad2[i] = 0xfe;
        BinaryPrimitives.WriteUInt32LittleEndian(bad2.AsSpan(end + 1), Crc32C.Mask(Crc32C.Compute(bad2.AsSpan(0, end + 1))));
        Assert.ThrowsAny<CheckpointException>(() => TensorFlowCheckpoint.Open(bad2, [], "albert"));
    }

    static byte[] OnnxFixture(string name) => File.ReadAllBytes(TestPaths.Fixture("onnx", name));

    [Theory]
    [InlineData("bad_uint64.onnx", "counts", "data type UINT64 (13) is not supported")]
    [InlineData("bad_raw_length.onnx", "short", "needs 16 bytes but raw_data holds 12")]
    [InlineData("bad_escape.onnx", "escape", "must be a relative path inside the model's directory")]
    [InlineData("bad_typed_count.onnx", "few", "float_data holds 2 values but [3] needs 3")]
    public void OnnxBadInitializersAreNamed(string file, string entry, string message)
    {
        var e = Fails<CheckpointFormatException>(OnnxFixture(file), file);
        Assert.Equal(entry, e.EntryName);
        Assert.Contains(message, e.Message);
        string path = TestPaths.Fixture("onnx", file);
        foreach (var open in new Func<string, Checkpoint>[] { Checkpoint.Open, Checkpoint.OpenMapped, p => OnnxCheckpoint.OpenFile(p, memoryMap: true) })
            Assert.Equal(path, Assert.Throws<CheckpointFormatException>(() => open(path)).FilePath);
    }

    [Fact]
    public void OnnxTruncatedAtEveryByteFailsCleanlyOrIsComplete()
    {
        string path = TestPaths.Fixture("onnx", "synthetic.onnx");
        var full = File.ReadAllBytes(path);
        int complete;
        using (var ok = Checkpoint.Open(path)) complete = ok.Entries.Count;
        int failed = 0;
        for (int cut = 0; cut < full.Length; cut++)
        {
            try
            {
                using var ck = Checkpoint.Open(full.AsMemory(0, cut), path);
                foreach (var e in ck.Entries) ck.ReadBytes(e);
                // Only a cut between two top-level fields after the graph leaves a complete model.
                Assert.Equal(complete, ck.Entries.Count);
            }
            catch (CheckpointException e)
            {
                Assert.Equal(path, e.FilePath);
                Assert.DoesNotContain('\n', e.Message);
                failed++;
            }
        }
        Assert.True(failed >= full.Length - 64, $"{failed} of {full.Length} cuts failed");
        var garbage = Fails<CheckpointFormatException>(Encoding.ASCII.GetBytes("GIF89a this is not a model"), "model.onnx");
        Assert.Contains("protobuf", garbage.Message);
    }

    [Fact]
    public void OnnxMissingOrShortExternalDataIsListedAndNamedWhenRead()
    {
        string dir = Directory.CreateTempSubdirectory("b4s-onnx-ext").FullName;
        try
        {
            string model = Path.Combine(dir, "synthetic.onnx");
            File.Copy(TestPaths.Fixture("onnx", "synthetic.onnx"), model);
            using (var ck = Checkpoint.Open(model))
            {
                Assert.Contains(ck.Notes, n => n.Contains("synthetic.weights is absent"));
                Assert.Equal(TensorState.Missing, ck["ext.weight"].State);
                Assert.Equal(TensorState.Missing, ck["ext_proj.weight"].State);   // renamed, still missing
                var e = Assert.Throws<TensorDataUnavailableException>(() => ck.ReadTensor("ext_proj.weight"));
                Assert.Equal("ext_proj.weight", e.EntryName);
                Assert.Equal(model, e.FilePath);
                Assert.Contains("synthetic.weights is absent", e.Message);
                Assert.Equal(TensorState.Ok, ck["dense.weight"].State);
                ck.ReadBytes("dense.weight");
            }
            // A data file cut short: the first tensor (bytes 0..48) reads, the second (64..96) is truncated.
            File.WriteAllBytes(Path.Combine(dir, "synthetic.weights"), File.ReadAllBytes(TestPaths.Fixture("onnx", "synthetic.weights"))[..80]);
            using (var ck = Checkpoint.Open(model))
            {
                Assert.Equal(TensorState.Ok, ck["ext.weight"].State);
                ck.ReadBytes("ext.weight");
                Assert.Equal(TensorState.Truncated, ck["ext_proj.weight"].State);
                var e = Assert.Throws<TensorDataUnavailableException>(() => ck.ReadBytes("ext_proj.weight"));
                Assert.Contains("needs bytes [64, 96) of synthetic.weights, which has 80", e.Message);
            }
        }
        finally { Directory.Delete(dir, true); }
    }

    [Fact]
    public void MissingFileIsFileNotFound()
    {
        Assert.Throws<FileNotFoundException>(() => Checkpoint.Open("/nonexistent/model.safetensors"));
    }
}
