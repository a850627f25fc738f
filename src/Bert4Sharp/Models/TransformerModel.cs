namespace Bert4Sharp.Models;

using Bert4Sharp.Layers;
using Bert4Sharp.Runtime;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

/// <summary>What the model is built for (bert4keras <c>application</c> plus the heads a checkpoint carries).</summary>
public enum Application
{
    /// <summary>Hidden states (and the pooler when the family has one).</summary>
    Encoder,
    /// <summary>Encoder + masked-LM head (tied decoder).</summary>
    MaskedLM,
    /// <summary>Encoder + MLM head + next-sentence / sentence-order head.</summary>
    PreTraining,
    /// <summary>ELECTRA: encoder + replaced-token discriminator.</summary>
    Discriminator,
    /// <summary>bert4keras <c>application='lm'</c>: MLM head with a causal mask (an encoder used as a language model).</summary>
    LanguageModel,
    /// <summary>
    /// bert4keras <c>application='unilm'</c> (Dong et al.): MLM head; segment-0 tokens see each other, segment-1
    /// tokens see segment 0 and the segment-1 tokens before them (seq2seq with one encoder).
    /// </summary>
    UniLM,
    /// <summary>Encoder–decoder (T5): <see cref="TransformerModel.Forward(ModelInput)"/> encodes, <see cref="TransformerModel.Decode"/> decodes with cross attention and the LM head.</summary>
    Seq2Seq,
}

/// <summary>The architecture knobs a family sets from a config (x-transformers style, grouped by component).</summary>
/// <param name="Embeddings">Embedding layer options.</param>
/// <param name="Layer">Options of every block.</param>
/// <param name="Layers">Number of blocks applied.</param>
/// <param name="ShareLayers">One block applied <paramref name="Layers"/> times (ALBERT).</param>
/// <param name="Pooler">Has a tanh pooler over the first token.</param>
/// <param name="MlmWidth">Width of the MLM transform (the embedding width).</param>
/// <param name="MlmActivation">MLM transform activation.</param>
/// <param name="MlmNorm">MLM transform norm (null for none).</param>
/// <param name="MlmTransform">Has the dense transform before the decoder (false: hidden states go straight to the output layer).</param>
/// <param name="MlmBias">Has an output bias.</param>
/// <param name="Gau">When set, the blocks are gated attention units (GAU-α) instead of attention + feed-forward.</param>
/// <param name="ResidualAttentionScores">RealFormer: each block's pre-softmax scores include the previous block's (bert4keras <c>residual_attention_scores</c>).</param>
/// <param name="FinalNorm">A norm after the last block (pre-norm models: GPT-2, T5).</param>
/// <param name="Decoder">An encoder–decoder's decoder stack (T5), or null.</param>
/// <param name="RelativeBias">T5's bucketed relative position bias (encoder bidirectional, decoder causal), or null.</param>
/// <param name="TiedHead">The LM head is the token embedding (false: a separate <c>lm_head</c>, t5.1.1/mT5).</param>
/// <param name="HeadScale">Factor on the hidden states before the LM head (t5.1.0: d_model^-½), or null.</param>
/// <param name="DeepNormBeta">DeepNet's β: fresh value/output/feed-forward weights are scaled by it (set by <c>norm_placement: deepnorm</c>), or null.</param>
public sealed record ArchitectureOptions(EmbeddingOptions Embeddings, BlockOptions Layer, int Layers, bool ShareLayers, bool Pooler,
    int MlmWidth, string MlmActivation, NormKind? MlmNorm, bool MlmTransform = true, bool MlmBias = true, GauOptions? Gau = null,
    bool ResidualAttentionScores = false, bool FinalNorm = false, DecoderOptions? Decoder = null, RelativeBiasOptions? RelativeBias = null,
    bool TiedHead = true, double? HeadScale = null, double? DeepNormBeta = null);

/// <summary>Applies <paramref name="block"/> (a <see cref="TransformerBlock"/> or <see cref="GauLayer"/>) to <paramref name="x"/> (B, T, H) as block <paramref name="layer"/> of the running forward (its mask, positions and cache slot).</summary>
public delegate Tensor BlockRunner(nn.Module<Tensor, Tensor?, Tensor> block, Tensor x, int layer);

