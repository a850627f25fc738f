namespace Bert4Sharp.Runtime;

using System.Collections.Concurrent;
using TorchSharp;
using static TorchSharp.torch;

/// <summary>The floating-point precision a model computes in (<c>--precision</c>).</summary>
public enum Precision
{
    /// <summary>bf16 where the hardware computes it natively, fp16 with loss scaling on GPUs with fp16 but not bf16 tensor cores, fp32 otherwise.</summary>
    Auto,
    /// <summary>Single precision everywhere.</summary>
    Fp32,
    /// <summary>bfloat16 weights and activations (fp32's range, 8 bits of mantissa); the sensitive operations stay in fp32.</summary>
    Bf16,
    /// <summary>float16 weights and activations (10 bits of mantissa, range ±65,504); training adds dynamic loss scaling.</summary>
    Fp16,
}

/// <summary>
/// What a run will compute in, and why: the outcome of <see cref="PrecisionPolicy.Resolve(Precision, DeviceType, HardwareSupport, bool, int)"/>.
/// </summary>
/// <param name="Requested">What the user asked for.</param>
/// <param name="Chosen">What runs (never <see cref="Precision.Auto"/>).</param>
/// <param name="Native">Whether the hardware computes <paramref name="Chosen"/> natively (fp32 always is).</param>
/// <param name="LossScaling">Whether training must scale the loss (fp16: gradients below 6e-8 would flush to zero).</param>
/// <param name="Reason">One sentence for the log: the choice and the hardware fact behind it.</param>
/// <param name="Warning">Set when an explicit request takes a slow or unsupported path; the run continues.</param>
public sealed record PrecisionPlan(Precision Requested, Precision Chosen, bool Native, bool LossScaling, string Reason, string? Warning)
{
    /// <summary>The tensor type weights and activations are stored in.</summary>
    public ScalarType ComputeType => PrecisionPolicy.ScalarTypeOf(Chosen);

    /// <summary>Whether the model runs in a 16-bit type.</summary>
    public bool IsHalf => Chosen is Precision.Bf16 or Precision.Fp16;

    /// <summary>Short name: fp32, bf16, fp16.</summary>
    public string Name => PrecisionPolicy.NameOf(Chosen);

    /// <summary>
    /// Converts a model's parameters and buffers to <see cref="ComputeType"/> (nothing for fp32). Do it before building
    /// the optimizer: TorchSharp replaces the parameter objects, and the optimizer keeps fp32 master copies of half ones.
    /// </summary>
    public T Apply<T>(T model) where T : nn.Module
    {
        if (IsHalf) model.to(ComputeType);
        return model;
    }
}

/// <summary>
/// The precision policy (docs/training.md, "Mixed precision"): <see cref="Precision.Auto"/> picks a 16-bit type only
/// where the hardware has it natively; an explicit request is honoured but warned about once per process when the
/// hardware emulates it. Measured on AVX2-only AMD EPYCs: a bf16 training step 28-42× slower than fp32; on an EPYC
/// with AVX512_BF16, 1.67× faster (docs/training.md).
/// </summary>
public static class PrecisionPolicy
{
    static readonly ConcurrentDictionary<string, bool> warned = new();

    /// <summary>Parses <c>fp32|bf16|fp16|auto</c> (also float32, bfloat16, float16, half).</summary>
    /// <exception cref="ArgumentException">Anything else, with the accepted values.</exception>
    public static Precision Parse(string text) => text.Trim().ToLowerInvariant() switch
    {
        "auto" => Precision.Auto,
        "fp32" or "float32" or "float" => Precision.Fp32,
        "bf16" or "bfloat16" => Precision.Bf16,
        "fp16" or "float16" or "half" => Precision.Fp16,
        _ => throw new ArgumentException($"precision '{text}' is unknown; use fp32, bf16, fp16 or auto"),
    };

    /// <summary>fp32, bf16, fp16 or auto.</summary>
    public static string NameOf(Precision p) => p switch
    {
        Precision.Fp32 => "fp32", Precision.Bf16 => "bf16", Precision.Fp16 => "fp16", _ => "auto",
    };

    /// <summary>The tensor type of a concrete precision.</summary>
    /// <exception cref="ArgumentException"><see cref="Precision.Auto"/>: resolve it first.</exception>
    public static ScalarType ScalarTypeOf(Precision p) => p switch
    {
        Precision.Fp32 => ScalarType.Float32,
        Precision.Bf16 => ScalarType.BFloat16,
        Precision.Fp16 => ScalarType.Float16,
        _ => throw new ArgumentException("auto is not a tensor type: resolve it with PrecisionPolicy.Resolve first"),
    };

