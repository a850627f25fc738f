namespace Bert4Sharp.Diffusion.Data;

using System.Buffers.Binary;
using System.IO.Compression;
using TorchSharp;
using static TorchSharp.torch;

/// <summary>MNIST images and labels as read from the IDX files.</summary>
/// <param name="Pixels">Row-major 28×28 bytes per image (0 = background).</param>
/// <param name="Labels">Digit per image.</param>
/// <param name="Rows">Image height.</param>
/// <param name="Columns">Image width.</param>
public sealed record MnistSet(byte[][] Pixels, byte[] Labels, int Rows, int Columns)
{
    /// <summary>Images.</summary>
    public int Count => Labels.Length;

    /// <summary>The images at <paramref name="indices"/> as (B, 1, H, W) float32 in [−1, 1].</summary>
    public Tensor Images(IReadOnlyList<int> indices, Device? device = null)
    {
        var data = new float[indices.Count * Rows * Columns];
        int k = 0;
        foreach (int i in indices)
            foreach (byte p in Pixels[i]) data[k++] = p / 127.5f - 1;
        return torch.tensor(data, [indices.Count, 1, Rows, Columns], device: device);
    }

    /// <summary>The labels at <paramref name="indices"/> as (B) int64.</summary>
    public Tensor LabelTensor(IReadOnlyList<int> indices, Device? device = null) =>
        torch.tensor(indices.Select(i => (long)Labels[i]).ToArray(), device: device);
}

/// <summary>
/// The MNIST IDX files (gzip-compressed or plain): <c>t10k-images-idx3-ubyte.gz</c> and <c>t10k-labels-idx1-ubyte.gz</c>.
/// Only the 10,000 official test images exist in <c>../shared/data/mnist</c> (the 60,000 training images are not staged),
/// so <see cref="Split"/> carves a fixed held-out part out of them for the metrics.
/// </summary>
public static class Mnist
{
    /// <summary>The image file's name.</summary>
    public const string ImagesFile = "t10k-images-idx3-ubyte.gz";
    /// <summary>The label file's name.</summary>
    public const string LabelsFile = "t10k-labels-idx1-ubyte.gz";

    /// <summary>Reads both files from a directory.</summary>
    /// <exception cref="DirectoryNotFoundException">No such directory.</exception>
    /// <exception cref="FileNotFoundException">A file is missing.</exception>
    /// <exception cref="InvalidDataException">A file is corrupt: bad gzip, magic number, sizes, or counts that disagree.</exception>
    public static MnistSet Load(string directory)
    {
        if (!Directory.Exists(directory))
            throw new DirectoryNotFoundException($"MNIST directory {directory} does not exist; it should hold {ImagesFile} and {LabelsFile} (../shared/data/mnist)");
        string images = Path.Combine(directory, ImagesFile), labels = Path.Combine(directory, LabelsFile);
        foreach (var f in new[] { images, labels })
            if (!File.Exists(f)) throw new FileNotFoundException($"MNIST file {f} is missing; the directory needs {ImagesFile} and {LabelsFile} (the IDX test split)", f);
        var img = ReadIdx(images, 2051, 3);
        var lab = ReadIdx(labels, 2049, 1);
        int n = img.Dims[0], rows = img.Dims[1], cols = img.Dims[2];
        if (lab.Dims[0] != n) throw new InvalidDataException($"{labels} has {lab.Dims[0]} labels but {images} has {n} images");
        var pixels = new byte[n][];
        for (int i = 0; i < n; i++) pixels[i] = img.Data.AsSpan(i * rows * cols, rows * cols).ToArray();
        foreach (byte l in lab.Data)
            if (l > 9) throw new InvalidDataException($"{labels} holds label {l}; MNIST labels are 0–9");
        return new MnistSet(pixels, lab.Data, rows, cols);
    }

    static (int[] Dims, byte[] Data) ReadIdx(string path, int magic, int dims)
    {
        byte[] bytes;
        try
        {
            using var file = File.OpenRead(path);
            Stream s = file;
            var head = new byte[2];
            int got = file.Read(head);
            file.Position = 0;
            if (got == 2 && head[0] == 0x1F && head[1] == 0x8B) s = new GZipStream(file, CompressionMode.Decompress);
            using var ms = new MemoryStream();
            s.CopyTo(ms);
            bytes = ms.ToArray();
        }
        catch (InvalidDataException e) { throw new InvalidDataException($"{path} is not a valid gzip file ({e.Message}); download it again", e); }
        if (bytes.Length < 4 + 4 * dims) throw new InvalidDataException($"{path} is too short ({bytes.Length} bytes) for an IDX header");
        int m = BinaryPrimitives.ReadInt32BigEndian(bytes);
        if (m != magic) throw new InvalidDataException($"{path} has IDX magic {m}, expected {magic} ({(magic == 2051 ? "images" : "labels")}); is it the right file?");
        var shape = new int[dims];
        long total = 1;
        for (int i = 0; i < dims; i++)
        {
            shape[i] = BinaryPrimitives.ReadInt32BigEndian(bytes.AsSpan(4 + 4 * i));
            if (shape[i] <= 0) throw new InvalidDataException($"{path} declares dimension {i} = {shape[i]}");
            total *= shape[i];
        }
        int offset = 4 + 4 * dims;
        if (bytes.Length - offset != total)
            throw new InvalidDataException($"{path} should hold {total:N0} data bytes after its header ({string.Join("×", shape)}) but holds {bytes.Length - offset:N0}: truncated or corrupt");
        return (shape, bytes[offset..]);
    }

    /// <summary>
    /// A fixed split: a seeded permutation (seed 18, independent of any run's seed) puts <paramref name="heldOut"/> images in
    /// the evaluation part (never trained on by the generators or the metric classifier) and the rest in training.
    /// </summary>
    /// <exception cref="ArgumentException">A held-out count outside (0, count).</exception>
    public static (int[] Train, int[] HeldOut) Split(int count, int heldOut = 1000)
    {
        if (heldOut <= 0 || heldOut >= count) throw new ArgumentException($"held-out images must be in (0, {count}), got {heldOut}");
        var order = Enumerable.Range(0, count).ToArray();
        new Random(18).Shuffle(order);
        return (order[heldOut..], order[..heldOut]);
    }
}
