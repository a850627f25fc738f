namespace Bert4Sharp.Tests.Models;

using Bert4Sharp.Models;

/// <summary>Which file of a model directory is its config.</summary>
public sealed class ConfigLookupTests : IDisposable
{
    readonly string dir = Directory.CreateTempSubdirectory("b4s-config").FullName;

    public void Dispose()
    {
        try { Directory.Delete(dir, true); } catch (IOException) { }
    }

    void Touch(string name) => File.WriteAllText(Path.Combine(dir, name), "{}");

    [Fact]
    public void Generation_and_tokenizer_configs_are_not_model_configs()
    {
        Touch("generation_config.json");
        Touch("tokenizer_config.json");
        var e = Assert.Throws<FileNotFoundException>(() => TransformerConfig.FindIn(dir));
        Assert.Contains("looked for config.json, bert_config.json and other *config*.json files", e.Message);
        Assert.Contains("generation_config.json, tokenizer_config.json are not model configs", e.Message);

        Touch("albert_config_tiny_g.json");                                         // bert4keras's ALBERT naming
        Assert.Equal(Path.Combine(dir, "albert_config_tiny_g.json"), TransformerConfig.FindIn(dir));
        Touch("bert_config.json");
        Assert.Equal(Path.Combine(dir, "bert_config.json"), TransformerConfig.FindIn(dir));
        Touch("config.json");
        Assert.Equal(Path.Combine(dir, "config.json"), TransformerConfig.FindIn(dir));
    }

    [Fact]
    public void An_empty_directory_says_what_was_looked_for()
    {
        var e = Assert.Throws<FileNotFoundException>(() => TransformerConfig.FindIn(dir));
        Assert.Equal($"{dir}: no model config: looked for config.json, bert_config.json and other *config*.json files (e.g. albert_config*.json); add the model's config.json", e.Message);
    }
}
