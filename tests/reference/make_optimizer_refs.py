#!/usr/bin/python3
"""Reference optimizer trajectories for Bert4Sharp's Training/Optimizer.cs.

Run with Debian's python3-torch (1.13):  /usr/bin/python3 tests/reference/make_optimizer_refs.py
Writes tests/fixtures/training/optimizer_trajectories.json.

A tiny float64 problem (embedding -> mean -> dense -> tanh -> scale -> dense -> cross-entropy) whose initial
weights and batches come from closed-form formulas, so C# rebuilds it exactly. For each configuration the
script records the loss before every update and the final weights.

Where PyTorch has the optimizer (Adam, AdamW, gradient clipping) the trajectory comes from torch.optim itself.
The bert4keras-only pieces (LAMB = weight decay + layer adaptation, Lion, AdaFactor, piecewise-linear lr,
parameter-wise lr, lazy rows, gradient accumulation, Lookahead, EMA) come from `port_step` below: a direct
port of the update formulas in bert4keras/optimizers.py (v0.11), written against torch tensors.
"""
import json
import math
import os

import torch

torch.set_default_dtype(torch.float64)
SHAPES = [("emb.weight", (20, 8)), ("dense.weight", (16, 8)), ("dense.bias", (16,)),
          ("norm.weight", (16,)), ("out.weight", (5, 16)), ("out.bias", (5,))]
STEPS = 25
B, T = 6, 4


def initial():
    params = {}
    for k, (name, shape) in enumerate(SHAPES):
        n = math.prod(shape)
        v = torch.tensor([0.3 * math.sin(0.7 * i + k) for i in range(n)]).reshape(shape)
        if name == "norm.weight":
            v = v + 1.0
        params[name] = v.clone().requires_grad_(True)
    return params


def batch(s):
    # ids use rows 0..14 only, and each batch a different subset: rows without gradient exist (lazy optimisation).
    ids = torch.tensor([[(3 * b + 5 * t + 7 * (s % 4)) % (12 + s % 4) for t in range(T)] for b in range(B)])
    labels = torch.tensor([(b + s) % 5 for b in range(B)])
    return ids, labels


def loss_fn(p, s):
    ids, labels = batch(s)
    h = p["emb.weight"][ids].mean(1)
    h = torch.tanh(h @ p["dense.weight"].T + p["dense.bias"]) * p["norm.weight"]
    logits = h @ p["out.weight"].T + p["out.bias"]
    return torch.nn.functional.cross_entropy(logits, labels)


def matches(name, patterns):
    return any(q.lower() in name.lower() for q in patterns)


def piecewise(t, schedule):
    pts = sorted(schedule.items())
    if pts[0][0] != 0:
        pts = [(0, 0.0)] + pts
    if t <= pts[0][0]:
        return pts[0][1]
    for (s0, v0), (s1, v1) in zip(pts, pts[1:]):
        if t < s1:
            return v0 + (v1 - v0) * (t - s0) / (s1 - s0)
    return pts[-1][1]


def rms(x):
    return x.square().mean().sqrt()


