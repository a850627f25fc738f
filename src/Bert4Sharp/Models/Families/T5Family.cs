namespace Bert4Sharp.Models;

using Bert4Sharp.Checkpoints;
using Bert4Sharp.Layers;

/// <summary>
/// T5 (t5.1.0: ReLU, head tied to the embedding and fed d_model^-½-scaled states; t5.1.1 and mT5: gated GELU and a
/// separate head) as an encoder–decoder on the shared blocks: pre-RMS-norm (<see cref="NormPlacement.Pre"/>,
/// <see cref="NormKind.Rms"/>), no biases, unscaled dot products (the query weights carry the scale), a bucketed
/// relative bias per stack (<see cref="RelativePositionBias"/>), cross attention in the decoder, final norms.
/// Hugging Face names (<c>encoder.block.0.layer.0.SelfAttention.q.weight</c>…) and the Mesh TensorFlow names
/// bert4keras loads (<c>encoder/block_000/layer_000/SelfAttention/q</c>, kernels [in, out], the relative bias
/// [heads, buckets], mT5's norms <c>rms_norm</c>).
/// </summary>
/// <param name="name">Family name (t5 or mt5).</param>
/// <param name="tensorFlowNorm">How the TF checkpoint names its norms: <c>layer_norm</c> (T5) or <c>rms_norm</c> (mT5).</param>
public sealed class T5Family(string name = "t5", string tensorFlowNorm = "layer_norm") : ModelFamily
{
    /// <inheritdoc/>
    public override string Name => name;

    /// <inheritdoc/>
    public override IReadOnlyList<Application>? Applications => [Application.Seq2Seq, Application.Encoder];

    /// <inheritdoc/>
    public override IReadOnlyList<string> Ignorable => [.. base.Ignorable, "encoder.embed_tokens.weight", "decoder.embed_tokens.weight"];

    /// <summary>(gated, activation) from <c>feed_forward_proj</c>; Hugging Face maps gated-gelu to the tanh approximation.</summary>
    static (bool Gated, string Activation) FeedForward(TransformerConfig c)
    {
        string proj = c.FeedForwardProj ?? "relu";
        bool gated = proj.StartsWith("gated-", StringComparison.Ordinal);
        string act = gated ? proj["gated-".Length..] : proj;
        return (gated, act == "gelu" ? "gelu_new" : act);
    }

    /// <summary>
    /// Whether the decoder output is scaled by d_model^-½ before the head. transformers 5 writes
    /// <c>scale_decoder_outputs</c>; before it, T5 tied ⇔ scaled, and mT5 never scaled.
    /// </summary>
    static bool ScaleOutputs(TransformerConfig c) => c.ScaleDecoderOutputs ?? (c.TieWordEmbeddings && c.ModelType != "mt5");

    /// <inheritdoc/>
    public override ArchitectureOptions Architecture(TransformerConfig c)
    {
        var (gated, act) = FeedForward(c);
        Activations.Check(act);
        int dkv = c.DKv ?? c.HiddenSize / c.NumAttentionHeads;
        var attention = new AttentionOptions(c.HiddenSize, c.NumAttentionHeads, dkv, UseBias: false, Position: AttentionPosition.RelativeBuckets,
            Dropout: c.AttentionProbsDropoutProb, Scale: 1.0);
        var block = new BlockOptions(attention, c.IntermediateSize, act, NormKind.Rms, c.LayerNormEps, UseBias: false, Dropout: c.HiddenDropoutProb,
            GatedFeedForward: gated, Placement: NormPlacement.Pre);
        return new ArchitectureOptions(
            new EmbeddingOptions(c.VocabSize, c.HiddenSize, 0, 0, Norm: null, c.LayerNormEps, Dropout: c.HiddenDropoutProb),
            block, c.NumHiddenLayers, ShareLayers: false, Pooler: false, MlmWidth: c.HiddenSize, MlmActivation: "linear", MlmNorm: null,
            MlmTransform: false, MlmBias: false, FinalNorm: true,
            Decoder: new DecoderOptions(c.NumDecoderLayers ?? c.NumHiddenLayers, block with { CrossAttention = true }),
            RelativeBias: new RelativeBiasOptions(c.RelativeAttentionNumBuckets, c.RelativeAttentionMaxDistance),
            TiedHead: c.TieWordEmbeddings, HeadScale: ScaleOutputs(c) ? Math.Pow(c.HiddenSize, -0.5) : null);
    }

    /// <summary>
    /// A separate head in the checkpoint means untied (Hugging Face drops <c>lm_head</c> when tied; bert4keras
    /// configs do not say); mT5's TF checkpoints name their norms <c>rms_norm</c>. The scaling rule is written into
    /// the config so a saved model reloads the same.
    /// </summary>
    public override (ModelFamily Family, TransformerConfig Config) ForCheckpoint(TransformerConfig config, Checkpoint checkpoint)
    {
        if ((checkpoint.TryGetEntry("lm_head.weight", out _) || checkpoint.TryGetEntry("decoder/logits/kernel", out _)) && config.TieWordEmbeddings)
            config = config with { TieWordEmbeddings = false };
        config = config with { ScaleDecoderOutputs = ScaleOutputs(config) };
        string norm = checkpoint.TryGetEntry("encoder/rms_norm/scale", out _) ? "rms_norm" : "layer_norm";
        return (new T5Family(name, norm), config);
    }

