namespace Bert4Sharp.Models;

using Bert4Sharp.Layers;

/// <summary>One parameter's names in checkpoints: Hugging Face (PyTorch) and TensorFlow (bert4keras-era) spellings.</summary>
/// <param name="Internal">Bert4Sharp's parameter name.</param>
/// <param name="HuggingFace">HF tensors concatenated along dim 0 to form it (q, k, v for the fused projection).</param>
/// <param name="TensorFlow">TF variables concatenated likewise (after transposing kernels).</param>
/// <param name="TransposeTensorFlow">TF stores dense kernels as [in, out]: transpose to [out, in].</param>
/// <param name="TransposeHuggingFace">The HF tensor is [in, out] too (GPT's Conv1D): transpose on load and back on save.</param>
public sealed record NameMapping(string Internal, string[] HuggingFace, string[] TensorFlow, bool TransposeTensorFlow, bool TransposeHuggingFace = false);

/// <summary>
/// A model family (bert4keras's <c>model=</c> argument): how a config becomes <see cref="ArchitectureOptions"/>,
/// and the checkpoint name table next to it. Add a family by adding a subclass here.
/// </summary>
public abstract class ModelFamily
{
    /// <summary>Name as given to <see cref="TransformerModels.Build(string, string?, string, Application, BuildOptions?)"/>.</summary>
    public abstract string Name { get; }

    /// <summary>The architecture this family builds from <paramref name="c"/>.</summary>
    public abstract ArchitectureOptions Architecture(TransformerConfig c);

    /// <summary>The name table for a model with <paramref name="layers"/> distinct blocks.</summary>
    public abstract IEnumerable<NameMapping> Names(TransformerConfig c, int layers);

    /// <summary>
    /// The applications this family makes sense with (GPT is causal, T5 an encoder–decoder), or null for every
    /// application but <see cref="Application.Seq2Seq"/>.
    /// </summary>
    public virtual IReadOnlyList<Application>? Applications => null;

    /// <summary>
    /// The Hugging Face base-model prefix (transformers' <c>base_model_prefix</c>: <c>bert</c>, <c>roformer</c>,
    /// <c>transformer</c>…). Checkpoints saved from the base model (sentence-transformers, ONNX exports of
    /// <c>BertModel</c>) have every name without it; the loader accepts both.
    /// </summary>
    public virtual string? BasePrefix => null;

    /// <summary>Throws when <paramref name="application"/> does not fit the family.</summary>
    /// <exception cref="ArgumentException">Names the applications that fit.</exception>
    public void CheckApplication(Application application)
    {
        if (Applications is { } allowed ? !allowed.Contains(application) : application == Application.Seq2Seq)
            throw new ArgumentException($"{Name} is built for {(Applications is { } a ? string.Join(" or ", a.Select(x => "Application." + x)) : "any application but Application.Seq2Seq")}, got Application.{application}");
    }

    /// <summary>
    /// The family's initialisation of a fresh model (what pretraining from scratch expects). Default, BERT's and
    /// GPT-2's: N(0, initializer_range) for matrices and embeddings, zero biases, unit norm scales; TorchSharp's
    /// defaults (N(0, 1) embeddings under a tied decoder) would start MLM logits with a standard deviation near √hidden.
    /// </summary>
    public virtual void Initialize(TransformerModel model)
    {
        foreach (var (name, p) in model.named_parameters())
        {
            if (name.Contains(".kernel.", StringComparison.Ordinal)) continue;              // research kernels initialise themselves
            bool norm = name.Contains("norm", StringComparison.Ordinal);
            if (norm && p.dim() >= 2) continue;                                       // conditional LayerNorm starts at zero: the plain model
            if (p.dim() >= 2) p.normal_(0, model.Config.InitializerRange);
            else if (name.EndsWith("bias", StringComparison.Ordinal)) p.zero_();
            else if (norm && name.EndsWith(".weight", StringComparison.Ordinal)) p.fill_(1);
        }
    }

    /// <summary>
    /// What a checkpoint says that its config does not (T5: a separate output layer, mT5's norm names); returns
    /// the family and config to build. Default: as they are.
    /// </summary>
    public virtual (ModelFamily Family, TransformerConfig Config) ForCheckpoint(TransformerConfig config, Checkpoints.Checkpoint checkpoint) => (this, config);

    /// <summary>Checkpoint tensors that carry nothing the model needs (tied copies, buffers), matched by suffix.</summary>
    public virtual IReadOnlyList<string> Ignorable => ["position_ids", ".decoder.weight", ".decoder.bias", "embed_positions.weight"];

