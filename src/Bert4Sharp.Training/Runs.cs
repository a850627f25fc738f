namespace Bert4Sharp.Training;

using System.Text.Json;
using Bert4Sharp.Data;
using Bert4Sharp.Models;
using Bert4Sharp.Runtime;
using Bert4Sharp.Tasks;
using Bert4Sharp.Tokenization;
using Bert4Sharp.Training.Distributed;
using TorchSharp;
using static TorchSharp.torch;

/// <summary>How a run ended and what it measured.</summary>
/// <param name="Training">The trainer's result.</param>
/// <param name="Metrics">Final evaluation metrics.</param>
/// <param name="ModelDirectory">Where the trained model was saved (Hugging Face layout + vocab.txt).</param>
public sealed record RunResult(TrainingResult Training, IReadOnlyDictionary<string, double> Metrics, string ModelDirectory);

/// <summary>Runs a <see cref="PretrainRecipe"/>: MLM pretraining from scratch (<c>b4s pretrain</c>).</summary>
public static class Pretraining
{
    /// <summary>
    /// Trains, evaluates MLM accuracy on held-out text, and saves the model under <c>output/model</c>. With
    /// <paramref name="dataParallel"/> over several ranks, each trains on its share of every batch and only rank 0 writes.
    /// </summary>
    public static RunResult Run(PretrainRecipe r, bool resume = false, Action<string>? log = null, ProgressDisplay progress = ProgressDisplay.Auto,
        CancellationToken cancellation = default, bool overwrite = false, DataParallelOptions? dataParallel = null)
    {
        log ??= Console.WriteLine;
        TrainingOutput.EnsureUsable(r.Resolve(r.Output), resume, overwrite);
        torch.manual_seed(r.Seed);
        string? initModel = r.InitModel is null ? null : r.Resolve(r.InitModel);
        string vocabPath = r.Vocab.Length > 0 ? r.Resolve(r.Vocab) : Path.Combine(initModel!, "vocab.txt");
        string? preTokenize = r.PreTokenize ?? (initModel is null ? null : PreTokenization.Read(initModel));
        var tokenizer = BertWordPieceTokenizer.FromFile(vocabPath, PreTokenization.Apply(new BertWordPieceOptions { LowerCase = true }, preTokenize));
        var split = Split(r, log);
        JiebaSegmenter? jieba = r.WholeWordMasking ? PreTokenization.Segmenter(fetch: true) : null;
        var mlm = new MaskedLanguageModeling(tokenizer, jieba);
        var heldOut = mlm.Pack(split.HeldOut, r.MaxLength).ToList();
        var train = mlm.Pack(split.Train, r.MaxLength).ToList();
        long tokens = train.Sum(s => (long)s.Ids.Length);
        log($"{train.Count:N0} training sequences ({tokens:N0} tokens, up to {r.MaxLength} each), {heldOut.Count:N0} held out; whole-word masking: {(jieba is null ? "off" : "on (jieba)")}; " +
            $"word pre-tokenizer: {preTokenize ?? "none"}");

        TransformerModel model;
        if (initModel is null) model = TransformerModels.Build(RecipeConfig.Parse(r.Config, tokenizer.Vocabulary.Count), null, ModelFamily.Get(r.Family), Application.MaskedLM, null, out _);
        else
        {
            model = AutoModel.Load(initModel, new AutoModelOptions { Family = r.Family, Application = Application.MaskedLM, VocabularyPath = vocabPath }).Model;
            log($"continuing from {initModel}");
        }
        var config = model.Config;
        log($"model: {r.Family}, {config.NumHiddenLayers} layers, hidden {config.HiddenSize}, {model.parameters().Sum(p => p.numel()) / 1e6:F1} M parameters, {torch.get_num_threads()} threads");
        var precision = r.PrecisionPlan(model.Device);
        precision.Apply(model);                                                            // before the optimizer: it keeps fp32 masters of 16-bit weights
        using var optimizer = r.Optimizer.Create(model.named_parameters().Select(p => (p.name, p.parameter)), precision);
        string output = r.Resolve(r.Output);
        var evaluation = new EvaluationCallback("mlm_accuracy", () => Evaluate(model, mlm, heldOut, r.Seed)) { EverySteps = r.EvalEvery, UseEma = r.Optimizer.Ema is not null };
        var trainer = new Trainer<PretrainingSequence>(model, optimizer, (batch, ctx) => mlm.Step(model, batch, ctx), new TrainerOptions
        {
            Epochs = r.Epochs, MaxSteps = r.MaxSteps, TimeBudget = r.Minutes is double m ? TimeSpan.FromMinutes(m) : null,
            Batching = new BatchingOptions { BatchSize = r.BatchSize, BucketBatches = 20 }, Seed = r.Seed, OutputDirectory = output,
            CheckpointEverySteps = r.CheckpointEvery, Resume = resume, Overwrite = overwrite, LogEverySteps = r.LogEvery, Progress = progress, Log = progress == ProgressDisplay.Bar ? null : log,
            Precision = precision, DataParallel = dataParallel?.WithModel(r.Family, r.Config),
        }) { Length = s => s.Ids.Length };
        var result = trainer.Fit(train, [evaluation], cancellation);
        if (r.Optimizer.Ema is not null) optimizer.ApplyEma();
        var metrics = Evaluate(model, mlm, heldOut, r.Seed);
        string dir = Path.Combine(output, "model");
        if (dataParallel?.Communicator.IsPrimary != false)
            TransformerPipeline.Create(model, tokenizer).SavePretrained(dir);             // with the word pre-tokenizer, if any
        log($"{result.StopReason}: {result.Steps} steps; held-out MLM accuracy {metrics["mlm_accuracy"]:P2}, loss {metrics["mlm_loss"]:F3}; saved to {dir}");
        return new RunResult(result, metrics, dir);
    }

