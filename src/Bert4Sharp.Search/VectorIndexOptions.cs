using System.Text.Json;
using System.Text.Json.Serialization;

namespace Bert4Sharp.Search;

/// <summary>How a new <see cref="VectorIndex"/> is built. The HNSW parameters are USearch's.</summary>
/// <param name="Dimensions">Length of every vector (384 for all-MiniLM-L6-v2).</param>
/// <param name="Model">Name of the model that made the vectors; <see cref="VectorIndex.Open"/> can insist on it so a
/// query embedded by another model is refused instead of silently returning nonsense.</param>
/// <param name="Connectivity">HNSW M: graph edges per node (more: better recall, bigger file, slower build).</param>
/// <param name="ExpansionAdd">HNSW efConstruction: candidate list while inserting.</param>
/// <param name="ExpansionSearch">HNSW ef: candidate list while searching (raised to k when k is larger).</param>
public sealed record VectorIndexOptions(
    int Dimensions,
    string Model = "",
    int Connectivity = 16,
    int ExpansionAdd = 128,
    int ExpansionSearch = 128);

/// <summary>One search hit: the entry's key, text and metadata with its cosine similarity to the query.</summary>
/// <param name="Key">The key the entry was added under.</param>
/// <param name="Score">Cosine similarity in [-1, 1] (vectors are L2-normalised, so it is their dot product).</param>
/// <param name="Text">The entry's text, or null.</param>
/// <param name="Metadata">The entry's metadata as a JSON object string, or null.</param>
public sealed record VectorHit(string Key, float Score, string? Text, string? Metadata);

/// <summary>One entry to add: a unique key, its text and metadata (a JSON object string) and its vector.</summary>
/// <param name="Key">Unique, non-empty key; adding an existing key replaces that entry.</param>
/// <param name="Text">The text the vector was made from (kept for display), or null.</param>
/// <param name="Metadata">A JSON object string, or null.</param>
/// <param name="Vector">The embedding, of the index's dimensions; it is stored L2-normalised.</param>
public sealed record VectorEntry(string Key, string? Text, string? Metadata, ReadOnlyMemory<float> Vector);

/// <summary>The index's manifest.json: what made the vectors and how they are stored.</summary>
internal sealed record IndexManifest
{
    public const string FormatName = "bert4sharp-vector-index";

    [JsonPropertyName("format")] public string Format { get; init; } = FormatName;
    [JsonPropertyName("version")] public int Version { get; init; } = 1;
    [JsonPropertyName("model")] public string Model { get; init; } = "";
    [JsonPropertyName("dimensions")] public int Dimensions { get; init; }
    [JsonPropertyName("metric")] public string Metric { get; init; } = "cos";
    [JsonPropertyName("normalized")] public bool Normalized { get; init; } = true;
    [JsonPropertyName("count")] public long Count { get; init; }
    [JsonPropertyName("next_slot")] public ulong NextSlot { get; init; }
    [JsonPropertyName("connectivity")] public int Connectivity { get; init; }
    [JsonPropertyName("expansion_add")] public int ExpansionAdd { get; init; }
    [JsonPropertyName("expansion_search")] public int ExpansionSearch { get; init; }
    /// <summary>Id of the save that wrote this manifest; the DuckDB file's <c>meta</c> table holds the same (null: written before ids).</summary>
    [JsonPropertyName("save_id")] public string? SaveId { get; init; }
    /// <summary>Byte length of vectors.usearch as this save wrote it (0: not recorded).</summary>
    [JsonPropertyName("vectors_bytes")] public long VectorsBytes { get; init; }

    public static readonly JsonSerializerOptions Json = new() { WriteIndented = true };
}