    /// <summary>All families, by name and alias.</summary>
    public static readonly IReadOnlyDictionary<string, ModelFamily> All = new Dictionary<string, ModelFamily>(StringComparer.OrdinalIgnoreCase)
    {
        ["bert"] = new BertFamily(), ["roberta"] = new RobertaFamily(),
        ["albert"] = new AlbertFamily(), ["electra"] = new ElectraFamily(), ["roformer"] = new RoFormerFamily(),
        ["roformer_v2"] = new RoFormerV2Family(), ["roformerv2"] = new RoFormerV2Family(), ["nezha"] = new NezhaFamily(),
        ["gau_alpha"] = new GauAlphaFamily(), ["gau-alpha"] = new GauAlphaFamily(),
        ["gpt"] = new GptFamily(), ["openai-gpt"] = new GptFamily(), ["gpt2_ml"] = new Gpt2MlFamily(), ["gpt2-ml"] = new Gpt2MlFamily(),
        ["gpt2"] = new Gpt2Family(), ["cpm"] = new Gpt2Family(), ["t5"] = new T5Family(), ["mt5"] = new T5Family("mt5"),
    };

    /// <summary>Looks a family up.</summary>
    /// <exception cref="ArgumentException">Unknown name; lists the known ones.</exception>
    public static ModelFamily Get(string name) => All.TryGetValue(name, out var f)
        ? f : throw new ArgumentException($"unknown model family '{name}'; known: {string.Join(", ", All.Keys.Order())}");

    /// <summary>
    /// The family's name table for <paramref name="c"/>, followed by the research kit's parameters it does not name
    /// (<see cref="IsResearchParameter"/>), which no published checkpoint of the family has: those are saved and loaded
    /// as <c>bert4sharp.{internal name}</c> (TF: <c>bert4sharp/{internal name}</c>).
    /// </summary>
    public IEnumerable<NameMapping> NamesWithResearch(TransformerConfig c, int layers, IEnumerable<string> parameterNames)
    {
        var table = Names(c, layers).ToList();
        var named = table.Select(m => m.Internal).ToHashSet(StringComparer.Ordinal);
        return table.Concat(parameterNames.Where(n => IsResearchParameter(n) && !named.Contains(n))
            .Select(n => new NameMapping(n, ["bert4sharp." + n], ["bert4sharp/" + n], false)));
    }

    /// <summary>
    /// Parameters that only the research kit's config keys create: research kernels (<c>….kernel.…</c>), Transformer-XL
    /// positions (<c>….attention.relative.…</c>), DeBERTa's relative embeddings and T5 buckets on another family.
    /// </summary>
    public static bool IsResearchParameter(string name) =>
        name.Contains(".kernel.", StringComparison.Ordinal) || name.Contains(".attention.relative.", StringComparison.Ordinal)
        || name.StartsWith("relative_embeddings", StringComparison.Ordinal) || name.StartsWith("relative_bias.", StringComparison.Ordinal);

    // Helpers that spell the usual tables.
    internal static IEnumerable<NameMapping> Dense(string internalName, string hf, string tf, bool bias = true)
    {
        yield return new(internalName + ".weight", [hf + ".weight"], [tf + "/kernel"], true);
        if (bias) yield return new(internalName + ".bias", [hf + ".bias"], [tf + "/bias"], false);
    }

    internal static IEnumerable<NameMapping> LayerNorm(string internalName, string hf, string tf)
    {
        yield return new(internalName + ".weight", [hf + ".weight"], [tf + "/gamma"], false);
        yield return new(internalName + ".bias", [hf + ".bias"], [tf + "/beta"], false);
    }

    internal static IEnumerable<NameMapping> Qkv(string internalName, string hf, string tf, bool bias = true)
    {
        yield return new(internalName + ".weight", [hf + ".query.weight", hf + ".key.weight", hf + ".value.weight"],
            [tf + "/query/kernel", tf + "/key/kernel", tf + "/value/kernel"], true);
        if (bias) yield return new(internalName + ".bias", [hf + ".query.bias", hf + ".key.bias", hf + ".value.bias"],
            [tf + "/query/bias", tf + "/key/bias", tf + "/value/bias"], false);
    }

    internal static IEnumerable<NameMapping> Embedding(string internalName, string hf, string tf) =>
        [new(internalName + ".weight", [hf + ".weight"], [tf], false)];

