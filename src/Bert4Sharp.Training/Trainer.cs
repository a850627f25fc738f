namespace Bert4Sharp.Training;

using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using Bert4Sharp.Checkpoints;
using Bert4Sharp.Runtime;
using Bert4Sharp.Training.Distributed;
using Spectre.Console;
using TorchSharp;
using static TorchSharp.torch;

/// <summary>Rules for a trainer's output directory.</summary>
public static class TrainingOutput
{
    /// <summary>
    /// Refuses a directory that holds a previous run's checkpoint unless resuming or overwriting on purpose, so a
    /// finished run is never replaced by accident. Call it before expensive preparation; the trainer calls it too.
    /// </summary>
    /// <exception cref="IOException">The directory holds a run and neither flag is set.</exception>
    public static void EnsureUsable(string directory, bool resume, bool overwrite)
    {
        if (!resume && !overwrite && File.Exists(Path.Combine(directory, "checkpoint.safetensors")))
            throw new IOException($"{directory} already holds a training run (checkpoint.safetensors); resume it (--resume / Resume), " +
                "choose another output directory, or replace it on purpose (--overwrite / Overwrite)");
    }
}

/// <summary>What the trainer does when a step's loss is NaN or ±∞.</summary>
public enum NonFiniteLossPolicy
{
    /// <summary>Stop with a <see cref="TrainingDivergedException"/> naming the step, epoch and batch.</summary>
    Stop,
    /// <summary>Skip the update (no parameter changes) and go on; the count is reported and checkpointed.</summary>
    Skip,
}

/// <summary>How progress is shown.</summary>
public enum ProgressDisplay
{
    /// <summary>A live bar on an interactive terminal, otherwise a line every <see cref="TrainerOptions.LogEverySteps"/>.</summary>
    Auto,
    /// <summary>Always the live bar (Spectre.Console).</summary>
    Bar,
    /// <summary>A line every <see cref="TrainerOptions.LogEverySteps"/> steps.</summary>
    Lines,
    /// <summary>Nothing on the console.</summary>
    None,
}

/// <summary>Options of <see cref="Trainer{T}"/>.</summary>
public sealed record TrainerOptions
{
    /// <summary>Passes over the data.</summary>
    public int Epochs { get; init; } = 1;
    /// <summary>Stop after this many steps in all (counting steps before a resume); null for no limit.</summary>
    public long? MaxSteps { get; init; }
    /// <summary>Stop when this much wall-clock time has passed in this run; null for no limit.</summary>
    public TimeSpan? TimeBudget { get; init; }
    /// <summary>Batch size, shuffling, bucketing.</summary>
    public BatchingOptions Batching { get; init; } = new();
    /// <summary>Seed of the data order and of <see cref="StepContext.Random"/>.</summary>
    public int Seed { get; init; } = 42;
    /// <summary>
    /// Where <c>checkpoint.safetensors</c>, <c>metrics.jsonl</c> and the PNG curves go; null to write nothing.
    /// </summary>
    public string? OutputDirectory { get; init; }
    /// <summary>Write the checkpoint every this many steps (0: only at the end of each epoch and of training).</summary>
    public long CheckpointEverySteps { get; init; }
    /// <summary>Continue from <c>OutputDirectory/checkpoint.safetensors</c> when it exists.</summary>
    public bool Resume { get; init; }
    /// <summary>
    /// Start afresh even though <see cref="OutputDirectory"/> holds a previous run's checkpoint (which is then
    /// replaced). Without it (and without <see cref="Resume"/>) such a directory is refused, so a finished run is
    /// never overwritten by accident.
    /// </summary>
    public bool Overwrite { get; init; }
    /// <summary>Steps between metric records (and console lines).</summary>
    public int LogEverySteps { get; init; } = 10;
    /// <summary>Console progress.</summary>
    public ProgressDisplay Progress { get; init; } = ProgressDisplay.Auto;
    /// <summary>NaN/Inf loss handling.</summary>
    public NonFiniteLossPolicy OnNonFiniteLoss { get; init; } = NonFiniteLossPolicy.Stop;
    /// <summary>With <see cref="NonFiniteLossPolicy.Skip"/>: stop anyway after this many skips in a row.</summary>
    public int MaxConsecutiveSkips { get; init; } = 50;
    /// <summary>Adversarial training, gradient penalty and the like, applied around every backward pass.</summary>
    public IReadOnlyList<TrainingTechnique> Techniques { get; init; } = [];
    /// <summary>Where console lines go (default: standard output).</summary>
    public Action<string>? Log { get; init; }
    /// <summary>
    /// The precision the run resolved (<see cref="PrecisionPolicy"/>), applied to the model before the optimizer was
    /// built: <c>Fit</c> logs it and refuses a model whose parameters do not match; null to only read the model's.
    /// </summary>
    public PrecisionPlan? Precision { get; init; }
    /// <summary>
    /// Data-parallel training over several processes (<c>mpirun -np N</c>; docs/distributed.md): the batch is the global
    /// batch, each rank trains on its share and gradients are averaged before the optimizer step; only rank 0 writes
    /// and prints. Null (or one rank) for a single process.
    /// </summary>
    public DataParallelOptions? DataParallel { get; init; }

