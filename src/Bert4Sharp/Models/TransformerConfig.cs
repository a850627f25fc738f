namespace Bert4Sharp.Models;

using System.Text.Json;
using System.Text.Json.Serialization;

/// <summary>
/// A Transformer's <c>config.json</c>. Property names are the Hugging Face keys; bert4keras-era
/// spellings (<c>bert_config.json</c>, <c>albert_config*.json</c>) are accepted by <see cref="Load"/> and renamed
/// in one place (<see cref="Aliases"/>). Defaults are Hugging Face's BERT defaults.
/// </summary>
public sealed record TransformerConfig
{
    /// <summary>HF <c>model_type</c> (bert, albert, electra, roformer, …), when the file says.</summary>
    [JsonPropertyName("model_type")] public string? ModelType { get; init; }
    /// <summary>Vocabulary size (rows of the token embedding).</summary>
    [JsonPropertyName("vocab_size")] public int VocabSize { get; init; }
    /// <summary>Width of the hidden states.</summary>
    [JsonPropertyName("hidden_size")] public int HiddenSize { get; init; } = 768;
    /// <summary>Number of Transformer layers.</summary>
    [JsonPropertyName("num_hidden_layers")] public int NumHiddenLayers { get; init; } = 12;
    /// <summary>Number of attention heads.</summary>
    [JsonPropertyName("num_attention_heads")] public int NumAttentionHeads { get; init; } = 12;
    /// <summary>Width of the feed-forward inner layer.</summary>
    [JsonPropertyName("intermediate_size")] public int IntermediateSize { get; init; } = 3072;
    /// <summary>Activation of the feed-forward layer (gelu = exact erf GELU, gelu_new = tanh approximation, relu, silu…).</summary>
    [JsonPropertyName("hidden_act")] public string HiddenAct { get; init; } = "gelu";
    /// <summary>Dropout on hidden states.</summary>
    [JsonPropertyName("hidden_dropout_prob")] public double HiddenDropoutProb { get; init; } = 0.1;
    /// <summary>Dropout on attention probabilities.</summary>
    [JsonPropertyName("attention_probs_dropout_prob")] public double AttentionProbsDropoutProb { get; init; } = 0.1;
    /// <summary>Rows of the learned position embedding (0 for models without one, e.g. RoFormerV2).</summary>
    [JsonPropertyName("max_position_embeddings")] public int MaxPositionEmbeddings { get; init; } = 512;
    /// <summary>Rows of the segment (token type) embedding.</summary>
    [JsonPropertyName("type_vocab_size")] public int TypeVocabSize { get; init; } = 2;
    /// <summary>LayerNorm epsilon.</summary>
    [JsonPropertyName("layer_norm_eps")] public double LayerNormEps { get; init; } = 1e-12;
    /// <summary>Factorised embedding width (ALBERT, ELECTRA, RoFormer); null or equal to hidden size for none.</summary>
    [JsonPropertyName("embedding_size")] public int? EmbeddingSize { get; init; }
    /// <summary>ALBERT: number of distinct layer groups (1 = all layers share parameters).</summary>
    [JsonPropertyName("num_hidden_groups")] public int NumHiddenGroups { get; init; } = 1;
    /// <summary>ALBERT: layers inside a group.</summary>
    [JsonPropertyName("inner_group_num")] public int InnerGroupNum { get; init; } = 1;
    /// <summary>Padding token id.</summary>
    [JsonPropertyName("pad_token_id")] public int? PadTokenId { get; init; }
    /// <summary>RoFormer: also rotate values.</summary>
    [JsonPropertyName("rotary_value")] public bool RotaryValue { get; init; }
    /// <summary>GPT-2 <c>n_inner</c>: feed-forward width (null = 4 × hidden).</summary>
    [JsonPropertyName("n_inner")] public int? NInner { get; init; }
    /// <summary>Beginning-of-sequence id (GPT-2).</summary>
    [JsonPropertyName("bos_token_id")] public int? BosTokenId { get; init; }
    /// <summary>End-of-sequence id (GPT-2).</summary>
    [JsonPropertyName("eos_token_id")] public int? EosTokenId { get; init; }
    /// <summary>T5: width of one head (<c>d_kv</c>).</summary>
    [JsonPropertyName("d_kv")] public int? DKv { get; init; }
    /// <summary>T5: decoder layers (default: as many as the encoder).</summary>
    [JsonPropertyName("num_decoder_layers")] public int? NumDecoderLayers { get; init; }
    /// <summary>T5: relative-position buckets.</summary>
    [JsonPropertyName("relative_attention_num_buckets")] public int RelativeAttentionNumBuckets { get; init; } = 32;
    /// <summary>T5: distance beyond which buckets are shared.</summary>
    [JsonPropertyName("relative_attention_max_distance")] public int RelativeAttentionMaxDistance { get; init; } = 128;
    /// <summary>T5: "relu" (t5.1.0) or "gated-gelu" (t5.1.1, mT5).</summary>
    [JsonPropertyName("feed_forward_proj")] public string? FeedForwardProj { get; init; }
    /// <summary>T5/GPT: LM head shares the token embedding.</summary>
    [JsonPropertyName("tie_word_embeddings")] public bool TieWordEmbeddings { get; init; } = true;
    /// <summary>T5: multiply decoder outputs by d_model^-½ before the head (transformers 5 writes it; older configs imply it by tie_word_embeddings).</summary>
    [JsonPropertyName("scale_decoder_outputs")] public bool? ScaleDecoderOutputs { get; init; }
    /// <summary>T5: first decoder input id.</summary>
    [JsonPropertyName("decoder_start_token_id")] public int? DecoderStartTokenId { get; init; }
    /// <summary>Query/key width when it differs from the head size (GAU-α: the shared qk width).</summary>
    [JsonPropertyName("attention_key_size")] public int? AttentionKeySize { get; init; }
    /// <summary>Initialiser standard deviation (used when weights are not loaded).</summary>
    [JsonPropertyName("initializer_range")] public double InitializerRange { get; init; } = 0.02;
    /// <summary>
    /// Bert4Sharp research kit: the attention kernel of every layer (softmax, squared_relu, softmax_plus, linear,
    /// performer, nystrom, flash, synthesizer_dense/random/factorized/mixture; see docs/attention.md); null = the family's.
    /// </summary>
    [JsonPropertyName("attention_kernel")] public string? AttentionKernel { get; init; }
    /// <summary>Settings of <see cref="AttentionKernel"/> (features, landmarks, chunk_size, …).</summary>
    [JsonPropertyName("attention_kernel_options")] public Layers.AttentionKernelOptions? AttentionKernelOptions { get; init; }
    /// <summary>
    /// Research kit: positions inside attention (none, rotary, rotary_2d, alibi, typical_relative, t5_buckets,
    /// xl_relative, deberta); null = the family's.
    /// </summary>
    [JsonPropertyName("attention_position")] public string? AttentionPositionScheme { get; init; }
    /// <summary>Research kit: absolute positions added to the embeddings (learned, sinusoidal, hierarchical, none); null = the family's.</summary>
    [JsonPropertyName("absolute_position")] public string? AbsolutePositionScheme { get; init; }
    /// <summary>Research kit: clipping distance of <c>typical_relative</c> and DeBERTa's span k of <c>deberta</c> (default 64).</summary>
    [JsonPropertyName("max_relative_positions")] public int? MaxRelativePositions { get; init; }
    /// <summary>Research kit: RealFormer's residual attention scores (each layer adds the previous layer's pre-softmax scores).</summary>
    [JsonPropertyName("residual_attention_scores")] public bool? ResidualAttentionScores { get; init; }
    /// <summary>
    /// Research kit: how fresh block weights are drawn — <c>normal</c> (N(0, initializer_range), the family's), <c>lecun</c>
    /// (N(0, 1/fan_in): the variance-preserving choice of kexue.fm/archives/8620), <c>scaled_residual</c> (the family's, with
    /// attention-output and feed-forward-output weights times 1/√(2N), GPT-2 / Megatron); null = the family's.
    /// </summary>
    [JsonPropertyName("initializer")] public string? InitializerScheme { get; init; }
    /// <summary>Research kit: where the norms sit (post, pre, deepnorm); null = the family's.</summary>
    [JsonPropertyName("norm_placement")] public string? NormPlacementScheme { get; init; }