    /// <summary>A dense layer stored [in, out] in both namings (Hugging Face's GPT Conv1D, TensorFlow's kernel).</summary>
    internal static IEnumerable<NameMapping> Conv1D(string internalName, string hfName, string tfName)
    {
        yield return new(internalName + ".weight", [hfName + ".weight"], [tfName + "/kernel"], true, TransposeHuggingFace: true);
        yield return new(internalName + ".bias", [hfName + ".bias"], [tfName + "/bias"], false);
    }
}

/// <summary>BERT (and RoBERTa in BERT layout, as the Chinese RoBERTa releases are): learned positions, post-norm, pooler, NSP.</summary>
public sealed class BertFamily(string name = "bert") : ModelFamily
{
    /// <inheritdoc/>
    public override string? BasePrefix => name;

    /// <inheritdoc/>
    public override string Name => name;

    /// <inheritdoc/>
    public override ArchitectureOptions Architecture(TransformerConfig c) => new(
        new EmbeddingOptions(c.VocabSize, c.EmbeddingWidth, c.MaxPositionEmbeddings, c.TypeVocabSize, NormKind.LayerNorm, c.LayerNormEps,
            c.EmbeddingWidth != c.HiddenSize ? c.HiddenSize : null, c.HiddenDropoutProb),
        new BlockOptions(new AttentionOptions(c.HiddenSize, c.NumAttentionHeads, c.HeadSize, Dropout: c.AttentionProbsDropoutProb),
            c.IntermediateSize, c.HiddenAct, NormKind.LayerNorm, c.LayerNormEps, Dropout: c.HiddenDropoutProb),
        c.NumHiddenLayers, ShareLayers: false, Pooler: true, MlmWidth: c.EmbeddingWidth, MlmActivation: c.HiddenAct, MlmNorm: NormKind.LayerNorm);

    /// <inheritdoc/>
    public override IEnumerable<NameMapping> Names(TransformerConfig c, int layers) => BertNames(name, "bert", layers, c);

    internal static IEnumerable<NameMapping> BertNames(string p, string tfp, int layers, TransformerConfig c, bool positions = true)
    {
        foreach (var m in Embedding("embeddings.word", $"{p}.embeddings.word_embeddings", $"{tfp}/embeddings/word_embeddings")) yield return m;
        if (positions) foreach (var m in Embedding("embeddings.position", $"{p}.embeddings.position_embeddings", $"{tfp}/embeddings/position_embeddings")) yield return m;
        foreach (var m in Embedding("embeddings.segment", $"{p}.embeddings.token_type_embeddings", $"{tfp}/embeddings/token_type_embeddings")) yield return m;
        foreach (var m in LayerNorm("embeddings.norm", $"{p}.embeddings.LayerNorm", $"{tfp}/embeddings/LayerNorm")) yield return m;
        for (int i = 0; i < layers; i++)
        {
            string l = $"layers.{i}", hf = $"{p}.encoder.layer.{i}", tf = $"{tfp}/encoder/layer_{i}";
            foreach (var m in Qkv($"{l}.attention.qkv", $"{hf}.attention.self", $"{tf}/attention/self")) yield return m;
            foreach (var m in Dense($"{l}.attention.output", $"{hf}.attention.output.dense", $"{tf}/attention/output/dense")) yield return m;
            foreach (var m in LayerNorm($"{l}.attention_norm", $"{hf}.attention.output.LayerNorm", $"{tf}/attention/output/LayerNorm")) yield return m;
            foreach (var m in Dense($"{l}.ffn.inner", $"{hf}.intermediate.dense", $"{tf}/intermediate/dense")) yield return m;
            foreach (var m in Dense($"{l}.ffn.outer", $"{hf}.output.dense", $"{tf}/output/dense")) yield return m;
            foreach (var m in LayerNorm($"{l}.ffn_norm", $"{hf}.output.LayerNorm", $"{tf}/output/LayerNorm")) yield return m;
        }
        foreach (var m in Dense("pooler", $"{p}.pooler.dense", $"{tfp}/pooler/dense")) yield return m;
        foreach (var m in Dense("mlm_dense", "cls.predictions.transform.dense", "cls/predictions/transform/dense")) yield return m;
        foreach (var m in LayerNorm("mlm_norm", "cls.predictions.transform.LayerNorm", "cls/predictions/transform/LayerNorm")) yield return m;
        yield return new("mlm_bias", ["cls.predictions.bias"], ["cls/predictions/output_bias"], false);
        // NSP weights are stored [2, H] in TF already (output_weights), so no transpose.
        yield return new("sentence.weight", ["cls.seq_relationship.weight"], ["cls/seq_relationship/output_weights"], false);
        yield return new("sentence.bias", ["cls.seq_relationship.bias"], ["cls/seq_relationship/output_bias"], false);
    }
}

