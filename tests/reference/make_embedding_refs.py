#!/usr/bin/env python3
"""References for Bert4Sharp's sentence-embedding pieces (tests/Bert4Sharp.Tests/Embeddings/EmbeddingReferenceTests.cs).

Independent implementations, written from the papers / posts, with Debian python3-torch (1.13), numpy and scipy:
  - Spearman's rho: scipy.stats.spearmanr (ties averaged).
  - Unsupervised SimCSE (Gao et al. 2021, eq. 1): cross-entropy of cos(h_i, h_j^+)/tau over the batch.
  - Supervised SimCSE (eq. 5): the positives and the hard negatives of the whole batch are the candidates.
  - CoSENT (kexue.fm/archives/8847): log(1 + sum over (i, j) with label_i > label_j of exp(lambda (cos_j - cos_i))),
    written here in the post's "all pairs minus a large constant" form.
  - BERT-whitening (kexue.fm/archives/8069): np.cov + SVD, W = U diag(1/sqrt(s)); compared through the Gram matrix of
    the whitened vectors, which does not depend on the SVD's column signs.
Run: /usr/bin/python3 tests/reference/make_embedding_refs.py  (writes tests/fixtures/embeddings/refs.json)
"""
import json, os
import numpy as np
import torch
from scipy.stats import spearmanr

rng = np.random.default_rng(20261130)
out = {}

# Spearman with ties on both sides.
gold = rng.integers(0, 6, size=40).astype(float)
pred = np.round(gold + rng.normal(0, 1.5, size=40), 1)
pred[:5] = pred[5]
out["spearman"] = {"x": pred.tolist(), "y": gold.tolist(), "rho": float(spearmanr(pred, gold).correlation)}

def tens(a):
    return torch.tensor(a, dtype=torch.float64, requires_grad=True)

def cos_matrix(a, b):
    a = torch.nn.functional.normalize(a, dim=-1)
    b = torch.nn.functional.normalize(b, dim=-1)
    return a @ b.T

B, H = 6, 8
z1, z2, z3 = (rng.normal(size=(B, H)) for _ in range(3))

a, b = tens(z1), tens(z2)
loss = torch.nn.functional.cross_entropy(cos_matrix(a, b) / 0.05, torch.arange(B))
loss.backward()
out["simcse"] = {"first": z1.tolist(), "second": z2.tolist(), "temperature": 0.05, "loss": loss.item(), "grad_first": a.grad.tolist()}

a, p, n = tens(z1), tens(z2), tens(z3)
loss = torch.nn.functional.cross_entropy(cos_matrix(a, torch.cat([p, n])) / 0.05, torch.arange(B))
loss.backward()
out["supervised_simcse"] = {"anchor": z1.tolist(), "positive": z2.tolist(), "negative": z3.tolist(), "temperature": 0.05,
                            "loss": loss.item(), "grad_anchor": a.grad.tolist()}

labels = np.array([0, 1, 1, 0, 2, 5], dtype=float)
a, b = tens(z1), tens(z2)
s = torch.nn.functional.cosine_similarity(a, b, dim=1) * 20
d = s[:, None] - s[None, :]                                       # [i, j] = s_i - s_j
y = torch.tensor(labels)[:, None] < torch.tensor(labels)[None, :]  # [i, j]: label_i < label_j
d = d - (~y).double() * 1e12
loss = torch.logsumexp(torch.cat([torch.zeros(1, dtype=torch.float64), d.flatten()]), 0)
loss.backward()
out["cosent"] = {"first": z1.tolist(), "second": z2.tolist(), "scores": labels.tolist(), "scale": 20.0, "loss": loss.item(), "grad_first": a.grad.tolist()}

# Whitening of correlated data with distinct variances; keep k = 5 of 8.
N, H, K = 60, 8, 5
x = rng.normal(size=(N, H)) @ rng.normal(size=(H, H)) + rng.normal(size=H)
x = x.astype(np.float32)
mu = x.astype(np.float64).mean(axis=0)
cov = np.cov(x.astype(np.float64).T)
u, s, _ = np.linalg.svd(cov)
w = u / np.sqrt(s)
y = (x - mu) @ w[:, :K]
out["whitening"] = {"vectors": x.tolist(), "dimensions": K, "mean": mu.tolist(), "gram": (y @ y.T).tolist()}

path = os.path.join(os.path.dirname(__file__), "..", "fixtures", "embeddings", "refs.json")
with open(path, "w") as f:
    json.dump(out, f)
print("wrote", os.path.normpath(path), os.path.getsize(path), "bytes")
