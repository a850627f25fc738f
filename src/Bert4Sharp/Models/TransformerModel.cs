namespace Bert4Sharp.Models;

using Bert4Sharp.Layers;
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
/// <param name="MlmTransform">Has the dense transform before the decoder (false: hidden states go straight to the tied decoder).</param>
/// <param name="MlmBias">Has an output bias.</param>
/// <param name="Gau">When set, the blocks are gated attention units (GAU-α) instead of attention + feed-forward.</param>
/// <param name="ResidualAttentionScores">RealFormer: each block's pre-softmax scores include the previous block's (bert4keras <c>residual_attention_scores</c>).</param>
public sealed record ArchitectureOptions(EmbeddingOptions Embeddings, EncoderLayerOptions Layer, int Layers, bool ShareLayers, bool Pooler,
    int MlmWidth, string MlmActivation, NormKind? MlmNorm, bool MlmTransform = true, bool MlmBias = true, GauOptions? Gau = null,
    bool ResidualAttentionScores = false);

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
/// The bert4keras skeleton: embeddings → N blocks → final layers (pooler, MLM, NSP/SOP, discriminator).
/// Families (<see cref="ModelFamily"/>) differ only in <see cref="ArchitectureOptions"/> and checkpoint names.
/// Parameter names are Bert4Sharp's own (<c>embeddings.word.weight</c>, <c>layers.0.attention.qkv.weight</c>…);
/// each family maps them to Hugging Face and TensorFlow names.
/// </summary>
public sealed class TransformerModel : nn.Module<Tensor, Tensor?, Tensor?, ModelOutput>
{
    readonly ArchitectureOptions arch;
#pragma warning disable IDE0044
    Embeddings embeddings;
    ModuleList<nn.Module<Tensor, Tensor?, Tensor>> layers;
    Linear? pooler;
    Linear? mlm_dense;
    Norm? mlm_norm;
    Parameter? mlm_bias;
    Linear? sentence;
    Linear? discriminator_dense;
    Linear? discriminator_output;
#pragma warning restore IDE0044

