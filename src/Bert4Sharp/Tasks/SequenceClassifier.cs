namespace Bert4Sharp.Tasks;

using Bert4Sharp.Models;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

/// <summary>
/// Text (or text pair) classification: a pooled vector (<see cref="Pooling"/>), dropout and a dense layer to the
/// labels. Parameters <c>encoder.*</c> (the Transformer, named as in <see cref="TransformerModel"/>) and <c>classifier.*</c>.
/// </summary>
public sealed class SequenceClassifier : nn.Module<Tensor, Tensor?, Tensor?, Tensor>, ITaskHead
{
    readonly double dropout;
    readonly Pooling pooling;
#pragma warning disable IDE0044
    TransformerModel encoder;
    Linear classifier;
#pragma warning restore IDE0044

    /// <summary>Wraps <paramref name="encoder"/> (built with <see cref="Application.Encoder"/>) with a new head.</summary>
    public SequenceClassifier(TransformerModel encoder, int labels, double dropout = 0.1, Pooling pooling = Pooling.First) : base("sequence_classifier")
    {
        this.pooling = pooling;
        if (labels < 2) throw new ArgumentOutOfRangeException(nameof(labels), $"a classifier needs at least 2 labels, got {labels}");
        this.encoder = TaskHeads.RequireEncoder(encoder);
        this.dropout = dropout;
        Labels = labels;
        classifier = nn.Linear(encoder.Config.HiddenSize, labels);
        RegisterComponents();
        TaskHeads.Initialize(this, encoder);
    }

    /// <summary>Number of labels.</summary>
    public int Labels { get; }

    /// <summary>The Transformer.</summary>
    public TransformerModel Encoder => encoder;

    /// <inheritdoc/>
    public IEncoder? Engine { get; set; }

    /// <summary>How the hidden states become one vector.</summary>
    public Pooling Pooling => pooling;

    /// <summary>The dense layer from the pooled vector to the labels.</summary>
    public Linear Classifier => classifier;

    /// <summary>
    /// Loads a pretrained model (any directory or file <see cref="AutoModel"/> reads) as the encoder. Every encoder
    /// weight must be found; MLM-head tensors are ignored.
    /// </summary>
    public static SequenceClassifier FromPretrained(string path, string? family, int labels, double dropout = 0.1, Device? device = null, Pooling pooling = Pooling.First)
    {
        var loaded = AutoModel.Load(path, new AutoModelOptions { Family = family, Application = Application.Encoder, Build = new BuildOptions { Device = device } });
        return new SequenceClassifier(loaded.Model, labels, dropout, pooling);
    }

    /// <summary>Logits (B, labels) for ids (B, T), optional segments and attention mask.</summary>
    public override Tensor forward(Tensor ids, Tensor? segments, Tensor? attentionMask) =>
        Forward(new ModelInput(ids) { Segments = segments, AttentionMask = attentionMask });

    /// <summary>
    /// Logits (B, labels) for any <see cref="ModelInput"/> (e.g. with <see cref="ModelInput.TokenEmbeddings"/> instead of
    /// the id lookup); the hidden states this pooling needs are asked for whatever the input says.
    /// </summary>
    public Tensor Forward(ModelInput input)
    {
        using var scope = torch.NewDisposeScope();
        bool hidden = Pool.NeedsHiddenStates(pooling);
        if (Engine is not null && (input.TokenEmbeddings is not null || input.PositionIds is not null || input.Condition is not null || input.Cache is not null))
            throw new NotSupportedException($"the {Engine.Engine} engine takes ids, segments and a mask only; use the TorchSharp encoder (Engine = null) for embeddings, positions, conditions or a cache");
        using var output = Engine is not null ? TaskHeads.Encode(this, input.Ids, input.Segments, input.AttentionMask, hidden)
            : encoder.Forward(input with { OutputHiddenStates = hidden }).Widened();   // fp32 states whatever the encoder computes in
        var x = Pool.Apply(pooling, output, input.AttentionMask);
        if (training && dropout > 0) x = nn.functional.dropout(x, dropout, true);
        return classifier.forward(x).MoveToOuterDisposeScope();
    }
}
