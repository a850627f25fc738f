using System.Text.Json;
using Bert4Sharp.Checkpoints;
using Bert4Sharp.Checkpoints.TensorFlow;
using TorchSharp;

namespace Bert4Sharp.Tests.Checkpoints;

/// <summary>Files written by PyTorch 1.13 and by tests/reference/make_checkpoint_goldens.py; values compared bit for bit.</summary>
public class GoldenCheckpointTests
{
    sealed record Expected(string Dtype, long[] Shape, string Hex);

    static Dictionary<string, Expected> Load(string section)
    {
        using var doc = JsonDocument.Parse(File.ReadAllBytes(TestPaths.Fixture("checkpoints", "expected.json")));
        var d = new Dictionary<string, Expected>();
        foreach (var p in doc.RootElement.GetProperty(section).EnumerateObject())
            d[p.Name] = new Expected(p.Value.GetProperty("dtype").GetString()!,
                p.Value.GetProperty("shape").EnumerateArray().Select(x => x.GetInt64()).ToArray(),
                p.Value.GetProperty("hex").GetString()!);
        return d;
    }

    static void AssertMatches(Checkpoint ck, Dictionary<string, Expected> expected)
    {
        Assert.Equal(expected.Keys.Order(StringComparer.Ordinal), ck.Entries.Select(e => e.Name).Order(StringComparer.Ordinal));
        foreach (var (name, exp) in expected)
        {
            var e = ck[name];
            Assert.Equal(exp.Dtype, e.DType.SafetensorsName());
            Assert.Equal(exp.Shape, e.Shape);
            Assert.Equal(exp.Hex, Convert.ToHexStringLower(ck.ReadBytes(e)));
        }
    }

    [Theory]
    [InlineData("torch_zip.pt", CheckpointFormat.TorchZip)]
    [InlineData("torch_legacy.pt", CheckpointFormat.TorchLegacy)]
    [InlineData("reference.safetensors", CheckpointFormat.Safetensors)]
    public void ReadsEveryTensorBitExactly(string file, CheckpointFormat format)
    {
        using var ck = Checkpoint.Open(TestPaths.Fixture("checkpoints", file));
        Assert.Equal(format, ck.Format);
        AssertMatches(ck, Load("torch"));
    }

    [Theory]
    [InlineData("torch_zip.pt")]
    [InlineData("torch_legacy.pt")]
    public void SharedStoragesAreReported(string file)
    {
        using var ck = Checkpoint.Open(TestPaths.Fixture("checkpoints", file));
        Assert.Contains("shares storage with embeddings.word.weight", ck["lm_head.weight"].Note);
        Assert.Contains("shares storage with transposed", ck["row_slice"].Note);
    }

    [Fact]
    public void TensorFlowBundleReadsValuesAndMarksSlots()
    {
        using var ck = Checkpoint.Open(TestPaths.Fixture("checkpoints", "tf_bundle.index"));
        Assert.Equal(CheckpointFormat.TensorFlowBundle, ck.Format);
        AssertMatches(ck, Load("tensorflow"));
        Assert.Equal(TensorState.Slot, ck["global_step"].State);
        Assert.Equal(TensorState.Slot, ck["bert/embeddings/word/weight/adam_m"].State);
        Assert.Equal(TensorState.Ok, ck["embeddings/word/weight"].State);
        Assert.Equal("1", ck.Metadata["num_shards"]);
    }

    [Fact]
    public void TensorFlowPrefixDirectoryAndCheckpointFileAllResolve()
    {
        string prefix = TestPaths.Fixture("checkpoints", "tf_bundle");
        using var a = Checkpoint.Open(prefix);
        using var b = Checkpoint.Open(prefix + ".data-00000-of-00001");
        Assert.Equal(a.Entries.Count, b.Entries.Count);
        string dir = Directory.CreateTempSubdirectory("b4s-tf").FullName;
        try
        {
            File.Copy(prefix + ".index", Path.Combine(dir, "m.ckpt.index"));
            File.Copy(prefix + ".data-00000-of-00001", Path.Combine(dir, "m.ckpt.data-00000-of-00001"));
            // Upstream 'checkpoint' files carry absolute paths from another machine: only the name counts.
            File.WriteAllText(Path.Combine(dir, "checkpoint"), "model_checkpoint_path: \"/root/elsewhere/m.ckpt\"\n");
            using var c = Checkpoint.Open(dir);
            Assert.Equal(a.Entries.Count, c.Entries.Count);
            Assert.Equal(a.ReadBytes("f64"), c.ReadBytes("f64"));
        }
        finally { Directory.Delete(dir, true); }
    }

    [Theory]
    [InlineData("evil_zip.pt")]
    [InlineData("evil_legacy.pt")]
    public void PickleNamingAForbiddenGlobalIsRefused(string file)
    {
        var e = Assert.Throws<UnsafePickleException>(() => Checkpoint.Open(TestPaths.Fixture("checkpoints", file)));
        Assert.Equal("posix.system", e.Global);
        Assert.Contains(file, e.Message);
        Assert.Contains("posix.system", e.Message);
    }

