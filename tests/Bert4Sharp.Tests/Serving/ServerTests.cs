namespace Bert4Sharp.Tests.Serving;

using System.ClientModel;
using System.Net;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using Bert4Sharp.Embeddings;
using Bert4Sharp.Generation;
using Bert4Sharp.Serving;
using Microsoft.Extensions.AI;
using OpenAI;

/// <summary>
/// b4s serve on loopback: the official OpenAI .NET client and Microsoft.Extensions.AI as real clients, micro-batching
/// equal to one-at-a-time answers, a 4xx in the OpenAI shape for every bad request, 429 at the concurrency limit,
/// decoding stopped by a disconnecting client, stop strings, the OpenAPI document and the page's files.
/// </summary>
[Collection("serving")]
public sealed class ServerTests(ServerFixture f)
{
    static CancellationToken Ct => TestContext.Current.CancellationToken;

    OpenAIClient Client() => new(new ApiKeyCredential("unused"), new OpenAIClientOptions { Endpoint = new Uri(f.BaseUrl + "/v1") });

    [Fact]
    public async Task The_openai_client_gets_the_same_embeddings_as_the_library()
    {
        string[] texts = ["The cat sits on the mat.", "A cat is sitting on a rug.", "Stock markets fell sharply today."];
        var result = await Client().GetEmbeddingClient("minilm").GenerateEmbeddingsAsync(texts, cancellationToken: Ct);
        var direct = ((EmbeddingModel)f.Server.Models["minilm"]).Encoder.Embed(texts, null, Ct).Vectors;
        for (int i = 0; i < texts.Length; i++)
            Close.Assert(result.Value[i].ToFloats().ToArray(), direct[i], $"embedding {i} over HTTP vs the library");
        Assert.True(SentenceEncoder.Cosine(direct[0], direct[1]) > SentenceEncoder.Cosine(direct[0], direct[2]), "paraphrases should be closer than unrelated sentences");
        // Microsoft.Extensions.AI's generator over the same endpoint, base64 on the wire.
        using IEmbeddingGenerator<string, Embedding<float>> generator = Client().GetEmbeddingClient("minilm").AsIEmbeddingGenerator();
        var viaAbstraction = await generator.GenerateAsync(texts, null, Ct);
        Close.Assert(viaAbstraction[2].Vector.ToArray(), direct[2], "embedding 2 through Microsoft.Extensions.AI");
    }

    [Fact]
    public async Task The_openai_client_streams_the_greedy_completion_token_by_token()
    {
        var model = (GenerationModel)f.Server.Models["gpt"];
        using var session = model.Generator.Start("一丁七");
        var expected = AutoRegressiveDecoder.Greedy(session.Model, session.Start, new DecodingOptions { MaxNewTokens = 12, EndId = model.Generator.EndId });
        string want = model.Generator.Decode(expected.Skip(session.Start.Count).Where(t => t != model.Generator.EndId));

        var chat = Client().GetChatClient("gpt");
        var updates = new List<string>();
        await foreach (var u in chat.CompleteChatStreamingAsync([new OpenAI.Chat.UserChatMessage("一丁七")],
            new OpenAI.Chat.ChatCompletionOptions { MaxOutputTokenCount = 12, Temperature = 0 }, Ct))
            foreach (var part in u.ContentUpdate) updates.Add(part.Text);
        Assert.True(updates.Count(u => u.Length > 0) > 1, $"expected several streamed pieces, got [{string.Join("|", updates)}]");
        Assert.Equal(want, string.Concat(updates));

        // The same through /v1/completions without streaming, and Microsoft.Extensions.AI's IChatClient.
        using var response = await f.Http.PostAsJsonAsync("/v1/completions", new { model = "gpt", prompt = "一丁七", max_tokens = 12, temperature = 0 }, Ct);
        var body = JsonDocument.Parse(await response.Content.ReadAsStringAsync(Ct)).RootElement;
        Assert.Equal(want, body.GetProperty("choices")[0].GetProperty("text").GetString());
        Assert.Equal(4, body.GetProperty("usage").GetProperty("prompt_tokens").GetInt32());      // [CLS] 一 丁 七
        using IChatClient client = chat.AsIChatClient();
        var reply = await client.GetResponseAsync("一丁七", new ChatOptions { MaxOutputTokens = 12, Temperature = 0 }, Ct);
        Assert.Equal(want, reply.Text);
    }