/// <summary>ALBERT: factorised embedding (E → H), one block shared by every layer, sentence-order head.</summary>
public sealed class AlbertFamily : ModelFamily
{
    /// <inheritdoc/>
    public override string? BasePrefix => "albert";

    /// <inheritdoc/>
    public override string Name => "albert";

    /// <inheritdoc/>
    public override ArchitectureOptions Architecture(TransformerConfig c)
    {
        if (c.NumHiddenGroups != 1 || c.InnerGroupNum != 1)
            throw new NotSupportedException($"ALBERT with num_hidden_groups={c.NumHiddenGroups}, inner_group_num={c.InnerGroupNum} is not supported yet (every released ALBERT uses 1 and 1)");
        return new BertFamily().Architecture(c) with
        {
            Embeddings = new EmbeddingOptions(c.VocabSize, c.EmbeddingWidth, c.MaxPositionEmbeddings, c.TypeVocabSize, NormKind.LayerNorm, c.LayerNormEps, c.HiddenSize, c.HiddenDropoutProb),
            ShareLayers = true,
        };
    }

    /// <inheritdoc/>
    public override IEnumerable<NameMapping> Names(TransformerConfig c, int layers)
    {
        foreach (var m in BertFamily.BertNames("albert", "bert", 0, c).Where(m => m.Internal.StartsWith("embeddings.", StringComparison.Ordinal))) yield return m;
        foreach (var m in Dense("embeddings.project", "albert.encoder.embedding_hidden_mapping_in", "bert/encoder/embedding_hidden_mapping_in")) yield return m;
        const string hf = "albert.encoder.albert_layer_groups.0.albert_layers.0", tf = "bert/encoder/transformer/group_0/inner_group_0";
        foreach (var m in Qkv("layers.0.attention.qkv", $"{hf}.attention", $"{tf}/attention_1/self")) yield return m;
        foreach (var m in Dense("layers.0.attention.output", $"{hf}.attention.dense", $"{tf}/attention_1/output/dense")) yield return m;
        foreach (var m in LayerNorm("layers.0.attention_norm", $"{hf}.attention.LayerNorm", $"{tf}/LayerNorm")) yield return m;
        foreach (var m in Dense("layers.0.ffn.inner", $"{hf}.ffn", $"{tf}/ffn_1/intermediate/dense")) yield return m;
        foreach (var m in Dense("layers.0.ffn.outer", $"{hf}.ffn_output", $"{tf}/ffn_1/intermediate/output/dense")) yield return m;
        foreach (var m in LayerNorm("layers.0.ffn_norm", $"{hf}.full_layer_layer_norm", $"{tf}/LayerNorm_1")) yield return m;
        foreach (var m in Dense("pooler", "albert.pooler", "bert/pooler/dense")) yield return m;
        foreach (var m in Dense("mlm_dense", "predictions.dense", "cls/predictions/transform/dense")) yield return m;
        foreach (var m in LayerNorm("mlm_norm", "predictions.LayerNorm", "cls/predictions/transform/LayerNorm")) yield return m;
        yield return new("mlm_bias", ["predictions.bias"], ["cls/predictions/output_bias"], false);
        yield return new("sentence.weight", ["sop_classifier.classifier.weight"], ["cls/seq_relationship/output_weights"], false);
        yield return new("sentence.bias", ["sop_classifier.classifier.bias"], ["cls/seq_relationship/output_bias"], false);
    }
}

/// <summary>ELECTRA discriminator: BERT blocks over a factorised embedding, replaced-token head.</summary>
public sealed class ElectraFamily : ModelFamily
{
    /// <inheritdoc/>
    public override string? BasePrefix => "electra";

    /// <inheritdoc/>
    public override string Name => "electra";

    /// <inheritdoc/>
    public override ArchitectureOptions Architecture(TransformerConfig c) => new BertFamily().Architecture(c) with { Pooler = false };

