// Seq2seq news summaries for LCSTS articles (../shared/data/lcsts, CLGE subset), two ways:
//  - UniLM, one encoder (bert4keras task_seq2seq_autotitle), from the RoFormerV2 that
//    `b4s pretrain recipes/pretrain-roformer-v2.json` wrote (or random weights when it is absent);
//  - T5 (t5.1.1 layout: gated GELU, RMS norms, bucketed relative positions), encoder–decoder from scratch
//    (bert4keras task_seq2seq_autotitle_csl_mt5 with no mT5 weights available offline), `--t5`.
// Both train with the Trainer on the same characters (RoFormerV2's 12k vocabulary) and are scored with
// character ROUGE-L and BLEU-4 on held-out articles against a lead baseline (the article's first characters).
//   dotnet run -c Release --project examples/TitleGeneration -- ../shared/data/lcsts runs/pretrain-roformer-v2/model [minutes] [--t5]
using Bert4Sharp.Checkpoints;
using Bert4Sharp.Generation;
using Bert4Sharp.Models;
using Bert4Sharp.Tokenization;
using Bert4Sharp.Training;
using TorchSharp;
using static TorchSharp.torch;

bool useT5 = args.Contains("--t5");
args = args.Where(a => a != "--t5").ToArray();
string dir = args.Length > 0 ? args[0] : Path.Combine("..", "shared", "data", "lcsts");
string pretrained = args.Length > 1 ? args[1] : Path.Combine("runs", "pretrain-roformer-v2", "model");
double minutes = args.Length > 2 ? double.Parse(args[2], System.Globalization.CultureInfo.InvariantCulture) : 8;
const int MaxSource = Titles.MaxSource, MaxTarget = Titles.MaxTarget, Evaluated = 200;
if (!File.Exists(Path.Combine(dir, "train.tsv"))) { Console.Error.WriteLine($"{dir}: LCSTS train.tsv/val.tsv are missing"); return 1; }
torch.manual_seed(42);

static List<(string Summary, string Text)> Read(string path) => File.ReadLines(path).Select(l => l.Split('\t')).Where(c => c.Length >= 2 && c[0].Length > 0 && c[1].Length > 0).Select(c => (c[0], c[1])).ToList();
var train = Read(Path.Combine(dir, "train.tsv"));
// Held-out articles are never trained on (nor pretrained on: the pretraining corpus has train.tsv): an article of
// val.tsv that also occurs in train.tsv, or earlier in val.tsv, is left out (exact match after normalisation).
var disjoint = Bert4Sharp.Data.HeldOutSplit.Disjoint(train, Read(Path.Combine(dir, "val.tsv")), e => e.Text);
Console.WriteLine($"deduplication: {disjoint.Overlap:N0} val.tsv articles also in train.tsv and {disjoint.Duplicates:N0} repeated within val.tsv left out of the held-out set");
var valid = disjoint.HeldOut.Take(Evaluated).ToList();

if (useT5) return Titles.RunT5(train, valid, Path.Combine(dir, "..", "..", "models", "roformer_v2_char_small", "vocab.txt"), minutes);

TransformerModel model;
BertWordPieceTokenizer tokenizer;
if (File.Exists(Path.Combine(pretrained, "config.json")))
{
    tokenizer = BertWordPieceTokenizer.FromFile(Path.Combine(pretrained, "vocab.txt"), new BertWordPieceOptions { LowerCase = true });
    using var ck = Checkpoint.Open(pretrained);
    model = TransformerModels.Build(TransformerConfig.Load(Path.Combine(pretrained, "config.json")), ck, ModelFamily.Get("roformer_v2"), Application.UniLM, null, out _);
    Console.WriteLine($"UniLM from the pretrained RoFormerV2 in {pretrained}");
}
else
{
    Console.Error.WriteLine($"{pretrained} has no model: run `b4s pretrain recipes/pretrain-roformer-v2.json` first for the pretrained start; using random weights");
    string vocab = Path.Combine(dir, "..", "..", "models", "roformer_v2_char_small", "vocab.txt");
    tokenizer = BertWordPieceTokenizer.FromFile(vocab, new BertWordPieceOptions { LowerCase = true });
    model = TransformerModels.Build(new TransformerConfig { VocabSize = tokenizer.Vocabulary.Count, HiddenSize = 256, NumHiddenLayers = 4, NumAttentionHeads = 4, IntermediateSize = 1024, HiddenAct = "relu" },
        null, ModelFamily.Get("roformer_v2"), Application.UniLM, null, out _);
}
Console.WriteLine($"{train.Count:N0} training articles, {valid.Count} held out for scoring");

