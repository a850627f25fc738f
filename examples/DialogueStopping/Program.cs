// A DialoGPT-style character GPT-2 on the LCCC samples (CDial-GPT, MIT), trained with Bert4Sharp's Trainer, then
// the "decoders that cannot stop" measurement (kexue.fm/archives/9128): how often does truncated sampling hit the
// length limit without emitting the end token, with and without the consistent variant that keeps the end token
// among the top-k / top-p candidates?
//   dotnet run -c Release --project examples/DialogueStopping -- ../shared/data/lccc [minutes]
using System.Text.Json;
using Bert4Sharp.Generation;
using Bert4Sharp.Models;
using Bert4Sharp.Tokenization;
using Bert4Sharp.Training;
using TorchSharp;
using static TorchSharp.torch;

string dir = args.Length > 0 ? args[0] : Path.Combine("..", "shared", "data", "lccc");
double minutes = args.Length > 1 ? double.Parse(args[1], System.Globalization.CultureInfo.InvariantCulture) : 8;
if (!Directory.Exists(dir)) { Console.Error.WriteLine($"{dir}: the LCCC sample directory (toy_train.txt, toy_valid.txt, toy_data.json) is missing"); return 1; }
torch.manual_seed(42);

// Dialogues: the 10,000 single-turn pairs and the 1,000 multi-turn dialogues for training; 1,999 pairs held out.
static List<List<string>> Pairs(string path) => File.ReadLines(path).Select(l => l.Split('\t').Select(u => u.Replace(" ", "")).ToList()).ToList();
var train = Pairs(Path.Combine(dir, "toy_train.txt"));
using (var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, "toy_data.json"))))
    train.AddRange(doc.RootElement.GetProperty("train").EnumerateArray().Select(d => d.EnumerateArray().Select(u => u.GetString()!.Replace(" ", "")).ToList()));
var valid = Pairs(Path.Combine(dir, "toy_valid.txt"));

// Character vocabulary from the training text; [SEP] ends every utterance, so it is the end token of a reply.
var chars = train.SelectMany(d => d).SelectMany(u => u).GroupBy(c => c).Where(g => g.Count() >= 2).OrderByDescending(g => g.Count()).Select(g => g.Key.ToString());
var vocab = new Vocabulary(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", .. chars]);
var tokenizer = new BertWordPieceTokenizer(vocab, new BertWordPieceOptions());
const int MaxLength = 96;
int[] Encode(IReadOnlyList<string> dialogue)
{
    var ids = new List<int> { tokenizer.StartId };
    foreach (var u in dialogue) { ids.AddRange(tokenizer.Encode(u).Ids.Skip(1).SkipLast(1)); ids.Add(tokenizer.EndId); }
    return [.. ids.Take(MaxLength)];
}
var trainIds = train.Select(Encode).Where(s => s.Length > 3).ToList();
var validIds = valid.Select(Encode).ToList();
Console.WriteLine($"{trainIds.Count:N0} training dialogues, {validIds.Count:N0} held-out pairs, vocabulary {vocab.Count:N0} characters");

var config = new TransformerConfig
{
    ModelType = "gpt2", VocabSize = vocab.Count, HiddenSize = 256, NumHiddenLayers = 4, NumAttentionHeads = 4, MaxPositionEmbeddings = MaxLength,
    LayerNormEps = 1e-5, HiddenAct = "gelu_new", EosTokenId = tokenizer.EndId, BosTokenId = tokenizer.StartId,
    HiddenDropoutProb = 0, AttentionProbsDropoutProb = 0,   // no dropout, as the documented runs were trained
};
var model = TransformerModels.Create(config, "gpt2", Application.LanguageModel);
double Perplexity()
{
    model.eval();
    return LanguageModeling.Perplexity(model.Logits, validIds);
}
Console.WriteLine($"held-out perplexity before training: {Perplexity():F1}");

using var optimizer = new Adam(model.named_parameters().Select(p => (p.name, p.parameter)), new OptimizerOptions
{
    LearningRate = 1e-3, WeightDecay = 0.01, ClipGradientNorm = 1.0, Schedule = new PiecewiseLinearSchedule(new Dictionary<long, double> { [200] = 1.0, [3000] = 0.1 }),
});
var trainer = new Trainer<int[]>(model, optimizer, LanguageModeling.CausalStep(model.Logits), new TrainerOptions
{
    Epochs = 100, TimeBudget = TimeSpan.FromMinutes(minutes), Batching = new BatchingOptions { BatchSize = 32, BucketBatches = 20 },
    OutputDirectory = Path.Combine("runs", "dialogue-lccc"), CheckpointEverySteps = 500, LogEverySteps = 100, Progress = ProgressDisplay.Lines,
}) { Length = s => s.Length };
var result = trainer.Fit(trainIds);
Console.WriteLine($"{result.StopReason}: {result.Steps} steps, {result.Tokens:N0} tokens; held-out perplexity after training: {Perplexity():F1}");

// Replies to held-out first utterances: sampled, limit 32 characters. A reply "cannot stop" when it never emits [SEP].
var lm = new CausalLanguageModel(model);
var options = new DecodingOptions { MaxNewTokens = 32, EndId = tokenizer.EndId };
var prompts = validIds.Take(50).Select(s => s.Take(Array.IndexOf(s, tokenizer.EndId) + 1).ToList()).Where(p => p.Count > 2).ToList();
Console.WriteLine($"stopping: {prompts.Count} held-out contexts x 8 samples per setting, limit {options.MaxNewTokens} characters");
foreach (var (label, sampling) in new (string, SamplingOptions)[]
{
    ("top-k 5", new SamplingOptions { TopK = 5, Seed = 1 }),
    ("top-k 5, end token kept", new SamplingOptions { TopK = 5, KeepEndToken = true, Seed = 1 }),
    ("top-p 0.6", new SamplingOptions { TopP = 0.6, Seed = 1 }),
    ("top-p 0.6, end token kept", new SamplingOptions { TopP = 0.6, KeepEndToken = true, Seed = 1 }),
    ("top-p 0.95", new SamplingOptions { TopP = 0.95, Seed = 1 }),
})
{
    int stuck = 0, total = 0;
    double length = 0;
    foreach (var prompt in prompts)
        foreach (var sample in Sampler.Sample(lm, prompt, options, sampling, samples: 8))
        {
            var reply = sample.Skip(prompt.Count).ToList();
            total++;
            if (!reply.Contains(tokenizer.EndId)) stuck++;
            length += reply.TakeWhile(t => t != tokenizer.EndId).Count();
        }
    Console.WriteLine($"  {label,-26} {stuck,4}/{total} = {100.0 * stuck / total,5:F1}% never stop; mean reply {length / total:F1} characters");
}
foreach (var prompt in prompts.Take(5))
{
    var reply = AutoRegressiveDecoder.BeamSearch(lm, prompt, 4, options).Skip(prompt.Count).TakeWhile(t => t != tokenizer.EndId);
    Console.WriteLine($"  {tokenizer.Decode(prompt)}  ->  {tokenizer.Decode(reply)}");
}
return 0;
