#!/usr/bin/python3
"""Reference numbers for families Hugging Face lacks, and PyTorch's own Transformer block as an oracle.

Run with Debian's python3-torch (PyTorch 1.13): /usr/bin/python3 tests/reference/make_port_fixtures.py
Writes tests/fixtures/ports/:
  roformer_v2/  bert_config.json, model.ckpt.index + .data-00000-of-00001 (a TensorFlow bundle with the
                bert4keras variable names, written by make_checkpoint_goldens.write_tf_bundle), io.safetensors
                (inputs, every layer's hidden states, MLM logits) from a *port* of bert4keras's RoFormerV2
                (models.py RoFormerV2 + layers.LayerNormalization(zero_mean=False, scale=False, offset=False)
                + backend.apply_rotary_position_embeddings), written here in PyTorch.
  nezha/        the same for NEZHA (BERT block + bert4keras's typical relative positions, clipped at 64;
                81 tokens so that distances beyond the clip occur).
  gau_alpha/    the same for GAU-α (RoFormerV2 embeddings + gated attention units: swish, softmax_plus, rotary).
  gpt2_block/   one pre-norm nn.TransformerEncoderLayer (norm_first=True, tanh GELU) with a causal mask, saved
                in Hugging Face GPT-2 names (Conv1D layout) with random embeddings and final norm: the
                oracle for the GPT-2 block.
  gpt/          OpenAI GPT (bert4keras `gpt`): two post-norm nn.TransformerEncoderLayer (erf GELU) with a causal
                mask over token + position embeddings, LM head tied to the token embedding. Saved twice: in the
                Hugging Face openai-gpt names and layout (config.json, model.safetensors; Conv1D weights [in, out],
                q/k/v fused in c_attn) and in bert4keras's TensorFlow names (bert_config.json, model.ckpt.*: BERT's
                names with bert/ -> gpt/, encoder -> transformer; kernels [in, out]). Seeded on its own.
  gpt2_ml/      GPT2-ML as bert4keras builds it (models.py GPT2_ML: token + position embeddings, LayerNorm;
                per block y = x + attention(x), x = LN1(y + FFN(LN0(y))), epsilon 1e-5; tied head), attention
                by PyTorch's nn.MultiheadAttention with a causal mask; saved in bert4keras's TensorFlow names
                (newslm/layer00/query_layer/kernel, ...). Seeded on its own.
  torch_encoder_layer/  state.pt (torch.save of nn.TransformerEncoderLayer's state dict, zip format) and
                io.safetensors: PyTorch's own post-LN GELU block with a key-padding mask, the oracle for the
                BERT block.
"""
import json, math, os, sys
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_checkpoint_goldens import write_safetensors, write_tf_bundle  # noqa: E402

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures", "ports")
torch.manual_seed(20261124)


def inputs(vocab):
    g = torch.Generator().manual_seed(5)
    ids = torch.randint(5, vocab, (2, 11), generator=g)
    ids[:, 0] = 101 % vocab
    ids[1, 7:] = 0
    mask = (ids != 0).long()
    segs = torch.zeros_like(ids)
    segs[0, 6:] = 1
    return ids, segs, mask


# ---- RoFormerV2, a port of bert4keras ---------------------------------------------------------------
def scale_free(x, eps=1e-7):
    return x / torch.sqrt((x * x).mean(-1, keepdim=True) + eps)


