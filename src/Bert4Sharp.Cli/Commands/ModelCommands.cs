namespace Bert4Sharp.Cli;

using System.CommandLine;
using Bert4Sharp.Models;
using Bert4Sharp.Runtime;
using Spectre.Console;

/// <summary><c>b4s encode</c> and <c>b4s fill-mask</c> over a model directory.</summary>
internal static class ModelCommands
{
    sealed record Common(Option<string> Model, Option<string?> Family, Option<string?> Vocab, Option<bool> Cased, Option<int?> Threads, Option<bool> Json, Option<string?> Precision);

    static Common Options() => new(
        new Option<string>("--model") { Description = "Model directory (config + weights + vocab.txt)", Required = true },
        new Option<string?>("--family") { Description = "bert, albert, electra, roformer, roformer_v2 (default: the config's model_type)" },
        new Option<string?>("--vocab") { Description = "vocab.txt (default: the one in the model directory)" },
        new Option<bool>("--cased") { Description = "Do not lower-case" },
        new Option<int?>("--threads") { Description = "CPU threads for libtorch" },
        new Option<bool>("--json") { Description = "Machine-readable output" },
        PrecisionOption.Create(training: false));

    static void Add(Command cmd, Common o)
    {
        cmd.Options.Add(o.Model); cmd.Options.Add(o.Family); cmd.Options.Add(o.Vocab);
        cmd.Options.Add(o.Cased); cmd.Options.Add(o.Threads); cmd.Options.Add(o.Json); cmd.Options.Add(o.Precision);
    }

    static TransformerPipeline Load(System.CommandLine.ParseResult r, Common o, Application app)
    {
        if (r.GetValue(o.Threads) is int t) TorchInfo.SetThreads(t);
        var pipeline = TransformerPipeline.Load(r.GetValue(o.Model)!, r.GetValue(o.Family), app, null, r.GetValue(o.Vocab), !r.GetValue(o.Cased));
        PrecisionOption.ApplyForInference(r.GetValue(o.Precision), pipeline.Model, pipeline.Model.Device);
        return pipeline;
    }

    /// <summary>The ONNX Runtime engine over the directory's model.onnx and vocab.txt (same pipeline, another engine).</summary>
    static TransformerPipeline LoadOnnx(System.CommandLine.ParseResult r, Common o)
    {
        string dir = r.GetValue(o.Model)!;
        if (r.GetValue(o.Family) is not null) throw new ArgumentException("--family applies to the torch engine; the onnx engine runs the graph as exported");
        PrecisionOption.RefuseForOnnx(r.GetValue(o.Precision));
        string vocab = r.GetValue(o.Vocab) ?? Path.Combine(dir, "vocab.txt");
        var tokenizer = Tokenization.BertWordPieceTokenizer.FromFile(vocab, new Tokenization.BertWordPieceOptions { LowerCase = !r.GetValue(o.Cased) });
        return TransformerPipeline.Create(new Onnx.OnnxRuntimeEncoder(dir, new Onnx.OnnxEncoderOptions { Threads = r.GetValue(o.Threads) ?? 0 }), tokenizer);
    }

    static Option<string> Engine()
    {
        var engine = new Option<string>("--engine") { Description = "torch (TorchSharp, any checkpoint) or onnx (ONNX Runtime on the directory's model.onnx, e.g. from b4s export onnx)", DefaultValueFactory = _ => "torch" };
        engine.AcceptOnlyFromAmong("torch", "onnx");
        return engine;
    }

    public static Command Encode()
    {
        var o = Options();
        var text = new Argument<string[]>("text") { Arity = ArgumentArity.OneOrMore, Description = "Texts to encode (one batch)" };
        var engine = Engine();
        var cmd = new Command("encode", "Sentence vectors ([CLS], mean over tokens, pooler) of texts") { text, engine };
        Add(cmd, o);
        cmd.SetAction(CliErrors.Wrap(r =>
        {
            var p = r.GetValue(engine) == "onnx" ? LoadOnnx(r, o) : Load(r, o, Application.Encoder);
            var v = p.Encode(r.GetValue(text)!);
            if (r.GetValue(o.Json))
            {
                CliErrors.WriteJson(new { texts = v.Texts, tokens = v.Tokens, first = v.First, mean = v.Mean, pooled = v.Pooled });
                return CliErrors.Ok;
            }
            var table = new Table().Border(TableBorder.Simple).AddColumn("text").AddColumn("tokens").AddColumn("|mean|").AddColumn("mean (first 4)");
            for (int i = 0; i < v.Texts.Count; i++)
            {
                double norm = Math.Sqrt(v.Mean[i].Sum(x => (double)x * x));
                table.AddRow(Markup.Escape(v.Texts[i]), v.Tokens[i].Count.ToString(), norm.ToString("F3"), string.Join(" ", v.Mean[i].Take(4).Select(x => x.ToString("F4"))));
            }
            AnsiConsole.Write(table);
            if (v.Texts.Count > 1)
            {
                float Cos(float[] a, float[] b) => (float)(a.Zip(b).Sum(t => (double)t.First * t.Second) / Math.Sqrt(a.Sum(x => (double)x * x) * b.Sum(x => (double)x * x)));
                AnsiConsole.MarkupLine($"cosine(mean vectors) of the first two: {Cos(v.Mean[0], v.Mean[1]):F4}");
            }
            return CliErrors.Ok;
        }));
        return cmd;
    }

    public static Command FillMask()
    {
        var o = Options();
        var text = new Argument<string>("text") { Description = "Text with [MASK]" };
        var topK = new Option<int>("--top-k") { Description = "Candidates per mask", DefaultValueFactory = _ => 5 };
        var engine = Engine();
        var cmd = new Command("fill-mask", "Predict the [MASK] tokens of a text") { text, topK, engine };
        Add(cmd, o);
        cmd.SetAction(CliErrors.Wrap(r =>
        {
            var p = r.GetValue(engine) == "onnx" ? LoadOnnx(r, o) : Load(r, o, Application.MaskedLM);
            var c = p.FillMask(r.GetValue(text)!, r.GetValue(topK));
            if (r.GetValue(o.Json)) { CliErrors.WriteJson(c); return CliErrors.Ok; }
            var table = new Table().Border(TableBorder.Simple).AddColumn("mask").AddColumn("token").AddColumn("p").AddColumn("text");
            foreach (var x in c) table.AddRow(x.Position.ToString(), Markup.Escape(x.Token), x.Probability.ToString("F4"), Markup.Escape(x.Text));
            AnsiConsole.Write(table);
            return CliErrors.Ok;
        }));
        return cmd;
    }
}
