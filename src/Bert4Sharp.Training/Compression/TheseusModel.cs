namespace Bert4Sharp.Training.Compression;

using System.Globalization;
using Bert4Sharp.Models;
using Bert4Sharp.Tasks;
using TorchSharp;
using static TorchSharp.torch;

/// <summary>Which predecessor block a successor block starts from.</summary>
public enum SuccessorInit
{
    /// <summary>Successor block k = predecessor block k (the first N blocks: the paper, and bert4keras's example, which loads the pretrained checkpoint with <c>num_hidden_layers = N</c>).</summary>
    FirstLayers,
    /// <summary>Successor block k = the first block of the group it replaces (predecessor block k · groupSize).</summary>
    FirstOfGroup,
}

/// <summary>
/// BERT-of-Theseus's training module (Xu et al. 2020; Su Jianlin, "BERT-of-Theseus: a model compression method based on
/// module replacement"): the predecessor classifier (its embeddings, blocks and head frozen) with its L blocks cut into N
/// groups of L / N; in training, each group is run either as the predecessor's blocks or as successor block k, chosen per
/// batch (<see cref="Choose"/>). In evaluation mode every group is the successor's, as bert4keras's
/// <c>K.in_train_phase(mixed, successor)</c>: the model then computes what the successor alone computes.
/// Parameters <c>predecessor.*</c> (frozen) and <c>successor.*</c> (an N-block encoder of the same family and config;
/// only its blocks train here).
/// </summary>
public sealed class TheseusModel : nn.Module<Tensor, Tensor?, Tensor?, Tensor>
{
#pragma warning disable IDE0044
    SequenceClassifier predecessor;
    TransformerModel successor;
#pragma warning restore IDE0044
    bool[] replaced;

    /// <summary>
    /// Wraps a trained <paramref name="predecessor"/> and a <paramref name="successor"/> encoder (see <see cref="Successor"/>)
    /// and freezes every predecessor parameter and every successor parameter outside its blocks.
    /// </summary>
    /// <exception cref="ArgumentException">The successor's block count does not divide the predecessor's, or is not smaller.</exception>
    public TheseusModel(SequenceClassifier predecessor, TransformerModel successor) : base("theseus")
    {
        int l = predecessor.Encoder.Architecture.Layers, n = successor.Architecture.Layers;
        CheckLayers(l, n);
        if (Pool.NeedsHiddenStates(predecessor.Pooling))
            throw new ArgumentException($"the predecessor pools {predecessor.Pooling}, which reads several layers' hidden states; a mixed block stack has no fixed layers to read (use first, cls, mean or max pooling)");
        this.predecessor = predecessor;
        this.successor = successor;
        GroupSize = l / n;
        replaced = [.. Enumerable.Repeat(true, n)];
        RegisterComponents();
        foreach (var p in predecessor.parameters()) p.requires_grad_(false);
        foreach (var (name, p) in successor.named_parameters()) p.requires_grad_(name.StartsWith("layers.", StringComparison.Ordinal));
    }

    /// <summary>Successor blocks (N).</summary>
    public int Groups => replaced.Length;

    /// <summary>Predecessor blocks each successor block replaces (L / N).</summary>
    public int GroupSize { get; }

    /// <summary>Sets which groups the next training forwards run on the successor (one flag per group).</summary>
    /// <exception cref="ArgumentException">Not one flag per group.</exception>
    public void Choose(IReadOnlyList<bool> successorGroups)
    {
        if (successorGroups.Count != replaced.Length) throw new ArgumentException($"one flag per group: {replaced.Length} groups, got {successorGroups.Count} flags");
        replaced = [.. successorGroups];
    }

    /// <summary>0, as a scalar whose gradient with respect to every trainable successor parameter is zero (for a batch that drew no successor block).</summary>
    public Tensor ZeroGradient()
    {
        using var scope = torch.NewDisposeScope();
        var trainable = successor.parameters().Where(p => p.requires_grad).Select(p => p.sum() * 0).ToArray();
        if (trainable.Length == 0) throw new InvalidOperationException("no successor parameter requires gradients");
        return torch.stack(trainable).sum().MoveToOuterDisposeScope();
    }