/// <summary>The decoder stack of an encoder–decoder: <paramref name="Layers"/> pre-norm blocks with cross attention.</summary>
/// <param name="Layers">Number of decoder blocks.</param>
/// <param name="Layer">Their options (<see cref="BlockOptions.CrossAttention"/> set).</param>
public sealed record DecoderOptions(int Layers, BlockOptions Layer);

/// <summary>T5's relative position buckets.</summary>
/// <param name="Buckets">Number of buckets.</param>
/// <param name="MaxDistance">Distance beyond which buckets are shared.</param>
public sealed record RelativeBiasOptions(int Buckets, int MaxDistance);

/// <summary>What <see cref="TransformerModel.Forward(ModelInput)"/> takes: ids (B, T) int64 and everything optional.</summary>
/// <param name="Ids">Token ids (B, T).</param>
public sealed record ModelInput(Tensor Ids)
{
    /// <summary>Segment ids (B, T), or null for all zeros.</summary>
    public Tensor? Segments { get; init; }
    /// <summary>(B, T) with 1 at real tokens and 0 at padding, or null for no padding.</summary>
    public Tensor? AttentionMask { get; init; }
    /// <summary>Custom position ids (B, T) (bert4keras <c>custom_position_ids</c>), or null for 0..T-1 after the cache.</summary>
    public Tensor? PositionIds { get; init; }
    /// <summary>Condition (B, C) for models built with conditional LayerNorm.</summary>
    public Tensor? Condition { get; init; }
    /// <summary>
    /// Incremental decoding for <see cref="Application.LanguageModel"/> and <see cref="Application.UniLM"/>: the first call
    /// (empty cache) takes the whole prompt with the application's mask; later calls take new tokens, which see every
    /// cached position and the new ones before them.
    /// </summary>
    public KeyValueCache? Cache { get; init; }
    /// <summary>Also return the embedding output and every block's output.</summary>
    public bool OutputHiddenStates { get; init; }
    /// <summary>
    /// Token embedding rows (B, T, E) used instead of looking <see cref="Ids"/> up in the token table (Hugging Face
    /// <c>inputs_embeds</c>), or null. Positions, segments, the norm and any projection are applied as for ids, and the
    /// ids still give the shape, padding-derived positions and structure masks. Integrated gradients
    /// (<see cref="Explain.IntegratedGradients"/>) interpolates here.
    /// </summary>
    public Tensor? TokenEmbeddings { get; init; }
}

/// <summary>What <see cref="TransformerModel.Decode"/> takes.</summary>
/// <param name="Ids">Decoder ids (B, T).</param>
/// <param name="Memory">Encoder states (B, S, H).</param>
public sealed record DecoderInput(Tensor Ids, Tensor Memory)
{
    /// <summary>(B, S) mask over the memory (1 = real), or null.</summary>
    public Tensor? MemoryMask { get; init; }
    /// <summary>Self-attention cache, with cross-attention keys in its <see cref="KeyValueCache.Cross"/>; positions continue after it.</summary>
    public KeyValueCache? Cache { get; init; }
    /// <summary>Also return the embedding output and every block's output.</summary>
    public bool OutputHiddenStates { get; init; }
}

/// <summary>Outputs of <see cref="TransformerModel.forward"/>; tensors not asked for are null.</summary>
public sealed class ModelOutput : IDisposable
{
    /// <summary>Final hidden states (B, T, H).</summary>
    public required Tensor LastHiddenState { get; init; }
    /// <summary>Embedding output then every block's output, when asked for.</summary>
    public IReadOnlyList<Tensor>? HiddenStates { get; init; }
    /// <summary>Pooled first-token vector (B, H), when the model has a pooler.</summary>
    public Tensor? Pooled { get; init; }
    /// <summary>MLM logits (B, T, V).</summary>
    public Tensor? Logits { get; init; }
    /// <summary>Next-sentence / sentence-order logits (B, 2).</summary>
    public Tensor? SentenceLogits { get; init; }
    /// <summary>ELECTRA discriminator logits (B, T).</summary>
    public Tensor? DiscriminatorLogits { get; init; }

    /// <summary>Moves every tensor out of the current dispose scope.</summary>
    internal ModelOutput MoveOut()
    {
        LastHiddenState.MoveToOuterDisposeScope();
        if (HiddenStates is not null) foreach (var h in HiddenStates) h.MoveToOuterDisposeScope();
        Pooled?.MoveToOuterDisposeScope();
        Logits?.MoveToOuterDisposeScope();
        SentenceLogits?.MoveToOuterDisposeScope();
        DiscriminatorLogits?.MoveToOuterDisposeScope();
        return this;
    }

