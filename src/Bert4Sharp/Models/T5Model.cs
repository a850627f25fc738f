namespace Bert4Sharp.Models;

using Bert4Sharp.Checkpoints;
using Bert4Sharp.Layers;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

/// <summary>
/// T5 (t5.1.0: ReLU, tied head scaled by d_model^-½; t5.1.1 and mT5: gated GELU) encoder–decoder with
/// bucketed relative position bias, pre-RMS-norm blocks and unscaled dot-product attention. Module names
/// equal Hugging Face's, so loading is a loop (nanoGPT style).
/// </summary>
public sealed class T5Model : nn.Module
{
    /// <summary>
    /// T5's relative-position bucket (Raffel et al.): exact buckets for small distances, logarithmic ones up to
    /// <paramref name="maxDistance"/>, one shared bucket beyond; bidirectional halves the buckets by sign.
    /// <paramref name="relative"/> is key position − query position.
    /// </summary>
    public static Tensor RelativePositionBucket(Tensor relative, bool bidirectional, int numBuckets, int maxDistance)
    {
        using var scope = torch.NewDisposeScope();
        var buckets = torch.zeros_like(relative);
        if (bidirectional)
        {
            numBuckets /= 2;
            buckets = buckets + (relative > 0).to(ScalarType.Int64) * numBuckets;
            relative = relative.abs();
        }
        else relative = -torch.minimum(relative, torch.zeros_like(relative));
        int maxExact = numBuckets / 2;
        var isSmall = relative < maxExact;
        var large = maxExact + ((relative.to(ScalarType.Float32) / maxExact).log() / Math.Log((double)maxDistance / maxExact) * (numBuckets - maxExact)).to(ScalarType.Int64);
        large = torch.minimum(large, torch.full_like(large, numBuckets - 1));
        return (buckets + torch.where(isSmall, relative, large)).MoveToOuterDisposeScope();
    }

    sealed class T5LayerNorm : nn.Module<Tensor, Tensor>
    {
        readonly double eps;
#pragma warning disable IDE0044
        Parameter weight;
#pragma warning restore IDE0044
        public T5LayerNorm(long d, double eps) : base("layer_norm")
        {
            this.eps = eps;
            weight = new Parameter(torch.ones(d));
            RegisterComponents();
        }
        public override Tensor forward(Tensor x)
        {
            using var scope = torch.NewDisposeScope();
            return (weight * (x * (x.square().mean([-1L], keepdim: true) + eps).rsqrt())).MoveToOuterDisposeScope();
        }
    }

    sealed class T5Attention : nn.Module
    {
        readonly int heads, dkv;
        readonly bool bidirectional;
        readonly int buckets, maxDistance;
#pragma warning disable IDE0044
        Linear q, k, v, o;
        Embedding? relative_attention_bias;
#pragma warning restore IDE0044
        public T5Attention(TransformerConfig c, bool hasBias, bool bidirectional, string name) : base(name)
        {
            heads = c.NumAttentionHeads;
            dkv = c.DKv ?? c.HiddenSize / c.NumAttentionHeads;
            this.bidirectional = bidirectional;
            buckets = c.RelativeAttentionNumBuckets;
            maxDistance = c.RelativeAttentionMaxDistance;
            int inner = heads * dkv;
            q = nn.Linear(c.HiddenSize, inner, hasBias: false);
            k = nn.Linear(c.HiddenSize, inner, hasBias: false);
            v = nn.Linear(c.HiddenSize, inner, hasBias: false);
            o = nn.Linear(inner, c.HiddenSize, hasBias: false);
            if (hasBias) relative_attention_bias = nn.Embedding(buckets, heads);
            RegisterComponents();
        }

        public bool HasBias => relative_attention_bias is not null;

        /// <summary>(1, heads, Tq, Tk) bias for queries at offset..offset+Tq-1 and keys 0..Tk-1.</summary>
        public Tensor Bias(long queryLength, long keyLength, long offset, Device device)
        {
            using var scope = torch.NewDisposeScope();
            var ctx = torch.arange(offset, offset + queryLength, device: device).unsqueeze(1);
            var mem = torch.arange(keyLength, device: device).unsqueeze(0);
            var b = RelativePositionBucket(mem - ctx, bidirectional, buckets, maxDistance);
            return relative_attention_bias!.forward(b).permute(2, 0, 1).unsqueeze(0).MoveToOuterDisposeScope();
        }

