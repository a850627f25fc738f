namespace Bert4Sharp.Tasks;

using Bert4Sharp.Models;
using Bert4Sharp.Tokenization;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

/// <summary>Which head an <see cref="EntityRecognizer"/> puts on the encoder.</summary>
public enum EntityHead
{
    /// <summary>Per-token tags (BIO/BIOES) + a CRF (bert4keras's NER example).</summary>
    Crf,
    /// <summary>GlobalPointer: a score per (type, start, end) (kexue.fm/archives/8373).</summary>
    GlobalPointer,
    /// <summary>EfficientGlobalPointer: shared qk + per-type biases (kexue.fm/archives/8877).</summary>
    EfficientGlobalPointer,
}

/// <summary>Options of <see cref="EntityRecognizer"/>.</summary>
public sealed record EntityRecognizerOptions
{
    /// <summary>The head.</summary>
    public EntityHead Head { get; init; } = EntityHead.GlobalPointer;
    /// <summary>Tag scheme of the CRF head.</summary>
    public TagScheme Scheme { get; init; } = TagScheme.Bio;
    /// <summary>Learning-rate multiplier of the CRF transitions (1000 in bert4keras's NER example: the transitions learn far faster than the encoder).</summary>
    public double CrfLearningRateMultiplier { get; init; } = 1000;
    /// <summary>Head size of the pointer heads (64 in the posts).</summary>
    public int PointerHeadSize { get; init; } = 64;
    /// <summary>Dropout on the encoder output (training only).</summary>
    public double Dropout { get; init; } = 0.1;
}

/// <summary>A text and its entities as character spans [Start, End) of <see cref="Text"/>.</summary>
/// <param name="Text">The text.</param>
/// <param name="Entities">Its entities.</param>
public sealed record EntityExample(string Text, IReadOnlyList<EntitySpan> Entities);

/// <summary>A padded batch of <see cref="EntityExample"/>s with gold token spans; <see cref="Dropped"/> counts gold spans that do not align with tokens.</summary>
public sealed class EntityBatch : IDisposable
{
    internal EntityBatch(Tensor ids, Tensor mask, IReadOnlyList<EncodedText> items, IReadOnlyList<IReadOnlyList<EntitySpan>> gold, int dropped)
    {
        Ids = ids;
        Mask = mask;
        Items = items;
        Gold = gold;
        Dropped = dropped;
    }

    /// <summary>Token ids (B, T).</summary>
    public Tensor Ids { get; }
    /// <summary>1 at real tokens (B, T).</summary>
    public Tensor Mask { get; }
    /// <summary>The encodings (tokens and character offsets).</summary>
    public IReadOnlyList<EncodedText> Items { get; }
    /// <summary>Gold token spans [Start, End) per text.</summary>
    public IReadOnlyList<IReadOnlyList<EntitySpan>> Gold { get; }
    /// <summary>Gold spans left out because they do not fall on token boundaries or were truncated away.</summary>
    public int Dropped { get; }

    /// <inheritdoc/>
    public void Dispose() { Ids.Dispose(); Mask.Dispose(); }
}

/// <summary>
/// Named-entity recognition: an encoder plus a CRF or a (Efficient)GlobalPointer head, trained on character spans
/// and predicting character spans of the original text (through the tokenizer's offsets). Parameters
/// <c>encoder.*</c> (as <see cref="TransformerModel"/>) and the head's.
/// </summary>
public sealed class EntityRecognizer : nn.Module, ITaskHead
{
    readonly EntityRecognizerOptions options;
    readonly TagSet? tags;
#pragma warning disable IDE0044
    TransformerModel encoder;
    Linear? emissions;
    ConditionalRandomField? crf;
    GlobalPointerHead? pointer;
#pragma warning restore IDE0044

    /// <summary>Puts a new head for <paramref name="types"/> on <paramref name="encoder"/> (built with <see cref="Application.Encoder"/>).</summary>
    public EntityRecognizer(TransformerModel encoder, IReadOnlyList<string> types, EntityRecognizerOptions? options = null) : base("entity_recognizer")
    {
        if (encoder.Application != Application.Encoder) throw new ArgumentException($"the encoder must be built with Application.Encoder, got {encoder.Application}");
        if (types.Count == 0) throw new ArgumentException("an entity recognizer needs at least one entity type", nameof(types));
        this.options = options ??= new();
        this.encoder = encoder;
        Types = [.. types];
        int h = encoder.HiddenSize;
        if (options.Head == EntityHead.Crf)
        {
            tags = new TagSet(options.Scheme, types);
            emissions = nn.Linear(h, tags.Count);
            crf = new ConditionalRandomField(tags.Count, options.CrfLearningRateMultiplier, tags.Constraints());
        }
        else
        {
            var po = new GlobalPointerOptions { Types = types.Count, HeadSize = options.PointerHeadSize };
            pointer = options.Head == EntityHead.GlobalPointer ? new GlobalPointer(h, po) : new EfficientGlobalPointer(h, po);
        }
        RegisterComponents();
        // The emission layer and the pointers start as BERT's dense layers do, N(0, initializer_range) and zero biases
        // (bert4keras uses Keras's Glorot; on these encoders the pointers trained unstably from Glorot at lr 3e-3 — an
        // EfficientGlobalPointer's loss rose again after 300 steps — and the CLUENER results were measured with this);
        // the CRF keeps its own transitions.
        using (torch.no_grad())
            foreach (var (name, p) in named_parameters().Where(p => !p.name.StartsWith("encoder.", StringComparison.Ordinal) && !p.name.StartsWith("crf.", StringComparison.Ordinal)))
                if (p.dim() >= 2) p.normal_(0, encoder.Config.InitializerRange); else p.zero_();
        this.to(encoder.Device);                                                           // the head lives where the encoder does (CUDA when present)
    }

