namespace Bert4Sharp.Tasks;

using Bert4Sharp.Models;
using Bert4Sharp.Tokenization;
using TorchSharp;
using static TorchSharp.torch;

/// <summary>An event argument (the trigger is one, with the trigger role) as a character span [Start, End) of its text.</summary>
public readonly record struct EventSpan(string EventType, string Role, int Start, int End);

/// <summary>A text and its events (each a list of arguments, trigger included).</summary>
/// <param name="Text">The text.</param>
/// <param name="Events">Its events.</param>
public sealed record EventExample(string Text, IReadOnlyList<IReadOnlyList<EventSpan>> Events);

/// <summary>A decoded argument in tokens: label index ((event type, role) in the extractor's sorted order), start..end inclusive.</summary>
public readonly record struct TokenArgument(int Label, int Start, int End) : IComparable<TokenArgument>
{
    /// <inheritdoc/>
    public int CompareTo(TokenArgument other) => (Label, Start, End).CompareTo((other.Label, other.Start, other.End));
}

/// <summary>
/// GPLinker for event extraction (Su, kexue.fm/archives/8926): an encoder and three pointers — arguments with one
/// type per (event type, role), the trigger being a role; head links and tail links with one type (no RoPE; cell
/// (min, max) of the two arguments' starts, resp. ends, links two arguments of one event). Sparse multilabel
/// cross-entropy on each; decoding groups the arguments of each event type into events by the complete-subgraph
/// search of <see cref="GpLinkerEventDecoding"/>. Parameters <c>encoder.*</c>, <c>nodes.*</c> (arguments), <c>head.*</c>, <c>tail.*</c>.
/// </summary>
public sealed class GpLinkerEventExtractor : GpLinkerModel
{
    readonly Dictionary<(string, string), int> labelIndex;
    readonly int[] labelType;
    readonly bool[] labelTrigger;

    /// <summary>
    /// Puts the three pointers on <paramref name="encoder"/>. <paramref name="labels"/> are the (event type, role)
    /// pairs, the triggers among them with role <paramref name="triggerRole"/>; they are kept in ordinal order.
    /// </summary>
    public GpLinkerEventExtractor(TransformerModel encoder, IEnumerable<(string EventType, string Role)> labels, string triggerRole, GpLinkerOptions? options = null)
        : this(encoder, Sorted(labels), triggerRole, options) { }

    GpLinkerEventExtractor(TransformerModel encoder, List<(string EventType, string Role)> labels, string triggerRole, GpLinkerOptions? options)
        : base("gplinker_events", encoder, nodeTypes: labels.Count, linkTypes: 1, linkTrilMask: true, options)
    {
        Labels = labels;
        TriggerRole = triggerRole;
        labelIndex = Labels.Select((l, i) => (l, i)).ToDictionary(x => x.l, x => x.i);
        var types = Labels.Select(l => l.EventType).Distinct().ToList();
        labelType = [.. Labels.Select(l => types.IndexOf(l.EventType))];
        labelTrigger = [.. Labels.Select(l => l.Role == triggerRole)];
    }

    static List<(string EventType, string Role)> Sorted(IEnumerable<(string EventType, string Role)> labels)
    {
        List<(string EventType, string Role)> sorted = [.. labels.Distinct().OrderBy(l => l.EventType, StringComparer.Ordinal).ThenBy(l => l.Role, StringComparer.Ordinal)];
        return sorted.Count > 0 ? sorted : throw new ArgumentException("an event extractor needs at least one (event type, role) label", nameof(labels));
    }

    /// <summary>The (event type, role) labels in type order (ordinal).</summary>
    public IReadOnlyList<(string EventType, string Role)> Labels { get; }
    /// <summary>The role name of triggers.</summary>
    public string TriggerRole { get; }