        Tensor Split(Tensor x) => x.view(x.shape[0], x.shape[1], heads, dkv).transpose(1, 2);      // (B, h, T, d)

        /// <summary>Attention of x to kv (itself when null); <paramref name="bias"/> already holds positions and masks.</summary>
        public Tensor Forward(Tensor x, Tensor? kvInput, Tensor bias, KeyValueCache? cache, int slot, bool staticKv)
        {
            using var scope = torch.NewDisposeScope();
            long b = x.shape[0], t = x.shape[1];
            var qh = Split(Dense.Apply(q, x));
            Tensor kh, vh;
            if (staticKv && cache?.Layers[slot] is { } fixedKv) (kh, vh) = fixedKv;
            else
            {
                var src = kvInput ?? x;
                kh = Split(Dense.Apply(k, src));
                vh = Split(Dense.Apply(v, src));
                if (cache is not null && !staticKv && cache.Layers[slot] is { } past)
                {
                    kh = torch.cat([past.Key, kh], 2);
                    vh = torch.cat([past.Value, vh], 2);
                }
                cache?.Set(slot, kh, vh);
            }
            var scores = qh.matmul(kh.transpose(-1, -2)) + bias;                                     // no 1/√d in T5
            var outp = scores.softmax(-1).matmul(vh).transpose(1, 2).reshape(b, t, heads * dkv);
            return Dense.Apply(o, outp).MoveToOuterDisposeScope();
        }
    }

    sealed class SelfAttentionLayer : nn.Module
    {
#pragma warning disable IDE0044
        T5Attention SelfAttention;
        T5LayerNorm layer_norm;
#pragma warning restore IDE0044
        public SelfAttentionLayer(TransformerConfig c, bool hasBias, bool bidirectional) : base("self")
        {
            SelfAttention = new T5Attention(c, hasBias, bidirectional, "SelfAttention");
            layer_norm = new T5LayerNorm(c.HiddenSize, c.LayerNormEps);
            RegisterComponents();
        }
        public T5Attention Attention => SelfAttention;
        public Tensor Forward(Tensor x, Tensor bias, KeyValueCache? cache, int slot) =>
            x + SelfAttention.Forward(layer_norm.forward(x), null, bias, cache, slot, false);
    }

    sealed class CrossAttentionLayer : nn.Module
    {
#pragma warning disable IDE0044
        T5Attention EncDecAttention;
        T5LayerNorm layer_norm;
#pragma warning restore IDE0044
        public CrossAttentionLayer(TransformerConfig c) : base("cross")
        {
            EncDecAttention = new T5Attention(c, false, true, "EncDecAttention");
            layer_norm = new T5LayerNorm(c.HiddenSize, c.LayerNormEps);
            RegisterComponents();
        }
        public Tensor Forward(Tensor x, Tensor memory, Tensor bias, KeyValueCache? cache, int slot) =>
            x + EncDecAttention.Forward(layer_norm.forward(x), memory, bias, cache, slot, true);
    }

    sealed class DenseReluDenseModule : nn.Module<Tensor, Tensor>
    {
        readonly string act;
#pragma warning disable IDE0044
        Linear? wi, wi_0, wi_1;
        Linear wo;
#pragma warning restore IDE0044
        public DenseReluDenseModule(TransformerConfig c, bool gated, string act) : base("DenseReluDense")
        {
            this.act = act;
            if (gated) { wi_0 = nn.Linear(c.HiddenSize, c.IntermediateSize, hasBias: false); wi_1 = nn.Linear(c.HiddenSize, c.IntermediateSize, hasBias: false); }
            else wi = nn.Linear(c.HiddenSize, c.IntermediateSize, hasBias: false);
            wo = nn.Linear(c.IntermediateSize, c.HiddenSize, hasBias: false);
            RegisterComponents();
        }
        public override Tensor forward(Tensor x)
        {
            using var scope = torch.NewDisposeScope();
            var h = wi is not null ? Activations.Apply(act, Dense.Apply(wi, x)) : Activations.Apply(act, Dense.Apply(wi_0!, x)) * Dense.Apply(wi_1!, x);
            return Dense.Apply(wo, h).MoveToOuterDisposeScope();
        }
    }