    /// <summary>
    /// This output with every 16-bit tensor converted to fp32 (the 16-bit originals disposed), or itself when nothing is
    /// 16-bit. The layer list keeps sharing the last hidden state as the original does.
    /// </summary>
    public ModelOutput Widened()
    {
        if (!PrecisionPolicy.IsHalf(LastHiddenState.dtype)) return this;
        static Tensor? W(Tensor? t) => t is null ? null : PrecisionPolicy.Widen(t);
        var last = PrecisionPolicy.Widen(LastHiddenState);
        var widened = new ModelOutput
        {
            LastHiddenState = last,
            HiddenStates = HiddenStates?.Select(h => ReferenceEquals(h, LastHiddenState) ? last : PrecisionPolicy.Widen(h)).ToList(),
            Pooled = W(Pooled), Logits = W(Logits), SentenceLogits = W(SentenceLogits), DiscriminatorLogits = W(DiscriminatorLogits),
        };
        Dispose();
        return widened;
    }

    /// <inheritdoc/>
    public void Dispose()
    {
        LastHiddenState.Dispose();
        if (HiddenStates is not null) foreach (var h in HiddenStates) if (!ReferenceEquals(h, LastHiddenState)) h.Dispose();
        Pooled?.Dispose();
        Logits?.Dispose();
        SentenceLogits?.Dispose();
        DiscriminatorLogits?.Dispose();
    }
}

/// <summary>
/// The one model skeleton of every family: embeddings → N blocks (→ final norm) → heads (pooler, MLM/LM,
/// NSP/SOP, discriminator), plus a decoder stack with cross attention for encoder–decoders (T5). Families
/// (<see cref="ModelFamily"/>) differ only in <see cref="ArchitectureOptions"/>, checkpoint names and initialisation.
/// Parameter names are Bert4Sharp's own (<c>embeddings.word.weight</c>, <c>layers.0.attention.qkv.weight</c>,
/// <c>decoder_layers.0.cross_attention.kv.weight</c>…); each family maps them to Hugging Face and TensorFlow names.
/// </summary>
public sealed class TransformerModel : nn.Module<Tensor, Tensor?, Tensor?, ModelOutput>, IEncoder
{
    readonly ArchitectureOptions arch;
#pragma warning disable IDE0044
    Embeddings embeddings;
    ModuleList<nn.Module<Tensor, Tensor?, Tensor>> layers;
    Norm? final_norm;
    RelativePositionBias? relative_bias;
    Embedding? relative_embeddings;
    Norm? relative_embeddings_norm;
    ModuleList<TransformerBlock>? decoder_layers;
    Norm? decoder_norm;
    RelativePositionBias? decoder_relative_bias;
    Linear? pooler;
    Linear? mlm_dense;
    Norm? mlm_norm;
    Parameter? mlm_bias;
    Linear? lm_head;
    Linear? sentence;
    Linear? discriminator_dense;
    Linear? discriminator_output;
#pragma warning restore IDE0044