    /// <summary>
    /// Tokenizes and pads examples (truncated to <paramref name="maxLength"/> tokens) and maps their events to pointer
    /// cells: each argument (label, start, end), and for every two arguments of one event a head link (min start, max
    /// start) and a tail link (min end, max end).
    /// </summary>
    /// <exception cref="ArgumentException">An (event type, role) outside <see cref="Labels"/>.</exception>
    public GpLinkerBatch Prepare(BertWordPieceTokenizer tokenizer, IReadOnlyList<EventExample> examples, int maxLength) =>
        Batch(tokenizer, [.. examples.Select(e => e.Text)], maxLength, (i, item) =>
        {
            List<GlobalPointerSpan> arguments = [], heads = [], tails = [];
            int dropped = 0;
            foreach (var ev in examples[i].Events)
            {
                var kept = new List<(int Start, int End)>();
                foreach (var a in ev)
                {
                    if (!labelIndex.TryGetValue((a.EventType, a.Role), out int l))
                        throw new ArgumentException($"(event type '{a.EventType}', role '{a.Role}') of text {i} is not one of this model's {Labels.Count} labels");
                    if (TokenSpan(item.Offsets, a.Start, a.End) is not { } s) { dropped++; continue; }
                    arguments.Add(new GlobalPointerSpan(l, s.Start, s.End));
                    kept.Add(s);
                }
                for (int x = 0; x < kept.Count; x++)
                    for (int y = x + 1; y < kept.Count; y++)
                    {
                        heads.Add(new GlobalPointerSpan(0, Math.Min(kept[x].Start, kept[y].Start), Math.Max(kept[x].Start, kept[y].Start)));
                        tails.Add(new GlobalPointerSpan(0, Math.Min(kept[x].End, kept[y].End), Math.Max(kept[x].End, kept[y].End)));
                    }
            }
            return (arguments, heads, tails, dropped);
        });

    /// <summary>Events of each text as character spans (evaluation mode, no gradients); <paramref name="capped"/> counts texts where <see cref="GpLinkerOptions.MaxSpans"/> cut candidates.</summary>
    public IReadOnlyList<IReadOnlyList<IReadOnlyList<EventSpan>>> Predict(BertWordPieceTokenizer tokenizer, IReadOnlyList<string> texts, int maxLength, out int capped, int batchSize = 16) =>
        PredictBatches<IReadOnlyList<IReadOnlyList<EventSpan>>>(tokenizer, texts, maxLength, batchSize, (i, item, scores) =>
        {
            int len = (int)scores.Nodes.shape[2];
            var offsets = item.Offsets;
            var candidates = Candidates(scores.Nodes[i], offsets.Count, Options.MaxSpans + 1);   // one more than kept: tells whether the cap cut
            var events = GpLinkerEventDecoding.Decode(candidates, Host(scores.Head[i]), Host(scores.Tail[i]), len, labelType, labelTrigger, out bool cut, maxArguments: Options.MaxSpans);
            var list = new List<IReadOnlyList<EventSpan>>();
            foreach (var ev in events)
            {
                var spans = new List<EventSpan>();
                foreach (var x in ev)
                    if (TokenSpans.ToCharacters(offsets, new EntitySpan(x.Start, x.End + 1, "")) is { } c)
                        spans.Add(new EventSpan(Labels[x.Label].EventType, Labels[x.Label].Role, c.Start, c.End));
                list.Add(spans);
            }
            return (list, cut);
        }, out capped);

    /// <summary>
    /// The <paramref name="k"/> best argument cells of one text's scores (labels, T, T) above 0, inside tokens
    /// 1..<paramref name="tokens"/> − 2, found on the scores' device (copying labels·T² values to the host per text was the
    /// bottleneck of prediction).
    /// </summary>
    static List<(TokenArgument Argument, float Score)> Candidates(Tensor scores, int tokens, int k)
    {
        using var scope = torch.NewDisposeScope();
        long labels = scores.shape[0], len = scores.shape[1];
        if (tokens < 3) return [];
        var inner = scores[.., 1..(tokens - 1), 1..(tokens - 1)].reshape(-1);                 // (labels·m·m), m = tokens − 2
        long m = tokens - 2;
        var (values, indices) = inner.topk((int)Math.Min(k, inner.shape[0]));
        float[] v = values.to(ScalarType.Float32, CPU).data<float>().ToArray();
        long[] ix = indices.cpu().data<long>().ToArray();
        var found = new List<(TokenArgument, float)>();
        for (int c = 0; c < v.Length; c++)
            if (v[c] > 0) found.Add((new TokenArgument((int)(ix[c] / (m * m)), (int)(ix[c] / m % m) + 1, (int)(ix[c] % m) + 1), v[c]));
        return found;
    }
}

