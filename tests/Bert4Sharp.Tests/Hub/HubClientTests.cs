namespace Bert4Sharp.Tests.Hub;

using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Bert4Sharp.Hub;
using Bert4Sharp.Models;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using TorchSharp;
using static TorchSharp.torch;

/// <summary>
/// A small fake of the Hugging Face hub on loopback, written by the test: the model-info API (<c>?blobs=true</c>: LFS
/// SHA-256 and git blob ids) and <c>resolve/</c> with HTTP ranges, plus switches that cut a transfer, corrupt a file or
/// demand a token. No real network.
/// </summary>
public sealed class FakeHub : IAsyncDisposable
{
    public const string Commit = "0123456789abcdef0123456789abcdef01234567";
    readonly WebApplication app;
    public Dictionary<string, Dictionary<string, byte[]>> Repos { get; } = new();
    public HashSet<string> Lfs { get; } = ["model.safetensors"];
    public int? CutAfter { get; set; }                 // abort the next weights transfer after this many bytes
    public bool Corrupt { get; set; }                  // flip a byte of the weights as they are served
    public string? RequiredToken { get; set; }
    public List<string> Requests { get; } = [];
    public string Url { get; }

    public FakeHub()
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.UseUrls("http://127.0.0.1:0");
        app = builder.Build();
        app.Use(async (c, next) =>
        {
            lock (Requests) Requests.Add($"{c.Request.Method} {c.Request.Path}{(c.Request.Headers.Range.Count > 0 ? " " + c.Request.Headers.Range : "")}");
            if (RequiredToken is not null && c.Request.Headers.Authorization != "Bearer " + RequiredToken) { c.Response.StatusCode = 401; return; }
            await next(c);
        });
        app.MapGet("/api/models/{org}/{name}/revision/{rev}", (string org, string name, string rev) =>
        {
            if (!Repos.TryGetValue($"{org}/{name}", out var files) || rev is not ("main" or Commit)) return Results.NotFound();
            return Results.Json(new
            {
                sha = Commit,
                siblings = files.Select(kv => Lfs.Contains(kv.Key)
                    ? (object)new { rfilename = kv.Key, size = kv.Value.Length, blobId = "0000", lfs = new { sha256 = Convert.ToHexStringLower(SHA256.HashData(kv.Value)), size = kv.Value.Length } }
                    : new { rfilename = kv.Key, size = kv.Value.Length, blobId = GitBlobId(kv.Value) }),
            });
        });
        app.MapGet("/{org}/{name}/resolve/{rev}/{**file}", async (HttpContext c, string org, string name, string rev, string file) =>
        {
            if (!Repos.TryGetValue($"{org}/{name}", out var files) || !files.TryGetValue(file, out var bytes) || rev != Commit) { c.Response.StatusCode = 404; return; }
            if (Corrupt && Lfs.Contains(file)) { bytes = (byte[])bytes.Clone(); bytes[^1] ^= 0xFF; }
            long from = 0;
            if (c.Request.Headers.Range.Count > 0 && c.Request.Headers.Range.ToString() is var r && r.StartsWith("bytes=") && long.TryParse(r[6..].TrimEnd('-'), out from))
            {
                c.Response.StatusCode = 206;
                c.Response.Headers.ContentRange = $"bytes {from}-{bytes.Length - 1}/{bytes.Length}";
            }
            c.Response.ContentLength = bytes.Length - from;
            if (CutAfter is int cut && Lfs.Contains(file))
            {
                CutAfter = null;
                await c.Response.Body.WriteAsync(bytes.AsMemory((int)from, cut));
                await c.Response.Body.FlushAsync();
                await Task.Delay(300);                                                          // the client has the headers and the first bytes
                c.Abort();                                                                      // then the connection drops mid-file
                return;
            }
            await c.Response.Body.WriteAsync(bytes.AsMemory((int)from));
        });
        app.StartAsync().GetAwaiter().GetResult();
        Url = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
    }

    public static string GitBlobId(byte[] content) =>
        Convert.ToHexStringLower(SHA1.HashData([.. Encoding.ASCII.GetBytes($"blob {content.Length}\0"), .. content]));

    public ValueTask DisposeAsync() => app.DisposeAsync();
}

/// <summary>Hub downloads against <see cref="FakeHub"/>: layout, verification, resume, offline, errors, AutoModel and the CLI.</summary>
public sealed class HubClientTests : IAsyncLifetime
{
    readonly string root = Directory.CreateTempSubdirectory("b4s-hub-").FullName;
    FakeHub hub = null!;
    byte[] weights = [];
    TransformerModel original = null!;

    HubOptions Options(bool offline = false, string? token = null) => new() { Endpoint = hub.Url, CacheDirectory = Path.Combine(root, "cache"), Offline = offline, Token = token };

