namespace Bert4Sharp.Training.Distributed;

using System.Globalization;
using System.Runtime.InteropServices;
using System.Text;

/// <summary>
/// Open MPI's C library, loaded at run time (no headers, no build-time dependency). Open MPI's handles
/// (<c>MPI_Comm</c>, <c>MPI_Datatype</c>, <c>MPI_Op</c>, <c>MPI_Errhandler</c>) are addresses of exported globals
/// (<c>ompi_mpi_comm_world</c>, <c>ompi_mpi_float</c>, <c>ompi_mpi_op_sum</c>, …), resolved here with
/// <see cref="NativeLibrary.GetExport"/>; <c>MPI_IN_PLACE</c> is <c>(void*)1</c> and <c>MPI_STATUS_IGNORE</c> is null.
/// MPICH and its derivatives (Intel MPI, MVAPICH) use integer handles instead and are refused by name.
/// </summary>
public sealed unsafe class MpiLibrary
{
    /// <summary>Environment variable naming the library file to load instead of searching.</summary>
    public const string LibraryVariable = "B4S_MPI_LIBRARY";

    internal const int Success = 0, ThreadSerialized = 2;
    internal static readonly IntPtr InPlace = 1;

    static readonly object Gate = new();
    static MpiLibrary? loaded;

    readonly IntPtr library;
    readonly System.Collections.Concurrent.ConcurrentDictionary<string, IntPtr> exports = new(StringComparer.Ordinal);

    MpiLibrary(IntPtr library, string path)
    {
        this.library = library;
        Path = path;
        Version = ReadLibraryVersion();
    }

    /// <summary>The file the library was loaded from (from <c>/proc/self/maps</c>; the name asked for when unknown).</summary>
    public string Path { get; }

    /// <summary>What <c>MPI_Get_library_version</c> says (first line), e.g. <c>Open MPI v4.1.4, package: Debian OpenMPI, …</c>.</summary>
    public string Version { get; }

    /// <summary>
    /// Loads Open MPI once per process: <c>$B4S_MPI_LIBRARY</c>, else <c>libmpi.so.40</c> (Open MPI 3–5) or <c>libmpi.so</c>.
    /// </summary>
    /// <exception cref="DistributedException">No MPI library, or one that is not Open MPI (the message says what was found and what to install).</exception>
    public static MpiLibrary Load()
    {
        lock (Gate)
        {
            if (loaded is not null) return loaded;
            string? explicitPath = Environment.GetEnvironmentVariable(LibraryVariable) is { Length: > 0 } e ? e : null;
            string[] names = explicitPath is not null ? [explicitPath] : ["libmpi.so.40", "libmpi.so"];
            foreach (string name in names)
            {
                if (!NativeLibrary.TryLoad(name, out IntPtr handle)) continue;
                string path = LoadedPath(handle, name);
                if (!NativeLibrary.TryGetExport(handle, "ompi_mpi_comm_world", out _))
                    throw new DistributedException($"{path} is not Open MPI (no ompi_mpi_comm_world; {Describe(handle)}): Bert4Sharp's MPI support " +
                        "uses Open MPI's handles; install Open MPI (Debian/Ubuntu: apt-get install openmpi-bin) and launch with its mpirun, " +
                        $"or point {LibraryVariable} at Open MPI's libmpi.so");
                return loaded = new MpiLibrary(handle, path);
            }
            string? other = NativeLibrary.TryLoad("libmpi.so.12", out IntPtr mpich) ? $"; found {LoadedPath(mpich, "libmpi.so.12")} ({Describe(mpich)}), " +
                "an MPICH-family library whose integer handles Bert4Sharp does not support" : "";
            throw new DistributedException((explicitPath is not null ? $"{LibraryVariable}={explicitPath} could not be loaded" : "no Open MPI library (libmpi.so.40 or libmpi.so) was found") +
                other + "; install Open MPI (Debian/Ubuntu: apt-get install openmpi-bin) or set " + LibraryVariable + " to its libmpi.so");
        }
    }

