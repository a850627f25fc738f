namespace Bert4Sharp.Cli;

using System.CommandLine;
using Bert4Sharp.Training;
using Bert4Sharp.Training.Compression;

/// <summary><c>b4s compress</c>: BERT-of-Theseus compression of a fine-tuned classifier (<see cref="TheseusCompression"/>; docs/compression.md).</summary>
internal static class CompressCommand
{
    public static Command Create()
    {
        var model = new Option<string>("--model") { Description = "The predecessor: a classification task model `b4s clue train` saved (<output>/model); with --truncate, any pretrained encoder directory", Required = true };
        var task = new Option<string?>("--task") { Description = "The CLUE classification task it was trained for (tnews, ocnli, …)" };
        var layers = new Option<int>("--layers") { Description = "Successor blocks N (divides the predecessor's block count)", Required = true };
        var output = new Option<string>("--output") { Description = "Run directory: replacement/ and successor/ (each phase's checkpoints, curves), model/ (the successor task model), result.json", Required = true };
        var data = new Option<string>("--data") { Description = "The staged datasets", DefaultValueFactory = _ => Path.Combine("..", "shared", "data") };
        var schedule = new Option<string>("--schedule") { Description = "Replacement probability over the replacement phase: constant (the post) or linear (the paper: p = min(1, p0 + rate·step))", DefaultValueFactory = _ => "constant" };
        var prob = new Option<double?>("--replace-prob") { Description = "The constant p, or p0 of the linear schedule (default 0.5 constant, 0.3 linear)" };
        var rate = new Option<double?>("--replace-rate") { Description = "Linear schedule: increase of p per step (default: reaching 1 at the last replacement step)" };
        var init = new Option<string>("--init") { Description = "Successor block k starts from predecessor block k (first: the paper, bert4keras) or from the first block of its group (group)", DefaultValueFactory = _ => "first" };
        var replaceSteps = new Option<long?>("--replace-steps") { Description = "Optimizer steps of the replacement phase at most" };
        var successorSteps = new Option<long?>("--successor-steps") { Description = "Optimizer steps of the successor-only phase at most (0 skips it)" };
        var minutes = new Option<double?>("--minutes") { Description = "Time budget of each phase" };
        var epochs = new Option<int>("--epochs") { Description = "Epochs of each phase at most", DefaultValueFactory = _ => 10 };
        var lr = new Option<double?>("--learning-rate") { Description = "Learning rate of both phases (default 2e-5)" };
        var warmup = new Option<long>("--warmup") { Description = "Linear warm-up steps of each phase", DefaultValueFactory = _ => 100 };
        var batch = new Option<int?>("--batch-size") { Description = "Examples per batch (default: the predecessor's)" };
        var evalEvery = new Option<long>("--eval-every") { Description = "Evaluate on dev every N steps (and at each epoch end); each phase keeps its best-on-dev weights", DefaultValueFactory = _ => 200 };
        var patience = new Option<int?>("--patience") { Description = "Early stopping in each phase after N dev evaluations without improvement" };
        var seed = new Option<int>("--seed") { Description = "Seed (initialisation, shuffling, dropout, replacement draws)", DefaultValueFactory = _ => 42 };
        var limit = new Option<int?>("--limit") { Description = "Use only the first N training and dev examples (a quick look)" };
        var speedBatches = new Option<int>("--speed-batches") { Description = "Dev batches timed for the speed-up", DefaultValueFactory = _ => 16 };
        var truncate = new Option<bool>("--truncate") { Description = "Only write --model's first N blocks as a pretrained encoder directory (the small model fine-tuned directly, for comparison); no training" };
        var overwrite = new Option<bool>("--overwrite") { Description = "Replace a previous run in the output directory" };
        var cmd = new Command("compress", "BERT-of-Theseus: compress a fine-tuned classifier to N blocks by progressive module replacement, then fine-tune the successor alone")
            { model, task, layers, output, data, schedule, prob, rate, init, replaceSteps, successorSteps, minutes, epochs, lr, warmup, batch, evalEvery, patience, seed, limit, speedBatches, truncate, overwrite };
        cmd.SetAction(CliErrors.Wrap(r =>
        {
            string outputDir = Path.GetFullPath(r.GetValue(output)!);
            if (r.GetValue(truncate))
            {
                TrainingOutput.EnsureUsable(outputDir, resume: false, r.GetValue(overwrite));
                Console.WriteLine($"wrote the first {r.GetValue(layers)} blocks of {r.GetValue(model)} to {TheseusCompression.SaveFirstLayers(r.GetValue(model)!, r.GetValue(layers), outputDir)}");
                return CliErrors.Ok;
            }
            string taskName = r.GetValue(task) ?? throw new ArgumentException("give --task: the CLUE classification task the model was trained for (tnews, ocnli, …)");
            string dataDir = r.GetValue(data)!;
            if (!Directory.Exists(dataDir)) throw new DirectoryNotFoundException($"{Path.GetFullPath(dataDir)} does not exist: pass --data with the staged datasets (../shared/data)");
            long? steps1 = r.GetValue(replaceSteps);
            var sched = r.GetValue(schedule) switch
            {
                "constant" => ReplacementSchedule.Constant(r.GetValue(prob) ?? 0.5),
                "linear" => ReplacementSchedule.Linear(r.GetValue(prob) ?? 0.3, r.GetValue(rate)
                    ?? (steps1 is long s && s > 0 ? (1 - (r.GetValue(prob) ?? 0.3)) / s : throw new ArgumentException("--schedule linear needs --replace-rate, or --replace-steps to derive it (p reaching 1 at the last step)"))),
                var other => throw new ArgumentException($"--schedule is constant or linear, not '{other}'"),
            };
            if (r.GetValue(schedule) == "constant" && r.GetValue(rate) is not null) throw new ArgumentException("--replace-rate belongs to --schedule linear");
            var initial = r.GetValue(init) switch
            {
                "first" => SuccessorInit.FirstLayers,
                "group" => SuccessorInit.FirstOfGroup,
                var other => throw new ArgumentException($"--init is first or group, not '{other}'"),
            };
            var started = DateTime.UtcNow;
            var result = TheseusCompression.Run(new TheseusOptions
            {
                Model = r.GetValue(model)!, Task = taskName, Layers = r.GetValue(layers), Output = outputDir, DataDirectory = dataDir, Schedule = sched, Init = initial,
                ReplacementSteps = steps1, SuccessorSteps = r.GetValue(successorSteps), Minutes = r.GetValue(minutes), Epochs = r.GetValue(epochs), LearningRate = r.GetValue(lr),
                WarmupSteps = r.GetValue(warmup), BatchSize = r.GetValue(batch), EvalEverySteps = r.GetValue(evalEvery), Patience = r.GetValue(patience), Seed = r.GetValue(seed),
                Limit = r.GetValue(limit), SpeedBatches = r.GetValue(speedBatches), Overwrite = r.GetValue(overwrite),
            }, Console.WriteLine, Console.IsOutputRedirected ? ProgressDisplay.Lines : ProgressDisplay.Bar);
            ClueRun.WriteJson(Path.Combine(outputDir, "result.json"), new
            {
                task = taskName, layers = r.GetValue(layers), schedule = sched.ToString(),
                predecessor_accuracy = result.PredecessorAccuracy, initial_accuracy = result.InitialAccuracy, replacement_accuracy = result.ReplacementAccuracy,
                successor_accuracy = result.SuccessorAccuracy, retention = result.Retention,
                predecessor_ms = result.Speed.PredecessorMs, successor_ms = result.Speed.SuccessorMs, speed_up = result.Speed.SpeedUp,
                replacement_steps = result.Replacement.Steps, successor_steps = result.Successor?.Steps ?? 0, wall_minutes = (DateTime.UtcNow - started).TotalMinutes,
                command = "b4s " + string.Join(" ", Environment.GetCommandLineArgs().Skip(1)),
            });
            return CliErrors.Ok;
        }));
        return cmd;
    }
}
