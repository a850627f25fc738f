namespace Bert4Sharp.Hub;

using System.Net;
using System.Net.Http.Headers;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;

/// <summary>
/// Where and how to reach the Hugging Face hub; <see cref="FromEnvironment"/> reads the variables huggingface_hub reads.
/// </summary>
public sealed record HubOptions
{
    /// <summary>The hub (<c>HF_ENDPOINT</c>; default https://huggingface.co).</summary>
    public string Endpoint { get; init; } = "https://huggingface.co";
    /// <summary>Bearer token for gated or private models (<c>HF_TOKEN</c>), or null.</summary>
    public string? Token { get; init; }
    /// <summary>The cache (<c>HF_HUB_CACHE</c>, else <c>HF_HOME</c>/hub, else ~/.cache/huggingface/hub): the hub's own layout, shared with Python.</summary>
    public string CacheDirectory { get; init; } = DefaultCache();
    /// <summary>Never touch the network; only what the cache holds (<c>HF_HUB_OFFLINE=1</c>).</summary>
    public bool Offline { get; init; }
    /// <summary>The HTTP client (tests pass one; default: a shared one with a 30 s connect timeout).</summary>
    public HttpClient? Http { get; init; }

    /// <summary>The options the environment sets.</summary>
    public static HubOptions FromEnvironment()
    {
        string? Env(string name) => Environment.GetEnvironmentVariable(name) is { Length: > 0 } v ? v : null;
        return new HubOptions
        {
            Endpoint = Env("HF_ENDPOINT")?.TrimEnd('/') ?? "https://huggingface.co",
            Token = Env("HF_TOKEN"),
            CacheDirectory = DefaultCache(),
            Offline = Env("HF_HUB_OFFLINE") is "1" or "true" or "TRUE" or "True" or "yes",
        };
    }

    static string DefaultCache()
    {
        if (Environment.GetEnvironmentVariable("HF_HUB_CACHE") is { Length: > 0 } cache) return cache;
        if (Environment.GetEnvironmentVariable("HF_HOME") is { Length: > 0 } home) return Path.Combine(home, "hub");
        string xdg = Environment.GetEnvironmentVariable("XDG_CACHE_HOME") is { Length: > 0 } x ? x : Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".cache");
        return Path.Combine(xdg, "huggingface", "hub");
    }
}

/// <summary>A failure talking to the hub or verifying what it sent; the message says what and what to do.</summary>
public sealed class HubException(string message, Exception? inner = null) : IOException(message, inner);

/// <summary>One file of a download: its path in the repository, and bytes as they arrive.</summary>
/// <param name="File">The path in the repository.</param>
/// <param name="Done">Bytes on disk so far (a resumed file starts at what it had).</param>
/// <param name="Total">The file's size, or null when unknown.</param>
public readonly record struct DownloadProgress(string File, long Done, long? Total);

/// <summary>
/// Downloads a model from the Hugging Face hub into the hub's cache layout (<c>models--org--name/blobs</c>,
/// <c>snapshots/&lt;commit&gt;</c>, <c>refs/&lt;revision&gt;</c>): only the files a model needs (config, the weights in
/// the best format the repository has, tokenizer files), resumed where an earlier transfer stopped, and checked — LFS files
/// against their SHA-256, the others against their git blob id. <c>b4s download</c> and <c>AutoModel.Load("org/name")</c>.
/// </summary>
public static class HubClient
{
    static readonly Lazy<HttpClient> shared = new(() => new HttpClient(new SocketsHttpHandler { ConnectTimeout = TimeSpan.FromSeconds(30) }) { Timeout = Timeout.InfiniteTimeSpan });
    static readonly Regex RepoId = new(@"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$", RegexOptions.CultureInvariant);

    /// <summary>Whether <paramref name="text"/> reads as a hub model id (<c>org/name</c>) rather than a path that exists.</summary>
    public static bool LooksLikeRepoId(string text) => RepoId.IsMatch(text) && !Directory.Exists(text) && !File.Exists(text);

    /// <summary>The files a model needs, in order of preference for the weights (the first format the repository has wins).</summary>
    static readonly string[][] WeightChoices =
    [
        ["model.safetensors"], ["model.safetensors.index.json"], ["pytorch_model.bin"], ["pytorch_model.bin.index.json"], ["model.onnx"], ["onnx/model.onnx"],
    ];

