namespace Bert4Sharp.Cli;

using System.CommandLine;
using Bert4Sharp.Serving;

/// <summary><c>b4s serve</c>: models behind an OpenAI-compatible HTTP API and a web page (<see cref="ServerApp"/>; docs/serving.md).</summary>
internal static class ServeCommand
{
    public static Command Create()
    {
        var models = new Option<string[]>("--model")
        {
            Description = $"A model directory or Hugging Face hub id to serve, as DIR or NAME=DIR (repeat for several: sentence encoders serve embeddings and fill-mask, GPT/T5 models completions, b4s clue train models classification or NER). Default: {DefaultModel.Description}",
            AllowMultipleArgumentsPerToken = false,
        };
        var engine = new Option<string?>("--engine") { Description = "torch (TorchSharp, any checkpoint) or onnx (ONNX Runtime on model.onnx) for every model; default per model: onnx for a directory whose only weights are model.onnx (the built-in model, b4s export onnx), torch otherwise" };
        engine.AcceptOnlyFromAmong("torch", "onnx");
        var host = new Option<string>("--host") { Description = "Address to listen on (0.0.0.0 for every interface)", DefaultValueFactory = _ => "127.0.0.1" };
        var port = new Option<int>("--port") { Description = "Port (0: any free one, printed)", DefaultValueFactory = _ => 8000 };
        var maxBatch = new Option<int>("--max-batch") { Description = "Texts per forward pass of the embedding micro-batcher (1: no batching across requests)", DefaultValueFactory = _ => 64 };
        var maxDelay = new Option<double>("--max-batch-delay-ms") { Description = "How long a batch waits for more requests (default 0: it takes whatever queued while the previous forward pass ran)", DefaultValueFactory = _ => 0 };
        var maxConcurrent = new Option<int>("--max-concurrent") { Description = "Requests in progress at most; beyond it 429 with Retry-After", DefaultValueFactory = _ => 32 };
        var maxBody = new Option<long>("--max-body-bytes") { Description = "Largest request body", DefaultValueFactory = _ => 1 << 20 };
        var precision = PrecisionOption.Create(training: false);
        var cmd = new Command("serve", "Serve models over HTTP: OpenAI-compatible /v1/embeddings, /v1/completions, /v1/chat/completions (streaming); /v1/fill-mask, /v1/classify, /v1/ner; a web page at / (docs/serving.md)")
            { models, engine, host, port, maxBatch, maxDelay, maxConcurrent, maxBody, precision };
        cmd.SetAction(CliErrors.Wrap(r =>
        {
            var given = r.GetValue(models) ?? [];
            var specs = new List<ModelSpec>();
            var p = PrecisionOption.Parse(r.GetValue(precision));
            if (given.Length == 0)
                specs.Add(new ModelSpec(DefaultModel.Name, DefaultModel.Ensure(), r.GetValue(engine) ?? "onnx", p));
            foreach (string m in given)
            {
                int eq = m.IndexOf('=');
                string dir = eq > 0 ? m[(eq + 1)..] : m;
                string name = eq > 0 ? m[..eq] : Hub.HubClient.LooksLikeRepoId(dir) ? dir : Path.GetFileName(Path.TrimEndingDirectorySeparator(Path.GetFullPath(dir)));
                if (Hub.HubClient.LooksLikeRepoId(dir)) dir = Hub.HubClient.Download(dir);                 // org/name from the hub
                specs.Add(new ModelSpec(name, dir, r.GetValue(engine) ?? EngineFor(dir), p));
            }
            var options = new ServeOptions
            {
                Models = specs, MaxBatch = r.GetValue(maxBatch), MaxBatchDelay = TimeSpan.FromMilliseconds(r.GetValue(maxDelay)),
                MaxConcurrentRequests = r.GetValue(maxConcurrent), MaxBodyBytes = r.GetValue(maxBody),
            };
            string h = r.GetValue(host)!;
            // Kestrel would take a host it cannot parse as "every interface": a typo must not expose the server.
            if (h != "localhost" && !System.Net.IPAddress.TryParse(h, out _))
                throw new ArgumentException($"--host must be an IP address (127.0.0.1, 0.0.0.0 for every interface, ::1) or localhost, got '{h}'");
            int portNumber = r.GetValue(port);
            if (portNumber is < 0 or > 65535) throw new ArgumentException($"--port must be in [0, 65535], got {portNumber}");
            string url = $"http://{(h.Contains(':') ? $"[{h}]" : h)}:{portNumber}";
            var server = ServerApp.Create(options, [url]);
            server.StartAsync().GetAwaiter().GetResult();
            foreach (string a in server.Addresses) Console.WriteLine($"serving on {a} — the page at {a}/, the API under {a}/v1, OpenAPI at {a}/openapi/v1.json (Ctrl+C stops)");
            server.WaitForShutdownAsync().GetAwaiter().GetResult();
            server.DisposeAsync().AsTask().GetAwaiter().GetResult();
            return CliErrors.Ok;
        }));
        return cmd;
    }

    /// <summary>onnx when model.onnx is the directory's only weights file, else torch (which reads every format).</summary>
    static string EngineFor(string dir)
    {
        if (!Directory.Exists(dir) || !File.Exists(Path.Combine(dir, "model.onnx"))) return "torch";
        string[] weights = ["*.safetensors", "*.bin", "*.pt", "*.pth", "*.index", "*.ckpt*"];
        return weights.Any(w => Directory.EnumerateFiles(dir, w).Any()) ? "torch" : "onnx";
    }
}
