#!/usr/bin/python3
"""Independent references for the research attention kernels (tests/Bert4Sharp.Tests/Layers/AttentionKernelReferenceTests.cs).

Run with Debian's python3-torch (PyTorch 1.13) and numpy: /usr/bin/python3 tests/reference/make_attention_refs.py
Writes tests/fixtures/attention/*.json. Everything is computed in float64 with fixed seeds. Each kernel is written here
from its paper's / official code's formulas (no Bert4Sharp code is read or run); where Bert4Sharp's XML docs pick a
variant, the reference follows that documented choice, and the file says so below.

Tensors are stored as {"shape": [...], "data": [flat, row-major]}. Inputs and given parameters are rounded to a few
significant digits *before* use, so the fixture holds exactly the values the reference computed with; outputs keep
13 significant digits.

  linear.json       Linear attention (Katharopoulos et al. 2020; fast-transformers LinearAttention and
                    CausalLinearAttention): φ = elu + 1, no scale, out = φ(q)·Σφ(k)ᵀv / (φ(q)·Σφ(k) + 1e-6).
                    Key padding zeroes the padded keys' features. Causal: prefix sums (cumsum over key positions),
                    eps 1e-6; with a cache, queries are the last Tq of the Tk positions. Cases: non-causal, non-causal
                    padded, causal, causal padded, causal with a cache, causal with a cache and left padding.
  performer.json    FAVOR+ (Choromanski et al.; performer-pytorch softmax_kernel): data normaliser √scale on q and k
                    (d^-1/4 for scale 1/√d), ratio m^-1/2, features ratio·(exp(Wx − ‖x‖²/2 − max) + 1e-4) with the
                    max over features per query row and over all keys and features per (batch, head) for keys.
                    Non-causal out = φ(q)·Σφ(k)ᵀv / φ(q)·Σφ(k) (no eps); causal by cumsum, no eps (Bert4Sharp passes
                    eps 0). Padded keys are absent: their features are zero and they take no part in the key
                    maximum (the output of real tokens must not depend on what the padding holds). The projection
                    (m, d) is GIVEN in the fixture. Also "many_features": m = 4096, d = 8, the FAVOR+ output next to
                    exact softmax attention, which it approaches.
  nystrom.json      Nyströmformer (Xiong et al. 2021; mlpen/Nystromformer NystromAttention): q, k each times scale^½,
                    keys times the key mask (Bert4Sharp's documented choice: keys only, the kernel gets a key mask),
                    landmarks = segment means (reshape-mean when L divides T, else row l averages ⌊lT/L⌋..⌊(l+1)T/L⌋−1),
                    kernel_1 = softmax(Q K̃ᵀ), kernel_2 = softmax(Q̃ K̃ᵀ), kernel_3 = softmax(Q̃ Kᵀ − 1e9·(1 − mask)),
                    out = kernel_1 (pinv(kernel_2) (kernel_3 V)), pinv by Z₀ = Aᵀ/(max column sum · max row sum) per
                    matrix and 6 iterations of Z = ¼Z(13I − AZ(15I − AZ(7I − AZ))); L ≥ T is exact softmax with the
                    same mask bias; plus a depthwise Conv2d(h, h, (k, 1), padding (k//2, 0), groups h, no bias) over
                    V·mask with a GIVEN weight, written here as an explicit sum over taps. Also segment-mean matrices.
  synthesizer.json  Synthesizer (Tay et al. 2020): softmax(Σ αᵢ Sᵢ + mask)·v with S_random = R[rows of the query
                    positions, first Tk columns], S_factorized = R₁R₂ᵀ likewise, S_dense = relu(q W₁ + b₁) W₂ + b₂
                    (first Tk outputs), S_softmax = scale·q·kᵀ; α = 1 for one part. Given parameters (ℓ = 20).
                    Cases: full length, additive key padding, and queries at positions Tk − Tq..Tk − 1 with a causal
                    mask and key padding.
  flash.json        FLASH mixed chunk attention (Hua et al. 2022, pseudo-code; the scalings as Bert4Sharp's XML doc):
                    pad to whole chunks of C with zeros, within a chunk relu(scale·q·kᵀ)²/C (lower triangle when
                    causal), across chunks scale·q·(Σ kᵀv)/T over every chunk (non-causal) or the strictly earlier
                    chunks (causal: exclusive cumsum over chunks). Key padding zeroes k and v. C = 4, 5 (T = 16) and 20.
  positions.json    ALiBi slopes by the paper's get_slopes for 1, 6, 8, 12, 16 heads, and the bias −slope·|i − j| for
                    queries after a past; 2D RoPE scores from the construction (first half of the head rotated by the
                    row, second half by the column, each 1D RoPE of dim d/2 with interleaved pairs and
                    θᵢ = 10000^(−2i/(d/2))), checked here against the relative form that depends on (Δrow, Δcol) only.
  relative.json     Transformer-XL (Dai et al. 2019; kimiyoung/transformer-xl RelPartialLearnableMultiHeadAttn): pos_seq =
                    klen−1 … 0, R = cat(sin, cos)(pos_seq ⊗ 1/10000^(2i/H)), r_head_k = r_net(R), AC = (q + r_w_bias)·k,
                    BD = _rel_shift((q + r_r_bias)·r_head_k), score = (AC + BD)·scale, causal with a memory of `past`
                    keys. XLNet (zihangdai/xlnet / HF XLNetRelativeAttention, bidirectional): pos_seq = klen … −qlen + 1,
                    BD = rel_shift_bnij; with key padding. DeBERTa (HF DebertaV2 disentangled_attention_bias,
                    share_att_key, c2p + p2c, no log buckets): relative_pos = q_ids − k_ids, c2p gathered at
                    clamp(relative_pos + k, 0, 2k − 1), p2c at clamp(−relative_pos + k, …) and transposed, every term
                    divided by √(3d); given projected relative embeddings. Outputs are softmax attention with these scores.
  gelu.json         Max |approximation − exact GELU| of the tanh form and of x·σ(1.702x) over x = i/10⁴,
                    i = −10⁵..10⁵, and where it occurs (exact GELU by math.erf).
"""
import json
import math
import os

