namespace Bert4Sharp.Serving;

using System.Reflection;
using System.Runtime.InteropServices;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Hosting;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

/// <summary>
/// <c>b4s serve</c>: the models of <see cref="ServeOptions"/> behind an OpenAI-compatible API (<c>/v1/embeddings</c>,
/// <c>/v1/completions</c>, <c>/v1/chat/completions</c>, <c>/v1/models</c>), Bert4Sharp's <c>/v1/fill-mask</c>,
/// <c>/health</c>, the OpenAPI document at <c>/openapi/v1.json</c> and the web page at <c>/</c>. docs/serving.md.
/// </summary>
public sealed class ServerApp : IAsyncDisposable
{
    readonly SemaphoreSlim slots;
    long rejected;

    ServerApp(WebApplication app, ServeOptions options, IReadOnlyDictionary<string, ServedModel> models)
    {
        App = app;
        Options = options;
        Models = models;
        slots = new SemaphoreSlim(options.MaxConcurrentRequests, options.MaxConcurrentRequests);
    }

    /// <summary>The ASP.NET Core application (start it with <c>StartAsync</c> or <c>RunAsync</c>).</summary>
    public WebApplication App { get; }
    /// <summary>The options.</summary>
    public ServeOptions Options { get; }
    /// <summary>The loaded models by name.</summary>
    public IReadOnlyDictionary<string, ServedModel> Models { get; }
    /// <summary>Requests refused with 429 so far.</summary>
    public long Rejected => Interlocked.Read(ref rejected);
    /// <summary>Requests in progress now.</summary>
    public int InFlight => Options.MaxConcurrentRequests - slots.CurrentCount;

    /// <summary>Loads the models and builds the application listening on <paramref name="urls"/> (e.g. <c>http://127.0.0.1:8000</c>; port 0 picks a free one).</summary>
    public static ServerApp Create(ServeOptions options, IEnumerable<string> urls, Action<string>? log = null)
    {
        options.Validate();
        log ??= Console.WriteLine;
        var models = new Dictionary<string, ServedModel>();
        try
        {
            foreach (var spec in options.Models)
            {
                var m = ServedModel.Load(spec, options);
                models[spec.Name] = m;
                log($"model '{spec.Name}': {m.Kind} on {m.Engine}, from {spec.Directory}");
            }
        }
        catch
        {
            foreach (var m in models.Values) m.Dispose();
            throw;
        }
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.ConfigureKestrel(k => k.Limits.MaxRequestBodySize = options.MaxBodyBytes);
        builder.WebHost.UseUrls([.. urls]);
        builder.Services.AddOpenApi();
        builder.Services.ConfigureHttpJsonOptions(j => j.SerializerOptions.Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping);
        var app = builder.Build();
        var server = new ServerApp(app, options, models);
        server.Map();
        return server;
    }

    /// <summary>The addresses Kestrel listens on (after <see cref="StartAsync"/>; a port 0 is resolved).</summary>
    public IReadOnlyList<string> Addresses =>
        App.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>() is { Addresses.Count: > 0 } f ? [.. f.Addresses] : [.. App.Urls];

    /// <summary>Starts listening.</summary>
    public Task StartAsync(CancellationToken cancellation = default) => App.StartAsync(cancellation);

    /// <summary>Waits until the process is asked to stop (Ctrl+C, SIGTERM) or <paramref name="cancellation"/> fires.</summary>
    public Task WaitForShutdownAsync(CancellationToken cancellation = default) => App.WaitForShutdownAsync(cancellation);