    sealed class FeedForwardLayer : nn.Module<Tensor, Tensor>
    {
#pragma warning disable IDE0044
        DenseReluDenseModule DenseReluDense;
        T5LayerNorm layer_norm;
#pragma warning restore IDE0044
        public FeedForwardLayer(TransformerConfig c, bool gated, string act) : base("ff")
        {
            DenseReluDense = new DenseReluDenseModule(c, gated, act);
            layer_norm = new T5LayerNorm(c.HiddenSize, c.LayerNormEps);
            RegisterComponents();
        }
        public override Tensor forward(Tensor x) => x + DenseReluDense.forward(layer_norm.forward(x));
    }

    sealed class Block : nn.Module
    {
#pragma warning disable IDE0044
        ModuleList<nn.Module> layer;
#pragma warning restore IDE0044
        public Block(TransformerConfig c, bool decoder, bool hasBias, bool gated, string act) : base("block")
        {
            var parts = new List<nn.Module> { new SelfAttentionLayer(c, hasBias, !decoder) };
            if (decoder) parts.Add(new CrossAttentionLayer(c));
            parts.Add(new FeedForwardLayer(c, gated, act));
            layer = nn.ModuleList(parts.ToArray());
            RegisterComponents();
        }
        public SelfAttentionLayer Self => (SelfAttentionLayer)layer[0];
        public Tensor Forward(Tensor x, Tensor selfBias, Tensor? memory, Tensor? crossBias, KeyValueCache? selfCache, KeyValueCache? crossCache, int i)
        {
            using var scope = torch.NewDisposeScope();
            x = Self.Forward(x, selfBias, selfCache, i);
            if (memory is not null) x = ((CrossAttentionLayer)layer[1]).Forward(x, memory, crossBias!, crossCache, i);
            return ((FeedForwardLayer)layer[^1]).forward(x).MoveToOuterDisposeScope();
        }
    }

    sealed class Stack : nn.Module
    {
#pragma warning disable IDE0044
        ModuleList<Block> block;
        T5LayerNorm final_layer_norm;
#pragma warning restore IDE0044
        public Stack(TransformerConfig c, int layers, bool decoder, bool gated, string act, string name) : base(name)
        {
            block = nn.ModuleList(Enumerable.Range(0, layers).Select(i => new Block(c, decoder, i == 0, gated, act)).ToArray());
            final_layer_norm = new T5LayerNorm(c.HiddenSize, c.LayerNormEps);
            RegisterComponents();
        }
        public int Count => block.Count;

        public Tensor Forward(Tensor x, Tensor? mask, bool causal, long offset, Tensor? memory, Tensor? memoryMask,
            KeyValueCache? selfCache, KeyValueCache? crossCache, List<Tensor>? hidden)
        {
            using var scope = torch.NewDisposeScope();
            long t = x.shape[1], keys = offset + t;
            // The first block's relative bias is shared by all blocks, with the masks folded in (as HF).
            var selfBias = block[0].Self.Attention.Bias(t, keys, offset, x.device);
            if (causal) selfBias = selfBias.masked_fill(AttentionMasks.Causal(t, offset, x.device).logical_not(), float.MinValue);
            if (mask is not null) selfBias = selfBias + AttentionMasks.Padding(mask, x.dtype);
            Tensor? crossBias = memoryMask is null ? (memory is null ? null : torch.zeros(1, 1, 1, memory.shape[1], device: x.device)) : AttentionMasks.Padding(memoryMask, x.dtype);
            hidden?.Add(x.MoveToOuterDisposeScope());
            for (int i = 0; i < block.Count; i++)
            {
                x = block[i].Forward(x, selfBias, memory, crossBias, selfCache, crossCache, i);
                if (hidden is not null && i < block.Count - 1) hidden.Add(x.MoveToOuterDisposeScope());
            }
            x = final_layer_norm.forward(x);
            hidden?.Add(x.MoveToOuterDisposeScope());
            return x.MoveToOuterDisposeScope();
        }
    }

#pragma warning disable IDE0044
    Embedding shared;
    Stack encoder;
    Stack decoder;
    Linear? lm_head;
#pragma warning restore IDE0044

