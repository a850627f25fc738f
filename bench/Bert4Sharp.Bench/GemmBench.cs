namespace Bert4Sharp.Bench;

using System.Diagnostics;
using System.Runtime.InteropServices;
using Microsoft.ML.OnnxRuntime;
using TorchSharp;
using static TorchSharp.torch;
using TensorElementType = Microsoft.ML.OnnxRuntime.Tensors.TensorElementType;

/// <summary>
/// Why the encoder bench is below ONNX Runtime: the 48 dense-layer GEMMs of BERT-base (12 distinct weight sets,
/// so they stream from memory as in the model), fp32, 2 threads, through libtorch (<c>x.matmul(Wᵀ)</c>, the
/// path <c>Layers/Dense.cs</c> takes, which calls the oneMKL linked into libtorch) and through ONNX Runtime's
/// MLAS (each layer a one-node <c>Gemm</c> model with the weight as an initializer, pre-packed at session
/// creation), at M = 1024 (batch 8 × 128), M = 32 (batch 1 × 32) and M = 1 (one decoding step). Prints MKL's version; run with
/// <c>MKL_VERBOSE=1</c> to see its code path (on AMD CPUs: the generic "Intel(R) Architecture processors").
/// </summary>
public static class GemmBench
{
    public static int Run(string[] args)
    {
        int threads = 2, rounds = 7;
        torch.set_num_threads(threads);
        Console.WriteLine($"oneMKL in libtorch: {MklVersion()}");
        var shapes = new (int N, int K)[] { (2304, 768), (768, 768), (3072, 768), (768, 3072) };
        torch.manual_seed(1);
        using var noGrad = torch.no_grad();
        var weights = Enumerable.Range(0, 12).SelectMany(_ => shapes.Select(s => torch.randn(s.N, s.K) * 0.02f)).ToList();
        using var options = new SessionOptions
        {
            GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_ALL, IntraOpNumThreads = threads, InterOpNumThreads = 1, ExecutionMode = ExecutionMode.ORT_SEQUENTIAL,
        };
        options.AddSessionConfigEntry("session.intra_op.allow_spinning", "0");   // 48 sessions: idle pools must sleep
        var sessions = weights.Select(w => new InferenceSession(OnnxGemm.Model(w.shape[0], w.shape[1], w.bytes, default), options)).ToList();
        foreach (long m in new long[] { 1024, 32, 1 })
        {
            var inputs = new Dictionary<long, Tensor> { [768] = torch.randn(m, 768), [3072] = torch.randn(m, 3072) };
            var outputs = weights.Select(w => torch.empty(m, w.shape[0])).ToList();
            double Torch()
            {
                using var scope = torch.NewDisposeScope();
                var sw = Stopwatch.StartNew();
                foreach (var w in weights) inputs[w.shape[1]].matmul(w.t());
                return sw.Elapsed.TotalSeconds;
            }
            unsafe double Ort()
            {
                var sw = Stopwatch.StartNew();
                using var run = new RunOptions();
                for (int i = 0; i < weights.Count; i++)
                {
                    var x = inputs[weights[i].shape[1]];
                    fixed (byte* px = x.bytes)
                    fixed (byte* py = outputs[i].bytes)
                    {
                        using var input = OrtValue.CreateTensorValueWithData(OrtMemoryInfo.DefaultInstance, TensorElementType.Float, x.shape, (IntPtr)px, x.numel() * 4);
                        using var output = OrtValue.CreateTensorValueWithData(OrtMemoryInfo.DefaultInstance, TensorElementType.Float, outputs[i].shape, (IntPtr)py, outputs[i].numel() * 4);
                        sessions[i].Run(run, OnnxGemm.Inputs, [input], OnnxGemm.Outputs, [output]);
                    }
                }
                return sw.Elapsed.TotalSeconds;
            }
            // Interleaved (A B A B …), so drift in this machine's speed hits both alike.
            var (a, b) = Measure.Interleave(Torch, Ort, 1, rounds);
            double t = Measure.Median(a), o = Measure.Median(b), flops = 2.0 * m * weights.Sum(w => w.numel());
            double diff;
            using (var check = inputs[768].matmul(weights[0].t())) diff = (check - outputs[0]).abs().max().item<float>();
            Console.WriteLine($"M = {m,4}: libtorch/MKL {t * 1e3,7:F1} ms ({flops / t / 1e9,5:F1} GFLOP/s)   ONNX Runtime/MLAS {o * 1e3,7:F1} ms ({flops / o / 1e9,5:F1} GFLOP/s)   MLAS {t / o:F2}x faster; max |diff| {diff:E1}");
        }
        foreach (var s in sessions) s.Dispose();
        return 0;
    }

