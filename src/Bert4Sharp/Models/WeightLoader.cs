namespace Bert4Sharp.Models;

using Bert4Sharp.Checkpoints;
using TorchSharp;
using static TorchSharp.torch;

/// <summary>Which naming a checkpoint uses.</summary>
public enum CheckpointNaming
{
    /// <summary>Hugging Face PyTorch names (<c>bert.encoder.layer.0.attention.self.query.weight</c>).</summary>
    HuggingFace,
    /// <summary>TensorFlow names as Google/bert4keras checkpoints have them (<c>bert/encoder/layer_0/attention/self/query/kernel</c>).</summary>
    TensorFlow,
    /// <summary>
    /// Hugging Face names of the base model, without the <see cref="ModelFamily.BasePrefix"/> (<c>encoder.layer.0…</c>): what
    /// sentence-transformers and ONNX exports of <c>BertModel</c> carry.
    /// </summary>
    HuggingFaceBase,
}

/// <summary>What loading found. Strict loading throws <see cref="CheckpointMismatchException"/> unless all three problem lists are empty.</summary>
public sealed record LoadReport(CheckpointNaming Naming, IReadOnlyList<string> Loaded, IReadOnlyList<string> Missing,
    IReadOnlyList<string> Unexpected, IReadOnlyList<string> Mismatched, IReadOnlyList<string> UnusedHeads, int SkippedSlots, int GraphConstants = 0)
{
    /// <summary>True when every model parameter was found with the right shape and nothing unknown was left.</summary>
    public bool IsComplete => Missing.Count == 0 && Unexpected.Count == 0 && Mismatched.Count == 0;
}

/// <summary>The checkpoint does not fit the model; the message lists missing, unexpected and mis-shaped names.</summary>
public sealed class CheckpointMismatchException(string message, LoadReport report) : Exception(message)
{
    /// <summary>The full report.</summary>
    public LoadReport Report { get; } = report;
}

/// <summary>Copies checkpoint tensors into a model through its family's name table.</summary>
public static class WeightLoader
{
    /// <summary>
    /// Loads <paramref name="checkpoint"/> into <paramref name="model"/>. Names are detected (HF or TF);
    /// TF kernels are transposed; q/k/v are fused; <paramref name="keepTokens"/> selects embedding rows
    /// (bert4keras <c>keep_tokens</c>) and <paramref name="compoundTokens"/> appends mean rows.
    /// </summary>
    /// <exception cref="CheckpointMismatchException">Strict loading found problems.</exception>
    public static LoadReport Load(TransformerModel model, Checkpoint checkpoint, bool strict = true,
        IReadOnlyList<int>? keepTokens = null, IReadOnlyList<int[]>? compoundTokens = null) =>
        Run(model, checkpoint, strict, keepTokens, compoundTokens, dryRun: false);

    /// <summary>
    /// Matches names and shapes without reading any tensor data (works on an index whose data shard is
    /// absent): what <see cref="Load"/> would load, miss, or find unexpected.
    /// </summary>
    public static LoadReport Check(TransformerModel model, Checkpoint checkpoint, IReadOnlyList<int>? keepTokens = null, IReadOnlyList<int[]>? compoundTokens = null) =>
        Run(model, checkpoint, strict: false, keepTokens, compoundTokens, dryRun: true);

