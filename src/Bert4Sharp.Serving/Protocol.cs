namespace Bert4Sharp.Serving;

using System.Text.Json;
using System.Text.Json.Serialization;
using Microsoft.AspNetCore.Http;

// The OpenAI wire shapes the server reads and writes (snake_case, as the API documents them). Requests are read from
// the JSON document by hand (RequestReader) so every wrong type names its field; these records describe them for the
// OpenAPI document.

/// <summary>POST /v1/embeddings.</summary>
public sealed record EmbeddingRequest(
    [property: JsonPropertyName("input")] JsonElement Input,
    [property: JsonPropertyName("model")] string? Model = null,
    [property: JsonPropertyName("encoding_format")] string? EncodingFormat = null,
    [property: JsonPropertyName("dimensions")] int? Dimensions = null);

/// <summary>POST /v1/completions.</summary>
public sealed record CompletionRequest(
    [property: JsonPropertyName("prompt")] JsonElement Prompt,
    [property: JsonPropertyName("model")] string? Model = null,
    [property: JsonPropertyName("max_tokens")] int? MaxTokens = null,
    [property: JsonPropertyName("temperature")] double? Temperature = null,
    [property: JsonPropertyName("top_p")] double? TopP = null,
    [property: JsonPropertyName("n")] int? N = null,
    [property: JsonPropertyName("stop")] JsonElement? Stop = null,
    [property: JsonPropertyName("stream")] bool? Stream = null,
    [property: JsonPropertyName("seed")] int? Seed = null);

/// <summary>One chat message.</summary>
public sealed record ChatMessage([property: JsonPropertyName("role")] string Role, [property: JsonPropertyName("content")] string Content);

/// <summary>POST /v1/chat/completions (the messages' contents, joined by newlines, are the prompt: these models are not chat-tuned).</summary>
public sealed record ChatRequest(
    [property: JsonPropertyName("messages")] IReadOnlyList<ChatMessage> Messages,
    [property: JsonPropertyName("model")] string? Model = null,
    [property: JsonPropertyName("max_tokens")] int? MaxTokens = null,
    [property: JsonPropertyName("max_completion_tokens")] int? MaxCompletionTokens = null,
    [property: JsonPropertyName("temperature")] double? Temperature = null,
    [property: JsonPropertyName("top_p")] double? TopP = null,
    [property: JsonPropertyName("n")] int? N = null,
    [property: JsonPropertyName("stream")] bool? Stream = null,
    [property: JsonPropertyName("seed")] int? Seed = null);

/// <summary>POST /v1/fill-mask (Bert4Sharp's own verb).</summary>
public sealed record FillMaskRequest(
    [property: JsonPropertyName("text")] string Text,
    [property: JsonPropertyName("model")] string? Model = null,
    [property: JsonPropertyName("top_k")] int? TopK = null);

/// <summary>POST /v1/classify: a text classifier task model.</summary>
public sealed record ClassifyRequest(
    [property: JsonPropertyName("input")] JsonElement Input,
    [property: JsonPropertyName("pair")] JsonElement? Pair = null,
    [property: JsonPropertyName("model")] string? Model = null);

/// <summary>POST /v1/ner: a CLUENER task model.</summary>
public sealed record NerRequest(
    [property: JsonPropertyName("input")] JsonElement Input,
    [property: JsonPropertyName("model")] string? Model = null);

/// <summary>The OpenAI error body: <c>{"error": {"message", "type", "param", "code"}}</c>.</summary>
public sealed record ErrorBody([property: JsonPropertyName("error")] ErrorDetail Error);

/// <summary>The inside of <see cref="ErrorBody"/>.</summary>
public sealed record ErrorDetail(
    [property: JsonPropertyName("message")] string Message,
    [property: JsonPropertyName("type")] string Type,
    [property: JsonPropertyName("param")] string? Param,
    [property: JsonPropertyName("code")] string? Code);

/// <summary>A request the server refuses: the status, the OpenAI error type and the field at fault.</summary>
public sealed class RequestException(int status, string message, string? param = null, string type = "invalid_request_error", string? code = null) : Exception(message)
{
    /// <summary>HTTP status (4xx).</summary>
    public int Status { get; } = status;
    /// <summary>The request field at fault, or null.</summary>
    public string? Param { get; } = param;
    /// <summary>OpenAI error type.</summary>
    public string Type { get; } = type;
    /// <summary>OpenAI error code, or null.</summary>
    public string? Code { get; } = code;

    /// <summary>The JSON error body.</summary>
    public ErrorBody Body => new(new ErrorDetail(Message, Type, Param, Code));
}

/// <summary>Reads a request's JSON fields with errors that name the field and the type found.</summary>
public sealed class RequestReader
{
    readonly JsonElement root;

    RequestReader(JsonElement root) => this.root = root;

    /// <summary>Parses the body; anything but a JSON object is a 400.</summary>
    public static async Task<(RequestReader Reader, JsonDocument Document)> ReadAsync(HttpRequest request, CancellationToken cancellation)
    {
        JsonDocument doc;
        try { doc = await JsonDocument.ParseAsync(request.Body, default, cancellation); }
        catch (JsonException e) { throw new RequestException(400, $"the request body is not valid JSON: {e.Message}"); }
        if (doc.RootElement.ValueKind != JsonValueKind.Object)
        {
            string found = Kind(doc.RootElement.ValueKind);
            doc.Dispose();
            throw new RequestException(400, $"the request body must be a JSON object, got {found}");
        }
        return (new RequestReader(doc.RootElement), doc);
    }

