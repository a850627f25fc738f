namespace Bert4Sharp.Cli;

using System.CommandLine;
using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics.X86;
using Bert4Sharp.Runtime;
using Spectre.Console;
using TorchSharp;

/// <summary><c>b4s doctor</c>: what tensor engine this process runs on, and whether the GCC-12 fix is in place.</summary>
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
            t.AddRow("OS / .NET", Markup.Escape($"{report.os} / {report.dotnet}"));
            t.AddRow("system libstdc++", Markup.Escape($"{stdcxx ?? "not found"} (GLIBCXX_3.4.32: {(sysHas is null ? "?" : sysHas.Value ? "yes" : "no")})"));
            t.AddRow("runtime fix", Markup.Escape($"{fixState} ({lib ?? "-"})"));
            AnsiConsole.Write(t);
        }
        return torchError is null ? CliErrors.Ok : CliErrors.Failure;
    }
}
