using System.Buffers.Binary;
using Bert4Sharp.Checkpoints;
using Bert4Sharp.Checkpoints.TensorFlow;

namespace Bert4Sharp.Tests.Checkpoints;

/// <summary>
/// Mutation fuzzing of every reader, seeded with the golden and the real files: whatever the bytes,
/// only <see cref="CheckpointException"/> (documented) may escape: no crash, no other exception
/// type, no hang, no giant allocation. B4S_FUZZ_ITERATIONS raises the count (long mode).
/// </summary>
public class CheckpointFuzzTests
{
    static readonly int Iterations = int.TryParse(Environment.GetEnvironmentVariable("B4S_FUZZ_ITERATIONS"), out int n) ? n : 2000;

    static byte[] Mutate(byte[] seed, Random rng)
    {
        var b = (byte[])seed.Clone();
        // Most structure lives near the start (headers, pickles) and the end (zip directory, table footer).
        int Pos(int len) => len == 0 ? 0 : rng.Next(3) switch
        {
            0 => rng.Next(Math.Min(len, 8192)),
            1 => Math.Max(0, len - 1 - rng.Next(Math.Min(len, 4096))),
            _ => rng.Next(len),
        };
        int ops = 1 + rng.Next(4);
        for (int k = 0; k < ops && b.Length > 0; k++)
        {
            int p = Pos(b.Length);
            switch (rng.Next(8))
            {
                case 0: b[p] ^= (byte)(1 << rng.Next(8)); break;
                case 1: b[p] = (byte)new[] { 0x00, 0xff, 0x7f, 0x80, 0x01, 0x2e, 0x71, 0x28 }[rng.Next(8)]; break;
                case 2:
                    if (p + 8 <= b.Length)
                        BinaryPrimitives.WriteInt64LittleEndian(b.AsSpan(p), new[] { 0L, -1L, long.MaxValue, int.MaxValue, 1L << 40, 48, 4096 }[rng.Next(7)]);
                    break;
                case 3: Array.Resize(ref b, p); break;
                case 4:
                {
                    int len = Math.Min(b.Length - p, 1 + rng.Next(64));
                    b = [.. b.AsSpan(0, p), .. b.AsSpan(p + len)];
                    break;
                }
                case 5:
                {
                    var ins = new byte[1 + rng.Next(16)];
                    rng.NextBytes(ins);
                    b = [.. b.AsSpan(0, p), .. ins, .. b.AsSpan(p)];
                    break;
                }
                case 6:
                {
                    int len = Math.Min(b.Length - p, 1 + rng.Next(32));
                    int q = Pos(b.Length);
                    b = [.. b.AsSpan(0, q), .. b.AsSpan(p, len), .. b.AsSpan(q)];
                    break;
                }
                default:
                    if (p + 4 <= b.Length) BinaryPrimitives.WriteInt32LittleEndian(b.AsSpan(p), rng.Next());
                    break;
            }
        }
        return b;
    }

    static void Exercise(Checkpoint ck)
    {
        _ = ck.Metadata.Count + ck.Notes.Count;
        foreach (var e in ck.Entries)
        {
            _ = e.ToString();
            if (e.DType == TensorDType.String || e.ByteCount > 64 << 20) continue;
            try { ck.ReadBytes(e); }
            catch (TensorDataUnavailableException) when (e.State != TensorState.Ok) { }   // listed as unreadable: fine
        }
    }

    static void Run(string label, byte[] seed, Action<byte[]> open, int seedValue)
    {
        open(seed);   // the unmutated seed must open cleanly
        var rng = new Random(seedValue);
        var failures = new List<string>();
        for (int i = 0; i < Iterations; i++)
        {
            var data = Mutate(seed, rng);
            try { open(data); }
            catch (CheckpointException) { }
            catch (Exception e)
            {
                if (failures.Count < 5) failures.Add($"{label} iteration {i}: {e.GetType().Name}: {e.Message}\n{e.StackTrace}");
                else break;
            }
        }
        Assert.True(failures.Count == 0, string.Join("\n\n", failures));
    }

    static void OpenSingle(byte[] data, string name)
    {
        using var ck = Checkpoint.Open(data, name);
        Exercise(ck);
    }

    static byte[] Fixture(string name) => File.ReadAllBytes(TestPaths.Fixture("checkpoints", name));

    [Theory]
    [InlineData("torch_zip.pt", 11)]
    [InlineData("torch_legacy.pt", 12)]
    [InlineData("reference.safetensors", 13)]
    public void GoldenFiles(string file, int seed) => Run(file, Fixture(file), d => OpenSingle(d, file), seed);

    [Fact]
    public void TensorFlowBundleIndex()
    {
        var data = Fixture("tf_bundle.data-00000-of-00001");
        Run("tf_bundle.index", Fixture("tf_bundle.index"), d =>
        {
            using var ck = TensorFlowCheckpoint.Open(d, [data], "tf_bundle");
            Exercise(ck);
        }, 14);
    }

    [Fact]
    public void TensorFlowBundleData()
    {
        var index = Fixture("tf_bundle.index");
        Run("tf_bundle.data", Fixture("tf_bundle.data-00000-of-00001"), d =>
        {
            using var ck = TensorFlowCheckpoint.Open(index, [d], "tf_bundle");
            Exercise(ck);
        }, 15);
    }

    [Fact]
    public void OnnxSyntheticModel()
    {
        // Named by its real path so that the external data file is found and read too.
        string path = TestPaths.Fixture("onnx", "synthetic.onnx");
        Run("synthetic.onnx", File.ReadAllBytes(path), d => OpenSingle(d, path), 18);
    }

    [Fact]
    public void RealAlbertTensorFlowIndex()
    {
        var seed = File.ReadAllBytes(TestPaths.SharedOrSkip("models/albert_tiny_zh_google/albert_model.ckpt.index"));
        Run("albert_model.ckpt.index", seed, d =>
        {
            using var ck = TensorFlowCheckpoint.Open(d, [], "albert_model.ckpt");
            Exercise(ck);
        }, 16);
    }

    [Fact]
    public void RealTruncatedLegacyBin()
    {
        var seed = File.ReadAllBytes(TestPaths.SharedOrSkip("models/albert_chinese_tiny_TRUNCATED/pytorch_model.bin"));
        Run("pytorch_model.bin", seed, d => OpenSingle(d, "pytorch_model.bin"), 17);
    }
}