    [Fact]
    public async Task Concurrent_requests_are_batched_and_answer_as_one_at_a_time()
    {
        var rng = new Random(7);
        var requests = Enumerable.Range(0, 24).Select(i => Enumerable.Range(0, 1 + i % 3)
            .Select(_ => string.Join(' ', Enumerable.Range(0, rng.Next(2, 30)).Select(_ => ((char)('a' + rng.Next(26))).ToString() + (char)('a' + rng.Next(26))))).ToArray()).ToList();
        var encoder = ((EmbeddingModel)f.Server.Models["minilm"]).Encoder;
        var sequential = requests.Select(r => r.Select(t => encoder.Embed([t], null, Ct).Vectors[0]).ToArray()).ToList();
        long batchesBefore = ((EmbeddingModel)f.Server.Models["minilm"]).Batcher.Batches;
        var answers = await Task.WhenAll(requests.Select(async r =>
        {
            using var response = await f.Http.PostAsJsonAsync("/v1/embeddings", new { model = "minilm", input = r }, Ct);
            response.EnsureSuccessStatusCode();
            var doc = JsonDocument.Parse(await response.Content.ReadAsStringAsync(Ct));
            return doc.RootElement.GetProperty("data").EnumerateArray().Select(d => d.GetProperty("embedding").EnumerateArray().Select(x => x.GetSingle()).ToArray()).ToArray();
        }));
        var batcher = ((EmbeddingModel)f.Server.Models["minilm"]).Batcher;
        Assert.True(batcher.Largest > 3, $"no request was batched with another (largest batch {batcher.Largest})");
        Assert.True(batcher.Batches - batchesBefore < requests.Count, $"{batcher.Batches - batchesBefore} batches for {requests.Count} requests");
        // Padding to a batch's longest text changes float32 sums only in rounding.
        for (int i = 0; i < requests.Count; i++)
            for (int j = 0; j < requests[i].Length; j++)
                Close.Assert(answers[i][j], sequential[i][j], $"request {i} text {j}: batched vs alone", atol: 2e-5, rtol: 1e-4);
    }

