namespace Bert4Sharp.Models;

using Bert4Sharp.Checkpoints;
using Bert4Sharp.Layers;
using TorchSharp;
using static TorchSharp.torch;

/// <summary>Options of <see cref="TransformerModels.Build(string, string?, string, Application, BuildOptions?)"/>.</summary>
public sealed record BuildOptions
{
    /// <summary>Fail on missing, unexpected or mis-shaped weights (default); false loads what fits and reports the rest.</summary>
    public bool Strict { get; init; } = true;
    /// <summary>bert4keras <c>keep_tokens</c>: embedding rows to keep, in new-id order (from <c>Vocabulary.Simplify</c>).</summary>
    public IReadOnlyList<int>? KeepTokens { get; init; }
    /// <summary>bert4keras <c>compound_tokens</c>: new rows as the mean of existing ones (from <c>CompoundTokens</c>).</summary>
    public IReadOnlyList<int[]>? CompoundTokens { get; init; }
    /// <summary>bert4keras <c>hierarchical_position</c>: extend learned positions to max² by hierarchical decomposition with this α (0.4 in the blog); null for off.</summary>
    public double? HierarchicalPositionAlpha { get; init; }
    /// <summary>Conditional LayerNorm in every block (bert4keras <c>layer_norm_cond</c>); the condition goes to <c>Forward(…, condition)</c>.</summary>
    public ConditionOptions? Condition { get; init; }
    /// <summary>RealFormer residual attention scores (bert4keras <c>residual_attention_scores</c>).</summary>
    public bool ResidualAttentionScores { get; init; }
    /// <summary>
    /// Module name (bert4keras <c>prefix</c>): a parent module that registers two models under their prefixes
    /// (teacher and student, BERT-of-Theseus) keeps their parameters apart. Default: the family name.
    /// </summary>
    public string? Prefix { get; init; }
    /// <summary>Device; default CUDA when present, else CPU.</summary>
    public Device? Device { get; init; }
}

/// <summary>
/// Config (+ checkpoint) → a ready model, as bert4keras's <c>build_transformer_model</c>: the builder under
/// <see cref="AutoModel.Load(string, AutoModelOptions?)"/>, and the way to make a fresh model for pretraining.
/// </summary>
public static class TransformerModels
{
    /// <summary>
    /// Builds a <paramref name="family"/> model from <paramref name="configPath"/> (HF <c>config.json</c> or
    /// bert4keras <c>bert_config.json</c>) and loads <paramref name="checkpointPath"/> (any format
    /// <see cref="Checkpoint.Open(string)"/> reads), in evaluation mode.
    /// </summary>
    public static TransformerModel Build(string configPath, string? checkpointPath, string family, Application application = Application.Encoder, BuildOptions? options = null)
    {
        var config = TransformerConfig.Load(configPath);
        if (checkpointPath is null) return Build(config, null, ModelFamily.Get(family), application, options, out _);
        using var ck = Checkpoint.Open(checkpointPath);
        return Build(config, ck, ModelFamily.Get(family), application, options, out _);
    }

    /// <summary>A fresh, family-initialised model of <paramref name="family"/> (what pretraining starts from), on the default device, in evaluation mode.</summary>
    public static TransformerModel Create(TransformerConfig config, string family, Application application, BuildOptions? options = null) =>
        Build(config, null, ModelFamily.Get(family), application, options, out _);

    /// <summary>Builds from objects; <paramref name="report"/> tells what loading found (null without a checkpoint).</summary>
    public static TransformerModel Build(TransformerConfig config, Checkpoint? checkpoint, ModelFamily family, Application application,
        BuildOptions? options, out LoadReport? report)
    {
        options ??= new();
        if (checkpoint is not null) (family, config) = family.ForCheckpoint(config, checkpoint);
        int vocab = options.KeepTokens?.Count ?? config.VocabSize;
        vocab += options.CompoundTokens?.Count ?? 0;
        var effective = config with { VocabSize = vocab };
        effective.Validate();
        var arch = ArchitectureOverrides.Apply(family.Architecture(effective), effective, family.Name);
        if (options.HierarchicalPositionAlpha is double alpha)
        {
            if (arch.Embeddings.MaxPositions == 0) throw new ArgumentException($"{family.Name} has no learned position table to decompose");
            if (alpha <= 0 || alpha >= 1) throw new ArgumentOutOfRangeException(nameof(options), $"HierarchicalPositionAlpha must be in (0, 1), got {alpha}");
            arch = arch with { Embeddings = arch.Embeddings with { HierarchicalAlpha = alpha } };
        }
        if (checkpoint is not null && arch.Pooler && application == Application.Encoder)
        {
            // Plain encoders keep the pooler only when the checkpoint has one (MLM-only checkpoints do not).
            var names = family.Names(effective, 1).FirstOrDefault(m => m.Internal == "pooler.weight");
            if (names is not null && !new[] { CheckpointNaming.HuggingFace, CheckpointNaming.HuggingFaceBase, CheckpointNaming.TensorFlow }
                    .Any(n => checkpoint.TryGetEntry(WeightLoader.NamesIn(names, n, family)[0], out _)))
                arch = arch with { Pooler = false };
        }
        if (options.ResidualAttentionScores) arch = arch with { ResidualAttentionScores = true };
        if (options.Condition is not null) arch = arch with { Layer = arch.Layer with { Condition = options.Condition } };
        var model = new TransformerModel(family, effective, arch, application, options.Prefix);
        report = null;
        if (checkpoint is not null)
            report = WeightLoader.Load(model, checkpoint, options.Strict, options.KeepTokens, options.CompoundTokens);
        model.eval();
        var device = options.Device ?? Runtime.TorchInfo.DefaultDevice;
        if (device.type != DeviceType.CPU) model.to(device);
        return model;
    }
}