    /// <summary>
    /// T5's initialisation (Mesh TensorFlow, as Hugging Face's <c>_init_weights</c>): the query carries the missing
    /// 1/√d, N(0, (d_model·d_kv)^-½); keys, values, wi, the relative bias and an untied head N(0, d_model^-½); outputs
    /// N(0, fan_in^-½); the embedding N(0, 1); norms 1. TorchSharp's uniform defaults train far slower.
    /// </summary>
    public override void Initialize(TransformerModel model)
    {
        var c = model.Config;
        double d = c.HiddenSize, dkv = c.DKv ?? c.HiddenSize / c.NumAttentionHeads;
        long qRows = (long)(c.NumAttentionHeads * dkv);
        foreach (var (n, p) in model.named_parameters())
        {
            if (n.EndsWith("norm.weight", StringComparison.Ordinal)) { p.fill_(1); continue; }
            if (n == "embeddings.word.weight") { p.normal_(0, 1); continue; }
            p.normal_(0, Math.Pow(d, -0.5));                                                   // k, v, wi, relative bias, lm_head
            if (n.EndsWith(".qkv.weight", StringComparison.Ordinal)) p.narrow(0, 0, qRows).normal_(0, Math.Pow(d * dkv, -0.5));
            else if (n.EndsWith(".q.weight", StringComparison.Ordinal)) p.normal_(0, Math.Pow(d * dkv, -0.5));
            else if (n.EndsWith(".output.weight", StringComparison.Ordinal)) p.normal_(0, Math.Pow(qRows, -0.5));
            else if (n.EndsWith(".ffn.outer.weight", StringComparison.Ordinal)) p.normal_(0, Math.Pow(c.IntermediateSize, -0.5));
        }
    }

    /// <inheritdoc/>
    public override IEnumerable<NameMapping> Names(TransformerConfig c, int layers)
    {
        bool gated = FeedForward(c).Gated;
        yield return new("embeddings.word.weight", ["shared.weight"], ["shared/embedding"], false);
        foreach (var m in Stack("encoder", "layers", layers)) yield return m;
        yield return new("relative_bias.weight", ["encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"], ["encoder/block_000/layer_000/SelfAttention/relative_attention_bias"], true);
        yield return new("final_norm.weight", ["encoder.final_layer_norm.weight"], [FinalNorm("encoder")], false);
        foreach (var m in Stack("decoder", "decoder_layers", c.NumDecoderLayers ?? c.NumHiddenLayers)) yield return m;
        yield return new("decoder_relative_bias.weight", ["decoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"], ["decoder/block_000/layer_000/SelfAttention/relative_attention_bias"], true);
        yield return new("decoder_norm.weight", ["decoder.final_layer_norm.weight"], [FinalNorm("decoder")], false);
        yield return new("lm_head.weight", ["lm_head.weight"], ["decoder/logits/kernel"], true);

        IEnumerable<NameMapping> Stack(string stack, string internalStack, int count)
        {
            bool decoder = stack == "decoder";
            for (int i = 0; i < count; i++)
            {
                string l = $"{internalStack}.{i}", hf = $"{stack}.block.{i}.layer", tf = $"{stack}/block_{i:000}/layer_";
                string Tf(int sub, string rest) => $"{tf}{sub:000}/{rest}";
                yield return new($"{l}.attention.qkv.weight", new[] { "q", "k", "v" }.Select(x => $"{hf}.0.SelfAttention.{x}.weight").ToArray(),
                    new[] { "q", "k", "v" }.Select(x => Tf(0, $"SelfAttention/{x}")).ToArray(), true);
                yield return new($"{l}.attention.output.weight", [$"{hf}.0.SelfAttention.o.weight"], [Tf(0, "SelfAttention/o")], true);
                yield return new($"{l}.attention_norm.weight", [$"{hf}.0.layer_norm.weight"], [Tf(0, $"{tensorFlowNorm}/scale")], false);
                int ff = 1;
                if (decoder)
                {
                    ff = 2;
                    yield return new($"{l}.cross_attention.q.weight", [$"{hf}.1.EncDecAttention.q.weight"], [Tf(1, "EncDecAttention/q")], true);
                    yield return new($"{l}.cross_attention.kv.weight", [$"{hf}.1.EncDecAttention.k.weight", $"{hf}.1.EncDecAttention.v.weight"],
                        [Tf(1, "EncDecAttention/k"), Tf(1, "EncDecAttention/v")], true);
                    yield return new($"{l}.cross_attention.output.weight", [$"{hf}.1.EncDecAttention.o.weight"], [Tf(1, "EncDecAttention/o")], true);
                    yield return new($"{l}.cross_attention_norm.weight", [$"{hf}.1.layer_norm.weight"], [Tf(1, $"{tensorFlowNorm}/scale")], false);
                }
                string[] wi = gated ? ["wi_0", "wi_1"] : ["wi"];
                yield return new($"{l}.ffn.inner.weight", wi.Select(w => $"{hf}.{ff}.DenseReluDense.{w}.weight").ToArray(),
                    wi.Select(w => Tf(ff, $"DenseReluDense/{w}/kernel")).ToArray(), true);
                yield return new($"{l}.ffn.outer.weight", [$"{hf}.{ff}.DenseReluDense.wo.weight"], [Tf(ff, "DenseReluDense/wo/kernel")], true);
                yield return new($"{l}.ffn_norm.weight", [$"{hf}.{ff}.layer_norm.weight"], [Tf(ff, $"{tensorFlowNorm}/scale")], false);
            }
        }

        string FinalNorm(string stack) => tensorFlowNorm == "rms_norm" ? $"{stack}/rms_norm/scale" : $"{stack}/final_layer_norm/scale";
    }
}
