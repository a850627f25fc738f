namespace Bert4Sharp.Generation;

using Bert4Sharp.Layers;
using Bert4Sharp.Models;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

/// <summary>
/// A causal language model conditioned on a class label through Conditional LayerNorm (bert4keras
/// <c>task_conditional_language_model.py</c>; Su, kexue.fm/archives/7124): a label embedding is the condition of every
/// LayerNorm of a <see cref="TransformerModel"/> built with <see cref="Application.LanguageModel"/> and
/// <see cref="BuildOptions.Condition"/>. The condition's projections start at zero, so before training the model is
/// exactly its unconditional self (pretrained weights load unchanged); training teaches each label its own gain and bias shift.
/// </summary>
public sealed class ClassConditionalLanguageModel : nn.Module<Tensor, Tensor, Tensor>
{
    readonly TransformerModel lm;
    readonly Embedding label_embedding;

    /// <summary>Wraps <paramref name="model"/> (owned; registered as <c>lm</c>) with a fresh label embedding (<paramref name="classes"/> × the condition width).</summary>
    /// <exception cref="ArgumentException">The model is not a causal LM built with a condition, or fewer than two classes.</exception>
    public ClassConditionalLanguageModel(TransformerModel model, int classes, ConditionOptions condition) : base("class_conditional_lm")
    {
        if (model.Application != Application.LanguageModel)
            throw new ArgumentException($"the model must be built with Application.LanguageModel (causal), got {model.Application}", nameof(model));
        if (classes < 2) throw new ArgumentException($"classes must be ≥ 2, got {classes}", nameof(classes));
        lm = model;
        Classes = classes;
        label_embedding = nn.Embedding(classes, condition.Size);
        RegisterComponents();
        label_embedding.to(model.Device);
    }

    /// <summary>Number of labels.</summary>
    public int Classes { get; }

    /// <summary>The language model.</summary>
    public TransformerModel Model => lm;

    /// <summary>Next-token logits (B, T, V) of ids (B, T) under labels (B) int64.</summary>
    /// <exception cref="ArgumentException">The model was built without a condition, or labels do not match the batch.</exception>
    public override Tensor forward(Tensor ids, Tensor labels)
    {
        if (labels.dim() != 1 || labels.shape[0] != ids.shape[0])
            throw new ArgumentException($"labels must be (B) = ({ids.shape[0]}), got [{string.Join(", ", labels.shape)}]", nameof(labels));
        using var scope = torch.NewDisposeScope();
        var condition = label_embedding.forward(labels.to(lm.Device));                          // (B, C)
        var output = lm.Forward(new ModelInput(ids.to(lm.Device)) { Condition = condition });
        return output.Logits!.MoveToOuterDisposeScope();                                         // (B, T, V)
    }

    /// <summary>
    /// Samples <paramref name="count"/> continuations of <paramref name="prompt"/> (e.g. [CLS]) under
    /// <paramref name="label"/>, each up to <paramref name="maxNewTokens"/> tokens or until <paramref name="endId"/>;
    /// top-k sampling with a seeded generator. Returns the new tokens of each sample (without the end token).
    /// </summary>
    /// <exception cref="ArgumentException">A label out of range, an empty prompt, or non-positive counts.</exception>
    public IReadOnlyList<int[]> Sample(int label, IReadOnlyList<int> prompt, int count, int maxNewTokens, int endId, int topK = 20, double temperature = 1.0, long seed = 1)
    {
        if (label < 0 || label >= Classes) throw new ArgumentException($"label {label} is outside [0, {Classes})", nameof(label));
        if (prompt.Count == 0) throw new ArgumentException("the prompt is empty (start with [CLS])", nameof(prompt));
        if (count < 1 || maxNewTokens < 1 || topK < 1 || !(temperature > 0))
            throw new ArgumentException($"count, maxNewTokens and topK must be ≥ 1 and temperature > 0, got {count}, {maxNewTokens}, {topK}, {temperature}");
        using var noGrad = torch.no_grad();
        var generator = new torch.Generator((ulong)seed);
        var sequences = Enumerable.Range(0, count).Select(_ => prompt.ToList()).ToArray();
        var done = new bool[count];
        var labels = torch.full(count, label, ScalarType.Int64);
        for (int step = 0; step < maxNewTokens && done.Contains(false); step++)
        {
            using var scope = torch.NewDisposeScope();
            var ids = torch.tensor(sequences.SelectMany(s => s.Select(t => (long)t)).ToArray(), [count, sequences[0].Count]);   // (B, T): same length, all extended together
            var last = forward(ids, labels)[.., -1].to(ScalarType.Float32).cpu() / temperature;                                 // (B, V)
            var (values, indices) = last.topk(Math.Min(topK, (int)last.shape[1]));
            var choice = values.softmax(-1).multinomial(1, generator: generator);                                                // (B, 1)
            var next = indices.gather(1, choice).squeeze(1).data<long>().ToArray();
            for (int b = 0; b < count; b++)
            {
                int token = done[b] ? endId : (int)next[b];
                sequences[b].Add(token);
                if (token == endId) done[b] = true;
            }
        }
        labels.Dispose();
        return [.. sequences.Select(s => s.Skip(prompt.Count).TakeWhile(t => t != endId).ToArray())];
    }
}
