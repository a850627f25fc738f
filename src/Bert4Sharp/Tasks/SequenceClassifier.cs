namespace Bert4Sharp.Tasks;

using Bert4Sharp.Checkpoints;
using Bert4Sharp.Models;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

/// <summary>How <see cref="SequenceClassifier"/> turns hidden states into one vector.</summary>
public enum Pooling
{
    /// <summary>The pooler's output when the family has one, else the [CLS] hidden state (bert4keras's usual head).</summary>
    First,
    /// <summary>The mean of the final hidden states over real tokens (suits encoders pretrained with MLM only, whose [CLS] learned nothing special).</summary>
    Mean,
}

/// <summary>
/// Text (or text pair) classification: a pooled vector (<see cref="Pooling"/>), dropout and a dense layer to the
/// labels. Parameters <c>encoder.*</c> (the Transformer, named as in <see cref="TransformerModel"/>) and <c>classifier.*</c>.
/// </summary>
public sealed class SequenceClassifier : nn.Module<Tensor, Tensor?, Tensor?, Tensor>
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
        if (encoder.Application != Application.Encoder) throw new ArgumentException($"the encoder must be built with Application.Encoder, got {encoder.Application}");
        this.encoder = encoder;
        this.dropout = dropout;
        Labels = labels;
        classifier = nn.Linear(encoder.Config.HiddenSize, labels);
        using (torch.no_grad())
        {
            nn.init.normal_(classifier.weight!, 0, encoder.Config.InitializerRange);
            nn.init.zeros_(classifier.bias!);
        }
        RegisterComponents();
    }

    /// <summary>Number of labels.</summary>
    public int Labels { get; }

    /// <summary>The Transformer.</summary>
    public TransformerModel Encoder => encoder;

    /// <summary>
    /// Loads a pretrained model directory (config.json + weights, e.g. written by <c>SavePretrained</c> or
    /// <c>b4s pretrain</c>) as the encoder. Every encoder weight must be found; MLM-head tensors are ignored.
    /// </summary>
    public static SequenceClassifier FromPretrained(string directory, string family, int labels, double dropout = 0.1, Device? device = null, Pooling pooling = Pooling.First)
    {
        var config = TransformerConfig.Load(Path.Combine(directory, "config.json"));
        using var ck = Checkpoint.Open(directory);
        var encoder = TransformerModels.Build(config, ck, ModelFamily.Get(family), Application.Encoder, new BuildOptions { Device = device }, out _);
        return new SequenceClassifier(encoder, labels, dropout, pooling);
    }

    /// <summary>Logits (B, labels) for ids (B, T), optional segments and attention mask.</summary>
    public override Tensor forward(Tensor ids, Tensor? segments, Tensor? attentionMask)
    {
        using var scope = torch.NewDisposeScope();
        using var output = encoder.forward(ids, segments, attentionMask);
        Tensor x;
        if (pooling == Pooling.Mean)
        {
            var m = (attentionMask ?? torch.ones_like(ids)).unsqueeze(-1).to(output.LastHiddenState.dtype);
            x = (output.LastHiddenState * m).sum(1) / m.sum(1).clamp_min(1);
        }
        else x = output.Pooled ?? output.LastHiddenState.select(1, 0);
        if (training && dropout > 0) x = nn.functional.dropout(x, dropout, true);
        return classifier.forward(x).MoveToOuterDisposeScope();
    }
}
