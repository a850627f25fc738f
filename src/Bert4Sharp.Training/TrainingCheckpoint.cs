namespace Bert4Sharp.Training;

using System.Globalization;
using Bert4Sharp.Checkpoints;
using Bert4Sharp.Runtime;
using TorchSharp;
using static TorchSharp.torch;

/// <summary>Where training stood when a checkpoint was written.</summary>
/// <param name="Step">Optimizer steps taken (batches consumed).</param>
/// <param name="Epoch">Current epoch (0-based).</param>
/// <param name="StepInEpoch">Batches of <paramref name="Epoch"/> already consumed.</param>
/// <param name="Seed">Data-order seed.</param>
/// <param name="BestMetric">Best evaluation value so far (for best-checkpoint saving and early stopping), or null.</param>
/// <param name="BadEvaluations">Evaluations since the best one (early-stopping patience).</param>
/// <param name="SkippedSteps">Steps skipped for a non-finite loss.</param>
/// <param name="WorldSize">Processes of the data-parallel run that wrote it (1 alone).</param>
public sealed record TrainingProgress(long Step, int Epoch, long StepInEpoch, int Seed, double? BestMetric = null, int BadEvaluations = 0, long SkippedSteps = 0,
    int WorldSize = 1);

/// <summary>
/// One file with everything a resume needs: model weights (<c>model/…</c>), optimizer state (<c>optimizer/…</c>),
/// the torch RNG (<c>rng/torch</c>) and, in the safetensors metadata, the step, epoch, position and counters.
/// Written atomically (temp file + rename), so a crash or a full disk leaves the previous checkpoint intact.
/// </summary>
public static class TrainingCheckpoint
{
    const string FormatTag = "bert4sharp-training-1";

    /// <summary>Writes the checkpoint.</summary>
    public static void Save(string path, nn.Module model, Optimizer optimizer, TrainingProgress progress)
    {
        var tensors = new List<TensorSource>();
        foreach (var (name, t) in model.state_dict()) tensors.Add(TensorSource.From("model/" + name, t));
        foreach (var (name, t) in optimizer.StateDict()) tensors.Add(TensorSource.From("optimizer/" + name, t));
        var rng = torch.random.get_rng_state();
        tensors.Add(TensorSource.From("rng/torch", rng));
        var counters = optimizer.Counters;
        var meta = new Dictionary<string, string>
        {
            ["format"] = FormatTag,
            ["optimizer"] = optimizer.Name,
            ["precision"] = PrecisionPolicy.NameOf(PrecisionPolicy.Of(model)),
            ["optimizer_iterations"] = counters.Iterations.ToString(CultureInfo.InvariantCulture),
            ["optimizer_micro_steps"] = counters.MicroSteps.ToString(CultureInfo.InvariantCulture),
            ["loss_scale"] = counters.LossScale.ToString("R", CultureInfo.InvariantCulture),
            ["loss_scale_good_steps"] = counters.GoodSteps.ToString(CultureInfo.InvariantCulture),
            ["loss_scale_overflows"] = counters.OverflowSkips.ToString(CultureInfo.InvariantCulture),
            ["learning_rate"] = optimizer.LearningRate.ToString("R", CultureInfo.InvariantCulture),
            ["step"] = progress.Step.ToString(CultureInfo.InvariantCulture),
            ["epoch"] = progress.Epoch.ToString(CultureInfo.InvariantCulture),
            ["step_in_epoch"] = progress.StepInEpoch.ToString(CultureInfo.InvariantCulture),
            ["seed"] = progress.Seed.ToString(CultureInfo.InvariantCulture),
            ["bad_evaluations"] = progress.BadEvaluations.ToString(CultureInfo.InvariantCulture),
            ["skipped_steps"] = progress.SkippedSteps.ToString(CultureInfo.InvariantCulture),
            ["world_size"] = progress.WorldSize.ToString(CultureInfo.InvariantCulture),
        };
        if (progress.BestMetric is double best) meta["best_metric"] = best.ToString("R", CultureInfo.InvariantCulture);
        try { SafetensorsWriter.Write(path, tensors, new SafetensorsWriteOptions { Metadata = meta }); }
        finally { rng.Dispose(); }
    }

