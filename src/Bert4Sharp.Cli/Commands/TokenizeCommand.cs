namespace Bert4Sharp.Cli;

using System.CommandLine;
using Bert4Sharp.Tokenization;
using Spectre.Console;

/// <summary><c>b4s tokenize --vocab &lt;vocab.txt | spm.model&gt; [--words] "text"</c>: tokens, ids and offsets.</summary>
internal static class TokenizeCommand
{
    public static Command Create()
    {
        var text = new Argument<string[]>("text") { Description = "Text(s) to tokenize", Arity = ArgumentArity.OneOrMore };
        var vocab = new Option<string>("--vocab") { Description = "vocab.txt (WordPiece) or a SentencePiece .model", Required = true };
        var words = new Option<bool>("--words") { Description = "Segment words with jieba first (WoBERT); needs 'b4s data get jieba-dict'" };
        var cased = new Option<bool>("--cased") { Description = "Do not lower-case (WordPiece; Chinese BERT vocabularies are lower-case)" };
        var json = new Option<bool>("--json") { Description = "Machine-readable output" };
        var cmd = new Command("tokenize", "Show tokens, ids and character offsets") { text, vocab, words, cased, json };
        cmd.SetAction(CliErrors.Wrap(r => Run(r.GetValue(text)!, r.GetValue(vocab)!, r.GetValue(words), r.GetValue(cased), r.GetValue(json))));
        return cmd;
    }

    sealed record Row(int Index, string Token, int Id, int Start, int End, string Original);

    static int Run(string[] texts, string vocab, bool words, bool cased, bool json)
    {
        Func<string, IEnumerable<string>>? pre = null;
        if (words)
        {
            var jieba = JiebaSegmenter.FromCache();
            pre = s => jieba.Cut(s);
        }
        var results = new List<object>();
        foreach (string text in texts)
        {
            List<Row> rows;
            if (vocab.EndsWith(".model", StringComparison.OrdinalIgnoreCase))
            {
                var sp = SpTokenizer.FromFile(vocab, new SpTokenizerOptions { PreTokenizer = pre });
                var ids = sp.Encode(text);
                rows = ids.Select((id, i) => new Row(i, sp.IdToPiece(id), id, -1, -1, "")).ToList();
            }
            else
            {
                var tk = BertWordPieceTokenizer.FromFile(vocab, new BertWordPieceOptions { LowerCase = !cased, PreTokenizer = pre });
                var e = tk.Encode(text);
                rows = Enumerable.Range(0, e.Count).Select(i => new Row(i, e.Tokens[i], e.Ids[i], e.Offsets[i].Start, e.Offsets[i].End,
                    e.Offsets[i].IsEmpty ? "" : text[e.Offsets[i].Start..e.Offsets[i].End])).ToList();
            }
            if (json) { results.Add(new { text, tokens = rows }); continue; }
            AnsiConsole.MarkupLine($"[bold]{Markup.Escape(text)}[/]  ({rows.Count} tokens)");
            var table = new Table().Border(TableBorder.Simple).AddColumn("#").AddColumn("token").AddColumn(new TableColumn("id").RightAligned()).AddColumn("span").AddColumn("original");
            foreach (var r in rows)
                table.AddRow(r.Index.ToString(), Markup.Escape(r.Token), r.Id.ToString(), r.Start < 0 || r.End <= r.Start ? "" : $"{r.Start}..{r.End}", Markup.Escape(r.Original));
            AnsiConsole.Write(table);
        }
        if (json) CliErrors.WriteJson(results);
        return CliErrors.Ok;
    }
}
