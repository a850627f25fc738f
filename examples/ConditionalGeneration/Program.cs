// Class-conditional title generation through Conditional LayerNorm (bert4keras examples/task_conditional_language_model.py):
// a label embedding is the condition of every LayerNorm of a causal LM (BERT layout, random init: the project's
// pretrained RoFormerV2 has scale-free norms, nothing to condition), trained on TNEWS titles
// (15 classes) for a few CPU minutes, then asked for titles of each class. How class-specific they are is measured by an
// independent classifier: the TNEWS model fine-tuned by `b4s clue train tnews` (its accuracy on real dev titles is printed
// as the yardstick).
//   dotnet run -c Release --project examples/ConditionalGeneration -- [DATA_DIR] [PRETRAINED_DIR] [CLASSIFIER_DIR] [minutes] [--per-class N] [--threads T]
using System.Globalization;
using Bert4Sharp.Generation;
using Bert4Sharp.Layers;
using Bert4Sharp.Models;
using Bert4Sharp.Tasks.Clue;
using Bert4Sharp.Tokenization;
using Bert4Sharp.Training;
using TorchSharp;

string? Opt(string name) { int i = Array.IndexOf(args, name); return i >= 0 && i + 1 < args.Length ? args[i + 1] : null; }
var positional = args.Where((a, i) => !a.StartsWith("--", StringComparison.Ordinal) && (i == 0 || !args[i - 1].StartsWith("--", StringComparison.Ordinal))).ToArray();
string data = positional.Length > 0 ? positional[0] : Path.Combine("..", "shared", "data");
string pretrained = positional.Length > 1 ? positional[1] : "runs/pretrain-clue/model";
string classifierDir = positional.Length > 2 ? positional[2] : "runs/clue-pre/tnews/model";
double minutes = positional.Length > 3 ? double.Parse(positional[3], CultureInfo.InvariantCulture) : 5;
int perClass = Opt("--per-class") is { } pc ? int.Parse(pc, CultureInfo.InvariantCulture) : 20;
torch.set_num_threads(Opt("--threads") is { } th ? int.Parse(th, CultureInfo.InvariantCulture) : 1);
foreach (var (path, what) in new[] { (Path.Combine(data, "tnews", "train.json"), "TNEWS train"), (Path.Combine(pretrained, "config.json"), "the pretrained model"), (Path.Combine(classifierDir, "task.json"), "the TNEWS classifier") })
    if (!File.Exists(path)) { Console.Error.WriteLine($"{path}: missing ({what})"); return 1; }
torch.manual_seed(42);
const int MaxLength = 32;

// The independent judge: its label list fixes the class indices used for conditioning too.
var classifier = TextClassifier.Load(classifierDir, "tnews");
var labelIndex = classifier.Labels.Select((l, i) => (l, i)).ToDictionary(p => p.l, p => p.i);
var names = ClueReaders.TnewsLabelNames(Path.Combine(data, "tnews", "labels.json"));    // label → label_des, read once
var labelSet = names.Keys.ToHashSet();
var train = ClueReaders.Tnews(Path.Combine(data, "tnews", "train.json"), labelSet).Records;
var dev = ClueReaders.Tnews(Path.Combine(data, "tnews", "dev.json"), labelSet).Records;
var devSample = dev.Take(500).ToList();
var judged = classifier.Predict([.. devSample.Select(r => new TextExample(r.Sentence))]);
double judgeAccuracy = devSample.Zip(judged).Count(p => p.First.Label == p.Second.Label) / (double)devSample.Count;
Console.WriteLine($"judge {classifierDir}: {judgeAccuracy:P1} on {devSample.Count} real TNEWS dev titles");

var tokenizer = BertWordPieceTokenizer.FromFile(Path.Combine(pretrained, "vocab.txt"), new BertWordPieceOptions { LowerCase = true });
int[] Encode(string title) => [.. tokenizer.Encode(title, maxLength: MaxLength).Ids];   // [CLS] … [SEP]; a long title keeps its start and its [SEP]
var examples = train.Select(r => new Titled(Encode(r.Sentence), labelIndex[r.Label!])).ToList();
Console.WriteLine($"{examples.Count:N0} TNEWS training titles, {classifier.Labels.Count} classes, at most {MaxLength} tokens");