import numpy as np
import torch

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures", "attention")
torch.set_default_dtype(torch.float64)
B, H, T, D = 2, 2, 16, 8
SCALE = 1 / math.sqrt(D)
LENGTHS = [16, 11]                      # right padding of the second sequence


def rounded(t, digits):
    """The tensor with every value rounded to `digits` significant digits (what the JSON will hold exactly)."""
    a = np.asarray(t.detach(), dtype=np.float64)
    r = np.array([float(f"{x:.{digits}g}") for x in a.ravel()], dtype=np.float64).reshape(a.shape)
    return torch.from_numpy(r)


def randn(gen, *shape, std=1.0, digits=6):
    return rounded(torch.randn(*shape, generator=gen) * std, digits)


def enc(t, digits=13):
    t = torch.as_tensor(t, dtype=torch.float64)
    return {"shape": list(t.shape), "data": [float(f"{x:.{digits}g}") for x in t.reshape(-1).tolist()]}


def write(name, obj):
    os.makedirs(OUT, exist_ok=True)
    path = os.path.join(OUT, name)
    with open(path, "w") as f:
        json.dump(obj, f, separators=(",", ":"))
        f.write("\n")
    print(f"{path}: {os.path.getsize(path)} bytes")


def right_padding(lengths, t):
    return torch.tensor([[1.0 if j < n else 0.0 for j in range(t)] for n in lengths])


def assert_close(a, b, what, tol=1e-10):
    err = (a - b).abs().max().item()
    assert err <= tol, f"{what}: internal cross-check off by {err}"


def softmax_ref(q, k, v, scale, key_mask=None):
    s = torch.einsum("bhid,bhjd->bhij", q, k) * scale
    if key_mask is not None:
        s = s.masked_fill(key_mask[:, None, None, :] == 0, -math.inf)
    return torch.softmax(s, -1) @ v


# ---------------------------------------------------------------------------------------------------------------
# Linear attention
# ---------------------------------------------------------------------------------------------------------------

def elu_plus_one(x):
    # elu(x) + 1 = x + 1 for x > 0, exp(x) otherwise
    return torch.where(x > 0, x + 1, torch.exp(torch.clamp(x, max=0)))


def feature_map_attention(fq, fk, v, causal, q_from, eps):
    """out_i = φ(q_i)·S / (φ(q_i)·z + eps); S, z summed over all keys, or (causal) over keys ≤ q_from + i."""
    if not causal:
        kv = torch.einsum("bhjm,bhjd->bhmd", fk, v)
        z = fk.sum(2)
        num = torch.einsum("bhim,bhmd->bhid", fq, kv)
        den = torch.einsum("bhim,bhm->bhi", fq, z)
        return num / (den[..., None] + eps)
    S = torch.einsum("bhjm,bhjd->bhjmd", fk, v).cumsum(2)           # prefix sums over key positions
    Z = fk.cumsum(2)
    tq = fq.shape[2]
    pos = torch.arange(q_from, q_from + tq)
    num = torch.einsum("bhim,bhimd->bhid", fq, S[:, :, pos])
    den = torch.einsum("bhim,bhim->bhi", fq, Z[:, :, pos])
    return num / (den[..., None] + eps)


def quadratic_feature_attention(fq, fk, v, causal, q_from, eps):
    """The same as explicit weights φ(q_i)·φ(k_j), masked, over their row sums + eps: a cross-check."""
    w = torch.einsum("bhim,bhjm->bhij", fq, fk)
    if causal:
        tq, tk = fq.shape[2], fk.shape[2]
        allowed = torch.arange(tk)[None, :] <= (q_from + torch.arange(tq))[:, None]
        w = w * allowed
    return (w @ v) / (w.sum(-1, keepdim=True) + eps)


def linear_ref(q, k, v, key_mask, causal, q_from):
    fq, fk = elu_plus_one(q), elu_plus_one(k)
    if key_mask is not None:
        fk = fk * key_mask[:, None, :, None]
    out = feature_map_attention(fq, fk, v, causal, q_from, 1e-6)
    assert_close(out, quadratic_feature_attention(fq, fk, v, causal, q_from, 1e-6), "linear")
    return out