def raw_step(kind, hp, st, name, x, g, lr, t):
    """The base algorithms of bert4keras/optimizers.py: returns the increment dx."""
    s = st.setdefault(name, {})
    if kind == "adam":
        b1, b2, eps = hp.get("beta1", 0.9), hp.get("beta2", 0.999), hp.get("eps", 1e-6)
        m = s["m"] = b1 * s.get("m", torch.zeros_like(x)) + (1 - b1) * g
        v = s["v"] = b2 * s.get("v", torch.zeros_like(x)) + (1 - b2) * g * g
        m_hat, v_hat = m / (1 - b1 ** t), v / (1 - b2 ** t)
        return -lr * m_hat / (v_hat.sqrt() + eps)
    if kind == "lion":
        b1, b2 = hp.get("beta1", 0.95), hp.get("beta2", 0.98)
        m = s.get("m", torch.zeros_like(x))
        u = torch.sign(b1 * m + (1 - b1) * g)
        s["m"] = b2 * m + (1 - b2) * g
        return -lr * u
    if kind == "adafactor":
        beta1, beta2 = hp.get("beta1", 0.0), hp.get("beta2")
        eps1, eps2 = 1e-30, 1e-3
        clip, min_dim, scale = hp.get("clip", 1.0), hp.get("min_dim", 128), hp.get("scale", True)
        b2 = 1.0 - t ** -0.8 if beta2 is None else beta2
        g2 = g * g + eps1
        shape = list(x.shape)
        factored = None
        if len(shape) >= 2:
            order = sorted(range(len(shape)), key=lambda i: (shape[i], i))
            if shape[order[-2]] >= min_dim:
                factored = (order[-1], order[-2])
        if factored is None:
            v = s["v"] = b2 * s.get("v", torch.zeros_like(x)) + (1 - b2) * g2
        else:
            a1, a2 = factored
            vr = s["vr"] = b2 * s.get("vr", torch.zeros_like(g2.mean(a1, keepdim=True))) + (1 - b2) * g2.mean(a1, keepdim=True)
            vc = s["vc"] = b2 * s.get("vc", torch.zeros_like(g2.mean(a2, keepdim=True))) + (1 - b2) * g2.mean(a2, keepdim=True)
            v = vr * vc / vr.mean(a2, keepdim=True)
        u = g / (v + eps1).sqrt()
        if clip is not None:
            u = u / torch.clamp(rms(u) / clip, min=1.0)
        if beta1 > 0:
            u = s["m"] = beta1 * s.get("m", torch.zeros_like(x)) + (1 - beta1) * u
        if scale:
            u = u * torch.clamp(rms(x), min=eps2)
        return -lr * u
    raise ValueError(kind)


def run_port(cfg):
    p = initial()
    st, acc, slow, ema = {}, {}, {}, {}
    losses, it, micro = [], 0, 0
    k = cfg.get("accum", 1)
    for s in range(STEPS):
        for q in p.values():
            q.grad = None
        loss = loss_fn(p, s)
        losses.append(loss.item())
        loss.backward()
        with torch.no_grad():
            grads = {n: q.grad.clone() for n, q in p.items()}
            if k > 1:
                for n in p:
                    acc[n] = acc.get(n, torch.zeros_like(p[n])) + grads[n]
                micro += 1
                if micro < k:
                    continue
                micro = 0
                grads = {n: acc[n] / k for n in p}
                acc = {}
            if "clip" in cfg:
                norm = torch.sqrt(sum((g * g).sum() for g in grads.values())).item()
                if norm > cfg["clip"]:
                    grads = {n: g * (cfg["clip"] / (norm + 1e-6)) for n, g in grads.items()}
            if "lookahead" in cfg and not slow:
                slow = {n: q.detach().clone() for n, q in p.items()}
            lr = cfg["lr"] * (piecewise(it, cfg["schedule"]) if "schedule" in cfg else 1.0)
            for n, x in p.items():
                g = grads[n]
                dx = raw_step(cfg["kind"], cfg.get("hp", {}), st, n, x, g, lr, it + 1)
                if cfg.get("wd", 0) > 0 and not matches(n, cfg.get("wd_exclude", [])):
                    dx = dx - lr * cfg["wd"] * x
                if cfg.get("layer_adaptation") and not matches(n, cfg.get("la_exclude", [])):
                    x_norm = x.norm().item()
                    g_norm = (dx / max(lr, 1e-7)).norm().item()
                    if x_norm > 0 and g_norm > 0:
                        dx = dx * (x_norm / g_norm)
                mult = 1.0
                for key, v in cfg.get("paramwise", {}).items():
                    if key.lower() in n.lower():
                        mult *= v
                dx = dx * mult
                if matches(n, cfg.get("lazy", [])):
                    dx = dx * (g != 0).any(-1, keepdim=True).to(dx.dtype)
                x.add_(dx)
            it += 1
            if "ema" in cfg:
                mom = cfg["ema"]
                for n, x in p.items():
                    ema[n] = mom * ema.get(n, torch.zeros_like(x)) + (1 - mom) * x
            if "lookahead" in cfg and it % cfg["lookahead"][0] == 0:
                alpha = cfg["lookahead"][1]
                for n, x in p.items():
                    slow[n] = slow[n] + alpha * (x - slow[n])
                    x.copy_(slow[n])
    out = {"losses": losses, "iterations": it, "final": {n: q.detach().flatten().tolist() for n, q in p.items()}}
    if "ema" in cfg:
        scale = 1 - cfg["ema"] ** it
        out["ema"] = {n: (e / scale).flatten().tolist() for n, e in ema.items()}
    return out