    /// <summary>Builds a randomly initialised model with the family's initialisation (use <see cref="AutoModel"/> to load weights).</summary>
    public TransformerModel(ModelFamily family, TransformerConfig config, ArchitectureOptions arch, Application application, string? prefix = null)
        : base(prefix ?? family.Name)
    {
        Family = family;
        Config = config;
        this.arch = arch;
        Application = application;
        family.CheckApplication(application);
        if (arch.ResidualAttentionScores && (arch.Gau is not null || arch.Layer.Attention.Position == AttentionPosition.TypicalRelative))
            throw new ArgumentException($"{family.Name}: residual attention scores need standard attention blocks");
        if (application == Application.Seq2Seq && arch.Decoder is null) throw new ArgumentException($"{family.Name} has no decoder; Application.Seq2Seq is for encoder–decoders (T5)");
        embeddings = new Embeddings(arch.Embeddings);
        int distinct = arch.ShareLayers ? 1 : arch.Layers;
        layers = nn.ModuleList(Enumerable.Range(0, distinct).Select(_ => arch.Gau is GauOptions g
            ? (nn.Module<Tensor, Tensor?, Tensor>)new GauLayer(g, arch.Layer.Norm, arch.Layer.Eps, arch.Layer.Dropout)
            : new TransformerBlock(arch.Layer)).ToArray());
        int h = arch.Layer.Attention.HiddenSize;
        if (arch.FinalNorm) final_norm = new Norm(h, arch.Layer.Norm, arch.Layer.Eps);
        if (arch.RelativeBias is { } rb)
            relative_bias = new RelativePositionBias(arch.Layer.Attention.Heads, rb.Buckets, rb.MaxDistance, bidirectional: application != Application.LanguageModel);
        if (arch.Layer.Attention.Position == AttentionPosition.Disentangled)
        {
            // DeBERTa-v2: one table of 2k relative embeddings for the whole stack, layer-normed before every use.
            relative_embeddings = nn.Embedding(2L * arch.Layer.Attention.MaxRelativePosition, h);
            relative_embeddings_norm = new Norm(h, NormKind.LayerNorm, arch.Layer.Eps);
        }
        if (application == Application.Seq2Seq && arch.Decoder is { } dec)
        {
            decoder_layers = nn.ModuleList(Enumerable.Range(0, dec.Layers).Select(_ => new TransformerBlock(dec.Layer)).ToArray());
            decoder_norm = new Norm(h, dec.Layer.Norm, dec.Layer.Eps);
            if (arch.RelativeBias is { } drb) decoder_relative_bias = new RelativePositionBias(dec.Layer.Attention.Heads, drb.Buckets, drb.MaxDistance, bidirectional: false);
        }
        if (arch.Pooler && application is Application.Encoder or Application.PreTraining) pooler = nn.Linear(h, h);
        if (HasLanguageModelHead)
        {
            if (arch.MlmTransform)
            {
                mlm_dense = nn.Linear(h, arch.MlmWidth);
                if (arch.MlmNorm is NormKind k) mlm_norm = new Norm(arch.MlmWidth, k, arch.Layer.Eps);
            }
            if (arch.MlmBias) mlm_bias = new Parameter(torch.zeros(config.VocabSize));
            if (!arch.TiedHead) lm_head = nn.Linear(arch.MlmTransform ? arch.MlmWidth : h, config.VocabSize, hasBias: false);
        }
        if (application == Application.PreTraining)
        {
            if (!arch.Pooler) throw new ArgumentException($"{family.Name} has no pooler, so it has no next-sentence head; use Application.MaskedLM");
            sentence = nn.Linear(h, 2);
        }
        if (application == Application.Discriminator)
        {
            discriminator_dense = nn.Linear(h, h);
            discriminator_output = nn.Linear(h, 1);
        }
        RegisterComponents();
        using (torch.no_grad())
        {
            family.Initialize(this);
            if (config.InitializerScheme is { } init && init != "normal") ArchitectureOverrides.Initialize(this, init);
            if (arch.DeepNormBeta is double beta) ArchitectureOverrides.ScaleDeepNormInit(this, beta);
        }
    }

    /// <summary>The family.</summary>
    public ModelFamily Family { get; }
    /// <summary>The config it was built from.</summary>
    public TransformerConfig Config { get; }
    /// <summary>The application.</summary>
    public Application Application { get; }
    /// <summary>The architecture options.</summary>
    public ArchitectureOptions Architecture => arch;
    /// <summary>The device the parameters are on.</summary>
    public Device Device => embeddings.TokenWeight.device;
    /// <summary>Longest sequence the position scheme supports (int.MaxValue without a position table): the one max-length rule.</summary>
    public long MaxLength => embeddings.MaxLength;
    /// <inheritdoc/>
    public string Engine => "torch";
    /// <inheritdoc/>
    public int HiddenSize => arch.Layer.Attention.HiddenSize;
    /// <inheritdoc/>
    /// <remarks>The encoder seam speaks fp32: a model computing in bf16/fp16 returns its hidden and pooled states widened, so heads, pooling and callers never see 16-bit tensors.</remarks>
    public ModelOutput Encode(Tensor ids, Tensor? segments, Tensor? attentionMask, bool outputHiddenStates = false) =>
        Forward(ids, segments, attentionMask, outputHiddenStates).Widened();
    /// <summary>Decoder blocks (0 without a decoder).</summary>
    public int DecoderLayers => decoder_layers?.Count ?? 0;

    /// <summary>
    /// Whether <c>forward</c> computes the MLM/LM logits over every position (default). Pretraining turns it off
    /// and calls <see cref="LanguageModelLogits"/> on the masked positions only: with a 12k–21k vocabulary
    /// the full (B, T, V) logits cost more than the encoder.
    /// </summary>
    public bool ComputeLogits { get; set; } = true;

