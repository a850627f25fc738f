namespace Bert4Sharp.Training.Compression;

using System.Diagnostics;
using System.Globalization;
using Bert4Sharp.Models;
using Bert4Sharp.Tasks;
using Bert4Sharp.Tasks.Clue;
using Bert4Sharp.Tokenization;
using TorchSharp;
using static TorchSharp.torch;

/// <summary>Options of <see cref="TheseusCompression.Run"/> (<c>b4s compress</c>).</summary>
public sealed record TheseusOptions
{
    /// <summary>The predecessor: a classification task model <c>b4s clue train</c> saved (<c>&lt;output&gt;/model</c>).</summary>
    public required string Model { get; init; }
    /// <summary>The CLUE classification task it was trained for (its train and dev splits are read from <see cref="DataDirectory"/>).</summary>
    public required string Task { get; init; }
    /// <summary>Successor blocks N (a proper divisor of the predecessor's block count).</summary>
    public required int Layers { get; init; }
    /// <summary>Where the run writes: <c>replacement/</c> and <c>successor/</c> (each phase's checkpoints and curves), <c>model/</c> (the successor task model).</summary>
    public required string Output { get; init; }
    /// <summary>The staged data (<c>../shared/data</c>).</summary>
    public required string DataDirectory { get; init; }
    /// <summary>The replacement probability over the replacement phase (default: the post's constant 0.5).</summary>
    public ReplacementSchedule Schedule { get; init; } = ReplacementSchedule.Constant(0.5);
    /// <summary>Which predecessor blocks the successor blocks start from.</summary>
    public SuccessorInit Init { get; init; } = SuccessorInit.FirstLayers;
    /// <summary>Optimizer steps of the replacement phase at most (null: epochs or minutes).</summary>
    public long? ReplacementSteps { get; init; }
    /// <summary>Optimizer steps of the successor-only phase at most (null: epochs or minutes; 0 skips the phase).</summary>
    public long? SuccessorSteps { get; init; }
    /// <summary>Time budget of each phase in minutes (null: none).</summary>
    public double? Minutes { get; init; }
    /// <summary>Epochs of each phase at most.</summary>
    public int Epochs { get; init; } = 10;
    /// <summary>Learning rate of both phases (null: 2e-5, bert4keras's "small enough" rate).</summary>
    public double? LearningRate { get; init; }
    /// <summary>Linear warm-up steps of each phase.</summary>
    public long WarmupSteps { get; init; } = 100;
    /// <summary>Examples per batch (null: the predecessor's).</summary>
    public int? BatchSize { get; init; }
    /// <summary>Evaluate on dev every this many steps (and at each epoch end); each phase keeps its best-on-dev weights.</summary>
    public long EvalEverySteps { get; init; } = 200;
    /// <summary>Early stopping in each phase after this many evaluations without improvement (null: never).</summary>
    public int? Patience { get; init; }
    /// <summary>Seed of initialisation, shuffling, dropout and the replacement draws.</summary>
    public int Seed { get; init; } = 42;
    /// <summary>Use only the first this many training and dev examples (null: all).</summary>
    public int? Limit { get; init; }
    /// <summary>Dev batches timed for the speed-up (each timed <see cref="SpeedRounds"/> times per model).</summary>
    public int SpeedBatches { get; init; } = 16;
    /// <summary>Passes over the timed batches.</summary>
    public int SpeedRounds { get; init; } = 3;
    /// <summary>Replace a previous run's output.</summary>
    public bool Overwrite { get; init; }
}

/// <summary>Forward time per batch of two models, measured in one process, alternating which goes first.</summary>
/// <param name="PredecessorMs">Mean milliseconds per batch of the predecessor.</param>
/// <param name="SuccessorMs">Mean milliseconds per batch of the successor.</param>
/// <param name="Batches">Batches timed per round.</param>
/// <param name="Rounds">Rounds.</param>
/// <param name="BatchSize">Examples per batch.</param>
public sealed record SpeedComparison(double PredecessorMs, double SuccessorMs, int Batches, int Rounds, int BatchSize)
{
    /// <summary>Predecessor time / successor time.</summary>
    public double SpeedUp => PredecessorMs / SuccessorMs;
}