def rotary(x):
    # x: (B, T, h, d); sinusoidal (interleaved sin/cos) as bert4keras's sinusoidal_embeddings
    t, d = x.shape[1], x.shape[-1]
    pos = torch.arange(t, dtype=torch.float32)[:, None]
    inv = torch.pow(10000.0, -2 * torch.arange(d // 2, dtype=torch.float32) / d)
    ang = pos * inv[None]
    sinusoidal = torch.stack([ang.sin(), ang.cos()], -1).reshape(t, d)        # [s0, c0, s1, c1, ...]
    cos_pos = sinusoidal[..., 1::2].repeat_interleave(2, -1)[None, :, None, :]
    sin_pos = sinusoidal[..., ::2].repeat_interleave(2, -1)[None, :, None, :]
    x2 = torch.stack([-x[..., 1::2], x[..., ::2]], -1).reshape(x.shape)
    return x * cos_pos + x2 * sin_pos


def roformer_v2():
    cfg = {"hidden_act": "relu", "hidden_size": 64, "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1,
           "intermediate_size": 128, "num_attention_heads": 4, "num_hidden_layers": 3, "type_vocab_size": 2, "vocab_size": 1000}
    h, heads, inter, V, L = 64, 4, 128, 1000, 3
    d = h // heads
    std = 0.3
    W = {"bert/embeddings/word_embeddings": torch.randn(V, h) * std,
         "bert/embeddings/token_type_embeddings": torch.randn(2, h) * std}
    for i in range(L):
        p = "bert/encoder/layer_%d/" % i
        for n, shape in [("attention/self/query/kernel", (h, h)), ("attention/self/key/kernel", (h, h)),
                         ("attention/self/value/kernel", (h, h)), ("attention/output/dense/kernel", (h, h)),
                         ("intermediate/dense/kernel", (h, inter)), ("output/dense/kernel", (inter, h))]:
            W[p + n] = torch.randn(*shape) / math.sqrt(shape[0])      # TF kernels are [in, out]
    ids, segs, mask = inputs(V)
    x = W["bert/embeddings/word_embeddings"][ids] + W["bert/embeddings/token_type_embeddings"][segs]
    x = scale_free(x)
    hidden = [x]
    bias = (1.0 - mask[:, None, None, :].float()) * -1e12                # bert4keras a_bias on keys
    B, T = ids.shape
    for i in range(L):
        p = "bert/encoder/layer_%d/" % i
        q = (x @ W[p + "attention/self/query/kernel"]).view(B, T, heads, d)
        k = (x @ W[p + "attention/self/key/kernel"]).view(B, T, heads, d)
        v = (x @ W[p + "attention/self/value/kernel"]).view(B, T, heads, d)
        q, k = rotary(q), rotary(k)
        a = torch.einsum("bjhd,bkhd->bhjk", q, k) / math.sqrt(d) + bias
        a = a.softmax(-1)
        o = torch.einsum("bhjk,bkhd->bjhd", a, v).reshape(B, T, h) @ W[p + "attention/output/dense/kernel"]
        x = scale_free(x + o)
        f = torch.relu(x @ W[p + "intermediate/dense/kernel"]) @ W[p + "output/dense/kernel"]
        x = scale_free(x + f)
        hidden.append(x)
    logits = x @ W["bert/embeddings/word_embeddings"].t()
    out = os.path.join(OUT, "roformer_v2")
    os.makedirs(out, exist_ok=True)
    json.dump(cfg, open(os.path.join(out, "bert_config.json"), "w"), indent=1)
    with open(os.path.join(out, "checkpoint"), "w") as f:
        f.write('model_checkpoint_path: "/somewhere/else/model.ckpt"\n')
    write_tf_bundle(os.path.join(out, "model.ckpt"), W)
    io = {"input_ids": ids, "token_type_ids": segs, "attention_mask": mask, "logits": logits}
    io.update({"hidden_states.%d" % i: t for i, t in enumerate(hidden)})
    write_safetensors(os.path.join(out, "io.safetensors"), io)
    print("roformer_v2", {k: tuple(v.shape) for k, v in io.items()})


# ---- NEZHA, a port of bert4keras (BERT block + typical relative positions) -------------------------
def sinusoidal_table(rows, d):
    pos = torch.arange(rows, dtype=torch.float64)[:, None]
    theta = pos / torch.pow(torch.tensor(10000.0, dtype=torch.float64), 2 * torch.arange(d // 2, dtype=torch.float64) / d)
    return torch.stack([theta.sin(), theta.cos()], -1).reshape(rows, d).float()   # bert4keras Sinusoidal initializer


def layer_norm(x, g, b, eps=1e-12):
    return torch.nn.functional.layer_norm(x, (x.shape[-1],), g, b, eps)


def nezha():
    cfg = {"hidden_act": "gelu", "hidden_size": 64, "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1,
           "intermediate_size": 128, "num_attention_heads": 4, "num_hidden_layers": 2, "type_vocab_size": 2, "vocab_size": 1000,
           "max_position_embeddings": 512, "max_relative_position": 64, "use_relative_position": True}
    h, heads, inter, V, L, m = 64, 4, 128, 1000, 2, 64
    d = h // heads
    W = {"bert/embeddings/word_embeddings": torch.randn(V, h) * 0.3, "bert/embeddings/token_type_embeddings": torch.randn(2, h) * 0.3,
         "bert/embeddings/LayerNorm/gamma": 1 + 0.1 * torch.randn(h), "bert/embeddings/LayerNorm/beta": 0.1 * torch.randn(h)}
    for i in range(L):
        p = "bert/encoder/layer_%d/" % i
        for n, (a, b) in {"attention/self/query": (h, h), "attention/self/key": (h, h), "attention/self/value": (h, h),
                          "attention/output/dense": (h, h), "intermediate/dense": (h, inter), "output/dense": (inter, h)}.items():
            W[p + n + "/kernel"] = torch.randn(a, b) / math.sqrt(a)
            W[p + n + "/bias"] = 0.1 * torch.randn(b)
        for n in ("attention/output/LayerNorm", "output/LayerNorm"):
            W[p + n + "/gamma"] = 1 + 0.1 * torch.randn(h)
            W[p + n + "/beta"] = 0.1 * torch.randn(h)
    ids, segs, mask = inputs(V)
    ids = torch.cat([ids, torch.randint(5, V, (2, 70))], 1)        # 81 tokens: distances beyond the ±64 clip
    segs = torch.cat([segs, torch.zeros(2, 70, dtype=torch.long)], 1)
    mask = torch.cat([mask, torch.ones(2, 70, dtype=torch.long)], 1)
    mask[1, 7:] = 0
    ids[1, 7:] = 0
    B, T = ids.shape
    x = W["bert/embeddings/word_embeddings"][ids] + W["bert/embeddings/token_type_embeddings"][segs]
    x = layer_norm(x, W["bert/embeddings/LayerNorm/gamma"], W["bert/embeddings/LayerNorm/beta"])
    hidden = [x]
    table = sinusoidal_table(2 * m + 1, d)
    idx = torch.arange(T)
    R = table[(idx[None, :] - idx[:, None]).clamp(-m, m) + m]      # (T, T, d): key − query
    bias = (1.0 - mask[:, None, None, :].float()) * -1e12
    for i in range(L):
        p = "bert/encoder/layer_%d/" % i
        def dense(y, n):
            return y @ W[p + n + "/kernel"] + W[p + n + "/bias"]
        q = dense(x, "attention/self/query").view(B, T, heads, d)
        k = dense(x, "attention/self/key").view(B, T, heads, d)
        v = dense(x, "attention/self/value").view(B, T, heads, d)
        a = torch.einsum("bjhd,bkhd->bhjk", q, k) + torch.einsum("bjhd,jkd->bhjk", q, R)
        a = (a / math.sqrt(d) + bias).softmax(-1)
        o = torch.einsum("bhjk,bkhd->bjhd", a, v) + torch.einsum("bhjk,jkd->bjhd", a, R)
        o = dense(o.reshape(B, T, h), "attention/output/dense")
        x = layer_norm(x + o, W[p + "attention/output/LayerNorm/gamma"], W[p + "attention/output/LayerNorm/beta"])
        f = dense(torch.nn.functional.gelu(dense(x, "intermediate/dense")), "output/dense")
        x = layer_norm(x + f, W[p + "output/LayerNorm/gamma"], W[p + "output/LayerNorm/beta"])
        hidden.append(x)
    out = os.path.join(OUT, "nezha")
    os.makedirs(out, exist_ok=True)
    json.dump(cfg, open(os.path.join(out, "bert_config.json"), "w"), indent=1)
    write_tf_bundle(os.path.join(out, "model.ckpt"), W)
    io = {"input_ids": ids, "token_type_ids": segs, "attention_mask": mask}
    io.update({"hidden_states.%d" % i: t for i, t in enumerate(hidden)})
    write_safetensors(os.path.join(out, "io.safetensors"), io)
    print("nezha", tuple(ids.shape))


# ---- GAU-α, a port of ZhuiyiTechnology/GAU-alpha models.py + bert4keras GatedAttentionUnit -----------
def gau_alpha():
    cfg = {"hidden_act": "swish", "hidden_size": 64, "intermediate_size": 128, "attention_key_size": 32, "num_attention_heads": 1,
           "num_hidden_layers": 2, "type_vocab_size": 2, "vocab_size": 1000, "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1}
    h, U, S, V, L = 64, 128, 32, 1000, 2
    W = {"bert/embeddings/word_embeddings": torch.randn(V, h) * 0.3, "bert/embeddings/token_type_embeddings": torch.randn(2, h) * 0.3}
    for i in range(L):
        p = "GAU_alpha/encoder/layer_%d/gau/" % i
        W[p + "i_dense/kernel"] = torch.randn(h, 2 * U + S) / math.sqrt(h)
        W[p + "o_dense/kernel"] = torch.randn(U, h) / math.sqrt(U)
        W[p + "q_scaleoffset/gamma"] = 1 + 0.2 * torch.randn(S)
        W[p + "k_scaleoffset/gamma"] = 1 + 0.2 * torch.randn(S)
    ids, segs, mask = inputs(V)
    B, T = ids.shape
    x = scale_free(W["bert/embeddings/word_embeddings"][ids] + W["bert/embeddings/token_type_embeddings"][segs])
    hidden = [x]
    m = mask[:, None, :].float()                                   # keys
    n = m.sum(-1, keepdim=True).clamp(min=16)                      # softmax_plus: l = max(#keys, 16)
    for i in range(L):
        p = "GAU_alpha/encoder/layer_%d/gau/" % i
        z = torch.nn.functional.silu(x @ W[p + "i_dense/kernel"])
        u, v, qk = z.split([U, U, S], -1)
        q, k = qk * W[p + "q_scaleoffset/gamma"], qk * W[p + "k_scaleoffset/gamma"]
        q, k = rotary(q[:, :, None, :])[:, :, 0, :], rotary(k[:, :, None, :])[:, :, 0, :]
        a = torch.einsum("bmd,bnd->bmn", q, k) / math.sqrt(S)
        a = a.masked_fill(m == 0, float("-inf"))
        A = (a * torch.log(n) / math.log(512)).softmax(-1)
        o = (u * torch.einsum("bmn,bnd->bmd", A, v)) @ W[p + "o_dense/kernel"]
        x = scale_free(x + o)
        hidden.append(x)
    logits = x @ W["bert/embeddings/word_embeddings"].t()
    out = os.path.join(OUT, "gau_alpha")
    os.makedirs(out, exist_ok=True)
    json.dump(cfg, open(os.path.join(out, "bert_config.json"), "w"), indent=1)
    write_tf_bundle(os.path.join(out, "model.ckpt"), W)
    io = {"input_ids": ids, "token_type_ids": segs, "attention_mask": mask, "logits": logits}
    io.update({"hidden_states.%d" % i: t for i, t in enumerate(hidden)})
    write_safetensors(os.path.join(out, "io.safetensors"), io)
    print("gau_alpha", tuple(ids.shape))


def torch_encoder_layer():
    layer = torch.nn.TransformerEncoderLayer(d_model=64, nhead=4, dim_feedforward=128, dropout=0.0, activation="gelu",
                                             batch_first=True, norm_first=False, layer_norm_eps=1e-5)
    with torch.no_grad():
        for p in layer.parameters():
            p.copy_(torch.randn_like(p) * 0.3)
    layer.eval()
    g = torch.Generator().manual_seed(9)
    x = torch.randn(2, 9, 64, generator=g)
    pad = torch.zeros(2, 9, dtype=torch.bool)
    pad[1, 6:] = True
    with torch.no_grad():
        y = layer(x, src_key_padding_mask=pad)
        # the same through the slow path (no fast kernels) as a cross-check
        y2 = layer.norm2(layer.norm1(x + layer.self_attn(x, x, x, key_padding_mask=pad, need_weights=False)[0]) +
                         layer.linear2(torch.nn.functional.gelu(layer.linear1(layer.norm1(x + layer.self_attn(x, x, x, key_padding_mask=pad, need_weights=False)[0])))))
    out = os.path.join(OUT, "torch_encoder_layer")
    os.makedirs(out, exist_ok=True)
    torch.save(layer.state_dict(), os.path.join(out, "state.pt"))
    mask = (~pad).long()
    write_safetensors(os.path.join(out, "io.safetensors"), {"x": x, "attention_mask": mask, "y": y, "y_slow_path": y2})
    print("torch_encoder_layer", (y[0] - y2[0]).abs().max().item())


# ---- GPT-2 block = PyTorch's own pre-norm TransformerEncoderLayer with a causal mask ---------------
def gpt2_block():
    h, V, P = 64, 1000, 64
    layer = torch.nn.TransformerEncoderLayer(d_model=h, nhead=4, dim_feedforward=4 * h, dropout=0.0,
                                             activation=lambda x: torch.nn.functional.gelu(x, approximate="tanh"),
                                             batch_first=True, norm_first=True, layer_norm_eps=1e-5)
    with torch.no_grad():
        for p in layer.parameters():
            p.copy_(torch.randn_like(p) * 0.3)
    layer.eval()
    wte, wpe = torch.randn(V, h) * 0.3, torch.randn(P, h) * 0.3
    ln_w, ln_b = 1 + 0.1 * torch.randn(h), 0.1 * torch.randn(h)
    g = torch.Generator().manual_seed(21)
    ids = torch.randint(0, V, (2, 12), generator=g)
    causal = torch.triu(torch.full((12, 12), float("-inf")), 1)
    with torch.no_grad():
        x0 = wte[ids] + wpe[:12][None]
        x1 = layer(x0, src_mask=causal)
        x2 = torch.nn.functional.layer_norm(x1, (h,), ln_w, ln_b, 1e-5)
        logits = x2 @ wte.t()
    # Hugging Face GPT-2 names; its Conv1D stores weights as [in, out].
    W = {"transformer.wte.weight": wte, "transformer.wpe.weight": wpe, "transformer.ln_f.weight": ln_w, "transformer.ln_f.bias": ln_b,
         "transformer.h.0.ln_1.weight": layer.norm1.weight, "transformer.h.0.ln_1.bias": layer.norm1.bias,
         "transformer.h.0.ln_2.weight": layer.norm2.weight, "transformer.h.0.ln_2.bias": layer.norm2.bias,
         "transformer.h.0.attn.c_attn.weight": layer.self_attn.in_proj_weight.t(), "transformer.h.0.attn.c_attn.bias": layer.self_attn.in_proj_bias,
         "transformer.h.0.attn.c_proj.weight": layer.self_attn.out_proj.weight.t(), "transformer.h.0.attn.c_proj.bias": layer.self_attn.out_proj.bias,
         "transformer.h.0.mlp.c_fc.weight": layer.linear1.weight.t(), "transformer.h.0.mlp.c_fc.bias": layer.linear1.bias,
         "transformer.h.0.mlp.c_proj.weight": layer.linear2.weight.t(), "transformer.h.0.mlp.c_proj.bias": layer.linear2.bias}
    out = os.path.join(OUT, "gpt2_block")
    os.makedirs(out, exist_ok=True)
    json.dump({"model_type": "gpt2", "n_embd": h, "n_head": 4, "n_layer": 1, "n_positions": P, "vocab_size": V,
               "activation_function": "gelu_new", "layer_norm_epsilon": 1e-5}, open(os.path.join(out, "config.json"), "w"), indent=1)
    write_safetensors(os.path.join(out, "model.safetensors"), {k: v.detach().contiguous() for k, v in W.items()})
    write_safetensors(os.path.join(out, "io.safetensors"), {"input_ids": ids, "hidden_states.0": x0, "hidden_states.1": x2, "logits": logits})
    print("gpt2_block", tuple(logits.shape))


# ---- OpenAI GPT = PyTorch's own post-norm TransformerEncoderLayer stack with a causal mask -------------
def gpt():
    torch.manual_seed(31)
    h, V, P, L = 64, 1000, 64, 2
    layers = [torch.nn.TransformerEncoderLayer(d_model=h, nhead=4, dim_feedforward=4 * h, dropout=0.0, activation="gelu",
                                               batch_first=True, norm_first=False, layer_norm_eps=1e-5) for _ in range(L)]
    with torch.no_grad():
        for layer in layers:
            for p in layer.parameters():
                p.copy_(torch.randn_like(p) * 0.3)
            layer.eval()
    wte, wpe = torch.randn(V, h) * 0.3, torch.randn(P, h) * 0.3
    g = torch.Generator().manual_seed(23)
    ids = torch.randint(0, V, (2, 12), generator=g)
    causal = torch.triu(torch.full((12, 12), float("-inf")), 1)
    hidden = []
    with torch.no_grad():
        x = wte[ids] + wpe[:12][None]
        hidden.append(x)
        for layer in layers:
            x = layer(x, src_mask=causal)
            hidden.append(x)
        logits = x @ wte.t()
    hf = {"transformer.tokens_embed.weight": wte, "transformer.positions_embed.weight": wpe}
    tf = {"gpt/embeddings/word_embeddings": wte, "gpt/embeddings/position_embeddings": wpe}
    for i, layer in enumerate(layers):
        a, t = f"transformer.h.{i}.", f"gpt/transformer/layer_{i}/"
        w, b = layer.self_attn.in_proj_weight, layer.self_attn.in_proj_bias
        hf.update({a + "attn.c_attn.weight": w.t(), a + "attn.c_attn.bias": b,
                   a + "attn.c_proj.weight": layer.self_attn.out_proj.weight.t(), a + "attn.c_proj.bias": layer.self_attn.out_proj.bias,
                   a + "ln_1.weight": layer.norm1.weight, a + "ln_1.bias": layer.norm1.bias,
                   a + "mlp.c_fc.weight": layer.linear1.weight.t(), a + "mlp.c_fc.bias": layer.linear1.bias,
                   a + "mlp.c_proj.weight": layer.linear2.weight.t(), a + "mlp.c_proj.bias": layer.linear2.bias,
                   a + "ln_2.weight": layer.norm2.weight, a + "ln_2.bias": layer.norm2.bias})
        for j, part in enumerate(("query", "key", "value")):
            tf[t + f"attention/self/{part}/kernel"] = w[j * h:(j + 1) * h].t()
            tf[t + f"attention/self/{part}/bias"] = b[j * h:(j + 1) * h]
        tf.update({t + "attention/output/dense/kernel": layer.self_attn.out_proj.weight.t(), t + "attention/output/dense/bias": layer.self_attn.out_proj.bias,
                   t + "attention/output/LayerNorm/gamma": layer.norm1.weight, t + "attention/output/LayerNorm/beta": layer.norm1.bias,
                   t + "intermediate/dense/kernel": layer.linear1.weight.t(), t + "intermediate/dense/bias": layer.linear1.bias,
                   t + "output/dense/kernel": layer.linear2.weight.t(), t + "output/dense/bias": layer.linear2.bias,
                   t + "output/LayerNorm/gamma": layer.norm2.weight, t + "output/LayerNorm/beta": layer.norm2.bias})
    tf["global_step"] = torch.tensor(500, dtype=torch.int64)
    out = os.path.join(OUT, "gpt")
    os.makedirs(out, exist_ok=True)
    json.dump({"model_type": "openai-gpt", "n_embd": h, "n_head": 4, "n_layer": L, "n_positions": P, "vocab_size": V,
               "afn": "gelu", "layer_norm_epsilon": 1e-5}, open(os.path.join(out, "config.json"), "w"), indent=1)
    json.dump({"hidden_size": h, "num_attention_heads": 4, "num_hidden_layers": L, "max_position_embeddings": P, "vocab_size": V,
               "intermediate_size": 4 * h, "hidden_act": "gelu", "layer_norm_eps": 1e-5, "type_vocab_size": 0},
              open(os.path.join(out, "bert_config.json"), "w"), indent=1)
    write_safetensors(os.path.join(out, "model.safetensors"), {k: v.detach().contiguous() for k, v in hf.items()})
    write_tf_bundle(os.path.join(out, "model.ckpt"), {k: v.detach().contiguous() for k, v in tf.items()})
    io = {"input_ids": ids, "logits": logits}
    io.update({f"hidden_states.{i}": x for i, x in enumerate(hidden)})
    write_safetensors(os.path.join(out, "io.safetensors"), io)
    print("gpt", tuple(logits.shape))


def gpt2_ml():
    torch.manual_seed(37)
    h, V, P, L, heads = 64, 1000, 64, 2, 4
    F = torch.nn.functional
    wte, wpe = torch.randn(V, h) * 0.3, torch.randn(P, h) * 0.3
    emb_g, emb_b = 1 + 0.1 * torch.randn(h), 0.1 * torch.randn(h)
    blocks = []
    for _ in range(L):
        attn = torch.nn.MultiheadAttention(h, heads, dropout=0.0, batch_first=True)
        with torch.no_grad():
            for p in attn.parameters():
                p.copy_(torch.randn_like(p) * 0.3)
        attn.eval()
        blocks.append(dict(attn=attn, ln0=(1 + 0.1 * torch.randn(h), 0.1 * torch.randn(h)), ln1=(1 + 0.1 * torch.randn(h), 0.1 * torch.randn(h)),
                           w1=torch.randn(4 * h, h) * 0.3, b1=0.1 * torch.randn(4 * h), w2=torch.randn(h, 4 * h) * 0.3, b2=0.1 * torch.randn(h)))
    g = torch.Generator().manual_seed(29)
    ids = torch.randint(0, V, (2, 12), generator=g)
    causal = torch.triu(torch.full((12, 12), float("-inf")), 1)
    hidden = []
    with torch.no_grad():
        x = F.layer_norm(wte[ids] + wpe[:12][None], (h,), emb_g, emb_b, 1e-5)
        hidden.append(x)
        for b in blocks:
            y = x + b["attn"](x, x, x, attn_mask=causal, need_weights=False)[0]
            z = F.layer_norm(y, (h,), *b["ln0"], 1e-5)
            f = F.linear(F.gelu(F.linear(z, b["w1"], b["b1"])), b["w2"], b["b2"])
            x = F.layer_norm(y + f, (h,), *b["ln1"], 1e-5)
            hidden.append(x)
        logits = x @ wte.t()
    tf = {"newslm/embeddings/word_embed": wte, "newslm/embeddings/pos_embed": wpe,
          "newslm/embeddings/LayerNorm_embed_norm/gamma": emb_g, "newslm/embeddings/LayerNorm_embed_norm/beta": emb_b}
    for i, b in enumerate(blocks):
        t = f"newslm/layer{i:02d}/"
        w, bias = b["attn"].in_proj_weight, b["attn"].in_proj_bias
        for j, part in enumerate(("query", "key", "value")):
            tf[t + f"{part}_layer/kernel"] = w[j * h:(j + 1) * h].t()
            tf[t + f"{part}_layer/bias"] = bias[j * h:(j + 1) * h]
        tf.update({t + "context_projection_layer/kernel": b["attn"].out_proj.weight.t(), t + "context_projection_layer/bias": b["attn"].out_proj.bias,
                   t + "LayerNorm_mlp_ln0/gamma": b["ln0"][0], t + "LayerNorm_mlp_ln0/beta": b["ln0"][1],
                   t + "intermediate/kernel": b["w1"].t(), t + "intermediate/bias": b["b1"],
                   t + "output/kernel": b["w2"].t(), t + "output/bias": b["b2"],
                   t + "LayerNorm_mlp_ln1/gamma": b["ln1"][0], t + "LayerNorm_mlp_ln1/beta": b["ln1"][1]})
    out = os.path.join(OUT, "gpt2_ml")
    os.makedirs(out, exist_ok=True)
    json.dump({"hidden_size": h, "num_attention_heads": heads, "num_hidden_layers": L, "max_position_embeddings": P, "vocab_size": V,
               "intermediate_size": 4 * h, "hidden_act": "gelu"}, open(os.path.join(out, "bert_config.json"), "w"), indent=1)
    write_tf_bundle(os.path.join(out, "model.ckpt"), {k: v.detach().contiguous() for k, v in tf.items()})
    io = {"input_ids": ids, "logits": logits}
    io.update({f"hidden_states.{i}": x for i, x in enumerate(hidden)})
    write_safetensors(os.path.join(out, "io.safetensors"), io)
    print("gpt2_ml", tuple(logits.shape))


if __name__ == "__main__":
    roformer_v2()
    nezha()
    torch_encoder_layer()
    gau_alpha()
    gpt2_block()
    gpt()
    gpt2_ml()