    /// <summary>
    /// Recompute each block in the backward pass instead of storing its activations (bert4keras <c>RECOMPUTE</c>;
    /// see <see cref="Layers.Recompute"/>). Applies in training mode with gradients on, without a cache, a
    /// condition, residual attention scores or a relative bias. Gradients are unchanged; memory drops, time rises by a forward pass.
    /// </summary>
    public bool Recompute { get; set; }

    /// <summary>The application has an MLM/LM head.</summary>
    public bool HasLanguageModelHead => Application is Application.MaskedLM or Application.PreTraining or Application.LanguageModel or Application.UniLM or Application.Seq2Seq;

    /// <summary>
    /// The module-replacement seam (BERT-of-Theseus, docs/compression.md): when set, <see cref="Forward(ModelInput)"/>
    /// calls it instead of its own block loop with the embedded input (B, T, H) and a <see cref="BlockRunner"/> that
    /// applies any block with this forward's attention context: one of this model's (<see cref="Block"/>) or one of
    /// another model of the same architecture. What it returns goes on to the final norm and the heads as the last
    /// block's output would. Null (default): this model's blocks in order. While set, a forward cannot return every
    /// layer's hidden states (which layer is which is the caller's business) and blocks are not recomputed.
    /// </summary>
    public Func<Tensor, BlockRunner, Tensor>? BlockStack { get; set; }

    /// <summary>Block <paramref name="index"/> of the encoder (the shared one when the family shares its layers).</summary>
    /// <exception cref="ArgumentOutOfRangeException">Outside [0, layers).</exception>
    public nn.Module<Tensor, Tensor?, Tensor> Block(int index) =>
        index >= 0 && index < arch.Layers ? layers[arch.ShareLayers ? 0 : index]
        : throw new ArgumentOutOfRangeException(nameof(index), $"this {Family.Name} model has {arch.Layers} blocks; block {index} does not exist");

    /// <summary>The MLM/LM head on hidden states of any leading shape (…, H) → (…, V).</summary>
    /// <exception cref="InvalidOperationException">The model was built without the head.</exception>
    public Tensor LanguageModelLogits(Tensor hidden)
    {
        if (!HasLanguageModelHead) throw new InvalidOperationException($"this {Family.Name} model was built for {Application}, which has no MLM/LM head; build it with Application.MaskedLM");
        using var scope = torch.NewDisposeScope();
        var y = hidden;
        if (mlm_dense is not null) y = Activations.Apply(arch.MlmActivation, mlm_dense.forward(y));
        if (mlm_norm is not null) y = mlm_norm.forward(y);
        if (arch.HeadScale is double s) y = y * s;
        var logits = lm_head is not null ? Dense.Apply(lm_head, y) : nn.functional.linear(y, embeddings.TokenWeight, mlm_bias);   // tied: the token embeddings
        return logits.MoveToOuterDisposeScope();
    }

    /// <summary>LM logits (B, T, V) of ids (B, T) for a model with an LM head (GPT families: the next-token logits), all else dropped.</summary>
    public Tensor Logits(Tensor ids)
    {
        using var output = Forward(new ModelInput(ids));
        return (output.Logits is { } l ? PrecisionPolicy.Fp32Handle(l) : null) ?? throw new InvalidOperationException($"this {Family.Name} model was built for {Application}, which has no LM head");
    }

    /// <summary>Writes config.json and model.safetensors in Hugging Face layout (see <see cref="WeightLoader.SavePretrained"/>).</summary>
    public IReadOnlyList<string> SavePretrained(string directory) => WeightLoader.SavePretrained(this, directory);

    /// <summary>The token embedding matrix (V, E); adversarial training perturbs it.</summary>
    public Parameter TokenEmbeddings => embeddings.TokenWeight;

    /// <summary>A new, empty cache for incremental decoding (with a cross-attention part for encoder–decoders).</summary>
    public KeyValueCache NewCache() => decoder_layers is { } d
        ? new KeyValueCache(d.Count) { Cross = new KeyValueCache(d.Count) }
        : new KeyValueCache(arch.Layers);