    /// <summary>Resolves <paramref name="requested"/> for a device on this machine (<see cref="HardwareSupport.Current"/>).</summary>
    public static PrecisionPlan Resolve(Precision requested, Device device, bool training) =>
        Resolve(requested, device.type, HardwareSupport.Current, training, Math.Max(0, (int)device.index));

    /// <summary>
    /// Resolves <paramref name="requested"/> from the hardware record alone (tests pass a made-up one).
    /// </summary>
    /// <param name="requested">The user's choice.</param>
    /// <param name="device">CPU or CUDA.</param>
    /// <param name="hardware">What the machine has.</param>
    /// <param name="training">Training adds loss scaling to fp16.</param>
    /// <param name="gpuIndex">Which GPU, for CUDA.</param>
    public static PrecisionPlan Resolve(Precision requested, DeviceType device, HardwareSupport hardware, bool training, int gpuIndex = 0) =>
        device == DeviceType.CUDA ? ResolveGpu(requested, hardware, training, gpuIndex) : ResolveCpu(requested, hardware, training);

    static PrecisionPlan ResolveCpu(Precision requested, HardwareSupport hw, bool training)
    {
        string cpu = hw.CpuModel;
        switch (requested)
        {
            case Precision.Fp32:
                return new(requested, Precision.Fp32, true, false, "fp32 as asked", null);
            case Precision.Auto:
                return hw.CpuNativeBf16
                    ? new(requested, Precision.Bf16, true, false, $"auto chose bf16: this CPU has native bf16 ({Flags(hw, "avx512_bf16", "amx_bf16")})", null)
                    : new(requested, Precision.Fp32, true, false, $"auto chose fp32: this CPU ({cpu}) has no native bf16 (no avx512_bf16 or amx_bf16 flag), and emulated bf16 is slower than fp32", null);
            case Precision.Bf16:
                return hw.CpuNativeBf16
                    ? new(requested, Precision.Bf16, true, false, $"bf16 as asked, native on this CPU ({Flags(hw, "avx512_bf16", "amx_bf16")})", null)
                    : new(requested, Precision.Bf16, false, false, "bf16 as asked, emulated on this CPU",
                        $"this CPU ({cpu}) has no native bf16 (no avx512_bf16 or amx_bf16 flag): libtorch emulates bf16 arithmetic, measured 28-42× slower " +
                        "than fp32 for a training step and 8× for inference on AVX2-only AMD EPYCs (500 → 21,090 ms per step of a 4 × 256 model). Continuing in bf16; " +
                        "--precision fp32 (or auto) runs at full speed here.");
            default:
                return hw.CpuNativeFp16
                    ? new(requested, Precision.Fp16, true, training, $"fp16 as asked, native on this CPU ({Flags(hw, "avx512_fp16", "amx_fp16")})" + (training ? ", with dynamic loss scaling" : ""), null)
                    : new(requested, Precision.Fp16, false, training, "fp16 as asked, emulated on this CPU" + (training ? ", with dynamic loss scaling" : ""),
                        $"this CPU ({cpu}) has no native fp16 arithmetic (no avx512_fp16 or amx_fp16 flag): libtorch emulates it, measured 40× slower " +
                        "than fp32 for a training step and 7× for inference on an AVX2-only AMD EPYC, and fp16's range needs loss scaling that bf16 and fp32 do not. " +
                        "Continuing in fp16; --precision fp32 (or auto) runs at full speed here.");
        }
    }

