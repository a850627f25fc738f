using System.Text.Json;
using Bert4Sharp.Generation;
using Bert4Sharp.Layers;
using TorchSharp;
using static TorchSharp.torch;

namespace Bert4Sharp.Tests.Generation;

/// <summary>
/// The decoders on their own, over synthetic logits tables (tests/fixtures/generation/beam_search.json, written by
/// tests/reference/make_beam_search_refs.py, a port of transformers' <c>_beam_search</c> that reproduces
/// transformers 5.17's GPT-2 beam-4 output): end tokens emitted early, beams that differ from greedy, length
/// penalties 0, 0.5, 1 and 2, early stopping on and off, and the maximum length reached with and without an end token.
/// </summary>
public class BeamSearchTests
{
    /// <summary>A language model whose next-token logits depend only on the position and the last token.</summary>
    sealed class TableModel(float[][][] table) : ICausalLanguageModel
    {
        long offset;   // positions already seen: every row of a batch has the same length

        public int VocabularySize => table[0][0].Length;

        public Device Device => torch.CPU;

        public KeyValueCache NewCache()
        {
            offset = 0;
            return new KeyValueCache(1);
        }

        public Tensor Logits(Tensor ids, KeyValueCache? cache)
        {
            if (cache is null) offset = 0;   // uncached callers pass the whole sequence every time
            long b = ids.shape[0], t = ids.shape[1];
            int v = VocabularySize;
            var tokens = ids.data<long>().ToArray();
            var logits = new float[b * t * v];
            for (long i = 0; i < b; i++)
                for (long j = 0; j < t; j++)
                    table[offset + j][tokens[i * t + j]].CopyTo(logits, (i * t + j) * v);
            offset += t;
            return torch.tensor(logits, [b, t, v]);
        }
    }

    sealed record Case(string Name, int Beams, DecodingOptions Options, List<int> Prompt, List<int> Expected, List<int> Greedy,
        List<int> Previous, float[][][] Logits)
    {
        public override string ToString() => Name;
    }

    static readonly Lazy<Dictionary<string, Case>> All = new(() =>
    {
        using var doc = JsonDocument.Parse(File.ReadAllBytes(TestPaths.Fixture("generation", "beam_search.json")));
        static List<int> L(JsonElement e) => e.EnumerateArray().Select(x => x.GetInt32()).ToList();
        return doc.RootElement.GetProperty("cases").EnumerateArray().Select(c => new Case(
            c.GetProperty("name").GetString()!,
            c.GetProperty("beams").GetInt32(),
            new DecodingOptions
            {
                MaxNewTokens = c.GetProperty("max_new_tokens").GetInt32(),
                EndId = c.GetProperty("eos").ValueKind == JsonValueKind.Null ? null : c.GetProperty("eos").GetInt32(),
                LengthPenalty = c.GetProperty("length_penalty").GetDouble(),
                EarlyStopping = c.GetProperty("early_stopping").GetBoolean(),
            },
            L(c.GetProperty("prompt")), L(c.GetProperty("expected")), L(c.GetProperty("greedy")), L(c.GetProperty("previous_bert4sharp")),
            c.GetProperty("logits").EnumerateArray().Select(p => p.EnumerateArray().Select(r => r.EnumerateArray().Select(x => x.GetSingle()).ToArray()).ToArray()).ToArray()))
            .ToDictionary(c => c.Name);
    });

    public static TheoryData<string> Names() => new(All.Value.Keys);

    [Theory]
    [MemberData(nameof(Names))]
    public void BeamSearchAndGreedyMatchTheReference(string name)
    {
        var c = All.Value[name];
        var lm = new TableModel(c.Logits);
        Assert.Equal(c.Expected, AutoRegressiveDecoder.BeamSearch(lm, c.Prompt, c.Beams, c.Options));
        Assert.Equal(c.Greedy, AutoRegressiveDecoder.Greedy(lm, c.Prompt, c.Options));
        Assert.Equal(c.Greedy, AutoRegressiveDecoder.Greedy(lm, c.Prompt, c.Options, useCache: false));
    }

    [Fact]
    public void TheCasesMakeTheirPoints()
    {
        var c = All.Value;
        int end = c["eos_early_beams_differ_from_greedy"].Options.EndId!.Value;
        var early = c["eos_early_beams_differ_from_greedy"];
        Assert.Equal(end, early.Expected[^1]);
        Assert.True(early.Expected.Count < early.Prompt.Count + early.Options.MaxNewTokens);
        Assert.NotEqual(early.Greedy, early.Expected);
        // The bug this fixture was made for: running beams competed with finished ones after an early stop.
        Assert.NotEqual(c["early_stopping_drops_running_beams"].Previous, c["early_stopping_drops_running_beams"].Expected);
        Assert.NotEqual(c["no_early_stopping_previous_differs"].Previous, c["no_early_stopping_previous_differs"].Expected);
        // Same table, early stopping off: a longer hypothesis wins.
        Assert.Equal(c["early_stopping_drops_running_beams"].Logits.Length, c["no_early_stopping_searches_on"].Logits.Length);
        Assert.NotEqual(c["early_stopping_drops_running_beams"].Expected, c["no_early_stopping_searches_on"].Expected);
        var noEnd = c["max_length_without_end_token"];
        Assert.Null(noEnd.Options.EndId);
        Assert.Equal(noEnd.Prompt.Count + noEnd.Options.MaxNewTokens, noEnd.Expected.Count);
        Assert.NotEqual(noEnd.Greedy, noEnd.Expected);
        Assert.Equal(c["one_beam_is_greedy"].Greedy, c["one_beam_is_greedy"].Expected);
        Assert.Equal([.. c["end_token_first"].Prompt, end], c["end_token_first"].Expected);
    }

    [Fact]
    public void OptionsChangeTheAnswerOnOneTable()
    {
        // length_penalty_2_prefers_longer's table decoded with length penalty 1 gives a shorter hypothesis.
        var c = All.Value["length_penalty_2_prefers_longer"];
        var lm = new TableModel(c.Logits);
        var plain = AutoRegressiveDecoder.BeamSearch(lm, c.Prompt, c.Beams, c.Options with { LengthPenalty = 1.0 });
        Assert.True(plain.Count < c.Expected.Count, $"{string.Join(",", plain)} vs {string.Join(",", c.Expected)}");
        // No new tokens: the prompt back.
        Assert.Equal(c.Prompt, AutoRegressiveDecoder.BeamSearch(lm, c.Prompt, c.Beams, c.Options with { MaxNewTokens = 0 }));
    }
}