    public static TheoryData<string, string, string?, int, string> BadRequests() => new()
    {
        { "/v1/embeddings", "{\"input\": ", "application/json", 400, "not valid JSON" },
        { "/v1/embeddings", "[1, 2]", "application/json", 400, "must be a JSON object, got an array" },
        { "/v1/embeddings", "{}", "application/json", 400, "'input' is required" },
        { "/v1/embeddings", "{\"input\": 5}", "application/json", 400, "'input' must be a string or an array of strings, got a number" },
        { "/v1/embeddings", "{\"input\": []}", "application/json", 400, "'input' is empty" },
        { "/v1/embeddings", "{\"input\": [\"a\", \"\"]}", "application/json", 400, "'input' item 1 is an empty string" },
        { "/v1/embeddings", "{\"input\": [[1, 2]]}", "application/json", 400, "token-id input is not supported" },
        { "/v1/embeddings", "{\"input\": \"a\", \"model\": \"gpt-4\"}", "application/json", 404, "model 'gpt-4' does not exist here" },
        { "/v1/embeddings", "{\"input\": \"a\", \"model\": \"gpt\"}", "application/json", 400, "is a generation model and cannot serve embeddings" },
        { "/v1/embeddings", "{\"input\": \"a\"}", "application/json", 400, "'model' is required: this server has several models for embeddings" },
        { "/v1/embeddings", "{\"input\": \"a\", \"model\": \"minilm\", \"encoding_format\": \"int8\"}", "application/json", 400, "'encoding_format' must be float or base64" },
        { "/v1/embeddings", "{\"input\": \"a\", \"model\": \"minilm\", \"dimensions\": 128}", "application/json", 400, "need a whitening" },
        { "/v1/embeddings", "{\"input\": \"a\", \"model\": \"minilm\", \"dimensions\": \"big\"}", "application/json", 400, "'dimensions' must be an integer, got a string" },
        { "/v1/embeddings", "{\"input\": \"" + string.Join(' ', Enumerable.Repeat("word", 600)) + "\", \"model\": \"minilm\"}", "application/json", 400, "takes at most 512" },
        { "/v1/embeddings", "{\"input\": \"a\"}", "text/plain", 415, "Content-Type: application/json" },
        { "/v1/completions", "{\"model\": \"gpt\", \"prompt\": \"一\", \"max_tokens\": 0}", "application/json", 400, "'max_tokens' must be in [1, 3000], got 0" },
        { "/v1/completions", "{\"model\": \"gpt\", \"prompt\": \"一\", \"temperature\": 3}", "application/json", 400, "'temperature' must be in [0, 2], got 3" },
        { "/v1/completions", "{\"model\": \"gpt\", \"prompt\": \"一\", \"top_p\": 0}", "application/json", 400, "'top_p' must be in (0, 1]" },
        { "/v1/completions", "{\"model\": \"gpt\", \"prompt\": \"一\", \"n\": 50}", "application/json", 400, "'n' must be in [1, 8], got 50" },
        { "/v1/completions", "{\"model\": \"gpt\", \"prompt\": \"一\", \"stream\": \"yes\"}", "application/json", 400, "'stream' must be true or false, got a string" },
        { "/v1/completions", "{\"model\": \"gpt\", \"prompt\": [\"一\", \"二\"]}", "application/json", 400, "'prompt' has 2 items; at most 1" },
        { "/v1/completions", "{\"model\": \"gpt\", \"prompt\": \"一\", \"stop\": [\"a\", \"b\", \"c\", \"d\", \"e\"]}", "application/json", 400, "'stop' has 5 items; at most 4" },
        { "/v1/chat/completions", "{\"model\": \"gpt\", \"messages\": [{\"role\": \"user\"}]}", "application/json", 400, "'messages[0]' must be an object with string 'role' and 'content'" },
        { "/v1/fill-mask", "{\"model\": \"bert\", \"text\": \"no mask here\"}", "application/json", 400, "has no [MASK]" },
        { "/v1/fill-mask", "{\"model\": \"minilm\", \"text\": \"a [MASK]\"}", "application/json", 400, "has no masked-LM head" },
        { "/v1/nothing", "{}", "application/json", 404, "no endpoint at /v1/nothing" },
    };

    [Theory]
    [MemberData(nameof(BadRequests))]
    public async Task Bad_requests_get_a_4xx_in_the_openai_shape(string path, string body, string? contentType, int status, string message)
    {
        using var content = new StringContent(body, Encoding.UTF8);
        content.Headers.ContentType = contentType is null ? null : new System.Net.Http.Headers.MediaTypeHeaderValue(contentType);
        using var response = await f.Http.PostAsync(path, content, Ct);
        string text = await response.Content.ReadAsStringAsync(Ct);
        Assert.True((int)response.StatusCode == status, $"{path} {body[..Math.Min(60, body.Length)]}: {(int)response.StatusCode} {text}");
        var error = JsonDocument.Parse(text).RootElement.GetProperty("error");
        Assert.Contains(message, error.GetProperty("message").GetString());
        Assert.False(string.IsNullOrEmpty(error.GetProperty("type").GetString()));
    }

    [Fact]
    public async Task A_body_over_the_limit_is_413()
    {
        string big = "{\"model\": \"minilm\", \"input\": [" + string.Join(',', Enumerable.Repeat("\"" + new string('a', 1000) + "\"", 100)) + "]}";
        using var content = new StringContent(big, Encoding.UTF8, "application/json");
        using var response = await f.Http.PostAsync("/v1/embeddings", content, Ct);
        Assert.Equal(HttpStatusCode.RequestEntityTooLarge, response.StatusCode);
        Assert.Contains("larger than the server's limit of 65,536 bytes", await response.Content.ReadAsStringAsync(Ct));
    }

