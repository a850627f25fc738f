namespace Bert4Sharp.Tests.Packaging;

using System.Reflection;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json;
using Bert4Sharp.Runtime;

/// <summary>
/// The b4s tool as a user installs it: <c>dotnet pack</c> makes the tool package for linux-x64 (a pointer package plus
/// <c>Bert4Sharp.Cli.linux-x64</c> with that platform's libtorch only; see docs/serving.md, "Shipping") into a folder feed
/// under a throwaway version, <c>dotnet tool install --tool-path</c> puts it in a temporary directory, and the installed
/// <c>b4s</c> runs <c>doctor</c> (TorchSharp loads, the runtime fix is in the package when the system needs it) and a
/// 0.2-minute <c>quickstart</c>. The throwaway version is removed from the NuGet cache afterwards.
/// </summary>
[Trait("Category", "Packaging")]
[Collection("packaging")]
public sealed class ToolPackageTests
{
    [Fact]
    public void The_tool_installs_from_a_folder_feed_and_runs_doctor_and_a_short_quickstart()
    {
        if (!OperatingSystem.IsLinux() || RuntimeInformation.ProcessArchitecture != Architecture.X64) Assert.Skip("the tool package check packs for linux-x64");
        string? dotnet = PackageConsumerTests.FindOnPath("dotnet");
        if (dotnet is null) Assert.Skip("the tool check runs the .NET SDK as a separate process, and `dotnet` is not on PATH");
        string configuration = typeof(ToolPackageTests).Assembly.GetCustomAttribute<AssemblyConfigurationAttribute>()?.Configuration ?? "Debug";
        string version = "0.0.0-tool-" + Guid.NewGuid().ToString("N");
        string root = Directory.CreateTempSubdirectory("b4s-tool-check-").FullName;
        string feed = Path.Combine(root, "feed"), tools = Path.Combine(root, "tools");
        var log = new StringBuilder();
        try
        {
            PackageConsumerTests.Run(dotnet, TestPaths.RepoRoot, log, TimeSpan.FromMinutes(10), "pack", Path.Combine(TestPaths.RepoRoot, "src", "Bert4Sharp.Cli", "Bert4Sharp.Cli.csproj"),
                "--disable-build-servers", "-nologo", "-c", configuration, "-o", feed, "-p:Version=" + version,
                "-p:ToolPackageRuntimeIdentifiers=linux-x64", "-p:RuntimeIdentifiers=linux-x64");
            long size = new FileInfo(Path.Combine(feed, $"Bert4Sharp.Cli.linux-x64.{version}.nupkg")).Length;
            Assert.True(size < 400_000_000, $"the linux-x64 tool package is {size:N0} bytes: another platform's libtorch got in?");
            PackageConsumerTests.Run(dotnet, root, log, TimeSpan.FromMinutes(5), "tool", "install", "Bert4Sharp.Cli", "--tool-path", tools, "--add-source", feed, "--version", version);

            string b4s = Path.Combine(tools, "b4s");
            var doctor = JsonDocument.Parse(PackageConsumerTests.Run(b4s, root, log, TimeSpan.FromMinutes(2), "doctor", "--json")).RootElement;
            Assert.True(doctor.GetProperty("torch_initialised").GetBoolean(), doctor.ToString());
            bool? needsFix = LibTorchSharpFix.SystemLibStdCxxHasVersion(out _) is bool has ? !has : null;
            if (needsFix is bool need) Assert.Equal(need, doctor.GetProperty("runtime_fix").GetProperty("applied").GetBoolean());

            string stdout = PackageConsumerTests.Run(b4s, root, log, TimeSpan.FromMinutes(8), "quickstart", "--minutes", "0.2", "--output", Path.Combine(root, "poems"));
            Assert.Contains("held-out perplexity after training", stdout);
            Assert.True(File.Exists(Path.Combine(root, "poems", "model.safetensors")), stdout);
        }
        finally
        {
            string cache = Environment.GetEnvironmentVariable("NUGET_PACKAGES") is { Length: > 0 } env ? env
                : Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".nuget", "packages");
            foreach (string id in new[] { "bert4sharp.cli", "bert4sharp.cli.linux-x64" })
                try { if (Directory.Exists(Path.Combine(cache, id, version))) Directory.Delete(Path.Combine(cache, id, version), true); }
                catch (IOException) { }
            try { Directory.Delete(root, true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
        }
    }
}