    /// <summary>Checks ranges; names the option and the value.</summary>
    public void Validate()
    {
        if (Epochs < 1) throw new ArgumentOutOfRangeException(nameof(Epochs), $"Epochs must be ≥ 1, got {Epochs}");
        if (MaxSteps is long m && m < 1) throw new ArgumentOutOfRangeException(nameof(MaxSteps), $"MaxSteps must be ≥ 1, got {m}");
        if (LogEverySteps < 1) throw new ArgumentOutOfRangeException(nameof(LogEverySteps), $"LogEverySteps must be ≥ 1, got {LogEverySteps}");
        if (CheckpointEverySteps < 0) throw new ArgumentOutOfRangeException(nameof(CheckpointEverySteps), $"CheckpointEverySteps must be ≥ 0, got {CheckpointEverySteps}");
        if (Resume && OutputDirectory is null) throw new ArgumentException("Resume needs an OutputDirectory to find the checkpoint in");
        Batching.Validate();
    }
}

/// <summary>What a step function knows about the step it computes.</summary>
/// <param name="Step">Global step (0-based).</param>
/// <param name="Epoch">Epoch (0-based).</param>
/// <param name="Random">A generator seeded by (seed, step): dynamic masking and other per-step randomness stay identical across a resume.</param>
public sealed record StepContext(long Step, int Epoch, Random Random);

/// <summary>
/// A step's loss (a scalar tensor with a graph), how many tokens it saw, metrics to average and log, and the
/// model's output (logits) for techniques that need it (virtual adversarial training).
/// </summary>
/// <param name="Loss">The loss to differentiate: a mean over <paramref name="Weight"/> items.</param>
/// <param name="Tokens">Tokens the step saw (for throughput).</param>
/// <param name="Metrics">Metrics to average and log.</param>
/// <param name="Output">The model's output, for techniques that need it.</param>
/// <param name="Weight">
/// How many items <paramref name="Loss"/> averages over (e.g. masked tokens); null for the batch's examples. Data-parallel
/// training weights each rank's gradient, loss and metrics by it, so the average is that of the whole batch.
/// </param>
public sealed record StepResult(Tensor Loss, long Tokens = 0, IReadOnlyDictionary<string, double>? Metrics = null, Tensor? Output = null, double? Weight = null);

/// <summary>
/// Something done around each step: perturb before the forward pass (input noise), change the loss before
/// the backward pass (gradient penalty), or add gradients after it (FGM, virtual adversarial training);
/// <c>again</c> recomputes the step on the same batch.
/// </summary>
public abstract class TrainingTechnique
{
    /// <summary>Runs before the step function.</summary>
    public virtual void BeforeForward() { }
    /// <summary>The loss to differentiate instead of <paramref name="loss"/>.</summary>
    public virtual Tensor BeforeBackward(Tensor loss) => loss;
    /// <summary>Runs after <c>loss.backward()</c>, before the optimizer step; may run more backward passes.</summary>
    public virtual void AfterBackward(StepResult first, Func<StepResult> again) { }
    /// <summary>Runs after every step, also a skipped one (undo what <see cref="BeforeForward"/> did).</summary>
    public virtual void AfterStep() { }
}

