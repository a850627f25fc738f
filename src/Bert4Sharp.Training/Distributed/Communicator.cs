namespace Bert4Sharp.Training.Distributed;

using System.Runtime.InteropServices;

/// <summary>How an all-reduce combines the ranks' values.</summary>
public enum ReduceOperation
{
    /// <summary>Elementwise sum.</summary>
    Sum,
    /// <summary>Elementwise minimum.</summary>
    Min,
    /// <summary>Elementwise maximum.</summary>
    Max,
}

/// <summary>
/// A distributed run cannot go on: no usable MPI library, a collective failed or timed out, or the ranks disagree
/// (model, data, checkpoint). The message says which and what to do.
/// </summary>
public sealed class DistributedException(string message, Exception? inner = null) : Exception(message, inner);

/// <summary>
/// The group of processes of one run (MPI's <c>MPI_COMM_WORLD</c>): its size, this process's rank, and the
/// collectives data-parallel training needs, in place on contiguous buffers. Every rank must call the same
/// collectives in the same order with the same lengths.
/// </summary>
public abstract class Communicator : IDisposable
{
    /// <summary>This process's rank, 0 … <see cref="Size"/> − 1.</summary>
    public abstract int Rank { get; }

    /// <summary>Processes in the run.</summary>
    public abstract int Size { get; }

    /// <summary>Rank 0: the one that writes checkpoints, metrics and plots and prints progress.</summary>
    public bool IsPrimary => Rank == 0;

    /// <summary>What this is, for logs (e.g. <c>Open MPI v4.1.4, rank 0 of 2</c>).</summary>
    public abstract string Description { get; }

    /// <summary>Combines <paramref name="data"/> across ranks in place; every rank ends with the same values.</summary>
    public abstract void AllReduce(Span<float> data, ReduceOperation op = ReduceOperation.Sum);

    /// <inheritdoc cref="AllReduce(Span{float}, ReduceOperation)"/>
    public abstract void AllReduce(Span<double> data, ReduceOperation op = ReduceOperation.Sum);

    /// <inheritdoc cref="AllReduce(Span{float}, ReduceOperation)"/>
    public abstract void AllReduce(Span<long> data, ReduceOperation op = ReduceOperation.Sum);

    /// <summary>Copies <paramref name="data"/> from rank <paramref name="root"/> to every other rank.</summary>
    public abstract void Broadcast(Span<byte> data, int root = 0);

    /// <summary>Waits until every rank has called it.</summary>
    public abstract void Barrier();

    /// <summary>
    /// Ends every process of the run with <paramref name="code"/> (MPI_Abort): what a rank does after an error the others
    /// cannot see, so that they stop instead of waiting for it. Does nothing with one process.
    /// </summary>
    public virtual void Abort(int code) { }

    /// <summary>The one-process communicator: every collective is the identity.</summary>
    public static Communicator Single { get; } = new SingleProcessCommunicator();

    /// <summary>
    /// True when this process was started by an MPI launcher: <c>mpirun</c>/<c>mpiexec</c> of Open MPI
    /// (<c>OMPI_COMM_WORLD_SIZE</c>), a PMI launcher (<c>PMI_SIZE</c>) or PMIx (<c>PMIX_RANK</c>, e.g. <c>srun --mpi=pmix</c>).
    /// </summary>
    public static bool LaunchedByMpi => MpiLaunch.Detect() is not null;

    /// <summary>
    /// MPI when this process was started by an MPI launcher (<see cref="LaunchedByMpi"/>), otherwise
    /// <see cref="Single"/>: the same program runs alone or under <c>mpirun -np N</c> unchanged.
    /// </summary>
    /// <exception cref="DistributedException">Launched by mpirun, but Open MPI cannot be loaded or initialised.</exception>
    public static Communicator FromEnvironment(MpiOptions? options = null) =>
        LaunchedByMpi ? MpiCommunicator.Initialize(options) : Single;

    /// <summary>Finalises MPI (nothing for one process).</summary>
    public virtual void Dispose() => GC.SuppressFinalize(this);

