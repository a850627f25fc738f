namespace Bert4Sharp.Cli;

using System.CommandLine;
using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics.X86;
using Bert4Sharp.Runtime;
using Bert4Sharp.Training.Distributed;
using Spectre.Console;
using TorchSharp;

/// <summary>
/// <c>b4s doctor</c>: what tensor engine this process runs on, whether the GCC-12 fix is in place, and the MPI library and
/// world (under <c>mpirun -np N b4s doctor</c> every rank joins an all-reduce check and rank 0 reports).
/// </summary>
internal static class DoctorCommand
{
    public static Command Create()
    {
        var json = new Option<bool>("--json") { Description = "Machine-readable output" };
        var cmd = new Command("doctor", "Report TorchSharp/libtorch versions, threads, CPU features and the runtime fix") { json };
        cmd.SetAction(CliErrors.Wrap(r => Run(r.GetValue(json))));
        return cmd;
    }

    static int Run(bool json)
    {
        var mpi = MpiReport.Gather();
        if (mpi.Rank != 0) return CliErrors.Ok;                                           // rank 0 reports for the world
        string? lib = TorchInfo.FindLoadedLibTorchSharp();
        string fixState = lib is null ? "libLibTorchSharp.so not found beside the tool" : LibTorchSharpFix.Inspect(lib).ToString();
        string? stdcxx = null;
        bool? sysHas = OperatingSystem.IsLinux() ? LibTorchSharpFix.SystemLibStdCxxHasVersion(out stdcxx) : null;

        string? torchError = null;
        string libtorch = "?";
        int threads = 0;
        bool cuda = false;
        double gflops = 0;
        try
        {
            libtorch = torch.__version__;
            threads = torch.get_num_threads();
            cuda = torch.cuda.is_available();
            using var scope = torch.NewDisposeScope();
            var a = torch.randn(512, 768);
            var b = torch.randn(768, 768);
            a.matmul(b);
            var sw = Stopwatch.StartNew();
            const int reps = 20;
            for (int i = 0; i < reps; i++) a.matmul(b);
            gflops = reps * 2.0 * 512 * 768 * 768 / sw.Elapsed.TotalSeconds / 1e9;
        }
        catch (Exception e) when (e is TypeInitializationException or DllNotFoundException or ExternalException)
        {
            torchError = (e.InnerException ?? e).Message.ReplaceLineEndings(" ");
        }

        var cpu = new Dictionary<string, bool>
        {
            ["sse4.2"] = Sse42.IsSupported, ["avx"] = Avx.IsSupported, ["avx2"] = Avx2.IsSupported, ["fma"] = Fma.IsSupported,
            ["avx512f"] = Avx512F.IsSupported, ["avx512bw"] = Avx512BW.IsSupported, ["avx-vnni"] = AvxVnni.IsSupported,
        };
        var hw = HardwareSupport.Current;
        var cpuPlan = PrecisionPolicy.Resolve(Precision.Auto, TorchSharp.DeviceType.CPU, hw, training: true);
        var precision = new
        {
            cpu_model = hw.CpuModel,
            flags_from = hw.Source,
            cpu_flags = hw.LowPrecisionFlags,
            cpu_native_bf16 = hw.CpuNativeBf16,
            cpu_native_fp16 = hw.CpuNativeFp16,
            gpus = hw.Gpus.Select(g => new { name = g.Name, compute_capability = g.ComputeCapability?.ToString(2), native_bf16 = g.NativeBf16, native_fp16 = g.NativeFp16 }).ToList(),
            auto_cpu = cpuPlan.Name,
            auto_cpu_reason = cpuPlan.Reason,
            auto_gpu = hw.Gpus.Count == 0 ? null : PrecisionPolicy.Resolve(Precision.Auto, TorchSharp.DeviceType.CUDA, hw, training: true).Name,
        };
        var report = new
        {
            torchsharp = typeof(torch).Assembly.GetName().Version?.ToString(),
            libtorch,
            torch_initialised = torchError is null,
            torch_error = torchError,
            threads,
            cuda_available = cuda,
            default_device = torchError is null ? (cuda ? "cuda" : "cpu") : null,
            matmul_gflops_512x768x768 = Math.Round(gflops, 1),
            processors = Environment.ProcessorCount,
            cpu_features = cpu,
            precision,
            mpi,
            os = RuntimeInformation.OSDescription,
            dotnet = RuntimeInformation.FrameworkDescription,
            runtime_fix = new
            {
                libtorchsharp = lib,
                state = fixState,
                system_libstdcxx = stdcxx,
                system_has_glibcxx_3_4_32 = sysHas,
                applied = fixState == nameof(LibTorchSharpFixState.Patched),
            },
        };
        if (json)
        {
            CliErrors.WriteJson(report);
        }
        else
        {
            var t = new Table().Border(TableBorder.Simple).AddColumn("check").AddColumn("value");
            t.AddRow("TorchSharp", report.torchsharp ?? "?");
            t.AddRow("libtorch", Markup.Escape(libtorch));
            t.AddRow("torch initialised", torchError is null ? "[green]yes[/]" : $"[red]no[/]: {Markup.Escape(torchError)}");
            t.AddRow("threads / processors", $"{threads} / {Environment.ProcessorCount}");
            t.AddRow("CUDA", cuda ? "[green]available[/]" : "not available (CPU)");
            t.AddRow("matmul 512×768×768", $"{gflops:F1} GFLOP/s");
            t.AddRow("CPU features", string.Join(" ", cpu.Where(kv => kv.Value).Select(kv => kv.Key)));
            t.AddRow("low precision", Markup.Escape(hw.Describe()) + $" [grey](flags from {Markup.Escape(hw.Source)})[/]");
            t.AddRow("--precision auto", Markup.Escape($"{cpuPlan.Name} on the CPU ({cpuPlan.Reason})" + (precision.auto_gpu is string g ? $"; {g} on the GPU" : "")));
            t.AddRow("MPI library", Markup.Escape(mpi.Library is null ? mpi.Error ?? "-" : $"{mpi.Library} ({mpi.Version})"));
            t.AddRow("MPI world", Markup.Escape(mpi.LaunchedBy is null ? "1 process (not launched by mpirun)"
                : $"{mpi.WorldSize} processes (launched: {mpi.LaunchedBy}); all-reduce check {mpi.AllReduceCheck ?? "not run"}"));
            t.AddRow("OS / .NET", Markup.Escape($"{report.os} / {report.dotnet}"));
            t.AddRow("system libstdc++", Markup.Escape($"{stdcxx ?? "not found"} (GLIBCXX_3.4.32: {(sysHas is null ? "?" : sysHas.Value ? "yes" : "no")})"));
            t.AddRow("runtime fix", Markup.Escape($"{fixState} ({lib ?? "-"})"));
            AnsiConsole.Write(t);
        }
        return torchError is null && mpi.AllReduceCheck is null or "ok" ? CliErrors.Ok : CliErrors.Failure;
    }