/// <summary>The loss became NaN or infinite.</summary>
public sealed class TrainingDivergedException(long step, int epoch, long batchInEpoch, double loss)
    : Exception($"the loss is {loss.ToString(CultureInfo.InvariantCulture)} at step {step} (epoch {epoch + 1}, batch {batchInEpoch + 1} of the epoch); lower the learning rate, clip gradients, or set OnNonFiniteLoss = Skip")
{
    /// <summary>Global step.</summary>
    public long Step { get; } = step;
    /// <summary>Epoch (0-based).</summary>
    public int Epoch { get; } = epoch;
    /// <summary>Batch within the epoch (0-based).</summary>
    public long BatchInEpoch { get; } = batchInEpoch;
}

/// <summary>The trainer's state as callbacks see it.</summary>
public sealed class TrainerState
{
    internal TrainerState(nn.Module model, Optimizer optimizer) { Model = model; Optimizer = optimizer; }
    /// <summary>The model.</summary>
    public nn.Module Model { get; }
    /// <summary>The optimizer.</summary>
    public Optimizer Optimizer { get; }
    /// <summary>Steps taken (including those before a resume).</summary>
    public long Step { get; internal set; }
    /// <summary>Current epoch (0-based).</summary>
    public int Epoch { get; internal set; }
    /// <summary>The run's epoch limit (<see cref="TrainerOptions.Epochs"/>).</summary>
    public int Epochs { get; internal set; }
    /// <summary>Best evaluation value so far.</summary>
    public double? BestMetric { get; set; }
    /// <summary>Evaluations since the best one.</summary>
    public int BadEvaluations { get; set; }
    /// <summary>Steps skipped for a non-finite loss.</summary>
    public long SkippedSteps { get; internal set; }
    /// <summary>Set to stop after the current step (early stopping).</summary>
    public string? StopReason { get; set; }
    /// <summary>Adds a record to <c>metrics.jsonl</c> (step and epoch are added).</summary>
    public Action<IReadOnlyDictionary<string, double>> Record { get; internal set; } = _ => { };
    /// <summary>The output directory, when there is one.</summary>
    public string? OutputDirectory { get; internal set; }
    /// <summary>Writes a line where the trainer's progress goes (nothing with <see cref="ProgressDisplay.None"/>, nor on ranks other than 0).</summary>
    public Action<string> Log { get; internal set; } = _ => { };
    /// <summary>This process's rank in a data-parallel run (0 alone).</summary>
    public int Rank { get; internal set; }
    /// <summary>Processes in the run (1 alone).</summary>
    public int WorldSize { get; internal set; } = 1;
    /// <summary>Rank 0, the process that writes files (checkpoints, best model, metrics) and prints.</summary>
    public bool IsPrimary => Rank == 0;
}

/// <summary>Hooks into <see cref="Trainer{T}.Fit"/>, Keras style.</summary>
public abstract class TrainerCallback
{
    /// <summary>Before the first step of this run.</summary>
    public virtual void OnTrainBegin(TrainerState state) { }
    /// <summary>After every optimizer step.</summary>
    public virtual void OnStepEnd(TrainerState state) { }
    /// <summary>After every epoch.</summary>
    public virtual void OnEpochEnd(TrainerState state) { }
    /// <summary>After the last step of this run, whatever ended it (not on an exception).</summary>
    public virtual void OnTrainEnd(TrainerState state) { }
}

/// <summary>What <see cref="Trainer{T}.Fit"/> did.</summary>
/// <param name="Steps">Steps taken in all.</param>
/// <param name="StepsThisRun">Steps taken by this call.</param>
/// <param name="Losses">Loss of every step this run (for tests and plots).</param>
/// <param name="BestMetric">Best evaluation value.</param>
/// <param name="StopReason">Why training ended.</param>
/// <param name="SkippedSteps">Steps skipped for a non-finite loss.</param>
/// <param name="Elapsed">Wall-clock time of this run.</param>
/// <param name="Tokens">Tokens seen this run.</param>
public sealed record TrainingResult(long Steps, long StepsThisRun, IReadOnlyList<double> Losses, double? BestMetric, string StopReason,
    long SkippedSteps, TimeSpan Elapsed, long Tokens);