    sealed class SingleProcessCommunicator : Communicator
    {
        public override int Rank => 0;
        public override int Size => 1;
        public override string Description => "one process (not launched by mpirun)";
        public override void AllReduce(Span<float> data, ReduceOperation op = ReduceOperation.Sum) { }
        public override void AllReduce(Span<double> data, ReduceOperation op = ReduceOperation.Sum) { }
        public override void AllReduce(Span<long> data, ReduceOperation op = ReduceOperation.Sum) { }
        public override void Broadcast(Span<byte> data, int root = 0)
        {
            if (root != 0) throw new ArgumentOutOfRangeException(nameof(root), $"root {root} does not exist in a one-process run");
        }
        public override void Barrier() { }
        public override void Dispose() { }
    }
}

/// <summary>What the environment says about an MPI launch, before MPI is initialised.</summary>
/// <param name="Launcher">The variable that gave it away (<c>OMPI_COMM_WORLD_SIZE</c>, <c>PMI_SIZE</c>, <c>PMIX_RANK</c>).</param>
/// <param name="Size">World size from the environment, when it says.</param>
/// <param name="Rank">Rank from the environment, when it says.</param>
/// <param name="LocalSize">Ranks on this machine (<c>OMPI_COMM_WORLD_LOCAL_SIZE</c>, <c>MPI_LOCALNRANKS</c>, <c>SLURM_NTASKS_PER_NODE</c>), when it says.</param>
public sealed record MpiLaunch(string Launcher, int? Size, int? Rank, int? LocalSize)
{
    /// <summary>The launch this process is part of, or null when it was not started by an MPI launcher.</summary>
    public static MpiLaunch? Detect()
    {
        string? launcher = new[] { "OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK" }.FirstOrDefault(v => !string.IsNullOrEmpty(Environment.GetEnvironmentVariable(v)));
        if (launcher is null) return null;
        return new MpiLaunch(launcher, Int("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "SLURM_NTASKS"), Int("OMPI_COMM_WORLD_RANK", "PMI_RANK", "PMIX_RANK"),
            Int("OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALNRANKS", "SLURM_NTASKS_PER_NODE"));
    }

    /// <summary>
    /// libtorch threads per rank so that the ranks on one machine share its cores instead of oversubscribing them:
    /// processors ÷ ranks on this machine (at least 1); null when the environment does not say how many share it.
    /// </summary>
    public int? ThreadsPerRank => LocalSize is int local and > 0 ? Math.Max(1, Environment.ProcessorCount / local) : null;

    static int? Int(params string[] names)
    {
        foreach (string n in names)
            if (int.TryParse(Environment.GetEnvironmentVariable(n)?.Split('(')[0], out int v)) return v;   // SLURM_NTASKS_PER_NODE may read "2(x3)"
        return null;
    }
}

/// <summary>Options of <see cref="MpiCommunicator"/>.</summary>
public sealed record MpiOptions
{
    /// <summary>Environment variable that overrides <see cref="Timeout"/> (seconds).</summary>
    public const string TimeoutVariable = "B4S_MPI_TIMEOUT";

    /// <summary>
    /// The longest a rank waits in one collective for the others (a rank that hangs, or is far behind, e.g. in a long
    /// evaluation): then it says so on standard error and aborts the whole job (MPI_Abort) rather than hang.
    /// Default 15 minutes, or <c>$B4S_MPI_TIMEOUT</c> seconds.
    /// </summary>
    public TimeSpan Timeout { get; init; } = DefaultTimeout();

    /// <summary>
    /// Buffers of at least this many bytes use the blocking MPI collective (Open MPI's tuned algorithms) after a polled
    /// barrier, which is where a stuck rank is noticed; smaller ones the polled non-blocking collective.
    /// <see cref="long.MaxValue"/> to always poll.
    /// </summary>
    public long BlockingFromBytes { get; init; } = 1 << 20;

    /// <summary>Where the timeout's message goes before the abort (default: standard error).</summary>
    public Action<string>? FatalLog { get; init; }

