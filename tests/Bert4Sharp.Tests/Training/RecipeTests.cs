namespace Bert4Sharp.Tests.Training;

using System.Diagnostics;
using Bert4Sharp.Training;
using TorchSharp;

/// <summary>Recipes (bad keys and values), dataset lines that do not parse, kill -9 during checkpoints, and a TNEWS smoke run.</summary>
public sealed class RecipeTests : IDisposable
{
    readonly string dir = Directory.CreateTempSubdirectory("b4s-recipe").FullName;

    public void Dispose()
    {
        try { Directory.Delete(dir, true); } catch (IOException) { }
    }

    string Write(string name, string text)
    {
        string p = Path.Combine(dir, name);
        File.WriteAllText(p, text);
        return p;
    }

    const string TinyConfig = "{ \"hidden_size\": 32, \"num_hidden_layers\": 2, \"num_attention_heads\": 2, \"intermediate_size\": 64, \"hidden_act\": \"relu\" }";

    string PretrainRecipe(string extra = "") => Write("pretrain.json", PretrainRecipeText(extra));

    static string PretrainRecipeText(string extra = "") => $$"""
        {
          "family": "roformer_v2", "config": {{TinyConfig}}, "vocab": "vocab.txt",
          "corpus": [ { "file": "corpus.txt" } ], "held_out": 20, "max_length": 32, "whole_word_masking": false,
          "batch_size": 8, "optimizer": { "learning_rate": 1e-3, "warmup_steps": 5 },
          "eval_every": 1000, "checkpoint_every": 1, "log_every": 5, "output": "out"{{extra}}
        }
        """;

    void WriteCorpus()
    {
        TestPaths.WriteSyntheticVocabulary(Path.Combine(dir, "vocab.txt"));
        var rng = new Random(5);
        File.WriteAllLines(Path.Combine(dir, "corpus.txt"), Enumerable.Range(0, 600).Select(_ =>
            new string(Enumerable.Range(0, rng.Next(5, 25)).Select(_ => (char)(0x4E00 + rng.Next(0, 300))).ToArray())));
    }

    [Fact]
    public void Unknown_keys_wrong_types_and_impossible_values_are_named()
    {
        WriteCorpus();
        var e1 = Assert.Throws<InvalidDataException>(() => Recipe.Load<PretrainRecipe>(PretrainRecipe(", \"batchsize\": 3")));
        Assert.Contains("unknown key", e1.Message);
        Assert.Contains("batchsize", e1.Message);
        var e2 = Assert.Throws<InvalidDataException>(() => Recipe.Load<PretrainRecipe>(PretrainRecipe(", \"epochs\": \"three\"")));
        Assert.Contains("epochs", e2.Message);
        var e3 = Assert.Throws<InvalidDataException>(() => Recipe.Load<PretrainRecipe>(PretrainRecipe(", \"minutes\": -1")));
        Assert.Contains("'minutes' must be > 0, got -1", e3.Message);
        var e4 = Assert.Throws<InvalidDataException>(() => Recipe.Load<PretrainRecipe>(Write("p2.json", "{ \"optimizer\": { \"name\": \"adam\", \"lr\": 1 } }")));
        Assert.Contains("lr", e4.Message);
        var r = Recipe.Load<PretrainRecipe>(PretrainRecipe(", \"optimizer\": { \"name\": \"sgdx\" }".Replace("\"optimizer\": { \"learning_rate\": 1e-3, \"warmup_steps\": 5 },", "")));
        Assert.Contains("sgdx", Assert.Throws<ArgumentException>(() => r.Optimizer.Create([])).Message);
    }

