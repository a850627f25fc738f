#!/usr/bin/python3
"""Integrated-gradients references on a tiny BERT written here in plain PyTorch (no Bert4Sharp code involved).

Run with Debian's python3-torch (PyTorch 1.13): /usr/bin/python3 tests/reference/make_ig_refs.py
Reads the tiny BERT of tests/fixtures/hf/bert (BertForPreTraining saved by transformers: 3 layers, hidden 64,
4 heads, vocab 1000; read here with struct + json, no safetensors package) and first checks this port against the
hidden states and MLM logits transformers recorded there (io.safetensors). Then, in float64 throughout:
  * a classifier = that encoder + its pooler (tanh dense over [CLS]) + a new dense layer to 3 labels, seeded here
    (the head's weight and bias are written to the JSON for the C# test to load);
  * the MLM head (transform, LayerNorm, tied decoder + bias) at a [MASK] position;
and integrated gradients with torch.autograd.grad over the same path the C# code takes: the token embedding rows
(word_embeddings[ids]) move from a baseline to the input, positions and segments stay; the baseline row is zero,
[PAD]'s or [MASK]'s row, and [CLS]/[SEP]/[MASK]/[PAD] keep their own row unless "keep_special" is false.
Integration nodes: Gauss–Legendre from numpy.polynomial.legendre.leggauss (mapped to [0, 1]), Riemann left / right /
midpoint / trapezoid written out. Attribution per token = sum over the width of (x - x') * integral of the
gradient; "norms" = the L2 norm over the width of the same product.
Token ids follow TestPaths.WriteSyntheticVocabulary: [PAD] 0, [UNK] 100, [CLS] 101, [SEP] 102, [MASK] 103, and
CJK character U+4E00 + k at id 104 + k, so the C# test tokenizes "text" and checks it gets "ids".
Writes tests/fixtures/explain/ig_refs.json.
"""
import json, math, os, struct
import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
FIX = os.path.join(HERE, "..", "fixtures")
OUT = os.path.join(FIX, "explain")
PAD, UNK, CLS, SEP, MASK = 0, 100, 101, 102, 103
H, HEADS, LAYERS, EPS = 64, 4, 3, 1e-12
torch.set_default_dtype(torch.float64)
torch.set_num_threads(1)


def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for k, v in header.items():
        if k == "__metadata__":
            continue
        a, b = v["data_offsets"]
        dt = {"F32": np.float32, "I64": np.int64}[v["dtype"]]
        out[k] = torch.from_numpy(np.frombuffer(data[a:b], dtype=dt).reshape(v["shape"]).copy())
    return out


W = {k: v.double() for k, v in read_safetensors(os.path.join(FIX, "hf", "bert", "model.safetensors")).items()}
IO = read_safetensors(os.path.join(FIX, "hf", "bert", "io.safetensors"))


def ln(x, p):
    return torch.nn.functional.layer_norm(x, (x.shape[-1],), W[p + ".weight"], W[p + ".bias"], EPS)


def dense(x, p):
    return x @ W[p + ".weight"].T + W[p + ".bias"]


def gelu(x):
    return 0.5 * x * (1 + torch.erf(x / math.sqrt(2)))


def encoder(rows, segments, mask=None):
    """rows: (B, T, H) token embedding rows; segments (B, T); mask (B, T) 1 = real or None. Returns (B, T, H)."""
    b, t, _ = rows.shape
    x = rows + W["bert.embeddings.position_embeddings.weight"][:t][None] + W["bert.embeddings.token_type_embeddings.weight"][segments]
    x = ln(x, "bert.embeddings.LayerNorm")
    bias = 0 if mask is None else ((1 - mask[:, None, None, :].double()) * torch.finfo(torch.float64).min)
    d = H // HEADS
    for i in range(LAYERS):
        p = f"bert.encoder.layer.{i}."
        q, k, v = (dense(x, p + f"attention.self.{n}").view(b, t, HEADS, d).transpose(1, 2) for n in ("query", "key", "value"))   # (B, nh, T, d)
        a = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(d) + bias, -1) @ v                                                  # (B, nh, T, d)
        x = ln(x + dense(a.transpose(1, 2).reshape(b, t, H), p + "attention.output.dense"), p + "attention.output.LayerNorm")
        x = ln(x + dense(gelu(dense(x, p + "intermediate.dense")), p + "output.dense"), p + "output.LayerNorm")
    return x


def mlm_logits(h):
    y = ln(gelu(dense(h, "cls.predictions.transform.dense")), "cls.predictions.transform.LayerNorm")
    return y @ W["bert.embeddings.word_embeddings.weight"].T + W["cls.predictions.bias"]


# --- the port against transformers' own outputs ---
ids, mask, tt = IO["input_ids"], IO["attention_mask"], IO["token_type_ids"]
h = encoder(W["bert.embeddings.word_embeddings.weight"][ids], tt, mask)
err_h = (h - IO["hidden_states.3"].double()).abs().max().item()
err_l = (mlm_logits(h) - IO["prediction_logits"].double()).abs().max().item()
assert err_h < 1e-4 and err_l < 1e-3, (err_h, err_l)
print(f"port vs transformers: hidden max |diff| {err_h:.2e}, MLM logits {err_l:.2e}")

g = torch.Generator().manual_seed(20261201)
HEAD_W = torch.randn(3, H, generator=g) * 0.5
HEAD_B = torch.randn(3, generator=g) * 0.1


