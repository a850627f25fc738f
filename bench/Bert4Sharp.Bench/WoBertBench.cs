namespace Bert4Sharp.Bench;

using Bert4Sharp.Data;
using Bert4Sharp.Models;
using Bert4Sharp.Tasks;
using Bert4Sharp.Tokenization;
using TorchSharp;
using static TorchSharp.torch;

/// <summary>
/// WoBERT's claim, "faster without losing accuracy" (kexue.fm/archives/7758), measured on one dataset: the character
/// model and the word model (docs/classics.md, "WoBERT"), each with the tokenizer its directory records.
/// <list type="number">
/// <item>sequence length: tokens per example with [CLS] and [SEP], untruncated, over every text of the train and dev
/// files, and the share of examples longer than <c>--max-length</c>;</item>
/// <item>speed: a 15-label <see cref="SequenceClassifier"/> on each encoder, fine-tuning steps (forward, cross-entropy,
/// backward, Adam) and prediction batches (forward) on the same examples, each side tokenised by its own tokenizer,
/// truncated to <c>--max-length</c> and padded to its batch's longest, the sides interleaved (char, word, char, word …)
/// in one process so the machine's drift hits both alike; examples/s and real (unpadded) tokens/s per side.</item>
/// </list>
///   dotnet run -c Release --project bench/Bert4Sharp.Bench -- wobert --char DIR --word DIR [--train FILE] [--dev FILE] [--rounds N] [--max-length T]
/// </summary>
static class WoBertBench
{
    public static int Run(string[] args)
    {
        string charDir = BenchArgs.Value(args, "--char") ?? throw new ArgumentException("wobert bench: --char DIR (the character model) is required");
        string wordDir = BenchArgs.Value(args, "--word") ?? throw new ArgumentException("wobert bench: --word DIR (the word model) is required");
        string train = BenchArgs.Value(args, "--train") ?? Path.Combine(ClueBaselines.DefaultDataDirectory(), "tnews", "train.json");
        string dev = BenchArgs.Value(args, "--dev") ?? Path.Combine(ClueBaselines.DefaultDataDirectory(), "tnews", "dev.json");
        string field = BenchArgs.Value(args, "--field") ?? "sentence";
        int rounds = BenchArgs.Get(args, "--rounds", 20), batch = BenchArgs.Get(args, "--batch", 32), maxLength = BenchArgs.Get(args, "--max-length", 64);
        foreach (var f in new[] { train, dev })
            if (!File.Exists(f)) throw new FileNotFoundException($"wobert bench: {f} not found (set B4S_SHARED or pass --train / --dev)");
        Console.WriteLine($"CPU {ClueBaselines.CpuModel()}, {Environment.ProcessorCount} processors; torch threads {torch.get_num_threads()}");

        var sides = new[] { ("char", charDir), ("word", wordDir) }.Select(s =>
        {
            torch.manual_seed(1);
            var loaded = AutoModel.Load(s.Item2, new AutoModelOptions { Application = Application.Encoder, Build = new BuildOptions { Device = torch.CPU } });
            var tokenizer = loaded.WordPiece ?? throw new InvalidDataException($"{s.Item2}: no vocab.txt");
            var classifier = new SequenceClassifier(loaded.Model, 15);
            Console.WriteLine($"{s.Item1}: {s.Item2}, vocabulary {tokenizer.Vocabulary.Count:N0}, {classifier.parameters().Sum(p => p.numel()) / 1e6:F2} M parameters " +
                $"({loaded.Model.TokenEmbeddings.numel() / 1e6:F2} M in the token embeddings)");
            return (Tokenizer: tokenizer, Classifier: classifier);
        }).ToArray();

        // 1. Sequence length over whole files (the training texts are kept for step 2).
        List<string> pool = [];
        foreach (var file in new[] { train, dev })
        {
            var texts = TextRecords.Read(file, TextFormat.JsonLines, [field]).ToList();
            if (file == train) pool = texts;
            var lengths = sides.Select(s => texts.Select(t => s.Tokenizer.Encode(t).Count).ToArray()).ToArray();
            double c = lengths[0].Average(), w = lengths[1].Average();
            Console.WriteLine($"{Path.GetFileName(Path.GetDirectoryName(file))}/{Path.GetFileName(file)}: {texts.Count:N0} texts; tokens per example (with [CLS] [SEP]): " +
                $"char {c:F2}, word {w:F2} (word/char {w / c:F3}, {1 - w / c:P1} fewer); longer than {maxLength}: char {lengths[0].Count(n => n > maxLength)}, word {lengths[1].Count(n => n > maxLength)}");
        }

        // 2. Interleaved fine-tuning and prediction on the same examples.
        var rng = new Random(7);
        var batches = Enumerable.Range(0, rounds + 2).Select(_ => Enumerable.Range(0, batch).Select(_ => pool[rng.Next(pool.Count)]).ToList()).ToList();
        var labels = batches.Select(_ => Enumerable.Range(0, batch).Select(_ => (long)rng.Next(15)).ToArray()).ToList();
        var optimizers = sides.Select(s => new Training.Adam(s.Classifier.named_parameters().Select(p => (p.name, p.parameter)), new Training.OptimizerOptions { LearningRate = 1e-4, WeightDecay = 0.01 })).ToArray();
        var tokens = new long[2];
        var optimizerSeconds = new double[2];
        int index = 0;
        Func<double> Side(int k, bool training) => () =>
        {
            var s = sides[k];
            var enc = batches[index].Select(t => s.Tokenizer.Encode(t, maxLength: maxLength).Ids).ToList();
            var watch = System.Diagnostics.Stopwatch.StartNew();
            using var scope = torch.NewDisposeScope();
            var (ids, mask) = SequencePadding.Pad(enc, s.Tokenizer.PaddingId, torch.CPU);
            if (training)
            {
                s.Classifier.train();
                var loss = nn.functional.cross_entropy(s.Classifier.forward(ids, null, mask), torch.tensor(labels[index]));
                loss.backward();
                double before = watch.Elapsed.TotalSeconds;
                optimizers[k].Step();
                optimizers[k].ZeroGrad();
                _ = loss.ToDouble();
                if (index >= 2) optimizerSeconds[k] += watch.Elapsed.TotalSeconds - before;
            }
            else
            {
                s.Classifier.eval();
                using var noGrad = torch.no_grad();
                _ = s.Classifier.forward(ids, null, mask).argmax(-1).data<long>().ToArray();
            }
            double seconds = watch.Elapsed.TotalSeconds;
            if (index >= 2) tokens[k] += enc.Sum(e => (long)e.Count);
            if (k == 1) index = (index + 1) % batches.Count;
            return seconds;
        };
        foreach (bool training in new[] { true, false })
        {
            index = 0;
            Array.Clear(tokens);
            Array.Clear(optimizerSeconds);
            var (a, b) = Measure.Interleave(Side(0, training), Side(1, training), 2, rounds);
            double ta = a.Sum(), tb = b.Sum();
            string what = training ? "fine-tuning steps" : "prediction batches";
            Console.WriteLine($"{what}, batch {batch}, max length {maxLength}, {rounds} interleaved rounds after 2 warm-up: " +
                $"char {rounds * batch / ta:F1} examples/s, {tokens[0] / ta:F0} tokens/s; word {rounds * batch / tb:F1} examples/s, {tokens[1] / tb:F0} tokens/s; " +
                $"word/char examples/s {ta / tb:F3} (median per-round ratio {Measure.Median(a.Zip(b, (x, y) => x / y)):F3})" +
                (training ? $"; optimizer step (Adam over every parameter) {optimizerSeconds[0] / ta:P0} of the char side's time, {optimizerSeconds[1] / tb:P0} of the word side's" : ""));
        }
        foreach (var o in optimizers) o.Dispose();
        return 0;
    }
}