    static readonly string[] Always =
    [
        "config.json", "bert_config.json", "generation_config.json", "vocab.txt", "spiece.model", "sentencepiece.bpe.model",
        "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "sentence_bert_config.json",
    ];

    /// <summary>
    /// The local snapshot directory of <paramref name="repo"/> at <paramref name="revision"/>, downloading what is missing
    /// (nothing when the cache already has it, and nothing at all offline).
    /// </summary>
    /// <exception cref="HubException">Offline without the model, no such model, no access, a transfer or checksum failure.</exception>
    public static async Task<string> DownloadAsync(string repo, string revision = "main", HubOptions? options = null, IProgress<DownloadProgress>? progress = null, CancellationToken cancellation = default)
    {
        options ??= HubOptions.FromEnvironment();
        if (!RepoId.IsMatch(repo)) throw new ArgumentException($"'{repo}' is not a hub model id (org/name)", nameof(repo));
        string root = Path.Combine(options.CacheDirectory, "models--" + repo.Replace("/", "--"));
        if (options.Offline) return Cached(repo, revision, root, options);

        var http = options.Http ?? shared.Value;
        var info = await GetInfo(http, repo, revision, options, cancellation);
        var files = Choose(repo, info.Files);
        string snapshot = Path.Combine(root, "snapshots", info.Commit);
        Directory.CreateDirectory(Path.Combine(root, "blobs"));
        foreach (var file in files)
            await Fetch(http, repo, info.Commit, file, root, snapshot, options, progress, cancellation);
        // Sharded weights: the index names its shards.
        foreach (var index in files.Where(f => f.Path.EndsWith(".index.json", StringComparison.Ordinal)).ToList())
        {
            using var doc = JsonDocument.Parse(File.ReadAllBytes(Path.Combine(snapshot, index.Path)));
            var shards = doc.RootElement.GetProperty("weight_map").EnumerateObject().Select(p => p.Value.GetString()!).Distinct();
            foreach (string shard in shards)
            {
                var entry = info.Files.FirstOrDefault(f => f.Path == shard) ?? throw new HubException($"{repo}: {index.Path} names the shard {shard}, which the repository does not have");
                await Fetch(http, repo, info.Commit, entry, root, snapshot, options, progress, cancellation);
            }
        }
        Directory.CreateDirectory(Path.Combine(root, "refs"));
        if (revision != info.Commit) WriteAtomically(Path.Combine(root, "refs", revision), Encoding.ASCII.GetBytes(info.Commit));
        return snapshot;
    }

    /// <summary>Synchronous <see cref="DownloadAsync"/>.</summary>
    public static string Download(string repo, string revision = "main", HubOptions? options = null, IProgress<DownloadProgress>? progress = null) =>
        DownloadAsync(repo, revision, options, progress).GetAwaiter().GetResult();

    static string Cached(string repo, string revision, string root, HubOptions options)
    {
        string commit = File.Exists(Path.Combine(root, "refs", revision)) ? File.ReadAllText(Path.Combine(root, "refs", revision)).Trim() : revision;
        string snapshot = Path.Combine(root, "snapshots", commit);
        if (!Directory.Exists(snapshot) || !Directory.EnumerateFileSystemEntries(snapshot).Any())
            throw new HubException($"HF_HUB_OFFLINE is set and {repo} (revision {revision}) is not in the cache {options.CacheDirectory}: download it first (b4s download {repo}) with the network on, or unset HF_HUB_OFFLINE");
        return snapshot;
    }

    sealed record RepoFile(string Path, long? Size, string? Sha256, string? BlobId);

    sealed record RepoInfo(string Commit, IReadOnlyList<RepoFile> Files);

    static HttpRequestMessage Request(HttpMethod method, string url, HubOptions options)
    {
        var request = new HttpRequestMessage(method, url);
        if (options.Token is { } token) request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", token);
        request.Headers.UserAgent.ParseAdd("bert4sharp/0.1");
        return request;
    }