    [Fact]
    public async Task Stop_strings_cut_the_text_and_finish_with_stop()
    {
        async Task<JsonElement> Complete(object request)
        {
            using var response = await f.Http.PostAsJsonAsync("/v1/completions", request, Ct);
            Assert.True(response.IsSuccessStatusCode, await response.Content.ReadAsStringAsync(Ct));
            return JsonDocument.Parse(await response.Content.ReadAsStringAsync(Ct)).RootElement.GetProperty("choices")[0];
        }
        var full = await Complete(new { model = "gpt", prompt = "二", max_tokens = 20, temperature = 0 });
        string text = full.GetProperty("text").GetString()!;
        Assert.True(text.Length >= 4, $"the tiny model gave only '{text}'");
        string stop = text.Substring(2, 2);
        int at = text.IndexOf(stop, StringComparison.Ordinal);
        var cut = await Complete(new { model = "gpt", prompt = "二", max_tokens = 20, temperature = 0, stop = new[] { "never there", stop } });
        Assert.Equal(text[..at], cut.GetProperty("text").GetString());
        Assert.Equal("stop", cut.GetProperty("finish_reason").GetString());
        // Streamed, the held-back tail never leaks the stop string.
        using var request = new HttpRequestMessage(HttpMethod.Post, "/v1/completions") { Content = JsonContent.Create(new { model = "gpt", prompt = "二", max_tokens = 20, temperature = 0, stop = new[] { stop }, stream = true }) };
        using var response = await f.Http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, Ct);
        string streamed = string.Concat((await response.Content.ReadAsStringAsync(Ct)).Split("\n\n").Where(e => e.StartsWith("data: {"))
            .Select(e => JsonDocument.Parse(e[6..]).RootElement.GetProperty("choices")[0].GetProperty("text").GetString()));
        Assert.Equal(text[..at], streamed);
    }

    [Fact]
    public async Task A_client_that_disconnects_stops_its_decoding()
    {
        var model = (GenerationModel)f.Server.Models["gpt-slow"];
        long before = model.CancelledDecodes;
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(Ct);
        using var request = new HttpRequestMessage(HttpMethod.Post, "/v1/completions") { Content = JsonContent.Create(new { model = "gpt-slow", prompt = "三", max_tokens = 3000, temperature = 1, seed = 1, stream = true }) };
        using (var response = await f.Http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, cts.Token))
        {
            using var stream = await response.Content.ReadAsStreamAsync(cts.Token);
            var buffer = new byte[256];
            Assert.True(await stream.ReadAsync(buffer, cts.Token) > 0);                      // the first event arrived
            cts.Cancel();                                                                    // the client goes away
        }
        var deadline = DateTime.UtcNow.AddSeconds(30);
        while ((model.ActiveDecodes > 0 || model.CancelledDecodes == before) && DateTime.UtcNow < deadline) await Task.Delay(50, Ct);
        Assert.Equal(0, model.ActiveDecodes);
        Assert.Equal(before + 1, model.CancelledDecodes);
        using var health = await f.Http.GetAsync("/health", Ct);
        Assert.Contains("\"cancelled_decodes\":" + (before + 1), await health.Content.ReadAsStringAsync(Ct));
    }

    [Fact]
    public async Task Task_models_classify_and_find_entities_as_the_library_does()
    {
        string[] texts = ["一丁七万丈", "三上下不与丐丑专"];
        var tnews = (TaskModel)f.Server.Models["tnews"];
        using (var response = await f.Http.PostAsJsonAsync("/v1/classify", new { input = texts }, Ct))
        {
            Assert.True(response.IsSuccessStatusCode, await response.Content.ReadAsStringAsync(Ct));
            var data = JsonDocument.Parse(await response.Content.ReadAsStringAsync(Ct)).RootElement.GetProperty("data");
            var direct = tnews.Classify(texts, null);
            for (int i = 0; i < texts.Length; i++)
            {
                Assert.Equal(direct[i].Label, data[i].GetProperty("label").GetString());
                var p = tnews.Labels.Select(l => data[i].GetProperty("probabilities").GetProperty(l).GetSingle()).ToArray();
                Close.Assert(p, [.. direct[i].Probabilities], $"text {i} probabilities over HTTP vs the library");
                Close.Assert(p.Sum(), 1f, "probabilities sum", atol: 1e-5, rtol: 0);
            }
        }
        var ner = (TaskModel)f.Server.Models["ner"];
        using (var response = await f.Http.PostAsJsonAsync("/v1/ner", new { input = texts }, Ct))
        {
            var data = JsonDocument.Parse(await response.Content.ReadAsStringAsync(Ct)).RootElement.GetProperty("data");
            var direct = ner.Recognize(texts);
            Assert.True(direct.Sum(d => d.Count) > 0, "the random recognizer found nothing: pick another seed for the test");
            for (int i = 0; i < texts.Length; i++)
            {
                var got = data[i].GetProperty("entities").EnumerateArray().Select(e => (e.GetProperty("type").GetString()!, e.GetProperty("start").GetInt32(), e.GetProperty("end").GetInt32(), e.GetProperty("text").GetString()!)).ToList();
                Assert.Equal(direct[i].Select(e => (e.Type, e.Start, e.End, texts[i][e.Start..e.End])), got);
            }
        }
        foreach (var (path, body, message) in new[]
        {
            ("/v1/classify", (object)new { model = "ner", input = "一" }, "is a ner model and cannot serve classification"),
            ("/v1/ner", new { model = "tnews", input = "一" }, "is a classification model and cannot serve entity recognition"),
            ("/v1/classify", new { input = new[] { "一", "二" }, pair = new[] { "三" } }, "'pair' has 1 texts but 'input' has 2"),
        })
        {
            using var response = await f.Http.PostAsJsonAsync(path, body, Ct);
            Assert.Equal(System.Net.HttpStatusCode.BadRequest, response.StatusCode);
            Assert.Contains(message, await response.Content.ReadAsStringAsync(Ct));
        }
    }

    [Fact]
    public async Task The_openapi_document_the_models_and_the_page_are_served()
    {
        var doc = JsonDocument.Parse(await f.Http.GetStringAsync("/openapi/v1.json", Ct)).RootElement;
        var paths = doc.GetProperty("paths");
        foreach (string p in new[] { "/v1/embeddings", "/v1/completions", "/v1/chat/completions", "/v1/fill-mask", "/v1/classify", "/v1/ner", "/v1/models", "/health" })
            Assert.True(paths.TryGetProperty(p, out _), $"{p} missing from the OpenAPI document");
        var models = JsonDocument.Parse(await f.Http.GetStringAsync("/v1/models", Ct)).RootElement.GetProperty("data").EnumerateArray()
            .ToDictionary(m => m.GetProperty("id").GetString()!, m => (m.GetProperty("kind").GetString(), m.GetProperty("fill_mask").GetBoolean()));
        Assert.Equal(("embedding", false), models["minilm"]);
        Assert.Equal(("embedding", true), models["bert"]);
        Assert.Equal(("generation", false), models["gpt"]);
        Assert.Contains("<title>Bert4Sharp</title>", await f.Http.GetStringAsync("/", Ct));
        Assert.Contains("/v1/completions", await f.Http.GetStringAsync("/app.js", Ct));
        var fill = JsonDocument.Parse(await (await f.Http.PostAsJsonAsync("/v1/fill-mask", new { model = "bert", text = "一[MASK]三", top_k = 3 }, Ct)).Content.ReadAsStringAsync(Ct)).RootElement;
        Assert.Equal(3, fill.GetProperty("candidates").GetArrayLength());
    }
}

