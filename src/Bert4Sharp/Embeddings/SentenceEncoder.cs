namespace Bert4Sharp.Embeddings;

using Bert4Sharp.Models;
using Bert4Sharp.Tasks;
using Bert4Sharp.Tokenization;
using TorchSharp;
using static TorchSharp.torch;

/// <summary>How <see cref="SentenceEncoder"/> turns texts into vectors.</summary>
public sealed record SentenceEncoderOptions
{
    /// <summary>How token states become one vector (default: the mean over real tokens, what sentence-transformers and MLM-only encoders want).</summary>
    public Pooling Pooling { get; init; } = Pooling.Mean;
    /// <summary>Scale every vector to unit length (after whitening), so a dot product is the cosine.</summary>
    public bool Normalize { get; init; } = true;
    /// <summary>Texts per forward pass. Texts are sorted by length first, so a batch pads little.</summary>
    public int BatchSize { get; init; } = 32;
    /// <summary>
    /// The most padding a batch may add to a text, as a fraction of the batch's longest text (0 to 1): a text shorter
    /// than (1 − MaxPadding) × that length starts a new batch, so the long tail of a corpus is not padded to its
    /// longest member (1: batches of <see cref="BatchSize"/> texts whatever their lengths). The vectors do not depend on it.
    /// </summary>
    public double MaxPadding { get; init; } = 0.2;
    /// <summary>
    /// Tokens per text including [CLS] and [SEP] (null: the model's maximum). Longer texts are cut at the end and
    /// counted in <see cref="EmbeddingResult.Truncated"/>; they are never refused.
    /// </summary>
    public int? MaxLength { get; init; }

    /// <summary>The file beside a model that records how it was trained to be pooled (<see cref="Save"/>, read by <see cref="SentenceEncoder.Load"/>).</summary>
    public const string FileName = "sentence_encoder.json";

    /// <summary>Writes pooling, normalisation and maximum length as <c>sentence_encoder.json</c> in <paramref name="directory"/>.</summary>
    public void Save(string directory) => Bert4Sharp.Checkpoints.AtomicFile.WriteAllText(Path.Combine(directory, FileName),
        System.Text.Json.JsonSerializer.Serialize(new Dictionary<string, object?>
        {
            ["pooling"] = StsBenchmark.PoolingName(Pooling), ["normalize"] = Normalize, ["max_length"] = MaxLength,
        }, new System.Text.Json.JsonSerializerOptions { WriteIndented = true }));

    /// <summary>Reads <c>sentence_encoder.json</c> from <paramref name="directory"/>, or null when there is none.</summary>
    /// <exception cref="InvalidDataException">The file is not valid (file and field named).</exception>
    public static SentenceEncoderOptions? Read(string directory)
    {
        string path = Path.Combine(directory, FileName);
        if (!File.Exists(path)) return null;
        try
        {
            using var doc = System.Text.Json.JsonDocument.Parse(File.ReadAllText(path));
            var root = doc.RootElement;
            var o = new SentenceEncoderOptions();
            if (root.TryGetProperty("pooling", out var p)) o = o with { Pooling = StsBenchmark.ParsePooling(p.GetString() ?? "") };
            if (root.TryGetProperty("normalize", out var n)) o = o with { Normalize = n.GetBoolean() };
            if (root.TryGetProperty("max_length", out var m) && m.ValueKind == System.Text.Json.JsonValueKind.Number) o = o with { MaxLength = m.GetInt32() };
            o.Validate();
            return o;
        }
        catch (Exception e) when (e is System.Text.Json.JsonException or InvalidOperationException or FormatException or ArgumentException)
        {
            throw new InvalidDataException($"{path}: {e.Message} (expected {{\"pooling\": \"mean\", \"normalize\": true, \"max_length\": null}})", e);
        }
    }

    /// <summary>Throws when a value cannot work.</summary>
    /// <exception cref="ArgumentOutOfRangeException">A batch size or maximum length below what one text needs, or a padding fraction outside [0, 1].</exception>
    public void Validate()
    {
        if (BatchSize < 1) throw new ArgumentOutOfRangeException(nameof(BatchSize), BatchSize, "the batch size must be at least 1");
        if (!(MaxPadding is >= 0 and <= 1)) throw new ArgumentOutOfRangeException(nameof(MaxPadding), MaxPadding, "the padding fraction must be between 0 (only equal lengths share a batch) and 1 (batches by count alone)");
        if (MaxLength is < 3) throw new ArgumentOutOfRangeException(nameof(MaxLength), MaxLength, "the maximum length must leave room for [CLS], one token and [SEP] (at least 3)");
    }
}

