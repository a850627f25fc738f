namespace Bert4Sharp.Training;

using Bert4Sharp.Checkpoints;
using static TorchSharp.torch;

/// <summary>
/// bert4keras's Evaluator pattern: every epoch (or every <see cref="EverySteps"/>) run <c>evaluate</c>, log the
/// metrics, save the model when the main metric improves (atomically) and stop after <see cref="Patience"/>
/// evaluations without improvement. With <see cref="UseEma"/> the evaluation (and the saved best model) uses
/// the optimizer's EMA weights.
/// </summary>
/// <param name="metric">Name of the main metric among those <paramref name="evaluate"/> returns (e.g. <c>accuracy</c>).</param>
/// <param name="evaluate">Computes metrics (runs in evaluation mode under no_grad).</param>
/// <param name="higherIsBetter">True for accuracy-like metrics, false for losses.</param>
public sealed class EvaluationCallback(string metric, Func<IReadOnlyDictionary<string, double>> evaluate, bool higherIsBetter = true) : TrainerCallback
{
    /// <summary>Evaluate every this many steps as well as at each epoch end; null for epoch ends only.</summary>
    public long? EverySteps { get; init; }
    /// <summary>Where the best model's weights go (safetensors); default <c>OutputDirectory/best.safetensors</c>.</summary>
    public string? BestModelPath { get; init; }
    /// <summary>Stop after this many evaluations without improvement; null never stops.</summary>
    public int? Patience { get; init; }
    /// <summary>Evaluate (and save) with the EMA weights.</summary>
    public bool UseEma { get; init; }
    /// <summary>What the evaluation data is called in logs, e.g. <c>dev</c> (default <c>held-out</c>).</summary>
    public string DataName { get; init; } = "held-out";
    /// <summary>Every evaluation of this run.</summary>
    public List<EvaluationRecord> History { get; } = [];
    /// <summary>The evaluation of this run with the best main metric (the one whose weights were saved; the first of equals), or null before any.</summary>
    public EvaluationRecord? Best => History.Count == 0 ? null : higherIsBetter ? History.MaxBy(h => h.Metrics[metric]) : History.MinBy(h => h.Metrics[metric]);

    /// <summary>
    /// Where the best evaluation was and that it was chosen on this data, e.g. "epoch 3 of 4, chosen on dev" or
    /// "step 1200 (epoch 1), chosen on held-out": a best score selected on the data it is reported on is optimistic.
    /// </summary>
    public string DescribeBest() => Best is not { } b ? $"no evaluation on {DataName} yet"
        : (b.AtEpochEnd ? $"epoch {b.Epoch} of {b.Epochs}" : $"step {b.Step} (epoch {b.Epoch} of {b.Epochs})") + $", chosen on {DataName}";
    /// <summary>Where the best model was last saved, or null.</summary>
    public string? SavedBestPath { get; private set; }

    /// <inheritdoc/>
    public override void OnStepEnd(TrainerState state)
    {
        if (EverySteps is long n && state.Step % n == 0) Evaluate(state, atEpochEnd: false);
    }

    /// <inheritdoc/>
    public override void OnEpochEnd(TrainerState state)
    {
        if (EverySteps is null || state.Step % EverySteps.Value != 0) Evaluate(state, atEpochEnd: true);
    }

    /// <inheritdoc/>
    public override void OnTrainEnd(TrainerState state)
    {
        if (Best is { } b) state.Log($"best {DataName} {metric} {b.Metrics[metric]:G4} ({DescribeBest()})");
    }

    void Evaluate(TrainerState state, bool atEpochEnd)
    {
        if (UseEma) state.Optimizer.ApplyEma();
        try
        {
            state.Model.eval();
            IReadOnlyDictionary<string, double> values;
            using (no_grad()) values = evaluate();
            if (!values.TryGetValue(metric, out double v))
                throw new InvalidOperationException($"the evaluation returned no '{metric}' (it returned {string.Join(", ", values.Keys)})");
            History.Add(new EvaluationRecord(state.Step, state.Epoch + 1, state.Epochs, atEpochEnd, values));
            state.Record(values.ToDictionary(kv => "eval/" + kv.Key, kv => kv.Value));
            bool better = state.BestMetric is not double best || (higherIsBetter ? v > best : v < best);
            state.Log($"evaluation on {DataName} at step {state.Step} (epoch {state.Epoch + 1}): {string.Join(", ", values.Select(kv => $"{kv.Key} {kv.Value:G4}"))}{(better ? $" (best so far on {DataName})" : "")}");
            if (better)
            {
                state.BestMetric = v;
                state.BadEvaluations = 0;
                string? path = BestModelPath ?? (state.OutputDirectory is null ? null : Path.Combine(state.OutputDirectory, "best.safetensors"));
                if (path is not null && state.IsPrimary)                                   // every rank evaluates the same weights; rank 0 writes
                {
                    SafetensorsWriter.Write(path, state.Model.state_dict().Select(kv => TensorSource.From(kv.Key, kv.Value)),
                        new SafetensorsWriteOptions { Metadata = new Dictionary<string, string> { ["step"] = state.Step.ToString(System.Globalization.CultureInfo.InvariantCulture), [metric] = v.ToString("R", System.Globalization.CultureInfo.InvariantCulture) } });
                    SavedBestPath = path;
                }
            }
            else if (Patience is int p && ++state.BadEvaluations >= p)
                state.StopReason = $"early stopping: {metric} did not improve on {state.BestMetric:G6} for {p} evaluations";
        }
        finally
        {
            state.Model.train();
            if (UseEma) state.Optimizer.RestoreWeights();
        }
    }
}

/// <summary>One evaluation of an <see cref="EvaluationCallback"/>.</summary>
/// <param name="Step">Steps taken when it ran.</param>
/// <param name="Epoch">The epoch it ran in or closed (1-based).</param>
/// <param name="Epochs">The run's epoch limit.</param>
/// <param name="AtEpochEnd">It ran at the end of <paramref name="Epoch"/>.</param>
/// <param name="Metrics">What the evaluation returned.</param>
public sealed record EvaluationRecord(long Step, int Epoch, int Epochs, bool AtEpochEnd, IReadOnlyDictionary<string, double> Metrics);