    void Map()
    {
        App.Use(Guard);
        App.MapOpenApi();
        App.MapGet("/health", () => Results.Json(new
        {
            status = "ok",
            in_flight = InFlight,
            rejected = Rejected,
            models = Models.Values.Select(m => m switch
            {
                EmbeddingModel e => (object)new { name = m.Name, kind = m.Kind, engine = m.Engine, batches = e.Batcher.Batches, inputs = e.Batcher.Inputs, largest_batch = e.Batcher.Largest },
                GenerationModel g => new { name = m.Name, kind = m.Kind, engine = m.Engine, active_decodes = g.ActiveDecodes, cancelled_decodes = g.CancelledDecodes },
                _ => new { name = m.Name, kind = m.Kind, engine = m.Engine },
            }),
        })).WithSummary("Liveness and counters");
        App.MapGet("/v1/models", () => Results.Json(new
        {
            @object = "list",
            data = Models.Values.Select(m => new
            {
                id = m.Name, @object = "model", created = 0, owned_by = "bert4sharp", kind = m.Kind, engine = m.Engine,
                fill_mask = m is EmbeddingModel { CanFillMask: true },
                labels = (m as TaskModel)?.Labels,
            }),
        })).WithSummary("The models this server holds");
        App.MapPost("/v1/embeddings", (Delegate)Embeddings).Accepts<EmbeddingRequest>("application/json").Produces(200).Produces<ErrorBody>(400).WithSummary("OpenAI embeddings");
        App.MapPost("/v1/classify", (Delegate)Classify).Accepts<ClassifyRequest>("application/json").Produces(200).Produces<ErrorBody>(400).WithSummary("Labels with probabilities from a text classifier task model");
        App.MapPost("/v1/ner", (Delegate)Recognize).Accepts<NerRequest>("application/json").Produces(200).Produces<ErrorBody>(400).WithSummary("Entity spans from a CLUENER task model");
        App.MapPost("/v1/fill-mask", (Delegate)FillMask).Accepts<FillMaskRequest>("application/json").Produces(200).Produces<ErrorBody>(400).WithSummary("Candidates for each [MASK]");
        Completions.Map(this);
        App.MapGet("/", (HttpContext c) => Static(c, "index.html")).ExcludeFromDescription();
        App.MapGet("/{file}", (HttpContext c, string file) => Static(c, file)).ExcludeFromDescription();
    }

    /// <summary>
    /// Every request: /v1 requests take a slot (429 with Retry-After when none is free); refused input becomes an OpenAI
    /// error body with its 4xx; a client that went away ends quietly; anything else is a 500 in the same shape.
    /// </summary>
    async Task Guard(HttpContext context, RequestDelegate next)
    {
        bool limited = context.Request.Path.StartsWithSegments("/v1");
        if (limited && !slots.Wait(0))
        {
            Interlocked.Increment(ref rejected);
            context.Response.Headers.RetryAfter = "1";
            await Write(context, new RequestException(429, $"the server is at its limit of {Options.MaxConcurrentRequests} concurrent requests; retry after 1 s", null, "rate_limit_exceeded", "rate_limit_exceeded"));
            return;
        }
        try
        {
            await next(context);
            // Routing's own refusals (no such path, wrong method, not JSON) get a body in the same shape.
            if (!context.Response.HasStarted && context.Response.StatusCode is 404 or 405 or 415)
                await Write(context, new RequestException(context.Response.StatusCode, context.Response.StatusCode switch
                {
                    404 => $"no endpoint at {context.Request.Path} (GET /v1/models, POST /v1/embeddings, /v1/completions, /v1/chat/completions, /v1/fill-mask)",
                    405 => $"{context.Request.Method} is not allowed on {context.Request.Path}",
                    _ => "send the body as JSON with Content-Type: application/json",
                }));
        }
        catch (RequestException e) { await Write(context, e); }
        catch (BadHttpRequestException e) { await Write(context, new RequestException(e.StatusCode, e.StatusCode == 413 ? $"the request body is larger than the server's limit of {Options.MaxBodyBytes:N0} bytes" : e.Message)); }
        catch (OperationCanceledException) when (context.RequestAborted.IsCancellationRequested) { }
        catch (Exception e) when (!context.Response.HasStarted)
        {
            App.Logger.LogError(e, "request failed");
            await Write(context, new RequestException(500, $"internal error: {e.GetType().Name}: {e.Message}", null, "server_error"));
        }
        finally { if (limited) slots.Release(); }
    }