/// <summary>Vectors of <see cref="SentenceEncoder.Embed"/>, in the order of the texts.</summary>
/// <param name="Vectors">One vector per text (<see cref="SentenceEncoder.Dimensions"/> values).</param>
/// <param name="TokenCounts">Tokens each text was encoded with (after truncation, [CLS] and [SEP] included).</param>
/// <param name="Truncated">How many texts were longer than the maximum length and cut.</param>
public sealed record EmbeddingResult(float[][] Vectors, int[] TokenCounts, int Truncated);

/// <summary>
/// Sentence vectors from any encoder behind <see cref="IEncoder"/> (the TorchSharp model or ONNX Runtime): WordPiece
/// tokens → hidden states → pooling → optional BERT-whitening → optional unit length. Texts are tokenised once, sorted
/// by token count and encoded in batches that pad only to their longest member (and little: see
/// <see cref="SentenceEncoderOptions.MaxPadding"/>), then returned in input order.
/// </summary>
/// <remarks>
/// Empty and whitespace-only texts are refused (their vector would be the [CLS] [SEP] pair's, the same for every empty
/// input, which a search index should never hold silently). Texts longer than the maximum length are cut at the end and
/// counted.
/// </remarks>
public sealed class SentenceEncoder
{
    /// <summary>Wraps an encoder and its tokenizer.</summary>
    /// <param name="encoder">Any engine.</param>
    /// <param name="tokenizer">The encoder's WordPiece tokenizer.</param>
    /// <param name="options">Pooling, normalisation, batching, truncation.</param>
    /// <param name="whitening">A fitted whitening of this encoder's pooled vectors, or null.</param>
    /// <exception cref="ArgumentException">The whitening was fitted on vectors of another width.</exception>
    public SentenceEncoder(IEncoder encoder, BertWordPieceTokenizer tokenizer, SentenceEncoderOptions? options = null, Whitening? whitening = null)
    {
        Encoder = encoder ?? throw new ArgumentNullException(nameof(encoder));
        Tokenizer = tokenizer ?? throw new ArgumentNullException(nameof(tokenizer));
        Options = options ?? new();
        Options.Validate();
        if (whitening is not null && whitening.InputDimensions != encoder.HiddenSize)
            throw new ArgumentException($"the whitening was fitted on {whitening.InputDimensions}-dimensional vectors but this encoder's hidden size is {encoder.HiddenSize}: fit it again on this model");
        Whitening = whitening;
    }

    /// <summary>
    /// Loads a model directory through <see cref="AutoModel"/> (TorchSharp engine); a <c>whitening.safetensors</c> in the
    /// directory (<see cref="Whitening.FileName"/>) is applied unless <paramref name="whitening"/> is false, and without
    /// <paramref name="options"/> the directory's <c>sentence_encoder.json</c> (<see cref="SentenceEncoderOptions.FileName"/>)
    /// says how to pool, else the defaults.
    /// </summary>
    /// <exception cref="FileNotFoundException">No vocab.txt (sentence vectors need the WordPiece tokenizer).</exception>
    public static SentenceEncoder Load(string path, SentenceEncoderOptions? options = null, bool whitening = true)
    {
        var loaded = AutoModel.Load(path, new AutoModelOptions { Application = Application.Encoder });
        loaded.Model.eval();
        var tokenizer = loaded.WordPiece ?? throw new FileNotFoundException($"{path}: no vocab.txt; sentence vectors need the model's WordPiece vocabulary");
        return FromDirectory(loaded.Model, tokenizer, Directory.Exists(path) ? path : Path.GetDirectoryName(Path.GetFullPath(path))!, options, whitening);
    }

    /// <summary>
    /// A sentence encoder over an engine already loaded from <paramref name="directory"/>: <paramref name="options"/> or the
    /// directory's <c>sentence_encoder.json</c>, and its <c>whitening.safetensors</c> unless <paramref name="whitening"/> is false.
    /// </summary>
    public static SentenceEncoder FromDirectory(IEncoder encoder, BertWordPieceTokenizer tokenizer, string directory, SentenceEncoderOptions? options = null, bool whitening = true)
    {
        string file = Path.Combine(directory, Whitening.FileName);
        return new SentenceEncoder(encoder, tokenizer, options ?? SentenceEncoderOptions.Read(directory),
            whitening && File.Exists(file) ? Whitening.Load(file, encoder.HiddenSize) : null);
    }