    public ValueTask InitializeAsync()
    {
        hub = new FakeHub();
        string dir = Path.Combine(root, "source");
        Directory.CreateDirectory(dir);
        torch.manual_seed(11);
        var config = new TransformerConfig { ModelType = "bert", VocabSize = 40, HiddenSize = 16, NumHiddenLayers = 1, NumAttentionHeads = 2, IntermediateSize = 32, MaxPositionEmbeddings = 32 };
        original = TransformerModels.Build(config, null, ModelFamily.Get("bert"), Application.Encoder, new BuildOptions { Device = CPU }, out _);
        original.eval();
        original.SavePretrained(dir);
        File.WriteAllLines(Path.Combine(dir, "vocab.txt"), new[] { "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]" }.Concat(Enumerable.Range(0, 35).Select(i => ((char)('a' + i % 26)).ToString() + (i >= 26 ? "x" : ""))));
        weights = File.ReadAllBytes(Path.Combine(dir, "model.safetensors"));
        hub.Repos["org/tiny"] = new()
        {
            ["config.json"] = File.ReadAllBytes(Path.Combine(dir, "config.json")),
            ["model.safetensors"] = weights,
            ["vocab.txt"] = File.ReadAllBytes(Path.Combine(dir, "vocab.txt")),
            ["README.md"] = Encoding.UTF8.GetBytes("# not needed"),
            ["tf_model.h5"] = new byte[1000],
        };
        return ValueTask.CompletedTask;
    }

    public async ValueTask DisposeAsync()
    {
        await hub.DisposeAsync();
        try { Directory.Delete(root, true); } catch (IOException) { }
    }

    static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task Downloads_only_what_the_model_needs_into_the_hub_layout_and_loads_by_id()
    {
        string snapshot = await HubClient.DownloadAsync("org/tiny", "main", Options(), null, Ct);
        string repoDir = Path.Combine(root, "cache", "models--org--tiny");
        Assert.Equal(Path.Combine(repoDir, "snapshots", FakeHub.Commit), snapshot);
        Assert.Equal(FakeHub.Commit, File.ReadAllText(Path.Combine(repoDir, "refs", "main")));
        Assert.Equal(["config.json", "model.safetensors", "vocab.txt"], Directory.GetFileSystemEntries(snapshot).Select(Path.GetFileName).Order());
        var link = new FileInfo(Path.Combine(snapshot, "model.safetensors"));
        Assert.NotNull(link.LinkTarget);                                                      // a link into blobs/, as the hub's cache has it
        Assert.Equal(Path.Combine(repoDir, "blobs", Convert.ToHexStringLower(SHA256.HashData(weights))), Path.GetFullPath(Path.Combine(snapshot, link.LinkTarget!)));
        Assert.Equal(weights, File.ReadAllBytes(link.FullName));

        // Again: nothing is transferred (only the model-info call), and AutoModel loads it by id.
        int before = hub.Requests.Count(r => r.Contains("/resolve/"));
        var loaded = AutoModel.Load("org/tiny", new AutoModelOptions { Hub = Options() });
        Assert.Equal(before, hub.Requests.Count(r => r.Contains("/resolve/")));
        using var scope = torch.NewDisposeScope();
        var ids = torch.tensor(new long[] { 2, 7, 9, 3 }, [1, 4]);
        Close.Assert(loaded.Model.Encode(ids, null, null).LastHiddenState, original.Encode(ids, null, null).LastHiddenState, "the model loaded by hub id vs the original");
    }

    [Fact]
    public async Task An_interrupted_transfer_resumes_from_where_it_stopped()
    {
        hub.CutAfter = 3000;
        var e = await Assert.ThrowsAsync<HubException>(() => HubClient.DownloadAsync("org/tiny", "main", Options(), null, Ct));
        Assert.Contains("model.safetensors: the transfer stopped at", e.Message);
        Assert.Contains("run the download again to resume", e.Message);
        string part = Directory.GetFiles(Path.Combine(root, "cache", "models--org--tiny", "blobs"), "*.incomplete").Single();
        long kept = new FileInfo(part).Length;
        Assert.True(kept is > 0 and <= 3000, $"kept {kept} bytes");
        string snapshot = await HubClient.DownloadAsync("org/tiny", "main", Options(), null, Ct);
        Assert.Contains(hub.Requests, r => r.EndsWith($"model.safetensors bytes={kept}-"));
        Assert.Equal(weights, File.ReadAllBytes(Path.Combine(snapshot, "model.safetensors")));
        Assert.False(File.Exists(part));
    }

