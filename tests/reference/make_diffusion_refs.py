#!/usr/bin/python3
"""Reference numbers for Bert4Sharp's Diffusion/ methods (src/Bert4Sharp.Diffusion/Methods).

Run with Debian's python3-torch (1.13):  /usr/bin/python3 tests/reference/make_diffusion_refs.py
Writes tests/fixtures/diffusion/methods.json.

Each formula is written here from the papers / Su Jianlin's posts, independently of the C# code:
- DDPM (Ho et al. 2020, eq. 4, 11; "生成扩散模型漫谈（一）"): linear betas, closed-form q(x_t|x_0), one ancestral step on a
  respaced schedule (beta' = 1 - abar_t/abar_prev, sigma^2 = beta' (1-abar_prev)/(1-abar_t)), one DDIM step (eta = 0);
  and both with the predicted x0 clipped to [-1, 1] as in Ho et al.'s sampler (clip_denoised=True: posterior mean
  coef1 x0 + coef2 x_t, eq. 7) and guided-diffusion's DDIM (eps re-derived from the clipped x0).
- Rectified flow (Liu et al. 2022): x_t = t x1 + (1-t) x0, target x1 - x0, Euler and Heun steps of a fixed analytic
  velocity field v(x, t) = -x * (1 + t) + sin(x).
- PFGM (Xu et al. 2022, Algorithm 1; "生成扩散模型漫谈（十三）"): the perturbation, the empirical normalised field target
  -sqrt(N) E / (||E|| + gamma) with E = c(y) sum_j (y - x_j)/||y - x_j||^(N+1), c(y) = 1/sum_j ||y - x_j||^-(N+1),
  computed directly in float64 (small N, no underflow); the backward ODE drift z * v_x / v_z at s = ln z for a given
  field, without and with the appendix B.2.3 substitution of v_z below z_exp; the authors' hyper-parameter relations
  (M, z_max, radius bound) for CIFAR-10's dimension and norm and for a 2-D toy.
- Frechet distance: scipy.linalg.sqrtm on the covariances (as pytorch-fid does).
All inputs are drawn here from torch's generator and stored in the JSON, so C# reads the same inputs.
"""
import json
import math
import os

import numpy as np
import scipy.linalg
import torch

torch.manual_seed(18)
OUT = os.path.join(os.path.dirname(__file__), "..", "fixtures", "diffusion", "methods.json")


def lst(t):
    return t.detach().double().reshape(-1).tolist()


refs = {}

# ---------------- DDPM ----------------
T = 1000
betas = torch.linspace(1e-4, 0.02, T, dtype=torch.float64)
abar = torch.cumprod(1 - betas, 0)
x0 = torch.randn(3, 1, 4, 4, dtype=torch.float64)
eps = torch.randn(3, 1, 4, 4, dtype=torch.float64)
ts = torch.tensor([0, 499, 999])
xt = abar[ts].sqrt().view(-1, 1, 1, 1) * x0 + (1 - abar[ts]).sqrt().view(-1, 1, 1, 1) * eps
# one ancestral step t -> prev with predicted eps and fresh noise z
x = torch.randn(3, 1, 4, 4, dtype=torch.float64)
eps_hat = torch.randn(3, 1, 4, 4, dtype=torch.float64)
z = torch.randn(3, 1, 4, 4, dtype=torch.float64)
steps = []
for (t, prev) in [(999, 899), (99, -1), (500, 499)]:
    ab_t = abar[t].item()
    ab_p = abar[prev].item() if prev >= 0 else 1.0
    beta = 1 - ab_t / ab_p
    mean = (x - beta / math.sqrt(1 - ab_t) * eps_hat) / math.sqrt(1 - beta)
    anc = mean if prev < 0 else mean + math.sqrt(beta * (1 - ab_p) / (1 - ab_t)) * z
    x0_hat = (x - math.sqrt(1 - ab_t) * eps_hat) / math.sqrt(ab_t)
    ddim = math.sqrt(ab_p) * x0_hat + math.sqrt(1 - ab_p) * eps_hat
    # clip_denoised=True (Ho et al. diffusion_utils_2.p_mean_variance; guided-diffusion ddim_sample)
    x0_clip = x0_hat.clamp(-1, 1)
    coef1 = beta * math.sqrt(ab_p) / (1 - ab_t)
    coef2 = (1 - ab_p) * math.sqrt(1 - beta) / (1 - ab_t)
    mean_c = coef1 * x0_clip + coef2 * x
    anc_c = mean_c if prev < 0 else mean_c + math.sqrt(beta * (1 - ab_p) / (1 - ab_t)) * z
    eps_c = (math.sqrt(1 / ab_t) * x - x0_clip) / math.sqrt(1 / ab_t - 1)
    ddim_c = math.sqrt(ab_p) * x0_clip + math.sqrt(1 - ab_p) * eps_c
    steps.append({"t": t, "prev": prev, "ancestral": lst(anc), "ddim": lst(ddim),
                  "ancestral_clipped": lst(anc_c), "ddim_clipped": lst(ddim_c),
                  "clipped_count": int((x0_hat.abs() > 1).sum().item())})
