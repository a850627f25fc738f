namespace Bert4Sharp.Cli;

using System.CommandLine;
using Bert4Sharp.Data;
using Bert4Sharp.Models;
using Bert4Sharp.Tokenization;
using Bert4Sharp.Training;

/// <summary>
/// <c>b4s vocab build</c>: WoBERT's word vocabulary (the character vocabulary + the most frequent jieba words of a corpus),
/// and with <c>--model</c> the word model initialised from a character model (docs/classics.md, "WoBERT").
/// </summary>
internal static class VocabCommand
{
    public static Command Create()
    {
        var recipe = new Option<string?>("--recipe") { Description = "Count words on the training texts of this pretraining recipe (its corpus, less its held-out texts)" };
        var corpus = new Option<string[]>("--corpus") { Description = "Corpus files (with --format and --fields); besides or instead of --recipe", AllowMultipleArgumentsPerToken = true };
        var format = new Option<string>("--format") { Description = "Format of the --corpus files: jsonl, tsv or lines", DefaultValueFactory = _ => "lines" };
        var fields = new Option<string[]>("--fields") { Description = "JSON keys or TSV column numbers of the --corpus files' text", AllowMultipleArgumentsPerToken = true };
        var baseVocab = new Option<string?>("--base") { Description = "The character vocab.txt to extend (default: the --model's)" };
        var model = new Option<string?>("--model") { Description = "A character-level masked-LM model directory: also write the word model, new rows = the mean of their characters' rows" };
        var minCount = new Option<int>("--min-count") { Description = "Keep words seen at least this many times", DefaultValueFactory = _ => 5 };
        var maxWords = new Option<int>("--max-words") { Description = "Keep at most this many words, the most frequent first (WoBERT: 20000)", DefaultValueFactory = _ => 20_000 };
        var output = new Option<string>("--output") { Description = "Directory for vocab.txt, words.tsv (and the word model with --model)", Required = true };
        var build = new Command("build", "WoBERT word vocabulary: the character vocabulary + frequent jieba words of a corpus (+ the word model with --model)")
            { recipe, corpus, format, fields, baseVocab, model, minCount, maxWords, output };
        build.SetAction(CliErrors.Wrap(r => Build(r.GetValue(recipe), r.GetValue(corpus) ?? [], r.GetValue(format)!, r.GetValue(fields) ?? [], r.GetValue(baseVocab),
            r.GetValue(model), r.GetValue(minCount), r.GetValue(maxWords), r.GetValue(output)!)));
        return new Command("vocab", "Vocabularies: word-level (WoBERT) vocabularies and models") { build };
    }

    static int Build(string? recipePath, string[] corpus, string format, string[] fields, string? baseVocab, string? model, int minCount, int maxWords, string output)
    {
        var options = new WordVocabularyOptions { MinCount = minCount, MaxWords = maxWords };
        options.Validate();
        if (recipePath is null && corpus.Length == 0) throw new ArgumentException("give the text to count words on: --recipe (a pretraining recipe) or --corpus FILES");
        if (baseVocab is null && model is null) throw new ArgumentException("give the character vocabulary: --base VOCAB or --model DIR");
        if (baseVocab is not null && model is not null && Path.GetFullPath(baseVocab) != Path.GetFullPath(Path.Combine(model, "vocab.txt")))
            throw new ArgumentException($"--base {baseVocab} is not the --model's own vocab.txt: the word rows are built from the model's characters, so leave --base out");
        var textFormat = TextRecords.ParseFormat(format) ?? throw new ArgumentException($"--format '{format}' is unknown; use jsonl, tsv or lines");
        if (corpus.Length > 0 && textFormat != TextFormat.Lines && fields.Length == 0) throw new ArgumentException($"--format {format} needs --fields (JSON keys or TSV column numbers)");
        foreach (var f in corpus)
            if (!File.Exists(f)) throw new FileNotFoundException($"{f}: corpus file not found", f);
        string vocabPath = baseVocab ?? Path.Combine(model!, "vocab.txt");
        if (!File.Exists(vocabPath)) throw new FileNotFoundException($"{vocabPath}: character vocabulary not found", vocabPath);
        var characters = Vocabulary.Load(vocabPath);

        var texts = new List<string>();
        if (recipePath is not null) texts.AddRange(Pretraining.Split(Recipe.Load<PretrainRecipe>(recipePath), Console.Error.WriteLine).Train);
        foreach (var f in corpus)
        {
            int before = texts.Count;
            texts.AddRange(TextRecords.Read(f, textFormat, fields));
            Console.Error.WriteLine($"corpus: {texts.Count - before:N0} texts from {f}");
        }
        var jieba = JiebaSegmenter.FromCache(fetch: true);
        var watch = System.Diagnostics.Stopwatch.StartNew();
        var result = WordVocabulary.Build(characters, texts, s => jieba.Cut(s, hmm: false), options);
        Console.WriteLine($"{result.Texts:N0} texts, {result.Segments:N0} jieba segments ({watch.Elapsed.TotalSeconds:F1} s); {result.Candidates:N0} distinct eligible words; " +
            $"kept {result.Words.Count:N0} (count ≥ {minCount}, at most {maxWords:N0}): vocabulary {characters.Count:N0} → {result.Vocabulary.Count:N0}");
        if (result.Words.Count == 0) throw new InvalidDataException($"no word occurs {minCount} times or more in the {result.Texts:N0} texts: lower --min-count or give more text");
        Console.WriteLine($"most frequent: {string.Join(" ", result.Words.Take(12).Select(w => $"{w.Word}({w.Count})"))}; last kept: {result.Words[^1].Word}({result.Words[^1].Count})");

        Directory.CreateDirectory(output);
        Checkpoints.AtomicFile.WriteAllText(Path.Combine(output, "words.tsv"), string.Concat(result.Words.Select(w => $"{w.Word}\t{w.Count}\n")));
        if (model is null)
        {
            result.Vocabulary.Save(Path.Combine(output, "vocab.txt"));
            Console.WriteLine($"wrote {Path.Combine(output, "vocab.txt")} and words.tsv");
            return CliErrors.Ok;
        }
        var made = WordModels.FromCharacterModel(model, result.Words.Select(w => w.Word).ToList(), output);
        Console.WriteLine($"word model: {made.CharacterTokens:N0} character rows kept, {made.WordsAdded:N0} word rows initialised as the mean of their characters; " +
            $"wrote {string.Join(", ", made.Files.Select(Path.GetFileName))} and words.tsv to {output}");
        return CliErrors.Ok;
    }
}