    static string MklVersion()
    {
        string path = Path.Combine(AppContext.BaseDirectory, "runtimes", "linux-x64", "native", "libtorch_cpu.so");
        if (!File.Exists(path) || !NativeLibrary.TryLoad(path, out var lib) || !NativeLibrary.TryGetExport(lib, "MKL_Get_Version_String", out var fn))
            return "(version not available on this platform)";
        var buffer = new byte[256];
        unsafe
        {
            fixed (byte* p = buffer) ((delegate* unmanaged<byte*, int, void>)fn)(p, buffer.Length);
        }
        return System.Text.Encoding.ASCII.GetString(buffer).TrimEnd('\0').Trim();
    }
}

/// <summary>The ONNX model of one dense layer, written as protobuf bytes (onnx.proto: ModelProto, GraphProto, NodeProto…).</summary>
static class OnnxGemm
{
    public static readonly string[] Inputs = ["X"], Outputs = ["Y"];

    public static byte[] Model(long n, long k, ReadOnlySpan<byte> weight, ReadOnlySpan<byte> bias)
    {
        bool hasBias = !bias.IsEmpty;
        var node = new Proto();
        node.String(1, "X"); node.String(1, "W"); if (hasBias) node.String(1, "B");
        node.String(2, "Y"); node.String(3, "dense"); node.String(4, "Gemm");
        var transB = new Proto();
        transB.String(1, "transB"); transB.Varint(3, 1); transB.Varint(20, 2);              // AttributeProto: i = 1, type INT
        node.Message(5, transB);

        var graph = new Proto();
        graph.Message(1, node);
        graph.String(2, "dense");
        graph.Message(5, Initializer("W", [n, k], weight));
        if (hasBias) graph.Message(5, Initializer("B", [n], bias));
        graph.Message(11, Value("X", null, k));
        graph.Message(12, Value("Y", null, n));

        var opset = new Proto();
        opset.String(1, ""); opset.Varint(2, 13);
        var model = new Proto();
        model.Varint(1, 8);                                                                     // ir_version
        model.String(2, "Bert4Sharp");
        model.Message(7, graph);
        model.Message(8, opset);
        return model.ToArray();
    }

    static Proto Initializer(string name, long[] dims, ReadOnlySpan<byte> raw)
    {
        var t = new Proto();
        foreach (long d in dims) t.Varint(1, (ulong)d);
        t.Varint(2, 1);                                                                         // FLOAT
        t.String(8, name);
        t.Bytes(9, raw);
        return t;
    }

    static Proto Value(string name, long? rows, long cols)
    {
        var first = new Proto();
        if (rows is long r) first.Varint(1, (ulong)r); else first.String(2, "M");
        var second = new Proto();
        second.Varint(1, (ulong)cols);
        var shape = new Proto();
        shape.Message(1, first); shape.Message(1, second);
        var tensor = new Proto();
        tensor.Varint(1, 1); tensor.Message(2, shape);
        var type = new Proto();
        type.Message(1, tensor);
        var v = new Proto();
        v.String(1, name); v.Message(2, type);
        return v;
    }

    /// <summary>A protobuf message being written: varint and length-delimited fields.</summary>
    sealed class Proto
    {
        readonly MemoryStream buffer = new();

        void Raw(ulong v)
        {
            while (v >= 0x80) { buffer.WriteByte((byte)(v | 0x80)); v >>= 7; }
            buffer.WriteByte((byte)v);
        }

        public void Varint(int field, ulong value) { Raw((ulong)field << 3); Raw(value); }

        public void Bytes(int field, ReadOnlySpan<byte> value) { Raw(((ulong)field << 3) | 2); Raw((ulong)value.Length); buffer.Write(value); }

        public void String(int field, string value) => Bytes(field, System.Text.Encoding.UTF8.GetBytes(value));

        public void Message(int field, Proto value) => Bytes(field, value.buffer.GetBuffer().AsSpan(0, (int)value.buffer.Length));

        public byte[] ToArray() => buffer.ToArray();
    }
}