    [Fact]
    public void A_misspelt_config_key_names_the_key_the_recipe_and_the_closest_known_key()
    {
        WriteCorpus();
        string recipe = Write("typo.json", PretrainRecipeText().Replace("\"num_hidden_layers\"", "\"num_hiden_layers\""));
        var e = Assert.Throws<InvalidDataException>(() => Recipe.Load<PretrainRecipe>(recipe));
        Assert.StartsWith(recipe + ": unknown key 'config.num_hiden_layers'", e.Message);
        Assert.Contains("closest key a model config takes is 'num_hidden_layers'", e.Message);
        string train = Write("train-typo.json", $$"""
            { "config": { "hidden_size": 32, "num_attention_heads": 2, "intermediate_sise": 64 }, "vocab": "vocab.txt",
              "train": { "file": "t.json" }, "dev": { "file": "d.json" } }
            """);
        var e2 = Assert.Throws<InvalidDataException>(() => Recipe.Load<TrainRecipe>(train));
        Assert.Contains("train-typo.json: unknown key 'config.intermediate_sise'", e2.Message);
        Assert.Contains("'intermediate_size'", e2.Message);
        // bert4keras spellings (aliases) are config keys too.
        Assert.NotNull(Recipe.Load<PretrainRecipe>(Write("alias.json", PretrainRecipeText().Replace("\"num_hidden_layers\"", "\"num_layers\""))));
        Assert.Contains("hidden_size", Bert4Sharp.Models.TransformerConfig.KnownKeys);
        Assert.Contains("dropout_rate", Bert4Sharp.Models.TransformerConfig.KnownKeys);
    }

    [Fact]
    public void A_dataset_line_that_does_not_parse_stops_with_file_and_line_or_is_skipped()
    {
        string data = Write("train.json", "{\"sentence\": \"好\", \"label\": \"1\"}\n{\"sentence\": \"坏\", \"label\": \"0\"}\n{\"sentence\": \"断\n{\"label\": \"1\"}\n{\"sentence\": \"好好\", \"label\": \"1\"}\n");
        var spec = new LabelledDataRecipe { File = data };
        var labels = new List<string>();
        var e = Assert.Throws<InvalidDataException>(() => FineTuning.ReadLabelled(data, spec, labels, true, skipBad: false, _ => { }));
        Assert.Contains("train.json line 3: not valid JSON", e.Message);
        Assert.Contains("on_bad_line", e.Message);
        var log = new List<string>();
        var items = FineTuning.ReadLabelled(data, spec, labels = [], true, skipBad: true, log.Add);
        Assert.Equal(3, items.Count);
        Assert.Contains(log, l => l.Contains("line 4: no text under 'sentence'"));
        Assert.Contains(log, l => l.Contains("skipped 2 bad line(s)"));
        var dev = Write("dev.json", "{\"sentence\": \"新\", \"label\": \"7\"}\n");
        Assert.Contains("label '7' does not occur in the training data", Assert.Throws<InvalidDataException>(() => FineTuning.ReadLabelled(dev, spec, labels, false, false, _ => { })).Message);
    }

