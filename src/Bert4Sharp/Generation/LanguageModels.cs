namespace Bert4Sharp.Generation;

using Bert4Sharp.Layers;
using Bert4Sharp.Models;
using Bert4Sharp.Runtime;
using TorchSharp;
using static TorchSharp.torch;

/// <summary>A causal LM the decoders can drive: logits of new ids given (and extending) a key/value cache.</summary>
public interface ICausalLanguageModel
{
    /// <summary>Vocabulary size.</summary>
    int VocabularySize { get; }
    /// <summary>Device the decoders create their input tensors on (the model's).</summary>
    Device Device { get; }
    /// <summary>A new, empty cache.</summary>
    KeyValueCache NewCache();
    /// <summary>Logits (B, T, V) of <paramref name="ids"/> (B, T) appended to what <paramref name="cache"/> holds.</summary>
    Tensor Logits(Tensor ids, KeyValueCache? cache);
}

/// <summary>
/// Adapts a decoder-only model to <see cref="ICausalLanguageModel"/>: GPT, GPT-2, GPT2-ML and any encoder built
/// with <see cref="Application.LanguageModel"/>; for <see cref="Application.UniLM"/> the first call is the source
/// (segment 0) and every later token is target (segment 1), decoded incrementally through the key/value cache
/// (bert4keras seq2seq with UniLM).
/// </summary>
public sealed class CausalLanguageModel : ICausalLanguageModel
{
    readonly TransformerModel model;

    /// <summary>Wraps <paramref name="model"/>.</summary>
    /// <exception cref="ArgumentException">The model was not built for LanguageModel or UniLM.</exception>
    public CausalLanguageModel(TransformerModel model)
    {
        if (model.Application is not (Application.LanguageModel or Application.UniLM))
            throw new ArgumentException($"decoding needs a model built with Application.LanguageModel or Application.UniLM, got {model.Application}{(model.Application == Application.Seq2Seq ? " (use Seq2SeqLanguageModel)" : "")}");
        this.model = model;
    }

    /// <inheritdoc/>
    public int VocabularySize => model.Config.VocabSize;

    /// <inheritdoc/>
    public Device Device => model.Device;

    /// <inheritdoc/>
    public KeyValueCache NewCache() => model.NewCache();

    /// <inheritdoc/>
    public Tensor Logits(Tensor ids, KeyValueCache? cache)
    {
        bool source = cache is null || cache.Length == 0 || model.Application == Application.LanguageModel;   // an LM has no target segment
        if (cache is null && model.Application == Application.UniLM)
            throw new ArgumentException("UniLM decoding without a cache would need the source length; use the cache");
        using var segments = source ? torch.zeros_like(ids) : torch.ones_like(ids);
        using var output = model.Forward(new ModelInput(ids) { Segments = segments, Cache = cache });
        return PrecisionPolicy.Fp32Handle(output.Logits!);
    }
}

/// <summary>
/// Adapts an encoder–decoder (T5, <see cref="Application.Seq2Seq"/>) to <see cref="ICausalLanguageModel"/> for one
/// encoder input: the encoder runs once; its states are repeated to the decoding batch (beams) on first use.
/// </summary>
public sealed class Seq2SeqLanguageModel : ICausalLanguageModel, IDisposable
{
    readonly TransformerModel model;
    readonly Tensor memory;
    readonly Tensor mask;
    Tensor? expanded, expandedMask;

    /// <summary>Encodes <paramref name="encoderIds"/> (one sequence).</summary>
    /// <exception cref="ArgumentException">The model has no decoder, or the input is empty.</exception>
    public Seq2SeqLanguageModel(TransformerModel model, IReadOnlyList<int> encoderIds)
    {
        if (model.Application != Application.Seq2Seq) throw new ArgumentException($"a Seq2SeqLanguageModel needs a model built with Application.Seq2Seq, got {model.Application}");
        if (encoderIds.Count == 0) throw new ArgumentException("the encoder input is empty", nameof(encoderIds));
        this.model = model;
        using var g = torch.no_grad();
        using var scope = torch.NewDisposeScope();
        var ids = torch.tensor(encoderIds.Select(i => (long)i).ToArray(), device: model.Device).unsqueeze(0);
        mask = torch.ones_like(ids).DetachFromDisposeScope();
        using var output = model.Forward(new ModelInput(ids) { AttentionMask = mask });
        memory = output.LastHiddenState.alias().DetachFromDisposeScope();
    }

    /// <inheritdoc/>
    public int VocabularySize => model.Config.VocabSize;

    /// <inheritdoc/>
    public Device Device => model.Device;

    /// <inheritdoc/>
    public KeyValueCache NewCache() => model.NewCache();

    /// <inheritdoc/>
    public Tensor Logits(Tensor ids, KeyValueCache? cache)
    {
        long b = ids.shape[0];
        if (expanded is null || expanded.shape[0] != b)
        {
            expanded?.Dispose();
            expandedMask?.Dispose();
            // Owned by this object, not by the caller's per-step dispose scope.
            expanded = memory.expand(b, -1, -1).contiguous().DetachFromDisposeScope();
            expandedMask = mask.expand(b, -1).contiguous().DetachFromDisposeScope();
        }
        using var output = model.Decode(new DecoderInput(ids, expanded) { MemoryMask = expandedMask, Cache = cache });
        return PrecisionPolicy.Fp32Handle(output.Logits!);
    }

    /// <inheritdoc/>
    public void Dispose()
    {
        memory.Dispose();
        mask.Dispose();
        expanded?.Dispose();
        expandedMask?.Dispose();
    }
}
