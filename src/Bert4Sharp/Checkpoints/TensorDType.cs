namespace Bert4Sharp.Checkpoints;

using TorchSharp;

/// <summary>Element types that checkpoints store. Names follow safetensors.</summary>
public enum TensorDType
{
    /// <summary>IEEE 754 binary64.</summary>
    F64,
    /// <summary>IEEE 754 binary32.</summary>
    F32,
    /// <summary>IEEE 754 binary16.</summary>
    F16,
    /// <summary>bfloat16 (upper half of a binary32).</summary>
    BF16,
    /// <summary>Signed 64-bit integer.</summary>
    I64,
    /// <summary>Signed 32-bit integer.</summary>
    I32,
    /// <summary>Signed 16-bit integer.</summary>
    I16,
    /// <summary>Signed 8-bit integer.</summary>
    I8,
    /// <summary>Unsigned 8-bit integer.</summary>
    U8,
    /// <summary>One byte per element, 0 or 1.</summary>
    Bool,
    /// <summary>Variable-length strings (TensorFlow only): listed, never read as a tensor.</summary>
    String,
}

/// <summary>Sizes, names and TorchSharp mappings of <see cref="TensorDType"/>.</summary>
public static class TensorDTypeExtensions
{
    /// <summary>Bytes per element (0 for <see cref="TensorDType.String"/>).</summary>
    public static int ElementSize(this TensorDType t) => t switch
    {
        TensorDType.F64 or TensorDType.I64 => 8,
        TensorDType.F32 or TensorDType.I32 => 4,
        TensorDType.F16 or TensorDType.BF16 or TensorDType.I16 => 2,
        TensorDType.I8 or TensorDType.U8 or TensorDType.Bool => 1,
        _ => 0,
    };

    /// <summary>The safetensors header spelling (F32, BF16, BOOL…).</summary>
    public static string SafetensorsName(this TensorDType t) => t == TensorDType.Bool ? "BOOL" : t.ToString().ToUpperInvariant();

    /// <summary>Parses a safetensors dtype string; null when unknown.</summary>
    public static TensorDType? FromSafetensorsName(string s) => s switch
    {
        "F64" => TensorDType.F64, "F32" => TensorDType.F32, "F16" => TensorDType.F16, "BF16" => TensorDType.BF16,
        "I64" => TensorDType.I64, "I32" => TensorDType.I32, "I16" => TensorDType.I16, "I8" => TensorDType.I8,
        "U8" => TensorDType.U8, "BOOL" => TensorDType.Bool,
        _ => null,
    };

    /// <summary>The lower-case name NumPy/PyTorch users expect (float32, int64…).</summary>
    public static string DisplayName(this TensorDType t) => t switch
    {
        TensorDType.F64 => "float64", TensorDType.F32 => "float32", TensorDType.F16 => "float16",
        TensorDType.BF16 => "bfloat16", TensorDType.I64 => "int64", TensorDType.I32 => "int32",
        TensorDType.I16 => "int16", TensorDType.I8 => "int8", TensorDType.U8 => "uint8",
        TensorDType.Bool => "bool", _ => "string",
    };

    /// <summary>The TorchSharp scalar type.</summary>
    /// <exception cref="NotSupportedException">For <see cref="TensorDType.String"/>.</exception>
    public static torch.ScalarType ToScalarType(this TensorDType t) => t switch
    {
        TensorDType.F64 => torch.ScalarType.Float64, TensorDType.F32 => torch.ScalarType.Float32,
        TensorDType.F16 => torch.ScalarType.Float16, TensorDType.BF16 => torch.ScalarType.BFloat16,
        TensorDType.I64 => torch.ScalarType.Int64, TensorDType.I32 => torch.ScalarType.Int32,
        TensorDType.I16 => torch.ScalarType.Int16, TensorDType.I8 => torch.ScalarType.Int8,
        TensorDType.U8 => torch.ScalarType.Byte, TensorDType.Bool => torch.ScalarType.Bool,
        _ => throw new NotSupportedException($"dtype {t} has no tensor representation"),
    };

    /// <summary>The checkpoint dtype for a TorchSharp scalar type.</summary>
    /// <exception cref="NotSupportedException">For complex and quantised types.</exception>
    public static TensorDType FromScalarType(torch.ScalarType t) => t switch
    {
        torch.ScalarType.Float64 => TensorDType.F64, torch.ScalarType.Float32 => TensorDType.F32,
        torch.ScalarType.Float16 => TensorDType.F16, torch.ScalarType.BFloat16 => TensorDType.BF16,
        torch.ScalarType.Int64 => TensorDType.I64, torch.ScalarType.Int32 => TensorDType.I32,
        torch.ScalarType.Int16 => TensorDType.I16, torch.ScalarType.Int8 => TensorDType.I8,
        torch.ScalarType.Byte => TensorDType.U8, torch.ScalarType.Bool => TensorDType.Bool,
        _ => throw new NotSupportedException($"scalar type {t} cannot be stored in a checkpoint"),
    };
}
