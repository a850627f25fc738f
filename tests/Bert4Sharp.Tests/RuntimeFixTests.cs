using Bert4Sharp.Runtime;
using System.IO;
using TorchSharp;

namespace Bert4Sharp.Tests;

public class RuntimeFixTests
{
    [Fact]
    public void TorchInitialisesInsideTheTestHost()
    {
        using var a = torch.arange(6, dtype: torch.float32).reshape(2, 3);
        using var b = torch.ones(3, 2);
        using var c = a.matmul(b);
        Assert.Equal(new float[] { 3, 3, 12, 12 }, c.data<float>().ToArray());
    }
}

public class LibTorchSharpPatchTests
{
    static string NuGetCopy()
    {
        string root = Environment.GetEnvironmentVariable("NUGET_PACKAGES") is { Length: > 0 } p ? p
            : Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".nuget", "packages");
        string lib = Path.Combine(root, "torchsharp", "0.107.0", "runtimes", "linux-x64", "native", "libLibTorchSharp.so");
        if (!File.Exists(lib)) Assert.Skip($"TorchSharp 0.107.0's linux-x64 native library is not in the NuGet cache at {lib}");
        return lib;
    }

    [Fact]
    public void ShippedLibraryNeedsTheFixAndTheCacheIsNeverPatched()
    {
        // The build patched the output copies; the package cache must still hold the original.
        Assert.Equal(LibTorchSharpFixState.Unpatched, LibTorchSharpFix.Inspect(NuGetCopy()));
    }

    [Fact]
    public void PatchIsCorrectAndIdempotent()
    {
        string tmp = Path.Combine(Path.GetTempPath(), $"b4s-{Guid.NewGuid():N}.so");
        try
        {
            byte[] original = File.ReadAllBytes(NuGetCopy());
            File.WriteAllBytes(tmp, original);
            Assert.Equal(LibTorchSharpFixState.Patched, LibTorchSharpFix.Patch(tmp));
            byte[] once = File.ReadAllBytes(tmp);
            Assert.Equal(original.Length, once.Length);
            // Exactly three small edits: vna_flags (1 byte), one versym (2 bytes), the symbol name in .dynstr.
            int changed = original.Zip(once).Count(p => p.First != p.Second);
            Assert.InRange(changed, 3, 2 + 2 + LibTorchSharpFix.Symbol.Length);
            Assert.Equal(LibTorchSharpFixState.Patched, LibTorchSharpFix.Patch(tmp));
            Assert.Equal(once, File.ReadAllBytes(tmp));
            Assert.Equal(-1, once.AsSpan().IndexOf("_ZSt21ios_base_library_initv\0"u8));
        }
        finally { File.Delete(tmp); }
    }

    [Fact]
    public void OutputCopyInThisTestHostMatchesTheSystem()
    {
        if (!OperatingSystem.IsLinux()) Assert.Skip("the runtime fix only concerns Linux");
        string? lib = TorchInfo.FindLoadedLibTorchSharp();
        Assert.NotNull(lib);
        bool? has = LibTorchSharpFix.SystemLibStdCxxHasVersion(out string? at);
        var state = LibTorchSharpFix.Inspect(lib);
        if (has == false) Assert.Equal(LibTorchSharpFixState.Patched, state);
        else if (has == true) Assert.Equal(LibTorchSharpFixState.Unpatched, state);
        _ = at;
    }

    [Fact]
    public void NonElfInputIsRejectedClearly()
    {
        string tmp = Path.GetTempFileName();
        try
        {
            File.WriteAllText(tmp, "not an elf");
            var e = Assert.Throws<InvalidDataException>(() => LibTorchSharpFix.Inspect(tmp));
            Assert.Contains("not an ELF", e.Message);
        }
        finally { File.Delete(tmp); }
    }
}