    static TimeSpan DefaultTimeout() =>
        double.TryParse(Environment.GetEnvironmentVariable(TimeoutVariable), System.Globalization.NumberStyles.Float, System.Globalization.CultureInfo.InvariantCulture, out double s) && s > 0
            ? TimeSpan.FromSeconds(s) : TimeSpan.FromMinutes(15);
}

/// <summary>
/// <see cref="Communicator"/> over Open MPI's <c>MPI_COMM_WORLD</c>, with <c>MPI_ERRORS_RETURN</c> (a failed call
/// becomes a <see cref="DistributedException"/>) and a timeout on every collective (see <see cref="MpiOptions.Timeout"/>).
/// When a rank exits without finalising MPI or with a non-zero code, Open MPI's <c>mpirun</c> kills the other
/// ranks and exits non-zero itself.
/// </summary>
public sealed unsafe class MpiCommunicator : Communicator
{
    static MpiCommunicator? current;
    readonly MpiLibrary mpi;
    readonly IntPtr world;
    bool failed, disposed;

    MpiCommunicator(MpiLibrary mpi, MpiOptions options)
    {
        this.mpi = mpi;
        Options = options;
        world = mpi.CommWorld;
        Rank = mpi.CommRank(world);
        Size = mpi.CommSize(world);
    }

    /// <summary>Loads Open MPI and initialises it (once per process; later calls return the same communicator).</summary>
    /// <exception cref="DistributedException">No usable Open MPI, or MPI_Init failed.</exception>
    public static MpiCommunicator Initialize(MpiOptions? options = null)
    {
        if (current is { disposed: false }) return current;
        var mpi = MpiLibrary.Load();
        if (mpi.Finalized()) throw new DistributedException("MPI was already finalised in this process; it can be initialised only once");
        if (!mpi.Initialized())
        {
            int rc = mpi.InitThread(MpiLibrary.ThreadSerialized, out _);
            if (rc != MpiLibrary.Success)
                throw new DistributedException($"MPI_Init_thread failed: {mpi.ErrorString(rc)}; was the process started by this Open MPI's mpirun ({mpi.Version})?");
        }
        mpi.SetErrorHandler(mpi.CommWorld, mpi.ErrorsReturn);
        var world = new MpiCommunicator(mpi, options ?? new MpiOptions());
        // Another MPI's launcher (MPICH's mpiexec sets PMI_SIZE) with Open MPI's library gives N separate one-process worlds.
        if (MpiLaunch.Detect() is { Size: int launched } launch && launched != world.Size)
            throw new DistributedException($"the launcher says {launched} processes ({launch.Launcher}) but {mpi.Version} sees {world.Size}: " +
                "start the run with the mpirun of the Open MPI that b4s loads (or srun --mpi=pmix with an Open MPI built for it)");
        return current = world;
    }

    /// <summary>The loaded library.</summary>
    public MpiLibrary Library => mpi;

    /// <summary>Timeout and blocking threshold (may change between collectives, e.g. to compare polled and blocking calls).</summary>
    public MpiOptions Options { get; set; }

    /// <inheritdoc/>
    public override int Rank { get; }

    /// <inheritdoc/>
    public override int Size { get; }

    /// <inheritdoc/>
    public override string Description => $"{mpi.Version}, rank {Rank} of {Size}";

    /// <inheritdoc/>
    public override void AllReduce(Span<float> data, ReduceOperation op = ReduceOperation.Sum) => Reduce(MemoryMarshal.AsBytes(data), sizeof(float), mpi.Float, op);

    /// <inheritdoc/>
    public override void AllReduce(Span<double> data, ReduceOperation op = ReduceOperation.Sum) => Reduce(MemoryMarshal.AsBytes(data), sizeof(double), mpi.Double, op);

    /// <inheritdoc/>
    public override void AllReduce(Span<long> data, ReduceOperation op = ReduceOperation.Sum) => Reduce(MemoryMarshal.AsBytes(data), sizeof(long), mpi.Int64, op);

