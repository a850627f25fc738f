using Bert4Sharp.Checkpoints;

namespace Bert4Sharp.Tests.Checkpoints;

/// <summary>The real upstream files staged in ../shared/models (see its MANIFEST.md).</summary>
public class RealCheckpointTests
{
    [Fact]
    public void AlbertTinyTensorFlowIndexListsExactlyTheNinetySevenEntries()
    {
        string index = TestPaths.SharedOrSkip("models/albert_tiny_zh_google/albert_model.ckpt.index");
        string listing = TestPaths.SharedOrSkip("models/albert_tiny_zh_google/albert_model.ckpt.index.listing.tsv");
        var rows = File.ReadAllLines(listing).Skip(1).Where(l => l.Length > 0).Select(l => l.Split('\t')).ToList();
        Assert.Equal(97, rows.Count);

        using var ck = Checkpoint.Open(index);
        Assert.Equal(CheckpointFormat.TensorFlowBundle, ck.Format);
        Assert.Equal(rows.Select(r => r[0]), ck.Entries.Select(e => e.Name));
        foreach (var r in rows)
        {
            var e = ck[r[0]];
            Assert.Equal(r[1], e.DType.DisplayName());
            Assert.Equal(r[2], "[" + string.Join(",", e.Shape) + "]");
            Assert.Equal(long.Parse(r[5]), e.ByteCount);
        }
        // The data shard was never staged: say so, list everything, read nothing.
        Assert.Contains(ck.Notes, n => n.Contains("albert_model.ckpt.data-00000-of-00001 is absent"));
        Assert.Equal(32, ck.Entries.Count(e => e.State == TensorState.Missing));
        Assert.Equal(65, ck.Entries.Count(e => e.State == TensorState.Slot));
        var ex = Assert.Throws<TensorDataUnavailableException>(() => ck.ReadBytes("bert/embeddings/word_embeddings"));
        Assert.Contains("absent", ex.Message);
        Assert.Equal("1", ck.Metadata["num_shards"]);
    }

    [Fact]
    public void AlbertTinyDirectoryResolvesThroughTheCheckpointFile()
    {
        string dir = TestPaths.SharedOrSkip("models/albert_tiny_zh_google");
        using var ck = Checkpoint.Open(dir);
        Assert.Equal(97, ck.Entries.Count);
    }

    [Fact]
    public void TruncatedLegacyBinListsAllTensorsAndReadsTheCompleteOnes()
    {
        string bin = TestPaths.SharedOrSkip("models/albert_chinese_tiny_TRUNCATED/pytorch_model.bin");
        string listing = TestPaths.SharedOrSkip("models/albert_chinese_tiny_TRUNCATED/pytorch_model.bin.listing.tsv");
        var lines = File.ReadAllLines(listing);
        var fileOrder = lines.First(l => l.StartsWith("#storage_keys_in_file_order=")).Split('=')[1].Split(',');
        Assert.Equal(30, fileOrder.Length);
        var rows = lines.Where(l => !l.StartsWith('#') && !l.StartsWith("name\t") && l.Length > 0).Select(l => l.Split('\t')).ToList();
        Assert.Equal(32, rows.Count);

        using var ck = Checkpoint.Open(bin);
        Assert.Equal(CheckpointFormat.TorchLegacy, ck.Format);
        Assert.Equal("30", ck.Metadata["storages"]);
        Assert.Equal("16", ck.Metadata["storages_complete"]);
        // torch.serialization records struct.Struct("=l").size, which is 4 on every platform, so this
        // field does not tell where the file was written (the manifest infers Windows from it).
        Assert.Equal("4", ck.Metadata["type_sizes.long"]);
        Assert.Equal("6898", ck.Metadata["pickle_end_offset"]);
        Assert.Contains(ck.Notes, n => n.Contains("truncated") && n.Contains("16 of 30"));
        Assert.Equal(rows.Select(r => r[0]).Order(StringComparer.Ordinal), ck.Entries.Select(e => e.Name).Order(StringComparer.Ordinal));

        var complete = fileOrder.Take(16).ToHashSet();
        int ok = 0, truncated = 0;
        foreach (var r in rows)
        {
            var e = ck[r[0]];
            Assert.Equal(r[5], e.ShapeText);
            Assert.Equal(TensorDType.F32, e.DType);
            if (complete.Contains(r[2]))
            {
                Assert.Equal(TensorState.Ok, e.State);
                var bytes = ck.ReadBytes(e);
                Assert.Equal(e.ByteCount, bytes.Length);
                ok++;
            }
            else
            {
                Assert.Equal(TensorState.Truncated, e.State);
                var ex = Assert.Throws<TensorDataUnavailableException>(() => ck.ReadBytes(e));
                Assert.Contains("truncated", ex.Message);
                Assert.Contains(e.Name, ex.Message);
                truncated++;
            }
        }
        Assert.Equal(32, ok + truncated);
        Assert.Contains("shares storage with", ck["predictions.decoder.weight"].Note ?? ck["albert.embeddings.word_embeddings.weight"].Note);
    }

    [Fact]
    public void TruncatedBinValuesAreSane()
    {
        string bin = TestPaths.SharedOrSkip("models/albert_chinese_tiny_TRUNCATED/pytorch_model.bin");
        using var ck = Checkpoint.Open(bin);
        // LayerNorm weights of a trained model are finite and mostly near 1; biases finite and small.
        foreach (var e in ck.Entries.Where(e => e.State == TensorState.Ok))
        {
            using var t = ck.ReadTensor(e);
            Assert.False(t.isnan().any().item<bool>(), e.Name);
            Assert.True(t.abs().max().item<float>() < 100f, e.Name);
        }
    }
}