    static PrecisionPlan ResolveGpu(Precision requested, HardwareSupport hw, bool training, int index)
    {
        var gpu = index < hw.Gpus.Count ? hw.Gpus[index] : null;
        string name = gpu is null ? $"cuda:{index}" : $"{gpu.Name}, compute {gpu.ComputeCapability?.ToString(2) ?? "unknown"}";
        string scaling = training ? ", with dynamic loss scaling" : "";
        switch (requested)
        {
            case Precision.Fp32:
                return new(requested, Precision.Fp32, true, false, "fp32 as asked", null);
            case Precision.Auto:
                if (gpu?.NativeBf16 == true) return new(requested, Precision.Bf16, true, false, $"auto chose bf16: {name} has bf16 tensor cores (compute ≥ 8.0)", null);
                if (gpu?.NativeFp16 == true) return new(requested, Precision.Fp16, true, training, $"auto chose fp16{scaling}: {name} has fp16 but not bf16 tensor cores (7.0 ≤ compute < 8.0)", null);
                return new(requested, Precision.Fp32, true, false, $"auto chose fp32: {name} has no 16-bit tensor cores (or its compute capability is unknown)", null);
            case Precision.Bf16:
                return gpu?.NativeBf16 == true
                    ? new(requested, Precision.Bf16, true, false, $"bf16 as asked, native on {name}", null)
                    : new(requested, Precision.Bf16, false, false, $"bf16 as asked on {name}",
                        $"{name} has no bf16 tensor cores (they start at compute capability 8.0): bf16 matmuls there run without them, far slower. Continuing in bf16; --precision auto picks fp16 with loss scaling on this GPU.");
            default:
                return gpu?.NativeFp16 == true
                    ? new(requested, Precision.Fp16, true, training, $"fp16 as asked{scaling}, native on {name}", null)
                    : new(requested, Precision.Fp16, false, training, $"fp16 as asked{scaling} on {name}",
                        $"{name} has no fp16 tensor cores (they start at compute capability 7.0): expect no speed-up over fp32. Continuing in fp16.");
        }
    }

    static string Flags(HardwareSupport hw, params string[] flags) => string.Join(", ", flags.Where(hw.CpuFlags.Contains));

    /// <summary>
    /// Writes the plan's reason, and its warning the first time this process sees that warning (a sweep of runs
    /// warns once, not per run).
    /// </summary>
    public static void Report(PrecisionPlan plan, Action<string> log)
    {
        log($"precision: {plan.Name} — {plan.Reason}");
        if (plan.Warning is { } w && warned.TryAdd(w, true)) log($"warning: {w}");
    }

    /// <summary>
    /// Resolves <paramref name="requested"/> for inference on <paramref name="device"/>, converts <paramref name="model"/>,
    /// and writes the choice (when it is not fp32) and any warning to <paramref name="log"/>.
    /// </summary>
    public static PrecisionPlan ApplyForInference(Precision requested, nn.Module model, Device device, Action<string> log)
    {
        var plan = Resolve(requested, device, training: false);
        if (plan.Chosen != Precision.Fp32 || plan.Warning is not null) Report(plan, log);
        plan.Apply(model);
        return plan;
    }

    /// <summary>Refuses a 16-bit precision for the ONNX Runtime engine, which runs a graph as it was exported.</summary>
    /// <exception cref="ArgumentException">Anything but fp32.</exception>
    public static void RequireFp32ForOnnx(Precision requested)
    {
        if (requested != Precision.Fp32)
            throw new ArgumentException("--precision applies to the torch engine; the onnx engine runs the graph as exported (int8: b4s export onnx --int8)");
    }

    /// <summary>
    /// A tensor in fp32 if it is bf16 or fp16, else itself: the one helper every fp32-only operation (softmax, norms,
    /// losses, heads) uses to widen its input.
    /// </summary>
    public static Tensor Widen(Tensor x) => x.dtype is ScalarType.BFloat16 or ScalarType.Float16 ? x.to(ScalarType.Float32) : x;

    /// <summary>
    /// <paramref name="x"/> in fp32 as a new handle (widened if 16-bit, else an alias), so the caller may dispose
    /// <paramref name="x"/>: how logits leave a model at the decoding and fill-mask seams.
    /// </summary>
    public static Tensor Fp32Handle(Tensor x) => IsHalf(x.dtype) ? x.to(ScalarType.Float32) : x.alias();

    /// <summary>
    /// What a model computes in, read from its parameters: the 16-bit type if any floating parameter has one (a task
    /// model keeps its head in fp32 around a 16-bit encoder), else fp32.
    /// </summary>
    public static Precision Of(nn.Module model)
    {
        foreach (var p in model.parameters())
        {
            if (p.dtype == ScalarType.BFloat16) return Precision.Bf16;
            if (p.dtype == ScalarType.Float16) return Precision.Fp16;
        }
        return Precision.Fp32;
    }

    /// <summary>Whether a tensor type is a 16-bit float.</summary>
    public static bool IsHalf(ScalarType t) => t is ScalarType.BFloat16 or ScalarType.Float16;
}
