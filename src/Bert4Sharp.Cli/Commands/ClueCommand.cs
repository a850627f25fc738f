namespace Bert4Sharp.Cli;

using System.CommandLine;
using Bert4Sharp.Training;

/// <summary><c>b4s clue train|predict &lt;task&gt;</c>: the CLUE runner (<see cref="ClueRuns"/>; docs/tasks.md).</summary>
internal static class ClueCommand
{
    static IEnumerable<string> Supported => ClueRuns.All.Select(r => r.Task);

    public static Command Create()
    {
        var cmd = new Command("clue", "Fine-tune and predict CLUE tasks from ../shared/data (" + string.Join(", ", Supported) + ")");
        cmd.Subcommands.Add(Train());
        cmd.Subcommands.Add(Predict());
        cmd.Subcommands.Add(List());
        return cmd;
    }

    static Argument<string> TaskArgument() => new("task") { Description = "CLUE task: " + string.Join(", ", Supported) };

    static Command List()
    {
        var cmd = new Command("tasks", "List the tasks b4s clue runs, with head, metric and data");
        cmd.SetAction(CliErrors.Wrap(_ =>
        {
            foreach (var run in ClueRuns.All) Console.WriteLine($"{run.Task,-12} {run.Description}");
            return CliErrors.Ok;
        }));
        return cmd;
    }

    static Command Train()
    {
        var task = TaskArgument();
        var output = new Option<string>("--output") { Description = "Run directory (checkpoints, metrics, model/, dev predictions)", Required = true };
        var data = new Option<string>("--data") { Description = "The staged datasets", DefaultValueFactory = _ => Path.Combine("..", "shared", "data") };
        var model = new Option<string?>("--model") { Description = "Pretrained encoder directory (config + weights + vocab.txt); without it: random initialisation from --config" };
        var config = new Option<string?>("--config") { Description = "Config of a randomly initialised encoder", DefaultValueFactory = _ => Path.Combine("recipes", "configs", "roformer-v2-4x256.json") };
        var vocab = new Option<string?>("--vocab") { Description = "Vocabulary of the randomly initialised encoder (default: vocab.txt beside --config, else ../shared's RoFormerV2 character vocabulary)" };
        var family = new Option<string?>("--family") { Description = "Encoder family when the config has no model_type (default for the random config: roformer_v2)" };
        var head = new Option<string?>("--head") { Description = "The head, for tasks with several (cluener: crf, gp = GlobalPointer (default), egp = EfficientGlobalPointer; classification tasks: a pooling first (default), cls, mean, max, first-last-avg and/or weighted = inverse-frequency class weights, e.g. mean,weighted)" };
        var minutes = new Option<double?>("--minutes") { Description = "Time budget" };
        var epochs = new Option<int>("--epochs") { Description = "Epochs at most", DefaultValueFactory = _ => 10 };
        var maxSteps = new Option<long?>("--max-steps") { Description = "Optimizer steps at most" };
        var limit = new Option<int?>("--limit") { Description = "Use only the first N training and dev examples (a quick look)" };
        var seed = new Option<int>("--seed") { Description = "Seed", DefaultValueFactory = _ => 42 };
        var lr = new Option<double?>("--learning-rate") { Description = "Learning rate (default 2e-5 pretrained, 3e-4 from scratch)" };
        var batch = new Option<int?>("--batch-size") { Description = "Examples per batch (default: the task's)" };
        var maxLength = new Option<int?>("--max-length") { Description = "Tokens per input (default: the task's)" };
        var warmup = new Option<long>("--warmup") { Description = "Linear warm-up steps of the learning rate", DefaultValueFactory = _ => 100 };
        var evalEvery = new Option<long>("--eval-every") { Description = "Evaluate on dev every N steps (and at each epoch end)", DefaultValueFactory = _ => 200 };
        var patience = new Option<int?>("--patience") { Description = "Early stopping: stop after N dev evaluations without improvement" };
        var resume = new Option<bool>("--resume") { Description = "Continue an interrupted run" };
        var overwrite = new Option<bool>("--overwrite") { Description = "Replace a previous run in the output directory" };
        var precision = PrecisionOption.Create(training: true);
        var cmd = new Command("train", "Fine-tune on the task's train split, choose the best evaluation on dev, save the model and dev predictions")
            { task, output, data, model, config, vocab, family, head, minutes, epochs, maxSteps, limit, seed, lr, batch, maxLength, warmup, evalEvery, patience, resume, overwrite, precision };
        cmd.SetAction(CliErrors.Wrap(r =>
        {
            var run = ClueRuns.Get(r.GetValue(task)!);
            string dataDir = r.GetValue(data)!;
            if (!Directory.Exists(dataDir))
                throw new DirectoryNotFoundException($"{Path.GetFullPath(dataDir)} does not exist: pass --data with the staged datasets (../shared/data)");
            string? m = r.GetValue(model), cfg = r.GetValue(config);
            string? vocabulary = r.GetValue(vocab);
            if (m is null && vocabulary is null && cfg is not null && !File.Exists(Path.Combine(Path.GetDirectoryName(Path.GetFullPath(cfg))!, "vocab.txt")))
                vocabulary = Path.Combine("..", "shared", "models", "roformer_v2_char_small", "vocab.txt");
            var started = DateTime.UtcNow;
            var result = run.Train(new ClueRunOptions
            {
                DataDirectory = dataDir, Output = Path.GetFullPath(r.GetValue(output)!), Model = m,
                Config = m is null ? cfg : null, Vocabulary = vocabulary, Family = r.GetValue(family), Head = r.GetValue(head),
                Minutes = r.GetValue(minutes), Epochs = r.GetValue(epochs), MaxSteps = r.GetValue(maxSteps), Limit = r.GetValue(limit), Seed = r.GetValue(seed), LearningRate = r.GetValue(lr),
                BatchSize = r.GetValue(batch), MaxLength = r.GetValue(maxLength), WarmupSteps = r.GetValue(warmup), EvalEverySteps = r.GetValue(evalEvery), Patience = r.GetValue(patience),
                Resume = r.GetValue(resume), Overwrite = r.GetValue(overwrite), Precision = PrecisionOption.Parse(r.GetValue(precision)),
            }, Console.WriteLine, Console.IsOutputRedirected ? ProgressDisplay.Lines : ProgressDisplay.Bar);
            // One summary per run, for tables: the reported dev metrics, steps and wall time (reading data and evaluations included).
            ClueRun.WriteJson(Path.Combine(Path.GetFullPath(r.GetValue(output)!), "result.json"), new
            {
                task = run.Task, metrics = result.Metrics, steps = result.Training.Steps, stop = result.Training.StopReason,
                training_minutes = result.Training.Elapsed.TotalMinutes, wall_minutes = (DateTime.UtcNow - started).TotalMinutes,
                command = "b4s " + string.Join(" ", Environment.GetCommandLineArgs().Skip(1)),
            });
            return CliErrors.Ok;
        }));
        return cmd;
    }