    /// <summary>Logits (B, labels): predecessor embeddings, the mixed stack (all successor blocks in evaluation mode), predecessor final norm and head.</summary>
    public override Tensor forward(Tensor ids, Tensor? segments, Tensor? attentionMask)
    {
        var encoder = predecessor.Encoder;
        bool successorOnly = !training;
        var flags = replaced;
        encoder.BlockStack = (x, run) =>
        {
            for (int k = 0; k < flags.Length; k++)
                if (successorOnly || flags[k]) x = run(successor.Block(k), x, k);                     // (B, T, H) → (B, T, H)
                else
                    for (int j = 0; j < GroupSize; j++)
                        x = run(encoder.Block(k * GroupSize + j), x, k * GroupSize + j);
            return x;
        };
        try { return predecessor.forward(ids, segments, attentionMask); }
        finally { encoder.BlockStack = null; }
    }

    /// <summary>
    /// A new N-block encoder of <paramref name="predecessor"/>'s family and config (<c>num_hidden_layers = N</c>), on its device:
    /// embeddings, final norm and every other non-block tensor copied, block k copied from predecessor block
    /// k (<see cref="SuccessorInit.FirstLayers"/>) or k · L / N (<see cref="SuccessorInit.FirstOfGroup"/>).
    /// </summary>
    /// <exception cref="ArgumentException">N does not divide L or is not smaller; a family sharing one block across layers (ALBERT).</exception>
    public static TransformerModel Successor(TransformerModel predecessor, int layers, SuccessorInit init = SuccessorInit.FirstLayers)
    {
        int l = predecessor.Architecture.Layers;
        CheckLayers(l, layers);
        if (predecessor.Architecture.ShareLayers)
            throw new ArgumentException($"{predecessor.Family.Name} shares one block across its {l} layers: there are no separate blocks to replace");
        var successor = TransformerModels.Build(predecessor.Config with { NumHiddenLayers = layers }, null, predecessor.Family, predecessor.Application,
            new BuildOptions { Device = predecessor.Device }, out _);
        int group = l / layers;
        var source = predecessor.state_dict();
        using (torch.no_grad())
            foreach (var (name, target) in successor.state_dict())
            {
                string from = SourceName(name, init == SuccessorInit.FirstLayers ? 1 : group);
                if (!source.TryGetValue(from, out var s) || !s.shape.SequenceEqual(target.shape))
                    throw new InvalidOperationException($"successor tensor {name} has no predecessor tensor {from} of shape [{string.Join(", ", target.shape)}]");
                target.copy_(s);
            }
        return successor;
    }

    /// <summary>A successor classifier around <paramref name="successor"/> with a copy of <paramref name="predecessor"/>'s head (same pooling, dropout and labels).</summary>
    public static SequenceClassifier SuccessorClassifier(SequenceClassifier predecessor, TransformerModel successor, double dropout)
    {
        var model = new SequenceClassifier(successor, predecessor.Labels, dropout, predecessor.Pooling);
        model.to(successor.Device);
        using (torch.no_grad())
        {
            model.Classifier.weight!.copy_(predecessor.Classifier.weight!);
            model.Classifier.bias!.copy_(predecessor.Classifier.bias!);
        }
        return model;
    }

    /// <summary>
    /// Refuses a successor that is not a proper divisor of the predecessor: N ≥ 1, N &lt; L and L mod N = 0
    /// (each successor block replaces a whole group).
    /// </summary>
    /// <exception cref="ArgumentException">Otherwise, with what would work.</exception>
    public static void CheckLayers(int predecessorLayers, int successorLayers)
    {
        string divisors = string.Join(", ", Enumerable.Range(1, Math.Max(0, predecessorLayers - 1)).Where(d => predecessorLayers % d == 0));
        if (successorLayers < 1 || successorLayers >= predecessorLayers)
            throw new ArgumentException($"--layers {successorLayers}: the successor must have fewer blocks than the predecessor's {predecessorLayers} (and at least 1); " +
                (divisors.Length > 0 ? $"choose one of {divisors}" : "a 1-block predecessor cannot be compressed"));
        if (predecessorLayers % successorLayers != 0)
            throw new ArgumentException($"--layers {successorLayers} does not divide the predecessor's {predecessorLayers} blocks into equal groups; choose one of {divisors}");
    }

    /// <summary><c>layers.k.rest</c> → <c>layers.(k·stride).rest</c>; every other name unchanged.</summary>
    static string SourceName(string name, int stride)
    {
        const string prefix = "layers.";
        if (!name.StartsWith(prefix, StringComparison.Ordinal)) return name;
        int dot = name.IndexOf('.', prefix.Length);
        int k = int.Parse(name.AsSpan(prefix.Length, dot - prefix.Length), CultureInfo.InvariantCulture);
        return prefix + (k * stride).ToString(CultureInfo.InvariantCulture) + name[dot..];
    }
}