def make_linear():
    g = torch.Generator().manual_seed(1001)
    q, k, v = randn(g, B, H, T, D), randn(g, B, H, T, D), randn(g, B, H, T, D)
    pad = right_padding(LENGTHS, T)
    left = torch.ones(B, T)
    left[1, :3] = 0                                                   # second sequence left-padded by 3
    cases = []
    for name, mask, causal, q_from in [("noncausal", None, False, 0), ("noncausal_padded", pad, False, 0),
                                       ("causal", None, True, 0), ("causal_padded", pad, True, 0),
                                       ("causal_cache", None, True, 11), ("causal_cache_left_padded", left, True, 11)]:
        out = linear_ref(q[:, :, q_from:], k, v, mask, causal, q_from)
        cases.append({"name": name, "causal": causal, "q_from": q_from,
                      "key_mask": None if mask is None else enc(mask), "expected": enc(out)})
    write("linear.json", {"about": "make_attention_refs.py: linear attention, elu+1, eps 1e-6",
                          "inputs": {"q": enc(q), "k": enc(k), "v": enc(v)}, "cases": cases})


# ---------------------------------------------------------------------------------------------------------------
# Performer FAVOR+
# ---------------------------------------------------------------------------------------------------------------

def orthogonal_gaussian(gen, m, d):
    """FAVOR+ projection: d×d orthogonal blocks (Q of a Gaussian's QR, transposed), stacked, first m rows, each row
    scaled by the norm of an independent d-dimensional Gaussian."""
    blocks = []
    for _ in range((m + d - 1) // d):
        qmat, _ = torch.linalg.qr(torch.randn(d, d, generator=gen))
        blocks.append(qmat.T)
    w = torch.cat(blocks, 0)[:m]
    return w * torch.randn(m, d, generator=gen).norm(dim=1, keepdim=True)


def favor_features(x, w, is_query, scale, key_mask=None):
    c = math.sqrt(scale)                                              # performer-pytorch's data_normalizer, generalised
    xn = c * x
    dash = torch.einsum("bhtd,md->bhtm", xn, w)
    diag = (xn ** 2).sum(-1, keepdim=True) / 2
    if is_query:
        mx = dash.amax(-1, keepdim=True)
    else:
        valid = dash if key_mask is None else dash.masked_fill(key_mask[:, None, :, None] == 0, -math.inf)
        mx = valid.amax((-1, -2), keepdim=True)                       # per (batch, head), over real keys only
    phi = (torch.exp(dash - diag - mx) + 1e-4) / math.sqrt(w.shape[0])
    if not is_query and key_mask is not None:
        phi = phi * key_mask[:, None, :, None]
    return phi


def performer_ref(q, k, v, w, scale, key_mask, causal, q_from):
    fq = favor_features(q, w, True, scale)
    fk = favor_features(k, w, False, scale, key_mask)
    out = feature_map_attention(fq, fk, v, causal, q_from, 0.0)
    assert_close(out, quadratic_feature_attention(fq, fk, v, causal, q_from, 0.0), "performer")
    return out


def make_performer():
    g = torch.Generator().manual_seed(2002)
    q, k, v = randn(g, B, H, T, D), randn(g, B, H, T, D), randn(g, B, H, T, D)
    w = rounded(orthogonal_gaussian(g, 16, D), 7)
    pad = right_padding(LENGTHS, T)
    # Padding holds large keys: were they in the key maximum, the +1e-4 would weigh differently for the real keys.
    k = k.clone()
    k[1, :, LENGTHS[1]:] = rounded(k[1, :, LENGTHS[1]:] * 4, 6)
    # The padding must not matter: the padded call equals the call on the real keys alone.
    alone = performer_ref(q[1:], k[1:, :, :LENGTHS[1]], v[1:, :, :LENGTHS[1]], w, SCALE, None, False, 0)
    with_pad = performer_ref(q, k, v, w, SCALE, pad, False, 0)[1:]
    assert_close(with_pad, alone, "performer padding invariance")
    cases = []
    for name, mask, causal, q_from in [("noncausal", None, False, 0), ("noncausal_padded", pad, False, 0),
                                       ("causal", None, True, 0), ("causal_padded", pad, True, 0),
                                       ("causal_cache", None, True, 11)]:
        out = performer_ref(q[:, :, q_from:], k, v, w, SCALE, mask, causal, q_from)
        cases.append({"name": name, "causal": causal, "q_from": q_from,
                      "key_mask": None if mask is None else enc(mask), "expected": enc(out)})

    # Many features: FAVOR+ approaches exact softmax attention.
    g2 = torch.Generator().manual_seed(2003)
    tm, m = 12, 4096
    q2, k2, v2 = randn(g2, 1, H, tm, D, std=0.5), randn(g2, 1, H, tm, D, std=0.5), randn(g2, 1, H, tm, D)
    w2 = rounded(orthogonal_gaussian(g2, m, D), 5)
    fav = performer_ref(q2, k2, v2, w2, SCALE, None, False, 0)
    exact = softmax_ref(q2, k2, v2, SCALE)
    gap = (fav - exact).abs().max().item()
    print(f"performer m={m}: max |FAVOR+ − softmax| = {gap:.3e}")
    many = {"q": enc(q2), "k": enc(k2), "v": enc(v2), "projection": {"shape": [m, D], "data": w2.reshape(-1).tolist()},
            "expected": enc(fav), "softmax": enc(exact), "max_abs_gap": gap}
    write("performer.json", {"about": "make_attention_refs.py: FAVOR+ as performer-pytorch softmax_kernel, given projection",
                             "scale": SCALE, "inputs": {"q": enc(q), "k": enc(k), "v": enc(v),
                                                        "projection": {"shape": list(w.shape), "data": w.reshape(-1).tolist()}},
                             "cases": cases, "many_features": many})


# ---------------------------------------------------------------------------------------------------------------
# Nyströmformer
# ---------------------------------------------------------------------------------------------------------------

def segment_means(t, l):
    m = torch.zeros(l, t)
    for i in range(l):
        a, b = (i * t) // l, ((i + 1) * t) // l
        m[i, a:b] = 1.0 / (b - a)
    return m


def iterative_pinv(a, iters):
    eye = torch.eye(a.shape[-1])
    col = a.sum(-2).amax(-1)                                          # per (batch, head) matrix
    row = a.sum(-1).amax(-1)
    z = a.transpose(-1, -2) / (col * row)[..., None, None]
    for _ in range(iters):
        az = a @ z
        z = 0.25 * z @ (13 * eye - az @ (15 * eye - az @ (7 * eye - az)))
    return z


def depthwise_conv(x, w):
    """Conv2d(h, h, (k, 1), padding (k//2, 0), groups h, no bias) on x (B, h, T, d): a cross-correlation along T."""
    ks, t = w.shape[2], x.shape[2]
    out = torch.zeros_like(x)
    for j in range(ks):
        shift = j - ks // 2                                           # out[t] += w[j]·x[t + shift]
        lo, hi = max(0, -shift), min(t, t - shift)
        out[:, :, lo:hi] += w[None, :, 0, j, 0, None, None] * x[:, :, lo + shift:hi + shift]
    return out


def nystrom_ref(q, k, v, key_mask, landmarks, scale, conv_w, iters=6):
    r = math.sqrt(scale)
    Q, K = q * r, k * r
    b, h, t, d = K.shape
    if key_mask is not None:
        K = K * key_mask[:, None, :, None]
        bias = -1e9 * (1 - key_mask[:, None, None, :])
    else:
        bias = torch.zeros(())
    if landmarks >= t:
        out = torch.softmax(Q @ K.transpose(-1, -2) + bias, -1) @ v
    else:
        if t % landmarks == 0:                                        # the official code's reshape-mean
            Ql = Q.reshape(b, h, landmarks, t // landmarks, d).mean(-2)
            Kl = K.reshape(b, h, landmarks, t // landmarks, d).mean(-2)
        else:
            M = segment_means(t, landmarks)
            Ql, Kl = M @ Q, M @ K
        k1 = torch.softmax(Q @ Kl.transpose(-1, -2), -1)
        k2 = torch.softmax(Ql @ Kl.transpose(-1, -2), -1)
        k3 = torch.softmax(Ql @ K.transpose(-1, -2) + bias, -1)
        out = k1 @ (iterative_pinv(k2, iters) @ (k3 @ v))
    if conv_w is not None:
        out = out + depthwise_conv(v if key_mask is None else v * key_mask[:, None, :, None], conv_w)
    return out


def make_nystrom():
    g = torch.Generator().manual_seed(3003)
    q, k, v = randn(g, B, H, T, D), randn(g, B, H, T, D), randn(g, B, H, T, D)
    ks = 5
    conv_w = randn(g, H, 1, ks, 1, std=0.3)
    ref = torch.nn.functional.conv2d(v, conv_w, padding=(ks // 2, 0), groups=H)
    assert_close(depthwise_conv(v, conv_w), ref, "depthwise conv")
    pad = right_padding(LENGTHS, T)
    cases = []
    for name, mask, landmarks, conv in [("L4", None, 4, True), ("L4_padded", pad, 4, True), ("L4_noconv", None, 4, False),
                                        ("L8_padded_noconv", pad, 8, False), ("L5", None, 5, True), ("L5_padded", pad, 5, True),
                                        ("L16", None, 16, True), ("L20_padded", pad, 20, True)]:
        out = nystrom_ref(q, k, v, mask, landmarks, SCALE, conv_w if conv else None)
        if landmarks >= T:
            exact = softmax_ref(q, k * (1 if mask is None else mask[:, None, :, None]), v, SCALE, mask)
            if conv:
                exact = exact + depthwise_conv(v if mask is None else v * mask[:, None, :, None], conv_w)
            assert_close(out, exact, "nystrom L >= T is softmax")
        cases.append({"name": name, "landmarks": landmarks, "conv_kernel": ks if conv else 0,
                      "key_mask": None if mask is None else enc(mask), "expected": enc(out)})
    means = [{"t": t, "l": l, "expected": enc(segment_means(t, l))} for t, l in [(16, 5), (13, 4), (7, 3), (16, 4)]]
    write("nystrom.json", {"about": "make_attention_refs.py: Nyströmformer, official formulation, 6 pinv iterations",
                           "scale": SCALE, "pinv_iterations": 6,
                           "inputs": {"q": enc(q), "k": enc(k), "v": enc(v), "conv_weight": enc(conv_w)},
                           "cases": cases, "segment_means": means})


# ---------------------------------------------------------------------------------------------------------------
# Synthesizer
# ---------------------------------------------------------------------------------------------------------------

def synthesizer_ref(parts, alphas, p, q, k, v, scale, mask_add):
    tq, tk = q.shape[2], k.shape[2]
    off = tk - tq
    logits = 0
    # One part: weight 1. A mixture learns logits; its weights are their softmax, so they sum to 1 (Tay et al., Σα = 1).
    alphas = torch.softmax(torch.tensor(alphas, dtype=torch.float64), 0).tolist() if len(parts) > 1 else [1.0]
    for part, a in zip(parts, alphas):
        if part == "random":
            s = p["random"][None, :, off:off + tq, :tk]
        elif part == "factorized":
            s = torch.einsum("hir,hjr->hij", p["left"][:, off:off + tq], p["right"][:, :tk])[None]
        elif part == "dense":
            hid = torch.relu(torch.einsum("bhid,hde->bhie", q, p["dense1"]) + p["dense1_bias"][None])
            s = torch.einsum("bhie,hel->bhil", hid, p["dense2"][:, :, :tk]) + p["dense2_bias"][None, :, :, :tk]
        else:
            s = torch.einsum("bhid,bhjd->bhij", q, k) * scale
        logits = logits + a * s
    if mask_add is not None:
        logits = logits + mask_add
    return torch.softmax(logits, -1) @ v


def make_synthesizer():
    g = torch.Generator().manual_seed(4004)
    ell, rank = 20, 3
    q, k, v = randn(g, B, H, T, D), randn(g, B, H, T, D), randn(g, B, H, T, D)
    p = {"random": randn(g, H, ell, ell), "left": randn(g, H, ell, rank, std=0.7), "right": randn(g, H, ell, rank, std=0.7),
         "dense1": randn(g, H, D, D, std=0.35), "dense1_bias": randn(g, H, 1, D, std=0.35),
         "dense2": randn(g, H, D, ell, std=0.35), "dense2_bias": randn(g, H, 1, ell, std=0.35)}
    pad = right_padding(LENGTHS, T)
    pad_add = torch.zeros(B, 1, 1, T).masked_fill(pad[:, None, None, :] == 0, -math.inf)
    tq = 5
    causal = torch.arange(T)[None, :] <= (T - tq + torch.arange(tq))[:, None]     # (Tq, Tk)
    offset_add = torch.zeros(B, 1, tq, T).masked_fill(~(causal[None, None] & (pad[:, None, None, :] == 1)), -math.inf)
    kernels = [("synthesizer_random", ["random"], [1.0]), ("synthesizer_factorized", ["factorized"], [1.0]),
               ("synthesizer_dense", ["dense"], [1.0]), ("random+softmax", ["random", "softmax"], [0.3, -0.2]),
               ("dense+softmax", ["dense", "softmax"], [-0.5, 0.4])]
    cases = []
    for kname, parts, alphas in kernels:
        for case, qq, add in [("full", q, None), ("padded", q, pad_add), ("offset_causal_padded", q[:, :, T - tq:], offset_add)]:
            out = synthesizer_ref(parts, alphas, p, qq, k, v, SCALE, add)
            cases.append({"name": f"{kname}/{case}", "kernel": kname, "parts": parts, "mix": alphas, "mask": case,
                          "q_from": T - qq.shape[2], "expected": enc(out)})
    write("synthesizer.json", {"about": "make_attention_refs.py: Synthesizer random/factorized/dense/mixtures, given parameters",
                               "scale": SCALE, "max_length": ell, "rank": rank, "offset_queries": tq,
                               "key_mask": enc(pad), "inputs": {"q": enc(q), "k": enc(k), "v": enc(v)},
                               "parameters": {n: enc(t) for n, t in p.items()}, "cases": cases})


# ---------------------------------------------------------------------------------------------------------------
# FLASH mixed chunk attention
# ---------------------------------------------------------------------------------------------------------------

def flash_ref(q, k, v, chunk, scale, causal, key_mask):
    b, h, t, d = q.shape
    if key_mask is not None:
        k = k * key_mask[:, None, :, None]
        v = v * key_mask[:, None, :, None]
    groups = -(-t // chunk)
    padded = groups * chunk

    def grouped(x):
        x = torch.cat([x, torch.zeros(b, h, padded - t, x.shape[-1])], 2)
        return x.reshape(b, h, groups, chunk, x.shape[-1])

    qg, kg, vg = grouped(q * scale), grouped(k), grouped(v)
    a = torch.relu(torch.einsum("bhgid,bhgjd->bhgij", qg, kg)) ** 2 / chunk
    if causal:
        a = a * torch.tril(torch.ones(chunk, chunk))
    quadratic = torch.einsum("bhgij,bhgje->bhgie", a, vg)
    kv = torch.einsum("bhgjd,bhgje->bhgde", kg, vg) / t
    if causal:
        kv = kv.cumsum(2) - kv                                        # exclusive: strictly earlier chunks
        linear = torch.einsum("bhgid,bhgde->bhgie", qg, kv)
    else:
        linear = torch.einsum("bhgid,bhde->bhgie", qg, kv.sum(2))
    return (quadratic + linear).reshape(b, h, padded, -1)[:, :, :t]


def make_flash():
    g = torch.Generator().manual_seed(5005)
    q, k, v = randn(g, B, H, T, D), randn(g, B, H, T, D), randn(g, B, H, T, D)
    pad = right_padding(LENGTHS, T)
    cases = []
    for chunk in (4, 5):
        for causal in (False, True):
            for mask in (None, pad):
                out = flash_ref(q, k, v, chunk, SCALE, causal, mask)
                name = f"C{chunk}_{'causal' if causal else 'noncausal'}{'_padded' if mask is not None else ''}"
                cases.append({"name": name, "chunk": chunk, "causal": causal,
                              "key_mask": None if mask is None else enc(mask), "expected": enc(out)})
    for causal in (False, True):
        cases.append({"name": f"C20_{'causal' if causal else 'noncausal'}", "chunk": 20, "causal": causal, "key_mask": None,
                      "expected": enc(flash_ref(q, k, v, 20, SCALE, causal, None))})
    write("flash.json", {"about": "make_attention_refs.py: FLASH mixed chunk attention (paper pseudo-code, Bert4Sharp's scalings)",
                         "scale": SCALE, "inputs": {"q": enc(q), "k": enc(k), "v": enc(v)}, "cases": cases})


# ---------------------------------------------------------------------------------------------------------------
# ALiBi and 2D RoPE
# ---------------------------------------------------------------------------------------------------------------

def get_slopes(n):
    """ALiBi's reference slopes (Press et al., attention_with_linear_biases)."""
    def power_of_2(n):
        start = 2 ** (-2 ** -(math.log2(n) - 3))
        return [start * start ** i for i in range(n)]
    if math.log2(n).is_integer():
        return power_of_2(n)
    closest = 2 ** math.floor(math.log2(n))
    return power_of_2(closest) + get_slopes(2 * closest)[0::2][:n - closest]


def rope_angles(pos, dim):
    theta = 10000.0 ** (-2 * torch.arange(dim // 2, dtype=torch.float64) / dim)
    return pos[..., None].to(torch.float64) * theta                  # (..., dim/2)


def rotate_pairs(x, angles):
    """Interleaved pairs (x₂ᵢ, x₂ᵢ₊₁) rotated by angles[..., i]."""
    a, b = x[..., 0::2], x[..., 1::2]
    c, s = angles.cos(), angles.sin()
    return torch.stack([a * c - b * s, a * s + b * c], -1).reshape(x.shape)


def make_positions():
    slopes = {str(n): get_slopes(n) for n in (1, 6, 8, 12, 16)}
    alibi = []
    for heads, length, past in [(6, 4, 3), (8, 5, 0), (12, 3, 9)]:
        qp = torch.arange(past, past + length)[:, None]
        kp = torch.arange(past + length)[None, :]
        bias = -torch.tensor(get_slopes(heads))[:, None, None] * (qp - kp).abs()[None]
        alibi.append({"heads": heads, "length": length, "past": past, "expected": enc(bias[None])})

    g = torch.Generator().manual_seed(6006)
    d, rows, cols = 16, 3, 4
    t = rows * cols
    q1, k1 = randn(g, 1, H, t, d), randn(g, 1, H, t, d)
    q, k = torch.cat([q1, q1]), torch.cat([k1, k1])                 # the same content in both sequences
    grid = torch.tensor([[r, c] for r in range(rows) for c in range(cols)])
    pos = torch.stack([grid, grid + torch.tensor([2, 5])])           # (B, T, 2): the second grid shifted by (2, 5)
    pos[0, 5] = torch.tensor([7, 1])                                 # and one token of the first somewhere else

    def rope2d(x):
        half = d // 2
        r = rotate_pairs(x[..., :half], rope_angles(pos[:, None, :, 0], half))
        c = rotate_pairs(x[..., half:], rope_angles(pos[:, None, :, 1], half))
        return torch.cat([r, c], -1)

    qr, kr = rope2d(q), rope2d(k)
    scores = qr @ kr.transpose(-1, -2)
    # Relative form: R(α)q·R(β)k = qᵀR(β − α)k, per pair cos φ·(q₀k₀ + q₁k₁) + sin φ·(q₁k₀ − q₀k₁), φ = Δposition·θ.
    rel = torch.zeros_like(scores)
    for axis, sl in ((0, slice(0, d // 2)), (1, slice(d // 2, d))):
        delta = (pos[:, None, :, axis] - pos[:, :, None, axis]).to(torch.float64)   # (B, Tq, Tk): key − query
        phi = rope_angles(delta, d // 2)[:, None]                                   # (B, 1, Tq, Tk, d/4)
        qa, qb = q[..., sl][..., 0::2], q[..., sl][..., 1::2]
        ka, kb = k[..., sl][..., 0::2], k[..., sl][..., 1::2]
        dot = torch.einsum("bhip,bhjp->bhijp", qa, ka) + torch.einsum("bhip,bhjp->bhijp", qb, kb)
        cross = torch.einsum("bhip,bhjp->bhijp", qb, ka) - torch.einsum("bhip,bhjp->bhijp", qa, kb)
        rel = rel + (phi.cos() * dot + phi.sin() * cross).sum(-1)
    assert_close(scores, rel, "2D RoPE absolute vs relative")
    # Shifting every position leaves the scores among the unshifted tokens alone.
    keep = [i for i in range(t) if i != 5]
    assert_close(scores[0][:, keep][:, :, keep], scores[1][:, keep][:, :, keep], "2D RoPE shift invariance")
    rope = {"dim": d, "position_ids": enc(pos.to(torch.float64)), "q": enc(q), "k": enc(k),
            "q_rotated": enc(qr), "k_rotated": enc(kr), "scores": enc(rel)}
    write("positions.json", {"about": "make_attention_refs.py: ALiBi get_slopes and bias; 2D RoPE",
                             "alibi_slopes": slopes, "alibi_bias": alibi, "rope2d": rope})


# ---------------------------------------------------------------------------------------------------------------
# Relative positions: Transformer-XL / XLNet and DeBERTa
# ---------------------------------------------------------------------------------------------------------------

def xl_pos_emb(pos_seq, width):
    inv_freq = 1 / (10000 ** (torch.arange(0.0, width, 2.0) / width))
    sinusoid = torch.outer(pos_seq, inv_freq)
    return torch.cat([sinusoid.sin(), sinusoid.cos()], -1)                       # (R, width)


def xl_rel_shift(x):
    """Transformer-XL's _rel_shift on (qlen, rlen, ...) scores."""
    zero_pad = torch.zeros((x.size(0), 1, *x.size()[2:]), dtype=x.dtype)
    x_padded = torch.cat([zero_pad, x], dim=1).view(x.size(1) + 1, x.size(0), *x.size()[2:])
    return x_padded[1:].view_as(x)


def xlnet_rel_shift_bnij(x, klen):
    b, n, i, j = x.shape
    x = x.reshape(b, n, j, i)[:, :, 1:, :].reshape(b, n, i, j - 1)
    return torch.index_select(x, 3, torch.arange(klen))


def masked_softmax_out(score, v, allowed):
    score = score.masked_fill(~allowed, float("-inf"))
    return torch.softmax(score, -1) @ v


def make_relative():
    g = torch.Generator().manual_seed(7007)
    width, scale = 16, SCALE
    cases = []
    # Transformer-XL, causal, with a memory: queries are the last qlen of klen positions.
    for qlen, past in [(5, 0), (3, 4)]:
        klen = qlen + past
        q, k, v = randn(g, B, H, qlen, D), randn(g, B, H, klen, D), randn(g, B, H, klen, D)
        w_r, u, vb = randn(g, H * D, width, std=0.3), randn(g, H, D, std=0.5), randn(g, H, D, std=0.5)
        r = xl_pos_emb(torch.arange(klen - 1, -1, -1.0), width)                  # (rlen = klen, width)
        r_head_k = (r @ w_r.t()).view(klen, H, D)
        qi = q.permute(2, 0, 1, 3)                                                # (qlen, B, H, D) as the official code
        ki = k.permute(2, 0, 1, 3)
        ac = torch.einsum("ibnd,jbnd->ijbn", qi + u, ki)
        bd = xl_rel_shift(torch.einsum("ibnd,jnd->ijbn", qi + vb, r_head_k))
        score = ((ac + bd) * scale).permute(2, 3, 0, 1)                           # (B, H, qlen, klen)
        allowed = (torch.arange(klen)[None, :] <= torch.arange(past, past + qlen)[:, None])
        out = masked_softmax_out(score, v, allowed)
        bias = score - (q @ k.transpose(-1, -2)) * scale
        cases.append({"name": f"xl_causal_q{qlen}_past{past}", "scheme": "xl", "causal": True, "past": past, "key_mask": None,
                      "q": enc(q), "k": enc(k), "v": enc(v), "proj": enc(w_r), "content_bias": enc(u), "position_bias": enc(vb),
                      "bias_masked": enc(bias.masked_fill(~allowed, 0)), "expected": enc(out)})
    # XLNet, bidirectional, with right padding of the keys.
    qlen = klen = 6
    q, k, v = randn(g, B, H, qlen, D), randn(g, B, H, klen, D), randn(g, B, H, klen, D)
    w_r, u, vb = randn(g, H * D, width, std=0.3), randn(g, H, D, std=0.5), randn(g, H, D, std=0.5)
    r = xl_pos_emb(torch.arange(klen, -qlen, -1.0), width)                        # (klen + qlen, width)
    k_head_r = (r @ w_r.t()).view(-1, H, D)
    ac = torch.einsum("bnid,bnjd->bnij", q + u[None, :, None], k)
    bd = xlnet_rel_shift_bnij(torch.einsum("bnid,jnd->bnij", q + vb[None, :, None], k_head_r), klen)
    score = (ac + bd) * scale
    key_mask = torch.tensor([[1.0] * 6, [1.0] * 4 + [0.0] * 2])
    allowed = (key_mask[:, None, None, :] > 0).expand(B, H, qlen, klen)
    out = masked_softmax_out(score, v, allowed)
    cases.append({"name": "xlnet_bidirectional_padded", "scheme": "xl", "causal": False, "past": 0, "key_mask": enc(key_mask),
                  "q": enc(q), "k": enc(k), "v": enc(v), "proj": enc(w_r), "content_bias": enc(u), "position_bias": enc(vb),
                  "bias_masked": enc((score - (q @ k.transpose(-1, -2)) * scale).masked_fill(~allowed, 0)), "expected": enc(out)})
    # DeBERTa-v2, bidirectional, span 3 < length 8 so the clipping shows, with and without padding.
    span, t = 3, 8
    for padded in (False, True):
        q, k, v = randn(g, B, H, t, D), randn(g, B, H, t, D), randn(g, B, H, t, D)
        pos_query, pos_key = randn(g, H, 2 * span, D), randn(g, H, 2 * span, D)     # query_proj / key_proj of rel_embeddings, by head
        deb_scale = 1 / math.sqrt(D * 3)
        ql, kl = q.reshape(B * H, t, D), k.reshape(B * H, t, D)
        relative_pos = torch.arange(t)[:, None] - torch.arange(t)[None, :]
        score = torch.bmm(ql, kl.transpose(-1, -2)) * deb_scale
        c2p = torch.bmm(ql, pos_key.repeat(B, 1, 1).transpose(-1, -2))
        c2p_pos = torch.clamp(relative_pos + span, 0, 2 * span - 1)
        c2p = torch.gather(c2p, -1, c2p_pos[None].expand(B * H, t, t))
        p2c_pos = torch.clamp(-relative_pos + span, 0, 2 * span - 1)
        p2c = torch.bmm(kl, pos_query.repeat(B, 1, 1).transpose(-1, -2))
        p2c = torch.gather(p2c, -1, p2c_pos[None].expand(B * H, t, t)).transpose(-1, -2)
        score = (score + c2p * deb_scale + p2c * deb_scale).view(B, H, t, t)
        key_mask = torch.tensor([[1.0] * t, [1.0] * 5 + [0.0] * 3]) if padded else torch.ones(B, t)
        allowed = (key_mask[:, None, None, :] > 0).expand(B, H, t, t)
        out = masked_softmax_out(score, v, allowed)
        cases.append({"name": f"deberta_span{span}{'_padded' if padded else ''}", "scheme": "deberta", "causal": False, "past": 0,
                      "span": span, "key_mask": enc(key_mask) if padded else None,
                      "q": enc(q), "k": enc(k), "v": enc(v), "relative_query": enc(pos_query), "relative_key": enc(pos_key),
                      "bias_masked": enc((score - (q @ k.transpose(-1, -2)) * deb_scale).masked_fill(~allowed, 0)), "expected": enc(out)})
    write("relative.json", {"about": "make_attention_refs.py: Transformer-XL (_rel_shift), XLNet (rel_shift_bnij), DeBERTa-v2 c2p + p2c",
                            "width": width, "scale": scale, "cases": cases})


# ---------------------------------------------------------------------------------------------------------------
# GELU approximations
# ---------------------------------------------------------------------------------------------------------------

def make_gelu():
    x = np.arange(-100000, 100001, dtype=np.float64) / 10000.0
    erf = np.vectorize(math.erf)
    exact = 0.5 * x * (1 + erf(x / math.sqrt(2)))
    approx = {"gelu_new": 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3))),
              "gelu_sigmoid": x / (1 + np.exp(-1.702 * x))}
    out = {}
    for name, a in approx.items():
        err = np.abs(a - exact)
        i = int(np.argmax(err))
        out[name] = {"max_abs_error": float(err[i]), "at": float(x[i]), "abs_at": abs(float(x[i]))}
        print(f"{name}: max |err| {err[i]:.6e} at x = {x[i]}")
    write("gelu.json", {"about": "make_attention_refs.py: max |approx − exact GELU| on x = i/1e4, i = -1e5..1e5",
                        "grid": {"from": -100000, "to": 100000, "divisor": 10000}, "approximations": out})


if __name__ == "__main__":
    make_linear()
    make_performer()
    make_nystrom()
    make_synthesizer()
    make_flash()
    make_positions()
    make_relative()
    make_gelu()