/// <summary>What a compression run measured.</summary>
/// <param name="PredecessorAccuracy">The predecessor's dev accuracy.</param>
/// <param name="InitialAccuracy">The successor's dev accuracy before training (its copied blocks on the predecessor's embeddings and head).</param>
/// <param name="ReplacementAccuracy">The successor's dev accuracy after the replacement phase (best on dev).</param>
/// <param name="SuccessorAccuracy">The saved successor's dev accuracy (best on dev after the successor-only phase).</param>
/// <param name="Speed">Forward time per dev batch, predecessor vs successor.</param>
/// <param name="Replacement">The replacement phase's training result.</param>
/// <param name="Successor">The successor-only phase's training result (null when skipped).</param>
/// <param name="ModelDirectory">The saved successor task model.</param>
public sealed record TheseusResult(double PredecessorAccuracy, double InitialAccuracy, double ReplacementAccuracy, double SuccessorAccuracy,
    SpeedComparison Speed, TrainingResult Replacement, TrainingResult? Successor, string ModelDirectory)
{
    /// <summary>Successor accuracy / predecessor accuracy.</summary>
    public double Retention => SuccessorAccuracy / PredecessorAccuracy;

    /// <summary>The one-line summary <c>b4s compress</c> ends with.</summary>
    public string Summary(int predecessorLayers, int successorLayers) => string.Create(CultureInfo.InvariantCulture,
        $"predecessor ({predecessorLayers} blocks) dev accuracy {PredecessorAccuracy:P2}; successor ({successorLayers} blocks) {SuccessorAccuracy:P2}; retention {Retention:P1}; " +
        $"speed-up {Speed.SpeedUp:F2}× (forward per dev batch of {Speed.BatchSize}: {Speed.PredecessorMs:F1} ms vs {Speed.SuccessorMs:F1} ms, {Speed.Batches} batches × {Speed.Rounds} rounds, alternating)");
}

