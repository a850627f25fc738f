namespace Bert4Sharp.Models;

using Bert4Sharp.Tokenization;

/// <summary>What <see cref="WordModels.FromCharacterModel"/> wrote.</summary>
/// <param name="Directory">The word model's directory.</param>
/// <param name="CharacterTokens">Size of the character vocabulary (the first ids, unchanged).</param>
/// <param name="WordsAdded">Words appended after them.</param>
/// <param name="Files">Files written.</param>
public sealed record WordModelResult(string Directory, int CharacterTokens, int WordsAdded, IReadOnlyList<string> Files);

/// <summary>
/// WoBERT's starting point: a character-level masked-LM model grown to a word vocabulary. Each new word's embedding
/// row (and its MLM output bias) starts as the mean of the rows of the characters the character tokenizer splits it into
/// (bert4keras <c>compound_tokens</c>; the WoBERT README: "用字embedding的平均作为词embedding的初始化"); every other weight
/// is copied unchanged.
/// </summary>
public static class WordModels
{
    /// <summary>
    /// Loads the masked-LM model in <paramref name="characterModel"/> (config.json, weights, vocab.txt), appends
    /// <paramref name="words"/> to its vocabulary with compound initialisation, and saves config.json (the new
    /// <c>vocab_size</c>), model.safetensors, vocab.txt and tokenizer_config.json (<c>"pre_tokenizer": "jieba"</c>) in
    /// <paramref name="output"/>.
    /// </summary>
    /// <exception cref="ArgumentException">No words, a repeated word, or a word already in the character vocabulary.</exception>
    /// <exception cref="FileNotFoundException">The model directory or its vocab.txt is missing.</exception>
    public static WordModelResult FromCharacterModel(string characterModel, IReadOnlyList<string> words, string output, string? family = null)
    {
        ArgumentNullException.ThrowIfNull(words);
        if (words.Count == 0) throw new ArgumentException("no words to add: the word vocabulary is empty (lower the minimum count or give more text)", nameof(words));
        if (!Directory.Exists(characterModel)) throw new FileNotFoundException($"{characterModel}: no such model directory", characterModel);
        string vocabPath = Path.Combine(characterModel, "vocab.txt");
        if (!File.Exists(vocabPath)) throw new FileNotFoundException($"{vocabPath}: the character model has no vocab.txt", vocabPath);
        var characters = BertWordPieceTokenizer.FromFile(vocabPath, new BertWordPieceOptions { LowerCase = true });
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (var w in words)
        {
            if (string.IsNullOrEmpty(w)) throw new ArgumentException("an empty word cannot be a token", nameof(words));
            if (characters.Vocabulary.Contains(w)) throw new ArgumentException($"'{w}' is already a token of {vocabPath}; pass only new words", nameof(words));
            if (!seen.Add(w)) throw new ArgumentException($"'{w}' appears twice in the word list", nameof(words));
        }
        // Each word's pieces under the character tokenizer (CJK words: one id per character), as bert4keras's compound_tokens.
        var compound = characters.CompoundTokens(words);
        var wordVocabulary = characters.Vocabulary.Extend(words);
        var loaded = AutoModel.Load(characterModel, new AutoModelOptions
        {
            Family = family, Application = Application.MaskedLM, Build = new BuildOptions { CompoundTokens = compound, Device = TorchSharp.torch.CPU },
        });
        using var model = loaded.Model;
        if (model.Config.VocabSize != wordVocabulary.Count)
            throw new InvalidDataException($"{characterModel}: the model has {model.Config.VocabSize - words.Count} embedding rows but vocab.txt {characters.Vocabulary.Count} tokens; pass a model saved with its own vocabulary");
        // Only the name: SavePretrained records it, and nothing here tokenises (so jieba's dictionary need not be cached).
        var tokenizer = new BertWordPieceTokenizer(wordVocabulary, new BertWordPieceOptions { LowerCase = true, PreTokenizerName = PreTokenization.Jieba });
        var files = TransformerPipeline.Create(model, tokenizer).SavePretrained(output);
        return new WordModelResult(output, characters.Vocabulary.Count, words.Count, files);
    }
}
