namespace Bert4Sharp.Tests.Packaging;

using System.Diagnostics;
using System.Globalization;
using System.IO.Compression;
using System.Reflection;
using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;
using System.Xml.Linq;
using Bert4Sharp.Runtime;

/// <summary>
/// The NuGet packages work for a project outside the repository: Bert4Sharp and Bert4Sharp.Training are packed from
/// this build's outputs into a folder feed under a throwaway version, a fresh console project in a temporary directory
/// restores them from that feed (plus the normally configured sources, for TorchSharp and the rest), builds with
/// warnings as errors, and runs tests/fixtures/package-consumer/Program.cs: a tensor, a small BERT forward pass and a
/// few Trainer steps. On Linux the consumer's own copy of libLibTorchSharp.so must carry the GCC-12 runtime fix when
/// the system needs it, which only the packages' buildTransitive targets can have done. The normal NuGet cache is used;
/// the throwaway version is removed from it afterwards.
/// </summary>
[Trait("Category", "Packaging")]
[Collection("packaging")]
public sealed class PackageConsumerTests
{
    static readonly string[] Projects = ["src/Bert4Sharp/Bert4Sharp.csproj", "src/Bert4Sharp.Training/Bert4Sharp.Training.csproj"];
    static readonly string[] PackageIds = ["Bert4Sharp", "Bert4Sharp.Training"];