// bert4keras: Embedding(num_classes, 128) → layer_norm_cond with a 128-unit swish hidden layer.
var condition = new ConditionOptions(128, HiddenUnits: 128, HiddenActivation: "swish");
// RoFormerV2's norms are scale-free (no gain or bias to shift), so its pretrained weights cannot take a conditional
// LayerNorm; the LM is a BERT-layout causal model (LayerNorm with gain and bias) of the same size on the same
// vocabulary, from random initialisation.
var config = new TransformerConfig
{
    ModelType = "bert", VocabSize = tokenizer.Vocabulary.Count, HiddenSize = 256, NumHiddenLayers = 4, NumAttentionHeads = 4, IntermediateSize = 1024,
    HiddenAct = "gelu", MaxPositionEmbeddings = 64, HiddenDropoutProb = 0, AttentionProbsDropoutProb = 0,
};
var lm = TransformerModels.Create(config, "bert", Application.LanguageModel, new BuildOptions { Condition = condition });
Console.WriteLine($"{pretrained}'s RoFormerV2 has scale-free norms (nothing to condition): a BERT-layout causal LM of its size (256 × 4) on its vocabulary, random init");
var model = new ClassConditionalLanguageModel(lm, classifier.Labels.Count, condition);

using var optimizer = new Adam(model.named_parameters().Select(p => (p.name, p.parameter)), new OptimizerOptions
{
    LearningRate = 2e-3, WeightDecay = 0.01, ClipGradientNorm = 1.0, Schedule = new PiecewiseLinearSchedule(new Dictionary<long, double> { [20] = 1.0, [1500] = 0.2 }),
});
var trainer = new Trainer<Titled>(model, optimizer, (batch, _) =>
{
    var (ids, mask) = LanguageModeling.Pad([.. batch.Select(b => b.Ids)], tokenizer.PaddingId);
    var labels = torch.tensor(batch.Select(b => (long)b.Label).ToArray());
    return new StepResult(LanguageModeling.CausalLoss(model.forward(ids, labels), ids, mask), mask.sum().ToInt64());
}, new TrainerOptions
{
    Epochs = 100, TimeBudget = TimeSpan.FromMinutes(minutes), Batching = new BatchingOptions { BatchSize = 16, BucketBatches = 20 },
    LogEverySteps = 50, Progress = ProgressDisplay.Lines,
}) { Length = e => e.Ids.Length };
var result = trainer.Fit(examples);
model.eval();
Console.WriteLine($"{result.StopReason}: {result.Steps} steps, {result.Tokens:N0} tokens");

// Generate per class; the judge classifies each generated title.
int hits = 0, total = 0;
var perLabel = new List<string>();
for (int c = 0; c < classifier.Labels.Count; c++)
{
    var titles = model.Sample(c, [tokenizer.StartId], perClass, MaxLength - 2, tokenizer.EndId, topK: 20, seed: 100 + c)
        .Select(t => tokenizer.Decode(t)).Where(t => t.Trim().Length > 0).ToList();
    var predicted = classifier.Predict([.. titles.Select(t => new TextExample(t))]);
    int right = predicted.Count(p => p.Index == c);
    hits += right;
    total += titles.Count;
    string name = names.GetValueOrDefault(classifier.Labels[c], classifier.Labels[c]);
    perLabel.Add($"  {name,-20} {right,3}/{titles.Count}   e.g. {string.Join(" | ", titles.Take(3))}");
}
foreach (var line in perLabel) Console.WriteLine(line);
Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
    $"{hits}/{total} = {100.0 * hits / total:F1}% of generated titles classified as their conditioning class (chance {100.0 / classifier.Labels.Count:F1}%; the judge's accuracy on real dev titles {judgeAccuracy:P1})"));
return 0;

/// <summary>A tokenised title ([CLS] … [SEP]) and its class index.</summary>
sealed record Titled(int[] Ids, int Label);
