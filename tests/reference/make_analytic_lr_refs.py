#!/usr/bin/python3
"""NumPy reference of the closed-form logistic / softmax regression of Su Jianlin,
"概率视角下的线性模型：逻辑回归有解析解吗？" (https://kexue.fm/archives/8578), written from the post's formulas,
independently of the C# code (src/Bert4Sharp/Tasks/LogisticRegression.cs).

Run:  /usr/bin/python3 tests/reference/make_analytic_lr_refs.py

Model: x | y=k ~ N(mu_k, Sigma) with one Sigma shared by all classes; Bayes' rule gives
  p(y=k|x) = softmax_k(x W + b),  W[:, k] = Sigma^-1 mu_k^T,  b_k = log p_k - 1/2 mu_k Sigma^-1 mu_k^T
and for two classes the sigmoid with w = Sigma^-1 (mu_1 - mu_0)^T, b = 1/2 (mu_0 S^-1 mu_0 - mu_1 S^-1 mu_1) + log(p_1/p_0).
Sigma estimates: "pooled"  = sum_k p_k Sigma_k (Sigma_k the 1/N_k class covariance),
                 "classmean" = (1/K) sum_k Sigma_k;
ridge r: Sigma + r * (trace(Sigma)/n) * I.

Writes tests/fixtures/classics/analytic_lr.json: for each case the features (float32-representable values, so the
C# side sees exactly the same inputs), labels, options, and W (n x K, row-major), b, the binary direction and offset
for two classes, and the predicted classes.
"""
import json
import os

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "fixtures", "classics", "analytic_lr.json")


def fit(x, y, k, ridge, covariance):
    x = x.astype(np.float64)
    n = x.shape[1]
    counts = np.array([(y == c).sum() for c in range(k)], dtype=np.float64)
    priors = counts / len(y)
    means = np.stack([x[y == c].mean(axis=0) for c in range(k)])                 # (K, n)
    class_cov = [np.cov(x[y == c].T, bias=True).reshape(n, n) for c in range(k)]  # 1/N_k normalisation
    if covariance == "pooled":
        sigma = sum(p * s for p, s in zip(priors, class_cov))
    else:
        sigma = sum(class_cov) / k
    if ridge > 0:
        sigma = sigma + ridge * (np.trace(sigma) / n) * np.eye(n)
    w = np.linalg.solve(sigma, means.T)                                          # (n, K)
    b = np.log(priors) - 0.5 * np.einsum("kn,nk->k", means, w)
    return w, b


def case(name, rng, rows, n, k, ridge, covariance):
    mus = rng.normal(0, 1.5, size=(k, n))
    a = rng.normal(0, 1, size=(n, n))
    y = rng.choice(k, size=rows, p=np.linspace(1, 2, k) / np.linspace(1, 2, k).sum())
    y[:k] = np.arange(k)                                      # every class present
    x = mus[y] + rng.normal(0, 1, size=(rows, n)) @ a * 0.7
    x = x.astype(np.float32)                                  # the exact inputs both sides read
    w, b = fit(x, y, k, ridge, covariance)
    logits = x.astype(np.float64) @ w + b
    out = {
        "name": name, "classes": k, "ridge": ridge, "covariance": covariance,
        "features": x.reshape(-1).tolist(), "rows": rows, "n": n, "labels": y.tolist(),
        "weights": w.reshape(-1).tolist(), "bias": b.tolist(), "predicted": logits.argmax(1).tolist(),
    }
    if k == 2:
        out["direction"] = (w[:, 1] - w[:, 0]).tolist()
        out["offset"] = float(b[1] - b[0])
        # the post's binary form, computed separately as a check of the softmax reduction
        mu0, mu1 = x[y == 0].astype(np.float64).mean(0), x[y == 1].astype(np.float64).mean(0)
        p1 = (y == 1).mean()
        wb = np.linalg.solve(_sigma(x, y, k, ridge, covariance), mu1 - mu0)
        assert np.allclose(wb, out["direction"], rtol=1e-10, atol=1e-12)
    return out


def _sigma(x, y, k, ridge, covariance):
    x = x.astype(np.float64)
    n = x.shape[1]
    priors = np.array([(y == c).mean() for c in range(k)])
    cov = [np.cov(x[y == c].T, bias=True).reshape(n, n) for c in range(k)]
    s = sum(p * c for p, c in zip(priors, cov)) if covariance == "pooled" else sum(cov) / k
    return s + ridge * (np.trace(s) / n) * np.eye(n) if ridge > 0 else s


def main():
    rng = np.random.default_rng(8578)
    cases = [
        case("binary-pooled", rng, 48, 4, 2, 0.0, "pooled"),
        case("binary-classmean-ridge", rng, 40, 5, 2, 1e-2, "classmean"),
        case("softmax-pooled-ridge", rng, 90, 6, 4, 1e-3, "pooled"),
        case("softmax-classmean", rng, 75, 3, 3, 0.0, "classmean"),
    ]
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as f:
        json.dump({"source": "tests/reference/make_analytic_lr_refs.py", "cases": cases}, f)
    print(f"wrote {OUT}: {len(cases)} cases")


if __name__ == "__main__":
    main()
