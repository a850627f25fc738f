namespace Bert4Sharp.Models;

using Bert4Sharp.Layers;

/// <summary>
/// GPT-2 (and CPM-LM in GPT-2 layout; bert4keras <c>gpt2</c>): token + learned position embeddings without a norm,
/// pre-norm blocks (<see cref="NormPlacement.Pre"/>) under a causal mask, a final LayerNorm, and an LM head tied to the
/// token embedding. Hugging Face stores Conv1D weights [in, out] with q, k, v fused in <c>c_attn</c>; bert4keras's
/// TensorFlow names are BERT's with <c>bert/</c> → <c>gpt/</c>, <c>encoder</c> → <c>transformer</c> and the norms
/// named <c>…/input/LayerNorm</c> (they come before their sub-layer), plus the final <c>gpt/output/LayerNorm</c>.
/// </summary>
public sealed class Gpt2Family : ModelFamily
{
    /// <inheritdoc/>
    public override string Name => "gpt2";

    /// <inheritdoc/>
    public override string? BasePrefix => "transformer";

    /// <inheritdoc/>
    public override IReadOnlyList<Application>? Applications => [Application.LanguageModel];

    /// <inheritdoc/>
    public override IReadOnlyList<string> Ignorable => [.. base.Ignorable, ".attn.bias", ".attn.masked_bias", "lm_head.weight"];

    /// <inheritdoc/>
    public override ArchitectureOptions Architecture(TransformerConfig c)
    {
        var attention = new AttentionOptions(c.HiddenSize, c.NumAttentionHeads, c.HeadSize, Dropout: c.AttentionProbsDropoutProb);
        return new ArchitectureOptions(
            new EmbeddingOptions(c.VocabSize, c.HiddenSize, c.MaxPositionEmbeddings, SegmentVocab: 0, Norm: null, c.LayerNormEps, Dropout: c.HiddenDropoutProb),
            new BlockOptions(attention, c.NInner ?? 4 * c.HiddenSize, c.HiddenAct, NormKind.LayerNorm, c.LayerNormEps, Dropout: c.HiddenDropoutProb, Placement: NormPlacement.Pre),
            c.NumHiddenLayers, ShareLayers: false, Pooler: false, MlmWidth: c.HiddenSize, MlmActivation: "linear", MlmNorm: null,
            MlmTransform: false, MlmBias: false, FinalNorm: true);
    }

    /// <inheritdoc/>
    public override IEnumerable<NameMapping> Names(TransformerConfig c, int layers)
    {
        const string hf = "transformer";
        yield return new("embeddings.word.weight", [$"{hf}.wte.weight"], ["gpt/embeddings/word_embeddings"], false);
        yield return new("embeddings.position.weight", [$"{hf}.wpe.weight"], ["gpt/embeddings/position_embeddings"], false);
        for (int i = 0; i < layers; i++)
        {
            string l = $"layers.{i}", h = $"{hf}.h.{i}", tf = $"gpt/transformer/layer_{i}";
            foreach (var m in LayerNorm($"{l}.attention_norm", $"{h}.ln_1", $"{tf}/attention/input/LayerNorm")) yield return m;
            yield return new($"{l}.attention.qkv.weight", [$"{h}.attn.c_attn.weight"], [$"{tf}/attention/self/query/kernel", $"{tf}/attention/self/key/kernel", $"{tf}/attention/self/value/kernel"], true, TransposeHuggingFace: true);
            yield return new($"{l}.attention.qkv.bias", [$"{h}.attn.c_attn.bias"], [$"{tf}/attention/self/query/bias", $"{tf}/attention/self/key/bias", $"{tf}/attention/self/value/bias"], false);
            foreach (var m in Conv1D($"{l}.attention.output", $"{h}.attn.c_proj", $"{tf}/attention/output/dense")) yield return m;
            foreach (var m in LayerNorm($"{l}.ffn_norm", $"{h}.ln_2", $"{tf}/input/LayerNorm")) yield return m;
            foreach (var m in Conv1D($"{l}.ffn.inner", $"{h}.mlp.c_fc", $"{tf}/intermediate/dense")) yield return m;
            foreach (var m in Conv1D($"{l}.ffn.outer", $"{h}.mlp.c_proj", $"{tf}/output/dense")) yield return m;
        }
        foreach (var m in LayerNorm("final_norm", $"{hf}.ln_f", "gpt/output/LayerNorm")) yield return m;
    }
}
