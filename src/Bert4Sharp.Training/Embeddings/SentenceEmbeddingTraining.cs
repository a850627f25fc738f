namespace Bert4Sharp.Training;

using Bert4Sharp.Embeddings;
using Bert4Sharp.Models;
using Bert4Sharp.Tokenization;
using TorchSharp;
using static TorchSharp.torch;

/// <summary>Which loss trains the sentence vectors.</summary>
public enum EmbeddingObjective
{
    /// <summary>Unsupervised SimCSE on plain sentences (dropout makes the positive).</summary>
    SimCse,
    /// <summary>Supervised SimCSE on NLI triples (entailment positive, contradiction hard negative).</summary>
    SupervisedSimCse,
    /// <summary>CoSENT on labelled pairs (0/1 or graded scores).</summary>
    CoSent,
}

/// <summary>An NLI premise with one entailed and one contradicted hypothesis (supervised SimCSE's example).</summary>
/// <param name="Anchor">The premise.</param>
/// <param name="Positive">A hypothesis it entails.</param>
/// <param name="Negative">A hypothesis it contradicts.</param>
public sealed record NliTriple(string Anchor, string Positive, string Negative);

/// <summary>Options of <see cref="SentenceEmbeddingTraining"/>.</summary>
public sealed record EmbeddingTrainingOptions
{
    /// <summary>Where checkpoints, metrics and curves go (the trained model is saved by the caller).</summary>
    public required string Output { get; init; }
    /// <summary>Peak learning rate (Adam, weight decay 0.01, clipping 1).</summary>
    public double LearningRate { get; init; } = 1e-4;
    /// <summary>Linear warm-up steps.</summary>
    public long WarmupSteps { get; init; } = 50;
    /// <summary>Examples per batch: sentences (SimCSE), triples, or pairs (CoSENT). Larger batches give contrastive losses more negatives.</summary>
    public int BatchSize { get; init; } = 64;
    /// <summary>Tokens per sentence (longer ones are cut).</summary>
    public int MaxLength { get; init; } = 64;
    /// <summary>Epochs at most.</summary>
    public int Epochs { get; init; } = 1;
    /// <summary>Optimizer steps at most (null: the epochs).</summary>
    public long? MaxSteps { get; init; }
    /// <summary>Time budget in minutes (null: none).</summary>
    public double? Minutes { get; init; }
    /// <summary>SimCSE's temperature τ.</summary>
    public double Temperature { get; init; } = 0.05;
    /// <summary>CoSENT's λ.</summary>
    public double Scale { get; init; } = 20;
    /// <summary>Seed of shuffling and dropout.</summary>
    public int Seed { get; init; } = 42;
    /// <summary>Replace a previous run's output.</summary>
    public bool Overwrite { get; init; }
    /// <summary>Continue an interrupted run.</summary>
    public bool Resume { get; init; }
    /// <summary>Progress display.</summary>
    public ProgressDisplay Progress { get; init; } = ProgressDisplay.Auto;
}

/// <summary>
/// Trains a <see cref="SentenceEncoder"/>'s TorchSharp encoder with SimCSE (unsupervised or supervised) or CoSENT through
/// the <see cref="Trainer{T}"/>. The encoder's pooling is the one trained; no evaluation data is used for selection —
/// training runs for the given steps, epochs or minutes and the final weights are kept.
/// </summary>
public static class SentenceEmbeddingTraining
{
    /// <summary>Unsupervised SimCSE: each batch goes through the encoder twice in one pass (rows duplicated; dropout differs per row).</summary>
    /// <exception cref="ArgumentException">Fewer than two sentences, or an encoder that cannot train.</exception>
    public static TrainingResult SimCse(SentenceEncoder encoder, IReadOnlyList<string> sentences, EmbeddingTrainingOptions o, Action<string>? log = null)
    {
        var tok = Tokenize(encoder, o);
        return Fit(encoder, sentences.Select(tok).ToList(), batch =>
        {
            var z = encoder.Forward([.. batch, .. batch]);                                   // (2B, H): two dropout views
            long b = batch.Count;
            return new StepResult(EmbeddingLosses.SimCse(z[..(int)b], z[(int)b..], o.Temperature), 2 * batch.Sum(e => (long)e.Count));
        }, o, log);
    }