// [CLS] article [SEP] summary [SEP]; segment 1 marks the summary, the only part the loss predicts.
var examples = train.Select(e =>
{
    var source = tokenizer.Encode(e.Text, maxLength: MaxSource).Ids;
    var target = tokenizer.Encode(e.Summary, maxLength: MaxTarget).Ids.Skip(1).ToArray();
    return (Ids: source.Concat(target).ToArray(), SourceLength: source.Count);
}).ToList();
using var optimizer = new Adam(model.named_parameters().Select(p => (p.name, p.parameter)), new OptimizerOptions
{
    LearningRate = 5e-4, WeightDecay = 0.01, ClipGradientNorm = 1.0, Schedule = new PiecewiseLinearSchedule(new Dictionary<long, double> { [100] = 1.0, [2000] = 0.2 }),
});
var result = new Trainer<(int[] Ids, int SourceLength)>(model, optimizer, (batch, _) =>
{
    var (ids, mask) = LanguageModeling.Pad(batch.Select(b => b.Ids).ToList(), tokenizer.PaddingId);
    var segments = torch.zeros_like(ids);
    for (int i = 0; i < batch.Count; i++) segments[i, batch[i].SourceLength..batch[i].Ids.Length] = torch.tensor(1L);
    using var output = model.forward(ids, segments, mask);
    return new StepResult(LanguageModeling.UniLmLoss(output.Logits!, ids, segments, mask), mask.sum().ToInt64());
}, new TrainerOptions
{
    Epochs = 1000, TimeBudget = TimeSpan.FromMinutes(minutes), Batching = new BatchingOptions { BatchSize = 16, BucketBatches = 10 },
    OutputDirectory = Path.Combine("runs", "title-lcsts"), CheckpointEverySteps = 500, LogEverySteps = 50, Progress = ProgressDisplay.Lines,
}) { Length = e => e.Ids.Length }.Fit(examples);
Console.WriteLine($"{result.StopReason}: {result.Steps} steps");

model.eval();
var lm = new CausalLanguageModel(model);
var options = new DecodingOptions { MaxNewTokens = MaxTarget, EndId = tokenizer.EndId };
Titles.Score("UniLM", valid, tokenizer, text =>
{
    var prompt = tokenizer.Encode(text, maxLength: MaxSource).Ids.ToList();
    return AutoRegressiveDecoder.BeamSearch(lm, prompt, 3, options).Skip(prompt.Count);
});
return 0;

/// <summary>The encoder–decoder variant, and the scoring both variants share.</summary>
static class Titles
{
    public const int MaxSource = 128, MaxTarget = 32;

    /// <summary>Beam-3 titles of the held-out articles against their summaries and the lead-20 baseline, character ROUGE-L and BLEU-4.</summary>
    public static void Score(string name, List<(string Summary, string Text)> valid, BertWordPieceTokenizer tokenizer, Func<string, IEnumerable<int>> generate)
    {
        double rouge = 0, bleu = 0, leadRouge = 0, leadBleu = 0;
        int shown = 0;
        foreach (var (summary, text) in valid)
        {
            string title = tokenizer.Decode(generate(text).TakeWhile(t => t != tokenizer.EndId)).Replace(" ", "");
            string reference = string.Concat(tokenizer.Tokenize(summary).Skip(1).SkipLast(1)).Replace("##", "");
            string lead = string.Concat(tokenizer.Tokenize(text).Skip(1).Take(20)).Replace("##", "");
            rouge += Scores.RougeL(title, reference); bleu += Scores.Bleu4(title, reference);
            leadRouge += Scores.RougeL(lead, reference); leadBleu += Scores.Bleu4(lead, reference);
            if (shown++ < 4) Console.WriteLine($"  {reference}  |  {title}");
        }
        int n = valid.Count;
        Console.WriteLine($"held-out ({n} articles), character level: {name} beam 3 ROUGE-L {rouge / n:P1}, BLEU-4 {bleu / n:P1}; lead-20 baseline ROUGE-L {leadRouge / n:P1}, BLEU-4 {leadBleu / n:P1}");
    }