    /// <summary>A randomly initialised model (use <see cref="Load"/> for weights).</summary>
    public T5Model(TransformerConfig config, bool separateHead) : base("t5")
    {
        Config = config;
        string proj = config.FeedForwardProj ?? "relu";
        bool gated = proj.StartsWith("gated-", StringComparison.Ordinal);
        string act = gated ? proj["gated-".Length..] : proj;
        if (act == "gelu") act = "gelu_new";   // HF maps gated-gelu to the tanh approximation
        Activations.Check(act);
        shared = nn.Embedding(config.VocabSize, config.HiddenSize);
        encoder = new Stack(config, config.NumHiddenLayers, false, gated, act, "encoder");
        decoder = new Stack(config, config.NumDecoderLayers ?? config.NumHiddenLayers, true, gated, act, "decoder");
        if (separateHead) lm_head = nn.Linear(config.HiddenSize, config.VocabSize, hasBias: false);
        RegisterComponents();
        // T5's initialisation (Mesh TensorFlow, as Hugging Face's _init_weights): attention has no 1/√d scaling,
        // so the query carries it, N(0, (d_model·d_kv)^-½); keys, values, wi and the relative bias N(0, d_model^-½),
        // outputs N(0, fan_in^-½), embedding N(0, 1), norms 1. TorchSharp's uniform defaults train far slower.
        double d = config.HiddenSize, dkv = config.DKv ?? config.HiddenSize / config.NumAttentionHeads;
        using (torch.no_grad())
            foreach (var (name, p) in named_parameters())
            {
                double std = name switch
                {
                    _ when name.EndsWith("layer_norm.weight", StringComparison.Ordinal) => 0,
                    "shared.weight" => 1,
                    _ when name.EndsWith(".q.weight", StringComparison.Ordinal) => Math.Pow(d * dkv, -0.5),
                    _ when name.EndsWith(".o.weight", StringComparison.Ordinal) => Math.Pow(config.NumAttentionHeads * dkv, -0.5),
                    _ when name.EndsWith(".wo.weight", StringComparison.Ordinal) => Math.Pow(config.IntermediateSize, -0.5),
                    _ => Math.Pow(d, -0.5),                                                  // k, v, wi, relative bias, lm_head
                };
                if (std == 0) p.fill_(1);
                else p.normal_(0, std);
            }
    }

    /// <summary>The config.</summary>
    public TransformerConfig Config { get; }

    /// <summary>Decoder layers.</summary>
    public int DecoderLayers => decoder.Count;