    /// <summary>Builds a randomly initialised model (use <see cref="TransformerModels.Build(string, string?, string, Application, BuildOptions?)"/> to load weights).</summary>
    public TransformerModel(ModelFamily family, TransformerConfig config, ArchitectureOptions arch, Application application, string? prefix = null)
        : base(prefix ?? family.Name)
    {
        Family = family;
        Config = config;
        this.arch = arch;
        Application = application;
        if (family.RequiredApplication is Application required && application != required)
            throw new ArgumentException($"{family.Name} is built for Application.{required} only, got Application.{application}");
        if (arch.ResidualAttentionScores && (arch.Gau is not null || arch.Layer.Attention.Position == AttentionPosition.TypicalRelative))
            throw new ArgumentException($"{family.Name}: residual attention scores need standard attention blocks");
        embeddings = new Embeddings(arch.Embeddings);
        int distinct = arch.ShareLayers ? 1 : arch.Layers;
        layers = nn.ModuleList(Enumerable.Range(0, distinct).Select(_ => arch.Gau is GauOptions g
            ? (nn.Module<Tensor, Tensor?, Tensor>)new GauLayer(g, arch.Layer.Norm, arch.Layer.Eps, arch.Layer.Dropout)
            : new EncoderLayer(arch.Layer)).ToArray());
        int h = arch.Layer.Attention.HiddenSize;
        if (arch.Pooler && application is Application.Encoder or Application.PreTraining) pooler = nn.Linear(h, h);
        if (application is Application.MaskedLM or Application.PreTraining or Application.LanguageModel or Application.UniLM)
        {
            if (arch.MlmTransform)
            {
                mlm_dense = nn.Linear(h, arch.MlmWidth);
                if (arch.MlmNorm is NormKind k) mlm_norm = new Norm(arch.MlmWidth, k, arch.Layer.Eps);
            }
            if (arch.MlmBias) mlm_bias = new Parameter(torch.zeros(config.VocabSize));
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
        // BERT's initialisation (what pretraining from scratch expects): N(0, initializer_range) for matrices and
        // embeddings, zero biases, unit norm scales. TorchSharp's defaults (N(0, 1) embeddings under a tied
        // decoder) start MLM logits with a standard deviation near √hidden.
        using (torch.no_grad())
            foreach (var (name, p) in named_parameters())
            {
                bool norm = name.Contains("norm", StringComparison.Ordinal);
                if (norm && p.dim() >= 2) continue;                                       // conditional LayerNorm starts at zero: the plain model
                if (p.dim() >= 2) p.normal_(0, config.InitializerRange);
                else if (name.EndsWith("bias", StringComparison.Ordinal)) p.zero_();
                else if (norm && name.EndsWith(".weight", StringComparison.Ordinal)) p.fill_(1);
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

    /// <summary>
    /// Whether <c>forward</c> computes the MLM/LM logits over every position (default). Pretraining turns it off
    /// and calls <see cref="LanguageModelLogits"/> on the masked positions only: with a 12k–21k vocabulary
    /// the full (B, T, V) logits cost more than the encoder.
    /// </summary>
    public bool ComputeLogits { get; set; } = true;

    /// <summary>
    /// Recompute each block in the backward pass instead of storing its activations (bert4keras <c>RECOMPUTE</c>;
    /// see <see cref="Layers.Recompute"/>). Applies in training mode with gradients on, without a cache, a
    /// condition or residual attention scores. Gradients are unchanged; memory drops, time rises by a forward pass.
    /// </summary>
    public bool Recompute { get; set; }

    /// <summary>The application has the MLM/LM head (tied decoder).</summary>
    public bool HasLanguageModelHead => Application is Application.MaskedLM or Application.PreTraining or Application.LanguageModel or Application.UniLM;

    /// <summary>The MLM/LM head on hidden states of any leading shape (…, H) → (…, V).</summary>
    /// <exception cref="InvalidOperationException">The model was built without the head.</exception>
    public Tensor LanguageModelLogits(Tensor hidden)
    {
        if (!HasLanguageModelHead) throw new InvalidOperationException($"this {Family.Name} model was built for {Application}, which has no MLM/LM head; build it with Application.MaskedLM");
        var y = hidden;
        if (mlm_dense is not null) y = Activations.Apply(arch.MlmActivation, mlm_dense.forward(y));
        if (mlm_norm is not null) y = mlm_norm.forward(y);
        return nn.functional.linear(y, embeddings.TokenWeight, mlm_bias);                  // decoder tied to the token embeddings
    }

    /// <summary>The token embedding matrix (V, E); adversarial training perturbs it.</summary>
    public Parameter TokenEmbeddings => embeddings.TokenWeight;

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
    public override ModelOutput forward(Tensor ids, Tensor? segments, Tensor? attentionMask) => Forward(ids, segments, attentionMask, false);

    /// <summary>
    /// Runs the model. <paramref name="ids"/> and <paramref name="segments"/> are (B, T) int64;
    /// <paramref name="attentionMask"/> is (B, T) with 1 at real tokens and 0 at padding.
    /// </summary>
    public ModelOutput Forward(Tensor ids, Tensor? segments, Tensor? attentionMask, bool outputHiddenStates) =>
        Forward(ids, segments, attentionMask, null, outputHiddenStates);

    /// <summary>
    /// Runs the model with custom position ids (B, T) (bert4keras <c>custom_position_ids</c>) and, for models
    /// built with conditional LayerNorm, the condition (B, C).
    /// </summary>
    public ModelOutput Forward(Tensor ids, Tensor? segments, Tensor? attentionMask, Tensor? positionIds, bool outputHiddenStates, Tensor? condition = null) =>
        Forward(ids, segments, attentionMask, positionIds, outputHiddenStates, condition, null);

    /// <summary>
    /// Incremental decoding for <see cref="Application.LanguageModel"/> and <see cref="Application.UniLM"/>: the
    /// first call (empty <paramref name="cache"/>) takes the whole prompt with the application's mask; later calls
    /// take new tokens, which see every cached position and the new ones before them. Positions continue after
    /// the cache unless <paramref name="positionIds"/> are given.
    /// </summary>
    public ModelOutput Forward(Tensor ids, Tensor? segments, Tensor? attentionMask, Tensor? positionIds, bool outputHiddenStates, Tensor? condition, KeyValueCache? cache)
    {
        if (ids.dim() != 2) throw new ArgumentException($"ids must be (batch, length), got shape [{string.Join(", ", ids.shape)}]");
        if (ids.shape[0] == 0) throw new ArgumentException("the batch is empty");
        using var scope = torch.NewDisposeScope();
        Tensor? bias = attentionMask is null ? null : AttentionMasks.Padding(attentionMask, embeddings.TokenWeight.dtype);
        long past = cache?.Length ?? 0, t = ids.shape[1];
        if (cache is not null && Application is not (Application.LanguageModel or Application.UniLM))
            throw new ArgumentException($"a key/value cache needs Application.LanguageModel or Application.UniLM, this model is {Application}");
        bool absolute = arch.Embeddings.MaxPositions > 0 || arch.Embeddings.SinusoidalPositions;   // rotary shifts inside attention
        if (past > 0 && positionIds is null && absolute) positionIds = torch.arange(past, past + t, device: ids.device).unsqueeze(0).expand(ids.shape[0], t);
        if (past > 0 && bias is not null) throw new ArgumentException("with a non-empty cache pass no attention mask (new tokens see every cached position)");
        var structure = StructureBias(ids, segments, past);
        if (structure is not null) bias = bias is null ? structure : bias + structure;
        var x = embeddings.Forward(ids, segments, positionIds);
        var all = outputHiddenStates ? new List<Tensor> { x } : null;
        Tensor? scores = null;
        for (int i = 0; i < arch.Layers; i++)
        {
            var block = layers[arch.ShareLayers ? 0 : i];
            if (Recompute && training && torch.is_grad_enabled() && cache is null && condition is null && !arch.ResidualAttentionScores)
                x = Layers.Recompute.Apply(block, x, bias);
            else if (block is EncoderLayer encoderLayer) x = encoderLayer.Forward(x, bias, condition, scores, out scores, arch.ResidualAttentionScores, cache, i);
            else if (condition is not null) throw new ArgumentException($"{Family.Name} blocks take no condition");
            else x = block.forward(x, bias);
            all?.Add(x);
        }
        Tensor? pooled = pooler is null ? null : pooler.forward(x.select(1, 0)).tanh();
        Tensor? logits = ComputeLogits && HasLanguageModelHead ? LanguageModelLogits(x) : null;
        Tensor? sentenceLogits = sentence is null || pooled is null ? null : sentence.forward(pooled);
        Tensor? disc = null;
        if (discriminator_dense is not null)
            disc = discriminator_output!.forward(Activations.Apply(Config.HiddenAct, discriminator_dense.forward(x))).squeeze(-1);
        return new ModelOutput
        {
            LastHiddenState = x, HiddenStates = all, Pooled = pooled, Logits = logits, SentenceLogits = sentenceLogits, DiscriminatorLogits = disc,
        }.MoveOut();
    }
}
