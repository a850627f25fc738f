namespace Bert4Sharp.Cli;

using System.CommandLine;
using Bert4Sharp.Hub;
using Spectre.Console;

/// <summary><c>b4s download org/name</c>: a model from the Hugging Face hub into its cache (<see cref="HubClient"/>).</summary>
internal static class DownloadCommand
{
    public static Command Create()
    {
        var repo = new Argument<string>("model") { Description = "Hub model id, org/name (e.g. sentence-transformers/all-MiniLM-L6-v2)" };
        var revision = new Option<string>("--revision") { Description = "Branch, tag or commit", DefaultValueFactory = _ => "main" };
        var json = new Option<bool>("--json") { Description = "Machine-readable output (no progress bar)" };
        var cmd = new Command("download", "Download a model from the Hugging Face hub (HF_ENDPOINT, HF_TOKEN, HF_HOME / HF_HUB_CACHE, HF_HUB_OFFLINE): config, weights in the best format, tokenizer; resumed and checked")
            { repo, revision, json };
        cmd.SetAction(CliErrors.Wrap(r =>
        {
            string id = r.GetValue(repo)!;
            var options = HubOptions.FromEnvironment();
            string snapshot;
            if (r.GetValue(json) || Console.IsOutputRedirected)
                snapshot = HubClient.Download(id, r.GetValue(revision)!, options);
            else
                snapshot = AnsiConsole.Progress().AutoClear(false).Columns(new TaskDescriptionColumn { Alignment = Justify.Left }, new ProgressBarColumn(),
                        new PercentageColumn(), new DownloadedColumn(), new TransferSpeedColumn(), new RemainingTimeColumn())
                    .Start(ctx =>
                    {
                        var tasks = new Dictionary<string, ProgressTask>();
                        var progress = new Progress<DownloadProgress>(p =>
                        {
                            lock (tasks)
                            {
                                if (!tasks.TryGetValue(p.File, out var t)) tasks[p.File] = t = ctx.AddTask(Markup.Escape(p.File), maxValue: p.Total ?? Math.Max(1, p.Done));
                                if (p.Total is null && p.Done > t.MaxValue) t.MaxValue = p.Done;
                                t.Value = p.Done;
                            }
                        });
                        return HubClient.Download(id, r.GetValue(revision)!, options, progress);
                    });
            var files = Directory.EnumerateFiles(snapshot, "*", SearchOption.AllDirectories).Select(f => Path.GetRelativePath(snapshot, f)).Order().ToList();
            if (r.GetValue(json)) CliErrors.WriteJson(new { model = id, revision = r.GetValue(revision), directory = snapshot, files });
            else Console.WriteLine($"{id}: {files.Count} files in {snapshot} ({string.Join(", ", files)}); use it as --model {snapshot} or by its id");
            return CliErrors.Ok;
        }));
        return cmd;
    }
}
