namespace Bert4Sharp.Training.Distributed;

using System.Runtime.InteropServices;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

/// <summary>
/// The gradients of a list of parameters laid end to end in one contiguous float32 buffer on the CPU, cut into
/// buckets of at most <see cref="BucketBytes"/> (a large tensor spans several), so that an all-reduce is a few
/// large MPI calls instead of one per parameter. <see cref="Flatten"/> copies the gradients in (zeros where a
/// parameter has none), <see cref="Unflatten"/> copies the buffer back (creating gradients where needed).
/// 16-bit gradients are reduced in float32; CUDA gradients are staged through host memory.
/// </summary>
public sealed class GradientBuckets : IDisposable
{
    /// <summary>The largest bucket: a bucket is handed to MPI as one span, whose length is an int.</summary>
    public const long MaxBucketBytes = 1L << 30;

    readonly IReadOnlyList<Parameter> parameters;
    readonly long[] offsets;
    readonly Tensor buffer;

    /// <summary>Lays out the parameters' gradients (in the order given, which must be the same on every rank).</summary>
    /// <param name="parameters">The parameters whose gradients are reduced.</param>
    /// <param name="bucketBytes">Bytes per bucket (4 bytes an element), 4 … <see cref="MaxBucketBytes"/>.</param>
    public GradientBuckets(IReadOnlyList<Parameter> parameters, long bucketBytes)
    {
        if (bucketBytes < sizeof(float) || bucketBytes > MaxBucketBytes)
            throw new ArgumentOutOfRangeException(nameof(bucketBytes), $"a bucket must hold 4 bytes to {MaxBucketBytes:N0} bytes, got {bucketBytes:N0}");
        if (parameters.Count == 0) throw new ArgumentException("no parameters to reduce gradients of", nameof(parameters));
        this.parameters = parameters;
        BucketBytes = bucketBytes / sizeof(float) * sizeof(float);
        offsets = new long[parameters.Count + 1];
        for (int i = 0; i < parameters.Count; i++) offsets[i + 1] = offsets[i] + parameters[i].numel();
        Elements = offsets[^1];
        long perBucket = BucketBytes / sizeof(float);
        var buckets = new List<(long, long)>();
        for (long start = 0; start < Elements; start += perBucket) buckets.Add((start, Math.Min(perBucket, Elements - start)));
        Buckets = buckets;
        buffer = torch.zeros(Elements, ScalarType.Float32, CPU).DetachFromDisposeScope();   // made inside a step's scope, kept across steps
    }

    /// <summary>Bytes per bucket (a multiple of 4).</summary>
    public long BucketBytes { get; }

    /// <summary>Gradient elements in all.</summary>
    public long Elements { get; }

    /// <summary>Each bucket's first element and length in the buffer.</summary>
    public IReadOnlyList<(long Start, long Length)> Buckets { get; }

    /// <summary>The flat buffer (float32, CPU, <see cref="Elements"/> long).</summary>
    public Tensor Buffer => buffer;

    /// <summary>Copies every gradient into the buffer, multiplied by <paramref name="scale"/>; zeros where a parameter has no gradient.</summary>
    public void Flatten(double scale = 1.0)
    {
        using var noGrad = torch.no_grad();
        for (int i = 0; i < parameters.Count; i++)
        {
            using var slice = buffer.narrow(0, offsets[i], offsets[i + 1] - offsets[i]);
            if (parameters[i].grad is not Tensor g) { slice.zero_(); continue; }
            using var flat = g.reshape(-1);
            slice.copy_(flat);
            if (scale != 1.0) slice.mul_(scale);
        }
    }

    /// <summary>Copies the buffer back into the gradients (a parameter without one gets one).</summary>
    public void Unflatten()
    {
        using var noGrad = torch.no_grad();
        for (int i = 0; i < parameters.Count; i++)
        {
            var p = parameters[i];
            using var slice = buffer.narrow(0, offsets[i], offsets[i + 1] - offsets[i]);
            using var shaped = slice.view(p.shape);
            if (p.grad is Tensor g) g.copy_(shaped);
            else p.grad = shaped.to(p.dtype, p.device, copy: true);
        }
    }

    /// <summary>The span of one bucket of the buffer (native memory, valid while the buffer lives).</summary>
    public Span<float> Bucket(int index)
    {
        var (start, length) = Buckets[index];
        using var view = buffer.narrow(0, start, length);
        return MemoryMarshal.Cast<byte, float>(view.bytes);
    }

    /// <summary>
    /// The data-parallel gradient: flattens with <paramref name="scale"/> (this rank's share, e.g. its examples ÷ all
    /// examples), sums every bucket across <paramref name="communicator"/>'s ranks and copies the result back.
    /// </summary>
    public void AllReduce(Communicator communicator, double scale)
    {
        Flatten(scale);
        for (int b = 0; b < Buckets.Count; b++) communicator.AllReduce(Bucket(b));
        Unflatten();
    }

    /// <summary>Frees the buffer.</summary>
    public void Dispose() => buffer.Dispose();
}
