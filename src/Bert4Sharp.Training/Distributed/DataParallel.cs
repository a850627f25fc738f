namespace Bert4Sharp.Training.Distributed;

using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using TorchSharp;
using static TorchSharp.torch;

/// <summary>
/// Data-parallel training in <see cref="Trainer{T}"/> (set <see cref="TrainerOptions.DataParallel"/>). Every rank
/// holds the whole model; the recipe's batch is the global batch, and rank r of N trains on its examples r, r + N,
/// r + 2N, … (same data order everywhere). After the backward pass the gradients are averaged across ranks (weighted
/// by each rank's share of the examples, or of <see cref="StepResult.Weight"/>), so clipping and the optimizer step see
/// the gradient of the whole batch and the weights stay identical on every rank.
/// </summary>
public sealed record DataParallelOptions
{
    /// <summary>The ranks (<see cref="Communicator.FromEnvironment"/>: MPI under mpirun, else one process).</summary>
    public Communicator Communicator { get; init; } = Communicator.Single;

    /// <summary>
    /// Bytes per gradient bucket, one MPI all-reduce each (see <see cref="GradientBuckets"/>); docs/distributed.md has
    /// the sweep behind the default of 16 MB.
    /// </summary>
    public long BucketBytes { get; init; } = 16L << 20;

    /// <summary>
    /// Text every rank must agree on besides what the trainer checks itself (parameter names, shapes and dtypes,
    /// optimizer, seed, batch size, epochs, number of examples): e.g. the model config. Null for nothing more.
    /// </summary>
    public string? Fingerprint { get; init; }

    /// <summary>These options with a recipe's model family and config added to <see cref="Fingerprint"/>.</summary>
    public DataParallelOptions WithModel(string family, System.Text.Json.JsonElement config) =>
        this with { Fingerprint = $"{Fingerprint}family {family}\nconfig {(config.ValueKind == System.Text.Json.JsonValueKind.Undefined ? "" : config.GetRawText())}\n" };
}

/// <summary>The trainer's side of data parallelism: sharding, agreement checks, and the per-step collectives.</summary>
sealed class DataParallel : IDisposable
{
    /// <summary>Metrics a distributed step may report besides the loss.</summary>
    internal const int MaxMetrics = 16;
    const int Fixed = 7;
    readonly DataParallelOptions options;
    GradientBuckets? buckets;

    internal DataParallel(DataParallelOptions? options) => this.options = options ?? new DataParallelOptions();

    internal Communicator Communicator => options.Communicator;
    internal int Rank => options.Communicator.Rank;
    internal int Size => options.Communicator.Size;
    /// <summary>More than one rank: the collectives run.</summary>
    internal bool Active => Size > 1;