    /// <summary>Values of <see cref="AttentionPositionScheme"/>.</summary>
    public static readonly IReadOnlyList<string> AttentionPositionSchemes = ["none", "rotary", "rotary_2d", "alibi", "typical_relative", "t5_buckets", "xl_relative", "deberta"];
    /// <summary>Values of <see cref="AbsolutePositionScheme"/>.</summary>
    public static readonly IReadOnlyList<string> AbsolutePositionSchemes = ["learned", "sinusoidal", "hierarchical", "none"];
    /// <summary>Values of <see cref="InitializerScheme"/>.</summary>
    public static readonly IReadOnlyList<string> InitializerSchemes = ["normal", "lecun", "scaled_residual"];
    /// <summary>Values of <see cref="NormPlacementScheme"/>.</summary>
    public static readonly IReadOnlyList<string> NormPlacementSchemes = ["post", "pre", "deepnorm"];

    /// <summary>bert4keras / Google spellings → Hugging Face keys.</summary>
    public static readonly IReadOnlyDictionary<string, string> Aliases = new Dictionary<string, string>
    {
        ["dropout_rate"] = "hidden_dropout_prob",
        ["attention_dropout_rate"] = "attention_probs_dropout_prob",
        ["max_position"] = "max_position_embeddings",
        ["segment_vocab_size"] = "type_vocab_size",
        ["layer_norm_epsilon"] = "layer_norm_eps",
        ["n_layer"] = "num_hidden_layers",
        ["n_head"] = "num_attention_heads",
        ["n_embd"] = "hidden_size",
        ["d_model"] = "hidden_size",
        ["d_ff"] = "intermediate_size",
        ["num_layers"] = "num_hidden_layers",
        ["num_heads"] = "num_attention_heads",
        ["n_positions"] = "max_position_embeddings",
        ["activation_function"] = "hidden_act",
        ["attention_head_size"] = "d_kv",
        ["afn"] = "hidden_act",
        ["resid_pdrop"] = "hidden_dropout_prob",
        ["attn_pdrop"] = "attention_probs_dropout_prob",
    };