    /// <inheritdoc/>
    public override IEnumerable<NameMapping> Names(TransformerConfig c, int layers)
    {
        foreach (var m in BertFamily.BertNames("electra", "electra", layers, c).Where(m => !m.Internal.StartsWith("pooler", StringComparison.Ordinal)
            && !m.Internal.StartsWith("mlm", StringComparison.Ordinal) && !m.Internal.StartsWith("sentence", StringComparison.Ordinal))) yield return m;
        foreach (var m in Dense("embeddings.project", "electra.embeddings_project", "electra/embeddings_project")) yield return m;
        foreach (var m in Dense("discriminator_dense", "discriminator_predictions.dense", "discriminator_predictions/dense")) yield return m;
        foreach (var m in Dense("discriminator_output", "discriminator_predictions.dense_prediction", "discriminator_predictions/dense_1")) yield return m;
    }
}

/// <summary>RoFormer: BERT with rotary positions instead of a learned table (Su et al.).</summary>
public sealed class RoFormerFamily : ModelFamily
{
    /// <inheritdoc/>
    public override string? BasePrefix => "roformer";

    /// <inheritdoc/>
    public override string Name => "roformer";

    /// <inheritdoc/>
    public override ArchitectureOptions Architecture(TransformerConfig c)
    {
        var b = new BertFamily().Architecture(c);
        return b with
        {
            Embeddings = b.Embeddings with { MaxPositions = 0 },
            Layer = b.Layer with { Attention = b.Layer.Attention with { Position = AttentionPosition.Rotary, RotateValues = c.RotaryValue } },
        };
    }

    /// <inheritdoc/>
    public override IEnumerable<NameMapping> Names(TransformerConfig c, int layers)
    {
        foreach (var m in BertFamily.BertNames("roformer", "bert", layers, c, positions: false)) yield return m;
        foreach (var m in Dense("embeddings.project", "roformer.embeddings_project", "bert/embeddings_project")) yield return m;
    }
}

/// <summary>
/// RoFormerV2 (ZhuiyiTechnology; bert4keras <c>RoFormerV2</c>): RoFormer without biases, with parameter-free
/// RMS-style norms (ε = 1e-7, Keras's epsilon), dropout before the embedding norm, and an MLM head that is
/// just the tied embedding (no transform, no bias). Ships as TensorFlow checkpoints with BERT names.
/// </summary>
public sealed class RoFormerV2Family : ModelFamily
{
    /// <summary>bert4keras uses Keras's default epsilon for these norms.</summary>
    public const double Epsilon = 1e-7;

    /// <inheritdoc/>
    public override string? BasePrefix => "roformer";

    /// <inheritdoc/>
    public override string Name => "roformer_v2";

    /// <inheritdoc/>
    public override ArchitectureOptions Architecture(TransformerConfig c) => new(
        new EmbeddingOptions(c.VocabSize, c.EmbeddingWidth, 0, c.TypeVocabSize, NormKind.ScaleFree, Epsilon,
            c.EmbeddingWidth != c.HiddenSize ? c.HiddenSize : null, c.HiddenDropoutProb, DropoutBeforeNorm: true, ProjectBias: false),
        new BlockOptions(new AttentionOptions(c.HiddenSize, c.NumAttentionHeads, c.HeadSize, UseBias: false, Position: AttentionPosition.Rotary,
            Dropout: c.AttentionProbsDropoutProb), c.IntermediateSize, c.HiddenAct, NormKind.ScaleFree, Epsilon, UseBias: false, Dropout: c.HiddenDropoutProb),
        c.NumHiddenLayers, ShareLayers: false, Pooler: false, MlmWidth: c.EmbeddingWidth, MlmActivation: "linear", MlmNorm: null,
        MlmTransform: false, MlmBias: false);

    /// <inheritdoc/>
    public override IEnumerable<NameMapping> Names(TransformerConfig c, int layers)
    {
        // bert4keras's RoFormer table with every beta, gamma and bias removed; HF-style names for saving.
        yield return new("embeddings.word.weight", ["roformer.embeddings.word_embeddings.weight"], ["bert/embeddings/word_embeddings"], false);
        yield return new("embeddings.segment.weight", ["roformer.embeddings.token_type_embeddings.weight"], ["bert/embeddings/token_type_embeddings"], false);
        yield return new("embeddings.project.weight", ["roformer.embeddings_project.weight"], ["bert/encoder/embedding_hidden_mapping_in/kernel"], true);
        for (int i = 0; i < layers; i++)
        {
            string l = $"layers.{i}", hf = $"roformer.encoder.layer.{i}", tf = $"bert/encoder/layer_{i}";
            foreach (var m in Qkv($"{l}.attention.qkv", $"{hf}.attention.self", $"{tf}/attention/self", bias: false)) yield return m;
            foreach (var m in Dense($"{l}.attention.output", $"{hf}.attention.output.dense", $"{tf}/attention/output/dense", bias: false)) yield return m;
            foreach (var m in Dense($"{l}.ffn.inner", $"{hf}.intermediate.dense", $"{tf}/intermediate/dense", bias: false)) yield return m;
            foreach (var m in Dense($"{l}.ffn.outer", $"{hf}.output.dense", $"{tf}/output/dense", bias: false)) yield return m;
        }
    }
}

