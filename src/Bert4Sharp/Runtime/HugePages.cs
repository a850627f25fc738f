namespace Bert4Sharp.Runtime;

using System.Runtime.InteropServices;

/// <summary>
/// Asks Linux to back a large, freshly allocated buffer with transparent huge pages before it is first
/// written. Filling a new 400 MB tensor otherwise costs ~100,000 page faults (4 KiB each), which
/// dominates checkpoint loading when the file is in the page cache; with 2 MiB pages it is ~200.
/// A hint only: where THP is off, or on other systems, nothing happens.
/// </summary>
internal static partial class HugePages
{
    const int MadvHugePage = 14;
    const long HugePageSize = 2 << 20;
    static bool disabled = !OperatingSystem.IsLinux();

    [LibraryImport("libc", SetLastError = true)]
    private static partial int madvise(nint addr, nuint length, int advice);

    /// <summary>Advises huge pages for the 2 MiB-aligned interior of <paramref name="buffer"/>.</summary>
    public static unsafe void Advise(Span<byte> buffer)
    {
        if (disabled || buffer.Length < 2 * HugePageSize) return;
        fixed (byte* p = buffer)
        {
            long start = ((long)p + HugePageSize - 1) & ~(HugePageSize - 1);
            long end = ((long)p + buffer.Length) & ~(HugePageSize - 1);
            if (end <= start) return;
            try { madvise((nint)start, (nuint)(end - start), MadvHugePage); }
            catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException) { disabled = true; }
        }
    }
}