/// <summary>
/// Keras-style <c>Fit</c> for TorchSharp models: deterministic batching (shuffle buffer, bucketing), a step
/// function that turns a batch into a loss, the optimizer, callbacks (evaluation, best checkpoint, early
/// stopping), a JSON-lines metrics log and PNG curves, and atomic checkpoints from which a resume continues
/// with exactly the same losses as an uninterrupted run.
/// </summary>
/// <typeparam name="T">One training example.</typeparam>
public sealed class Trainer<T>
{
    readonly nn.Module model;
    readonly Optimizer optimizer;
    readonly Func<IReadOnlyList<T>, StepContext, StepResult> step;
    readonly TrainerOptions options;
    readonly DataParallel parallel;

    /// <summary>Creates the trainer.</summary>
    /// <param name="model">The model (switched to training mode during steps).</param>
    /// <param name="optimizer">Its optimizer.</param>
    /// <param name="step">Batch → loss; runs inside a dispose scope, so temporaries need no care.</param>
    /// <param name="options">Options.</param>
    public Trainer(nn.Module model, Optimizer optimizer, Func<IReadOnlyList<T>, StepContext, StepResult> step, TrainerOptions options)
    {
        options.Validate();
        this.model = model;
        this.optimizer = optimizer;
        this.step = step;
        this.options = options;
        parallel = new DataParallel(options.DataParallel);
    }

    /// <summary>Length of an example for bucketing (e.g. its token count); null without bucketing.</summary>
    public Func<T, int>? Length { get; init; }

    /// <summary>The checkpoint path (<c>OutputDirectory/checkpoint.safetensors</c>), or null.</summary>
    public string? CheckpointPath => options.OutputDirectory is null ? null : Path.Combine(options.OutputDirectory, "checkpoint.safetensors");

    /// <summary>The model's precision against <see cref="TrainerOptions.Precision"/> and the optimizer's loss scaling.</summary>
    void CheckPrecision()
    {
        var actual = PrecisionPolicy.Of(model);
        if (options.Precision is { } plan)
        {
            if (plan.Chosen != actual)
                throw new ArgumentException($"TrainerOptions.Precision is {plan.Name} but the model's parameters are {PrecisionPolicy.NameOf(actual)}: call plan.Apply(model) before building the optimizer");
            if (plan.LossScaling && optimizer.Options.LossScaling is null)
                throw new ArgumentException($"the {plan.Name} plan needs loss scaling but the optimizer has none: set OptimizerOptions.LossScaling");
            PrecisionPolicy.Report(plan, Say);
        }
        else if (actual != Precision.Fp32)
            Say($"precision: {PrecisionPolicy.NameOf(actual)} (from the model's parameters; the optimizer keeps fp32 master weights)");
        if (actual == Precision.Fp16 && optimizer.Options.LossScaling is null)
            Say("warning: the model computes in fp16 without loss scaling: gradients below fp16's 6e-8 flush to zero; set OptimizerOptions.LossScaling (b4s does with --precision fp16)");
    }

