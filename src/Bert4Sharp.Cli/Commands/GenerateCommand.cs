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
        var temperature = new Option<double?>("--temperature") { Description = "Sampling temperature (alone: sampling from the whole distribution)" };
        var maxNew = new Option<int>("--max-new-tokens") { Description = "Tokens to generate at most", DefaultValueFactory = _ => 32 };
        var seed = new Option<int?>("--seed") { Description = "Random seed for sampling (with --top-k, --top-p or --temperature)" };
        var consistent = new Option<bool>("--keep-end-token") { Description = "Consistent top-k/top-p: the end token stays among the candidates (with --top-k or --top-p)" };
        var json = new Option<bool>("--json") { Description = "Machine-readable output (no streaming)" };
        var engine = new Option<string>("--engine") { Description = "torch (TorchSharp, any checkpoint) or onnx (ONNX Runtime on the directory's model.onnx from b4s export onnx; GPT families, LM/UniLM graphs, T5/mT5)", DefaultValueFactory = _ => "torch" };
        engine.AcceptOnlyFromAmong("torch", "onnx");
        var precision = PrecisionOption.Create(training: false);
        var cmd = new Command("generate", "Generate text with GPT-2, GPT, GPT2-ML or T5 (greedy, beam search, or sampling), streamed") { prompt, model, family, beam, topP, topK, temperature, maxNew, seed, consistent, json, engine, precision };
        cmd.SetAction(CliErrors.Wrap(r =>
        {
            // Decoding flags first: a contradictory or ignored combination fails before the model is loaded.
            var (beams, sampling) = DecodingChoice(r.GetValue(beam), r.GetValue(topK), r.GetValue(topP), r.GetValue(temperature), r.GetValue(seed), r.GetValue(consistent));
            using var generator = Serving.TextGenerator.Load(r.GetValue(model)!, r.GetValue(engine)!, r.GetValue(family), PrecisionOption.Parse(r.GetValue(precision)));
            using var session = generator.Start(r.GetValue(prompt)!);
            return Decode(r, session.Model, session.Start, generator.Decode, generator.EndId, beams, sampling);
        }));
        return cmd;

        int Decode(ParseResult r, ICausalLanguageModel lm, List<int> start, Func<IEnumerable<int>, string> decode, int? end, int? beams, SamplingOptions? sampling)
        {
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
        }
    }

    /// <summary>
    /// Greedy (no decoding flag), beam search (<c>--beam</c>) or sampling (<c>--top-k</c>, <c>--top-p</c>,
    /// <c>--temperature</c>, with <c>--seed</c> and <c>--keep-end-token</c>). Flags that would be silently ignored
    /// or overridden are errors that name the flags and what to use instead.
    /// </summary>
    internal static (int? Beams, SamplingOptions? Sampling) DecodingChoice(int? beams, int? topK, double? topP, double? temperature, int? seed, bool keepEndToken)
    {
        var samplingFlags = new[] { ("--top-k", topK is not null), ("--top-p", topP is not null), ("--temperature", temperature is not null), ("--seed", seed is not null), ("--keep-end-token", keepEndToken) }
            .Where(f => f.Item2).Select(f => f.Item1).ToList();
        if (beams is int b)
        {
            if (b < 1) throw new ArgumentException($"--beam must be at least 1, got {b}");
            if (samplingFlags.Count > 0)
                throw new ArgumentException($"--beam cannot be combined with {string.Join(", ", samplingFlags)}: beam search is deterministic and would ignore them; use --beam N alone, or drop --beam to sample");
            return (b, null);
        }
        if (topK is null && topP is null && temperature is null)
        {
            if (samplingFlags.Count > 0)
            {
                string flags = string.Join(" and ", samplingFlags);
                throw new ArgumentException($"{flags} only {(samplingFlags.Count == 1 ? "applies" : "apply")} to sampling, and without --top-k, --top-p or --temperature decoding is greedy; add one of those (e.g. --top-p 0.9) or drop {flags}");
            }
            return (null, null);
        }
        if (keepEndToken && topK is null && topP is null)
            throw new ArgumentException("--keep-end-token keeps the end token through top-k/top-p truncation, and --temperature alone truncates nothing; add --top-k or --top-p, or drop --keep-end-token");
        if (topK is < 1) throw new ArgumentException($"--top-k must be at least 1, got {topK}");
        if (topP is double p && !(p > 0 && p <= 1)) throw new ArgumentException($"--top-p must be in (0, 1], got {p}");
        if (temperature is double t && !(t > 0)) throw new ArgumentException($"--temperature must be > 0, got {t}");
        return (null, new SamplingOptions { TopK = topK, TopP = topP, Temperature = temperature ?? 1.0, Seed = seed, KeepEndToken = keepEndToken });
    }
}