    /// <summary>The encoder.</summary>
    public IEncoder Encoder { get; }
    /// <summary>The tokenizer.</summary>
    public BertWordPieceTokenizer Tokenizer { get; }
    /// <summary>The options.</summary>
    public SentenceEncoderOptions Options { get; }
    /// <summary>The whitening applied after pooling, or null.</summary>
    public Whitening? Whitening { get; }
    /// <summary>Values per vector: the whitening's kept dimensions, else the encoder's hidden size.</summary>
    public int Dimensions => Whitening?.Dimensions ?? Encoder.HiddenSize;
    /// <summary>Tokens per text this encoder keeps.</summary>
    public int MaxLength => (int)Math.Min(Options.MaxLength ?? long.MaxValue, Math.Min(Encoder.MaxLength, int.MaxValue));

    /// <summary>The same encoder with other options (whitening kept).</summary>
    public SentenceEncoder With(SentenceEncoderOptions options) => new(Encoder, Tokenizer, options, Whitening);

    /// <summary>The same encoder with another whitening (null: none).</summary>
    public SentenceEncoder With(Whitening? whitening) => new(Encoder, Tokenizer, Options, whitening);

    /// <summary>Vectors of <paramref name="texts"/>, in order.</summary>
    /// <param name="texts">Non-empty texts.</param>
    /// <param name="progress">Receives the number of texts done after each batch.</param>
    /// <param name="cancellation">Checked between batches.</param>
    /// <exception cref="ArgumentException">No texts, or an empty / whitespace-only text (its index named).</exception>
    public EmbeddingResult Embed(IReadOnlyList<string> texts, IProgress<int>? progress = null, CancellationToken cancellation = default)
    {
        var vectors = new float[texts?.Count ?? 0][];
        var (counts, truncated) = ForEachBatch(texts!, Pool.NeedsHiddenStates(Options.Pooling), (rows, output, mask) =>
        {
            var values = Finish(Pool.Apply(Options.Pooling, output, mask)).cpu().contiguous().data<float>().ToArray();   // (B·D)
            int d = Dimensions;
            for (int r = 0; r < rows.Length; r++) vectors[rows[r]] = values.AsSpan(r * d, d).ToArray();
        }, progress, cancellation);
        return new EmbeddingResult(vectors, counts, truncated);
    }

    /// <summary>
    /// Pooled vectors for several poolings from one forward pass per batch, before whitening and normalisation
    /// (what fitting a whitening or comparing poolings needs).
    /// </summary>
    /// <exception cref="ArgumentException">No texts, an empty text, or no pooling.</exception>
    public IReadOnlyDictionary<Pooling, float[][]> EmbedPooled(IReadOnlyList<string> texts, IReadOnlyList<Pooling> poolings,
        IProgress<int>? progress = null, CancellationToken cancellation = default)
    {
        if (poolings.Count == 0) throw new ArgumentException("give at least one pooling", nameof(poolings));
        var result = poolings.Distinct().ToDictionary(p => p, _ => new float[texts?.Count ?? 0][]);
        ForEachBatch(texts!, result.Keys.Any(Pool.NeedsHiddenStates), (rows, output, mask) =>
        {
            foreach (var (pooling, vectors) in result)
            {
                var values = Pool.Apply(pooling, output, mask).cpu().contiguous().data<float>().ToArray();              // (B·H)
                int h = Encoder.HiddenSize;
                for (int r = 0; r < rows.Length; r++) vectors[rows[r]] = values.AsSpan(r * h, h).ToArray();
            }
        }, progress, cancellation);
        return result;
    }

    /// <summary>
    /// The final hidden state of every token of every text, [CLS], [SEP] and padding left out: the word vectors that
    /// <see cref="WordMoverDistance"/> compares. A text whose only tokens are special gets no vectors.
    /// </summary>
    public float[][][] TokenVectors(IReadOnlyList<string> texts, IProgress<int>? progress = null, CancellationToken cancellation = default)
    {
        var vectors = new float[texts?.Count ?? 0][][];
        ForEachBatch(texts!, false, (rows, output, mask) =>
        {
            var h = output.LastHiddenState.cpu().contiguous();                                                         // (B, T, H)
            var lengths = mask.sum(1).cpu().data<long>().ToArray();
            var values = h.data<float>().ToArray();
            long t = h.shape[1], d = h.shape[2];
            for (int r = 0; r < rows.Length; r++)
                vectors[rows[r]] = [.. Enumerable.Range(1, (int)Math.Max(0, lengths[r] - 2))                               // positions 1 … n−2: no [CLS], no [SEP]
                    .Select(i => values.AsSpan((int)((r * t + i) * d), (int)d).ToArray())];
        }, progress, cancellation);
        return vectors;
    }

