namespace Bert4Sharp.Tests.Generation;

using Bert4Sharp.Generation;
using Bert4Sharp.Layers;
using Bert4Sharp.Models;
using TorchSharp;
using static TorchSharp.torch;

/// <summary>
/// The class-conditional LM (Conditional LayerNorm, bert4keras task_conditional_language_model): untrained it is the
/// unconditional causal LM for every label; one training step makes the labels' logits differ.
/// </summary>
public sealed class ClassConditionalLanguageModelTests
{
    static readonly ConditionOptions Condition = new(8, HiddenUnits: 8, HiddenActivation: "swish");

    static TransformerModel Build(ConditionOptions? condition) => TransformerModels.Build(
        TestPaths.Fixture("hf", "bert_mlm", "config.json"), TestPaths.Fixture("hf", "bert_mlm", "model.safetensors"), "bert", Application.LanguageModel,
        new BuildOptions { Device = torch.CPU, Condition = condition });

    [Fact]
    public void Zero_initialised_condition_equals_the_unconditional_model_then_labels_diverge_after_a_step()
    {
        using var scope = torch.NewDisposeScope();
        torch.manual_seed(3);
        var plain = Build(null);
        var model = new ClassConditionalLanguageModel(Build(Condition), classes: 3, Condition);
        var ids = torch.tensor(new long[,] { { 1, 17, 250, 40, 3 }, { 1, 99, 12, 7, 3 } });
        var labels0 = torch.tensor(new long[] { 0, 0 });
        var labels2 = torch.tensor(new long[] { 2, 2 });
        using (torch.no_grad())
        {
            var expected = plain.Logits(ids);
            Close.Assert(model.forward(ids, labels0), expected, "label 0 vs the unconditional LM");
            Close.Assert(model.forward(ids, labels2), expected, "label 2 vs the unconditional LM");
        }

        // One Adam step on a next-token loss with mixed labels: the condition projections leave zero, each label
        // embedding moves its own gain/bias shift, so the same ids now give label-dependent logits.
        model.train();
        var optimizer = torch.optim.Adam(model.parameters(), lr: 1e-2);
        var mixed = torch.tensor(new long[] { 0, 2 });
        var logits = model.forward(ids, mixed);
        var loss = nn.functional.cross_entropy(logits[.., ..^1].reshape(-1, logits.shape[2]), ids[.., 1..].reshape(-1));
        loss.backward();
        optimizer.step();
        model.eval();
        using (torch.no_grad())
        {
            var after0 = model.forward(ids, labels0);
            var after2 = model.forward(ids, labels2);
            double diff = (after0 - after2).abs().max().ToDouble();
            Assert.True(diff > 1e-3, $"labels 0 and 2 still give the same logits after a step (max |Δ| {diff:E2})");
        }
        Assert.Contains("Application.LanguageModel", Assert.Throws<ArgumentException>(() => new ClassConditionalLanguageModel(
            TransformerModels.Build(TestPaths.Fixture("hf", "bert_mlm", "config.json"), null, "bert", Application.MaskedLM, new BuildOptions { Device = torch.CPU, Condition = Condition }), 3, Condition)).Message);
        Assert.Contains("labels must be (B) = (2)", Assert.Throws<ArgumentException>(() => model.forward(ids, torch.tensor(new long[] { 0 }))).Message);
        Assert.Contains("label 3 is outside [0, 3)", Assert.Throws<ArgumentException>(() => model.Sample(3, [1], 2, 4, endId: 3)).Message);
    }

    [Fact]
    public void Sampling_is_seeded_and_stops_at_the_end_token()
    {
        using var scope = torch.NewDisposeScope();
        var model = new ClassConditionalLanguageModel(Build(Condition), classes: 2, Condition);
        model.eval();
        var a = model.Sample(1, [1], count: 3, maxNewTokens: 6, endId: 3, topK: 5, seed: 9);
        var b = model.Sample(1, [1], count: 3, maxNewTokens: 6, endId: 3, topK: 5, seed: 9);
        Assert.Equal(3, a.Count);
        for (int i = 0; i < 3; i++)
        {
            Assert.Equal(a[i], b[i]);
            Assert.True(a[i].Length <= 6);
            Assert.DoesNotContain(3, a[i]);
        }
    }
}