/// <summary>GPLinker event decoding on plain arrays (one text): arguments, links, and the complete-subgraph search.</summary>
public static class GpLinkerEventDecoding
{
    /// <summary>
    /// Events of one text. <paramref name="arguments"/> (labels, T, T) row-major, <paramref name="heads"/> and
    /// <paramref name="tails"/> (1, T, T); positions 0, <paramref name="tokens"/> − 1 and padding are never arguments.
    /// Arguments are the cells above <paramref name="threshold"/>; two are linked when heads[min starts, max starts] and
    /// tails[min ends, max ends] are both above it. The arguments of each event type (labels must be sorted by (event
    /// type, role), so that one type's labels are contiguous) are split into complete subgraphs of the links
    /// (<see cref="Cliques"/>); an event without a trigger is dropped. Each event is sorted by (label, start, end).
    /// </summary>
    /// <param name="arguments">Argument scores (labels, T, T).</param>
    /// <param name="heads">Head-link scores (1, T, T).</param>
    /// <param name="tails">Tail-link scores (1, T, T).</param>
    /// <param name="length">T.</param>
    /// <param name="tokens">Real tokens of the text, [CLS] and [SEP] included.</param>
    /// <param name="labelType">The event type (any id) of each label.</param>
    /// <param name="labelTrigger">Whether each label is a trigger.</param>
    /// <param name="capped">True when more than <paramref name="maxArguments"/> arguments scored above the threshold (the best were kept).</param>
    /// <param name="threshold">The score threshold (0 for the multilabel cross-entropy).</param>
    /// <param name="maxArguments">Arguments kept at most (highest scores first).</param>
    public static List<List<TokenArgument>> Decode(ReadOnlySpan<float> arguments, ReadOnlySpan<float> heads, ReadOnlySpan<float> tails, int length, int tokens,
        IReadOnlyList<int> labelType, IReadOnlyList<bool> labelTrigger, out bool capped, float threshold = 0, int maxArguments = int.MaxValue)
    {
        int labels = labelType.Count;
        if (labels < 1 || labelTrigger.Count != labels || length < 0 || tokens < 0 || tokens > length || maxArguments < 1)
            throw new ArgumentOutOfRangeException(nameof(labelType), $"need ≥ 1 label with a type and a trigger flag each, 0 ≤ tokens ≤ length, maxArguments ≥ 1; got {labels}/{labelTrigger.Count} labels, {tokens}, {length}, {maxArguments}");
        int tt = length * length;
        if (arguments.Length != (long)labels * tt || heads.Length != tt || tails.Length != tt)
            throw new ArgumentException($"scores must hold labels·T² = {(long)labels * tt} (arguments) and T² = {tt} (heads, tails) values; got {arguments.Length}, {heads.Length}, {tails.Length}");
        var found = new List<(TokenArgument Argument, float Score)>();
        for (int l = 0; l < labels; l++)
            for (int i = 1; i < tokens - 1; i++)
                for (int j = 1; j < tokens - 1; j++)
                {
                    float v = arguments[l * tt + i * length + j];
                    if (v > threshold) found.Add((new TokenArgument(l, i, j), v));
                }
        return Decode(found, heads, tails, length, labelType, labelTrigger, out capped, threshold, maxArguments);
    }