    static async Task<RepoInfo> GetInfo(HttpClient http, string repo, string revision, HubOptions options, CancellationToken ct)
    {
        string url = $"{options.Endpoint}/api/models/{repo}/revision/{Uri.EscapeDataString(revision)}?blobs=true";
        HttpResponseMessage response;
        try { response = await http.SendAsync(Request(HttpMethod.Get, url, options), ct); }
        catch (HttpRequestException e) { throw new HubException($"{repo} is not a local directory, and {options.Endpoint} cannot be reached to fetch it as a hub model: {e.Message} (offline? HF_HUB_OFFLINE=1 uses the cache, HF_ENDPOINT a mirror)", e); }
        using (response)
        {
            Check(response, repo, revision, options);
            using var doc = JsonDocument.Parse(await response.Content.ReadAsStringAsync(ct));
            var r = doc.RootElement;
            string commit = r.TryGetProperty("sha", out var sha) && sha.GetString() is { Length: > 0 } s ? s : throw new HubException($"{url}: the answer has no commit 'sha'");
            var files = new List<RepoFile>();
            if (r.TryGetProperty("siblings", out var siblings))
                foreach (var f in siblings.EnumerateArray())
                {
                    string path = f.GetProperty("rfilename").GetString()!;
                    long? size = f.TryGetProperty("size", out var sz) && sz.ValueKind == JsonValueKind.Number ? sz.GetInt64() : null;
                    string? sha256 = null;
                    if (f.TryGetProperty("lfs", out var lfs) && lfs.ValueKind == JsonValueKind.Object)
                    {
                        sha256 = lfs.TryGetProperty("sha256", out var h) ? h.GetString() : lfs.TryGetProperty("oid", out var o) ? o.GetString() : null;
                        if (lfs.TryGetProperty("size", out var ls) && ls.ValueKind == JsonValueKind.Number) size = ls.GetInt64();
                    }
                    string? blob = f.TryGetProperty("blobId", out var b) ? b.GetString() : null;
                    files.Add(new RepoFile(path, size, sha256, blob));
                }
            return new RepoInfo(commit, files);
        }
    }

    static void Check(HttpResponseMessage response, string repo, string revision, HubOptions options)
    {
        if (response.IsSuccessStatusCode) return;
        throw response.StatusCode switch
        {
            HttpStatusCode.Unauthorized or HttpStatusCode.Forbidden => new HubException($"{options.Endpoint} refused {repo} ({(int)response.StatusCode}): a gated or private model needs HF_TOKEN with access to it"),
            HttpStatusCode.NotFound => new HubException($"{options.Endpoint} has no model {repo} at revision {revision} (404), and no local directory {repo} exists: check the path, or the id and --revision"),
            _ => new HubException($"{options.Endpoint} answered {(int)response.StatusCode} {response.ReasonPhrase} for {repo}"),
        };
    }

    static List<RepoFile> Choose(string repo, IReadOnlyList<RepoFile> files)
    {
        var byPath = files.ToDictionary(f => f.Path);
        var chosen = Always.Where(byPath.ContainsKey).Select(p => byPath[p]).ToList();
        if (!chosen.Any(f => f.Path is "config.json" or "bert_config.json"))
            throw new HubException($"{repo} has no config.json: it is not a Transformers model this library can build (files: {string.Join(", ", files.Select(f => f.Path).Take(20))})");
        var weights = WeightChoices.FirstOrDefault(c => c.All(byPath.ContainsKey))
            ?? throw new HubException($"{repo} has no weights in a format this library reads (model.safetensors, pytorch_model.bin, their sharded indexes, model.onnx); files: {string.Join(", ", files.Select(f => f.Path).Take(20))}");
        chosen.AddRange(weights.Select(p => byPath[p]));
        return chosen;
    }

