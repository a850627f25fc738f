#!/usr/bin/python3
"""References for Bert4Sharp.Embeddings.OptimalTransport and WordMoverDistance
(tests/Bert4Sharp.Tests/OptimalTransportTests.cs).

Oracles, all float64:

1. Exact optimal transport (EMD) as the linear program
       min sum_ij C_ij x_ij   s.t.  sum_j x_ij = p_i,  sum_i x_ij = q_j,  x >= 0
   solved by scipy.optimize.linprog(method="highs"). Only the optimal cost is saved: with ties the optimal plan is not
   unique, so the tests check the C# plan's marginals, sign and cost instead of the plan itself.
2. WMD / WRD (Kusner et al. 2015; Yokoi et al. 2020; Su Jianlin, kexue.fm/archives/7388), the weights and costs built
   here from random float32 vectors:
       WMD: weight of a word = its count / the text's length (tokens with the same id merge; their vector is the mean of
            the merged vectors, which equals the vector itself when the vectors of one id are identical), cost = the
            Euclidean distance between the vectors.
       WRD: weight = the vector's L2 norm / the sum of the text's norms, cost = 1 - cosine similarity.
   then the same linprog.
3. Entropic OT by a log-domain Sinkhorn written here in numpy (f, g dual potentials, alternating soft-min updates),
   run until the row-marginal L1 error is below 1e-13; the fixed point's transport cost <gamma, C> is saved.

Run with Debian's python3-numpy/python3-scipy: /usr/bin/python3 tests/reference/make_transport_refs.py
Writes tests/fixtures/transport/refs.json.
"""
import json
import os

import numpy as np
from scipy.optimize import linprog
from scipy.special import logsumexp

rng = np.random.default_rng(20261130)


def emd(p, q, C):
    n, m = C.shape
    A = []
    b = []
    for i in range(n):
        row = np.zeros((n, m))
        row[i, :] = 1
        A.append(row.ravel())
        b.append(p[i])
    for j in range(m):
        col = np.zeros((n, m))
        col[:, j] = 1
        A.append(col.ravel())
        b.append(q[j])
    res = linprog(C.ravel(), A_eq=np.array(A), b_eq=np.array(b), bounds=(0, None), method="highs")
    assert res.status == 0, res.message
    return float(res.fun)


def sinkhorn(p, q, C, eps, tol=1e-13, max_iter=200000):
    """Log-domain Sinkhorn on the support of p and q; returns <gamma, C> and the iterations used."""
    rows = p > 0
    cols = q > 0
    Cs = C[np.ix_(rows, cols)]
    lp, lq = np.log(p[rows]), np.log(q[cols])
    f = np.zeros(rows.sum())
    g = np.zeros(cols.sum())
    for it in range(1, max_iter + 1):
        f = eps * (lp - logsumexp((g[None, :] - Cs) / eps, axis=1))
        g = eps * (lq - logsumexp((f[:, None] - Cs) / eps, axis=0))
        gamma = np.exp((f[:, None] + g[None, :] - Cs) / eps)
        err = np.abs(gamma.sum(axis=1) - p[rows]).sum()
        if err < tol:
            return float((gamma * Cs).sum()), it
    raise RuntimeError("numpy Sinkhorn did not converge")


def simplex(n, zeros=0):
    w = rng.random(n)
    if zeros:
        w[rng.choice(n, zeros, replace=False)] = 0
    return w / w.sum()


def merge(vectors, ids):
    """Bag of words: unique ids in first-occurrence order, weight = count / length, vector = mean of the merged vectors."""
    order = []
    groups = {}
    for pos, t in enumerate(ids):
        if t not in groups:
            groups[t] = []
            order.append(t)
        groups[t].append(pos)
    weights = np.array([len(groups[t]) / len(ids) for t in order])
    vecs = np.array([vectors[groups[t]].astype(np.float64).mean(axis=0) for t in order])
    return weights, vecs


def wmd(a, b, ids_a=None, ids_b=None):
    if ids_a is None:
        wa, va = np.full(len(a), 1.0 / len(a)), a.astype(np.float64)
    else:
        wa, va = merge(a, ids_a)
    if ids_b is None:
        wb, vb = np.full(len(b), 1.0 / len(b)), b.astype(np.float64)
    else:
        wb, vb = merge(b, ids_b)
    C = np.sqrt(((va[:, None, :] - vb[None, :, :]) ** 2).sum(axis=2))
    return emd(wa, wb, C)


def wrd(a, b):
    a = a.astype(np.float64)
    b = b.astype(np.float64)
    na, nb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
    wa, wb = na / na.sum(), nb / nb.sum()
    cos = (a @ b.T) / (na[:, None] * nb[None, :])
    return emd(wa, wb, 1.0 - cos)