    [Fact]
    public async Task A_file_that_fails_its_checksum_is_deleted_with_a_clear_error()
    {
        hub.Corrupt = true;
        var e = await Assert.ThrowsAsync<HubException>(() => HubClient.DownloadAsync("org/tiny", "main", Options(), null, Ct));
        Assert.Contains("model.safetensors: the downloaded file does not match (SHA-256", e.Message);
        Assert.Contains("it was deleted", e.Message);
        Assert.Empty(Directory.GetFiles(Path.Combine(root, "cache", "models--org--tiny", "blobs"), "*" + Convert.ToHexStringLower(SHA256.HashData(weights)) + "*"));
        hub.Corrupt = false;
        Assert.Equal(weights, File.ReadAllBytes(Path.Combine(await HubClient.DownloadAsync("org/tiny", "main", Options(), null, Ct), "model.safetensors")));
    }

    [Fact]
    public async Task Offline_uses_the_cache_and_names_the_model_when_it_is_not_there()
    {
        var e = await Assert.ThrowsAsync<HubException>(() => HubClient.DownloadAsync("org/tiny", "main", Options(offline: true), null, Ct));
        Assert.Contains("HF_HUB_OFFLINE is set and org/tiny (revision main) is not in the cache", e.Message);
        Assert.Empty(hub.Requests);
        string online = await HubClient.DownloadAsync("org/tiny", "main", Options(), null, Ct);
        int count = hub.Requests.Count;
        Assert.Equal(online, await HubClient.DownloadAsync("org/tiny", "main", Options(offline: true), null, Ct));
        Assert.Equal(count, hub.Requests.Count);                                             // no network at all
    }

    [Fact]
    public async Task Missing_models_files_and_tokens_are_named()
    {
        var e1 = await Assert.ThrowsAsync<HubException>(() => HubClient.DownloadAsync("org/absent", "main", Options(), null, Ct));
        Assert.Contains("has no model org/absent at revision main (404)", e1.Message);
        hub.Repos["org/noconfig"] = new() { ["model.safetensors"] = weights };
        Assert.Contains("org/noconfig has no config.json", (await Assert.ThrowsAsync<HubException>(() => HubClient.DownloadAsync("org/noconfig", "main", Options(), null, Ct))).Message);
        hub.Repos["org/noweights"] = new() { ["config.json"] = hub.Repos["org/tiny"]["config.json"], ["tf_model.h5"] = new byte[10] };
        Assert.Contains("has no weights in a format this library reads", (await Assert.ThrowsAsync<HubException>(() => HubClient.DownloadAsync("org/noweights", "main", Options(), null, Ct))).Message);
        hub.RequiredToken = "secret";
        Assert.Contains("needs HF_TOKEN", (await Assert.ThrowsAsync<HubException>(() => HubClient.DownloadAsync("org/tiny", "main", Options(), null, Ct))).Message);
        Assert.True(Directory.Exists(await HubClient.DownloadAsync("org/tiny", "main", Options(token: "secret"), null, Ct)));
        Assert.Throws<ArgumentException>(() => HubClient.Download("not an id", "main", Options()));
    }

    [Fact]
    public void B4s_download_uses_the_hf_environment()
    {
        var env = new Dictionary<string, string> { ["HF_ENDPOINT"] = hub.Url, ["HF_HUB_CACHE"] = Path.Combine(root, "cli-cache"), ["HF_HUB_OFFLINE"] = "0" };
        var (code, stdout, stderr) = CliTests.B4sWith(env, "download", "org/tiny", "--json");
        Assert.True(code == 0, stderr);
        var doc = JsonDocument.Parse(stdout).RootElement;
        Assert.Equal(["config.json", "model.safetensors", "vocab.txt"], doc.GetProperty("files").EnumerateArray().Select(f => f.GetString()));
        Assert.StartsWith(Path.Combine(root, "cli-cache", "models--org--tiny", "snapshots"), doc.GetProperty("directory").GetString());
        // Then by id in another command, offline.
        var (code2, stdout2, stderr2) = CliTests.B4sWith(env.Concat([new("HF_HUB_OFFLINE", "1")]).GroupBy(kv => kv.Key).ToDictionary(g => g.Key, g => g.Last().Value), "encode", "--model", "org/tiny", "--json", "abc");
        Assert.True(code2 == 0, stderr2);
        Assert.Contains("\"mean\"", stdout2);
        var (code3, _, stderr3) = CliTests.B4sWith(new Dictionary<string, string> { ["HF_HUB_CACHE"] = Path.Combine(root, "empty"), ["HF_HUB_OFFLINE"] = "1" }, "download", "org/tiny");
        Assert.Equal(1, code3);
        Assert.Contains("org/tiny (revision main) is not in the cache", stderr3);
    }
}