    /// <summary>Encoder states (B, S, H) of ids (B, S) with mask (B, S).</summary>
    public Tensor Encode(Tensor ids, Tensor? mask, List<Tensor>? hiddenStates = null)
    {
        using var scope = torch.NewDisposeScope();
        var x = encoder.Forward(shared.forward(ids), mask, false, 0, null, null, null, null, hiddenStates);
        if (hiddenStates is not null) foreach (var h in hiddenStates) h.MoveToOuterDisposeScope();
        return x.MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Decoder logits (B, T, V) for decoder ids (B, T) attending to <paramref name="memory"/> (B, S, H).
    /// With caches, positions continue after the cached ones; the cross-attention keys are computed once.
    /// </summary>
    public Tensor Decode(Tensor ids, Tensor memory, Tensor? memoryMask, KeyValueCache? selfCache = null, KeyValueCache? crossCache = null, List<Tensor>? hiddenStates = null)
    {
        using var scope = torch.NewDisposeScope();
        long offset = selfCache?.Length ?? 0;
        var x = decoder.Forward(shared.forward(ids), null, true, offset, memory, memoryMask, selfCache, crossCache, hiddenStates);
        if (hiddenStates is not null) foreach (var h in hiddenStates) h.MoveToOuterDisposeScope();
        // t5.1.0 ties the head to the embedding and rescales its input (Mesh TensorFlow's convention);
        // t5.1.1 and mT5 have a separate head and no rescaling.
        // transformers 5 writes scale_decoder_outputs; before it, T5 tied ⇔ scaled, and mT5 never scaled.
        if (Config.ScaleDecoderOutputs ?? (Config.TieWordEmbeddings && Config.ModelType != "mt5")) x = x * Math.Pow(Config.HiddenSize, -0.5);
        return (lm_head is not null ? Dense.Apply(lm_head, x) : nn.functional.linear(x, shared.weight!)).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Builds from a T5/mT5 config and loads its weights strictly: Hugging Face names, or the Mesh TensorFlow
    /// names bert4keras loads (<c>t5.1.0</c>, <c>t5.1.1</c>, <c>mt5.1.1</c>); the naming is detected.
    /// </summary>
    /// <exception cref="CheckpointMismatchException">Missing, unexpected or mis-shaped tensors.</exception>
    public static T5Model Load(string configPath, string checkpointPath)
    {
        var config = TransformerConfig.Load(configPath);
        using var ck = Checkpoint.Open(checkpointPath);
        bool separate = ck.TryGetEntry("lm_head.weight", out _) || ck.TryGetEntry("decoder/logits/kernel", out _);
        string norm = ck.TryGetEntry("encoder/rms_norm/scale", out _) ? "rms_norm" : "layer_norm";
        // A separate head means untied (Hugging Face drops lm_head when tied; bert4keras configs do not say).
        if (separate && config.TieWordEmbeddings) config = config with { TieWordEmbeddings = false };
        var model = new T5Model(config, separate);
        WeightLoader.LoadByName(model, ck, $"T5 from {configPath}", name => name, (_, t) => t,
            n => n is "encoder.embed_tokens.weight" or "decoder.embed_tokens.weight", name => TensorFlowName(name, norm));
        model.eval();
        return model;
    }

    /// <summary>
    /// bert4keras's T5 names (Mesh TensorFlow): <c>shared/embedding</c>, <c>encoder/block_000/layer_000/SelfAttention/q</c>,
    /// <c>…/DenseReluDense/wi_0/kernel</c>, <c>decoder/logits/kernel</c>; kernels are [in, out] and the relative
    /// bias is [heads, buckets], so all 2-D tensors but the embedding are transposed. mT5 spells every norm
    /// <c>rms_norm</c>, the final ones <c>encoder/rms_norm/scale</c>.
    /// </summary>
    internal static TensorFlowName? TensorFlowName(string name, string norm)
    {
        if (name == "shared.weight") return new(["shared/embedding"], false);
        if (name == "lm_head.weight") return new(["decoder/logits/kernel"]);
        var f = System.Text.RegularExpressions.Regex.Match(name, @"^(encoder|decoder)\.final_layer_norm\.weight$");
        if (f.Success) return new([norm == "rms_norm" ? $"{f.Groups[1].Value}/rms_norm/scale" : $"{f.Groups[1].Value}/final_layer_norm/scale"], false);
        var m = System.Text.RegularExpressions.Regex.Match(name, @"^(encoder|decoder)\.block\.(\d+)\.layer\.(\d+)\.(.+)\.weight$");
        if (!m.Success) return null;
        string p = $"{m.Groups[1].Value}/block_{int.Parse(m.Groups[2].Value):000}/layer_{int.Parse(m.Groups[3].Value):000}/", rest = m.Groups[4].Value;
        return rest switch
        {
            "layer_norm" => new([$"{p}{norm}/scale"], false),
            "SelfAttention.relative_attention_bias" => new([$"{p}SelfAttention/relative_attention_bias"]),
            _ when rest.StartsWith("DenseReluDense.") => new([$"{p}{rest.Replace('.', '/')}/kernel"]),
            _ => new([p + rest.Replace('.', '/')]),
        };
    }
}