    /// <summary>The entity types, in label order.</summary>
    public IReadOnlyList<string> Types { get; }
    /// <summary>The options.</summary>
    public EntityRecognizerOptions Options => options;
    /// <summary>The encoder.</summary>
    public TransformerModel Encoder => encoder;

    /// <inheritdoc/>
    public IEncoder? Engine { get; set; }

    /// <summary>Tokenizes and pads examples (single texts, truncated to <paramref name="maxLength"/> tokens) and maps their spans to tokens.</summary>
    /// <exception cref="ArgumentException">An entity type outside <see cref="Types"/>.</exception>
    public EntityBatch Prepare(BertWordPieceTokenizer tokenizer, IReadOnlyList<EntityExample> examples, int maxLength)
    {
        var items = examples.Select(e => tokenizer.Encode(e.Text, maxLength: maxLength)).ToList();
        var gold = new List<IReadOnlyList<EntitySpan>>(examples.Count);
        int dropped = 0;
        for (int i = 0; i < examples.Count; i++)
        {
            foreach (var s in examples[i].Entities)
                if (!Types.Contains(s.Type)) throw new ArgumentException($"entity type '{s.Type}' of text {i} is not one of this model's types ({string.Join(", ", Types)})");
            var m = TokenSpans.FromCharacters(items[i].Offsets, examples[i].Entities);
            dropped += m.Misaligned + m.Unmapped;
            var spans = m.Spans.Distinct().ToList();
            if (crf is not null)
            {
                // One tag per token cannot hold nested or overlapping entities: keep the first of each overlap, count the rest.
                var kept = new List<EntitySpan>();
                foreach (var s in spans.OrderBy(s => s.Start).ThenByDescending(s => s.Length))
                    if (kept.All(k => s.End <= k.Start || s.Start >= k.End)) kept.Add(s); else dropped++;
                spans = kept;
            }
            gold.Add(spans);
        }
        var (ids, mask) = SequencePadding.Pad(items.Select(e => e.Ids).ToList(), tokenizer.PaddingId, encoder.Device);
        return new EntityBatch(ids, mask, items, gold, dropped);
    }

    /// <summary>The head's output: CRF emissions (B, T, tags) or pointer scores (B, types, T, T).</summary>
    public Tensor Scores(Tensor ids, Tensor mask)
    {
        using var scope = torch.NewDisposeScope();
        using var output = TaskHeads.Encode(this, ids, null, mask);
        var x = output.LastHiddenState;                                                   // (B, T, H)
        if (training && options.Dropout > 0) x = nn.functional.dropout(x, options.Dropout, true);
        var s = emissions is not null ? emissions.forward(x) : pointer!.forward(x, mask);
        return s.MoveToOuterDisposeScope();
    }

    /// <summary>The training loss of a batch (CRF: mean NLL; pointers: the multilabel categorical cross-entropy).</summary>
    public Tensor Loss(EntityBatch batch)
    {
        using var scope = torch.NewDisposeScope();
        var s = Scores(batch.Ids, batch.Mask);
        Tensor loss;
        if (crf is not null)
        {
            long t = batch.Ids.shape[1];
            var gold = batch.Gold.Select(g => tags!.Encode((int)t, g).Select(x => (long)x).ToArray()).ToArray();
            var target = torch.tensor(gold.SelectMany(x => x).ToArray(), [gold.Length, t], device: s.device);
            loss = crf.Loss(s, target, batch.Mask);
        }
        else
        {
            var type = Types.Select((name, k) => (name, k)).ToDictionary(x => x.name, x => x.k);
            var gold = batch.Gold.Select(g => (IReadOnlyList<GlobalPointerSpan>)g.Select(x => new GlobalPointerSpan(type[x.Type], x.Start, x.End - 1)).ToList()).ToList();
            loss = GlobalPointerLoss.Compute(s, gold);
        }
        return loss.MoveToOuterDisposeScope();
    }

    /// <summary>Entities of each text as character spans of that text (decoding on plain arrays, in evaluation mode).</summary>
    public IReadOnlyList<IReadOnlyList<EntitySpan>> Predict(BertWordPieceTokenizer tokenizer, IReadOnlyList<string> texts, int maxLength, int batchSize = 32)
    {
        bool wasTraining = training;
        eval();
        var result = new List<IReadOnlyList<EntitySpan>>(texts.Count);
        try
        {
            for (int b = 0; b < texts.Count; b += batchSize)
            {
                using var scope = torch.NewDisposeScope();
                using var g = torch.no_grad();
                using var batch = Prepare(tokenizer, texts.Skip(b).Take(batchSize).Select(t => new EntityExample(t, [])).ToList(), maxLength);
                var s = Scores(batch.Ids, batch.Mask);
                IReadOnlyList<IEnumerable<EntitySpan>> tokenSpans = crf is not null
                    ? crf.Decode(s, batch.Mask).Select(path => (IEnumerable<EntitySpan>)tags!.Decode(path)).ToList()
                    : GlobalPointerDecoding.Decode(s).Select(list => list.Select(x => new EntitySpan(x.Start, x.End + 1, Types[x.Type]))).ToList();
                for (int i = 0; i < tokenSpans.Count; i++)
                    result.Add(TokenSpans.ToCharacters(batch.Items[i].Offsets, tokenSpans[i]).Distinct().ToList());
            }
        }
        finally { train(wasTraining); }
        return result;
    }
}