    [Fact]
    public void ReadTensorGivesTorchSharpTensorsWithTheSameBytes()
    {
        using var ck = Checkpoint.Open(TestPaths.Fixture("checkpoints", "torch_zip.pt"));
        foreach (var e in ck.Entries)
        {
            using var t = ck.ReadTensor(e);
            Assert.Equal(e.Shape, t.shape);
            Assert.Equal(e.DType.ToScalarType(), t.dtype);
            if (e.ByteCount > 0) Assert.Equal(ck.ReadBytes(e), t.bytes.ToArray());
        }
        using var tr = ck.ReadTensor("transposed");
        using var rs = ck.ReadTensor("row_slice");
        // row_slice is base[2] and transposed is base.t(): column 2 of the transpose is row 2 of base.
        Assert.True(tr[.., 2].allclose(rs, rtol: 0, atol: 0));
    }

    [Theory]
    [InlineData("torch_zip.pt")]
    [InlineData("torch_legacy.pt")]
    public void ConvertingToSafetensorsReproducesTheReferenceFileByteForByte(string file)
    {
        using var ck = Checkpoint.Open(TestPaths.Fixture("checkpoints", file));
        string outPath = Path.Combine(Path.GetTempPath(), $"b4s-{Guid.NewGuid():N}.safetensors");
        try
        {
            SafetensorsWriter.Write(outPath, ck.Entries.Select(e => TensorSource.From(ck, e)), new SafetensorsWriteOptions
            {
                Metadata = new Dictionary<string, string> { ["format"] = "pt", ["producer"] = "make_checkpoint_goldens.py" },
            });
            Assert.Equal(File.ReadAllBytes(TestPaths.Fixture("checkpoints", "reference.safetensors")), File.ReadAllBytes(outPath));
        }
        finally { File.Delete(outPath); }
    }

    [Fact]
    public void ShardedSafetensorsRoundTrip()
    {
        using var ck = Checkpoint.Open(TestPaths.Fixture("checkpoints", "torch_zip.pt"));
        string dir = Directory.CreateTempSubdirectory("b4s-shards").FullName;
        try
        {
            var files = SafetensorsWriter.WriteModel(dir, ck.Entries.Select(e => TensorSource.From(ck, e)), new SafetensorsWriteOptions { MaxShardBytes = 300 });
            Assert.True(files.Count > 2);
            Assert.EndsWith("model.safetensors.index.json", files[^1]);
            using var back = Checkpoint.Open(dir);
            Assert.Equal(CheckpointFormat.Sharded, back.Format);
            AssertMatches(back, Load("torch"));
        }
        finally { Directory.Delete(dir, true); }
    }

    [Fact]
    public void SafetensorsWriterAcceptsTorchSharpTensorsAndMetadata()
    {
        string path = Path.Combine(Path.GetTempPath(), $"b4s-{Guid.NewGuid():N}.safetensors");
        try
        {
            using var a = torch.randn(3, 4);
            using var b = torch.arange(5, dtype: torch.int64);
            using var c = torch.randn(2, 2).to(torch.bfloat16);
            SafetensorsWriter.Write(path, [TensorSource.From("a", a), TensorSource.From("b", b), TensorSource.From("c", c.t())],
                new SafetensorsWriteOptions { Metadata = new Dictionary<string, string> { ["k"] = "v" } });
            using var ck = Checkpoint.Open(path);
            Assert.Equal("v", ck.Metadata["k"]);
            using var a2 = ck.ReadTensor("a");
            using var b2 = ck.ReadTensor("b");
            using var c2 = ck.ReadTensor("c");
            Assert.True(a.allclose(a2, rtol: 0, atol: 0));
            Assert.True(b.allclose(b2, rtol: 0, atol: 0));
            Assert.True(c.t().allclose(c2, rtol: 0, atol: 0));
        }
        finally { File.Delete(path); }
    }

    [Theory]
    [InlineData("reference.safetensors")]
    [InlineData("torch_zip.pt")]
    [InlineData("torch_legacy.pt")]
    public void MemoryMappedOpenGivesZeroCopySpansWithTheSameBytes(string file)
    {
        using var mapped = Checkpoint.OpenMapped(TestPaths.Fixture("checkpoints", file));
        using var plain = Checkpoint.Open(TestPaths.Fixture("checkpoints", file));
        int views = 0;
        foreach (var e in mapped.Entries)
        {
            Assert.Equal(plain.ReadBytes(e.Name), mapped.ReadBytes(e));
            if (mapped.TryGetSpan(e, out var span))
            {
                Assert.Equal(plain.ReadBytes(e.Name), span.ToArray());
                views++;
            }
        }
        // Non-contiguous PyTorch views (transposed, strided_cols) have no zero-copy span; everything else does.
        Assert.True(views >= mapped.Entries.Count - 3, $"{views} of {mapped.Entries.Count}");
        Assert.False(plain.TryGetSpan(plain.Entries[0], out _));
    }

    [Fact]
    public void Crc32CMatchesTheStandardCheckValue()
    {
        Assert.Equal(0xE3069283u, Crc32C.Compute("123456789"u8));
        Assert.Equal(0x12345678u, Crc32C.Unmask(Crc32C.Mask(0x12345678u)));
        Assert.True(TensorFlowCheckpoint.IsOptimizerSlot("bert/encoder/x/adam_v"));
        Assert.False(TensorFlowCheckpoint.IsOptimizerSlot("bert/encoder/adam_v_not"));
    }
}