    /// <summary>The MPI part of the report.</summary>
    /// <param name="Library">The Open MPI library file, or null.</param>
    /// <param name="Version">What it says of itself.</param>
    /// <param name="Error">Why no library was loaded, or null.</param>
    /// <param name="LaunchedBy">The launcher's variable, or null when not launched by one.</param>
    /// <param name="WorldSize">Processes in the run.</param>
    /// <param name="Rank">This process's rank.</param>
    /// <param name="AllReduceCheck">"ok" when every rank's all-reduce of (rank, 1) gave (N(N − 1)/2, N); null when not run.</param>
    internal sealed record MpiReport(string? Library, string? Version, string? Error, string? LaunchedBy, int WorldSize, int Rank, string? AllReduceCheck)
    {
        public static MpiReport Gather()
        {
            var launch = MpiLaunch.Detect();
            var lib = MpiLibrary.TryLoad(out string? error);
            if (lib is null && launch is null && error?.StartsWith("no Open MPI", StringComparison.Ordinal) == true)
                error = "none found (apt-get install openmpi-bin to train on several processes)";
            if (launch is null || lib is null) return new MpiReport(lib?.Path, lib?.Version, error, launch?.Launcher, 1, 0, null);
            using var world = MpiCommunicator.Initialize();
            Span<long> v = [world.Rank, 1];
            world.AllReduce(v);
            long n = world.Size;
            string check = v[0] == n * (n - 1) / 2 && v[1] == n ? "ok" : $"wrong: got ({v[0]}, {v[1]}), expected ({n * (n - 1) / 2}, {n})";
            return new MpiReport(lib.Path, lib.Version, null, launch.Launcher, world.Size, world.Rank, check);
        }
    }
}