    /// <summary>Supervised SimCSE on NLI triples.</summary>
    public static TrainingResult SupervisedSimCse(SentenceEncoder encoder, IReadOnlyList<NliTriple> triples, EmbeddingTrainingOptions o, Action<string>? log = null)
    {
        var tok = Tokenize(encoder, o);
        var data = triples.Select(t => (A: tok(t.Anchor), P: tok(t.Positive), N: tok(t.Negative))).ToList();
        return Fit(encoder, data, batch =>
        {
            int b = batch.Count;
            var z = encoder.Forward([.. batch.Select(t => t.A), .. batch.Select(t => t.P), .. batch.Select(t => t.N)]);   // (3B, H)
            return new StepResult(EmbeddingLosses.SupervisedSimCse(z[..b], z[b..(2 * b)], z[(2 * b)..], o.Temperature),
                batch.Sum(t => (long)t.A.Count + t.P.Count + t.N.Count));
        }, o, log);
    }

    /// <summary>CoSENT on labelled pairs.</summary>
    public static TrainingResult CoSent(SentenceEncoder encoder, IReadOnlyList<StsPair> pairs, EmbeddingTrainingOptions o, Action<string>? log = null)
    {
        var tok = Tokenize(encoder, o);
        var data = pairs.Select(p => (A: tok(p.First), B: tok(p.Second), p.Score)).ToList();
        return Fit(encoder, data, batch =>
        {
            int b = batch.Count;
            var z = encoder.Forward([.. batch.Select(t => t.A), .. batch.Select(t => t.B)]);                               // (2B, H)
            var scores = torch.tensor(batch.Select(t => t.Score).ToArray(), device: z.device);
            return new StepResult(EmbeddingLosses.CoSent(z[..b], z[b..], scores, o.Scale), batch.Sum(t => (long)t.A.Count + t.B.Count));
        }, o, log);
    }

    /// <summary>
    /// Supervised SimCSE's triples from NLI pairs: every premise with at least one entailed and one contradicted
    /// hypothesis gives one triple per entailed hypothesis (its contradictions taken in turn). Premises and hypotheses
    /// are compared as written.
    /// </summary>
    public static IReadOnlyList<NliTriple> Triples(IEnumerable<(string Premise, string Hypothesis, string Label)> pairs)
    {
        var byPremise = new Dictionary<string, (List<string> E, List<string> C)>(StringComparer.Ordinal);
        var order = new List<string>();
        foreach (var (p, h, label) in pairs)
        {
            if (!byPremise.TryGetValue(p, out var g)) { byPremise[p] = g = ([], []); order.Add(p); }
            if (label == "entailment") g.E.Add(h);
            else if (label == "contradiction") g.C.Add(h);
        }
        var triples = new List<NliTriple>();
        foreach (string p in order)
        {
            var (e, c) = byPremise[p];
            for (int i = 0; i < e.Count && c.Count > 0; i++) triples.Add(new NliTriple(p, e[i], c[i % c.Count]));
        }
        return triples;
    }

    static Func<string, EncodedText> Tokenize(SentenceEncoder encoder, EmbeddingTrainingOptions o) =>
        text => encoder.Tokenizer.Encode(text, null, Math.Min(o.MaxLength, encoder.MaxLength));

    static TrainingResult Fit<T>(SentenceEncoder encoder, IReadOnlyList<T> data, Func<IReadOnlyList<T>, StepResult> step, EmbeddingTrainingOptions o, Action<string>? log)
    {
        var model = encoder.Encoder as TransformerModel
            ?? throw new ArgumentException($"training needs the TorchSharp engine; this encoder runs on {encoder.Encoder.Engine} (load the model with SentenceEncoder.Load)");
        if (data.Count < 2) throw new ArgumentException($"contrastive training needs at least two examples, got {data.Count}");
        if (o.BatchSize < 2) throw new ArgumentException("contrastive training needs batches of at least two (the other examples are the negatives)");
        using var optimizer = new Adam(model.named_parameters().Select(p => (p.name, p.parameter)), new OptimizerOptions
        {
            LearningRate = o.LearningRate, WeightDecay = 0.01, ClipGradientNorm = 1.0,
            Schedule = o.WarmupSteps > 0 ? new PiecewiseLinearSchedule(new Dictionary<long, double> { [o.WarmupSteps] = 1.0 }) : null,
        });
        var trainer = new Trainer<T>(model, optimizer, (batch, _) => step(batch), new TrainerOptions
        {
            Epochs = o.Epochs, MaxSteps = o.MaxSteps, TimeBudget = o.Minutes is double m ? TimeSpan.FromMinutes(m) : null,
            // The last partial batch is dropped: a contrastive batch of one has no negatives.
            Batching = new BatchingOptions { BatchSize = Math.Min(o.BatchSize, data.Count), DropLast = true },
            Seed = o.Seed, OutputDirectory = o.Output, Resume = o.Resume, Overwrite = o.Overwrite, Progress = o.Progress,
            Log = o.Progress == ProgressDisplay.Bar ? null : log, LogEverySteps = 25,
        });
        torch.manual_seed(o.Seed);
        var result = trainer.Fit(data);
        model.eval();
        return result;
    }
}