def classifier_logits(rows, segments):
    h = encoder(rows, segments)
    pooled = torch.tanh(dense(h[:, 0], "bert.pooler.dense"))
    return pooled @ HEAD_W.T + HEAD_B


def nodes(method, steps):
    if method == "GaussLegendre":
        x, w = np.polynomial.legendre.leggauss(steps)
        return (x + 1) / 2, w / 2
    hh = 1.0 / steps
    if method == "RiemannRight":
        return np.arange(1, steps + 1) * hh, np.full(steps, hh)
    if method == "RiemannLeft":
        return np.arange(0, steps) * hh, np.full(steps, hh)
    if method == "RiemannMidpoint":
        return (np.arange(0, steps) + 0.5) * hh, np.full(steps, hh)
    if method == "RiemannTrapezoid":
        w = np.full(steps + 1, hh)
        w[0] = w[-1] = hh / 2
        return np.arange(0, steps + 1) * hh, w
    raise ValueError(method)


def cjk(k):
    return chr(0x4E00 + k)


def ids_of(tokens):
    """tokens: list of ints (k → CJK U+4E00+k) or special names. Returns (text piece, ids)."""
    text, out = "", []
    for x in tokens:
        if x == "[MASK]":
            text += "[MASK]"
            out.append(MASK)
        else:
            text += cjk(x)
            out.append(104 + x)
    return text, out


def ig(kind, tokens, pair, baseline, method, steps, score, keep_special=True, target=None):
    text, a = ids_of(tokens)
    ids = [CLS] + a + [SEP]
    segs = [0] * len(ids)
    ptext = None
    if pair is not None:
        ptext, b = ids_of(pair)
        ids += b + [SEP]
        segs += [1] * (len(b) + 1)
    ids_t = torch.tensor(ids)
    seg_t = torch.tensor(segs)[None]
    table = W["bert.embeddings.word_embeddings.weight"]
    x = table[ids_t]                                                                   # (T, H)
    base = {"Zero": torch.zeros(H), "Padding": table[PAD], "Mask": table[MASK]}[baseline].expand_as(x).clone()
    if keep_special:
        special = torch.tensor([i in (CLS, SEP, MASK, PAD) for i in ids])[:, None]
        base = torch.where(special, x, base)
    mask_pos = ids.index(MASK) if kind == "mlm" else None

    def logits(rows):
        if kind == "classifier":
            return classifier_logits(rows, seg_t.expand(rows.shape[0], -1))
        return mlm_logits(encoder(rows, seg_t.expand(rows.shape[0], -1))[:, mask_pos])

    with torch.no_grad():
        ends = logits(torch.stack([x, base]))
    probs = torch.softmax(ends, -1)
    predicted = int(probs[0].argmax())
    tgt = predicted if target is None else target
    f = (lambda l: torch.softmax(l, -1)[:, tgt]) if score == "Probability" else (lambda l: l[:, tgt])
    fx, fb = f(ends).tolist()
    alphas, weights = nodes(method, steps)
    integral = torch.zeros_like(x)
    for al, w in zip(alphas, weights):
        z = (base + float(al) * (x - base)).detach().requires_grad_(True)
        gr, = torch.autograd.grad(f(logits(z[None])).sum(), [z])
        integral += float(w) * gr
    contrib = (x - base) * integral
    scores = contrib.sum(-1)
    case = {
        "kind": kind, "text": text, "pair": ptext, "ids": ids, "segments": segs, "baseline": baseline, "method": method, "steps": steps,
        "score": score, "keep_special": keep_special, "target": tgt, "predicted": predicted, "predicted_probability": probs[0, predicted].item(),
        "mask_position": mask_pos, "input_score": fx, "baseline_score": fb,
        "scores": scores.tolist(), "norms": contrib.norm(dim=-1).tolist(),
    }
    gap = scores.sum().item() - (fx - fb)
    print(f"{kind:10} {baseline:7} {method:16} {steps:3} {score:11} f(x)={fx:.6f} f(x')={fb:.6f} gap={gap:.2e} ({abs(gap) / max(abs(fx - fb), 1e-12):.2e})")
    return case


A = [16, 205, 77, 310, 52, 489, 130, 700]
B = [41, 99, 260, 8]
M = [16, 205, 77, "[MASK]", 52, 489, 130]
cases = []
for baseline in ("Zero", "Padding", "Mask"):
    cases.append(ig("classifier", A, None, baseline, "GaussLegendre", 16, "Probability"))
for method in ("RiemannRight", "RiemannLeft", "RiemannMidpoint", "RiemannTrapezoid"):
    cases.append(ig("classifier", A, None, "Zero", method, 8, "Probability"))
cases.append(ig("classifier", A, None, "Zero", "GaussLegendre", 8, "Logit", target=2))
cases.append(ig("classifier", A, B, "Mask", "GaussLegendre", 8, "Probability"))
cases.append(ig("classifier", A, None, "Padding", "GaussLegendre", 8, "Probability", keep_special=False))
cases.append(ig("mlm", M, None, "Zero", "GaussLegendre", 16, "Probability"))
cases.append(ig("mlm", M, None, "Mask", "RiemannRight", 8, "Logit"))
os.makedirs(OUT, exist_ok=True)
with open(os.path.join(OUT, "ig_refs.json"), "w", encoding="utf-8") as f:
    json.dump({"torch": torch.__version__, "head": {"weight": HEAD_W.tolist(), "bias": HEAD_B.tolist()}, "cases": cases}, f, ensure_ascii=False)
print("wrote", os.path.join(OUT, "ig_refs.json"))
