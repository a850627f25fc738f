namespace Bert4Sharp.Tasks;

using Bert4Sharp.Models;
using Bert4Sharp.Tokenization;
using TorchSharp;
using static TorchSharp.torch;

/// <summary>Options of the GPLinker heads (<see cref="GpLinkerRelationExtractor"/>, <see cref="GpLinkerEventExtractor"/>).</summary>
public sealed record GpLinkerOptions
{
    /// <summary>Head size d of every pointer (64 in the posts).</summary>
    public int HeadSize { get; init; } = 64;
    /// <summary>Use <see cref="EfficientGlobalPointer"/> instead of <see cref="GlobalPointer"/> for every pointer.</summary>
    public bool Efficient { get; init; }
    /// <summary>Dropout on the encoder output (training only).</summary>
    public double Dropout { get; init; } = 0.1;
    /// <summary>
    /// Decoding keeps at most this many spans per type (relations) or per text (events), the highest scores first, and
    /// at most this many triples per text (the first in subject order): a guard for barely trained models whose score
    /// matrices are half positive (the pairing, the clique search and the output would otherwise take hours and
    /// gigabytes). A trained model stays far below it.
    /// </summary>
    public int MaxSpans { get; init; } = 64;
}

/// <summary>A padded batch with the gold cells of GPLinker's three pointers.</summary>
public sealed class GpLinkerBatch : IDisposable
{
    internal GpLinkerBatch(Tensor ids, Tensor mask, IReadOnlyList<EncodedText> items, List<GlobalPointerSpan>[] nodes,
        List<GlobalPointerSpan>[] heads, List<GlobalPointerSpan>[] tails, int dropped)
    {
        Ids = ids; Mask = mask; Items = items; Nodes = nodes; Heads = heads; Tails = tails; Dropped = dropped;
    }

    /// <summary>Token ids (B, T).</summary>
    public Tensor Ids { get; }
    /// <summary>1 at real tokens (B, T).</summary>
    public Tensor Mask { get; }
    /// <summary>The encodings (tokens and character offsets).</summary>
    public IReadOnlyList<EncodedText> Items { get; }
    /// <summary>Gold span cells, (start, end) inclusive tokens: entities (type 0 subject, 1 object) or event arguments (type = label).</summary>
    public IReadOnlyList<IReadOnlyList<GlobalPointerSpan>> Nodes { get; }
    /// <summary>Gold head links: relations (predicate, subject start, object start); events (0, min start, max start) of two arguments.</summary>
    public IReadOnlyList<IReadOnlyList<GlobalPointerSpan>> Heads { get; }
    /// <summary>Gold tail links: relations (predicate, subject end, object end); events (0, min end, max end) of two arguments.</summary>
    public IReadOnlyList<IReadOnlyList<GlobalPointerSpan>> Tails { get; }
    /// <summary>Gold items left out because a span is off token boundaries or truncated away.</summary>
    public int Dropped { get; }

    /// <inheritdoc/>
    public void Dispose() { Ids.Dispose(); Mask.Dispose(); }
}

/// <summary>
/// GPLinker (Su, kexue.fm/archives/8888 and 8926): an encoder and three pointers — spans (<c>nodes.*</c>: entities or
/// event arguments; RoPE, lower triangle masked), head links and tail links (<c>head.*</c>, <c>tail.*</c>: no RoPE,
/// cell (i, j) pairs two spans' starts, resp. ends). Each is trained with the sparse multilabel cross-entropy
/// (<see cref="GlobalPointerLoss"/>, sparse form, summed over types, mean over the batch), the three summed. The
/// relation and event extractors differ in their labels, gold cells and decoding only.
/// </summary>
public abstract class GpLinkerModel : nn.Module, ITaskHead
{
    static readonly GlobalPointerLossOptions LossOptions = new() { Form = GlobalPointerLossForm.Sparse, Reduction = GlobalPointerReduction.SumTypesMeanBatch };
    // Protected, not private: RegisterComponents finds the fields of the derived type, which include protected inherited ones.
#pragma warning disable IDE0044, CA1051
    /// <summary>The Transformer.</summary>
    protected TransformerModel encoder;
    /// <summary>The span pointer.</summary>
    protected GlobalPointerHead nodes;
    /// <summary>The head-link pointer.</summary>
    protected GlobalPointerHead head;
    /// <summary>The tail-link pointer.</summary>
    protected GlobalPointerHead tail;
#pragma warning restore IDE0044, CA1051

    /// <summary>
    /// Builds the three pointers on <paramref name="encoder"/>: <paramref name="nodeTypes"/> span types,
    /// <paramref name="linkTypes"/> link types, the links' lower triangle masked when <paramref name="linkTrilMask"/>
    /// (event links are (min, max) cells; relation links pair a subject with an object in either order).
    /// </summary>
    private protected GpLinkerModel(string name, TransformerModel encoder, int nodeTypes, int linkTypes, bool linkTrilMask, GpLinkerOptions? options) : base(name)
    {
        this.encoder = TaskHeads.RequireEncoder(encoder);
        Options = options ?? new();
        GlobalPointerHead Pointer(GlobalPointerOptions o) => Options.Efficient ? new EfficientGlobalPointer(encoder.HiddenSize, o) : new GlobalPointer(encoder.HiddenSize, o);
        nodes = Pointer(new GlobalPointerOptions { Types = nodeTypes, HeadSize = Options.HeadSize });
        head = Pointer(new GlobalPointerOptions { Types = linkTypes, HeadSize = Options.HeadSize, Rope = false, TrilMask = linkTrilMask });
        tail = Pointer(new GlobalPointerOptions { Types = linkTypes, HeadSize = Options.HeadSize, Rope = false, TrilMask = linkTrilMask });
        RegisterComponents();
        TaskHeads.Initialize(this, encoder);
    }