/// <summary>
/// NEZHA (Huawei): BERT with functional relative positions instead of a position table
/// (<see cref="AttentionPosition.TypicalRelative"/>, clipped at 64), as bert4keras's <c>NEZHA</c>.
/// </summary>
public sealed class NezhaFamily : ModelFamily
{
    /// <inheritdoc/>
    public override string? BasePrefix => "nezha";

    /// <inheritdoc/>
    public override string Name => "nezha";

    /// <inheritdoc/>
    public override IReadOnlyList<string> Ignorable => [.. base.Ignorable, "relative_positions_encoding.positions_encoding"];

    /// <inheritdoc/>
    public override ArchitectureOptions Architecture(TransformerConfig c)
    {
        var b = new BertFamily().Architecture(c);
        return b with
        {
            Embeddings = b.Embeddings with { MaxPositions = 0 },
            Layer = b.Layer with { Attention = b.Layer.Attention with { Position = AttentionPosition.TypicalRelative, MaxRelativePosition = 64 } },
        };
    }

    /// <inheritdoc/>
    public override IEnumerable<NameMapping> Names(TransformerConfig c, int layers) =>
        BertFamily.BertNames("nezha", "bert", layers, c, positions: false);
}

/// <summary>
/// GAU-α (ZhuiyiTechnology; kexue.fm/archives/9052): RoFormerV2's embeddings and head, with every block a
/// gated attention unit (swish, softmax_plus, rotary, no biases) followed by a parameter-free norm.
/// TF names <c>GAU_alpha/encoder/layer_N/gau/…</c>.
/// </summary>
public sealed class GauAlphaFamily : ModelFamily
{
    /// <inheritdoc/>
    public override string? BasePrefix => "gau_alpha";

    /// <inheritdoc/>
    public override string Name => "gau_alpha";

    /// <inheritdoc/>
    public override ArchitectureOptions Architecture(TransformerConfig c)
    {
        var v2 = new RoFormerV2Family().Architecture(c);
        int keySize = c.AttentionKeySize ?? 128;
        return v2 with { Gau = new GauOptions(c.HiddenSize, c.IntermediateSize, keySize, c.HiddenAct, AttentionKernels.SoftmaxPlus, UseBias: false, Rotary: true, Dropout: c.AttentionProbsDropoutProb) };
    }

    /// <inheritdoc/>
    public override IEnumerable<NameMapping> Names(TransformerConfig c, int layers)
    {
        yield return new("embeddings.word.weight", ["gau_alpha.embeddings.word_embeddings.weight"], ["bert/embeddings/word_embeddings"], false);
        yield return new("embeddings.segment.weight", ["gau_alpha.embeddings.token_type_embeddings.weight"], ["bert/embeddings/token_type_embeddings"], false);
        for (int i = 0; i < layers; i++)
        {
            string l = $"layers.{i}.gau", hf = $"gau_alpha.encoder.layer.{i}.gau", tf = $"GAU_alpha/encoder/layer_{i}/gau";
            yield return new($"{l}.i_dense.weight", [$"{hf}.i_dense.weight"], [$"{tf}/i_dense/kernel"], true);
            yield return new($"{l}.o_dense.weight", [$"{hf}.o_dense.weight"], [$"{tf}/o_dense/kernel"], true);
            yield return new($"{l}.q_gamma", [$"{hf}.q_scaleoffset.gamma"], [$"{tf}/q_scaleoffset/gamma"], false);
            yield return new($"{l}.k_gamma", [$"{hf}.k_scaleoffset.gamma"], [$"{tf}/k_scaleoffset/gamma"], false);
        }
    }
}

/// <summary>
/// RoBERTa in Hugging Face layout (<c>roberta.*</c>, <c>lm_head.*</c>): BERT blocks, positions counted from the
/// padding id + 1, one segment, no next-sentence head. Chinese RoBERTa releases (hfl) use the BERT layout:
/// load those with <c>bert</c>.
/// </summary>
public sealed class RobertaFamily : ModelFamily
{
    /// <inheritdoc/>
    public override string? BasePrefix => "roberta";