    /// <summary>
    /// The recipe's corpus, shuffled with its seed, repeats dropped, and split into the training texts and the held-out
    /// texts exactly as <see cref="Run"/> splits them (so a word vocabulary can be counted on the training texts alone).
    /// </summary>
    public static DisjointSplit<string> Split(PretrainRecipe r, Action<string> log)
    {
        var texts = new List<string>();
        foreach (var src in r.Corpus)
        {
            int before = texts.Count;
            if (src.File == "builtin:tang-poems")
                texts.AddRange(File.ReadLines(DataCache.GetTangPoems(log)).Take(src.Limit ?? int.MaxValue));
            else
            {
                var format = TextRecords.ParseFormat(src.Format) ?? TextFormat.Lines;
                texts.AddRange(TextRecords.Read(r.Resolve(src.File), format, src.Fields, src.Limit ?? int.MaxValue));
            }
            log($"corpus: {texts.Count - before:N0} texts from {src.File}");
        }
        var rng = new Random(r.Seed);
        texts = texts.Where(t => t.Length > 0).OrderBy(_ => rng.Next()).ToList();
        // Held-out texts must never be trained on: repeats (same text after normalisation) are dropped before the split.
        var split = HeldOutSplit.Split(texts, r.HeldOut, t => t);
        log($"deduplication: {split.Duplicates:N0} repeated texts dropped (exact match after normalisation), so no held-out text is also a training text" +
            (split.Overlap > 0 ? $" (a plain split would have shared {split.Overlap:N0} of the {r.HeldOut:N0} held-out texts with training)" : ""));
        return split;
    }

    /// <summary>Held-out MLM loss and accuracy with a fixed masking (same seed every time, so evaluations compare).</summary>
    public static IReadOnlyDictionary<string, double> Evaluate(TransformerModel model, MaskedLanguageModeling mlm, IReadOnlyList<PretrainingSequence> heldOut, int seed)
    {
        bool wasTraining = model.training;
        model.eval();
        using var noGrad = torch.no_grad();
        var rng = new Random(seed + 7919);
        double lossSum = 0;
        long correct = 0, count = 0;
        for (int i = 0; i < heldOut.Count; i += 32)
        {
            using var scope = torch.NewDisposeScope();
            var batch = heldOut.Skip(i).Take(32).ToList();
            var (input, labels, attention) = mlm.Mask(batch, rng, model.TokenEmbeddings.device);
            var (loss, c, n) = MaskedLanguageModeling.Loss(model, input, labels, attention);
            lossSum += loss.item<float>() * n;
            correct += c;
            count += n;
        }
        if (wasTraining) model.train();
        return new Dictionary<string, double> { ["mlm_accuracy"] = (double)correct / Math.Max(1, count), ["mlm_loss"] = lossSum / Math.Max(1, count) };
    }
}

