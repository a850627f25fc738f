namespace Bert4Sharp.Cli;

using System.CommandLine;
using Bert4Sharp.Runtime;
using TorchSharp;
using static TorchSharp.torch;

/// <summary><c>--precision fp32|bf16|fp16|auto</c>, the same on every command that runs the TorchSharp engine.</summary>
internal static class PrecisionOption
{
    public static Option<string?> Create(bool training) => new("--precision")
    {
        Description = "fp32 (default), bf16, fp16 or auto: auto takes bf16 only where the hardware computes it natively (b4s doctor shows it), fp32 otherwise" +
            (training ? "; fp16 adds dynamic loss scaling" : "") + "; an explicit 16-bit choice on hardware that emulates it warns and continues",
    };

    /// <summary>The parsed value (fp32 when the option is absent).</summary>
    public static Precision Parse(string? value) => value is null ? Precision.Fp32 : PrecisionPolicy.Parse(value);

    /// <summary>
    /// Resolves the option for inference on <paramref name="model"/>'s device and converts the model; the choice and any
    /// warning go to standard error (standard output may be JSON).
    /// </summary>
    public static void ApplyForInference(string? value, nn.Module model, Device device) =>
        PrecisionPolicy.ApplyForInference(Parse(value), model, device, Console.Error.WriteLine);

    /// <summary>Refuses a 16-bit precision for the ONNX Runtime engine, which runs the graph as exported.</summary>
    public static void RefuseForOnnx(string? value) => PrecisionPolicy.RequireFp32ForOnnx(Parse(value));
}