    /// <inheritdoc/>
    public override string Name => "roberta";

    /// <inheritdoc/>
    public override ArchitectureOptions Architecture(TransformerConfig c)
    {
        var b = new BertFamily().Architecture(c);
        return b with { Embeddings = b.Embeddings with { PositionsFromPadding = c.PadTokenId ?? 1 } };
    }

    /// <inheritdoc/>
    public override IEnumerable<NameMapping> Names(TransformerConfig c, int layers)
    {
        foreach (var m in BertFamily.BertNames("roberta", "bert", layers, c).Where(m => !m.Internal.StartsWith("mlm", StringComparison.Ordinal) && !m.Internal.StartsWith("sentence", StringComparison.Ordinal)))
            yield return m;
        foreach (var m in Dense("mlm_dense", "lm_head.dense", "cls/predictions/transform/dense")) yield return m;
        foreach (var m in LayerNorm("mlm_norm", "lm_head.layer_norm", "cls/predictions/transform/LayerNorm")) yield return m;
        yield return new("mlm_bias", ["lm_head.bias"], ["cls/predictions/output_bias"], false);
    }
}

/// <summary>
/// GPT (bert4keras <c>gpt</c>: OpenAI GPT, CDial-GPT): BERT's post-norm blocks under a causal mask (build it with
/// <see cref="Application.LanguageModel"/>), token + position (+ segment) embeddings with no norm, and an LM head
/// tied to the token embedding with no transform and no bias. TensorFlow names are BERT's with <c>bert/</c> →
/// <c>gpt/</c> and <c>encoder</c> → <c>transformer</c>; Hugging Face's <c>openai-gpt</c> stores Conv1D weights
/// [in, out] with q, k, v fused in <c>c_attn</c> (its config, <c>model_type: openai-gpt</c>, implies no segment
/// table and a 4×hidden feed-forward; <see cref="TransformerConfig.FromJson"/> fills those in). A segment table
/// (bert4keras configs with <c>segment_vocab_size</c>) has no Hugging Face counterpart and is saved as
/// <c>transformer.segment_embed.weight</c>.
/// </summary>
public sealed class GptFamily : ModelFamily
{
    /// <inheritdoc/>
    public override string? BasePrefix => "transformer";

    /// <inheritdoc/>
    public override string Name => "gpt";

    /// <inheritdoc/>
    public override IReadOnlyList<Application>? Applications => [Application.LanguageModel];

    /// <inheritdoc/>
    public override IReadOnlyList<string> Ignorable => [.. base.Ignorable, "lm_head.weight", ".attn.bias"];

    /// <inheritdoc/>
    public override ArchitectureOptions Architecture(TransformerConfig c)
    {
        var bert = new BertFamily().Architecture(c);
        return bert with
        {
            Embeddings = bert.Embeddings with { Norm = null },
            Pooler = false, MlmTransform = false, MlmBias = false, MlmNorm = null,
        };
    }

    /// <inheritdoc/>
    public override IEnumerable<NameMapping> Names(TransformerConfig c, int layers)
    {
        const string hf = "transformer";
        yield return new("embeddings.word.weight", [$"{hf}.tokens_embed.weight"], ["gpt/embeddings/word_embeddings"], false);
        yield return new("embeddings.position.weight", [$"{hf}.positions_embed.weight"], ["gpt/embeddings/position_embeddings"], false);
        yield return new("embeddings.segment.weight", [$"{hf}.segment_embed.weight"], ["gpt/embeddings/token_type_embeddings"], false);
        foreach (var m in Dense("embeddings.project", $"{hf}.embedding_hidden_mapping_in", "gpt/transformer/embedding_hidden_mapping_in")) yield return m;
        for (int i = 0; i < layers; i++)
        {
            string l = $"layers.{i}", h = $"{hf}.h.{i}", tf = $"gpt/transformer/layer_{i}";
            yield return new($"{l}.attention.qkv.weight", [$"{h}.attn.c_attn.weight"], [$"{tf}/attention/self/query/kernel", $"{tf}/attention/self/key/kernel", $"{tf}/attention/self/value/kernel"], true, TransposeHuggingFace: true);
            yield return new($"{l}.attention.qkv.bias", [$"{h}.attn.c_attn.bias"], [$"{tf}/attention/self/query/bias", $"{tf}/attention/self/key/bias", $"{tf}/attention/self/value/bias"], false);
            foreach (var m in Conv1D($"{l}.attention.output", $"{h}.attn.c_proj", $"{tf}/attention/output/dense")) yield return m;
            foreach (var m in LayerNorm($"{l}.attention_norm", $"{h}.ln_1", $"{tf}/attention/output/LayerNorm")) yield return m;
            foreach (var m in Conv1D($"{l}.ffn.inner", $"{h}.mlp.c_fc", $"{tf}/intermediate/dense")) yield return m;
            foreach (var m in Conv1D($"{l}.ffn.outer", $"{h}.mlp.c_proj", $"{tf}/output/dense")) yield return m;
            foreach (var m in LayerNorm($"{l}.ffn_norm", $"{h}.ln_2", $"{tf}/output/LayerNorm")) yield return m;
        }
    }
}