    /// <summary>Trains on <paramref name="data"/> (re-enumerated every epoch; a file-backed sequence streams).</summary>
    public TrainingResult Fit(IEnumerable<T> data, IReadOnlyList<TrainerCallback>? callbacks = null, CancellationToken cancellation = default)
    {
        callbacks ??= [];
        CheckPrecision();
        bool primary = parallel.Rank == 0;
        var state = new TrainerState(model, optimizer) { OutputDirectory = options.OutputDirectory, Rank = parallel.Rank, WorldSize = parallel.Size };
        if (options.Progress != ProgressDisplay.None) state.Log = Say;
        if (parallel.Active) Say($"data-parallel: {parallel.Communicator.Description}; each rank trains on its share of every batch of {options.Batching.BatchSize}");
        long? count = data is IReadOnlyCollection<T> c ? c.Count : null;
        parallel.CheckSameRun(parallel.Describe(model, optimizer, options, count));
        var progress = new TrainingProgress(0, 0, 0, options.Seed, WorldSize: parallel.Size);
        if (options.OutputDirectory is not null && primary)
        {
            Directory.CreateDirectory(options.OutputDirectory);
            // A process killed while writing a checkpoint leaves its temporary file (the previous checkpoint is intact).
            var partial = Directory.GetFiles(options.OutputDirectory, ".checkpoint.safetensors.*.tmp");
            foreach (var f in partial) File.Delete(f);
            if (partial.Length > 0) Say($"removed {partial.Length} partial checkpoint file(s) left by an interrupted write");
        }
        string? metricsPath = options.OutputDirectory is null || !primary ? null : Path.Combine(options.OutputDirectory, "metrics.jsonl");
        if (options.OutputDirectory is not null) TrainingOutput.EnsureUsable(options.OutputDirectory, options.Resume, options.Overwrite);
        if (parallel.AgreeExists(options.Resume && File.Exists(CheckpointPath), CheckpointPath ?? ""))
        {
            progress = TrainingCheckpoint.Load(CheckpointPath!, model, optimizer, parallel.Size);
            if (progress.Seed != options.Seed)
                throw new ArgumentException($"the checkpoint was trained with seed {progress.Seed} but this run has seed {options.Seed}; an exact resume needs the same seed");
            Say($"resuming from {CheckpointPath} at step {progress.Step} (epoch {progress.Epoch + 1}, batch {progress.StepInEpoch})");
            if (metricsPath is not null) TruncateMetrics(metricsPath, progress.Step);
        }
        else if (metricsPath is not null && File.Exists(metricsPath)) File.Delete(metricsPath);
        parallel.BroadcastState(model);                                                   // identical weights from rank 0, whatever each rank initialised
        state.Step = progress.Step;
        state.Epoch = progress.Epoch;
        state.Epochs = options.Epochs;
        state.BestMetric = progress.BestMetric;
        state.BadEvaluations = progress.BadEvaluations;
        state.SkippedSteps = progress.SkippedSteps;
        using var metrics = metricsPath is null ? null : new StreamWriter(metricsPath, append: true);
        state.Record = values => WriteRecord(metrics, state, values);

        long? perEpoch = count is long n
            ? (options.Batching.DropLast ? n / options.Batching.BatchSize : (n + options.Batching.BatchSize - 1) / options.Batching.BatchSize) : null;
        long? total = options.MaxSteps ?? (options.TimeBudget is null ? perEpoch * options.Epochs : null);
        bool bar = primary && (options.Progress == ProgressDisplay.Bar || (options.Progress == ProgressDisplay.Auto && options.Log is null && AnsiConsole.Profile.Capabilities.Interactive));
        TrainingResult? result = null;
        if (bar)
            AnsiConsole.Progress().AutoClear(false).HideCompleted(false)
                .Columns(new TaskDescriptionColumn { Alignment = Justify.Left }, new ProgressBarColumn(), new PercentageColumn(), new ElapsedTimeColumn(), new RemainingTimeColumn())
                .Start(ctx =>
                {
                    // Progress in steps when their number is known, else in time when there is a budget.
                    var budget = total is null ? options.TimeBudget : null;
                    var started = Stopwatch.StartNew();
                    var task = ctx.AddTask("training", maxValue: total ?? budget?.TotalSeconds ?? 1);
                    task.Value = total is null ? 0 : progress.Step;
                    result = Loop(data, callbacks, state, progress, total, (s, line) =>
                    {
                        task.Value = total is long t ? Math.Min(s, t) : budget is TimeSpan b ? Math.Min(started.Elapsed.TotalSeconds, b.TotalSeconds) : 0;
                        task.Description = Markup.Escape(line);
                    }, cancellation);
                    task.Value = task.MaxValue;
                });
        else
            result = Loop(data, callbacks, state, progress, total, (s, line) =>
            {
                if (options.Progress != ProgressDisplay.None && s % options.LogEverySteps == 0) Say(line);
            }, cancellation);
        metrics?.Flush();
        if (metricsPath is not null && File.Exists(metricsPath))                             // rank 0 only
            try { TrainingCurves.Plot(metricsPath, options.OutputDirectory!); }
            catch (Exception e) when (e is IOException or InvalidOperationException or TypeInitializationException or DllNotFoundException)
            { Say($"training curves not drawn: {e.Message}"); }
        return result!;
    }