    static async Task Write(HttpContext context, RequestException e)
    {
        if (context.Response.HasStarted) return;
        context.Response.StatusCode = e.Status;
        await context.Response.WriteAsJsonAsync(e.Body);
    }

    /// <summary>The model a request names, of the wanted kind; without a name, the only model of that kind.</summary>
    internal T Resolve<T>(string? name, string kind, string? modelKind = null) where T : ServedModel
    {
        if (name is not null)
        {
            if (!Models.TryGetValue(name, out var m))
                throw new RequestException(404, $"model '{name}' does not exist here; this server has {string.Join(", ", Models.Keys.Select(k => $"'{k}'"))} (GET /v1/models)", "model", "invalid_request_error", "model_not_found");
            return m is T t && (modelKind is null || m.Kind == modelKind) ? t : throw new RequestException(400, $"model '{name}' is a {m.Kind} model and cannot serve {kind}", "model");
        }
        var candidates = Models.Values.OfType<T>().Where(m => modelKind is null || m.Kind == modelKind).ToList();
        return candidates.Count == 1 ? candidates[0]
            : throw new RequestException(400, candidates.Count == 0 ? $"this server has no model for {kind}" : $"'model' is required: this server has several models for {kind}", "model");
    }

    async Task<IResult> Embeddings(HttpContext context)
    {
        var (req, doc) = await RequestReader.ReadAsync(context.Request, context.RequestAborted);
        using var _ = doc;
        var input = req.Strings("input", required: true, Options.MaxInputs);
        string format = req.String("encoding_format") ?? "float";
        if (format is not ("float" or "base64")) throw new RequestException(400, $"'encoding_format' must be float or base64, got '{format}'", "encoding_format");
        var model = Resolve<EmbeddingModel>(req.String("model"), "embeddings");
        var encoder = model.Encoder;
        int? dimensions = req.Int("dimensions", 1, encoder.Dimensions);
        if (dimensions is int d && d != encoder.Dimensions && encoder.Whitening is null)
            throw new RequestException(400, $"model '{model.Name}' gives {encoder.Dimensions}-dimensional vectors; fewer 'dimensions' need a whitening fitted to it (b4s whiten, then whitening.safetensors in the model directory)", "dimensions");
        int tokens = 0;
        for (int i = 0; i < input.Count; i++)
        {
            int n = encoder.Tokenizer.Encode(input[i]).Count;
            if (n > encoder.MaxLength)
                throw new RequestException(400, $"input {i} has {n} tokens; model '{model.Name}' takes at most {encoder.MaxLength}", "input", "invalid_request_error", "context_length_exceeded");
            tokens += n;
        }
        if (tokens > Options.MaxTokensPerRequest)
            throw new RequestException(400, $"the inputs have {tokens:N0} tokens together; at most {Options.MaxTokensPerRequest:N0} per request", "input");
        var vectors = await model.Batcher.RunAsync(input, context.RequestAborted);
        if (dimensions is int k && k < encoder.Dimensions) vectors = [.. vectors.Select(v => Truncate(v, k, encoder.Options.Normalize))];
        return Results.Json(new
        {
            @object = "list",
            data = vectors.Select((v, i) => new { @object = "embedding", index = i, embedding = format == "base64" ? (object)Convert.ToBase64String(MemoryMarshal.AsBytes(v.AsSpan())) : v }),
            model = model.Name,
            usage = new { prompt_tokens = tokens, total_tokens = tokens },
        });
    }

    /// <summary>The first <paramref name="k"/> whitened components (ordered by variance), unit length again when the model normalises.</summary>
    static float[] Truncate(float[] v, int k, bool normalize)
    {
        var t = v[..k];
        if (!normalize) return t;
        double norm = Math.Sqrt(t.Sum(x => (double)x * x));
        if (norm > 0) for (int i = 0; i < k; i++) t[i] = (float)(t[i] / norm);
        return t;
    }