/// <summary>
/// BERT-of-Theseus compression of a fine-tuned classifier (<c>b4s compress</c>; docs/compression.md). Two phases, each
/// through <see cref="ClueRun.FitWithContext{T}"/>
/// with dev evaluation and a return to the best-on-dev weights: (1) replacement: a <see cref="TheseusModel"/>, each batch
/// drawing per group whether the successor block replaces the predecessor's group (<see cref="ReplacementSchedule"/>),
/// only successor blocks training; (2) the successor alone (its blocks, embeddings and the head copied from the predecessor)
/// fine-tuned, as bert4keras's example does. The successor is saved as an ordinary task model (<c>b4s clue predict</c> reads it).
/// </summary>
public static class TheseusCompression
{
    /// <summary>Runs both phases, saves the successor under <c>Output/model</c>, measures retention and speed-up.</summary>
    /// <exception cref="ArgumentException">Not a classification task; bad --layers.</exception>
    /// <exception cref="InvalidDataException">The model directory is not a classifier for the task.</exception>
    public static TheseusResult Run(TheseusOptions o, Action<string> log, ProgressDisplay progress = ProgressDisplay.Lines, CancellationToken cancellation = default)
    {
        var run = ClueRuns.Get(o.Task) as ClassificationRun
            ?? throw new ArgumentException($"b4s compress works on the classification tasks ({string.Join(", ", ClassificationRun.All.Select(r => r.Task))}); '{o.Task}' is not one");
        if (!Directory.Exists(o.Model)) throw new DirectoryNotFoundException($"{o.Model} does not exist: give the model directory `b4s clue train {o.Task}` saved (<output>/model)");
        o.Schedule.Validated();
        TrainingOutput.EnsureUsable(o.Output, resume: false, o.Overwrite);
        torch.manual_seed(o.Seed);

        using var predecessor = TextClassifier.Load(o.Model, o.Task);
        var pre = predecessor.Model;
        int predecessorLayers = pre.Encoder.Architecture.Layers;
        TheseusModel.CheckLayers(predecessorLayers, o.Layers);
        var (allTrain, allDev) = run.Splits(o.DataDirectory, log);
        var train = TextClassifier.Indexed(ClueRun.Take(allTrain, o.Limit), predecessor.Labels, "training");
        var dev = TextClassifier.Indexed(ClueRun.Take(allDev, o.Limit), predecessor.Labels, "dev");
        int maxLength = predecessor.Options.MaxLength, batchSize = o.BatchSize ?? predecessor.Options.BatchSize;
        var tokenizer = predecessor.Tokenizer;
        log($"{train.Count:N0} training and {dev.Count:N0} dev examples, {predecessor.Labels.Count} labels, {maxLength} tokens per input");

        double predecessorAccuracy = Accuracy(pre, tokenizer, dev, maxLength);
        log($"predecessor: {o.Model} ({pre.Encoder.Family.Name}, {predecessorLayers} blocks, {Millions(pre)} M parameters); dev accuracy {predecessorAccuracy:P2}");
        var successor = TheseusModel.Successor(pre.Encoder, o.Layers, o.Init);
        var theseus = new TheseusModel(pre, successor);
        int g = theseus.GroupSize;
        string starts = string.Join(", ", Enumerable.Range(0, o.Layers).Select(k => $"{k} ← {(o.Init == SuccessorInit.FirstLayers ? k : k * g)}"));
        double initial = Accuracy(theseus, tokenizer, dev, maxLength);
        log($"successor: {o.Layers} blocks ({Millions(successor)} M parameters in the encoder), block k replaces predecessor blocks [{g}k, {g}k + {g}); initialised from predecessor blocks ({starts}); dev accuracy before training {initial:P2}");

        // Phase 1: replacement. Only successor blocks require gradients (the optimizer skips the rest).
        var phase1 = PhaseOptions(o, "replacement", o.ReplacementSteps);
        log($"replacement phase: {o.Schedule}, one draw per group and batch; predecessor embeddings, blocks and head frozen; {Describe(phase1)}");
        double drawn = 0, draws = 0;
        var (r1, e1) = ClueRun.FitWithContext(theseus, train, (batch, ctx) =>
        {
            var flags = o.Schedule.Draw(ctx.Step, theseus.Groups, ctx.Random);
            theseus.Choose(flags);
            int chosen = flags.Count(f => f);
            drawn += chosen;
            draws += flags.Length;
            var (ids, segments, mask, target) = FineTuning.Batch(tokenizer, batch, maxLength, pre.Encoder.Device);
            var logits = theseus.forward(ids, segments, mask);                                 // (B, labels)
            var loss = nn.functional.cross_entropy(logits, target);
            // A batch that drew the predecessor for every group reaches no successor parameter; as in bert4keras's graph
            // (mask · predecessor + (1 − mask) · successor) it gives the successor zero gradients, so the step still counts.
            if (!loss.requires_grad) loss = loss + theseus.ZeroGradient();
            return new StepResult(loss, mask.sum().item<long>(),
                new Dictionary<string, double> { ["p"] = o.Schedule.Probability(ctx.Step), ["replaced"] = (double)chosen / flags.Length });
        }, () => new Dictionary<string, double> { ["accuracy"] = Accuracy(theseus, tokenizer, dev, maxLength) }, "accuracy", phase1, batchSize, log, progress, cancellation,
            LabelledText.CharacterLength);
        double replacementAccuracy = Accuracy(theseus, tokenizer, dev, maxLength);
        log($"replacement phase: {r1.StopReason}, {r1.Steps} steps, successor blocks drawn for {(draws == 0 ? 0 : drawn / draws):P1} of the group-batches; " +
            $"{ClueRun.DescribeResult(e1, "accuracy")} of the successor: {replacementAccuracy:P2}");

        // Phase 2: the successor alone, every parameter training (bert4keras's successor_model: its encoder and the classifier).
        var classifier = TheseusModel.SuccessorClassifier(pre, successor, predecessor.Options.Dropout);
        foreach (var p in classifier.parameters()) p.requires_grad_(true);
        TrainingResult? r2 = null;
        EvaluationCallback? e2 = null;
        if (o.SuccessorSteps != 0)
        {
            var phase2 = PhaseOptions(o, "successor", o.SuccessorSteps);
            log($"successor phase: the {o.Layers}-block model alone (blocks, embeddings, head); {Describe(phase2)}");
            (r2, e2) = ClueRun.Fit(classifier, train, batch =>
            {
                var (ids, segments, mask, target) = FineTuning.Batch(tokenizer, batch, maxLength, successor.Device);
                return new StepResult(nn.functional.cross_entropy(classifier.forward(ids, segments, mask), target), mask.sum().item<long>());
            }, () => new Dictionary<string, double> { ["accuracy"] = Accuracy(classifier, tokenizer, dev, maxLength) }, "accuracy", phase2, batchSize, log, progress, cancellation,
                LabelledText.CharacterLength);
        }
        double successorAccuracy = Accuracy(classifier, tokenizer, dev, maxLength);                // one dev pass, reused in the log line
        if (r2 is not null && e2 is not null)
            log($"successor phase: {r2.StopReason}, {r2.Steps} steps; {ClueRun.DescribeResult(e2, "accuracy")}: {e2.Best?.Metrics["accuracy"] ?? successorAccuracy:P2}");
        string saved = new TextClassifier(classifier, tokenizer, predecessor.Labels, predecessor.Options).Save(Path.Combine(o.Output, "model"));
        log($"successor saved to {saved}");
        var speed = MeasureSpeed(pre, classifier, tokenizer, dev, maxLength, Math.Max(batchSize, 64), o.SpeedBatches, o.SpeedRounds);
        var outcome = new TheseusResult(predecessorAccuracy, initial, replacementAccuracy, successorAccuracy, speed, r1, r2, saved);
        log(outcome.Summary(predecessorLayers, o.Layers));
        return outcome;
    }

