namespace Bert4Sharp.Embeddings;

using System.Globalization;
using Bert4Sharp.Checkpoints;
using TorchSharp;
using static TorchSharp.torch;

/// <summary>
/// BERT-whitening (Su Jianlin, "你可能不需要BERT-flow"): sentence vectors x are mapped to (x − μ)·W with
/// W = U·Λ^(−1/2) from the SVD Σ = U·Λ·Uᵀ of their covariance, so the whitened vectors have zero mean and identity
/// covariance, and cosine similarity becomes meaningful. Keeping only the first k columns of W (the largest
/// variances) reduces the dimension, which the post found often helps as well.
/// </summary>
/// <remarks>
/// Fitted in float64 on the pooled, not normalised, vectors; the sample covariance (divided by N − 1) as numpy's
/// <c>np.cov</c>. Variances below 1e-12 × the largest are clamped there before the inverse square root, so a
/// rank-deficient fit (fewer vectors than dimensions) stays finite; only the first N − 1 directions carry
/// information then, and <see cref="Fit"/> refuses to keep more.
/// </remarks>
public sealed class Whitening
{
    /// <summary>The file name <see cref="SentenceEncoder.Load"/> looks for beside a model.</summary>
    public const string FileName = "whitening.safetensors";

    readonly float[] mean;      // (H)
    readonly float[] kernel;    // (H, K) row-major

    Whitening(float[] mean, float[] kernel, int dimensions, int fittedOn)
    {
        this.mean = mean;
        this.kernel = kernel;
        InputDimensions = mean.Length;
        Dimensions = dimensions;
        FittedOn = fittedOn;
    }

    /// <summary>Width of the vectors it takes.</summary>
    public int InputDimensions { get; }
    /// <summary>Width of the vectors it returns (the k kept).</summary>
    public int Dimensions { get; }
    /// <summary>How many vectors it was fitted on.</summary>
    public int FittedOn { get; }
    /// <summary>μ, the mean it subtracts.</summary>
    public ReadOnlySpan<float> Mean => mean;

    /// <summary>Fits μ and W on <paramref name="vectors"/> and keeps the first <paramref name="dimensions"/> columns (null: all).</summary>
    /// <exception cref="ArgumentException">Fewer than two vectors, vectors of different widths or with non-finite values, or more dimensions than the fit can support.</exception>
    public static Whitening Fit(IReadOnlyList<float[]> vectors, int? dimensions = null)
    {
        ArgumentNullException.ThrowIfNull(vectors);
        if (vectors.Count < 2) throw new ArgumentException($"whitening needs at least two vectors to estimate a covariance, got {vectors.Count}", nameof(vectors));
        int h = vectors[0].Length;
        var flat = new double[vectors.Count * h];
        for (int i = 0; i < vectors.Count; i++)
        {
            if (vectors[i].Length != h) throw new ArgumentException($"vector {i} has {vectors[i].Length} values, vector 0 has {h}", nameof(vectors));
            for (int j = 0; j < h; j++)
            {
                float v = vectors[i][j];
                if (!float.IsFinite(v)) throw new ArgumentException($"vector {i} has a non-finite value at {j}", nameof(vectors));
                flat[i * h + j] = v;
            }
        }
        int usable = Math.Min(h, vectors.Count - 1);
        int k = dimensions ?? usable;
        if (k < 1 || k > h) throw new ArgumentOutOfRangeException(nameof(dimensions), k, $"keep between 1 and the vectors' width {h} dimensions");
        if (k > usable) throw new ArgumentException($"{vectors.Count} vectors determine at most {usable} directions; keeping {k} would whiten noise. Fit on more texts or keep fewer dimensions", nameof(dimensions));
        using var scope = torch.NewDisposeScope();
        var x = torch.tensor(flat, [vectors.Count, h], ScalarType.Float64);      // (N, H)
        var mu = x.mean([0]);                                                     // (H)
        var centred = x - mu;
        var cov = centred.T.matmul(centred) / (vectors.Count - 1);                // (H, H), symmetric
        var (u, s, _) = torch.linalg.svd(cov, fullMatrices: false);               // cov = U diag(s) Uᵀ, s descending
        s = s.clamp_min(s[0].item<double>() * 1e-12 + double.Epsilon);
        var w = u * s.rsqrt().unsqueeze(0);                                       // (H, H): column j scaled by 1/√s_j
        var muValues = mu.to(ScalarType.Float32).data<float>().ToArray();
        var kept = w[.., ..k].contiguous().to(ScalarType.Float32).data<float>().ToArray();
        return new Whitening(muValues, kept, k, vectors.Count);
    }