    /// <summary>Like <see cref="Load"/>, but returns null and the reason instead of throwing.</summary>
    public static MpiLibrary? TryLoad(out string? error)
    {
        try { error = null; return Load(); }
        catch (DistributedException e) { error = e.Message; return null; }
    }

    /// <summary>The address of an exported symbol; a clear error when this Open MPI lacks it.</summary>
    internal IntPtr Export(string name)
    {
        if (exports.TryGetValue(name, out IntPtr p)) return p;
        if (!NativeLibrary.TryGetExport(library, name, out p))
            throw new DistributedException($"{Path} does not export {name}; Bert4Sharp needs Open MPI 3 or later");
        return exports[name] = p;
    }

    // Handles: addresses of Open MPI's predefined objects.
    internal IntPtr CommWorld => Export("ompi_mpi_comm_world");
    internal IntPtr ErrorsReturn => Export("ompi_mpi_errors_return");
    internal IntPtr OpSum => Export("ompi_mpi_op_sum");
    internal IntPtr OpMin => Export("ompi_mpi_op_min");
    internal IntPtr OpMax => Export("ompi_mpi_op_max");
    internal IntPtr Float => Export("ompi_mpi_float");
    internal IntPtr Double => Export("ompi_mpi_double");
    internal IntPtr Int64 => Export("ompi_mpi_int64_t");
    internal IntPtr Byte => Export("ompi_mpi_byte");

    // Functions (C signatures from the MPI standard; handles are pointers in Open MPI).
    internal int InitThread(int required, out int provided)
    {
        int p;
        int rc = ((delegate* unmanaged<int*, byte***, int, int*, int>)Export("MPI_Init_thread"))(null, null, required, &p);
        provided = p;
        return rc;
    }

    internal bool Initialized() { int f; Check(((delegate* unmanaged<int*, int>)Export("MPI_Initialized"))(&f), "MPI_Initialized"); return f != 0; }
    internal bool Finalized() { int f; Check(((delegate* unmanaged<int*, int>)Export("MPI_Finalized"))(&f), "MPI_Finalized"); return f != 0; }
    internal int Finalize() => ((delegate* unmanaged<int>)Export("MPI_Finalize"))();
    internal int Abort(IntPtr comm, int code) => ((delegate* unmanaged<IntPtr, int, int>)Export("MPI_Abort"))(comm, code);
    internal int CommRank(IntPtr comm) { int r; Check(((delegate* unmanaged<IntPtr, int*, int>)Export("MPI_Comm_rank"))(comm, &r), "MPI_Comm_rank"); return r; }
    internal int CommSize(IntPtr comm) { int s; Check(((delegate* unmanaged<IntPtr, int*, int>)Export("MPI_Comm_size"))(comm, &s), "MPI_Comm_size"); return s; }
    internal void SetErrorHandler(IntPtr comm, IntPtr handler) =>
        Check(((delegate* unmanaged<IntPtr, IntPtr, int>)Export("MPI_Comm_set_errhandler"))(comm, handler), "MPI_Comm_set_errhandler");

    internal int AllReduce(IntPtr send, IntPtr receive, int count, IntPtr type, IntPtr op, IntPtr comm) =>
        ((delegate* unmanaged<IntPtr, IntPtr, int, IntPtr, IntPtr, IntPtr, int>)Export("MPI_Allreduce"))(send, receive, count, type, op, comm);
    internal int IAllReduce(IntPtr send, IntPtr receive, int count, IntPtr type, IntPtr op, IntPtr comm, IntPtr* request) =>
        ((delegate* unmanaged<IntPtr, IntPtr, int, IntPtr, IntPtr, IntPtr, IntPtr*, int>)Export("MPI_Iallreduce"))(send, receive, count, type, op, comm, request);
    internal int Broadcast(IntPtr buffer, int count, IntPtr type, int root, IntPtr comm) =>
        ((delegate* unmanaged<IntPtr, int, IntPtr, int, IntPtr, int>)Export("MPI_Bcast"))(buffer, count, type, root, comm);
    internal int IBroadcast(IntPtr buffer, int count, IntPtr type, int root, IntPtr comm, IntPtr* request) =>
        ((delegate* unmanaged<IntPtr, int, IntPtr, int, IntPtr, IntPtr*, int>)Export("MPI_Ibcast"))(buffer, count, type, root, comm, request);
    internal int IBarrier(IntPtr comm, IntPtr* request) => ((delegate* unmanaged<IntPtr, IntPtr*, int>)Export("MPI_Ibarrier"))(comm, request);
    internal int Test(IntPtr* request, out bool done)
    {
        int flag;
        int rc = ((delegate* unmanaged<IntPtr*, int*, IntPtr, int>)Export("MPI_Test"))(request, &flag, IntPtr.Zero);   // MPI_STATUS_IGNORE
        done = flag != 0;
        return rc;
    }

