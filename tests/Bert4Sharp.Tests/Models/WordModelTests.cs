using Bert4Sharp.Models;
using Bert4Sharp.Tokenization;
using Bert4Sharp.Tests.Tokenization;
using TorchSharp;
using static TorchSharp.torch;

namespace Bert4Sharp.Tests.Models;

/// <summary>WoBERT's word model: compound initialisation from a character model, the saved directory, bad input.</summary>
public class WordModelTests
{
    static readonly string[] Characters = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", .. "北京是中国的首都天气好".Select(c => c.ToString())];

    /// <summary>A tiny random character-level BERT MLM model (BERT: its MLM head has an output bias) saved with its vocabulary.</summary>
    static string CharacterModel(string dir)
    {
        torch.manual_seed(7);
        var config = new TransformerConfig { VocabSize = Characters.Length, HiddenSize = 16, NumHiddenLayers = 1, NumAttentionHeads = 2, IntermediateSize = 32, HiddenAct = "relu" };
        using var model = TransformerModels.Create(config, "bert", Application.MaskedLM, new BuildOptions { Device = torch.CPU });
        using (torch.no_grad())
            foreach (var (name, p) in model.named_parameters())
                if (name.EndsWith("mlm_bias", StringComparison.Ordinal)) p.uniform_(-1, 1);   // zeros would make the bias check vacuous
        TransformerPipeline.Create(model, new BertWordPieceTokenizer(new Vocabulary(Characters))).SavePretrained(dir);
        return dir;
    }

    static Tensor MlmBias(TransformerModel m) => m.named_parameters().Single(p => p.name.EndsWith("mlm_bias", StringComparison.Ordinal)).parameter.detach();

    [Fact]
    public void WordRowsAreTheMeanOfTheirCharacterRowsAndTheDirectoryLoadsBack()
    {
        JiebaTestSupport.SegmenterOrSkip();   // loading the word model tokenises with jieba
        string root = Directory.CreateTempSubdirectory("b4s-wobert").FullName;
        try
        {
            string chars = CharacterModel(Path.Combine(root, "chars"));
            string[] words = ["首都", "北京", "中国的"];
            var made = WordModels.FromCharacterModel(chars, words, Path.Combine(root, "words"));
            Assert.Equal(Characters.Length, made.CharacterTokens);
            Assert.Equal(3, made.WordsAdded);

            using var before = AutoModel.Load(chars, new AutoModelOptions { Application = Application.MaskedLM, Build = new BuildOptions { Device = torch.CPU } }).Model;
            var loaded = AutoModel.Load(made.Directory, new AutoModelOptions { Application = Application.MaskedLM, Build = new BuildOptions { Device = torch.CPU } });
            using var after = loaded.Model;
            Assert.Equal(Characters.Length + 3, after.Config.VocabSize);
            Assert.Equal(Characters.Length + 3, loaded.WordPiece!.Vocabulary.Count);

            var e0 = before.TokenEmbeddings.detach();
            var e1 = after.TokenEmbeddings.detach();
            var b0 = MlmBias(before);
            var b1 = MlmBias(after);
            Close.Assert(e1[..Characters.Length], e0, "character rows unchanged", atol: 0, rtol: 0);
            Close.Assert(b1[..Characters.Length], b0, "character biases unchanged", atol: 0, rtol: 0);
            for (int w = 0; w < words.Length; w++)
            {
                var ids = torch.tensor(words[w].Select(c => (long)Array.IndexOf(Characters, c.ToString())).ToArray());
                int row = Characters.Length + w;
                Assert.Equal(words[w], loaded.WordPiece.Vocabulary.IdToToken(row));
                Close.Assert(e1[row], e0.index_select(0, ids).mean([0L]), $"embedding of {words[w]}");
                Close.Assert(b1[row], b0.index_select(0, ids).mean([0L]), $"MLM bias of {words[w]}");
            }
            // Every other weight is copied unchanged.
            var p0 = before.named_parameters().ToDictionary(p => p.name, p => p.parameter);
            foreach (var (name, p) in after.named_parameters().Where(p => p.parameter.shape[0] != Characters.Length + 3))
                Close.Assert(p.detach(), p0[name].detach(), name, atol: 0, rtol: 0);

            // The saved directory records jieba, so the loader's tokenizer keeps the words whole.
            Assert.Equal(PreTokenization.Jieba, PreTokenization.Read(made.Directory));
            var enc = loaded.WordPiece.Encode("北京是中国的首都");
            Assert.Equal(["[CLS]", "北京", "是", "中", "国", "的", "首都", "[SEP]"], enc.Tokens);   // jieba: 北京 / 是 / 中国 / 的 / 首都; 中国 is not a token

            // A task model saved from this encoder (what b4s clue train writes) records jieba too, so clue predict / explain
            // reload it tokenising words, not characters.
            var encoder = AutoModel.Load(made.Directory, new AutoModelOptions { Application = Application.Encoder, Build = new BuildOptions { Device = torch.CPU } });
            using var classifier = new Bert4Sharp.Tasks.SequenceClassifier(encoder.Model, 2, 0.0);   // disposes the encoder with it
            string task = Bert4Sharp.Training.ClueRun.Save(classifier, encoder.Model, encoder.WordPiece!,
                new Bert4Sharp.Training.TaskModelFile("tnews", "SequenceClassifier", ["a", "b"], 32), Path.Combine(root, "task"));
            Assert.Equal(PreTokenization.Jieba, PreTokenization.Read(task));
            var (reloadedEncoder, reloaded) = Bert4Sharp.Training.ClueRun.LoadEncoder(task);
            reloadedEncoder.Dispose();
            Assert.Equal(enc.Tokens, reloaded.Encode("北京是中国的首都").Tokens);
        }
        finally { Directory.Delete(root, true); }
    }

    [Fact]
    public void BadWordListsAndMissingModelsAreRejected()
    {
        string root = Directory.CreateTempSubdirectory("b4s-wobert-bad").FullName;
        try
        {
            string chars = CharacterModel(Path.Combine(root, "chars"));
            string output = Path.Combine(root, "out");
            Assert.Contains("already a token", Assert.Throws<ArgumentException>(() => WordModels.FromCharacterModel(chars, ["北京", "北"], output)).Message);
            Assert.Contains("appears twice", Assert.Throws<ArgumentException>(() => WordModels.FromCharacterModel(chars, ["北京", "北京"], output)).Message);
            Assert.Contains("empty", Assert.Throws<ArgumentException>(() => WordModels.FromCharacterModel(chars, [], output)).Message);
            Assert.Contains("no such model directory", Assert.Throws<FileNotFoundException>(() => WordModels.FromCharacterModel(Path.Combine(root, "nope"), ["北京"], output)).Message);
            File.Delete(Path.Combine(chars, "vocab.txt"));
            Assert.Contains("no vocab.txt", Assert.Throws<FileNotFoundException>(() => WordModels.FromCharacterModel(chars, ["北京"], output)).Message);
            Assert.False(Directory.Exists(output));
        }
        finally { Directory.Delete(root, true); }
    }
}
