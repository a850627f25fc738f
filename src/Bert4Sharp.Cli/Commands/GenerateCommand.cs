namespace Bert4Sharp.Cli;

using System.CommandLine;
using Bert4Sharp.Generation;
using Bert4Sharp.Models;
using Bert4Sharp.Tokenization;

/// <summary><c>b4s generate --model &lt;dir&gt; [--beam N | --top-p P | --top-k K] "prompt"</c>, streaming.</summary>
internal static class GenerateCommand
{
    public static Command Create()
    {
        var prompt = new Argument<string>("prompt") { Description = "Text to continue (GPT-2) or to transform (T5)" };
        var model = new Option<string>("--model") { Description = "Model directory: config.json (or bert4keras bert_config.json) + weights + vocab.txt (GPT-2, GPT, GPT2-ML) or spiece.model (T5/mT5)", Required = true };
        var family = new Option<string?>("--family") { Description = "gpt2, gpt, gpt2_ml or t5 when the config has no model_type (bert4keras configs)" };
        var beam = new Option<int?>("--beam") { Description = "Beam search with N beams" };
        var topP = new Option<double?>("--top-p") { Description = "Nucleus sampling" };
        var topK = new Option<int?>("--top-k") { Description = "Top-k sampling" };
        var temperature = new Option<double>("--temperature") { Description = "Sampling temperature", DefaultValueFactory = _ => 1.0 };
        var maxNew = new Option<int>("--max-new-tokens") { Description = "Tokens to generate at most", DefaultValueFactory = _ => 32 };
        var seed = new Option<int?>("--seed") { Description = "Random seed for sampling" };
        var consistent = new Option<bool>("--keep-end-token") { Description = "Consistent top-k/top-p: the end token stays among the candidates" };
        var json = new Option<bool>("--json") { Description = "Machine-readable output (no streaming)" };
        var cmd = new Command("generate", "Generate text with GPT-2, GPT, GPT2-ML or T5 (greedy, beam search, or sampling), streamed") { prompt, model, family, beam, topP, topK, temperature, maxNew, seed, consistent, json };
        cmd.SetAction(CliErrors.Wrap(r =>
        {
            string dir = r.GetValue(model)!;
            if (!Directory.Exists(dir)) throw new DirectoryNotFoundException($"{dir}: model directory not found");
            int? beams = r.GetValue(beam);
            if (beams is < 1) throw new ArgumentException($"--beam must be at least 1, got {beams}");
            SamplingOptions? sampling = r.GetValue(topP) is null && r.GetValue(topK) is null && r.GetValue(temperature) == 1.0 ? null
                : new SamplingOptions { TopP = r.GetValue(topP), TopK = r.GetValue(topK), Temperature = r.GetValue(temperature), Seed = r.GetValue(seed), KeepEndToken = r.GetValue(consistent) };
            // GPT-style prompts are [CLS] text with no end token; T5 reads its input through SentencePiece.
            var loaded = AutoModel.Load(dir, new AutoModelOptions { Family = r.GetValue(family), EndToken = null });
            var config = loaded.Config;
            ICausalLanguageModel lm;
            List<int> start;
            Func<IEnumerable<int>, string> decode;
            int? end;
            if (loaded.Model.Application == Application.Seq2Seq)
            {
                var sp = loaded.SentencePiece ?? throw new FileNotFoundException($"{dir}: no spiece.model for the T5 model");
                lm = new Seq2SeqLanguageModel(loaded.Model, sp.Encode(r.GetValue(prompt)!));
                start = [config.DecoderStartTokenId ?? 0];
                decode = sp.Decode;
                end = config.EosTokenId ?? sp.EndId;
            }
            else if (loaded.Model.Application is Application.LanguageModel)
            {
                var tk = loaded.WordPiece ?? throw new FileNotFoundException($"{dir}: no vocab.txt for the {loaded.Family.Name} model");
                lm = new CausalLanguageModel(loaded.Model);
                start = [.. tk.Encode(r.GetValue(prompt)!).Ids];
                decode = tk.Decode;
                end = config.EosTokenId ?? (tk.EndId >= 0 ? tk.EndId : null);
            }
            else throw new ArgumentException($"'{loaded.Family.Name}' is not a generative family; use gpt2, gpt, gpt2_ml, t5 or mt5");
            var options = new DecodingOptions { MaxNewTokens = r.GetValue(maxNew), EndId = end };
            if (beams is int n || r.GetValue(json))
            {
                var ids = beams is int nb ? AutoRegressiveDecoder.BeamSearch(lm, start, nb, options)
                    : sampling is null ? AutoRegressiveDecoder.Greedy(lm, start, options) : Sampler.Sample(lm, start, options, sampling)[0];
                var generated = ids.Skip(start.Count).ToList();
                if (r.GetValue(json)) CliErrors.WriteJson(new { prompt = r.GetValue(prompt), ids = generated, text = decode(generated) });
                else Console.WriteLine(decode(generated));
                return CliErrors.Ok;
            }
            var so = new List<int>();
            string shown = "";
            foreach (int token in Sampler.Stream(lm, start, options, sampling).ToBlockingEnumerable())
            {
                so.Add(token);
                string text = decode(so);
                if (text.StartsWith(shown, StringComparison.Ordinal)) Console.Write(text[shown.Length..]); else Console.Write("\n" + text);
                shown = text;
            }
            Console.WriteLine();
            return CliErrors.Ok;
        }));
        return cmd;
    }
}
