namespace Bert4Sharp.Onnx.Export;

using System.Runtime.InteropServices;
using Google.Protobuf;
using global::Onnx;
using TorchSharp;
using static TorchSharp.torch;
using DataType = global::Onnx.TensorProto.Types.DataType;

/// <summary>
/// Writes one ONNX graph node by node: each call adds a node and returns the name of its output, so a model
/// reads as a chain of calls (<c>var y = g.Op("Add", a, b)</c>). Weights become initializers once (a name written
/// twice is reused: ALBERT's shared block). The protobuf types are OnnxSharp's (the ONNX schema compiled for
/// Google.Protobuf).
/// </summary>
internal sealed class GraphWriter
{
    readonly GraphProto graph = new() { Name = "bert4sharp" };
    readonly Dictionary<string, string> written = [];
    readonly Dictionary<string, int> opCounts = [];
    int counter;

    /// <summary>Writes for <paramref name="opset"/> of the default domain.</summary>
    public GraphWriter(int opset) => Opset = opset;

    /// <summary>The ai.onnx opset the nodes are written for.</summary>
    public int Opset { get; }

    /// <summary>Whether any node is in the com.microsoft domain.</summary>
    public bool UsesMicrosoftDomain { get; private set; }

    /// <summary>Nodes written per operator ("com.microsoft." prefixed for contrib ops).</summary>
    public IReadOnlyDictionary<string, int> OpCounts => opCounts;

    /// <summary>A fresh name with <paramref name="hint"/> in it.</summary>
    public string Name(string hint) => $"{hint}_{counter++}";

    /// <summary>Adds a node of the default domain with one output.</summary>
    public string Op(string op, params string[] inputs) => Node(op, inputs, 1, "", [])[0];

    /// <summary>Adds a node with one output and attributes.</summary>
    public string Op(string op, string[] inputs, params (string Name, object Value)[] attributes) => Node(op, inputs, 1, "", attributes)[0];

    /// <summary>Adds a com.microsoft node with one output.</summary>
    public string Contrib(string op, string[] inputs, params (string Name, object Value)[] attributes) => Node(op, inputs, 1, "com.microsoft", attributes)[0];

    /// <summary>
    /// Adds a node with <paramref name="outputs"/> outputs (an empty input name is an omitted optional input)
    /// and returns the output names.
    /// </summary>
    public string[] Node(string op, string[] inputs, int outputs, string domain, (string Name, object Value)[] attributes)
    {
        var node = new NodeProto { OpType = op, Name = Name(op), Domain = domain };
        node.Input.AddRange(inputs);
        var names = Enumerable.Range(0, outputs).Select(_ => Name(op.ToLowerInvariant())).ToArray();
        node.Output.AddRange(names);
        foreach (var (name, value) in attributes) node.Attribute.Add(Attribute(name, value));
        graph.Node.Add(node);
        if (domain == "com.microsoft") UsesMicrosoftDomain = true;
        string key = domain.Length == 0 ? op : $"{domain}.{op}";
        opCounts[key] = opCounts.GetValueOrDefault(key) + 1;
        return names;
    }

    static AttributeProto Attribute(string name, object value)
    {
        var a = new AttributeProto { Name = name };
        switch (value)
        {
            case int i: a.Type = AttributeProto.Types.AttributeType.Int; a.I = i; break;
            case long l: a.Type = AttributeProto.Types.AttributeType.Int; a.I = l; break;
            case float f: a.Type = AttributeProto.Types.AttributeType.Float; a.F = f; break;
            case double d: a.Type = AttributeProto.Types.AttributeType.Float; a.F = (float)d; break;
            case string s: a.Type = AttributeProto.Types.AttributeType.String; a.S = ByteString.CopyFromUtf8(s); break;
            case long[] ls: a.Type = AttributeProto.Types.AttributeType.Ints; a.Ints.AddRange(ls); break;
            case TensorProto t: a.Type = AttributeProto.Types.AttributeType.Tensor; a.T = t; break;
            default: throw new ArgumentException($"attribute {name}: unsupported type {value.GetType().Name}");
        }
        return a;
    }

    /// <summary>
    /// A float32 initializer holding <paramref name="value"/> (any dtype, device), named <paramref name="name"/>;
    /// written once, later calls with the same name return it.
    /// </summary>
    public string Weight(string name, Tensor value)
    {
        if (written.TryGetValue(name, out var existing)) return existing;
        using var scope = torch.NewDisposeScope();
        var t = value.detach().to(ScalarType.Float32).cpu().contiguous();
        return Raw(name, DataType.Float, t.shape, t.bytes.ToArray());                   // one block copy of the storage
    }