    /// <summary>Every key <see cref="FromJson"/> reads: the Hugging Face keys of the properties and the <see cref="Aliases"/>, sorted.</summary>
    public static readonly IReadOnlyList<string> KnownKeys = typeof(TransformerConfig).GetProperties()
        .Select(p => p.GetCustomAttributes(typeof(JsonPropertyNameAttribute), false).OfType<JsonPropertyNameAttribute>().FirstOrDefault()?.Name)
        .OfType<string>().Concat(Aliases.Keys).Distinct().Order(StringComparer.Ordinal).ToArray();

    /// <summary>Files named like a config that hold something else (decoding settings, tokenizer or processor options).</summary>
    static readonly string[] NotModelConfigs = ["generation_config.json", "tokenizer_config.json", "preprocessor_config.json", "processor_config.json", "sentence_bert_config.json", "adapter_config.json", "quantize_config.json"];

    /// <summary>Effective embedding width.</summary>
    [JsonIgnore] public int EmbeddingWidth => EmbeddingSize ?? HiddenSize;

    /// <summary>Width of one head.</summary>
    [JsonIgnore] public int HeadSize => HiddenSize / NumAttentionHeads;

    /// <summary>
    /// The config file of a model directory: <c>config.json</c>, else bert4keras's <c>bert_config.json</c>, else the
    /// first other <c>*config*.json</c> (e.g. <c>albert_config_tiny_g.json</c>) that is not a known non-model file
    /// (<c>generation_config.json</c>, <c>tokenizer_config.json</c>, …).
    /// </summary>
    /// <exception cref="FileNotFoundException">None of them; the message says what was looked for.</exception>
    public static string FindIn(string directory)
    {
        string? found = new[] { "config.json", "bert_config.json" }.Select(n => Path.Combine(directory, n)).FirstOrDefault(File.Exists);
        if (found is not null) return found;
        var candidates = Directory.GetFiles(directory, "*config*.json").Order(StringComparer.Ordinal).ToList();
        found = candidates.FirstOrDefault(f => !NotModelConfigs.Contains(Path.GetFileName(f), StringComparer.OrdinalIgnoreCase));
        if (found is not null) return found;
        string skipped = candidates.Count == 0 ? "" : $"; {string.Join(", ", candidates.Select(Path.GetFileName))} {(candidates.Count == 1 ? "is not a model config" : "are not model configs")}: decoding, tokenizer or processor settings, not the model's shape";
        throw new FileNotFoundException($"{directory}: no model config: looked for config.json, bert_config.json and other *config*.json files (e.g. albert_config*.json){skipped}; add the model's config.json");
    }

