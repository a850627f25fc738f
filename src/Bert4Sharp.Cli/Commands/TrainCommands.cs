namespace Bert4Sharp.Cli;

using System.CommandLine;
using Bert4Sharp.Runtime;
using Bert4Sharp.Training;
using Bert4Sharp.Training.Distributed;

/// <summary>
/// <c>b4s pretrain</c> and <c>b4s train</c>: training driven by a JSON recipe (see docs/training.md and recipes/). Started by
/// <c>mpirun -np N</c>, they train data-parallel on N processes (docs/distributed.md) with the same recipe.
/// </summary>
internal static class TrainCommands
{
    public static Command Pretrain()
    {
        var recipe = new Argument<string>("recipe") { Description = "JSON recipe (e.g. recipes/pretrain-roformer-v2.json)" };
        var resume = new Option<bool>("--resume") { Description = "Continue from the checkpoint in the recipe's output directory" };
        var minutes = new Option<double?>("--minutes") { Description = "Override the recipe's time budget" };
        var maxSteps = new Option<long?>("--max-steps") { Description = "Override the recipe's step limit" };
        var overwrite = Overwrite();
        var precision = PrecisionOption.Create(training: true);
        var cmd = new Command("pretrain", "Masked-LM pretraining from scratch (whole-word masking, packing, checkpoints, curves)") { recipe, resume, minutes, maxSteps, overwrite, precision };
        cmd.SetAction(CliErrors.Wrap(r =>
        {
            var rec = Recipe.Load<PretrainRecipe>(r.GetValue(recipe)!);
            if (r.GetValue(minutes) is double m) rec = rec with { Minutes = m };
            if (r.GetValue(maxSteps) is long s) rec = rec with { MaxSteps = s };
            if (r.GetValue(precision) is string p) rec = rec with { Precision = p };
            rec.Validate();
            return Distributed((parallel, log, display) => Pretraining.Run(rec, r.GetValue(resume), log, display, overwrite: r.GetValue(overwrite), dataParallel: parallel));
        }));
        return cmd;
    }

    public static Command Train()
    {
        var recipe = new Argument<string>("recipe") { Description = "JSON recipe (e.g. recipes/tnews.json)" };
        var resume = new Option<bool>("--resume") { Description = "Continue from the checkpoint in the recipe's output directory" };
        var model = new Option<string?>("--model") { Description = "Override the recipe's pretrained model directory" };
        var output = new Option<string?>("--output") { Description = "Override the recipe's output directory" };
        var epochs = new Option<int?>("--epochs") { Description = "Override the recipe's epochs" };
        var seed = new Option<int?>("--seed") { Description = "Override the recipe's seed" };
        var lr = new Option<double?>("--learning-rate") { Description = "Override the recipe's optimizer.learning_rate" };
        var pooling = new Option<string?>("--pooling") { Description = "Override the recipe's pooling: first or mean" };
        var overwrite = Overwrite();
        var precision = PrecisionOption.Create(training: true);
        var cmd = new Command("train", "Fine-tune a text classifier from a recipe (evaluation, best checkpoint, early stopping, --resume)") { recipe, resume, model, output, epochs, seed, lr, pooling, overwrite, precision };
        cmd.SetAction(CliErrors.Wrap(r =>
        {
            var rec = Recipe.Load<TrainRecipe>(r.GetValue(recipe)!);
            if (r.GetValue(model) is string m) rec = rec with { Model = Path.GetFullPath(m) };
            if (r.GetValue(output) is string o) rec = rec with { Output = Path.GetFullPath(o) };
            if (r.GetValue(epochs) is int e) rec = rec with { Epochs = e };
            if (r.GetValue(seed) is int sd) rec = rec with { Seed = sd };
            if (r.GetValue(lr) is double l) rec = rec with { Optimizer = rec.Optimizer with { LearningRate = l } };
            if (r.GetValue(pooling) is string p) rec = rec with { Pooling = p };
            if (r.GetValue(precision) is string pr) rec = rec with { Precision = pr };
            rec.Validate();
            return Distributed((parallel, log, display) => FineTuning.Run(rec, r.GetValue(resume), log, display, overwrite: r.GetValue(overwrite), dataParallel: parallel));
        }));
        return cmd;
    }

    /// <summary>
    /// Runs a training alone, or as one rank of an MPI launch: then libtorch gets its share of the machine's cores (unless
    /// OMP_NUM_THREADS says), only rank 0 prints (lines: mpirun forwards its output), and an error on any rank is printed with the rank and ends the whole
    /// job (MPI_Abort) instead of leaving the other ranks waiting for it.
    /// </summary>
    static int Distributed(Action<DataParallelOptions?, Action<string>, ProgressDisplay> run)
    {
        if (!Communicator.LaunchedByMpi)
        {
            run(null, Console.WriteLine, Display());
            return CliErrors.Ok;
        }
        using var world = Communicator.FromEnvironment();
        if (string.IsNullOrEmpty(Environment.GetEnvironmentVariable("OMP_NUM_THREADS")) && MpiLaunch.Detect()?.ThreadsPerRank is int threads)
            TorchInfo.SetThreads(threads);
        if (world.IsPrimary) Console.WriteLine($"mpi: {world.Description}; {TorchSharp.torch.get_num_threads()} libtorch threads per rank");
        try
        {
            run(new DataParallelOptions { Communicator = world }, world.IsPrimary ? Console.WriteLine : _ => { }, world.IsPrimary ? ProgressDisplay.Lines : ProgressDisplay.None);
            return CliErrors.Ok;
        }
        catch (Exception e) when (world.Size > 1)
        {
            Console.Error.WriteLine($"b4s: error on rank {world.Rank} of {world.Size}: {e.Message.ReplaceLineEndings(" ")}");
            if (Environment.GetEnvironmentVariable("B4S_DEBUG") == "1") Console.Error.WriteLine(e);
            Console.Error.Flush();
            world.Abort(1);                                                               // mpirun ends the other ranks
            throw;
        }
    }

    static Option<bool> Overwrite() => new("--overwrite") { Description = "Replace a previous run in the output directory (otherwise refused)" };

    static ProgressDisplay Display() => Console.IsOutputRedirected ? ProgressDisplay.Lines : ProgressDisplay.Bar;
}