    /// <summary>Rank <paramref name="rank"/>'s examples of a global batch: <c>batch[rank], batch[rank + size], …</c>.</summary>
    internal static IReadOnlyList<T> Shard<T>(IReadOnlyList<T> batch, int rank, int size)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(size, 1);
        if (rank < 0 || rank >= size) throw new ArgumentOutOfRangeException(nameof(rank), $"rank {rank} is not in 0 … {size - 1}");
        if (size == 1) return batch;
        var shard = new List<T>((batch.Count + size - 1) / size);
        for (int i = rank; i < batch.Count; i += size) shard.Add(batch[i]);
        return shard;
    }

    /// <summary>
    /// What every rank must agree on, as text: parameter and buffer names, shapes and dtypes, the optimizer, the
    /// run's seed, batch size and epochs, the number of examples (when known) and <see cref="DataParallelOptions.Fingerprint"/>.
    /// </summary>
    internal string Describe(nn.Module model, Optimizer optimizer, TrainerOptions trainer, long? examples)
    {
        var text = new StringBuilder();
        foreach (var (name, t) in model.state_dict()) text.Append(name).Append(' ').Append(t.dtype).Append(" [").AppendJoin(',', t.shape).Append("]\n");
        text.Append(CultureInfo.InvariantCulture, $"optimizer {optimizer.Name} lr {optimizer.LearningRate:R}\nseed {trainer.Seed} batch {trainer.Batching.BatchSize} epochs {trainer.Epochs} examples {examples}\n");
        return text.Append(options.Fingerprint).ToString();
    }

    /// <summary>A 62-bit hash of <see cref="Describe"/>'s text (SHA-256).</summary>
    internal static long Hash(string description) => (long)(BitConverter.ToUInt64(SHA256.HashData(Encoding.UTF8.GetBytes(description))) >> 2);

    /// <summary>Fails on every rank when the ranks' fingerprints differ (all-reduce of the minimum and maximum hash).</summary>
    /// <exception cref="DistributedException">They differ.</exception>
    internal void CheckSameRun(string description)
    {
        if (!Active) return;
        long hash = Hash(description);
        Span<long> v = [hash, -hash];
        Communicator.AllReduce(v, ReduceOperation.Max);
        if (v[0] != hash || -v[1] != hash)
            throw new DistributedException($"the {Size} ranks do not train the same model on the same data: rank {Rank}'s fingerprint is {hash:x16}, " +
                $"the ranks' range from {-v[1]:x16} to {v[0]:x16} (it covers the parameter names, shapes and dtypes, the optimizer, seed, batch size, " +
                "epochs, number of examples and the model config); launch every rank with the same recipe, data and build");
    }

    /// <summary>Whether the checkpoint to resume from exists; fails when some ranks see it and others do not.</summary>
    internal bool AgreeExists(bool exists, string path)
    {
        if (!Active) return exists;
        Span<long> v = [exists ? 1 : 0];
        Communicator.AllReduce(v);
        if (v[0] != 0 && v[0] != Size)
            throw new DistributedException($"{path} exists for {v[0]} of the {Size} ranks (rank {Rank}: {(exists ? "present" : "absent")}); " +
                "a distributed resume reads it on every rank: put the output directory on a filesystem all machines share");
        return exists;
    }

    /// <summary>Copies every tensor of the model's state (parameters and buffers) from rank 0 to the others.</summary>
    internal void BroadcastState(nn.Module model)
    {
        if (!Active) return;
        using var noGrad = torch.no_grad();
        foreach (var (_, t) in model.state_dict())
        {
            if (t.numel() == 0) continue;
            bool staged = t.device_type != DeviceType.CPU || !t.is_contiguous();
            using var host = staged ? t.to(CPU).contiguous() : t.alias();
            Communicator.Broadcast(host.bytes);
            if (staged) t.copy_(host);
        }
    }

    /// <summary>
    /// One step's numbers summed over the ranks: the loss and metrics averaged with the ranks' weights, the tokens
    /// added. The metric names must be the same on every rank (checked).
    /// </summary>
    internal (double Loss, double Weight, long Tokens, Dictionary<string, double>? Metrics) ReduceStep(double loss, double weight, long tokens,
        IReadOnlyDictionary<string, double>? metrics)
    {
        var keys = metrics?.Keys.Order(StringComparer.Ordinal).ToList() ?? [];
        if (keys.Count > MaxMetrics) throw new ArgumentException($"a distributed step reports at most {MaxMetrics} metrics, this one reports {keys.Count}");
        if (!Active) return (loss, weight, tokens, metrics?.ToDictionary());
        // Agreement on the metric names rides along: Σk and Σk² (and the same for a 20-bit hash of the names) match N·k and N·k² only when all agree.
        double k = keys.Count, h = (double)(Hash(string.Join('\n', keys)) & 0xFFFFF);
        var v = new double[Fixed + MaxMetrics];
        (v[0], v[1], v[2], v[3], v[4], v[5], v[6]) = (weight * loss, weight, tokens, k, k * k, h, h * h);
        for (int i = 0; i < keys.Count; i++) v[Fixed + i] = weight * metrics![keys[i]];
        Communicator.AllReduce(v);
        if (v[3] * v[3] != Size * v[4] || v[5] * v[5] != Size * v[6])
            throw new DistributedException($"the ranks' step functions report different metrics (rank {Rank}: {string.Join(", ", keys)}); every rank must run the same step");
        var global = keys.Count == 0 ? null : keys.Select((key, i) => (key, i)).ToDictionary(x => x.key, x => v[Fixed + x.i] / v[1]);
        return (v[0] / v[1], v[1], (long)v[2], global);
    }

    /// <summary>Averages the optimizer's gradients across ranks, this rank's weighted by <paramref name="weight"/> ÷ <paramref name="total"/>.</summary>
    internal void AllReduceGradients(Optimizer optimizer, double weight, double total)
    {
        if (!Active) return;
        buckets ??= new GradientBuckets(optimizer.Parameters.Select(p => p.Param).ToList(), Math.Min(options.BucketBytes, GradientBuckets.MaxBucketBytes));
        buckets.AllReduce(Communicator, weight / total);
    }

    /// <summary>Rank 0's reason to stop (or null) on every rank: early stopping, time budgets and the like decide once.</summary>
    internal string? AgreeStop(string? reason)
    {
        if (!Active) return reason;
        var buffer = new byte[1024];
        if (Rank == 0 && reason is not null)
        {
            buffer[0] = 1;
            int n = Encoding.UTF8.GetBytes(reason.AsSpan(0, Math.Min(reason.Length, 250)), buffer.AsSpan(3));
            (buffer[1], buffer[2]) = ((byte)(n >> 8), (byte)n);
        }
        Communicator.Broadcast(buffer);
        return buffer[0] == 0 ? null : Encoding.UTF8.GetString(buffer, 3, (buffer[1] << 8) | buffer[2]);
    }

    /// <summary>A per-step seed that differs between ranks (rank 0's is the single-process one).</summary>
    internal int StepSeed(int seed, long step, int salt) => Active ? StableSeed.Mix(seed, step, salt, Rank) : StableSeed.Mix(seed, step, salt);

    public void Dispose() => buckets?.Dispose();
}