/// <summary>A labelled example: text (and optional pair) and label index.</summary>
/// <param name="Text">First text.</param>
/// <param name="Pair">Second text, or null.</param>
/// <param name="Label">Label index.</param>
public sealed record LabelledText(string Text, string? Pair, int Label)
{
    /// <summary>Characters of the text and its pair: the example's length for bucketing batches and sorting by length.</summary>
    public static int CharacterLength(LabelledText x) => x.Text.Length + (x.Pair?.Length ?? 0);
}

/// <summary>Runs a <see cref="TrainRecipe"/>: fine-tunes a <see cref="SequenceClassifier"/> (<c>b4s train</c>).</summary>
public static class FineTuning
{
    /// <summary>
    /// Trains, keeps the best dev accuracy, and saves the best classifier under <c>output/best.safetensors</c>. The
    /// reported metrics are those of the evaluation chosen on dev (so they are an optimistic estimate of unseen data).
    /// With <paramref name="dataParallel"/> over several ranks, each trains on its share of every batch and only rank 0 writes.
    /// </summary>
    public static RunResult Run(TrainRecipe r, bool resume = false, Action<string>? log = null, ProgressDisplay progress = ProgressDisplay.Auto,
        CancellationToken cancellation = default, bool overwrite = false, DataParallelOptions? dataParallel = null)
    {
        log ??= Console.WriteLine;
        TrainingOutput.EnsureUsable(r.Resolve(r.Output), resume, overwrite);
        torch.manual_seed(r.Seed);
        string vocab = r.Vocab is not null ? r.Resolve(r.Vocab) : Path.Combine(r.Resolve(r.Model!), "vocab.txt");
        string? preTokenize = r.PreTokenize ?? (r.Model is null ? null : PreTokenization.Read(r.Resolve(r.Model)));
        var tokenizer = BertWordPieceTokenizer.FromFile(vocab, PreTokenization.Apply(new BertWordPieceOptions { LowerCase = true }, preTokenize));
        if (preTokenize is not null and not "none") log($"word pre-tokenizer: {preTokenize}");
        var labelNames = new List<string>();
        var train = ReadLabelled(r.Resolve(r.Train.File), r.Train, labelNames, addLabels: true, r.OnBadLine == "skip", log);
        var dev = ReadLabelled(r.Resolve(r.Dev.File), r.Dev, labelNames, addLabels: false, r.OnBadLine == "skip", log);
        log($"{train.Count:N0} training and {dev.Count:N0} dev examples, {labelNames.Count} labels");
        int shared = HeldOutSplit.Disjoint(train, dev, DedupText).Overlap;
        if (shared > 0) log($"note: {shared:N0} dev examples have the text of a training example (exact match after normalisation); the dev set is used as given");
        SequenceClassifier model;
        var pooling = r.Pooling == "mean" ? Pooling.Mean : Pooling.First;
        if (r.Model is not null)
        {
            model = SequenceClassifier.FromPretrained(r.Resolve(r.Model), r.Family, labelNames.Count, pooling: pooling);
            log($"encoder: pretrained weights from {r.Resolve(r.Model)}");
        }
        else
        {
            var config = r.RandomConfig(tokenizer.Vocabulary.Count);
            // The head's dropout follows the config's hidden_dropout_prob, as Hugging Face's classifiers do without classifier_dropout.
            model = new SequenceClassifier(TransformerModels.Build(config, null, ModelFamily.Get(r.Family), Application.Encoder, null, out _), labelNames.Count,
                dropout: config.HiddenDropoutProb, pooling: pooling);
            log("encoder: random initialisation");
        }
        if (tokenizer.Vocabulary.Count != model.Encoder.Config.VocabSize)
            throw new InvalidDataException($"{vocab} has {tokenizer.Vocabulary.Count} tokens but the model's vocab_size is {model.Encoder.Config.VocabSize}");
        var precision = r.PrecisionPlan(model.Encoder.Device);
        precision.Apply(model.Encoder);                                                    // the classifier head stays fp32
        using var optimizer = r.Optimizer.Create(model.named_parameters().Select(p => (p.name, p.parameter)), precision);
        var device = model.Encoder.TokenEmbeddings.device;
        var techniques = new List<TrainingTechnique>();
        if (r.FgmEpsilon is double eps) techniques.Add(new FastGradientMethod(model.Encoder.TokenEmbeddings, eps));
        if (r.GradientPenalty is double gp) techniques.Add(new GradientPenalty(model.Encoder.TokenEmbeddings, gp));
        if (r.VatEpsilon is double vat) techniques.Add(new VirtualAdversarialTraining(model.Encoder.TokenEmbeddings, vat));
        if (r.EmbeddingNoise is double noise) techniques.Add(new EmbeddingNoise(model.Encoder.TokenEmbeddings, noise));
        string output = r.Resolve(r.Output);
        var evaluation = new EvaluationCallback("accuracy", () => Evaluate(model, tokenizer, dev, r.MaxLength)) { Patience = r.Patience, EverySteps = r.EvalEvery, UseEma = r.Optimizer.Ema is not null, DataName = "dev" };
        var trainer = new Trainer<LabelledText>(model, optimizer, (batch, ctx) =>
        {
            var (ids, segments, mask, labels) = Batch(tokenizer, batch, r.MaxLength, device);
            var logits = model.forward(ids, segments, mask);
            var loss = nn.functional.cross_entropy(logits, labels);
            double acc = logits.argmax(-1).eq(labels).to(ScalarType.Float32).mean().item<float>();
            return new StepResult(loss, mask.sum().item<long>(), new Dictionary<string, double> { ["accuracy"] = acc }, logits);
        }, new TrainerOptions
        {
            Epochs = r.Epochs, Batching = new BatchingOptions { BatchSize = r.BatchSize }, Seed = r.Seed, OutputDirectory = output, Resume = resume, Overwrite = overwrite,
            Techniques = techniques, Progress = progress, Log = progress == ProgressDisplay.Bar ? null : log, LogEverySteps = r.LogEvery, Precision = precision,
            DataParallel = dataParallel?.WithModel(r.Family, r.Config),
        });
        var result = trainer.Fit(train, [evaluation], cancellation);
        var best = evaluation.Best;
        var metrics = best?.Metrics ?? Evaluate(model, tokenizer, dev, r.MaxLength);
        if (dataParallel?.Communicator.IsPrimary != false) Checkpoints.AtomicFile.WriteAllText(Path.Combine(output, "labels.json"), JsonSerializer.Serialize(labelNames));
        string chosen = best is null ? "after training, no evaluation ran" : evaluation.DescribeBest();
        log($"{result.StopReason}: {result.Steps} steps; best dev accuracy {metrics["accuracy"]:P1} ({chosen}; after each evaluation: {string.Join(", ", evaluation.History.Select(h => h.Metrics["accuracy"].ToString("P1", System.Globalization.CultureInfo.InvariantCulture)))})");
        return new RunResult(result, metrics, output);
    }

