namespace Bert4Sharp.Cli;

using System.Text.Json;
using Bert4Sharp.Checkpoints;
using Spectre.Console;

/// <summary>Exit codes and the one-line error convention shared by every command.</summary>
internal static class CliErrors
{
    public const int Ok = 0, Failure = 1, Unexpected = 2;

    public static readonly JsonSerializerOptions Json = new()
    {
        WriteIndented = true, PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping,   // Chinese stays readable
    };

    public static int Run(Func<int> body)
    {
        if (Console.IsOutputRedirected) AnsiConsole.Profile.Width = 200;
        try { return body(); }
        catch (Exception e) when (e is CheckpointException or Models.CheckpointMismatchException or Training.TrainingDivergedException or NotSupportedException or FileNotFoundException or DirectoryNotFoundException or IOException or ArgumentException or UnauthorizedAccessException or InvalidDataException
            or Data.DataFetchException or TimeoutException or Training.Distributed.DistributedException)   // fetching from a package registry: the message says what failed and what to do
        {
            Console.Error.WriteLine("b4s: error: " + OneLine(e.Message));
            return Failure;
        }
        catch (Exception e)
        {
            Console.Error.WriteLine($"b4s: unexpected {e.GetType().Name}: {OneLine(e.Message)} (set B4S_DEBUG=1 for the stack trace)");
            if (Environment.GetEnvironmentVariable("B4S_DEBUG") == "1") Console.Error.WriteLine(e);
            return Unexpected;
        }
    }

    static string OneLine(string s) => s.ReplaceLineEndings(" ");

    /// <summary>Command actions run inside <see cref="Run"/> too, so that errors raised there get the same treatment.</summary>
    public static Func<System.CommandLine.ParseResult, int> Wrap(Func<System.CommandLine.ParseResult, int> action) => r => Run(() => action(r));

    public static void WriteJson<T>(T value) => Console.Out.WriteLine(JsonSerializer.Serialize(value, Json));
}
