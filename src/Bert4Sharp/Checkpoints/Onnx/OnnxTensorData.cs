namespace Bert4Sharp.Checkpoints.Onnx;

using System.Buffers.Binary;

/// <summary>ONNX <c>TensorProto.DataType</c> codes and where each keeps its values when not in <c>raw_data</c>.</summary>
internal static class OnnxDataTypes
{
    /// <summary>TensorProto field numbers of the typed value arrays.</summary>
    public const int FloatData = 4, Int32Data = 5, StringData = 6, Int64Data = 7, DoubleData = 10, UInt64Data = 11;

    /// <summary>The checkpoint dtype for an ONNX code, or null when Bert4Sharp cannot hold it.</summary>
    public static TensorDType? ToDType(long code) => code switch
    {
        1 => TensorDType.F32, 2 => TensorDType.U8, 3 => TensorDType.I8, 5 => TensorDType.I16, 6 => TensorDType.I32,
        7 => TensorDType.I64, 8 => TensorDType.String, 9 => TensorDType.Bool, 10 => TensorDType.F16, 11 => TensorDType.F64,
        16 => TensorDType.BF16,
        _ => null,
    };

    /// <summary>The ONNX spelling of a code, for messages.</summary>
    public static string Name(long code) => code switch
    {
        0 => "UNDEFINED", 1 => "FLOAT", 2 => "UINT8", 3 => "INT8", 4 => "UINT16", 5 => "INT16", 6 => "INT32", 7 => "INT64",
        8 => "STRING", 9 => "BOOL", 10 => "FLOAT16", 11 => "DOUBLE", 12 => "UINT32", 13 => "UINT64", 14 => "COMPLEX64",
        15 => "COMPLEX128", 16 => "BFLOAT16", 17 => "FLOAT8E4M3FN", 18 => "FLOAT8E4M3FNUZ", 19 => "FLOAT8E5M2",
        20 => "FLOAT8E5M2FNUZ", 21 => "UINT4", 22 => "INT4", 23 => "FLOAT4E2M1",
        _ => "unknown",
    };

    /// <summary>The typed field that holds values of <paramref name="dtype"/> (ONNX's <c>onnx.proto</c> comments).</summary>
    public static int FieldFor(TensorDType dtype) => dtype switch
    {
        TensorDType.F32 => FloatData,
        TensorDType.F64 => DoubleData,
        TensorDType.I64 => Int64Data,
        TensorDType.String => StringData,
        _ => Int32Data,   // INT32, INT16, INT8, UINT8, BOOL, and the bit patterns of FLOAT16 and BFLOAT16
    };

    /// <summary>The protobuf field name, for messages.</summary>
    public static string FieldName(int field) => field switch
    {
        FloatData => "float_data", Int32Data => "int32_data", StringData => "string_data", Int64Data => "int64_data",
        DoubleData => "double_data", UInt64Data => "uint64_data", _ => $"field {field}",
    };
}

/// <summary>
/// Values kept in a typed field (<c>float_data</c>, <c>int32_data</c>, <c>int64_data</c>, <c>double_data</c>),
/// possibly in several packed runs or unpacked: decoded at read time from the tensor's message range.
/// </summary>
internal sealed class TypedFieldLocator(ByteSource source, long start, long end, int field, TensorDType dtype) : TensorLocator
{
    public override void ReadInto(TensorEntry entry, Span<byte> destination)
    {
        if (destination.Length != entry.ByteCount)
            throw new ArgumentException($"destination has {destination.Length} bytes, tensor '{entry.Name}' needs {entry.ByteCount}");
        long count = entry.ElementCount, k = 0;
        var r = ProtoStream.Over(source, start, end, entry.Name);
        // float_data and double_data are fixed-width (wire types 5 and 1); the others are varints (wire type 0).
        int scalarWire = field switch { OnnxDataTypes.FloatData => 5, OnnxDataTypes.DoubleData => 1, _ => 0 };
        while (!r.End)
        {
            var (f, w) = r.Tag();
            if (f != field) { r.Skip(w); continue; }
            if (w == 2)
            {
                var (off, len) = r.Bytes();
                var p = r.Range(off, len);
                while (!p.End) Put(destination, ref k, count, One(p, scalarWire), r);
            }
            else if (w == scalarWire) Put(destination, ref k, count, One(r, scalarWire), r);
            else r.Skip(w);
        }
        if (k != count) throw r.Error($"{OnnxDataTypes.FieldName(field)} holds {k} values but the dims call for {count}");
    }

    static ulong One(ProtoStream s, int wire) => wire switch { 5 => s.Fixed32(), 1 => s.Fixed64(), _ => s.Varint() };

    void Put(Span<byte> destination, ref long k, long count, ulong v, ProtoStream r)
    {
        if (k >= count) throw r.Error($"{OnnxDataTypes.FieldName(field)} holds more than the {count} values the dims call for");
        int es = dtype.ElementSize();
        var d = destination.Slice((int)(k * es), es);
        switch (es)
        {
            case 1: d[0] = dtype == TensorDType.Bool ? (byte)(v != 0 ? 1 : 0) : (byte)v; break;
            case 2: BinaryPrimitives.WriteUInt16LittleEndian(d, (ushort)v); break;
            case 4: BinaryPrimitives.WriteUInt32LittleEndian(d, (uint)v); break;
            default: BinaryPrimitives.WriteUInt64LittleEndian(d, v); break;
        }
        k++;
    }
}

/// <summary>
/// A 2-D tensor exposed transposed when its stored bytes are not one contiguous range of a source
/// (typed fields): reads the stored [rows, cols] into a temporary buffer and writes [cols, rows].
/// Contiguous stored bytes use <see cref="StridedLocator"/> instead.
/// </summary>
internal sealed class TransposedLocator(TensorEntry stored) : TensorLocator
{
    public override void ReadInto(TensorEntry entry, Span<byte> destination)
    {
        if (destination.Length != entry.ByteCount)
            throw new ArgumentException($"destination has {destination.Length} bytes, tensor '{entry.Name}' needs {entry.ByteCount}");
        if (stored.Locator is UnavailableLocator) stored.Locator.ReadInto(stored, default);
        var buffer = GC.AllocateUninitializedArray<byte>(checked((int)stored.ByteCount));
        stored.Locator.ReadInto(stored, buffer);
        long rows = stored.Shape[0], cols = stored.Shape[1];
        ShapeMath.Gather(buffer, stored.DType.ElementSize(), [cols, rows], [1, cols], 0, destination);
    }
}