    static string DedupText(LabelledText x) => x.Pair is null ? x.Text : x.Text + "\t" + x.Pair;

    /// <summary>Dev accuracy and loss.</summary>
    public static IReadOnlyDictionary<string, double> Evaluate(nn.Module<Tensor, Tensor?, Tensor?, Tensor> model, BertWordPieceTokenizer tokenizer, IReadOnlyList<LabelledText> data, int maxLength)
    {
        bool wasTraining = model.training;
        model.eval();
        using var noGrad = torch.no_grad();
        long correct = 0;
        double loss = 0;
        var device = model.parameters().First().device;
        for (int i = 0; i < data.Count; i += 64)
        {
            using var scope = torch.NewDisposeScope();
            var (ids, segments, mask, labels) = Batch(tokenizer, data.Skip(i).Take(64).ToList(), maxLength, device);
            var logits = model.forward(ids, segments, mask);
            correct += logits.argmax(-1).eq(labels).sum().item<long>();
            loss += nn.functional.cross_entropy(logits, labels, reduction: nn.Reduction.Sum).item<float>();
        }
        if (wasTraining) model.train();
        return new Dictionary<string, double> { ["accuracy"] = (double)correct / Math.Max(1, data.Count), ["loss"] = loss / Math.Max(1, data.Count) };
    }