    /// <summary>
    /// Writes the first <paramref name="layers"/> blocks of a pretrained encoder (with its embeddings and every other
    /// non-block tensor, config <c>num_hidden_layers = layers</c>, vocab.txt) as a model directory: the "same small model"
    /// that Theseus is compared with, fine-tuned directly by <c>b4s clue train --model</c>.
    /// </summary>
    /// <exception cref="ArgumentException">Bad layer count.</exception>
    public static string SaveFirstLayers(string pretrained, int layers, string output, string? family = null)
    {
        var loaded = AutoModel.Load(pretrained, new AutoModelOptions { Family = family, Application = Application.Encoder });
        using var model = loaded.Model;
        using var small = TheseusModel.Successor(model, layers, SuccessorInit.FirstLayers);
        if (loaded.WordPiece is { } tokenizer) TransformerPipeline.Create(small, tokenizer).SavePretrained(output);   // with vocab.txt (and a word pre-tokenizer)
        else small.SavePretrained(output);
        return output;
    }

    /// <summary>
    /// Forward time per batch of <paramref name="predecessor"/> and <paramref name="successor"/> on the first
    /// <paramref name="batches"/> batches of <paramref name="data"/>, in evaluation mode without gradients, after one warm-up
    /// pass each; within every batch both run back to back, the order alternating between batches and rounds, so load
    /// from other processes falls on both alike.
    /// </summary>
    public static SpeedComparison MeasureSpeed(nn.Module<Tensor, Tensor?, Tensor?, Tensor> predecessor, nn.Module<Tensor, Tensor?, Tensor?, Tensor> successor,
        BertWordPieceTokenizer tokenizer, IReadOnlyList<LabelledText> data, int maxLength, int batchSize, int batches, int rounds)
    {
        if (batches < 1 || rounds < 1) throw new ArgumentOutOfRangeException(nameof(batches), "time at least one batch in at least one round");
        var device = predecessor.parameters().First().device;
        predecessor.eval();
        successor.eval();
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        var inputs = Enumerable.Range(0, Math.Min(batches, (data.Count + batchSize - 1) / batchSize))
            .Select(i => FineTuning.Batch(tokenizer, data.Skip(i * batchSize).Take(batchSize).ToList(), maxLength, device)).ToList();
        if (inputs.Count == 0) throw new ArgumentException("no dev examples to time the models on");
        double Time(nn.Module<Tensor, Tensor?, Tensor?, Tensor> m, (Tensor Ids, Tensor Segments, Tensor Mask, Tensor Labels) b)
        {
            using var inner = torch.NewDisposeScope();
            var watch = Stopwatch.StartNew();
            m.forward(b.Ids, b.Segments, b.Mask).sum().item<float>();                          // .item waits for an accelerator
            return watch.Elapsed.TotalMilliseconds;
        }
        Time(predecessor, inputs[0]);
        Time(successor, inputs[0]);
        double a = 0, s = 0;
        for (int r = 0; r < rounds; r++)
            for (int i = 0; i < inputs.Count; i++)
                if ((i + r) % 2 == 0) { a += Time(predecessor, inputs[i]); s += Time(successor, inputs[i]); }
                else { s += Time(successor, inputs[i]); a += Time(predecessor, inputs[i]); }
        int n = rounds * inputs.Count;
        return new SpeedComparison(a / n, s / n, inputs.Count, rounds, batchSize);
    }

    /// <summary>Dev accuracy of any classifier module (evaluation mode, no gradients, batches of 64; the mode is restored).</summary>
    public static double Accuracy(nn.Module<Tensor, Tensor?, Tensor?, Tensor> model, BertWordPieceTokenizer tokenizer, IReadOnlyList<LabelledText> data, int maxLength) =>
        FineTuning.Evaluate(model, tokenizer, data, maxLength)["accuracy"];

    static ClueRunOptions PhaseOptions(TheseusOptions o, string phase, long? steps) => new()
    {
        DataDirectory = o.DataDirectory, Output = Path.Combine(o.Output, phase), Model = o.Model, MaxSteps = steps, Minutes = o.Minutes, Epochs = o.Epochs,
        Seed = o.Seed, LearningRate = o.LearningRate ?? 2e-5, WarmupSteps = o.WarmupSteps, EvalEverySteps = o.EvalEverySteps, Patience = o.Patience, Overwrite = o.Overwrite,
    };

    static string Describe(ClueRunOptions o) => string.Create(CultureInfo.InvariantCulture,
        $"learning rate {o.EffectiveLearningRate:G3}, {o.WarmupSteps} warm-up steps, at most {(o.MaxSteps is long s ? $"{s} steps, " : "")}{o.Epochs} epochs{(o.Minutes is double m ? $", {m} minutes" : "")}; dev every {o.EvalEverySteps} steps");

    static string Millions(nn.Module m) => (m.parameters().Sum(p => p.numel()) / 1e6).ToString("F2", CultureInfo.InvariantCulture);
}