def run_torch(cfg):
    p = initial()
    names = list(p)
    if cfg["torch"] == "adamw":
        opt = torch.optim.AdamW(p.values(), lr=cfg["lr"], betas=(0.9, 0.999), eps=1e-6, weight_decay=cfg["wd"])
    else:
        opt = torch.optim.Adam(p.values(), lr=cfg["lr"], betas=(0.9, 0.999), eps=1e-6)
    losses = []
    for s in range(STEPS):
        opt.zero_grad()
        loss = loss_fn(p, s)
        losses.append(loss.item())
        loss.backward()
        if "clip" in cfg:
            torch.nn.utils.clip_grad_norm_(p.values(), cfg["clip"])
        opt.step()
    return {"losses": losses, "iterations": STEPS, "final": {n: p[n].detach().flatten().tolist() for n in names}}


CONFIGS = {
    # torch.optim is the reference
    "adam_torch": {"torch": "adam", "lr": 0.05},
    "adamw_torch": {"torch": "adamw", "lr": 0.05, "wd": 0.1},
    "adam_clip_torch": {"torch": "adam", "lr": 0.05, "clip": 0.05},
    # ports of bert4keras
    "lamb": {"kind": "adam", "lr": 0.02, "wd": 0.01, "wd_exclude": ["norm", "bias"], "layer_adaptation": True, "la_exclude": ["norm", "bias"]},
    "lion": {"kind": "lion", "lr": 0.01, "wd": 0.1, "wd_exclude": ["norm", "bias"]},
    "adafactor": {"kind": "adafactor", "lr": 0.05, "hp": {"min_dim": 6}},
    "adafactor_momentum": {"kind": "adafactor", "lr": 0.05, "hp": {"beta1": 0.9, "beta2": 0.999, "min_dim": 6, "scale": False}},
    "schedule_paramwise": {"kind": "adam", "lr": 0.05, "schedule": {5: 1.0, 20: 0.1}, "paramwise": {"emb": 0.5, "out": 2.0}},
    "lazy": {"kind": "adam", "lr": 0.05, "lazy": ["emb"], "wd": 0.1, "wd_exclude": ["norm", "bias"]},
    "accumulation": {"kind": "adam", "lr": 0.05, "accum": 3},
    "lookahead": {"kind": "adam", "lr": 0.05, "lookahead": [5, 0.5]},
    "ema": {"kind": "adam", "lr": 0.05, "ema": 0.9},
}


def main():
    out = {"steps": STEPS, "shapes": {n: list(s) for n, s in SHAPES}, "configs": {}}
    for name, cfg in CONFIGS.items():
        res = run_torch(cfg) if "torch" in cfg else run_port(cfg)
        res["config"] = cfg
        out["configs"][name] = res
    path = os.path.join(os.path.dirname(__file__), "..", "fixtures", "training", "optimizer_trajectories.json")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(out, f, indent=None, separators=(",", ":"))
    print("wrote", os.path.normpath(path), "torch", torch.__version__)


if __name__ == "__main__":
    main()
