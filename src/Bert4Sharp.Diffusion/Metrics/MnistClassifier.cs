namespace Bert4Sharp.Diffusion.Metrics;

using System.Globalization;
using Bert4Sharp.Diffusion.Data;
using Bert4Sharp.Training;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

/// <summary>
/// The metric classifier: conv 3×3 (16) → ReLU → max-pool → conv 3×3 (32) → ReLU → max-pool → dense 64 (the features the
/// Fréchet distance uses) → ReLU → dense 10. Images (B, 1, 28, 28) in [−1, 1].
/// </summary>
public sealed class MnistClassifier : nn.Module<Tensor, Tensor>
{
    /// <summary>Width of the penultimate features.</summary>
    public const int FeatureWidth = 64;
    /// <summary>The weights file in a classifier directory.</summary>
    public const string WeightsFile = "classifier.safetensors";

#pragma warning disable IDE0044
    Conv2d conv1;
    Conv2d conv2;
    Linear hidden;
    Linear output;
#pragma warning restore IDE0044

    /// <summary>Creates an untrained classifier.</summary>
    public MnistClassifier() : base("classifier")
    {
        conv1 = nn.Conv2d(1, 16, 3, padding: 1);
        conv2 = nn.Conv2d(16, 32, 3, padding: 1);
        hidden = nn.Linear(32 * 7 * 7, FeatureWidth);
        output = nn.Linear(FeatureWidth, 10);
        RegisterComponents();
    }

    /// <summary>The penultimate features (B, 64), after the ReLU.</summary>
    public Tensor Features(Tensor images)
    {
        using var scope = torch.NewDisposeScope();
        var h = nn.functional.max_pool2d(nn.functional.relu(conv1.forward(images)), 2);      // (B, 16, 14, 14)
        h = nn.functional.max_pool2d(nn.functional.relu(conv2.forward(h)), 2);              // (B, 32, 7, 7)
        return nn.functional.relu(hidden.forward(h.flatten(1))).MoveToOuterDisposeScope(); // (B, 64)
    }

    /// <summary>Logits (B, 10).</summary>
    public override Tensor forward(Tensor images)
    {
        using var scope = torch.NewDisposeScope();
        return output.forward(Features(images)).MoveToOuterDisposeScope();
    }

    /// <summary>Features and class probabilities of many images, in batches, without gradients.</summary>
    public (Tensor Features, Tensor Probabilities) Embed(Tensor images, int batch = 500)
    {
        eval();
        using var noGrad = torch.no_grad();
        var features = new List<Tensor>();
        var probabilities = new List<Tensor>();
        for (long i = 0; i < images.shape[0]; i += batch)
        {
            using var scope = torch.NewDisposeScope();
            var x = images.narrow(0, i, Math.Min(batch, images.shape[0] - i));
            var f = Features(x);
            features.Add(f.MoveToOuterDisposeScope());
            probabilities.Add(torch.softmax(output.forward(f), 1).MoveToOuterDisposeScope());
        }
        var result = (torch.cat(features, 0), torch.cat(probabilities, 0));
        foreach (var t in features.Concat(probabilities)) t.Dispose();
        return result;
    }

    /// <summary>
    /// Trains on the training part of <see cref="Mnist.Split"/> with the shared trainer (Adam 1e-3, batch 64) and returns the
    /// classifier and its accuracy on the held-out part, which it never saw.
    /// </summary>
    public static (MnistClassifier Classifier, double HeldOutAccuracy) Train(MnistSet set, int epochs, int seed, Action<string> log, int heldOut = 1000)
    {
        if (epochs < 1) throw new ArgumentException($"classifier epochs must be ≥ 1, got {epochs}");
        torch.manual_seed(seed);
        var (train, held) = Mnist.Split(set.Count, heldOut);
        var classifier = new MnistClassifier();
        using var images = set.Images(train);
        using var labels = set.LabelTensor(train);
        using var optimizer = new Training.Adam(classifier.named_parameters(), new Training.OptimizerOptions { LearningRate = 1e-3 });
        var trainer = new Trainer<int>(classifier, optimizer, (batch, _) =>
        {
            using var index = torch.tensor(batch.Select(i => (long)i).ToArray());
            var logits = classifier.forward(images.index_select(0, index));
            return new StepResult(nn.functional.cross_entropy(logits, labels.index_select(0, index)));
        }, new TrainerOptions { Epochs = epochs, Batching = new BatchingOptions { BatchSize = 64 }, Seed = seed, Progress = ProgressDisplay.Lines, LogEverySteps = 100, Log = log });
        trainer.Fit(Enumerable.Range(0, train.Length).ToList());
        using var heldImages = set.Images(held);
        using var heldLabels = set.LabelTensor(held);
        var (features, probabilities) = classifier.Embed(heldImages);
        using (features)
        using (probabilities)
        {
            double accuracy = probabilities.argmax(1).eq(heldLabels).to(ScalarType.Float64).mean().ToDouble();
            log($"metric classifier: held-out accuracy {accuracy.ToString("F4", CultureInfo.InvariantCulture)} on {held.Length} images never trained on");
            return (classifier, accuracy);
        }
    }

    /// <summary>Writes <c>classifier.safetensors</c> into a directory.</summary>
    public void Save(string directory)
    {
        Checkpoints.SafetensorsWriter.Write(Path.Combine(directory, WeightsFile), state_dict().Select(kv => Checkpoints.TensorSource.From(kv.Key, kv.Value)).ToList());
    }

    /// <summary>Loads a classifier directory.</summary>
    /// <exception cref="FileNotFoundException">No <c>classifier.safetensors</c> there.</exception>
    public static MnistClassifier Load(string directory)
    {
        string path = Path.Combine(directory, WeightsFile);
        if (!File.Exists(path)) throw new FileNotFoundException($"{directory} has no {WeightsFile}; train the metric classifier with `b4s diffusion classifier --data-dir … --output {directory}`", path);
        var c = new MnistClassifier();
        DiffusionModel.LoadWeights(c, path);
        c.eval();
        return c;
    }
}