    /// <summary>The same whitening keeping only the first <paramref name="dimensions"/> columns.</summary>
    /// <exception cref="ArgumentOutOfRangeException">More dimensions than kept, or fewer than one.</exception>
    public Whitening Truncate(int dimensions)
    {
        if (dimensions < 1 || dimensions > Dimensions)
            throw new ArgumentOutOfRangeException(nameof(dimensions), dimensions, $"this whitening keeps {Dimensions} dimensions; ask for 1 to {Dimensions}");
        var k = new float[InputDimensions * dimensions];
        for (int i = 0; i < InputDimensions; i++) Array.Copy(kernel, i * Dimensions, k, i * dimensions, dimensions);
        return new Whitening(mean, k, dimensions, FittedOn);
    }

    /// <summary>(x − μ)·W for x (…, H) → (…, K), on x's device and dtype.</summary>
    /// <exception cref="ArgumentException">x's last dimension is not <see cref="InputDimensions"/>.</exception>
    public Tensor Apply(Tensor x)
    {
        if (x.shape[^1] != InputDimensions)
            throw new ArgumentException($"the whitening takes {InputDimensions}-dimensional vectors, got {x.shape[^1]}: it was fitted on another model or pooling");
        using var scope = torch.NewDisposeScope();
        var mu = torch.tensor(mean, [InputDimensions], x.dtype, x.device);
        var w = torch.tensor(kernel, [InputDimensions, Dimensions], x.dtype, x.device);
        return (x - mu).matmul(w).MoveToOuterDisposeScope();
    }

    /// <summary>Whitens one vector.</summary>
    /// <exception cref="ArgumentException">Wrong width.</exception>
    public float[] Apply(ReadOnlySpan<float> x)
    {
        if (x.Length != InputDimensions)
            throw new ArgumentException($"the whitening takes {InputDimensions}-dimensional vectors, got {x.Length}: it was fitted on another model or pooling");
        var y = new double[Dimensions];
        for (int i = 0; i < InputDimensions; i++)
        {
            double c = x[i] - mean[i];
            for (int j = 0; j < Dimensions; j++) y[j] += c * kernel[i * Dimensions + j];
        }
        return [.. y.Select(v => (float)v)];
    }

    /// <summary>Writes μ and W (safetensors, atomically) with the kept dimensions and sample count as metadata.</summary>
    public void Save(string path) =>
        SafetensorsWriter.Write(path,
            [TensorSource.From("mean", TensorDType.F32, [InputDimensions], Bytes(mean)),
             TensorSource.From("kernel", TensorDType.F32, [InputDimensions, Dimensions], Bytes(kernel))],
            new SafetensorsWriteOptions { Metadata = new Dictionary<string, string>
            {
                ["format"] = "bert4sharp-whitening", ["dimensions"] = Dimensions.ToString(CultureInfo.InvariantCulture),
                ["fitted_on"] = FittedOn.ToString(CultureInfo.InvariantCulture),
            } });

    /// <summary>Reads a whitening written by <see cref="Save"/>; checks it takes <paramref name="expectedWidth"/> values when given.</summary>
    /// <exception cref="InvalidDataException">Not a whitening file, or inconsistent shapes.</exception>
    /// <exception cref="ArgumentException">It was fitted on vectors of another width than <paramref name="expectedWidth"/>.</exception>
    public static Whitening Load(string path, int? expectedWidth = null)
    {
        using var ck = Checkpoint.Open(path);
        if (!ck.TryGetEntry("mean", out _) || !ck.TryGetEntry("kernel", out _))
            throw new InvalidDataException($"{path} is not a whitening file: it needs the tensors 'mean' (H) and 'kernel' (H, K) (write one with b4s whiten or Whitening.Fit(…).Save(path))");
        using var scope = torch.NewDisposeScope();
        var mean = ck.ReadTensor("mean").to(ScalarType.Float32);
        var kernel = ck.ReadTensor("kernel").to(ScalarType.Float32);
        {
            if (mean.dim() != 1 || kernel.dim() != 2 || kernel.shape[0] != mean.shape[0])
                throw new InvalidDataException($"{path}: 'mean' is [{string.Join(", ", mean.shape)}] and 'kernel' [{string.Join(", ", kernel.shape)}]; expected (H) and (H, K)");
            if (expectedWidth is int e && mean.shape[0] != e)
                throw new ArgumentException($"{path} whitens {mean.shape[0]}-dimensional vectors but the model's are {e}-dimensional: it was fitted on another model");
            int fitted = ck.Metadata.TryGetValue("fitted_on", out var f) && int.TryParse(f, CultureInfo.InvariantCulture, out int n) ? n : 0;
            return new Whitening(mean.data<float>().ToArray(), kernel.contiguous().data<float>().ToArray(), (int)kernel.shape[1], fitted);
        }
    }

    static ReadOnlyMemory<byte> Bytes(float[] values)
    {
        var bytes = new byte[values.Length * sizeof(float)];
        Buffer.BlockCopy(values, 0, bytes, 0, bytes.Length);   // little-endian, as safetensors stores
        return bytes;
    }
}