/// <summary>The concurrency limit, on a server of its own with one slot.</summary>
[Collection("serving")]
public sealed class ServerLimitTests
{
    [Fact]
    public async Task A_full_server_answers_429_with_retry_after()
    {
        string dir = Directory.CreateTempSubdirectory("b4s-serve-limit-").FullName;
        try
        {
            ServerFixture.WriteTinyModel(dir, "gpt2", Bert4Sharp.Models.Application.LanguageModel, 3);
            await using var server = ServerApp.Create(new ServeOptions { Models = [new ModelSpec("gpt", dir)], MaxConcurrentRequests = 1 }, ["http://127.0.0.1:0"], _ => { });
            await server.StartAsync(TestContext.Current.CancellationToken);
            using var http = new HttpClient { BaseAddress = new Uri(server.Addresses[0]) };
            using var cts = CancellationTokenSource.CreateLinkedTokenSource(TestContext.Current.CancellationToken);
            using var slow = new HttpRequestMessage(HttpMethod.Post, "/v1/completions") { Content = JsonContent.Create(new { prompt = "一", max_tokens = 500, stream = true }) };
            using var first = await http.SendAsync(slow, HttpCompletionOption.ResponseHeadersRead, cts.Token);
            using var second = await http.PostAsJsonAsync("/v1/completions", new { prompt = "一", max_tokens = 2 }, TestContext.Current.CancellationToken);
            Assert.Equal((HttpStatusCode)429, second.StatusCode);
            Assert.Equal("1", second.Headers.GetValues("Retry-After").Single());
            Assert.Contains("\"rate_limit_exceeded\"", await second.Content.ReadAsStringAsync(TestContext.Current.CancellationToken));
            cts.Cancel();
            // /health is outside the limit.
            using var health = await http.GetAsync("/health", TestContext.Current.CancellationToken);
            Assert.Equal(HttpStatusCode.OK, health.StatusCode);
            Assert.Equal(1, server.Rejected);
        }
        finally { Directory.Delete(dir, true); }
    }

