namespace Bert4Sharp.Cli;

using System.CommandLine;
using Bert4Sharp.Tasks;
using Bert4Sharp.Training;

/// <summary><c>b4s clue train|predict &lt;task&gt;</c>: the CLUE runner (CLUENER today; docs/tasks.md).</summary>
internal static class ClueCommand
{
    static readonly string[] Supported = ["cluener"];

    public static Command Create()
    {
        var cmd = new Command("clue", "Fine-tune and predict CLUE tasks from ../shared/data (supported: " + string.Join(", ", Supported) + ")");
        cmd.Subcommands.Add(Train());
        cmd.Subcommands.Add(Predict());
        return cmd;
    }

    static Argument<string> TaskArgument() => new("task") { Description = "CLUE task: " + string.Join(", ", Supported) };

    static void CheckTask(string task)
    {
        if (!Supported.Contains(task))
            throw new ArgumentException($"'{task}' is not supported by b4s clue yet (supported: {string.Join(", ", Supported)}); text classification tasks run through b4s train with a recipe (recipes/tnews.json)");
    }

    static Command Train()
    {
        var task = TaskArgument();
        var output = new Option<string>("--output") { Description = "Run directory (checkpoints, metrics, model/, dev_predictions.json)", Required = true };
        var data = new Option<string>("--data") { Description = "The staged datasets", DefaultValueFactory = _ => Path.Combine("..", "shared", "data") };
        var model = new Option<string?>("--model") { Description = "Pretrained encoder directory (config + weights + vocab.txt); without it: random initialisation from --config" };
        var config = new Option<string?>("--config") { Description = "Config of a randomly initialised encoder", DefaultValueFactory = _ => Path.Combine("recipes", "configs", "roformer-v2-4x256.json") };
        var vocab = new Option<string?>("--vocab") { Description = "Vocabulary of the randomly initialised encoder (default: vocab.txt beside --config, else ../shared's RoFormerV2 character vocabulary)" };
        var family = new Option<string?>("--family") { Description = "Encoder family when the config has no model_type (default for the random config: roformer_v2)" };
        var head = new Option<string>("--head") { Description = "crf, gp (GlobalPointer) or egp (EfficientGlobalPointer)", DefaultValueFactory = _ => "gp" };
        head.AcceptOnlyFromAmong("crf", "gp", "egp");
        var minutes = new Option<double?>("--minutes") { Description = "Time budget" };
        var epochs = new Option<int>("--epochs") { Description = "Epochs at most", DefaultValueFactory = _ => 10 };
        var seed = new Option<int>("--seed") { Description = "Seed", DefaultValueFactory = _ => 42 };
        var lr = new Option<double?>("--learning-rate") { Description = "Learning rate (default 2e-5 pretrained, 3e-4 from scratch; 100 warm-up steps)" };
        var batch = new Option<int>("--batch-size") { Description = "Texts per batch", DefaultValueFactory = _ => 32 };
        var evalEvery = new Option<long>("--eval-every") { Description = "Evaluate on dev every N steps (and at each epoch end)", DefaultValueFactory = _ => 200 };
        var resume = new Option<bool>("--resume") { Description = "Continue an interrupted run" };
        var overwrite = new Option<bool>("--overwrite") { Description = "Replace a previous run in the output directory" };
        var cmd = new Command("train", "Fine-tune on the task's train split, choose the best evaluation on dev, save the model and dev predictions")
            { task, output, data, model, config, vocab, family, head, minutes, epochs, seed, lr, batch, evalEvery, resume, overwrite };
        cmd.SetAction(CliErrors.Wrap(r =>
        {
            CheckTask(r.GetValue(task)!);
            string dataDir = r.GetValue(data)!;
            if (!Directory.Exists(Path.Combine(dataDir, "cluener2020")))
                throw new DirectoryNotFoundException($"{Path.GetFullPath(dataDir)} has no cluener2020/: pass --data with the staged datasets (../shared/data)");
            string? m = r.GetValue(model), cfg = r.GetValue(config);
            string? vocabulary = r.GetValue(vocab);
            if (m is null && vocabulary is null && cfg is not null && !File.Exists(Path.Combine(Path.GetDirectoryName(Path.GetFullPath(cfg))!, "vocab.txt")))
                vocabulary = Path.Combine("..", "shared", "models", "roformer_v2_char_small", "vocab.txt");
            EntityRuns.Train(new EntityRunOptions
            {
                DataDirectory = dataDir, Output = Path.GetFullPath(r.GetValue(output)!), Model = m,
                Config = m is null ? cfg : null, Vocabulary = vocabulary, Family = r.GetValue(family),
                Head = r.GetValue(head) switch { "crf" => EntityHead.Crf, "egp" => EntityHead.EfficientGlobalPointer, _ => EntityHead.GlobalPointer },
                Minutes = r.GetValue(minutes), Epochs = r.GetValue(epochs), Seed = r.GetValue(seed), LearningRate = r.GetValue(lr),
                BatchSize = r.GetValue(batch), EvalEverySteps = r.GetValue(evalEvery), Resume = r.GetValue(resume), Overwrite = r.GetValue(overwrite),
            }, Console.WriteLine, Console.IsOutputRedirected ? ProgressDisplay.Lines : ProgressDisplay.Bar);
            return CliErrors.Ok;
        }));
        return cmd;
    }

    static Command Predict()
    {
        var task = TaskArgument();
        var model = new Option<string>("--model") { Description = "The model directory a train run saved (<output>/model)", Required = true };
        var input = new Option<string>("--input") { Description = "JSON lines with id and text (e.g. cluener2020/test.json)", Required = true };
        var output = new Option<string>("--output") { Description = "Predictions in the CLUE submission format", Required = true };
        var cmd = new Command("predict", "Predict a file with a trained task model, in the CLUE submission format") { task, model, input, output };
        cmd.SetAction(CliErrors.Wrap(r =>
        {
            CheckTask(r.GetValue(task)!);
            EntityRuns.Predict(r.GetValue(model)!, r.GetValue(input)!, r.GetValue(output)!);
            return CliErrors.Ok;
        }));
        return cmd;
    }
}