    static LoadReport Run(TransformerModel model, Checkpoint checkpoint, bool strict, IReadOnlyList<int>? keepTokens, IReadOnlyList<int[]>? compoundTokens, bool dryRun)
    {
        var family = model.Family;
        var parameters = model.named_parameters().ToDictionary(p => p.name, p => p.parameter);
        int distinct = model.Architecture.ShareLayers ? 1 : model.Architecture.Layers;
        var table = family.NamesWithResearch(model.Config, distinct, parameters.Keys).ToList();
        var known = new HashSet<string>(StringComparer.Ordinal);
        foreach (var m in table) { known.UnionWith(m.HuggingFace); known.UnionWith(m.TensorFlow); }

        var present = new HashSet<string>(checkpoint.Entries.Select(e => e.Name), StringComparer.Ordinal);
        var naming = DetectNaming(family, table, present);
        if (naming is null)
        {
            var first = table[0];
            throw new CheckpointMismatchException(
                $"{checkpoint.Path}: none of the {family.Name} names were found (e.g. '{first.HuggingFace[0]}', '{NamesIn(first, CheckpointNaming.HuggingFaceBase, family)[0]}' or '{first.TensorFlow[0]}'); is this a {family.Name} checkpoint? It starts with '{checkpoint.Entries.FirstOrDefault()?.Name}'",
                new LoadReport(CheckpointNaming.HuggingFace, [], [.. parameters.Keys], [], [], [], 0));
        }

        var loaded = new List<string>();
        var missing = new List<string>();
        var mismatched = new List<string>();
        var unusedHeads = new List<string>();
        var used = new HashSet<string>(StringComparer.Ordinal);
        using (torch.no_grad())
        {
            foreach (var m in table)
            {
                var names = NamesIn(m, naming.Value, family);
                if (!parameters.TryGetValue(m.Internal, out var param))
                {
                    if (names.All(present.Contains)) { unusedHeads.Add(m.Internal); used.UnionWith(names); }
                    continue;
                }
                var absent = names.Where(n => !present.Contains(n)).ToList();
                if (absent.Count > 0) { missing.Add($"{m.Internal} (looked for {string.Join(", ", absent)})"); continue; }
                if (dryRun)
                {
                    var shapes = names.Select(n =>
                    {
                        var sh = checkpoint[n].Shape.ToArray();
                        return Transposed(m, naming) && sh.Length == 2 ? [sh[1], sh[0]] : sh;
                    }).ToList();
                    var shape = shapes[0].ToArray();
                    shape[0] = shapes.Sum(x => x.Length > 0 ? x[0] : 0);
                    if (m.Internal is "embeddings.word.weight" or "mlm_bias")
                        shape[0] = (keepTokens?.Count ?? shape[0]) + (compoundTokens?.Count ?? 0);
                    if (!shape.SequenceEqual(param.shape))
                        mismatched.Add($"{m.Internal}: checkpoint [{string.Join(", ", shape)}] (from {string.Join(" + ", names)}), model [{string.Join(", ", param.shape)}]");
                    else { loaded.Add(m.Internal); used.UnionWith(names); }
                    continue;
                }
                using var scope = torch.NewDisposeScope();
                var parts = names.Select(n =>
                {
                    var t = checkpoint.ReadTensor(n);
                    if (Transposed(m, naming) && t.dim() == 2) t = t.t();
                    return t;
                }).ToArray();
                var value = parts.Length == 1 ? parts[0] : torch.cat(parts, 0);
                if (m.Internal is "embeddings.word.weight" or "mlm_bias") value = SelectRows(value, keepTokens, compoundTokens);
                if (!value.shape.SequenceEqual(param.shape))
                {
                    mismatched.Add($"{m.Internal}: checkpoint [{string.Join(", ", value.shape)}] (from {string.Join(" + ", names)}), model [{string.Join(", ", param.shape)}]");
                    continue;
                }
                param.copy_(value.to(param.dtype));
                loaded.Add(m.Internal);
                used.UnionWith(names);
            }
        }
        var mapped = table.Select(m => m.Internal).ToHashSet(StringComparer.Ordinal);
        foreach (var p in parameters.Keys)
        {
            // Conditional-LayerNorm weights are new by design (zero-initialised, trained on the task).
            if (p.Contains(".condition_", StringComparison.Ordinal)) continue;
            if (!mapped.Contains(p)) missing.Add($"{p} (no checkpoint name for it in the {family.Name} table)");
        }
        int slots = checkpoint.Entries.Count(e => e.State == TensorState.Slot);
        // An ONNX graph also stores shape constants under exporter-made names; a weight under such a name that the
        // model needed would be missing, so the leftovers are counted, not reported as unexpected.
        bool GraphConstant(TensorEntry e) => checkpoint.Format == CheckpointFormat.Onnx && Checkpoints.Onnx.OnnxCheckpoint.IsAnonymousName(e.Name);
        int constants = checkpoint.Entries.Count(e => !used.Contains(e.Name) && GraphConstant(e));
        var unexpected = checkpoint.Entries
            .Where(e => e.State != TensorState.Slot && !used.Contains(e.Name) && !GraphConstant(e) && !family.Ignorable.Any(s => e.Name.EndsWith(s, StringComparison.Ordinal)))
            .Select(e => e.Name).ToList();
        var report = new LoadReport(naming.Value, loaded, missing, unexpected, mismatched, unusedHeads, slots, constants);
        if (strict && !report.IsComplete)
        {
            static string List(string what, IReadOnlyList<string> xs) => xs.Count == 0 ? "" : $" {xs.Count} {what}: {string.Join("; ", xs.Take(8))}{(xs.Count > 8 ? "; …" : "")}.";
            throw new CheckpointMismatchException($"{checkpoint.Path} does not fit the {family.Name} model built from its config ({naming} names)." +
                List("missing", missing) + List("unexpected", unexpected) + List("mis-shaped", mismatched) +
                " Fix the config or family, or load with Strict = false to skip them (they are reported).", report);
        }
        return report;
    }