    [Fact]
    public void B4s_serve_refuses_a_host_it_cannot_parse_instead_of_listening_everywhere()
    {
        var (code, _, stderr) = CliTests.B4s("serve", "--host", "999.1.1.1", "--port", "0");
        Assert.Equal(1, code);
        Assert.Contains("--host must be an IP address", stderr);
        var (code2, _, stderr2) = CliTests.B4s("serve", "--port", "70000");
        Assert.Equal(1, code2);
        Assert.Contains("--port must be in [0, 65535], got 70000", stderr2);
    }

    [Fact]
    public async Task B4s_serve_runs_as_a_process_on_loopback()
    {
        string dir = Directory.CreateTempSubdirectory("b4s-serve-process-").FullName;
        try
        {
            ServerFixture.WriteTinyModel(Path.Combine(dir, "bert"), "bert", Bert4Sharp.Models.Application.MaskedLM, 4, maxPositions: 64);
            var psi = new System.Diagnostics.ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true };
            foreach (string a in new[] { Path.Combine(AppContext.BaseDirectory, "b4s.dll"), "serve", "--port", "0", "--model", Path.Combine(dir, "bert") }) psi.ArgumentList.Add(a);
            using var p = System.Diagnostics.Process.Start(psi)!;
            try
            {
                string? url = null;
                using var startup = CancellationTokenSource.CreateLinkedTokenSource(TestContext.Current.CancellationToken);
                startup.CancelAfter(TimeSpan.FromSeconds(60));
                while (url is null && await p.StandardOutput.ReadLineAsync(startup.Token) is { } line)
                    if (line.StartsWith("serving on ", StringComparison.Ordinal)) url = line.Split(' ')[2];
                Assert.True(url is not null, "b4s serve did not print its address");
                using var http = new HttpClient { BaseAddress = new Uri(url!), Timeout = TimeSpan.FromSeconds(60) };
                Assert.Contains("\"status\":\"ok\"", await http.GetStringAsync("/health", TestContext.Current.CancellationToken));
                using var response = await http.PostAsJsonAsync("/v1/embeddings", new { input = new[] { "一二", "三" } }, TestContext.Current.CancellationToken);
                Assert.Equal(HttpStatusCode.OK, response.StatusCode);
                var data = JsonDocument.Parse(await response.Content.ReadAsStringAsync(TestContext.Current.CancellationToken)).RootElement.GetProperty("data");
                Assert.Equal(2, data.GetArrayLength());
                Assert.Equal(32, data[0].GetProperty("embedding").GetArrayLength());
            }
            finally { p.Kill(true); p.WaitForExit(10_000); }
        }
        finally { Directory.Delete(dir, true); }
    }
}