    /// <inheritdoc/>
    public override void Broadcast(Span<byte> data, int root = 0)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(root);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(root, Size);
        fixed (byte* p = data)
            for (long offset = 0; offset < data.Length; offset += int.MaxValue)
            {
                int count = (int)Math.Min(int.MaxValue, data.Length - offset);
                IntPtr buffer = (IntPtr)(p + offset);
                if (data.Length >= Options.BlockingFromBytes)
                {
                    Barrier();                                                            // polled: a stuck rank is noticed here, not inside the blocking call
                    Check(mpi.Broadcast(buffer, count, mpi.Byte, root, world), "MPI_Bcast", data.Length);
                }
                else
                {
                    IntPtr request;
                    Check(mpi.IBroadcast(buffer, count, mpi.Byte, root, world, &request), "MPI_Ibcast", data.Length);
                    Wait(&request, "broadcast", data.Length);
                }
            }
    }

    /// <inheritdoc/>
    public override void Barrier()
    {
        IntPtr request;
        Check(mpi.IBarrier(world, &request), "MPI_Ibarrier", 0);
        Wait(&request, "barrier", 0);
    }

    /// <inheritdoc/>
    public override void Abort(int code)
    {
        failed = true;
        mpi.Abort(world, code);
    }

    /// <summary>Finalises MPI; after a failed or timed-out collective it aborts the job instead (finalising would wait for the others).</summary>
    public override void Dispose()
    {
        if (disposed) return;
        disposed = true;
        if (failed) mpi.Abort(world, 1);
        else if (!mpi.Finalized()) mpi.Finalize();
    }

    void Reduce(Span<byte> data, int elementSize, IntPtr type, ReduceOperation op)
    {
        IntPtr mpiOp = op switch { ReduceOperation.Sum => mpi.OpSum, ReduceOperation.Min => mpi.OpMin, ReduceOperation.Max => mpi.OpMax, _ => throw new ArgumentOutOfRangeException(nameof(op)) };
        long elements = data.Length / elementSize, chunk = int.MaxValue;
        fixed (byte* p = data)
            for (long first = 0; first < elements; first += chunk)
            {
                int count = (int)Math.Min(chunk, elements - first);
                IntPtr buffer = (IntPtr)(p + first * elementSize);
                if (data.Length >= Options.BlockingFromBytes)
                {
                    Barrier();                                                            // polled: a stuck rank is noticed here, not inside the blocking call
                    Check(mpi.AllReduce(MpiLibrary.InPlace, buffer, count, type, mpiOp, world), "MPI_Allreduce", data.Length);
                }
                else
                {
                    IntPtr request;
                    Check(mpi.IAllReduce(MpiLibrary.InPlace, buffer, count, type, mpiOp, world, &request), "MPI_Iallreduce", data.Length);
                    Wait(&request, "all-reduce", data.Length);
                }
            }
    }

    /// <summary>Polls a request until it completes; past the timeout, says so and aborts the job (the request still owns the buffer).</summary>
    void Wait(IntPtr* request, string what, long bytes)
    {
        long start = System.Diagnostics.Stopwatch.GetTimestamp();
        for (int polls = 0; ; polls++)
        {
            Check(mpi.Test(request, out bool done), "MPI_Test", bytes);
            if (done) return;
            var waited = System.Diagnostics.Stopwatch.GetElapsedTime(start);
            if (waited >= Options.Timeout)
            {
                failed = true;
                string message = $"rank {Rank} of {Size} waited {waited.TotalSeconds:F0} s in a {what} of {bytes:N0} bytes for the other ranks " +
                    $"(limit {Options.Timeout.TotalSeconds:F0} s, {MpiOptions.TimeoutVariable}): a rank is stuck, far behind or gone; aborting the job";
                (Options.FatalLog ?? Console.Error.WriteLine)("b4s: error: " + message);
                mpi.Abort(world, 1);
                throw new DistributedException(message);                                  // MPI_Abort does not return; this is for an MPI that does
            }
            // Open MPI progresses only inside MPI calls: spin first, then give the core to the others (ranks may share it).
            if (waited.TotalMilliseconds > 50) Thread.Sleep(1);
            else if (polls > 100) Thread.Yield();
        }
    }

    void Check(int code, string call, long bytes)
    {
        if (code == MpiLibrary.Success) return;
        failed = true;
        throw new DistributedException($"rank {Rank} of {Size}: {call} on {bytes:N0} bytes failed: {mpi.ErrorString(code)}; another rank has probably failed (see its error above)");
    }
}