    /// <summary>One file into blobs/ (resumed from a <c>.incomplete</c> part, verified) and linked into the snapshot.</summary>
    static async Task Fetch(HttpClient http, string repo, string commit, RepoFile file, string root, string snapshot, HubOptions options, IProgress<DownloadProgress>? progress, CancellationToken ct)
    {
        string target = Path.Combine(snapshot, file.Path);
        string blobName = file.Sha256 ?? file.BlobId ?? Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(commit + "/" + file.Path)));
        string blob = Path.Combine(root, "blobs", blobName);
        if (File.Exists(target) && File.Exists(blob)) { progress?.Report(new DownloadProgress(file.Path, new FileInfo(blob).Length, file.Size)); return; }
        if (!File.Exists(blob))
        {
            string part = blob + ".incomplete";
            long have = File.Exists(part) ? new FileInfo(part).Length : 0;
            string url = $"{options.Endpoint}/{repo}/resolve/{commit}/{string.Join('/', file.Path.Split('/').Select(Uri.EscapeDataString))}";
            using var request = Request(HttpMethod.Get, url, options);
            if (have > 0) request.Headers.Range = new RangeHeaderValue(have, null);
            HttpResponseMessage response;
            try { response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, ct); }
            catch (HttpRequestException e) { throw new HubException($"{repo}/{file.Path}: the transfer failed ({e.Message}); run the download again to resume from {have:N0} bytes", e); }
            using (response)
            {
                Check(response, repo, commit, options);
                bool resumed = have > 0 && response.StatusCode == HttpStatusCode.PartialContent;
                if (!resumed) have = 0;                                                  // the server sent the whole file
                await using (var output = new FileStream(part, resumed ? FileMode.Append : FileMode.Create, FileAccess.Write))
                await using (var input = await response.Content.ReadAsStreamAsync(ct))
                {
                    var buffer = new byte[1 << 16];
                    long done = have;
                    var lastReport = DateTime.MinValue;
                    try
                    {
                        int n;
                        while ((n = await input.ReadAsync(buffer, ct)) > 0)
                        {
                            await output.WriteAsync(buffer.AsMemory(0, n), ct);
                            done += n;
                            if (DateTime.UtcNow - lastReport > TimeSpan.FromMilliseconds(100)) { progress?.Report(new DownloadProgress(file.Path, done, file.Size)); lastReport = DateTime.UtcNow; }
                        }
                    }
                    catch (Exception e) when (e is IOException or HttpRequestException)
                    {
                        throw new HubException($"{repo}/{file.Path}: the transfer stopped at {done:N0} of {(file.Size is long t ? t.ToString("N0") : "?")} bytes ({e.Message}); run the download again to resume", e);
                    }
                    progress?.Report(new DownloadProgress(file.Path, done, file.Size));
                }
            }
            Verify(repo, file, part);
            File.Move(part, blob, overwrite: true);
        }
        Link(blob, target);
    }

    /// <summary>Size, then SHA-256 (LFS) or the git blob id (SHA-1 of "blob {size}\0" + content); a mismatch deletes the file.</summary>
    static void Verify(string repo, RepoFile file, string path)
    {
        long size = new FileInfo(path).Length;
        string? problem = null;
        if (file.Size is long expected && size != expected) problem = $"{size:N0} bytes arrived, {expected:N0} expected";
        else if (file.Sha256 is { } sha256)
        {
            using var s = File.OpenRead(path);
            string actual = Convert.ToHexStringLower(SHA256.HashData(s));
            if (!actual.Equals(sha256, StringComparison.OrdinalIgnoreCase)) problem = $"SHA-256 {actual}, the hub's LFS metadata says {sha256}";
        }
        else if (file.BlobId is { } blobId)
        {
            using var sha1 = IncrementalHash.CreateHash(HashAlgorithmName.SHA1);
            sha1.AppendData(Encoding.ASCII.GetBytes($"blob {size}\0"));
            sha1.AppendData(File.ReadAllBytes(path));
            string actual = Convert.ToHexStringLower(sha1.GetHashAndReset());
            if (!actual.Equals(blobId, StringComparison.OrdinalIgnoreCase)) problem = $"git blob id {actual}, the hub says {blobId}";
        }
        if (problem is null) return;
        File.Delete(path);
        throw new HubException($"{repo}/{file.Path}: the downloaded file does not match ({problem}); it was deleted — run the download again (a proxy or mirror that alters files would fail the same way)");
    }

    /// <summary>The snapshot entry: a relative symbolic link to the blob as the hub's cache has it, or a copy where links are not allowed.</summary>
    static void Link(string blob, string target)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(target)!);
        if (File.Exists(target) || Directory.Exists(target)) File.Delete(target);
        try { File.CreateSymbolicLink(target, Path.GetRelativePath(Path.GetDirectoryName(target)!, blob)); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or PlatformNotSupportedException) { File.Copy(blob, target, overwrite: true); }
    }

    static void WriteAtomically(string path, byte[] bytes)
    {
        string temp = path + "." + Guid.NewGuid().ToString("N") + ".tmp";
        File.WriteAllBytes(temp, bytes);
        File.Move(temp, path, overwrite: true);
    }
}