    /// <summary>
    /// The additive (1 or B, 1, T, past + T) mask that LM and UniLM add: causal for LM; for UniLM, key k is visible
    /// to query j when cumsum(segments)[k] ≤ cumsum(segments)[j] (bert4keras's unilm_mask). With a cache, new
    /// tokens see all cached keys and the new ones up to themselves.
    /// </summary>
    Tensor? StructureBias(Tensor ids, Tensor? segments, long past)
    {
        if (Application is not (Application.LanguageModel or Application.UniLM)) return null;
        long t = ids.shape[1];
        Tensor allowed;
        if (past > 0 || Application == Application.LanguageModel)
            allowed = AttentionMasks.Causal(t, past, ids.device).unsqueeze(0);
        else
        {
            var s = segments ?? throw new ArgumentException("UniLM needs segment ids: 0 for the source, 1 for the target");
            var idx = s.cumsum(1);                                                           // (B, T)
            allowed = idx.unsqueeze(1) <= idx.unsqueeze(2);                                  // (B, query, key)
        }
        return AttentionMasks.Additive(allowed, embeddings.TokenWeight.dtype).unsqueeze(1);
    }

    /// <summary>Runs the model without collecting every layer's hidden states.</summary>
    public override ModelOutput forward(Tensor ids, Tensor? segments, Tensor? attentionMask) =>
        Forward(new ModelInput(ids) { Segments = segments, AttentionMask = attentionMask });

    /// <summary>
    /// Runs the model. <paramref name="ids"/> and <paramref name="segments"/> are (B, T) int64;
    /// <paramref name="attentionMask"/> is (B, T) with 1 at real tokens and 0 at padding.
    /// </summary>
    public ModelOutput Forward(Tensor ids, Tensor? segments, Tensor? attentionMask, bool outputHiddenStates) =>
        Forward(new ModelInput(ids) { Segments = segments, AttentionMask = attentionMask, OutputHiddenStates = outputHiddenStates });

    /// <summary>Runs the encoder (every family) and the heads the application has; an encoder–decoder returns its encoder states.</summary>
    /// <exception cref="ArgumentException">Bad shapes, ids outside the vocabulary, a cache without a causal application.</exception>
    public ModelOutput Forward(ModelInput input)
    {
        var (ids, segments, cache) = (input.Ids, input.Segments, input.Cache);
        CheckIds(ids);
        using var scope = torch.NewDisposeScope();
        Tensor? bias = input.AttentionMask is null ? null : AttentionMasks.Padding(input.AttentionMask, embeddings.TokenWeight.dtype);
        long past = cache?.Length ?? 0, t = ids.shape[1];
        if (cache is not null && Application is not (Application.LanguageModel or Application.UniLM))
            throw new ArgumentException($"a key/value cache needs Application.LanguageModel or Application.UniLM, this model is {Application}{(Application == Application.Seq2Seq ? " (decode with Decode)" : "")}");
        var positionIds = input.PositionIds;
        bool absolute = arch.Embeddings.MaxPositions > 0 || arch.Embeddings.SinusoidalPositions;   // rotary shifts inside attention
        if (past > 0 && positionIds is null && absolute) positionIds = torch.arange(past, past + t, device: ids.device).unsqueeze(0).expand(ids.shape[0], t);
        if (past > 0 && bias is not null) throw new ArgumentException("with a non-empty cache pass no attention mask (new tokens see every cached position)");
        if (cache is not null && arch.Gau is not null) throw new NotSupportedException($"{Family.Name}: gated attention units keep no key/value cache; decode without one");
        var structure = StructureBias(ids, segments, past);
        if (structure is not null) bias = bias is null ? structure : bias + structure;
        var x = embeddings.Forward(ids, segments, absolute ? positionIds : null, input.TokenEmbeddings);   // (B, T, H)
        using var positions = new PositionContext(t, past, x.device, x.dtype)
        {
            Bias = relative_bias?.Forward(t, past, x.device), PositionIds = absolute ? null : input.PositionIds,
            RelativeEmbeddings = relative_embeddings is null ? null : relative_embeddings_norm!.forward(relative_embeddings.weight!),
        };
        bool causal = Application == Application.LanguageModel && past == 0 && input.AttentionMask is null;
        var ctx = new AttentionContext
        {
            Mask = bias, MaskIsCausal = causal, Causal = Application == Application.LanguageModel, Positions = positions, Cache = cache, Condition = input.Condition, ResidualScores = arch.ResidualAttentionScores,
        };
        bool recompute = Recompute && training && torch.is_grad_enabled() && cache is null && input.Condition is null && !arch.ResidualAttentionScores && relative_bias is null && relative_embeddings is null;
        var all = input.OutputHiddenStates ? new List<Tensor> { x } : null;
        if (BlockStack is { } stack)
        {
            if (all is not null) throw new NotSupportedException("this model runs a substituted block stack (BlockStack, e.g. BERT-of-Theseus): it has no per-layer hidden states; use a pooling that needs only the last state");
            x = stack(x, (block, h, layer) => RunBlock(block, h, ctx, layer));
        }
        else
            for (int i = 0; i < arch.Layers; i++)
            {
                var block = layers[arch.ShareLayers ? 0 : i];
                x = recompute ? Layers.Recompute.Apply(block, x, bias) : RunBlock(block, x, ctx, i);
                all?.Add(x);
            }
        if (final_norm is not null)
        {
            x = final_norm.forward(x);
            if (all is not null) all[^1] = x;                                              // as Hugging Face reports it: the last state after the final norm
        }
        Tensor? pooled = pooler is null ? null : pooler.forward(x.select(1, 0)).tanh();
        Tensor? logits = ComputeLogits && HasLanguageModelHead && Application != Application.Seq2Seq ? LanguageModelLogits(x) : null;
        Tensor? sentenceLogits = sentence is null || pooled is null ? null : sentence.forward(pooled);
        Tensor? disc = null;
        if (discriminator_dense is not null)
            disc = discriminator_output!.forward(Activations.Apply(Config.HiddenAct, discriminator_dense.forward(x))).squeeze(-1);
        return new ModelOutput
        {
            LastHiddenState = x, HiddenStates = all, Pooled = pooled, Logits = logits, SentenceLogits = sentenceLogits, DiscriminatorLogits = disc,
        }.MoveOut();
    }