    static string Kind(JsonValueKind k) => k switch
    {
        JsonValueKind.Array => "an array", JsonValueKind.Object => "an object", JsonValueKind.String => "a string",
        JsonValueKind.Number => "a number", JsonValueKind.True or JsonValueKind.False => "a boolean", JsonValueKind.Null => "null", _ => k.ToString(),
    };

    /// <summary>The field, or null when absent or JSON null.</summary>
    public JsonElement? Field(string name) => root.TryGetProperty(name, out var v) && v.ValueKind != JsonValueKind.Null ? v : null;

    /// <summary>A required field.</summary>
    public JsonElement Required(string name) => Field(name) ?? throw new RequestException(400, $"'{name}' is required", name);

    /// <summary>An optional string.</summary>
    public string? String(string name) => Field(name) is { } v
        ? v.ValueKind == JsonValueKind.String ? v.GetString() : throw new RequestException(400, $"'{name}' must be a string, got {Kind(v.ValueKind)}", name)
        : null;

    /// <summary>An optional integer within [min, max].</summary>
    public int? Int(string name, int min, int max)
    {
        if (Field(name) is not { } v) return null;
        if (v.ValueKind != JsonValueKind.Number || !v.TryGetInt32(out int x)) throw new RequestException(400, $"'{name}' must be an integer, got {(v.ValueKind == JsonValueKind.Number ? v.GetRawText() : Kind(v.ValueKind))}", name);
        if (x < min || x > max) throw new RequestException(400, $"'{name}' must be in [{min}, {max}], got {x}", name);
        return x;
    }

    /// <summary>An optional number within [min, max].</summary>
    public double? Number(string name, double min, double max)
    {
        if (Field(name) is not { } v) return null;
        if (v.ValueKind != JsonValueKind.Number) throw new RequestException(400, $"'{name}' must be a number, got {Kind(v.ValueKind)}", name);
        double x = v.GetDouble();
        if (!(x >= min && x <= max)) throw new RequestException(400, $"'{name}' must be in [{min}, {max}], got {x}", name);
        return x;
    }

    /// <summary>An optional boolean.</summary>
    public bool? Bool(string name) => Field(name) is { } v
        ? v.ValueKind is JsonValueKind.True or JsonValueKind.False ? v.GetBoolean() : throw new RequestException(400, $"'{name}' must be true or false, got {Kind(v.ValueKind)}", name)
        : null;

    /// <summary>A string or an array of strings (each non-empty), e.g. <c>input</c>, <c>prompt</c>, <c>stop</c>.</summary>
    public IReadOnlyList<string> Strings(string name, bool required, int maxCount)
    {
        var field = required ? Required(name) : Field(name);
        if (field is not { } v) return [];
        List<string> list;
        if (v.ValueKind == JsonValueKind.String) list = [v.GetString()!];
        else if (v.ValueKind == JsonValueKind.Array)
        {
            list = [];
            int i = 0;
            foreach (var item in v.EnumerateArray())
            {
                if (item.ValueKind != JsonValueKind.String)
                    throw new RequestException(400, item.ValueKind == JsonValueKind.Number || item.ValueKind == JsonValueKind.Array
                        ? $"'{name}[{i}]' is {Kind(item.ValueKind)}: token-id input is not supported, send text"
                        : $"'{name}[{i}]' must be a string, got {Kind(item.ValueKind)}", name);
                list.Add(item.GetString()!);
                i++;
            }
        }
        else throw new RequestException(400, $"'{name}' must be a string or an array of strings, got {Kind(v.ValueKind)}", name);
        if (required && list.Count == 0) throw new RequestException(400, $"'{name}' is empty", name);
        if (list.Count > maxCount) throw new RequestException(400, $"'{name}' has {list.Count} items; at most {maxCount} per request", name);
        int empty = list.FindIndex(s => s.Length == 0);
        if (empty >= 0) throw new RequestException(400, $"'{name}' item {empty} is an empty string", name);
        return list;
    }

    /// <summary>Chat messages: an array of objects with string <c>role</c> and <c>content</c>.</summary>
    public IReadOnlyList<ChatMessage> Messages()
    {
        var v = Required("messages");
        if (v.ValueKind != JsonValueKind.Array || v.GetArrayLength() == 0) throw new RequestException(400, "'messages' must be a non-empty array of {role, content}", "messages");
        var list = new List<ChatMessage>();
        foreach (var (m, i) in v.EnumerateArray().Select((m, i) => (m, i)))
        {
            if (m.ValueKind != JsonValueKind.Object || !m.TryGetProperty("role", out var role) || role.ValueKind != JsonValueKind.String
                || !m.TryGetProperty("content", out var content) || content.ValueKind != JsonValueKind.String)
                throw new RequestException(400, $"'messages[{i}]' must be an object with string 'role' and 'content'", "messages");
            list.Add(new ChatMessage(role.GetString()!, content.GetString()!));
        }
        return list;
    }
}
