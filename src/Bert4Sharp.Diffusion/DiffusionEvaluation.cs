namespace Bert4Sharp.Diffusion;

using System.Diagnostics;
using Bert4Sharp.Diffusion.Data;
using Bert4Sharp.Diffusion.Methods;
using Bert4Sharp.Diffusion.Metrics;
using TorchSharp;
using static TorchSharp.torch;

/// <summary>One row of the quality table: a model sampled with one sampler and step count.</summary>
/// <param name="Method">ddpm, rf or pfgm.</param>
/// <param name="Reflow">Reflow rounds of the model.</param>
/// <param name="Sampler">The sampler.</param>
/// <param name="Steps">Sampling steps.</param>
/// <param name="Evaluations">Network evaluations per sample (Heun: two a step).</param>
/// <param name="Count">Samples drawn.</param>
/// <param name="Image">Image metrics (MNIST models).</param>
/// <param name="Wasserstein2">Exact W2 to fresh target samples (toy models).</param>
/// <param name="Seconds">Wall-clock sampling time.</param>
/// <param name="Precision">Toys: mean distance of a sample to the nearest of <see cref="DiffusionEvaluation.ToyReference"/> target points (off the data: high).</param>
/// <param name="Coverage">Toys: mean distance of a fresh target point to the nearest sample (parts of the target missed: high).</param>
public sealed record EvaluationRow(string Method, int Reflow, string Sampler, int Steps, int Evaluations, int Count, ImageQuality? Image, double? Wasserstein2, double Seconds,
    double? Precision = null, double? Coverage = null);

/// <summary>Samples a model at several step counts and measures the samples.</summary>
public static class DiffusionEvaluation
{
    /// <summary>Samples <paramref name="count"/> points per (sampler, steps) and measures them: against the held-out MNIST images
    /// through <paramref name="classifier"/> (<paramref name="realFeatures"/>: their features, embedded once by the caller,
    /// <see cref="MnistClassifier.Embed"/>), or against fresh samples of the toy distribution with the exact W2.</summary>
    /// <exception cref="ArgumentException">MNIST without a classifier or real features, or bad steps / samplers.</exception>
    public static IReadOnlyList<EvaluationRow> Run(DiffusionModel model, IReadOnlyList<Sampler> samplers, IReadOnlyList<int> steps, int count, int seed,
        MnistClassifier? classifier, Tensor? realFeatures, Action<string> log)
    {
        if (!model.Config.IsToy && (classifier is null || realFeatures is null)) throw new ArgumentException("MNIST models are measured with the metric classifier (--classifier) and the held-out images");
        var rows = new List<EvaluationRow>();
        var toy = model.Config.IsToy ? ToyData.TryParse(model.Config.Data) ?? throw new ArgumentException($"unknown toy data '{model.Config.Data}'") : (ToyDistribution?)null;
        using var target = toy is ToyDistribution t ? ToyData.Sample(t, count, seed + 7919) : null;
        using var reference = toy is ToyDistribution r ? ToyData.Sample(r, ToyReference, seed + 7920) : null;
        // W2 to the target sample, distance to the nearest of the reference points (precision), target point to the nearest of these (coverage).
        (double W2, double Precision, double Coverage) Measure(Tensor points) =>
            (SampleQuality.Wasserstein2(points, target!), SampleQuality.MeanNearestDistance(points, reference!), SampleQuality.MeanNearestDistance(target!, points));
        if (toy is ToyDistribution o)
        {
            using var other = ToyData.Sample(o, count, seed + 7921);                       // what perfect samples would score
            var floor = Measure(other);
            log(FormattableString.Invariant($"floors ({count} fresh target points as the samples): W2 {floor.W2:F4}, ") +
                FormattableString.Invariant($"distance to the nearest target point {floor.Precision:F4}, target point to the nearest sample {floor.Coverage:F4}"));
        }
        foreach (var sampler in samplers)
            foreach (int s in steps)
            {
                var clock = Stopwatch.StartNew();
                using var samples = model.Sample(count, s, sampler, seed);
                double seconds = clock.Elapsed.TotalSeconds;
                int nfe = sampler == Sampler.Heun ? 2 * s : s;
                var row = target is not null && Measure(samples) is var m
                    ? new EvaluationRow(model.Config.Method, model.Config.Reflow, MethodNames.Name(sampler), s, nfe, count, null, m.W2, seconds, m.Precision, m.Coverage)
                    : new EvaluationRow(model.Config.Method, model.Config.Reflow, MethodNames.Name(sampler), s, nfe, count, SampleQuality.ImagesAgainst(classifier!, samples, realFeatures!), null, seconds);
                log(Describe(row));
                rows.Add(row);
            }
        return rows;
    }

    /// <summary>One line per row.</summary>
    public static string Describe(EvaluationRow r) =>
        FormattableString.Invariant($"{r.Method}{(r.Reflow > 0 ? $" (reflow {r.Reflow})" : "")} {r.Sampler} {r.Steps} steps ({r.Evaluations} NFE, {r.Count} samples, {r.Seconds:F1} s): ") +
        (r.Image is { } q
            ? FormattableString.Invariant($"FD {q.FrechetDistance:F2}, class entropy {q.ClassEntropy:F3}, max class share {q.MaxClassShare:F3}, mean confidence {q.MeanConfidence:F3}")
            : FormattableString.Invariant($"exact W2 to the target {r.Wasserstein2:F4}, distance to the nearest target point {r.Precision:F4}, target point to the nearest sample {r.Coverage:F4}"));

    /// <summary>Target points the toy rows' precision distance is measured against.</summary>
    public const int ToyReference = 10_000;

    /// <summary>
    /// The floors of the Fréchet distance with real images only: the held-out set's two halves against each other, and
    /// <paramref name="count"/> training images against the held-out ones (the same sample sizes as the generated rows).
    /// <paramref name="heldFeatures"/>: the classifier's features of the held-out images of <see cref="Mnist.Split"/>
    /// (<paramref name="heldOut"/> of them), embedded once by the caller.
    /// </summary>
    /// <returns>The two distances, and how many training and held-out images the second compared.</returns>
    public static (double Halves, double TrainVersusHeldOut, int TrainCount, int HeldCount) RealFloor(MnistClassifier classifier, MnistSet set, Tensor heldFeatures, int count, int heldOut = 1000)
    {
        var (train, held) = Mnist.Split(set.Count, heldOut);
        if (heldFeatures.shape[0] != held.Length) throw new ArgumentException($"{heldFeatures.shape[0]} held-out feature rows for {held.Length} held-out images");
        var f = heldFeatures;
        long half = f.shape[0] / 2;
        using var a = f.narrow(0, 0, half);
        using var b = f.narrow(0, half, half);
        double halves = SampleQuality.FrechetDistance(a, b);
        int trainCount = Math.Min(count, train.Length);
        using var trainImages = set.Images(train.Take(trainCount).ToList());
        var (tf, tp) = classifier.Embed(trainImages);
        using var trainFeatures = tf;
        tp.Dispose();
        return (halves, SampleQuality.FrechetDistance(trainFeatures, f), trainCount, held.Length);
    }
}
