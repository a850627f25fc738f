namespace Bert4Sharp.Models;

using Bert4Sharp.Checkpoints;
using Bert4Sharp.Layers;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

/// <summary>Cached keys and values of every layer, (B, heads, T, d) each, for incremental decoding.</summary>
public sealed class KeyValueCache : IDisposable
{
    internal readonly List<(Tensor Key, Tensor Value)?> Layers;

    /// <summary>An empty cache for <paramref name="layers"/> layers.</summary>
    public KeyValueCache(int layers) => Layers = Enumerable.Repeat<(Tensor, Tensor)?>(null, layers).ToList();

    /// <summary>A second cache travelling with this one (T5's cross-attention keys and values), reordered and disposed with it.</summary>
    public KeyValueCache? Cross { get; set; }

    /// <summary>Number of cached positions.</summary>
    public long Length => Layers[0] is { } kv ? kv.Key.shape[2] : 0;

    internal void Set(int layer, Tensor key, Tensor value)
    {
        if (Layers[layer] is { } old) { old.Key.Dispose(); old.Value.Dispose(); }
        Layers[layer] = (key.DetachFromDisposeScope(), value.DetachFromDisposeScope());
    }

    /// <summary>Keeps batch rows <paramref name="rows"/> (beam search reordering).</summary>
    public void Select(Tensor rows)
    {
        for (int i = 0; i < Layers.Count; i++)
            if (Layers[i] is { } kv) Set(i, kv.Key.index_select(0, rows), kv.Value.index_select(0, rows));
        Cross?.Select(rows);
    }

    /// <inheritdoc/>
    public void Dispose()
    {
        foreach (var kv in Layers) if (kv is { } t) { t.Key.Dispose(); t.Value.Dispose(); }
        Layers.Clear();
        Cross?.Dispose();
    }
}

/// <summary>
/// GPT-2 (and CPM-LM in GPT-2 layout): pre-norm decoder blocks, learned positions, causal attention,
/// LM head tied to the token embedding. Module names equal Hugging Face's (under <c>transformer.</c>), so
/// loading is a loop; HF stores its Conv1D weights as [in, out], transposed on load.
/// </summary>
public sealed class Gpt2Model : nn.Module<Tensor, Tensor>
{
    sealed class Attention : nn.Module
    {
        readonly int heads;
#pragma warning disable IDE0044
        Linear c_attn;
        Linear c_proj;
#pragma warning restore IDE0044
        public Attention(int hidden, int heads) : base("attn")
        {
            this.heads = heads;
            c_attn = nn.Linear(hidden, 3 * hidden);
            c_proj = nn.Linear(hidden, hidden);
            RegisterComponents();
        }

        public Tensor Forward(Tensor x, KeyValueCache? cache, int layer)
        {
            using var scope = torch.NewDisposeScope();
            long b = x.shape[0], t = x.shape[1], h = x.shape[2], d = h / heads;
            var qkv = Dense.Apply(c_attn, x).split(h, -1);                                      // 3 × (B, T, H)
            var q = qkv[0].view(b, t, heads, d).transpose(1, 2);                               // (B, nh, T, d)
            var k = qkv[1].view(b, t, heads, d).transpose(1, 2);
            var v = qkv[2].view(b, t, heads, d).transpose(1, 2);
            long past = 0;
            if (cache is not null)
            {
                if (cache.Layers[layer] is { } kv)
                {
                    past = kv.Key.shape[2];
                    k = torch.cat([kv.Key, k], 2);
                    v = torch.cat([kv.Value, v], 2);
                }
                cache.Set(layer, k, v);
            }
            Tensor o;
            if (past == 0) o = nn.functional.scaled_dot_product_attention(q, k, v, null, 0, true);
            else
            {
                var bias = AttentionMasks.Additive(AttentionMasks.Causal(t, past, x.device), x.dtype);
                o = nn.functional.scaled_dot_product_attention(q, k, v, bias, 0, false);
            }
            return Dense.Apply(c_proj, o.transpose(1, 2).reshape(b, t, h)).MoveToOuterDisposeScope();   // (B, T, H)
        }
    }

    sealed class Mlp : nn.Module<Tensor, Tensor>
    {
        readonly string activation;
#pragma warning disable IDE0044
        Linear c_fc;
        Linear c_proj;
#pragma warning restore IDE0044
        public Mlp(int hidden, int inner, string activation) : base("mlp")
        {
            this.activation = activation;
            c_fc = nn.Linear(hidden, inner);
            c_proj = nn.Linear(inner, hidden);
            RegisterComponents();
        }