refs["ddpm"] = {
    "abar": [abar[i].item() for i in (0, 1, 9, 99, 499, 999)], "abar_index": [0, 1, 9, 99, 499, 999],
    "x0": lst(x0), "eps": lst(eps), "t": ts.tolist(), "xt": lst(xt), "shape": [3, 1, 4, 4],
    "x": lst(x), "eps_hat": lst(eps_hat), "z": lst(z), "steps": steps,
    "respaced": {"10": [int((i + 1) * T // 10) - 1 for i in range(10)], "1": [T - 1]},
}

# ---------------- rectified flow ----------------
def velocity(x, t):
    return -x * (1 + t) + torch.sin(x)

n0 = torch.randn(5, 2, dtype=torch.float64)
n1 = torch.randn(5, 2, dtype=torch.float64)
tt = torch.rand(5, dtype=torch.float64)
xt = tt.view(-1, 1) * n1 + (1 - tt.view(-1, 1)) * n0
t0, dt = 0.25, 0.125
euler = n0 + dt * velocity(n0, t0)
v1 = velocity(n0, t0)
heun = n0 + dt / 2 * (v1 + velocity(n0 + dt * v1, t0 + dt))
# a whole Euler path of 4 steps and its straightness
xs = n0.clone()
vs = []
for k in range(4):
    v = velocity(xs, k / 4)
    vs.append(v)
    xs = xs + v / 4
disp = xs - n0
S = sum(((disp - v) ** 2).sum(1).mean() for v in vs) / 4
refs["rf"] = {"x0": lst(n0), "x1": lst(n1), "t": lst(tt), "xt": lst(xt), "target": lst(n1 - n0),
              "t0": t0, "dt": dt, "euler": lst(euler), "heun": lst(heun), "path4": lst(xs), "straightness4": S.item()}

# ---------------- PFGM ----------------
sigma, tau, gamma = 0.01, 0.03, 0.5
B, C, N = 4, 6, 3
data = torch.randn(B, N, dtype=torch.float64)
charges = torch.cat([data, torch.randn(C - B, N, dtype=torch.float64)], 0)
m = torch.rand(B, dtype=torch.float64) * 291
eps_x = torch.randn(B, N, dtype=torch.float64) * sigma
eps_z = torch.randn(B, dtype=torch.float64) * sigma
direction = torch.randn(B, N, dtype=torch.float64)
scale = (1 + tau) ** m
u = direction / direction.norm(dim=1, keepdim=True)
y = data + (eps_x.norm(dim=1) * scale).view(-1, 1) * u
zz = eps_z.abs() * scale
# a second set of points near the data, where the field is not dominated by one charge
y_near = data + 0.3 * torch.randn(B, N, dtype=torch.float64)
z_near = torch.rand(B, dtype=torch.float64) * 0.5 + 0.05


def field_target(y, z, charges):
    yt = torch.cat([y, z.view(-1, 1)], 1)                                     # (B, N+1)
    ct = torch.cat([charges, torch.zeros(len(charges), 1, dtype=torch.float64)], 1)
    diff = yt.unsqueeze(1) - ct.unsqueeze(0)                                  # (B, C, N+1)
    dist = diff.norm(dim=2, keepdim=True)
    inv = 1 / dist ** (N + 1)                                                 # (B, C, 1)
    E = (diff * inv).sum(1) / inv.sum(1)                                      # c(y) * sum: (B, N+1)
    return -math.sqrt(N) * E / (E.norm(dim=1, keepdim=True) + gamma)


v_field = torch.randn(B, N + 1, dtype=torch.float64)
v_field[:, -1] = -v_field[:, -1].abs() - 0.5                                  # v_z < 0: pointing down
zq = 2.5
drift = zq * v_field[:, :N] / (v_field[:, N:] + 1e-5)
# Appendix B.2.3 (z below z_exp): v_z from the x part, for fields whose x part has ||v_x||/sqrt(N) = ratio < 1
ratio = torch.tensor([0.2, 0.5, 0.8, 0.95], dtype=torch.float64).view(-1, 1)
v_sub = v_field.clone()
v_sub[:, :N] = v_field[:, :N] / v_field[:, :N].norm(dim=1, keepdim=True) * ratio * math.sqrt(N)
ex = gamma * ratio / (1 - ratio)
vz_sub = -math.sqrt(N) * zq / ((ex ** 2 + zq ** 2).sqrt() + gamma)
drift_sub = zq * v_sub[:, :N] / (vz_sub + 1e-5)


def calculator(dim, norm):
    """The PFGM authors' relations (hyperparam_calculator.py) with D = dim + 1."""
    D = dim + 1
    M = int(0.75 * math.log(norm ** 2 / (2 * math.sqrt(D) * sigma ** 2)) / math.log(1 + tau)) + 1
    return {"dim": dim, "norm": norm, "m": M, "z_max": math.sqrt(2 / math.pi) * sigma * (1 + tau) ** M,
            "upper_norm": math.sqrt(D) * sigma * (1 + tau) ** M}
refs["pfgm"] = {"n": N, "data": lst(data), "charges": lst(charges), "m": lst(m), "eps_x": lst(eps_x), "eps_z": lst(eps_z),
                "direction": lst(direction), "y": lst(y), "z": lst(zz), "target": lst(field_target(y, zz, charges)),
                "y_near": lst(y_near), "z_near": lst(z_near), "target_near": lst(field_target(y_near, z_near, charges)),
                "field": lst(v_field), "zq": zq, "drift": lst(drift), "gamma": gamma,
                "field_sub": lst(v_sub), "z_exp": 5.0, "drift_sub": lst(drift_sub),
                "calculator": [calculator(3072, 32.0), calculator(2, 2.0)]}

# ---------------- Frechet distance ----------------
fa = torch.randn(40, 5, dtype=torch.float64).numpy()
fb = (torch.randn(30, 5, dtype=torch.float64) * 1.5 + 0.3).numpy()
mu1, mu2 = fa.mean(0), fb.mean(0)
s1, s2 = np.cov(fa, rowvar=False), np.cov(fb, rowvar=False)
covmean = scipy.linalg.sqrtm(s1.dot(s2)).real
fd = float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))
refs["frechet"] = {"a": fa.reshape(-1).tolist(), "b": fb.reshape(-1).tolist(), "width": 5, "fd": fd}

os.makedirs(os.path.dirname(OUT), exist_ok=True)
with open(OUT, "w") as f:
    json.dump(refs, f, indent=None, separators=(",", ":"))
print("wrote", OUT, os.path.getsize(OUT), "bytes")
