namespace Bert4Sharp.Runtime;

using System.Diagnostics;
using System.Globalization;
using System.Runtime.Intrinsics.X86;

/// <summary>An NVIDIA GPU as <c>nvidia-smi</c> reports it.</summary>
/// <param name="Name">Product name, e.g. "NVIDIA H200".</param>
/// <param name="ComputeCapability">Major.minor, e.g. 9.0; null when the driver does not say.</param>
public sealed record GpuInfo(string Name, Version? ComputeCapability)
{
    /// <summary>bf16 tensor cores: compute capability 8.0 (Ampere) and later.</summary>
    public bool NativeBf16 => ComputeCapability is { Major: >= 8 };

    /// <summary>fp16 tensor cores: compute capability 7.0 (Volta) and later.</summary>
    public bool NativeFp16 => ComputeCapability is { Major: >= 7 };
}

/// <summary>
/// What the hardware computes natively in low precision, detected once per process (<see cref="Current"/>):
/// the CPU's bf16/fp16 instructions (AVX512_BF16, AMX-BF16, AVX512-FP16, AMX-FP16, read from the kernel's
/// <c>/proc/cpuinfo</c> flags) and each NVIDIA GPU's compute capability (<c>nvidia-smi</c>). The precision policy
/// (<see cref="PrecisionPolicy"/>) decides from this record alone, so tests build one by hand to mock either kind of machine.
/// </summary>
/// <param name="CpuModel">The CPU's model name.</param>
/// <param name="CpuFlags">Lower-case feature flags as the Linux kernel names them (<c>avx2</c>, <c>avx512_bf16</c>, <c>amx_bf16</c>, …).</param>
/// <param name="Gpus">NVIDIA GPUs found (empty without a driver).</param>
/// <param name="Source">Where the CPU flags came from (for reports).</param>
public sealed record HardwareSupport(string CpuModel, IReadOnlySet<string> CpuFlags, IReadOnlyList<GpuInfo> Gpus, string Source)
{
    /// <summary>Environment variable that replaces the detected CPU flags (space- or comma-separated): for containers that hide them, and for trying the policy on another machine's flags.</summary>
    public const string CpuFlagsVariable = "B4S_CPU_FLAGS";

    static readonly Lazy<HardwareSupport> current = new(() => Detect());

    /// <summary>This machine, detected on first use.</summary>
    public static HardwareSupport Current => current.Value;

    /// <summary>AVX2 + FMA: the fp32 path libtorch and ONNX Runtime vectorise on every supported x86 CPU.</summary>
    public bool Avx2 => CpuFlags.Contains("avx2");

    /// <summary>AVX-512 foundation.</summary>
    public bool Avx512 => CpuFlags.Contains("avx512f");

    /// <summary>bf16 dot products in hardware: AVX512_BF16 (Cooper Lake, Zen 4 and later) or AMX-BF16 (Sapphire Rapids and later).</summary>
    public bool CpuNativeBf16 => CpuFlags.Contains("avx512_bf16") || CpuFlags.Contains("amx_bf16");

    /// <summary>fp16 arithmetic in hardware: AVX512-FP16 or AMX-FP16 (Sapphire Rapids / Granite Rapids).</summary>
    public bool CpuNativeFp16 => CpuFlags.Contains("avx512_fp16") || CpuFlags.Contains("amx_fp16");

    /// <summary>The low-precision flags that matter here, present or not, in a fixed order (for reports).</summary>
    public IReadOnlyDictionary<string, bool> LowPrecisionFlags => new[] { "avx2", "avx512f", "avx512_bf16", "amx_bf16", "avx512_fp16", "amx_fp16", "f16c" }
        .ToDictionary(f => f, CpuFlags.Contains);

    /// <summary>A record with the given flags and GPUs (tests, and <see cref="CpuFlagsVariable"/>).</summary>
    public static HardwareSupport FromFlags(IEnumerable<string> cpuFlags, IReadOnlyList<GpuInfo>? gpus = null, string cpuModel = "(given)", string source = "given") =>
        new(cpuModel, cpuFlags.Select(f => f.Trim().ToLowerInvariant()).Where(f => f.Length > 0).ToHashSet(), gpus ?? [], source);