        public override Tensor forward(Tensor x)
        {
            using var scope = torch.NewDisposeScope();
            return Dense.Apply(c_proj, Activations.Apply(activation, Dense.Apply(c_fc, x))).MoveToOuterDisposeScope();
        }
    }

    sealed class Block : nn.Module
    {
#pragma warning disable IDE0044
        LayerNorm ln_1;
        Attention attn;
        LayerNorm ln_2;
        Mlp mlp;
#pragma warning restore IDE0044
        public Block(TransformerConfig c, int inner) : base("block")
        {
            ln_1 = nn.LayerNorm(c.HiddenSize, c.LayerNormEps);
            attn = new Attention(c.HiddenSize, c.NumAttentionHeads);
            ln_2 = nn.LayerNorm(c.HiddenSize, c.LayerNormEps);
            mlp = new Mlp(c.HiddenSize, inner, c.HiddenAct);
            RegisterComponents();
        }

        public Tensor Forward(Tensor x, KeyValueCache? cache, int layer)
        {
            using var scope = torch.NewDisposeScope();
            x = x + attn.Forward(ln_1.forward(x), cache, layer);
            return (x + mlp.forward(ln_2.forward(x))).MoveToOuterDisposeScope();
        }
    }

#pragma warning disable IDE0044
    Embedding wte;
    Embedding wpe;
    ModuleList<Block> h;
    LayerNorm ln_f;
#pragma warning restore IDE0044

    /// <summary>A randomly initialised model (use <see cref="Load"/> for weights).</summary>
    public Gpt2Model(TransformerConfig config) : base("transformer")
    {
        config.Validate();
        Activations.Check(config.HiddenAct);
        Config = config;
        wte = nn.Embedding(config.VocabSize, config.HiddenSize);
        wpe = nn.Embedding(config.MaxPositionEmbeddings, config.HiddenSize);
        int inner = config.NInner ?? 4 * config.HiddenSize;
        h = nn.ModuleList(Enumerable.Range(0, config.NumHiddenLayers).Select(_ => new Block(config, inner)).ToArray());
        ln_f = nn.LayerNorm(config.HiddenSize, config.LayerNormEps);
        RegisterComponents();
        // GPT-2's initialisation: N(0, initializer_range) for weights and embeddings, zero biases, unit norms
        // (TorchSharp's defaults, N(0, 1) embeddings under a tied head, start with logits of std ~16).
        using (torch.no_grad())
            foreach (var (name, p) in named_parameters())
            {
                if (name.StartsWith("ln_", StringComparison.Ordinal) || name.Contains(".ln_")) { if (name.EndsWith("weight")) p.fill_(1); else p.zero_(); }
                else if (name.EndsWith(".bias")) p.zero_();
                else p.normal_(0, config.InitializerRange);
            }
    }

    /// <summary>The config.</summary>
    public TransformerConfig Config { get; }

    /// <summary>Logits (B, T, V) of a batch of token ids (B, T).</summary>
    public override Tensor forward(Tensor ids) => Forward(ids, null, null);

    /// <summary>
    /// Logits (B, T, V). With a <paramref name="cache"/>, positions continue after the cached ones and the new
    /// keys and values are appended. <paramref name="hiddenStates"/>, when given, receives the embedding output
    /// and every block's output (the last after the final norm, as Hugging Face reports it).
    /// </summary>
    /// <exception cref="ArgumentException">The sequence would exceed the position table.</exception>
    public Tensor Forward(Tensor ids, KeyValueCache? cache, List<Tensor>? hiddenStates)
    {
        using var scope = torch.NewDisposeScope();
        long past = cache?.Length ?? 0, t = ids.shape[1];
        if (past + t > Config.MaxPositionEmbeddings)
            throw new ArgumentException($"{past + t} positions exceed n_positions = {Config.MaxPositionEmbeddings}; truncate the prompt from the left or generate fewer tokens");
        var x = wte.forward(ids) + wpe.forward(torch.arange(past, past + t, device: ids.device)).unsqueeze(0);   // (B, T, H)
        hiddenStates?.Add(x.MoveToOuterDisposeScope());
        for (int i = 0; i < h.Count; i++)
        {
            x = h[i].Forward(x, cache, i);
            if (hiddenStates is not null && i < h.Count - 1) hiddenStates.Add(x.MoveToOuterDisposeScope());
        }
        x = ln_f.forward(x);
        hiddenStates?.Add(x.MoveToOuterDisposeScope());
        return nn.functional.linear(x, wte.weight!).MoveToOuterDisposeScope();                 // tied LM head
    }