    /// <summary>Restores model, optimizer and RNG; returns the progress to continue from.</summary>
    /// <param name="path">The checkpoint.</param>
    /// <param name="model">The model to restore.</param>
    /// <param name="optimizer">Its optimizer.</param>
    /// <param name="worldSize">Processes of this run: a resume needs as many as wrote the checkpoint.</param>
    /// <exception cref="CheckpointException">
    /// Not a training checkpoint, another optimizer, another number of processes, or weights that do not fit the model.
    /// </exception>
    public static TrainingProgress Load(string path, nn.Module model, Optimizer optimizer, int worldSize = 1)
    {
        using var ck = Checkpoint.Open(path);
        var meta = ck.Metadata;
        if (!meta.TryGetValue("format", out var f) || f != FormatTag)
            throw new CheckpointFormatException(path, null, $"not a Bert4Sharp training checkpoint (metadata 'format' is '{f ?? "absent"}', expected '{FormatTag}'); resume needs the file written by the trainer");
        // Checkpoints before this key were all written by one process.
        int written = meta.TryGetValue("world_size", out var ws) && int.TryParse(ws, CultureInfo.InvariantCulture, out int w) ? w : 1;
        if (written != worldSize)
            throw new CheckpointFormatException(path, null, $"the checkpoint was written by a run of {Processes(written)} but this run has {Processes(worldSize)}: " +
                $"resume with the same count ({(written == 1 ? "without mpirun" : $"mpirun -np {written}")}), since each process's share of the batches and its " +
                "random streams depend on it; or start a new run with --overwrite");
        if (meta["optimizer"] != optimizer.Name)
            throw new CheckpointFormatException(path, null, $"the checkpoint was written by the '{meta["optimizer"]}' optimizer but this run uses '{optimizer.Name}'");
        // Weights and master copies only continue exactly in the precision they were trained in (checkpoints before
        // this key were all fp32).
        string trained = meta.GetValueOrDefault("precision", "fp32"), now = PrecisionPolicy.NameOf(PrecisionPolicy.Of(model));
        if (trained != now)
            throw new CheckpointFormatException(path, null, $"the checkpoint was trained in {trained} but this run computes in {now}: resume with --precision {trained} (or start a new run with --overwrite)");
        var own = model.state_dict();
        var missing = own.Keys.Where(k => !ck.TryGetEntry("model/" + k, out _)).ToList();
        if (missing.Count > 0) throw new CheckpointFormatException(path, null, $"the checkpoint lacks {missing.Count} model tensors, e.g. '{missing[0]}': it was written for another model");
        using (torch.no_grad())
            foreach (var (name, t) in own)
            {
                using var saved = ck.ReadTensor("model/" + name);
                if (!saved.shape.SequenceEqual(t.shape))
                    throw new CheckpointFormatException(path, "model/" + name, $"shape [{string.Join(", ", saved.shape)}] does not fit the model's [{string.Join(", ", t.shape)}]");
                t.copy_(saved);
            }
        var state = new Dictionary<string, Tensor>();
        try
        {
            foreach (var e in ck.Entries.Where(e => e.Name.StartsWith("optimizer/", StringComparison.Ordinal)))
                state[e.Name["optimizer/".Length..]] = ck.ReadTensor(e);
            optimizer.LoadStateDict(state, new OptimizerCounters(Long("optimizer_iterations"), (int)Long("optimizer_micro_steps"),
                double.Parse(meta["loss_scale"], CultureInfo.InvariantCulture), Long("loss_scale_good_steps"), Long("loss_scale_overflows")));
        }
        finally { foreach (var t in state.Values) t.Dispose(); }
        optimizer.LearningRate = double.Parse(meta["learning_rate"], CultureInfo.InvariantCulture);
        using (var rng = ck.ReadTensor("rng/torch")) torch.random.set_rng_state(rng);
        return new TrainingProgress(Long("step"), (int)Long("epoch"), Long("step_in_epoch"), (int)Long("seed"),
            meta.TryGetValue("best_metric", out var b) ? double.Parse(b, CultureInfo.InvariantCulture) : null,
            (int)Long("bad_evaluations"), Long("skipped_steps"), written);

        static string Processes(int n) => n == 1 ? "1 process" : $"{n} processes";

        long Long(string key) => meta.TryGetValue(key, out var v) && long.TryParse(v, CultureInfo.InvariantCulture, out long x)
            ? x : throw new CheckpointFormatException(path, null, $"metadata '{key}' is missing or not an integer");
    }
}