    /// <summary>
    /// <see cref="Decode(ReadOnlySpan{float}, ReadOnlySpan{float}, ReadOnlySpan{float}, int, int, IReadOnlyList{int}, IReadOnlyList{bool}, out bool, float, int)"/>
    /// from the argument cells already found (above the threshold, off [CLS]/[SEP]/padding) with their scores.
    /// </summary>
    public static List<List<TokenArgument>> Decode(IReadOnlyList<(TokenArgument Argument, float Score)> found, ReadOnlySpan<float> heads, ReadOnlySpan<float> tails, int length,
        IReadOnlyList<int> labelType, IReadOnlyList<bool> labelTrigger, out bool capped, float threshold = 0, int maxArguments = int.MaxValue)
    {
        if (heads.Length != length * length || tails.Length != length * length)
            throw new ArgumentException($"link scores must hold T² = {length * length} values; got {heads.Length}, {tails.Length}");
        capped = found.Count > maxArguments;
        var argus = (capped ? found.OrderByDescending(x => x.Score).Take(maxArguments) : found).Select(x => x.Argument).Order().ToList();
        var links = new HashSet<(int, int, int, int)>();
        for (int x = 0; x < argus.Count; x++)
            for (int y = x + 1; y < argus.Count; y++)
            {
                var (a, b) = (argus[x], argus[y]);
                if (heads[Math.Min(a.Start, b.Start) * length + Math.Max(a.Start, b.Start)] > threshold && tails[Math.Min(a.End, b.End) * length + Math.Max(a.End, b.End)] > threshold)
                {
                    links.Add((a.Start, a.End, b.Start, b.End));
                    links.Add((b.Start, b.End, a.Start, a.End));
                }
            }
        var events = new List<List<TokenArgument>>();
        foreach (var group in argus.GroupBy(a => labelType[a.Label]))   // argus are sorted, so each type's arguments are contiguous
            foreach (var ev in Cliques(group.ToList(), links))
                if (ev.Any(a => labelTrigger[a.Label])) events.Add(ev);
        return events;
    }

    /// <summary>
    /// The complete subgraphs of the post's search over <paramref name="argus"/> (sorted): when every pair is linked, the
    /// whole set is one event; otherwise, for each non-linked pair (in order), the neighbourhoods of both sides (the node
    /// and its linked nodes, sorted) are searched recursively, and the results deduplicated in order of discovery. A node is
    /// not its own neighbour (the post's code lets a node on the same span as another count twice). Memoised on the input.
    /// </summary>
    public static List<List<TokenArgument>> Cliques(IReadOnlyList<TokenArgument> argus, IReadOnlySet<(int, int, int, int)> links) =>
        Search(argus, links, new Dictionary<string, List<List<TokenArgument>>>());

    static List<List<TokenArgument>> Search(IReadOnlyList<TokenArgument> argus, IReadOnlySet<(int, int, int, int)> links, Dictionary<string, List<List<TokenArgument>>> memo)
    {
        string key = string.Join(";", argus.Select(a => $"{a.Label},{a.Start},{a.End}"));
        if (memo.TryGetValue(key, out var known)) return known;
        var pending = new List<List<TokenArgument>>();
        for (int x = 0; x < argus.Count; x++)
            for (int y = x + 1; y < argus.Count; y++)
                if (!links.Contains((argus[x].Start, argus[x].End, argus[y].Start, argus[y].End)))
                {
                    AddNew(pending, Neighbourhood(argus[x], argus, links));
                    AddNew(pending, Neighbourhood(argus[y], argus, links));
                }
        List<List<TokenArgument>> result;
        if (pending.Count == 0) result = [[.. argus.Order()]];
        else
        {
            result = [];
            foreach (var sub in pending)
                foreach (var c in Search(sub, links, memo)) AddNew(result, c);
        }
        memo[key] = result;
        return result;
    }

    static List<TokenArgument> Neighbourhood(TokenArgument host, IReadOnlyList<TokenArgument> argus, IReadOnlySet<(int, int, int, int)> links)
    {
        var n = new List<TokenArgument> { host };
        foreach (var a in argus)
            if (a != host && links.Contains((host.Start, host.End, a.Start, a.End))) n.Add(a);
        n.Sort();
        return n;
    }

    static void AddNew(List<List<TokenArgument>> list, List<TokenArgument> item)
    {
        if (!list.Any(x => x.SequenceEqual(item))) list.Add(item);
    }
}