    /// <summary>Detects this machine: <see cref="CpuFlagsVariable"/> if set, else <c>/proc/cpuinfo</c>, else what .NET's intrinsics report; GPUs from <c>nvidia-smi</c>.</summary>
    public static HardwareSupport Detect()
    {
        var gpus = DetectGpus();
        var (model, kernelFlags) = ReadCpuInfo();
        if (Environment.GetEnvironmentVariable(CpuFlagsVariable) is { Length: > 0 } given)
            return FromFlags(given.Split([' ', ','], StringSplitOptions.RemoveEmptyEntries), gpus, model ?? "?", $"${CpuFlagsVariable}");
        if (kernelFlags is not null) return FromFlags(kernelFlags.Split(' ', StringSplitOptions.RemoveEmptyEntries), gpus, model ?? "?", "/proc/cpuinfo");
        // No kernel flags (Windows, macOS): .NET's intrinsics say AVX2/AVX-512, but not bf16 or AMX, so those read as absent.
        var flags = new List<string>();
        if (System.Runtime.Intrinsics.X86.Avx2.IsSupported) flags.Add("avx2");
        if (Fma.IsSupported) flags.Add("fma");
        if (Avx512F.IsSupported) flags.Add("avx512f");
        return FromFlags(flags, gpus, "?", ".NET intrinsics (bf16/AMX not detectable)");
    }

    /// <summary>
    /// The first processor's model name and "flags" line from /proc/cpuinfo, in one pass (x86; ARM kernels write "Features",
    /// which has no bf16 flag of this kind); nulls where there is no such file or line.
    /// </summary>
    static (string? Model, string? Flags) ReadCpuInfo()
    {
        if (!File.Exists("/proc/cpuinfo")) return (null, null);
        string? model = null, flags = null;
        foreach (string line in File.ReadLines("/proc/cpuinfo"))
        {
            if (line.IndexOf(':') is not (int colon and > 0)) continue;
            if (model is null && line.StartsWith("model name", StringComparison.Ordinal)) model = line[(colon + 1)..].Trim();
            else if (flags is null && line.StartsWith("flags", StringComparison.Ordinal)) flags = line[(colon + 1)..];
            if (model is not null && flags is not null) break;
        }
        return (model, flags);
    }

    /// <summary>GPUs from <c>nvidia-smi --query-gpu=name,compute_cap</c> (empty when it is absent, fails or takes over 10 s).</summary>
    static IReadOnlyList<GpuInfo> DetectGpus()
    {
        try
        {
            var psi = new ProcessStartInfo("nvidia-smi", "--query-gpu=name,compute_cap --format=csv,noheader")
            {
                RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false,
            };
            using var p = Process.Start(psi);
            if (p is null) return [];
            var output = p.StandardOutput.ReadToEndAsync();
            if (!p.WaitForExit(10_000)) { p.Kill(); return []; }
            return p.ExitCode != 0 ? [] : ParseNvidiaSmi(output.Result);
        }
        catch (System.ComponentModel.Win32Exception)
        {
            return [];   // no nvidia-smi on PATH: no NVIDIA driver
        }
    }

    /// <summary>Parses <c>name, compute_cap</c> CSV lines; a capability the driver leaves out ("[N/A]") becomes null.</summary>
    public static IReadOnlyList<GpuInfo> ParseNvidiaSmi(string csv) => csv
        .Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
        .Select(line =>
        {
            int comma = line.LastIndexOf(',');
            if (comma < 0) return new GpuInfo(line, null);
            string cap = line[(comma + 1)..].Trim();
            return new GpuInfo(line[..comma].Trim(), Version.TryParse(cap, out var v) ? v : null);
        })
        .ToList();

    /// <summary>One line for logs: "AMD EPYC 7B13: avx2, no avx512_bf16/amx_bf16 (…)".</summary>
    public string Describe()
    {
        string bf16 = CpuNativeBf16 ? "native bf16 (" + string.Join("/", new[] { "avx512_bf16", "amx_bf16" }.Where(CpuFlags.Contains)) + ")" : "no native bf16 (no avx512_bf16/amx_bf16)";
        string fp16 = CpuNativeFp16 ? "native fp16 (" + string.Join("/", new[] { "avx512_fp16", "amx_fp16" }.Where(CpuFlags.Contains)) + ")" : "no native fp16";
        string gpu = Gpus.Count == 0 ? "" : "; " + string.Join(", ", Gpus.Select(g => $"{g.Name} (compute {g.ComputeCapability?.ToString(2) ?? "?"})"));
        return string.Create(CultureInfo.InvariantCulture, $"{CpuModel}: {(Avx512 ? "avx512f" : Avx2 ? "avx2" : "no avx2")}, {bf16}, {fp16}{gpu}");
    }
}