def mat(C):
    return [[float(x) for x in row] for row in C]


def vecs(x):
    return [[float(v) for v in row] for row in x]


exact = []


def add_exact(name, p, q, C):
    exact.append({"name": name, "p": [float(x) for x in p], "q": [float(x) for x in q], "cost": mat(C),
                  "expected": emd(np.asarray(p, float), np.asarray(q, float), np.asarray(C, float))})


add_exact("1x1", [1.0], [1.0], np.array([[2.5]]))
add_exact("1x5", [1.0], simplex(5), rng.random((1, 5)))
add_exact("5x1", simplex(5), [1.0], rng.random((5, 1)))
add_exact("3x3 uniform (degenerate north-west corner)", np.full(3, 1 / 3), np.full(3, 1 / 3), rng.random((3, 3)))
add_exact("3x3 all costs equal", simplex(3), simplex(3), np.full((3, 3), 0.7))
add_exact("5x7 random", simplex(5), simplex(7), rng.random((5, 7)))
add_exact("5x7 zero weights", simplex(5, zeros=2), simplex(7, zeros=3), rng.random((5, 7)))
add_exact("8x8 assignment (uniform weights)", np.full(8, 1 / 8), np.full(8, 1 / 8), rng.random((8, 8)))
add_exact("8x8 integer costs with ties", simplex(8), simplex(8), rng.integers(0, 3, (8, 8)).astype(float))
add_exact("8x8 equal partial sums", np.array([1, 1, 2, 2, 1, 1, 1, 1]) / 10, np.array([2, 1, 1, 1, 1, 2, 1, 1]) / 10,
          rng.integers(0, 5, (8, 8)).astype(float))
pts_a, pts_b = rng.random((6, 2)), rng.random((9, 2))
add_exact("6x9 Euclidean points", simplex(6), simplex(9), np.sqrt(((pts_a[:, None] - pts_b[None]) ** 2).sum(axis=2)))
add_exact("12x10 random", simplex(12), simplex(10), rng.random((12, 10)))

text = []
for name, (n, m, d) in {"wmd 4x6 d8": (4, 6, 8), "wmd 7x5 d16": (7, 5, 16)}.items():
    a = rng.standard_normal((n, d)).astype(np.float32)
    b = rng.standard_normal((m, d)).astype(np.float32)
    text.append({"name": name, "kind": "wmd", "a": vecs(a), "b": vecs(b), "expected": wmd(a, b)})
# Bag of words: ids with repeats; the vectors of one id are identical (input embeddings) in "a", contextual in "b".
table = rng.standard_normal((5, 8)).astype(np.float32)
ids_a = [0, 1, 0, 2, 1, 0]
ids_b = [3, 1, 3, 4, 2]
a = table[ids_a]
b = table[ids_b] + 0.1 * rng.standard_normal((len(ids_b), 8)).astype(np.float32)
text.append({"name": "wmd bag of words d8", "kind": "wmd", "a": vecs(a), "b": vecs(b), "ids_a": ids_a, "ids_b": ids_b,
             "expected": wmd(a, b, ids_a, ids_b)})
for name, (n, m, d) in {"wrd 5x5 d8": (5, 5, 8), "wrd 3x9 d32": (3, 9, 32)}.items():
    a = (rng.standard_normal((n, d)) * rng.uniform(0.5, 3, (n, 1))).astype(np.float32)
    b = (rng.standard_normal((m, d)) * rng.uniform(0.5, 3, (m, 1))).astype(np.float32)
    text.append({"name": name, "kind": "wrd", "a": vecs(a), "b": vecs(b), "expected": wrd(a, b)})

sink = []
for name, (p, q, C) in {
    "sinkhorn 5x7": (simplex(5), simplex(7), rng.random((5, 7))),
    "sinkhorn 6x4 zero weights": (simplex(6, zeros=1), simplex(4, zeros=1), rng.random((6, 4))),
}.items():
    for eps in (0.5, 0.1, 0.02):
        cost, iters = sinkhorn(p, q, C, eps)
        sink.append({"name": f"{name} eps={eps}", "p": [float(x) for x in p], "q": [float(x) for x in q], "cost": mat(C),
                     "epsilon": eps, "expected": cost, "exact": emd(p, q, C), "numpy_iterations": iters})

out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures", "transport", "refs.json")
os.makedirs(os.path.dirname(out), exist_ok=True)
tmp = out + ".tmp"
with open(tmp, "w") as fh:
    json.dump({"exact": exact, "text": text, "sinkhorn": sink}, fh, indent=1)
os.replace(tmp, out)
print(f"wrote {out}: {len(exact)} exact, {len(text)} text, {len(sink)} sinkhorn cases")
