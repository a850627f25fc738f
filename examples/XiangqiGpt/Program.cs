// The blog's Chinese-chess GPT: a GPT-2 over ICCS moves (one token per move) trained with Bert4Sharp's Trainer on
// the master games in ../shared/data/xiangqi (wukong-xiangqi, MIT), then games generated from the opening and
// checked move by move with a rules engine (Xiangqi.cs).
//   dotnet run -c Release --project examples/XiangqiGpt -- ../shared/data/xiangqi [minutes]
using System.Text.RegularExpressions;
using Bert4Sharp.Generation;
using Bert4Sharp.Models;
using Bert4Sharp.Training;
using TorchSharp;
using static TorchSharp.torch;

string dir = args.Length > 0 ? args[0] : Path.Combine("..", "shared", "data", "xiangqi");
double minutes = args.Length > 1 ? double.Parse(args[1], System.Globalization.CultureInfo.InvariantCulture) : 8;
if (!Directory.Exists(dir)) { Console.Error.WriteLine($"{dir}: the xiangqi games directory (*.pgn) is missing"); return 1; }
torch.manual_seed(42);

// Games: the move lines of the PGN files, move numbers dropped.
var games = new List<string[]>();
foreach (var file in Directory.GetFiles(dir, "*.pgn").Order())
    foreach (var line in File.ReadLines(file))
        if (line.Length > 0 && char.IsAsciiDigit(line[0]))
            games.Add(Regex.Replace(line, @"\d+\.", " ").Split(' ', StringSplitOptions.RemoveEmptyEntries));
// The rules engine must accept every move of every master game.
int realMoves = 0, realLegal = 0, realGames = 0;
foreach (var g in games)
{
    var board = new Xiangqi();
    int ok = g.TakeWhile(board.Play).Count();
    realMoves += g.Length; realLegal += ok; realGames += ok == g.Length ? 1 : 0;
}
Console.WriteLine($"{games.Count:N0} master games, {realMoves:N0} moves; the rules engine accepts {realLegal:N0} of them ({(double)realLegal / realMoves:P2}), {realGames:N0} games entirely");

var rng = new Random(42);
games = games.OrderBy(_ => rng.Next()).ToList();
// Held-out games are never trained on: a game whose move sequence repeats an earlier one (the same game in both
// players' files, or a short game played twice) is dropped before the split.
var split = Bert4Sharp.Data.HeldOutSplit.Split(games, 100, g => string.Join(' ', g));
var heldOut = split.HeldOut.ToList();
var train = split.Train.ToList();
Console.WriteLine($"deduplication: {split.Duplicates:N0} repeated games dropped (identical move sequences); a plain split would have shared {split.Overlap} of the 100 held-out games with training");
var moves = train.SelectMany(g => g).Distinct().Order(StringComparer.Ordinal).ToList();
List<string> vocab = ["[PAD]", "[UNK]", "[START]", "[END]", .. moves];
var id = vocab.Select((m, i) => (m, i)).ToDictionary(p => p.m, p => p.i);
const int Start = 2, End = 3, MaxMoves = 160;
int[] Encode(string[] g) => [Start, .. g.Take(MaxMoves).Select(m => id.GetValueOrDefault(m, 1)), .. g.Length <= MaxMoves ? new[] { End } : []];
var trainIds = train.Select(Encode).ToList();
var heldIds = heldOut.Select(Encode).ToList();
Console.WriteLine($"{train.Count:N0} training games, {heldOut.Count} held out; vocabulary {vocab.Count:N0} distinct moves");

var config = new TransformerConfig
{
    ModelType = "gpt2", VocabSize = vocab.Count, HiddenSize = 256, NumHiddenLayers = 4, NumAttentionHeads = 4, MaxPositionEmbeddings = MaxMoves + 2,
    LayerNormEps = 1e-5, HiddenAct = "gelu_new", EosTokenId = End, BosTokenId = Start,
    HiddenDropoutProb = 0, AttentionProbsDropoutProb = 0,   // no dropout, as the documented runs were trained
};
var model = TransformerModels.Create(config, "gpt2", Application.LanguageModel);
double Perplexity()
{
    model.eval();
    return LanguageModeling.Perplexity(model.Logits, heldIds);
}
Console.WriteLine($"held-out perplexity per move before training: {Perplexity():F1}");
using var optimizer = new Adam(model.named_parameters().Select(p => (p.name, p.parameter)), new OptimizerOptions
{
    LearningRate = 1e-3, WeightDecay = 0.01, ClipGradientNorm = 1.0, Schedule = new PiecewiseLinearSchedule(new Dictionary<long, double> { [100] = 1.0, [2000] = 0.1 }),
});
var result = new Trainer<int[]>(model, optimizer, LanguageModeling.CausalStep(model.Logits), new TrainerOptions
{
    Epochs = 1000, TimeBudget = TimeSpan.FromMinutes(minutes), Batching = new BatchingOptions { BatchSize = 16, BucketBatches = 10 },
    OutputDirectory = Path.Combine("runs", "xiangqi-gpt"), CheckpointEverySteps = 500, LogEverySteps = 100, Progress = ProgressDisplay.Lines,
}) { Length = s => s.Length }.Fit(trainIds);
Console.WriteLine($"{result.StopReason}: {result.Steps} steps, {result.Tokens:N0} moves seen; held-out perplexity per move after training: {Perplexity():F1}");

// Generated games from the opening: every move checked by the rules engine until the first illegal one.
var lm = new CausalLanguageModel(model);
var options = new DecodingOptions { MaxNewTokens = 60, EndId = End };
foreach (var (label, sampling, count) in new (string, SamplingOptions, int)[]
{
    ("top-p 0.9", new SamplingOptions { TopP = 0.9, Seed = 7 }, 64),
    ("greedy (one game)", new SamplingOptions { TopK = 1, Seed = 7 }, 1),
})
{
    int generated = 0, legal = 0, clean = 0;
    var samples = Sampler.Sample(lm, [Start], options, sampling, samples: count);
    foreach (var s in samples)
    {
        var board = new Xiangqi();
        var gameMoves = s.Skip(1).TakeWhile(t => t != End).Select(t => vocab[t]).ToList();
        int ok = gameMoves.TakeWhile(board.Play).Count();
        generated += Math.Min(gameMoves.Count, ok + 1);      // moves judged: the legal prefix and the first illegal move
        legal += ok;
        clean += ok == gameMoves.Count ? 1 : 0;
    }
    Console.WriteLine($"  {label,-22} {samples.Count} games: {legal}/{generated} = {(double)legal / Math.Max(1, generated):P1} of judged moves legal; {clean} games legal to the end; mean legal length {legal / (double)samples.Count:F1} moves");
}
var example = Sampler.Sample(lm, [Start], options with { MaxNewTokens = 24 }, new SamplingOptions { TopP = 0.9, Seed = 3 })[0];
Console.WriteLine("  a generated opening: " + string.Join(' ', example.Skip(1).TakeWhile(t => t != End).Select(t => vocab[t])));
return 0;