    /// <summary>
    /// The decoder of an encoder–decoder: logits (B, T, V) for decoder ids attending causally to themselves and to
    /// <see cref="DecoderInput.Memory"/>. With a cache, positions continue after the cached ones and the
    /// cross-attention keys are computed once.
    /// </summary>
    /// <exception cref="InvalidOperationException">The model has no decoder (build it with <see cref="Application.Seq2Seq"/>).</exception>
    public ModelOutput Decode(DecoderInput input)
    {
        var blocks = decoder_layers ?? throw new InvalidOperationException($"this {Family.Name} model has no decoder; build it with Application.Seq2Seq");
        CheckIds(input.Ids);
        using var scope = torch.NewDisposeScope();
        long past = input.Cache?.Length ?? 0, t = input.Ids.shape[1];
        var x = embeddings.Forward(input.Ids, null, null);                                // (B, T, H)
        var causal = AttentionMasks.Additive(AttentionMasks.Causal(t, past, x.device), x.dtype).unsqueeze(0).unsqueeze(0);   // (1, 1, T, past + T)
        using var positions = new PositionContext(t, past, x.device, x.dtype) { Bias = decoder_relative_bias?.Forward(t, past, x.device) };
        var ctx = new AttentionContext
        {
            Mask = causal, Causal = true, Positions = positions, Cache = input.Cache, Memory = input.Memory,
            MemoryMask = input.MemoryMask is null ? null : AttentionMasks.Padding(input.MemoryMask, x.dtype),
        };
        var all = input.OutputHiddenStates ? new List<Tensor> { x } : null;
        for (int i = 0; i < blocks.Count; i++)
        {
            x = blocks[i].Forward(x, ctx, i);
            all?.Add(x);
        }
        x = decoder_norm!.forward(x);
        if (all is not null) all[^1] = x;
        return new ModelOutput { LastHiddenState = x, HiddenStates = all, Logits = LanguageModelLogits(x) }.MoveOut();
    }

    static Tensor RunBlock(nn.Module<Tensor, Tensor?, Tensor> block, Tensor x, AttentionContext ctx, int layer) => block switch
    {
        TransformerBlock b => b.Forward(x, ctx, layer),
        GauLayer g => g.Forward(x, ctx),
        _ => throw new InvalidOperationException($"unknown block type {block.GetType().Name}"),
    };

    void CheckIds(Tensor ids)
    {
        if (ids.dim() != 2) throw new ArgumentException($"ids must be (batch, length), got shape [{string.Join(", ", ids.shape)}]");
        if (ids.shape[0] == 0) throw new ArgumentException("the batch is empty");
    }
}
