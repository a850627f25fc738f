namespace Bert4Sharp.Cli;

using System.CommandLine;
using Bert4Sharp.Checkpoints;
using Spectre.Console;

/// <summary><c>b4s convert &lt;in&gt; &lt;out-dir&gt;</c>: any readable checkpoint to safetensors, values bit-identical.</summary>
internal static class ConvertCommand
{
    public static Command Create()
    {
        var input = new Argument<string>("in") { Description = "Checkpoint to read (any format b4s inspect reads)" };
        var output = new Argument<string>("out-dir") { Description = "Directory for model.safetensors (or shards + index)" };
        var json = new Option<bool>("--json") { Description = "Machine-readable output" };
        var slots = new Option<bool>("--include-slots") { Description = "Also copy optimiser slots (adam_m, adam_v, global_step…)" };
        var skip = new Option<bool>("--skip-unreadable") { Description = "Leave out truncated or missing tensors instead of failing" };
        var shard = new Option<long?>("--max-shard-bytes") { Description = "Split into shards of at most this many bytes" };
        var cmd = new Command("convert", "Convert a checkpoint to safetensors") { input, output, json, slots, skip, shard };
        cmd.SetAction(CliErrors.Wrap(r => Run(r.GetValue(input)!, r.GetValue(output)!, r.GetValue(json), r.GetValue(slots), r.GetValue(skip), r.GetValue(shard))));
        return cmd;
    }

    static int Run(string input, string outDir, bool json, bool includeSlots, bool skipUnreadable, long? maxShard)
    {
        using var ck = Checkpoint.Open(input);
        var chosen = ck.Entries.Where(e => includeSlots || e.State != TensorState.Slot).Where(e => e.DType != TensorDType.String).ToList();
        var unreadable = chosen.Where(e => e.State is TensorState.Truncated or TensorState.Missing).ToList();
        if (unreadable.Count > 0 && !skipUnreadable)
            throw new ArgumentException($"{ck.Path}: {unreadable.Count} tensors cannot be read ({string.Join(", ", unreadable.Take(3).Select(e => $"{e.Name}: {e.State.ToString().ToLowerInvariant()}"))}{(unreadable.Count > 3 ? ", …" : "")}); pass --skip-unreadable to convert the rest");
        var skipped = ck.Entries.Except(chosen).Concat(unreadable).Select(e => e.Name).ToList();
        chosen = chosen.Except(unreadable).ToList();
        var sources = chosen.Select(e => TensorSource.From(ck, e)).ToList();
        var metadata = new Dictionary<string, string> { ["format"] = "pt", ["converted_from"] = ck.Format.ToString() };
        long total = chosen.Sum(e => e.ByteCount);
        IReadOnlyList<string> files;
        bool showProgress = !json && !Console.IsErrorRedirected && total > 64L << 20;
        if (showProgress)
        {
            files = [];
            AnsiConsole.Progress().Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new TransferSpeedColumn(), new RemainingTimeColumn())
                .Start(ctx =>
                {
                    var task = ctx.AddTask("writing safetensors", maxValue: total);
                    files = SafetensorsWriter.WriteModel(outDir, sources, new SafetensorsWriteOptions
                    {
                        Metadata = metadata, MaxShardBytes = maxShard, Progress = (done, _) => task.Value = done,
                    });
                });
        }
        else
        {
            files = SafetensorsWriter.WriteModel(outDir, sources, new SafetensorsWriteOptions { Metadata = metadata, MaxShardBytes = maxShard });
        }
        if (json)
        {
            CliErrors.WriteJson(new { input = ck.Path, format = ck.Format.ToString(), files, tensors = chosen.Count, bytes = total, skipped });
        }
        else
        {
            AnsiConsole.MarkupLine($"wrote {chosen.Count} tensors, {total:N0} bytes from {ck.Format} to:");
            foreach (var f in files) AnsiConsole.MarkupLine("  " + Markup.Escape(f));
            if (skipped.Count > 0) AnsiConsole.MarkupLine($"[yellow]skipped {skipped.Count}[/] (slots or unreadable): {Markup.Escape(string.Join(", ", skipped.Take(5)))}{(skipped.Count > 5 ? ", …" : "")}");
        }
        return CliErrors.Ok;
    }
}