    /// <summary>Reads a config file (HF or bert4keras spelling) and validates it.</summary>
    /// <exception cref="FileNotFoundException">No file.</exception>
    /// <exception cref="InvalidDataException">Not JSON, a field of the wrong type, or impossible values (names the field and the values).</exception>
    public static TransformerConfig Load(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"{path}: config not found", path);
        return FromJson(File.ReadAllBytes(path), path);
    }

    /// <summary>Parses config.json content (HF or bert4keras spelling) and validates it; <paramref name="source"/> names it in errors.</summary>
    /// <exception cref="InvalidDataException">Not JSON, a field of the wrong type, or impossible values (names the field and the values).</exception>
    public static TransformerConfig FromJson(ReadOnlySpan<byte> json, string source)
    {
        Dictionary<string, JsonElement> raw;
        try { raw = JsonSerializer.Deserialize<Dictionary<string, JsonElement>>(json) ?? []; }
        catch (JsonException e) { throw new InvalidDataException($"{source}: not a JSON object ({e.Message})", e); }
        raw = raw.Where(kv => kv.Value.ValueKind != JsonValueKind.Null).ToDictionary();   // null means "the default"
        var renamed = new Dictionary<string, JsonElement>();
        foreach (var (k, v) in raw) renamed.TryAdd(Aliases.TryGetValue(k, out var hf) ? hf : k, v);
        foreach (var (k, v) in raw) if (!Aliases.ContainsKey(k)) renamed[k] = v;   // the HF spelling wins if both are present
        // bert4keras's T5 configs spell the gated feed-forward as a pair of activations: ["gelu", "linear"].
        if (renamed.TryGetValue("hidden_act", out var act) && act.ValueKind == JsonValueKind.Array)
        {
            var pair = act.EnumerateArray().Select(e => e.ValueKind == JsonValueKind.String ? e.GetString() : null).ToList();
            if (pair.Count != 2 || pair[0] is null || pair[1] != "linear")
                throw new InvalidDataException($"{source}: hidden_act as a list must be [activation, \"linear\"] (bert4keras's gated feed-forward), got {act}");
            renamed["hidden_act"] = JsonSerializer.SerializeToElement(pair[0]);
            renamed.TryAdd("feed_forward_proj", JsonSerializer.SerializeToElement("gated-" + pair[0]));
        }
        TransformerConfig config;
        try { config = JsonSerializer.Deserialize<TransformerConfig>(JsonSerializer.Serialize(renamed))!; }
        catch (JsonException e) { throw new InvalidDataException($"{source}: field '{e.Path?.TrimStart('$', '.')}' has the wrong type ({e.Message})", e); }
        // T5 (HF, or bert4keras's configs, which have no model_type but the bucket count) means ε = 1e-6 unless said.
        if ((config.ModelType is "t5" or "mt5" || renamed.ContainsKey("relative_attention_num_buckets")) && !renamed.ContainsKey("layer_norm_eps"))
            config = config with { LayerNormEps = 1e-6 };
        // OpenAI GPT's config leaves out what its architecture fixes: no segment table, a 4×n_embd feed-forward.
        if (config.ModelType == "openai-gpt")
            config = config with
            {
                TypeVocabSize = renamed.ContainsKey("type_vocab_size") ? config.TypeVocabSize : 0,
                IntermediateSize = renamed.ContainsKey("intermediate_size") ? config.IntermediateSize : 4 * config.HiddenSize,
            };
        config.Validate(source);
        return config;
    }

    /// <summary>Checks the values fit together.</summary>
    /// <exception cref="InvalidDataException">Names the field and the values.</exception>
    public void Validate(string source = "config")
    {
        void Positive(int v, string name) { if (v <= 0) throw new InvalidDataException($"{source}: {name} must be positive, got {v}"); }
        Positive(VocabSize, "vocab_size");
        Positive(HiddenSize, "hidden_size");
        Positive(NumHiddenLayers, "num_hidden_layers");
        Positive(NumAttentionHeads, "num_attention_heads");
        Positive(IntermediateSize, "intermediate_size");
        if (DKv is null && HiddenSize % NumAttentionHeads != 0)
            throw new InvalidDataException($"{source}: num_attention_heads must divide hidden_size, got {NumAttentionHeads} and {HiddenSize}");
        if (EmbeddingSize is <= 0) throw new InvalidDataException($"{source}: embedding_size must be positive, got {EmbeddingSize}");
        if (AttentionKernel is { } kernel)
        {
            try { Layers.AttentionKernelFactory.Check(kernel, AttentionKernelOptions); }
            catch (ArgumentException e) { throw new InvalidDataException($"{source}: {e.Message}", e); }
        }
        else if (AttentionKernelOptions is not null) throw new InvalidDataException($"{source}: attention_kernel_options without attention_kernel");
        if (AttentionPositionScheme is { } pos && !AttentionPositionSchemes.Contains(pos))
            throw new InvalidDataException($"{source}: attention_position must be one of {string.Join(", ", AttentionPositionSchemes)}, got '{pos}'");
        if (AbsolutePositionScheme is { } abs && !AbsolutePositionSchemes.Contains(abs))
            throw new InvalidDataException($"{source}: absolute_position must be one of {string.Join(", ", AbsolutePositionSchemes)}, got '{abs}'");
        if (InitializerScheme is { } init && !InitializerSchemes.Contains(init))
            throw new InvalidDataException($"{source}: initializer must be one of {string.Join(", ", InitializerSchemes)}, got '{init}'");
        if (MaxRelativePositions is <= 0) throw new InvalidDataException($"{source}: max_relative_positions must be positive, got {MaxRelativePositions}");
        if (NormPlacementScheme is { } np && !NormPlacementSchemes.Contains(np))
            throw new InvalidDataException($"{source}: norm_placement must be one of {string.Join(", ", NormPlacementSchemes)}, got '{np}'");
        if (NumHiddenGroups <= 0 || NumHiddenLayers % NumHiddenGroups != 0)
            throw new InvalidDataException($"{source}: num_hidden_groups must divide num_hidden_layers, got {NumHiddenGroups} and {NumHiddenLayers}");
    }

    /// <summary>Writes the config as Hugging Face <c>config.json</c>.</summary>
    public void Save(string path, string modelType) =>
        Checkpoints.AtomicFile.WriteAllText(path, JsonSerializer.Serialize(this with { ModelType = modelType }, new JsonSerializerOptions { WriteIndented = true, DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull }));
}