    /// <summary>Writes <c>config.json</c> and <c>model.safetensors</c> in Hugging Face GPT-2 layout (Conv1D weights as [in, out]), atomically.</summary>
    public IReadOnlyList<string> SavePretrained(string directory)
    {
        Directory.CreateDirectory(directory);
        var sources = named_parameters().Select(np =>
        {
            var (name, p) = np;
            var cpu = p.detach().cpu();
            bool conv = cpu.dim() == 2 && name.EndsWith(".weight") && !name.StartsWith("wte") && !name.StartsWith("wpe");
            return TensorSource.From("transformer." + name, conv ? cpu.t().contiguous() : cpu.contiguous());
        }).ToList();
        string config = Path.Combine(directory, "config.json");
        Config.Save(config, "gpt2");
        var files = SafetensorsWriter.WriteModel(directory, sources, new SafetensorsWriteOptions { Metadata = new Dictionary<string, string> { ["format"] = "pt" } });
        return [config, .. files];
    }

    /// <summary>
    /// Builds from a config (HF <c>config.json</c> or bert4keras spelling) and loads GPT-2 weights strictly, in
    /// Hugging Face names or in the TensorFlow names bert4keras's <c>gpt2</c> model loads (CPM-LM); the naming
    /// is detected.
    /// </summary>
    /// <exception cref="CheckpointMismatchException">Missing, unexpected or mis-shaped tensors.</exception>
    public static Gpt2Model Load(string configPath, string checkpointPath)
    {
        var model = new Gpt2Model(TransformerConfig.Load(configPath));
        using var ck = Checkpoint.Open(checkpointPath);
        // Conv1D weights are [in, out]; embeddings and norms are taken as they are.
        WeightLoader.LoadByName(model, ck, $"GPT-2 from {configPath}", name => "transformer." + name,
            (name, t) => t.dim() == 2 && name.EndsWith(".weight") && !name.StartsWith("wte") && !name.StartsWith("wpe") ? t.t() : t,
            n => n.EndsWith(".attn.bias") || n.EndsWith(".masked_bias") || n == "lm_head.weight",
            TensorFlowName);
        model.eval();
        return model;
    }

    /// <summary>
    /// bert4keras's GPT-2 names: BERT's TensorFlow names with <c>bert/</c> → <c>gpt/</c>, <c>encoder</c> →
    /// <c>transformer</c>, <c>output/LayerNorm</c> → <c>input/LayerNorm</c> (the norms come before their
    /// sub-layer), plus the final <c>gpt/output/LayerNorm</c>; q, k, v are separate kernels.
    /// </summary>
    internal static TensorFlowName? TensorFlowName(string name)
    {
        static string Norm(string n) => n.EndsWith(".weight") ? "gamma" : "beta";
        static string Dense(string n) => n.EndsWith(".weight") ? "kernel" : "bias";
        if (name == "wte.weight") return new(["gpt/embeddings/word_embeddings"], false);
        if (name == "wpe.weight") return new(["gpt/embeddings/position_embeddings"], false);
        if (name.StartsWith("ln_f.")) return new([$"gpt/output/LayerNorm/{Norm(name)}"], false);
        var m = System.Text.RegularExpressions.Regex.Match(name, @"^h\.(\d+)\.(.+)$");
        if (!m.Success) return null;
        string l = $"gpt/transformer/layer_{m.Groups[1].Value}/", rest = m.Groups[2].Value;
        return rest switch
        {
            _ when rest.StartsWith("ln_1.") => new([$"{l}attention/input/LayerNorm/{Norm(rest)}"], false),
            _ when rest.StartsWith("ln_2.") => new([$"{l}input/LayerNorm/{Norm(rest)}"], false),
            _ when rest.StartsWith("attn.c_attn.") => new(new[] { "query", "key", "value" }.Select(q => $"{l}attention/self/{q}/{Dense(rest)}").ToArray()),
            _ when rest.StartsWith("attn.c_proj.") => new([$"{l}attention/output/dense/{Dense(rest)}"]),
            _ when rest.StartsWith("mlp.c_fc.") => new([$"{l}intermediate/dense/{Dense(rest)}"]),
            _ when rest.StartsWith("mlp.c_proj.") => new([$"{l}output/dense/{Dense(rest)}"]),
            _ => null,
        };
    }
}