    static Command Predict()
    {
        var task = TaskArgument();
        var model = new Option<string>("--model") { Description = "The model directory a train run saved (<output>/model)", Required = true };
        var input = new Option<string?>("--input") { Description = "A file in the task's input format (default: the task's test file under --data, else its dev file)" };
        var data = new Option<string>("--data") { Description = "The staged datasets (for the default input)", DefaultValueFactory = _ => Path.Combine("..", "shared", "data") };
        var output = new Option<string>("--output") { Description = "Predictions in the CLUE submission format", Required = true };
        var limit = new Option<int?>("--limit") { Description = "Predict only the first N records (a quick look)" };
        var engine = new Option<string>("--engine")
        {
            Description = "torch (TorchSharp) or onnx (ONNX Runtime runs the encoder, the head stays in TorchSharp): the directory's model.onnx (b4s export onnx of the task model, --int8 too), else the encoder exported for this run",
            DefaultValueFactory = _ => "torch",
        };
        engine.AcceptOnlyFromAmong("torch", "onnx");
        var threads = new Option<int?>("--threads") { Description = "CPU threads (libtorch or ONNX Runtime)" };
        var cmd = new Command("predict", "Predict a file with a trained task model, in the CLUE submission format") { task, model, input, output, data, limit, engine, threads };
        cmd.SetAction(CliErrors.Wrap(r =>
        {
            var run = ClueRuns.Get(r.GetValue(task)!);
            string directory = r.GetValue(model)!;
            if (!Directory.Exists(directory)) throw new DirectoryNotFoundException($"{directory}: model directory not found (give the directory b4s clue train saved, <output>/model)");
            int? n = r.GetValue(threads) is int t ? (t > 0 ? t : throw new ArgumentException($"--threads must be at least 1, got {t}")) : null;
            if (n is int count) TorchSharp.torch.set_num_threads(count);
            string? temporary = null;
            var onnx = r.GetValue(engine) == "onnx" ? OnnxEngine(directory, n ?? 0, Console.WriteLine, out temporary) : null;
            try
            {
                var sw = System.Diagnostics.Stopwatch.StartNew();
                int records = run.Predict(directory, r.GetValue(input) ?? run.DefaultInput(r.GetValue(data)!), r.GetValue(output)!, Console.WriteLine, r.GetValue(limit), onnx);
                Console.WriteLine($"{records:N0} records in {sw.Elapsed.TotalSeconds:F1} s ({records / sw.Elapsed.TotalSeconds:F1}/s, model loading included) on {(onnx is null ? "TorchSharp" : $"ONNX Runtime ({onnx.GraphPath})")}");
            }
            finally
            {
                onnx?.Dispose();
                if (temporary is not null) Directory.Delete(temporary, recursive: true);
            }
            return CliErrors.Ok;
        }));
        return cmd;
    }

    /// <summary>
    /// ONNX Runtime on a task model's encoder: the directory's model.onnx (a <c>b4s export onnx</c> copy), else the TorchSharp
    /// encoder exported into a temporary directory for this run (returned in <paramref name="temporary"/> to delete).
    /// </summary>
    static Onnx.OnnxRuntimeEncoder OnnxEngine(string directory, int threads, Action<string> log, out string? temporary)
    {
        var options = new Onnx.OnnxEncoderOptions { Threads = threads };
        temporary = null;
        if (File.Exists(Path.Combine(directory, "model.onnx"))) return new Onnx.OnnxRuntimeEncoder(directory, options);
        var sw = System.Diagnostics.Stopwatch.StartNew();
        var (encoder, _) = ClueRun.LoadEncoder(directory);
        temporary = Directory.CreateTempSubdirectory("b4s-predict-").FullName;
        using (encoder) Onnx.Export.OnnxExport.Save(encoder, Path.Combine(temporary, "model.onnx"));
        log($"exported the encoder to ONNX for this run ({sw.Elapsed.TotalSeconds:F1} s); `b4s export onnx --model {directory} --output DIR [--int8]` keeps a copy to predict from");
        return new Onnx.OnnxRuntimeEncoder(temporary, options);
    }
}