    /// <summary><c>MPI_Error_string</c> of a return code.</summary>
    internal string ErrorString(int code)
    {
        if (!NativeLibrary.TryGetExport(library, "MPI_Error_string", out IntPtr f)) return $"MPI error {code}";
        var buffer = new byte[1024];                                                  // MPI_MAX_ERROR_STRING is 256 in Open MPI
        int length;
        fixed (byte* b = buffer)
            if (((delegate* unmanaged<int, byte*, int*, int>)f)(code, b, &length) != Success) return $"MPI error {code}";
        return $"{Encoding.ASCII.GetString(buffer, 0, Math.Clamp(length, 0, buffer.Length)).Trim()} (MPI error {code})";
    }

    internal void Check(int code, string call)
    {
        if (code != Success) throw new DistributedException($"{call} failed: {ErrorString(code)}");
    }

    string ReadLibraryVersion() => ReadLibraryVersion(library) ?? "unknown (no MPI_Get_library_version)";

    /// <summary><c>MPI_Get_library_version</c> (callable before <c>MPI_Init</c>), first line.</summary>
    static string? ReadLibraryVersion(IntPtr library)
    {
        if (!NativeLibrary.TryGetExport(library, "MPI_Get_library_version", out IntPtr f)) return null;
        var buffer = new byte[8192];                                                  // MPI_MAX_LIBRARY_VERSION_STRING: 256 (Open MPI), 8192 (MPICH)
        int length;
        fixed (byte* b = buffer)
            if (((delegate* unmanaged<byte*, int*, int>)f)(b, &length) != Success) return null;
        string text = Encoding.ASCII.GetString(buffer, 0, Math.Clamp(length, 0, buffer.Length)).TrimEnd('\0');
        return text.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).FirstOrDefault() ?? text;
    }

    static string Describe(IntPtr library) => ReadLibraryVersion(library) is { } v ? $"it reports '{v}'" : "it reports no library version";

    /// <summary>The file a loaded library's exports live in, from <c>/proc/self/maps</c>; <paramref name="fallback"/> off Linux.</summary>
    static string LoadedPath(IntPtr library, string fallback)
    {
        if (!NativeLibrary.TryGetExport(library, "MPI_Init", out IntPtr symbol) || !File.Exists("/proc/self/maps")) return fallback;
        ulong address = (ulong)symbol;
        foreach (string line in File.ReadLines("/proc/self/maps"))
        {
            // 7f2c1c000000-7f2c1c021000 r-xp 00000000 08:01 1234   /usr/lib/x86_64-linux-gnu/libmpi.so.40.30.4
            int dash = line.IndexOf('-'), space = line.IndexOf(' ');
            if (dash < 0 || space < dash) continue;
            if (!ulong.TryParse(line.AsSpan(0, dash), NumberStyles.HexNumber, CultureInfo.InvariantCulture, out ulong start) ||
                !ulong.TryParse(line.AsSpan(dash + 1, space - dash - 1), NumberStyles.HexNumber, CultureInfo.InvariantCulture, out ulong end)) continue;
            int slash = line.IndexOf('/');
            if (address >= start && address < end && slash > 0) return line[slash..];
        }
        return fallback;
    }
}