    /// <summary>An initializer of raw bytes (int8 weights, scales) with the given element type and shape.</summary>
    public string Raw(string name, DataType type, long[] shape, byte[] bytes)
    {
        graph.Initializer.Add(Initializer(name, type, shape, bytes));
        written[name] = name;
        return name;
    }

    /// <summary>A tensor initializer over <paramref name="bytes"/> (not copied).</summary>
    public static TensorProto Initializer(string name, DataType type, long[] shape, byte[] bytes)
    {
        var tensor = new TensorProto { Name = name, DataType = (int)type, RawData = UnsafeByteOperations.UnsafeWrap(bytes) };
        tensor.Dims.AddRange(shape);
        return tensor;
    }

    /// <summary>An int64 constant (a 1-D tensor, or a scalar when <paramref name="scalar"/>).</summary>
    public string Ints(long[] values, bool scalar = false)
    {
        string key = $"i64:{(scalar ? "s" : "v")}:{string.Join(",", values)}";
        if (written.TryGetValue(key, out var existing)) return existing;
        string name = Name("const_i64");
        var bytes = MemoryMarshal.AsBytes(values.AsSpan()).ToArray();
        Raw(name, DataType.Int64, scalar ? [] : [values.Length], bytes);
        written[key] = name;
        return name;
    }

    /// <summary>A float32 scalar constant.</summary>
    public string Float(float value) => Scalar(value, DataType.Float, BitConverter.GetBytes(value));

    /// <summary>A float64 scalar constant.</summary>
    public string Double(double value) => Scalar(value, DataType.Double, BitConverter.GetBytes(value));

    string Scalar(double value, DataType type, byte[] bytes)
    {
        string key = $"{type}:{BitConverter.DoubleToInt64Bits(value)}";
        if (written.TryGetValue(key, out var existing)) return existing;
        string name = Name(type == DataType.Float ? "const_f32" : "const_f64");
        Raw(name, type, [], bytes);
        written[key] = name;
        return name;
    }

    /// <summary>A float64 1-D constant.</summary>
    public string Doubles(double[] values)
    {
        string name = Name("const_f64v");
        return Raw(name, DataType.Double, [values.Length], MemoryMarshal.AsBytes(values.AsSpan()).ToArray());
    }

    /// <summary>Declares a graph input; a string dimension is symbolic (dynamic), a long is fixed.</summary>
    public void Input(string name, DataType type, params object[] dims) => graph.Input.Add(ValueInfo(name, type, dims));

    /// <summary>Declares a graph output, renaming <paramref name="value"/> to <paramref name="name"/> with an Identity node.</summary>
    public void Output(string name, string value, DataType type, params object[] dims)
    {
        var node = new NodeProto { OpType = "Identity", Name = Name("output"), Domain = "" };
        node.Input.Add(value);
        node.Output.Add(name);
        graph.Node.Add(node);
        graph.Output.Add(ValueInfo(name, type, dims));
    }

    static ValueInfoProto ValueInfo(string name, DataType type, object[] dims)
    {
        var shape = new TensorShapeProto();
        foreach (var d in dims)
            shape.Dim.Add(d is string s ? new TensorShapeProto.Types.Dimension { DimParam = s } : new TensorShapeProto.Types.Dimension { DimValue = Convert.ToInt64(d) });
        return new ValueInfoProto
        {
            Name = name,
            Type = new TypeProto { TensorType = new TypeProto.Types.Tensor { ElemType = (int)type, Shape = shape } },
        };
    }

    /// <summary>The model: the graph with its opsets, producer and metadata.</summary>
    public ModelProto Model(IReadOnlyDictionary<string, string> metadata)
    {
        var model = new ModelProto { IrVersion = 8, ProducerName = "Bert4Sharp", ProducerVersion = typeof(GraphWriter).Assembly.GetName().Version?.ToString() ?? "", Graph = graph };
        model.OpsetImport.Add(new OperatorSetIdProto { Domain = "", Version = Opset });
        if (UsesMicrosoftDomain) model.OpsetImport.Add(new OperatorSetIdProto { Domain = "com.microsoft", Version = 1 });
        foreach (var (k, v) in metadata) model.MetadataProps.Add(new StringStringEntryProto { Key = k, Value = v });
        return model;
    }
}
