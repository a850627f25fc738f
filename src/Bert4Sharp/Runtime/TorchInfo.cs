namespace Bert4Sharp.Runtime;

using TorchSharp;

/// <summary>Facts about the tensor engine in this process, as printed by <c>b4s doctor</c>.</summary>
public static class TorchInfo
{
    /// <summary>The directory holding the libLibTorchSharp.so that the process loads first.</summary>
    public static string? FindLoadedLibTorchSharp()
    {
        string baseDir = AppContext.BaseDirectory;
        foreach (string candidate in new[]
        {
            Path.Combine(baseDir, "runtimes", "linux-x64", "native", "libLibTorchSharp.so"),
            Path.Combine(baseDir, "libLibTorchSharp.so"),
        })
        {
            if (File.Exists(candidate)) return candidate;
        }
        return null;
    }

    /// <summary>Sets the number of CPU threads libtorch uses for one operation (intra-op parallelism).</summary>
    /// <exception cref="ArgumentOutOfRangeException">Less than 1.</exception>
    public static void SetThreads(int threads)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(threads, 1);
        torch.set_num_threads(threads);
    }

    /// <summary>Selects CUDA when TorchSharp reports it, otherwise the CPU.</summary>
    public static torch.Device DefaultDevice => torch.cuda.is_available() ? torch.CUDA : torch.CPU;
}