    /// <summary>A classifier batch: padded ids, segment ids and mask (B, T) of <c>[CLS] text [SEP] (pair [SEP])</c>, and the label indices (B).</summary>
    internal static (Tensor Ids, Tensor Segments, Tensor Mask, Tensor Labels) Batch(BertWordPieceTokenizer tokenizer, IReadOnlyList<LabelledText> batch, int maxLength, Device device)
    {
        var (ids, segments, mask) = Inputs(tokenizer, batch.Select(x => (x.Text, x.Pair)), maxLength, device);
        return (ids, segments, mask, torch.tensor(batch.Select(x => (long)x.Label).ToArray(), device: device));
    }

    /// <summary>Padded ids, segment ids and mask (B, T) of texts or text pairs, each truncated to <paramref name="maxLength"/> tokens.</summary>
    internal static (Tensor Ids, Tensor Segments, Tensor Mask) Inputs(BertWordPieceTokenizer tokenizer, IEnumerable<(string Text, string? Pair)> batch, int maxLength, Device device)
    {
        var enc = batch.Select(x => tokenizer.Encode(x.Text, x.Pair, maxLength)).ToList();
        var (ids, mask) = SequencePadding.Pad(enc.Select(e => e.Ids).ToList(), tokenizer.PaddingId, device);
        var segments = SequencePadding.PadValues(enc.Select(e => e.SegmentIds).ToList(), 0, device);
        return (ids, segments, mask);
    }

    /// <summary>
    /// Reads a JSON-lines labelled file. A line that is not JSON, lacks the text or the label, or (for dev) has
    /// a label unseen in training stops the run with file and line, or is skipped and counted when asked.
    /// </summary>
    public static List<LabelledText> ReadLabelled(string path, LabelledDataRecipe spec, List<string> labels, bool addLabels, bool skipBad, Action<string> log)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"{path}: dataset not found", path);
        var list = new List<LabelledText>();
        int lineNo = 0, bad = 0;
        foreach (string raw in File.ReadLines(path))
        {
            lineNo++;
            if (string.IsNullOrWhiteSpace(raw)) continue;
            if (spec.Limit is int lim && list.Count >= lim) break;
            string? problem = null;
            LabelledText? item = null;
            try
            {
                using var doc = JsonDocument.Parse(raw);
                var root = doc.RootElement;
                string? text = root.ValueKind == JsonValueKind.Object && root.TryGetProperty(spec.Text, out var t) && t.ValueKind == JsonValueKind.String ? t.GetString() : null;
                string? pair = spec.TextPair is null ? null : root.TryGetProperty(spec.TextPair, out var p) && p.ValueKind == JsonValueKind.String ? p.GetString() : null;
                string? label = root.ValueKind == JsonValueKind.Object && root.TryGetProperty(spec.Label, out var l) ? (l.ValueKind == JsonValueKind.String ? l.GetString() : l.ValueKind == JsonValueKind.Number ? l.GetRawText() : null) : null;
                if (string.IsNullOrEmpty(text)) problem = $"no text under '{spec.Text}'";
                else if (spec.TextPair is not null && pair is null) problem = $"no text under '{spec.TextPair}'";
                else if (label is null) problem = $"no label under '{spec.Label}'";
                else
                {
                    int index = labels.IndexOf(label);
                    if (index < 0 && addLabels) { labels.Add(label); index = labels.Count - 1; }
                    if (index < 0) problem = $"label '{label}' does not occur in the training data";
                    else item = new LabelledText(text, pair, index);
                }
            }
            catch (JsonException e) { problem = $"not valid JSON ({e.Message})"; }
            if (problem is null) { list.Add(item!); continue; }
            if (!skipBad) throw new InvalidDataException($"{path} line {lineNo}: {problem}; fix the line or set \"on_bad_line\": \"skip\"");
            if (bad++ < 5) log($"skipping {path} line {lineNo}: {problem}");
        }
        if (bad > 0) log($"{path}: skipped {bad} bad line(s) of {lineNo}");
        if (list.Count == 0) throw new InvalidDataException($"{path}: no usable examples");
        return list;
    }
}
