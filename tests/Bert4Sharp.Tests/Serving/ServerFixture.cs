namespace Bert4Sharp.Tests.Serving;

using Bert4Sharp.Models;
using Bert4Sharp.Serving;
using Bert4Sharp.Tokenization;
using TorchSharp;
using static TorchSharp.torch;

/// <summary>
/// One in-process Kestrel server on a free loopback port for the serving tests: the real all-MiniLM-L6-v2 graph
/// (embeddings, ONNX Runtime), a tiny BERT with its MLM head (embeddings + fill-mask, TorchSharp) and a tiny GPT-2
/// (completions, TorchSharp), the last two written by the fixture itself.
/// </summary>
public sealed class ServerFixture : IAsyncLifetime
{
    public string Root { get; } = Directory.CreateTempSubdirectory("b4s-serve-").FullName;
    public ServerApp Server { get; private set; } = null!;
    public HttpClient Http { get; private set; } = null!;
    public string BaseUrl { get; private set; } = "";
    public string GptDirectory => Path.Combine(Root, "gpt");
    public string BertDirectory => Path.Combine(Root, "bert");
    public string SlowDirectory => Path.Combine(Root, "gpt-slow");

    /// <summary>A WordPiece vocabulary of the special tokens, 26 letters and 200 CJK characters.</summary>
    static void WriteVocabulary(string path) => File.WriteAllLines(path,
        new[] { "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]" }.Concat(Enumerable.Range(0, 26).Select(i => ((char)('a' + i)).ToString()))
            .Concat(Enumerable.Range(0, 200).Select(i => ((char)('一' + i)).ToString())));

    internal static void WriteTinyModel(string dir, string family, Application application, int seed, int maxPositions = 1024, int hidden = 32, int layers = 2)
    {
        Directory.CreateDirectory(dir);
        WriteVocabulary(Path.Combine(dir, "vocab.txt"));
        torch.manual_seed(seed);
        var config = new TransformerConfig
        {
            ModelType = family, VocabSize = 231, HiddenSize = hidden, NumHiddenLayers = layers, NumAttentionHeads = 2, IntermediateSize = 2 * hidden,
            MaxPositionEmbeddings = maxPositions, HiddenDropoutProb = 0, AttentionProbsDropoutProb = 0,
        };
        using var model = TransformerModels.Build(config, null, ModelFamily.Get(family), application, new BuildOptions { Device = CPU }, out _);
        model.SavePretrained(dir);
    }

    /// <summary>A random-weight TNEWS-style classifier and a CLUENER GlobalPointer recognizer, saved as b4s clue train saves them.</summary>
    internal static void WriteTaskModels(string classifierDir, string nerDir)
    {
        foreach (var (dir, seed) in new[] { (classifierDir, 6), (nerDir, 7) })
        {
            WriteTinyModel(dir, "bert", Application.Encoder, seed, maxPositions: 64);
            var tokenizer = BertWordPieceTokenizer.FromFile(Path.Combine(dir, "vocab.txt"));
            var encoder = AutoModel.Load(dir, new AutoModelOptions { Application = Application.Encoder }).Model;
            torch.manual_seed(seed);
            if (dir == classifierDir)
            {
                string[] labels = ["news_story", "news_culture", "news_sports"];
                using var model = new Bert4Sharp.Tasks.SequenceClassifier(encoder, labels.Length, 0.1, Bert4Sharp.Tasks.Pooling.First);
                Bert4Sharp.Training.ClueRun.Save(model, encoder, tokenizer, new Bert4Sharp.Training.TaskModelFile("tnews", "classifier", labels, 32,
                    new Dictionary<string, string> { ["pooling"] = "First", ["dropout"] = "0.1" }), dir);
            }
            else
            {
                string[] types = ["address", "company", "name"];
                using var model = new Bert4Sharp.Tasks.EntityRecognizer(encoder, types, new Bert4Sharp.Tasks.EntityRecognizerOptions { Head = Bert4Sharp.Tasks.EntityHead.GlobalPointer });
                Bert4Sharp.Training.ClueRun.Save(model, encoder, tokenizer, new Bert4Sharp.Training.TaskModelFile("cluener", "GlobalPointer", types, 64,
                    new Dictionary<string, string> { ["scheme"] = "Bio" }), dir);
            }
        }
    }

    public async ValueTask InitializeAsync()
    {
        WriteTaskModels(Path.Combine(Root, "tnews"), Path.Combine(Root, "ner"));
        WriteTinyModel(GptDirectory, "gpt2", Application.LanguageModel, 3);
        WriteTinyModel(BertDirectory, "bert", Application.MaskedLM, 4, maxPositions: 64);
        // Slow enough (about 10 ms a token here) that a client can leave in the middle of 3,000 tokens.
        WriteTinyModel(SlowDirectory, "gpt2", Application.LanguageModel, 5, maxPositions: 4096, hidden: 256, layers: 6);
        Server = ServerApp.Create(new ServeOptions
        {
            Models = [new ModelSpec("minilm", MiniLm.Directory, "onnx"), new ModelSpec("bert", BertDirectory), new ModelSpec("gpt", GptDirectory), new ModelSpec("gpt-slow", SlowDirectory),
                new ModelSpec("tnews", Path.Combine(Root, "tnews")), new ModelSpec("ner", Path.Combine(Root, "ner"))],
            MaxNewTokens = 3000, MaxBatch = 64, MaxBatchDelay = TimeSpan.FromMilliseconds(20), MaxBodyBytes = 64 * 1024,
        }, ["http://127.0.0.1:0"], _ => { });
        await Server.StartAsync();
        BaseUrl = Server.Addresses[0];
        Http = new HttpClient { BaseAddress = new Uri(BaseUrl), Timeout = TimeSpan.FromMinutes(2) };
    }

    public async ValueTask DisposeAsync()
    {
        Http.Dispose();
        await Server.DisposeAsync();
        try { Directory.Delete(Root, true); } catch (IOException) { }
    }
}

/// <summary>The serving tests share one server and run one after another (the 429 test counts requests in flight).</summary>
[CollectionDefinition("serving")]
public sealed class ServingCollection : ICollectionFixture<ServerFixture>;
