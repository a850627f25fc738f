#!/usr/bin/python3
"""GlobalPointer / EfficientGlobalPointer and the multilabel categorical cross-entropies, ported to PyTorch.

Run with Debian's python3-torch (PyTorch 1.13): /usr/bin/python3 tests/reference/make_global_pointer_refs.py
Writes tests/fixtures/tasks/global_pointer/refs.safetensors (float64 throughout, safetensors written here with
struct + json):
  gp.dense.{weight,bias}                       GlobalPointer's one projection, torch layout [out, in]
  egp.p_dense.{weight,bias}, egp.q_dense.*     EfficientGlobalPointer's shared q/k projection and per-type bias
  hidden (B, T, H), mask (B, T) int64          inputs; the second sequence is padded
  gold (N, 4) int64                            gold spans as rows (batch, type, start, end)
  sparse_gold (B, types, P) int64              the same spans as flat indices start·T + end, padded with 0
  {gp,egp}.{rope_tril,plain}.scores            (B, types, T, T); plain = no RoPE, no lower-triangle mask
  {gp,egp}.dense_rows, .sparse_rows            per (batch, type) losses, dense and sparse (mask_zero)
  {gp,egp}.dense_loss                          mean over batch·types of dense rows (the NER example's reduction)
  {gp,egp}.sparse_loss                         mean over batch of the sum over types of sparse rows (GPLinker's)
  {gp,egp}.dense_grad, .sparse_grad            gradients of those two losses wrt hidden
  {gp,egp}.decoded (M, 4) int64                (batch, type, start, end) with score > 0 in rope_tril scores, in
                                               np.where order
The semantics follow bert4keras (layers.GlobalPointer / EfficientGlobalPointer, backend.sequence_masking,
apply_rotary_position_embeddings, multilabel_categorical_crossentropy, sparse_multilabel_categorical_crossentropy)
as read, re-expressed here in PyTorch; no Bert4Sharp code is involved.
"""
import json, math, os, struct
import torch

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures", "tasks", "global_pointer")
B, T, H, TYPES, D = 2, 8, 16, 3, 8
LENGTHS = [8, 5]
GOLD = [(0, 0, 1, 3), (0, 0, 4, 6), (0, 1, 1, 3), (0, 2, 2, 2), (1, 0, 3, 4), (1, 1, 0, 2)]
torch.set_default_dtype(torch.float64)