    /// <summary>The texts of a task request, each within the model's length (longer ones are refused, not cut).</summary>
    IReadOnlyList<string> TaskTexts(RequestReader req, string field) => req.Strings(field, required: true, Options.MaxInputs);

    async Task<IResult> Classify(HttpContext context)
    {
        var (req, doc) = await RequestReader.ReadAsync(context.Request, context.RequestAborted);
        using var _ = doc;
        var input = TaskTexts(req, "input");
        var pairs = req.Field("pair") is null ? null : TaskTexts(req, "pair");
        if (pairs is not null && pairs.Count != input.Count) throw new RequestException(400, $"'pair' has {pairs.Count} texts but 'input' has {input.Count}", "pair");
        var model = Resolve<TaskModel>(req.String("model"), "classification", "classification");
        var predictions = await Task.Run(() => model.Classify(input, pairs), context.RequestAborted);
        return Results.Json(new
        {
            model = model.Name,
            data = predictions.Select((p, i) => new { index = i, label = p.Label, probabilities = model.Labels.Select((l, k) => (l, k)).ToDictionary(x => x.l, x => p.Probabilities[x.k]) }),
        });
    }

    async Task<IResult> Recognize(HttpContext context)
    {
        var (req, doc) = await RequestReader.ReadAsync(context.Request, context.RequestAborted);
        using var _ = doc;
        var input = TaskTexts(req, "input");
        var model = Resolve<TaskModel>(req.String("model"), "entity recognition", "ner");
        var spans = await Task.Run(() => model.Recognize(input), context.RequestAborted);
        // Offsets are UTF-16 code units [start, end), as JavaScript and .NET index strings.
        return Results.Json(new
        {
            model = model.Name,
            data = spans.Select((s, i) => new { index = i, entities = s.Select(e => new { type = e.Type, start = e.Start, end = e.End, text = input[i][e.Start..e.End] }) }),
        });
    }

    async Task<IResult> FillMask(HttpContext context)
    {
        var (req, doc) = await RequestReader.ReadAsync(context.Request, context.RequestAborted);
        using var _ = doc;
        var model = Resolve<EmbeddingModel>(req.String("model"), "fill-mask");
        if (!model.CanFillMask) throw new RequestException(400, $"model '{model.Name}' has no masked-LM head; fill-mask needs one (an MLM checkpoint)", "model");
        string text = req.String("text") ?? throw new RequestException(400, "'text' is required", "text");
        int topK = req.Int("top_k", 1, 100) ?? 5;
        int n = model.Encoder.Tokenizer.Encode(text).Count;
        if (n > model.Encoder.MaxLength) throw new RequestException(400, $"'text' has {n} tokens; model '{model.Name}' takes at most {model.Encoder.MaxLength}", "text");
        try
        {
            var candidates = await Task.Run(() => model.FillMask(text, topK), context.RequestAborted);
            return Results.Json(new
            {
                model = model.Name,
                candidates = candidates.Select(c => new { position = c.Position, token = c.Token, id = c.Id, probability = c.Probability, text = c.Text }),
            });
        }
        catch (ArgumentException e) { throw new RequestException(400, e.Message, "text"); }
    }

    static readonly Assembly Self = typeof(ServerApp).Assembly;

    static IResult Static(HttpContext context, string file)
    {
        var stream = Self.GetManifestResourceStream("wwwroot/" + file);
        if (stream is null) return Results.Json(new RequestException(404, $"no page '{file}'").Body, statusCode: 404);
        string type = Path.GetExtension(file) switch { ".html" => "text/html; charset=utf-8", ".js" => "text/javascript; charset=utf-8", ".css" => "text/css; charset=utf-8", _ => "application/octet-stream" };
        return Results.Stream(stream, type);
    }

    /// <inheritdoc/>
    public async ValueTask DisposeAsync()
    {
        await App.DisposeAsync();
        foreach (var m in Models.Values) m.Dispose();
        slots.Dispose();
    }
}