    /// <summary>The options.</summary>
    public GpLinkerOptions Options { get; }

    /// <summary>The Transformer.</summary>
    public TransformerModel Encoder => encoder;

    /// <inheritdoc/>
    public IEncoder? Engine { get; set; }

    /// <summary>The three score tensors: spans (B, node types, T, T), head links and tail links (B, link types, T, T).</summary>
    public (Tensor Nodes, Tensor Head, Tensor Tail) Scores(Tensor ids, Tensor mask)
    {
        using var scope = torch.NewDisposeScope();
        using var output = TaskHeads.Encode(this, ids, null, mask);
        var x = output.LastHiddenState;                                                   // (B, T, H)
        if (training && Options.Dropout > 0) x = nn.functional.dropout(x, Options.Dropout, true);
        return (nodes.forward(x, mask).MoveToOuterDisposeScope(), head.forward(x, mask).MoveToOuterDisposeScope(), tail.forward(x, mask).MoveToOuterDisposeScope());
    }

    /// <summary>The training loss: the sparse multilabel cross-entropy of each pointer (summed over types, mean over the batch), summed.</summary>
    public Tensor Loss(GpLinkerBatch batch)
    {
        using var scope = torch.NewDisposeScope();
        var (n, h, t) = Scores(batch.Ids, batch.Mask);
        var loss = GlobalPointerLoss.Compute(n, batch.Nodes, LossOptions) + GlobalPointerLoss.Compute(h, batch.Heads, LossOptions) + GlobalPointerLoss.Compute(t, batch.Tails, LossOptions);
        return loss.MoveToOuterDisposeScope();
    }

    /// <summary>Tokenizes (truncated to <paramref name="maxLength"/>) and pads texts, and gives each text's encoding to <paramref name="gold"/> to fill its cells.</summary>
    private protected GpLinkerBatch Batch(BertWordPieceTokenizer tokenizer, IReadOnlyList<string> texts, int maxLength,
        Func<int, EncodedText, (List<GlobalPointerSpan> Nodes, List<GlobalPointerSpan> Heads, List<GlobalPointerSpan> Tails, int Dropped)> gold)
    {
        var items = texts.Select(t => tokenizer.Encode(t, maxLength: maxLength)).ToList();
        var nodeCells = new List<GlobalPointerSpan>[texts.Count];
        var headCells = new List<GlobalPointerSpan>[texts.Count];
        var tailCells = new List<GlobalPointerSpan>[texts.Count];
        int dropped = 0;
        for (int i = 0; i < texts.Count; i++)
        {
            (nodeCells[i], headCells[i], tailCells[i], int d) = gold(i, items[i]);
            dropped += d;
        }
        var (ids, mask) = SequencePadding.Pad(items.Select(e => e.Ids).ToList(), tokenizer.PaddingId, encoder.Device);
        return new GpLinkerBatch(ids, mask, items, nodeCells, headCells, tailCells, dropped);
    }

    /// <summary>
    /// Runs the texts in batches of similar lengths (evaluation mode, no gradients) and decodes each text with
    /// <paramref name="decode"/> (its index in the batch, its encoding and the three score tensors of the batch);
    /// <paramref name="capped"/> counts the texts whose decoding says the cap cut.
    /// </summary>
    private protected IReadOnlyList<T> PredictBatches<T>(BertWordPieceTokenizer tokenizer, IReadOnlyList<string> texts, int maxLength, int batchSize,
        Func<int, EncodedText, (Tensor Nodes, Tensor Head, Tensor Tail), (T Result, bool Capped)> decode, out int capped)
    {
        bool wasTraining = training;
        eval();
        var result = new T[texts.Count];
        var order = Enumerable.Range(0, texts.Count).OrderBy(i => texts[i].Length).ToArray();   // batches of similar lengths pad less
        capped = 0;
        try
        {
            for (int b = 0; b < texts.Count; b += batchSize)
            {
                using var scope = torch.NewDisposeScope();
                using var g = torch.no_grad();
                var ids = order.Skip(b).Take(batchSize).ToArray();
                using var batch = Batch(tokenizer, [.. ids.Select(k => texts[k])], maxLength, (_, _) => ([], [], [], 0));
                var scores = Scores(batch.Ids, batch.Mask);
                for (int i = 0; i < ids.Length; i++)
                {
                    var (r, cut) = decode(i, batch.Items[i], scores);
                    result[ids[i]] = r;
                    if (cut) capped++;
                }
            }
        }
        finally { train(wasTraining); }
        return result;
    }

    /// <summary>The token span (inclusive end) of a character span, or null when it is off token boundaries or truncated away.</summary>
    internal static (int Start, int End)? TokenSpan(IReadOnlyList<TokenSpan> offsets, int start, int end)
    {
        var m = TokenSpans.FromCharacters(offsets, [new EntitySpan(start, end, "")]);
        return m.Spans.Count == 1 ? (m.Spans[0].Start, m.Spans[0].End - 1) : null;
    }

    /// <summary>A score tensor as row-major float32 on the host.</summary>
    internal static float[] Host(Tensor scores)
    {
        using var cpu = scores.detach().to(ScalarType.Float32, CPU).contiguous();
        return cpu.data<float>().ToArray();
    }
}
