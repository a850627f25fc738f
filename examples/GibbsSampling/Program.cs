// Gibbs sampling via an MLM (bert4keras examples/basic_gibbs_sampling_via_mlm.py): start from all [MASK] (or a
// sentence, or a fixed prefix followed by masks), repeatedly mask one position and redraw it from the MLM's distribution
// there. Runs on the project's own MLM-pretrained RoFormerV2 (`b4s pretrain recipes/pretrain-roformer-v2.json`).
//   dotnet run -c Release --project examples/GibbsSampling -- [MODEL_DIR] [--steps N] [--length L] [--prefix TEXT]
//       [--text SENTENCE] [--top-k K] [--temperature T] [--seed S] [--chains C] [--threads T]
using System.Globalization;
using Bert4Sharp.Generation;
using Bert4Sharp.Models;
using TorchSharp;

string? Opt(string name) { int i = Array.IndexOf(args, name); return i >= 0 && i + 1 < args.Length ? args[i + 1] : null; }
int Int(string name, int fallback) => Opt(name) is { } v ? int.Parse(v, CultureInfo.InvariantCulture) : fallback;
string model = args.Length > 0 && !args[0].StartsWith("--", StringComparison.Ordinal) ? args[0] : "runs/pretrain-clue/model";
if (!File.Exists(Path.Combine(model, "config.json")))
{
    Console.Error.WriteLine($"{model}: no config.json; pass an MLM-pretrained model directory (e.g. the output of `b4s pretrain recipes/pretrain-roformer-v2.json`)");
    return 1;
}
int steps = Int("--steps", 2000), length = Int("--length", 16), chains = Int("--chains", 3), seed = Int("--seed", 1);
int? topK = Opt("--top-k") is { } k ? int.Parse(k, CultureInfo.InvariantCulture) : null;
double temperature = Opt("--temperature") is { } t ? double.Parse(t, CultureInfo.InvariantCulture) : 1.0;
torch.set_num_threads(Int("--threads", 1));

var loaded = AutoModel.Load(model, new AutoModelOptions { Application = Application.MaskedLM });
loaded.Model.eval();
var tokenizer = loaded.WordPiece ?? throw new InvalidOperationException($"{model}: no vocab.txt");
var mlm = new TransformerMaskedLanguageModel(loaded.Model);
// Never draw the special tokens (bert4keras draws from the whole vocabulary; an MLM trained on text rarely gives them mass).
int[] forbidden = [tokenizer.StartId, tokenizer.EndId, tokenizer.PaddingId, tokenizer.MaskId, tokenizer.UnknownId];
Console.WriteLine($"{model}: {loaded.Model.Family.Name}, vocabulary {tokenizer.Vocabulary.Count}; {steps} steps per chain, burn-in {steps / 10}, " +
    $"temperature {temperature}, top-k {(topK?.ToString(CultureInfo.InvariantCulture) ?? "off")}");

for (int chain = 0; chain < chains; chain++)
{
    var start = Opt("--text") is { } text ? GibbsStart.FromText(tokenizer, text) : GibbsStart.Masked(tokenizer, length, Opt("--prefix"));
    var options = new GibbsSamplingOptions
    {
        Steps = steps, BurnIn = steps / 10, RecordEvery = Math.Max(1, steps / 10), Temperature = temperature, TopK = topK,
        ForbiddenIds = forbidden, Seed = seed + chain,
    };
    var sw = System.Diagnostics.Stopwatch.StartNew();
    var result = GibbsSampler.Sample(mlm, start, tokenizer.MaskId, options);
    Console.WriteLine($"chain {chain} (seed {seed + chain}, {sw.Elapsed.TotalSeconds:F1}s, {steps / sw.Elapsed.TotalSeconds:F0} steps/s):");
    foreach (var state in result.States.TakeLast(4)) Console.WriteLine("  " + tokenizer.Decode(state));
}
return 0;