    /// <summary>
    /// Tokenises (cutting at <see cref="MaxLength"/>), sorts by token count (longest first: the memory peak shows at once
    /// and every batch pads little), and calls <paramref name="use"/> with each batch's input rows, output and mask
    /// inside a dispose scope with gradients off.
    /// </summary>
    (int[] Counts, int Truncated) ForEachBatch(IReadOnlyList<string> texts, bool hiddenStates, Action<int[], ModelOutput, Tensor> use,
        IProgress<int>? progress, CancellationToken cancellation)
    {
        ArgumentNullException.ThrowIfNull(texts);
        if (texts.Count == 0) throw new ArgumentException("no texts to embed", nameof(texts));
        int limit = MaxLength, truncated = 0;
        var encoded = new EncodedText[texts.Count];
        for (int i = 0; i < texts.Count; i++)
        {
            if (string.IsNullOrWhiteSpace(texts[i]))
                throw new ArgumentException($"text {i} is {(texts[i] is null ? "null" : "empty")}: every input needs at least one non-space character", nameof(texts));
            encoded[i] = Tokenizer.Encode(texts[i]);
            if (encoded[i].Count > limit) { truncated++; encoded[i] = Tokenizer.Encode(texts[i], null, limit); }
        }
        var order = Enumerable.Range(0, texts.Count).OrderByDescending(i => encoded[i].Count).ThenBy(i => i).ToArray();
        int done = 0;
        double shortest = 1 - Options.MaxPadding;
        for (int b = 0, end; b < order.Length; b = end)
        {
            cancellation.ThrowIfCancellationRequested();
            // Up to BatchSize texts, none padded by more than MaxPadding of the batch's longest (its first).
            for (end = b + 1; end < order.Length && end - b < Options.BatchSize && encoded[order[end]].Count >= shortest * encoded[order[b]].Count; end++) { }
            var rows = order[b..end];
            using var scope = torch.NewDisposeScope();
            using var noGrad = torch.no_grad();
            var (output, mask) = Run(rows.Select(i => encoded[i]).ToList(), hiddenStates);
            using (output) use(rows, output, mask);
            done += rows.Length;
            progress?.Report(done);
        }
        return (encoded.Select(e => e.Count).ToArray(), truncated);
    }

    /// <summary>Vectors of <paramref name="texts"/> (see <see cref="Embed"/>).</summary>
    public float[][] Encode(IReadOnlyList<string> texts) => Embed(texts).Vectors;

    /// <summary>
    /// Pooled vectors (B, H) of already tokenised texts, padded here, before whitening and normalisation: the
    /// differentiable path training objectives use (call it in training mode with gradients on).
    /// </summary>
    public Tensor Forward(IReadOnlyList<EncodedText> texts)
    {
        using var scope = torch.NewDisposeScope();
        var (output, mask) = Run(texts, Pool.NeedsHiddenStates(Options.Pooling));
        using (output) return Pool.Apply(Options.Pooling, output, mask).MoveToOuterDisposeScope();                       // (B, H)
    }

    /// <summary>Pads tokenised texts into (B, T) ids, segments and mask and runs the encoder.</summary>
    (ModelOutput Output, Tensor Mask) Run(IReadOnlyList<EncodedText> texts, bool hiddenStates)
    {
        var (ids, mask) = SequencePadding.Pad(texts.Select(e => e.Ids).ToList(), Tokenizer.PaddingId, Encoder.Device);   // (B, T)
        var segments = SequencePadding.PadValues(texts.Select(e => e.SegmentIds).ToList(), 0, Encoder.Device);
        return (Encoder.Encode(ids, segments, mask, hiddenStates), mask);
    }

    /// <summary>Whitening (when fitted) then unit length (when asked): pooled (B, H) → (B, <see cref="Dimensions"/>).</summary>
    public Tensor Finish(Tensor pooled)
    {
        using var scope = torch.NewDisposeScope();
        var v = Whitening?.Apply(pooled) ?? pooled;
        if (Options.Normalize) v = nn.functional.normalize(v, p: 2, dim: -1);
        return v.MoveToOuterDisposeScope();
    }

    /// <summary>Cosine similarity of two vectors (0 when either is zero).</summary>
    /// <exception cref="ArgumentException">Different lengths.</exception>
    public static double Cosine(ReadOnlySpan<float> a, ReadOnlySpan<float> b)
    {
        if (a.Length != b.Length) throw new ArgumentException($"vectors of different lengths ({a.Length} and {b.Length})");
        double dot = 0, na = 0, nb = 0;
        for (int i = 0; i < a.Length; i++) { dot += a[i] * (double)b[i]; na += a[i] * (double)a[i]; nb += b[i] * (double)b[i]; }
        return na == 0 || nb == 0 ? 0 : dot / Math.Sqrt(na * nb);
    }
}