def sinusoidal(length, dim):
    # bert4keras sinusoidal_embeddings: [sin θ0, cos θ0, sin θ1, cos θ1, ...], θi = pos·10000^(-2i/dim)
    pos = torch.arange(length, dtype=torch.float64)
    inv = torch.pow(torch.tensor(10000.0), -2 * torch.arange(dim // 2, dtype=torch.float64) / dim)
    ang = pos[:, None] * inv[None]
    return torch.stack([ang.sin(), ang.cos()], -1).reshape(length, dim)


def rope(x, emb):
    # x (B, T, ..., d); emb (T, d) aligned on the sequence axis and the last axis
    shape = [1, emb.shape[0]] + [1] * (x.dim() - 3) + [emb.shape[1]]
    emb = emb.reshape(shape)
    cos = emb[..., 1::2].repeat_interleave(2, -1)
    sin = emb[..., ::2].repeat_interleave(2, -1)
    x2 = torch.stack([-x[..., 1::2], x[..., ::2]], -1).reshape(x.shape)
    return x * cos + x2 * sin


def mask_scores(logits, mask, tril):
    m = mask.bool()
    full = m[:, None, :, None] & m[:, None, None, :]
    if tril:
        full = full & torch.triu(torch.ones(logits.shape[-2:], dtype=torch.bool))
    return torch.where(full, logits, torch.tensor(-math.inf))


def global_pointer(w, x, mask, use_rope, tril):
    h = x @ w["gp.dense.weight"].T + w["gp.dense.bias"]                   # (B, T, types·2d)
    h = torch.stack(torch.split(h, 2 * D, -1), -2)                         # (B, T, types, 2d)
    q, k = h[..., :D], h[..., D:]
    if use_rope:
        emb = sinusoidal(x.shape[1], D)
        q, k = rope(q, emb), rope(k, emb)
    logits = torch.einsum("bmhd,bnhd->bhmn", q, k) / D ** 0.5
    return mask_scores(logits, mask, tril)


def efficient_global_pointer(w, x, mask, use_rope, tril):
    p = x @ w["egp.p_dense.weight"].T + w["egp.p_dense.bias"]             # (B, T, 2d)
    q, k = p[..., ::2], p[..., 1::2]
    if use_rope:
        emb = sinusoidal(x.shape[1], D)
        q, k = rope(q, emb), rope(k, emb)
    logits = torch.einsum("bmd,bnd->bmn", q, k) / D ** 0.5
    bias = torch.einsum("bnh->bhn", p @ w["egp.q_dense.weight"].T + w["egp.q_dense.bias"]) / 2
    logits = logits[:, None] + bias[:, ::2, None] + bias[:, 1::2, :, None]
    return mask_scores(logits, mask, tril)


def mlcce(y_true, y_pred):
    y_mask = y_pred != -math.inf
    ninf = torch.tensor(-math.inf)
    y_neg = torch.where(y_mask, y_pred, ninf) + torch.log(1 - y_true)
    y_pos = torch.where(y_mask, -y_pred, ninf) + torch.log(y_true)
    zeros = torch.zeros_like(y_pred[..., :1])
    return torch.logsumexp(torch.cat([y_neg, zeros], -1), -1) + torch.logsumexp(torch.cat([y_pos, zeros], -1), -1)


def sparse_mlcce(y_true, y_pred, mask_zero=False, eps=1e-7):
    zeros = torch.zeros_like(y_pred[..., :1])
    y_pred = torch.cat([y_pred, zeros], -1)
    if mask_zero:
        infs = zeros + math.inf
        y_pred = torch.cat([infs, y_pred[..., 1:]], -1)
    y_pos_2 = torch.gather(y_pred, -1, y_true)
    y_pos_1 = torch.cat([y_pos_2, zeros], -1)
    if mask_zero:
        y_pred = torch.cat([-infs, y_pred[..., 1:]], -1)
        y_pos_2 = torch.gather(y_pred, -1, y_true)
    pos_loss = torch.logsumexp(-y_pos_1, -1)
    all_loss = torch.logsumexp(y_pred, -1)
    aux_loss = torch.logsumexp(y_pos_2, -1) - all_loss
    aux_loss = torch.clamp(1 - torch.exp(aux_loss), eps, 1)
    return pos_loss + all_loss + torch.log(aux_loss)


def write_safetensors(path, tensors):
    dt = {torch.float64: "F64", torch.int64: "I64"}
    header, blobs, off = {"__metadata__": {"producer": "make_global_pointer_refs.py"}}, [], 0
    for name in sorted(tensors):
        t = tensors[name].detach().contiguous()
        b = t.numpy().tobytes()
        header[name] = {"dtype": dt[t.dtype], "shape": list(t.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def main():
    g = torch.Generator().manual_seed(8373)
    def normal(*shape, std=1.0):
        return torch.randn(*shape, generator=g) * std
    w = {
        "gp.dense.weight": normal(TYPES * 2 * D, H, std=H ** -0.5), "gp.dense.bias": normal(TYPES * 2 * D, std=0.1),
        "egp.p_dense.weight": normal(2 * D, H, std=H ** -0.5), "egp.p_dense.bias": normal(2 * D, std=0.1),
        "egp.q_dense.weight": normal(2 * TYPES, 2 * D, std=(2 * D) ** -0.5), "egp.q_dense.bias": normal(2 * TYPES, std=0.1),
    }
    hidden = normal(B, T, H)
    mask = torch.tensor([[1 if t < n else 0 for t in range(T)] for n in LENGTHS], dtype=torch.int64)
    labels = torch.zeros(B, TYPES, T, T)
    per_row = [[[] for _ in range(TYPES)] for _ in range(B)]
    for b, ty, s, e in GOLD:
        labels[b, ty, s, e] = 1
        per_row[b][ty].append(s * T + e)
    P = max(len(r) for rows in per_row for r in rows)
    sparse_gold = torch.tensor([[r + [0] * (P - len(r)) for r in rows] for rows in per_row], dtype=torch.int64)
    out = dict(w)
    out.update(hidden=hidden, mask=mask, gold=torch.tensor(GOLD, dtype=torch.int64), sparse_gold=sparse_gold)
    for name, fn in (("gp", global_pointer), ("egp", efficient_global_pointer)):
        out[f"{name}.plain.scores"] = fn(w, hidden, mask, False, False)
        x = hidden.clone().requires_grad_(True)
        scores = fn(w, x, mask, True, True)
        out[f"{name}.rope_tril.scores"] = scores
        flat = scores.reshape(B, TYPES, T * T)
        dense_rows = mlcce(labels.reshape(B, TYPES, T * T), flat)
        sparse_rows = sparse_mlcce(sparse_gold, flat, mask_zero=True)
        dense_loss = dense_rows.mean()
        sparse_loss = sparse_rows.sum(1).mean()
        dense_grad, = torch.autograd.grad(dense_loss, x, retain_graph=True)
        sparse_grad, = torch.autograd.grad(sparse_loss, x)
        assert torch.isfinite(dense_grad).all() and torch.isfinite(sparse_grad).all()
        # the sparse loss with mask_zero never counts flat index 0 (the (0, 0) cell) as a negative
        flat0 = flat.detach().clone()
        flat0[..., 0] = -math.inf
        check = mlcce(labels.reshape(B, TYPES, T * T), flat0)
        assert torch.allclose(check, sparse_rows.detach(), rtol=1e-12, atol=1e-12), (check, sparse_rows)
        out[f"{name}.dense_rows"], out[f"{name}.sparse_rows"] = dense_rows, sparse_rows
        out[f"{name}.dense_loss"], out[f"{name}.sparse_loss"] = dense_loss, sparse_loss
        out[f"{name}.dense_grad"], out[f"{name}.sparse_grad"] = dense_grad, sparse_grad
        out[f"{name}.decoded"] = torch.nonzero(scores.detach() > 0)
        print(name, "dense", float(dense_loss), "sparse", float(sparse_loss), "decoded", out[f"{name}.decoded"].shape[0])
    os.makedirs(OUT, exist_ok=True)
    path = os.path.join(OUT, "refs.safetensors")
    write_safetensors(path, out)
    print(path, os.path.getsize(path), "bytes")


if __name__ == "__main__":
    main()