    static Process Start(params string[] args)
    {
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true };
        psi.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "b4s.dll"));
        foreach (var a in args) psi.ArgumentList.Add(a);
        psi.Environment["OMP_NUM_THREADS"] = "1";
        return Process.Start(psi)!;
    }

    [Fact]
    public void Kill_9_during_checkpoints_loses_nothing_and_resume_continues()
    {
        WriteCorpus();
        string recipe = PretrainRecipe(", \"max_steps\": 100000");
        string checkpoint = Path.Combine(dir, "out", "checkpoint.safetensors");
        var rng = new Random(1);
        long lastStep = -1;
        for (int round = 0; round < 3; round++)
        {
            using var p = Start("pretrain", recipe, "--resume");
            var sw = Stopwatch.StartNew();
            // Wait for a checkpoint newer than the last one, then kill at a random moment (checkpoints are written every step).
            while (sw.Elapsed < TimeSpan.FromSeconds(90) && (!File.Exists(checkpoint) || StepOf(checkpoint) <= lastStep + 2)) Thread.Sleep(50);
            Thread.Sleep(rng.Next(0, 400));
            p.Kill();                                                               // SIGKILL
            p.WaitForExit();
            Assert.True(File.Exists(checkpoint), "no checkpoint after " + sw.Elapsed);
            long step = StepOf(checkpoint);                                         // opens and parses: never half-written
            Assert.True(step > lastStep, $"round {round}: checkpoint step {step} after {lastStep}");
            lastStep = step;
        }
        // A last run resumes from the stored step and finishes cleanly.
        using var last = Start("pretrain", recipe, "--resume", "--max-steps", (lastStep + 3).ToString());
        string stdout = last.StandardOutput.ReadToEnd(), stderr = last.StandardError.ReadToEnd();
        Assert.True(last.WaitForExit(120_000));
        Assert.True(last.ExitCode == 0, stderr + stdout);
        Assert.Contains($"at step {lastStep}", stdout);
        Assert.Equal(lastStep + 3, StepOf(checkpoint));
        Assert.Empty(Directory.GetFiles(Path.Combine(dir, "out"), "*.tmp"));                  // the resumed run removed partial files
    }

    static long StepOf(string checkpoint)
    {
        try
        {
            using var ck = Bert4Sharp.Checkpoints.Checkpoint.Open(checkpoint);
            return long.Parse(ck.Metadata["step"]);
        }
        catch (IOException) { return -1; }                                        // being renamed into place
    }

    [Theory]
    [InlineData(Bert4Sharp.Tasks.Pooling.First)]
    [InlineData(Bert4Sharp.Tasks.Pooling.Mean)]
    public void Classifier_logits_do_not_depend_on_padding(Bert4Sharp.Tasks.Pooling pooling)
    {
        var encoder = TrainerTests.TinyRoFormerV2(3, dropout: 0);
        var classifier = new Bert4Sharp.Tasks.SequenceClassifier(
            Bert4Sharp.Models.TransformerModels.Build(encoder.Config, null, Bert4Sharp.Models.ModelFamily.Get("roformer_v2"), Bert4Sharp.Models.Application.Encoder, new Bert4Sharp.Models.BuildOptions { Device = TorchSharp.torch.CPU }, out _), 5, pooling: pooling);
        classifier.eval();
        using var ids = TorchSharp.torch.tensor(new long[] { 101, 300, 301, 302, 102 }, [1, 5]);
        using var padded = TorchSharp.torch.tensor(new long[] { 101, 300, 301, 302, 102, 0, 0, 0 }, [1, 8]);
        using var mask = TorchSharp.torch.tensor(new long[] { 1, 1, 1, 1, 1, 0, 0, 0 }, [1, 8]);
        using var a = classifier.forward(ids, null, null);
        using var b = classifier.forward(padded, null, mask);
        Close.Assert(b, a, $"{pooling}: logits with padding vs without");
        Assert.Equal([1L, 5L], a.shape);
    }

    [Fact]
    public void Tnews_fine_tuning_runs_end_to_end_on_real_data()
    {
        string tnews = TestPaths.SharedOrSkip("data/tnews/train.json");
        string vocab = TestPaths.SharedOrSkip("models/roformer_v2_char_small/vocab.txt");
        string recipe = Write("tnews.json", $$"""
            { "task": "classification", "family": "roformer_v2", "config": {{TinyConfig}}, "vocab": "{{vocab}}",
              "train": { "file": "{{tnews}}", "limit": 256 }, "dev": { "file": "{{Path.Combine(Path.GetDirectoryName(tnews)!, "dev.json")}}", "limit": 128 },
              "max_length": 32, "batch_size": 32, "epochs": 2, "optimizer": { "learning_rate": 1e-3 }, "fgm_epsilon": 0.5, "output": "tnews-out" }
            """);
        var log = new List<string>();
        var result = FineTuning.Run(Recipe.Load<TrainRecipe>(recipe), log: log.Add, progress: ProgressDisplay.None, cancellation: TestContext.Current.CancellationToken);
        Assert.Equal(16, result.Training.Steps);
        Assert.InRange(result.Metrics["accuracy"], 0.0, 1.0);
        Assert.True(File.Exists(Path.Combine(dir, "tnews-out", "best.safetensors")));
        Assert.Contains(log, l => l.Contains("15 labels") || l.Contains("labels"));
        Assert.Contains(log, l => l.Contains("best dev accuracy") && l.Contains("of 2, chosen on dev"));
    }
}
