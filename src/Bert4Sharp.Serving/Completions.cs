namespace Bert4Sharp.Serving;

using System.Runtime.CompilerServices;
using System.Text.Json;
using Bert4Sharp.Generation;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;

/// <summary>
/// <c>/v1/completions</c> and <c>/v1/chat/completions</c>: greedy decoding at temperature 0, else sampling (temperature,
/// top_p, seed), <c>n</c> choices, <c>stop</c> strings, and <c>stream: true</c> as server-sent events. A client that
/// disconnects stops its decoding loop at the next token.
/// </summary>
static class Completions
{
    static readonly JsonSerializerOptions Json = new() { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    /// <summary>What a completion request asks, read and checked.</summary>
    sealed record Ask(GenerationModel Model, string Prompt, int PromptTokens, int MaxTokens, SamplingOptions? Sampling, int N, IReadOnlyList<string> Stop, bool Stream);

    public static void Map(ServerApp server)
    {
        server.App.MapPost("/v1/completions", (Delegate)((HttpContext c) => Handle(server, c, chat: false)))
            .Accepts<CompletionRequest>("application/json").Produces(200).Produces<ErrorBody>(400).WithSummary("OpenAI completions (stream: server-sent events)");
        server.App.MapPost("/v1/chat/completions", (Delegate)((HttpContext c) => Handle(server, c, chat: true)))
            .Accepts<ChatRequest>("application/json").Produces(200).Produces<ErrorBody>(400).WithSummary("OpenAI chat completions: the messages' contents joined by newlines are the prompt");
    }

    static async Task Handle(ServerApp server, HttpContext context, bool chat)
    {
        var (req, doc) = await RequestReader.ReadAsync(context.Request, context.RequestAborted);
        Ask ask;
        using (doc) ask = Read(server, req, chat);
        string id = (chat ? "chatcmpl-" : "cmpl-") + Guid.NewGuid().ToString("N")[..24];
        long created = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
        string kind = chat ? "chat.completion" : "text_completion";
        var ct = context.RequestAborted;
        if (ask.Stream)
        {
            context.Response.ContentType = "text/event-stream";
            context.Response.Headers.CacheControl = "no-cache";
            for (int i = 0; i < ask.N; i++)
            {
                if (chat) await Event(context, Chunk(id, created, ask, i, new { role = "assistant", content = "" }, null), ct);
                await foreach (var (delta, finish) in Generate(ask, i, ct))
                    await Event(context, chat ? Chunk(id, created, ask, i, delta.Length > 0 ? new { content = delta } : new { }, finish)
                        : new { id, @object = kind, created, model = ask.Model.Name, choices = new[] { new { text = delta, index = i, logprobs = (object?)null, finish_reason = finish } } }, ct);
            }
            await context.Response.WriteAsync("data: [DONE]\n\n", ct);
            return;
        }
        var choices = new List<object>();
        int completionTokens = 0, promptTokens = ask.PromptTokens;
        for (int i = 0; i < ask.N; i++)
        {
            var text = new System.Text.StringBuilder();
            string? finish = null;
            await foreach (var (delta, f) in Generate(ask, i, ct, t => completionTokens += t)) { text.Append(delta); finish = f ?? finish; }
            choices.Add(chat
                ? new { index = i, message = new { role = "assistant", content = text.ToString() }, finish_reason = finish }
                : new { text = text.ToString(), index = i, logprobs = (object?)null, finish_reason = finish });
        }
        await context.Response.WriteAsJsonAsync(new
        {
            id, @object = kind, created, model = ask.Model.Name, choices,
            usage = new { prompt_tokens = promptTokens, completion_tokens = completionTokens, total_tokens = promptTokens + completionTokens },
        }, Json, ct);
    }

    static object Chunk(string id, long created, Ask ask, int index, object delta, string? finish) =>
        new { id, @object = "chat.completion.chunk", created, model = ask.Model.Name, choices = new[] { new { index, delta, finish_reason = finish } } };

    static async Task Event(HttpContext context, object payload, CancellationToken ct)
    {
        await context.Response.WriteAsync("data: " + JsonSerializer.Serialize(payload, Json) + "\n\n", ct);
        await context.Response.Body.FlushAsync(ct);
    }

    static Ask Read(ServerApp server, RequestReader req, bool chat)
    {
        string prompt = chat ? string.Join("\n", req.Messages().Select(m => m.Content)) : req.Strings("prompt", required: true, maxCount: 1)[0];
        var model = server.Resolve<GenerationModel>(req.String("model"), chat ? "chat completions" : "completions");
        // max_completion_tokens is the newer name (the OpenAI .NET client sends it for chat).
        int max = req.Int("max_completion_tokens", 1, server.Options.MaxNewTokens) ?? req.Int("max_tokens", 1, server.Options.MaxNewTokens) ?? 16;
        double temperature = req.Number("temperature", 0, 2) ?? 1.0;
        double? topP = req.Number("top_p", 0, 1);
        if (topP == 0) throw new RequestException(400, "'top_p' must be in (0, 1], got 0", "top_p");
        int n = req.Int("n", 1, 8) ?? 1;
        var stop = chat ? [] : req.Strings("stop", required: false, maxCount: 4);
        bool stream = req.Bool("stream") ?? false;
        int? seed = req.Int("seed", int.MinValue, int.MaxValue);
        var g = model.Generator;
        int promptTokens = g.Tokenize(prompt).Count;
        if (promptTokens == 0) throw new RequestException(400, "the prompt is empty after tokenisation", chat ? "messages" : "prompt");
        long needed = g.IsEncoderDecoder ? Math.Max(promptTokens, max + 1) : promptTokens + max;
        if (needed > g.MaxLength)
            throw new RequestException(400, $"the prompt has {promptTokens} tokens and max_tokens is {max}; model '{model.Name}' takes {g.MaxLength} in all", chat ? "messages" : "prompt", "invalid_request_error", "context_length_exceeded");
        if (promptTokens + max > server.Options.MaxTokensPerRequest)
            throw new RequestException(400, $"prompt + max_tokens = {promptTokens + max:N0} tokens; at most {server.Options.MaxTokensPerRequest:N0} per request", "max_tokens");
        // Temperature 0 is greedy decoding; otherwise sampling from the (top-p truncated) distribution.
        SamplingOptions? sampling = temperature == 0 ? null : new SamplingOptions { Temperature = temperature, TopP = topP is < 1 ? topP : null, Seed = seed };
        return new Ask(model, prompt, promptTokens, max, sampling, n, stop, stream);
    }

    /// <summary>
    /// Text deltas of one choice as tokens arrive, and the finish reason with the last one: "stop" at the end token or a
    /// stop string (cut before it; a tail that could begin one is held back until it cannot), "length" at max_tokens.
    /// </summary>
    static async IAsyncEnumerable<(string Delta, string? Finish)> Generate(Ask ask, int choice, [EnumeratorCancellation] CancellationToken ct, Action<int>? counted = null)
    {
        var g = ask.Model.Generator;
        var sampling = ask.Sampling is { Seed: int s } so ? so with { Seed = s + choice } : ask.Sampling;
        using var session = g.Start(ask.Prompt);
        var ids = new List<int>();
        string emitted = "";
        string? finish = null;
        ask.Model.Started();
        try
        {
            await foreach (int token in Sampler.Stream(session.Model, session.Start, new DecodingOptions { MaxNewTokens = ask.MaxTokens, EndId = g.EndId }, sampling, ct))
            {
                counted?.Invoke(1);
                if (token == g.EndId) { finish = "stop"; break; }
                ids.Add(token);
                string text = g.Decode(ids);
                int cut = ask.Stop.Select(x => text.IndexOf(x, StringComparison.Ordinal)).Where(i => i >= 0).DefaultIfEmpty(-1).Min();
                if (cut >= 0) { text = text[..cut]; finish = "stop"; }
                int hold = finish is null ? ask.Stop.Select(x => Enumerable.Range(1, x.Length - 1).Where(k => text.EndsWith(x[..k], StringComparison.Ordinal)).DefaultIfEmpty(0).Max()).DefaultIfEmpty(0).Max() : 0;
                string safe = text[..(text.Length - hold)];
                if (safe.Length > emitted.Length && safe.StartsWith(emitted, StringComparison.Ordinal))
                {
                    yield return (safe[emitted.Length..], finish);
                    emitted = safe;
                    if (finish is not null) yield break;
                }
                else if (finish is not null) { yield return ("", finish); yield break; }
            }
            ct.ThrowIfCancellationRequested();
            // The end token or max_tokens: whatever was held back for a stop string that never came.
            string final = g.Decode(ids);
            yield return (final.Length > emitted.Length && final.StartsWith(emitted, StringComparison.Ordinal) ? final[emitted.Length..] : "", finish ?? "length");
        }
        finally { ask.Model.Ended(ct.IsCancellationRequested); }
    }
}