    /// <summary>The naming with the most complete table entries in the checkpoint (Hugging Face wins ties), or null when none matches.</summary>
    internal static CheckpointNaming? DetectNaming(ModelFamily family, IReadOnlyList<NameMapping> table, IReadOnlySet<string> present)
    {
        var counts = new[] { CheckpointNaming.HuggingFace, CheckpointNaming.HuggingFaceBase, CheckpointNaming.TensorFlow }
            .Select(n => (Naming: n, Hits: n == CheckpointNaming.HuggingFaceBase && family.BasePrefix is null ? 0 : table.Count(m => NamesIn(m, n, family).All(present.Contains))))
            .ToList();
        var best = counts.MaxBy(c => c.Hits);
        return best.Hits == 0 ? null : best.Naming;
    }

    /// <summary>The checkpoint names of one table entry in a naming; base-model names drop the family's prefix where they have it.</summary>
    internal static string[] NamesIn(NameMapping m, CheckpointNaming naming, ModelFamily family) => naming switch
    {
        CheckpointNaming.TensorFlow => m.TensorFlow,
        CheckpointNaming.HuggingFaceBase when family.BasePrefix is { } p =>
            m.HuggingFace.Select(n => n.StartsWith(p + ".", StringComparison.Ordinal) ? n[(p.Length + 1)..] : n).ToArray(),
        _ => m.HuggingFace,
    };

    static bool Transposed(NameMapping m, CheckpointNaming? naming) =>
        naming == CheckpointNaming.TensorFlow ? m.TransposeTensorFlow : m.TransposeHuggingFace;

    static Tensor SelectRows(Tensor value, IReadOnlyList<int>? keep, IReadOnlyList<int[]>? compound)
    {
        var v = value;
        if (keep is not null)
        {
            long rows = v.shape[0];
            var bad = keep.FirstOrDefault(k => k < 0 || k >= rows, -1);
            if (keep.Any(k => k < 0 || k >= rows)) throw new ArgumentException($"keep_tokens holds id {bad}, outside the checkpoint's {rows} rows");
            v = v.index_select(0, torch.tensor(keep.Select(k => (long)k).ToArray()));
        }
        if (compound is { Count: > 0 })
        {
            var extra = compound.Select(ids =>
            {
                if (ids.Length == 0) throw new ArgumentException("a compound token needs at least one id");
                return value.index_select(0, torch.tensor(ids.Select(i => (long)i).ToArray())).mean([0L]);
            }).ToArray();
            v = torch.cat([v, torch.stack(extra)], 0);
        }
        return v;
    }

    /// <summary>
    /// Writes the model as Hugging Face would save it: <c>config.json</c> and <c>model.safetensors</c> with HF names
    /// (q/k/v split back), atomically. Returns the files written.
    /// </summary>
    public static IReadOnlyList<string> SavePretrained(TransformerModel model, string directory)
    {
        Directory.CreateDirectory(directory);
        var parameters = model.named_parameters().ToDictionary(p => p.name, p => p.parameter);
        int distinct = model.Architecture.ShareLayers ? 1 : model.Architecture.Layers;
        var sources = new List<TensorSource>();
        foreach (var m in model.Family.NamesWithResearch(model.Config, distinct, parameters.Keys))
        {
            if (!parameters.TryGetValue(m.Internal, out var p)) continue;
            var cpu = p.detach().cpu().contiguous();
            if (m.TransposeHuggingFace && cpu.dim() == 2) cpu = cpu.t().contiguous();        // back to [in, out]
            long rows = cpu.shape[0] / m.HuggingFace.Length;
            for (int i = 0; i < m.HuggingFace.Length; i++)
                sources.Add(TensorSource.From(m.HuggingFace[i], m.HuggingFace.Length == 1 ? cpu : cpu.narrow(0, i * rows, rows).contiguous()));
        }
        string cfg = Path.Combine(directory, "config.json");
        model.Config.Save(cfg, model.Family.Name);
        var files = Checkpoints.SafetensorsWriter.WriteModel(directory, sources, new Checkpoints.SafetensorsWriteOptions
        {
            Metadata = new Dictionary<string, string> { ["format"] = "pt", ["producer"] = "Bert4Sharp" },
        });
        return [cfg, .. files];
    }
}