    TrainingResult Loop(IEnumerable<T> data, IReadOnlyList<TrainerCallback> callbacks, TrainerState state, TrainingProgress start, long? total,
        Action<long, string> report, CancellationToken cancellation)
    {
        var clock = Stopwatch.StartNew();
        var losses = new List<double>();
        long tokens = 0, examples = 0, stepsThisRun = 0, consecutiveSkips = 0;
        double windowLoss = 0; int windowCount = 0;
        var windowMetrics = new Dictionary<string, double>();
        string reason = "completed all epochs";
        int atEpoch = start.Epoch;
        long atBatch = start.StepInEpoch;
        bool toldSmall = false;
        foreach (var cb in callbacks) cb.OnTrainBegin(state);
        for (int epoch = start.Epoch; epoch < options.Epochs; epoch++)
        {
            state.Epoch = epoch;
            long skip = epoch == start.Epoch ? start.StepInEpoch : 0, inEpoch = 0;
            foreach (var global in Batching.Batches(data, options.Batching, options.Seed, epoch, Length))
            {
                if (inEpoch < skip) { inEpoch++; continue; }
                cancellation.ThrowIfCancellationRequested();
                if (global.Count < parallel.Size)
                {
                    // Every rank needs an example; all ranks see the same global batch, so all skip it.
                    if (!toldSmall) Say($"note: a batch of {global.Count} examples is skipped (fewer than the {parallel.Size} ranks; it happens to the last batch of an epoch)");
                    toldSmall = true;
                    inEpoch++;
                    continue;
                }
                var batch = DataParallel.Shard(global, parallel.Rank, parallel.Size);
                var ctx = new StepContext(state.Step, epoch, new Random(parallel.StepSeed(options.Seed, state.Step, 0x57E9)));
                if (parallel.Active) torch.manual_seed(parallel.StepSeed(options.Seed, state.Step, 0x70C4));   // dropout differs between ranks, reproducibly
                model.train();
                var (loss, skipped, stepTokens, stepMetrics) = StepOnce(batch, ctx, inEpoch, ref consecutiveSkips, state);
                if (!skipped)
                {
                    tokens += stepTokens;
                    examples += global.Count;
                    windowLoss += loss;
                    windowCount++;
                    if (stepMetrics is not null) foreach (var (k, v) in stepMetrics) windowMetrics[k] = windowMetrics.GetValueOrDefault(k) + v;
                }
                losses.Add(loss);
                state.Step++;
                inEpoch++;
                stepsThisRun++;
                (atEpoch, atBatch) = (epoch, inEpoch);
                double seconds = Math.Max(clock.Elapsed.TotalSeconds, 1e-9);
                string line = $"epoch {epoch + 1}/{options.Epochs} step {state.Step}{(total is long tt ? "/" + tt : "")} loss {(windowCount > 0 ? windowLoss / windowCount : loss):F4}"
                    + string.Concat(windowMetrics.Select(kv => $" {kv.Key} {kv.Value / Math.Max(1, windowCount):F4}"))
                    + $" lr {optimizer.CurrentLearningRate:G3} {(tokens > 0 ? $"{tokens / seconds:F0} tok/s" : $"{examples / seconds:F1} ex/s")}{(skipped ? " (skipped: non-finite loss)" : "")}";
                if (state.Step % options.LogEverySteps == 0 && windowCount > 0)
                {
                    var rec = new Dictionary<string, double> { ["loss"] = windowLoss / windowCount, ["lr"] = optimizer.CurrentLearningRate, ["examples_per_s"] = examples / seconds };
                    if (tokens > 0) rec["tokens_per_s"] = tokens / seconds;
                    foreach (var (k, v) in windowMetrics) rec[k] = v / windowCount;
                    state.Record(rec);
                }
                report(state.Step, line);
                if (state.Step % options.LogEverySteps == 0) { windowLoss = 0; windowCount = 0; windowMetrics.Clear(); }
                foreach (var cb in callbacks) cb.OnStepEnd(state);
                if (options.CheckpointEverySteps > 0 && state.Step % options.CheckpointEverySteps == 0) Save(state, epoch, inEpoch);
                string? limit = options.MaxSteps is long max && state.Step >= max ? $"reached {max} steps" : null;   // the same on every rank
                string? stop = state.StopReason ?? limit
                    ?? (options.TimeBudget is TimeSpan budget && clock.Elapsed >= budget ? $"time budget of {budget.TotalMinutes:F1} minutes used" : null);
                if ((parallel.AgreeStop(stop) ?? limit) is string agreed) { reason = agreed; goto done; }   // rank 0 decides for all
            }
            (atEpoch, atBatch) = (epoch + 1, 0);
            foreach (var cb in callbacks) cb.OnEpochEnd(state);
            Save(state, epoch + 1, 0);
            if (parallel.AgreeStop(state.StopReason) is string stopped) { reason = stopped; goto done; }
        }
        state.Epoch = options.Epochs;
        done:
        model.eval();
        if (reason != "completed all epochs") Save(state, atEpoch, atBatch);
        foreach (var cb in callbacks) cb.OnTrainEnd(state);
        return new TrainingResult(state.Step, stepsThisRun, losses, state.BestMetric, reason, state.SkippedSteps, clock.Elapsed, tokens);
    }