    /// <summary>A T5 trained from scratch on (article → summary) pairs.</summary>
    public static int RunT5(List<(string Summary, string Text)> train, List<(string Summary, string Text)> valid, string vocab, double minutes)
    {
        var tokenizer = BertWordPieceTokenizer.FromFile(vocab, new BertWordPieceOptions { LowerCase = true });
        var config = new TransformerConfig
        {
            ModelType = "t5", VocabSize = tokenizer.Vocabulary.Count, HiddenSize = 256, NumHiddenLayers = 4, NumDecoderLayers = 4, NumAttentionHeads = 4,
            DKv = 64, IntermediateSize = 640, FeedForwardProj = "gated-gelu", TieWordEmbeddings = false, LayerNormEps = 1e-6, HiddenDropoutProb = 0,
        };
        var model = TransformerModels.Create(config, "t5", Application.Seq2Seq);
        long parameters = model.parameters().Sum(p => p.numel());
        Console.WriteLine($"T5 (t5.1.1 layout) from scratch: 4+4 layers, d_model 256, {parameters / 1e6:F1} M parameters; {train.Count:N0} training articles, {valid.Count} held out");
        // Encoder: [CLS] article [SEP]. Decoder: [PAD] as the start token (T5's convention), then summary [SEP].
        int start = tokenizer.PaddingId, end = tokenizer.EndId;
        var examples = train.Select(e => (Source: tokenizer.Encode(e.Text, maxLength: MaxSource).Ids.ToArray(),
            Target: tokenizer.Encode(e.Summary, maxLength: MaxTarget).Ids.Skip(1).ToArray())).ToList();
        using var optimizer = new Adam(model.named_parameters().Select(p => (p.name, p.parameter)), new OptimizerOptions
        {
            LearningRate = 1e-3, WeightDecay = 0.01, ClipGradientNorm = 1.0, Schedule = new PiecewiseLinearSchedule(new Dictionary<long, double> { [100] = 1.0, [2000] = 0.2 }),
        });
        var result = new Trainer<(int[] Source, int[] Target)>(model, optimizer, (batch, _) =>
        {
            var (source, mask) = LanguageModeling.Pad(batch.Select(b => b.Source).ToList(), tokenizer.PaddingId);
            var (input, _) = LanguageModeling.Pad(batch.Select(b => b.Target.SkipLast(1).Prepend(start).ToArray()).ToList(), tokenizer.PaddingId);
            var (labels, labelMask) = LanguageModeling.Pad(batch.Select(b => b.Target).ToList(), tokenizer.PaddingId);
            using var encoded = model.Forward(new ModelInput(source) { AttentionMask = mask });
            using var decoded = model.Decode(new DecoderInput(input, encoded.LastHiddenState) { MemoryMask = mask });
            var logits = decoded.Logits!;                                                                  // (B, T, V)
            var loss = nn.functional.cross_entropy(logits.flatten(0, 1), labels.masked_fill(labelMask.logical_not(), -100).flatten(), ignore_index: -100);
            return new StepResult(loss, labelMask.sum().ToInt64());
        }, new TrainerOptions
        {
            Epochs = 1000, TimeBudget = TimeSpan.FromMinutes(minutes), Batching = new BatchingOptions { BatchSize = 16, BucketBatches = 10 },
            OutputDirectory = Path.Combine("runs", "title-lcsts-t5"), CheckpointEverySteps = 500, LogEverySteps = 50, Progress = ProgressDisplay.Lines,
        }) { Length = e => e.Source.Length + e.Target.Length }.Fit(examples);
        Console.WriteLine($"{result.StopReason}: {result.Steps} steps");

        model.eval();
        var options = new DecodingOptions { MaxNewTokens = MaxTarget, EndId = end };
        Score("T5", valid, tokenizer, text =>
        {
            using var lm = new Seq2SeqLanguageModel(model, tokenizer.Encode(text, maxLength: MaxSource).Ids);
            return AutoRegressiveDecoder.BeamSearch(lm, [start], 3, options).Skip(1).ToList();
        });
        return 0;
    }
}

/// <summary>Character-level scores as bert4keras's seq2seq examples compute them (rouge's ROUGE-L F, nltk BLEU with smoothing method 1).</summary>
static class Scores
{
    public static double RougeL(string hyp, string reference)
    {
        if (hyp.Length == 0 || reference.Length == 0) return 0;
        var dp = new int[hyp.Length + 1, reference.Length + 1];
        for (int i = 1; i <= hyp.Length; i++)
            for (int j = 1; j <= reference.Length; j++)
                dp[i, j] = hyp[i - 1] == reference[j - 1] ? dp[i - 1, j - 1] + 1 : Math.Max(dp[i - 1, j], dp[i, j - 1]);
        double lcs = dp[hyp.Length, reference.Length];
        if (lcs == 0) return 0;
        double p = lcs / hyp.Length, r = lcs / reference.Length;
        return 2 * p * r / (p + r);
    }

    public static double Bleu4(string hyp, string reference)
    {
        if (hyp.Length == 0) return 0;
        double logSum = 0;
        for (int n = 1; n <= 4; n++)
        {
            var refCounts = Grams(reference, n);
            var hypGrams = Grams(hyp, n);
            int total = Math.Max(0, hyp.Length - n + 1), match = 0;
            foreach (var (g, c) in hypGrams) match += Math.Min(c, refCounts.GetValueOrDefault(g));
            double precision = total == 0 ? 0 : match == 0 ? 0.1 / total : (double)match / total;   // smoothing method 1 (epsilon 0.1)
            logSum += Math.Log(Math.Max(precision, 1e-12)) / 4;
        }
        double bp = hyp.Length >= reference.Length ? 1 : Math.Exp(1 - (double)reference.Length / hyp.Length);
        return bp * Math.Exp(logSum);
    }

    static Dictionary<string, int> Grams(string s, int n)
    {
        var d = new Dictionary<string, int>();
        for (int i = 0; i + n <= s.Length; i++) { string g = s.Substring(i, n); d[g] = d.GetValueOrDefault(g) + 1; }
        return d;
    }
}