    [Fact]
    public void A_project_outside_the_repository_restores_builds_and_runs_against_the_packages()
    {
        string? dotnet = FindOnPath("dotnet");
        if (dotnet is null) Assert.Skip("the packaging check runs the .NET SDK as a separate process, and `dotnet` is not on PATH");
        string configuration = typeof(PackageConsumerTests).Assembly.GetCustomAttribute<AssemblyConfigurationAttribute>()?.Configuration ?? "Debug";
        string version = "0.0.0-check-" + Guid.NewGuid().ToString("N");     // never cached before, never reused
        string root = Directory.CreateTempSubdirectory("b4s-package-check-").FullName;
        string feed = Path.Combine(root, "feed"), consumer = Path.Combine(root, "consumer"), output = Path.Combine(root, "run");
        var log = new StringBuilder();
        var clock = Stopwatch.StartNew();
        try
        {
            // 1. Pack what this test host was built from (no second compile).
            foreach (var project in Projects)
            {
                string path = Path.Combine(TestPaths.RepoRoot, project);
                Run(dotnet, TestPaths.RepoRoot, log, TimeSpan.FromMinutes(3), "pack", path, "--no-build", "--no-restore", "--disable-build-servers",
                    "-nologo", "-c", configuration, "-o", feed, "-p:Version=" + version);
            }
            CheckPackages(feed, version);
            var packed = clock.Elapsed;

            // 2. A consumer that knows nothing of the repository (the empty Directory.* files stop MSBuild from looking above it).
            Directory.CreateDirectory(consumer);
            File.WriteAllText(Path.Combine(consumer, "NuGet.config"), $"""
                <?xml version="1.0" encoding="utf-8"?>
                <configuration>
                  <packageSources>
                    <add key="bert4sharp-check" value="{feed}" />
                  </packageSources>
                </configuration>
                """);
            foreach (var name in new[] { "Directory.Build.props", "Directory.Build.targets", "Directory.Packages.props" })
                File.WriteAllText(Path.Combine(consumer, name), "<Project />\n");
            // Only Training is referenced: the core, with the runtime fix, must arrive transitively.
            File.WriteAllText(Path.Combine(consumer, "Consumer.csproj"), $"""
                <Project Sdk="Microsoft.NET.Sdk">
                  <PropertyGroup>
                    <OutputType>Exe</OutputType>
                    <TargetFramework>net10.0</TargetFramework>
                    <Nullable>enable</Nullable>
                    <ImplicitUsings>enable</ImplicitUsings>
                    <TreatWarningsAsErrors>true</TreatWarningsAsErrors>
                  </PropertyGroup>
                  <ItemGroup>
                    <PackageReference Include="Bert4Sharp.Training" Version="[{version}]" />
                  </ItemGroup>
                </Project>
                """);
            File.Copy(TestPaths.Fixture("package-consumer", "Program.cs"), Path.Combine(consumer, "Program.cs"));
            Run(dotnet, consumer, log, TimeSpan.FromMinutes(5), "build", "--disable-build-servers", "-nologo", "-c", "Release");
            var built = clock.Elapsed;

            // 3. Run it.
            string bin = Path.Combine(consumer, "bin", "Release", "net10.0");
            string stdout = Run(dotnet, consumer, log, TimeSpan.FromMinutes(2), Path.Combine(bin, "Consumer.dll"), output);
            CheckOutput(stdout, output);

            // 4. The consumer's own native library carries the fix exactly when the system needs it.
            if (OperatingSystem.IsLinux())
            {
                string lib = Assert.Single(Directory.GetFiles(bin, "libLibTorchSharp.so", SearchOption.AllDirectories));
                bool? systemHasVersion = LibTorchSharpFix.SystemLibStdCxxHasVersion(out _);
                var state = LibTorchSharpFix.Inspect(lib);
                if (systemHasVersion == false) Assert.Equal(LibTorchSharpFixState.Patched, state);
                else if (systemHasVersion == true) Assert.Equal(LibTorchSharpFixState.Unpatched, state);
            }
            TestContext.Current.TestOutputHelper?.WriteLine(
                $"packaging check: pack {packed.TotalSeconds:F1} s, consumer restore+build {(built - packed).TotalSeconds:F1} s, run {(clock.Elapsed - built).TotalSeconds:F1} s, total {clock.Elapsed.TotalSeconds:F1} s");
        }
        finally
        {
            RemoveFromPackageCache(consumer, version);
            try { Directory.Delete(root, true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
        }
    }

    static void CheckPackages(string feed, string version)
    {
        var core = Nupkg(feed, "Bert4Sharp", version);
        var training = Nupkg(feed, "Bert4Sharp.Training", version);
        Assert.Contains("lib/net10.0/Bert4Sharp.dll", core.Files);
        Assert.Contains("lib/net10.0/Bert4Sharp.xml", core.Files);
        Assert.Contains("buildTransitive/Bert4Sharp.targets", core.Files);
        Assert.Contains("buildTransitive/LibTorchSharpFix.cs", core.Files);
        Assert.Contains("lib/net10.0/Bert4Sharp.Training.xml", training.Files);
        Assert.Contains("README.md", core.Files);
        Assert.Contains("README.md", training.Files);
        Assert.Contains("TorchSharp-cpu", core.Dependencies);
        Assert.DoesNotContain("Spectre.Console", core.Dependencies);    // the core stays free of console and plotting packages
        Assert.DoesNotContain("ScottPlot", core.Dependencies);
        Assert.Equal(version, training.Dependencies.GetValueOrDefault("Bert4Sharp"));
        Assert.Contains("Spectre.Console", training.Dependencies);
        Assert.Contains("ScottPlot", training.Dependencies);
    }

    sealed record Package(HashSet<string> Files, Dictionary<string, string> Dependencies);

    static Package Nupkg(string feed, string id, string version)
    {
        string path = Path.Combine(feed, $"{id}.{version}.nupkg");
        Assert.True(File.Exists(path), $"dotnet pack did not write {path}; the feed holds: {string.Join(", ", Directory.GetFiles(feed).Select(Path.GetFileName))}");
        using var zip = ZipFile.OpenRead(path);
        var files = zip.Entries.Select(e => e.FullName).ToHashSet();
        using var nuspec = zip.GetEntry(id + ".nuspec")!.Open();
        var deps = XDocument.Load(nuspec).Descendants().Where(e => e.Name.LocalName == "dependency")
            .ToDictionary(e => (string)e.Attribute("id")!, e => (string)e.Attribute("version")!);
        return new Package(files, deps);
    }

    static void CheckOutput(string stdout, string output)
    {
        Assert.Contains("tensor sum 15", stdout);
        // A LayerNorm output with γ = 1, β = 0 has mean(h²) = 1 per token, so 0 < mean|h| ≤ 1.
        var hidden = Regex.Match(stdout, @"bert hidden 1x5x16 mean\|h\| (\S+)");
        Assert.True(hidden.Success, "no forward-pass line in:\n" + stdout);
        double meanAbs = double.Parse(hidden.Groups[1].Value, CultureInfo.InvariantCulture);
        Assert.InRange(meanAbs, 0.05, 1.0 + 1e-5);
        // The loss is mean(h²) of that LayerNorm output: 1 before the first update, then lower.
        var trained = Regex.Match(stdout, @"trained 4 steps, loss (\S+) -> (\S+)");
        Assert.True(trained.Success, "no training line in:\n" + stdout);
        double first = double.Parse(trained.Groups[1].Value, CultureInfo.InvariantCulture);
        double last = double.Parse(trained.Groups[2].Value, CultureInfo.InvariantCulture);
        Close.Assert(first, 1.0, "first loss (mean of a LayerNorm output squared)", atol: 1e-5, rtol: 1e-5);   // printed with float32 precision
        Assert.True(last < first, $"loss should fall: {first} -> {last}");
        Assert.Equal(4, File.ReadLines(Path.Combine(output, "metrics.jsonl")).Count());
        Assert.True(new FileInfo(Path.Combine(output, "loss.png")).Length > 1000, "loss.png missing or empty");
        Assert.True(File.Exists(Path.Combine(output, "checkpoint.safetensors")));
    }

    /// <summary>Runs dotnet; fails with the command, its output and the log so far when it fails, warns or hangs.</summary>
    internal static string Run(string dotnet, string cwd, StringBuilder log, TimeSpan timeout, params string[] args)
    {
        var psi = new ProcessStartInfo(dotnet) { WorkingDirectory = cwd, RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in args) psi.ArgumentList.Add(a);
        // A child SDK must not inherit the test host's MSBuild locations; no build servers stay behind.
        foreach (var key in psi.Environment.Keys.Where(k => k.StartsWith("MSBUILD", StringComparison.OrdinalIgnoreCase)).ToList())
            psi.Environment.Remove(key);
        psi.Environment["MSBUILDDISABLENODEREUSE"] = "1";
        psi.Environment["DOTNET_CLI_USE_MSBUILD_SERVER"] = "0";
        psi.Environment["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1";
        psi.Environment["DOTNET_NOLOGO"] = "1";
        psi.Environment["DOTNET_SKIP_FIRST_TIME_EXPERIENCE"] = "1";
        psi.Environment["OMP_NUM_THREADS"] = "1";
        string command = "dotnet " + string.Join(' ', args);
        var sw = Stopwatch.StartNew();
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(timeout))
        {
            p.Kill(entireProcessTree: true);
            p.WaitForExit();
            Assert.Fail($"{command} (in {cwd}) did not finish within {timeout.TotalSeconds:F0} s\n{stdout.Result}\n{stderr.Result}\n--- earlier ---\n{log}");
        }
        string text = stdout.Result + stderr.Result, earlier = log.ToString();
        log.AppendLine($"$ {command}  ({sw.Elapsed.TotalSeconds:F1} s, exit {p.ExitCode})").AppendLine(text);
        string hint = text.Contains("Program.cs(") ? "\n(tests/fixtures/package-consumer/Program.cs uses the public API: update it when that API changes)" : "";
        Assert.True(p.ExitCode == 0, $"{command} (in {cwd}) exited with {p.ExitCode}:{hint}\n{text}\n--- earlier ---\n{earlier}");
        var warning = Regex.Match(text, @"^.*\bwarning [A-Z]+[0-9]+:.*$", RegexOptions.Multiline);
        Assert.False(warning.Success, $"{command} warned: {warning.Value}");
        return stdout.Result;
    }

    /// <summary>Deletes the throwaway version from the NuGet cache the consumer restored into.</summary>
    static void RemoveFromPackageCache(string consumer, string version)
    {
        var folders = new List<string>();
        string assets = Path.Combine(consumer, "obj", "project.assets.json");
        if (File.Exists(assets))
        {
            try
            {
                using var doc = JsonDocument.Parse(File.ReadAllText(assets));
                if (doc.RootElement.TryGetProperty("packageFolders", out var pf))
                    folders.AddRange(pf.EnumerateObject().Select(f => f.Name));
            }
            catch (JsonException) { }
        }
        folders.Add(Environment.GetEnvironmentVariable("NUGET_PACKAGES") is { Length: > 0 } env ? env
            : Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".nuget", "packages"));
        foreach (var folder in folders.Distinct())
            foreach (var id in PackageIds)
            {
                string idDir = Path.Combine(folder, id.ToLowerInvariant()), versionDir = Path.Combine(idDir, version.ToLowerInvariant());
                try
                {
                    if (Directory.Exists(versionDir)) Directory.Delete(versionDir, true);
                    if (Directory.Exists(idDir) && !Directory.EnumerateFileSystemEntries(idDir).Any()) Directory.Delete(idDir);
                }
                catch (IOException) { }
                catch (UnauthorizedAccessException) { }
            }
    }

    internal static string? FindOnPath(string name)
    {
        foreach (var dir in (Environment.GetEnvironmentVariable("PATH") ?? "").Split(Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries))
            foreach (var candidate in OperatingSystem.IsWindows() ? new[] { name + ".exe", name } : [name])
            {
                string p = Path.Combine(dir, candidate);
                if (File.Exists(p)) return p;
            }
        return null;
    }
}