    /// <summary>One step: forward, non-finite check, techniques, backward, optimizer step; temporaries freed.</summary>
    (double Loss, bool Skipped, long Tokens, IReadOnlyDictionary<string, double>? Metrics) StepOnce(IReadOnlyList<T> batch, StepContext ctx, long inEpoch,
        ref long consecutiveSkips, TrainerState state)
    {
        using var scope = torch.NewDisposeScope();
        try
        {
            foreach (var t in options.Techniques) t.BeforeForward();
            var r = step(batch, ctx);
            double loss = r.Loss.ToDouble(), weight = r.Weight ?? batch.Count, total = weight;
            long tokens = r.Tokens;
            IReadOnlyDictionary<string, double>? metrics = r.Metrics;
            if (parallel.Active) (loss, total, tokens, metrics) = parallel.ReduceStep(loss, weight, tokens, metrics);   // the whole batch's numbers, on every rank
            if (!double.IsFinite(loss))
            {
                if (options.OnNonFiniteLoss == NonFiniteLossPolicy.Stop || ++consecutiveSkips > options.MaxConsecutiveSkips)
                    throw new TrainingDivergedException(ctx.Step, ctx.Epoch, inEpoch, loss);
                state.SkippedSteps++;
                return (loss, true, 0, null);
            }
            consecutiveSkips = 0;
            var l = r.Loss;
            foreach (var t in options.Techniques) l = t.BeforeBackward(l);
            if (optimizer.LossScale != 1.0) l = l * optimizer.LossScale;
            l.backward();
            foreach (var t in options.Techniques)
                t.AfterBackward(r, () => step(batch, ctx with { Random = new Random(parallel.StepSeed(options.Seed, ctx.Step, 0x57E9)) }));
            parallel.AllReduceGradients(optimizer, weight, total);                         // before clipping and the update, inside Step
            optimizer.Step();
            return (loss, false, tokens, metrics);
        }
        finally
        {
            foreach (var t in options.Techniques) t.AfterStep();
            optimizer.ZeroGrad();
        }
    }

    void Save(TrainerState state, int epoch, long inEpoch)
    {
        if (CheckpointPath is null || !state.IsPrimary) return;
        TrainingCheckpoint.Save(CheckpointPath, model, optimizer,
            new TrainingProgress(state.Step, epoch, inEpoch, options.Seed, state.BestMetric, state.BadEvaluations, state.SkippedSteps, parallel.Size));
    }

    void WriteRecord(StreamWriter? metrics, TrainerState state, IReadOnlyDictionary<string, double> values)
    {
        if (metrics is null) return;
        var rec = new Dictionary<string, object> { ["step"] = state.Step, ["epoch"] = state.Epoch + 1 };
        foreach (var (k, v) in values) rec[k] = double.IsFinite(v) ? v : v.ToString(CultureInfo.InvariantCulture);
        metrics.WriteLine(JsonSerializer.Serialize(rec));
        metrics.Flush();
    }

    /// <summary>On resume, drops records written after the checkpoint's step (they will be written again).</summary>
    static void TruncateMetrics(string path, long step)
    {
        if (!File.Exists(path)) return;
        var keep = File.ReadLines(path).Where(line =>
        {
            try
            {
                using var doc = JsonDocument.Parse(line);
                return doc.RootElement.TryGetProperty("step", out var s) && s.GetInt64() <= step;
            }
            catch (JsonException) { return false; }
        }).ToList();
        AtomicFile.WriteAllText(path, keep.Count == 0 ? "" : string.Join("\n", keep) + "\n");
    }

    void Say(string line)
    {
        if (parallel.Rank == 0) (options.Log ?? AnsiConsole.WriteLine)(line);           // Spectre keeps lines above a live progress bar
    }
}