/// <summary>
/// GPT2-ML (bert4keras <c>gpt2_ml</c>, imcaspar/gpt2-ml; "closer to GPT than to GPT-2" as bert4keras notes):
/// token + position embeddings with a LayerNorm, blocks with <see cref="NormPlacement.AroundFeedForward"/>, causal,
/// LM head tied with no transform or bias; no segments. TensorFlow names <c>newslm/layer00/query_layer/kernel</c>…;
/// there is no Hugging Face model, so the "HF" names (what <c>SavePretrained</c> writes) are BERT-style under
/// <c>gpt2_ml.</c>.
/// </summary>
public sealed class Gpt2MlFamily : ModelFamily
{
    /// <inheritdoc/>
    public override string? BasePrefix => "gpt2_ml";

    /// <inheritdoc/>
    public override string Name => "gpt2_ml";

    /// <inheritdoc/>
    public override IReadOnlyList<Application>? Applications => [Application.LanguageModel];

    /// <inheritdoc/>
    public override ArchitectureOptions Architecture(TransformerConfig c)
    {
        var bert = new BertFamily().Architecture(c);
        return bert with
        {
            // bert4keras fixes every GPT2-ML norm's epsilon at 1e-5, whatever the config says.
            Embeddings = bert.Embeddings with { SegmentVocab = 0, Eps = 1e-5 },
            Layer = bert.Layer with { Placement = NormPlacement.AroundFeedForward, Eps = 1e-5 },
            Pooler = false, MlmTransform = false, MlmBias = false, MlmNorm = null,
        };
    }

    /// <inheritdoc/>
    public override IEnumerable<NameMapping> Names(TransformerConfig c, int layers)
    {
        const string hf = "gpt2_ml";
        yield return new("embeddings.word.weight", [$"{hf}.embeddings.word_embeddings.weight"], ["newslm/embeddings/word_embed"], false);
        yield return new("embeddings.position.weight", [$"{hf}.embeddings.position_embeddings.weight"], ["newslm/embeddings/pos_embed"], false);
        foreach (var m in LayerNorm("embeddings.norm", $"{hf}.embeddings.LayerNorm", "newslm/embeddings/LayerNorm_embed_norm")) yield return m;
        for (int i = 0; i < layers; i++)
        {
            string l = $"layers.{i}", h = $"{hf}.encoder.layer.{i}", tf = $"newslm/layer{i:00}";
            yield return new($"{l}.attention.qkv.weight", [$"{h}.attention.self.query.weight", $"{h}.attention.self.key.weight", $"{h}.attention.self.value.weight"],
                [$"{tf}/query_layer/kernel", $"{tf}/key_layer/kernel", $"{tf}/value_layer/kernel"], true);
            yield return new($"{l}.attention.qkv.bias", [$"{h}.attention.self.query.bias", $"{h}.attention.self.key.bias", $"{h}.attention.self.value.bias"],
                [$"{tf}/query_layer/bias", $"{tf}/key_layer/bias", $"{tf}/value_layer/bias"], false);
            foreach (var m in Dense($"{l}.attention.output", $"{h}.attention.output.dense", $"{tf}/context_projection_layer")) yield return m;
            foreach (var m in LayerNorm($"{l}.attention_norm", $"{h}.mlp.LayerNorm_0", $"{tf}/LayerNorm_mlp_ln0")) yield return m;
            foreach (var m in Dense($"{l}.ffn.inner", $"{h}.intermediate.dense", $"{tf}/intermediate")) yield return m;
            foreach (var m in Dense($"{l}.ffn.outer", $"{h}.output.dense", $"{tf}/output")) yield return m;
            foreach (var m in LayerNorm($"{l}.ffn_norm", $"{h}.mlp.LayerNorm_1", $"{tf}/LayerNorm_mlp_ln1")) yield return m;
        }
    }
}
