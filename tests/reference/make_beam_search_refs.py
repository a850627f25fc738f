#!/usr/bin/python3
"""Reference beam search for Bert4Sharp's AutoRegressiveDecoder.BeamSearch, over synthetic logits tables.

Run with Debian's python3-numpy (and python3-torch for the GPT-2 self-check):
    /usr/bin/python3 tests/reference/make_beam_search_refs.py
Writes tests/fixtures/generation/beam_search.json.

Oracle. Debian bookworm has no python3-transformers, so `beam_search` below is a standalone port, written here,
of the beam search that transformers' `generate(num_beams=n, do_sample=False)` runs: `GenerationMixin._beam_search`
in src/transformers/generation/utils.py as rewritten in PR #35802 (v4.50) and kept in 5.x (5.17 made
tests/fixtures/hf). One batch row, one end token, no logits processors. What it mirrors, step by step
(cur_len = tokens so far including the prompt, P = prompt length, max_length = P + max_new_tokens):
  a. log_softmax of each running beam's next-token logits, plus that beam's running score. Running scores start
     as [0, -1e9, -1e9, ...] so only beam 0 is live at the first step.
  b. `_get_top_k_continuations`: the top K = max(2, 1 + #eos) * num_beams = 2 * num_beams candidates over all
     (beam, token) pairs, best first.
  c. stopping criteria per candidate: EosTokenCriteria (last token is the end token) or MaxLengthCriteria
     (cur_len + 1 >= max_length).
  d. `_get_running_beams_for_next_iteration`: candidates that hit a criterion get -1e9; the top num_beams of the
     K become the running beams (so running beams never contain a finished sequence).
  e. `_update_finished_beams` (the role BeamHypotheses played in the old BeamSearchScorer): only candidates ranked
     within the first num_beams of the K that hit a criterion are eligible; their score is
     sum_logprobs / (cur_len + 1 - P) ** length_penalty (the generated length, end token included); -1e9 is added
     when every finished slot is full and early_stopping is True, when the heuristic below already said no
     improvement is possible, and for ineligible candidates. The num_beams finished slots (initially -1e9,
     unfinished) merged with the K candidates keep the best num_beams.
  f. cur_len += 1; `_check_early_stop_heuristic`: improvement stays possible while some finished slot is empty or
     best_running_score / (cur_len - P) ** length_penalty > worst finished score (early_stopping="never" with a
     positive length penalty would use max_length - P instead; Bert4Sharp's options are a bool, so not ported).
  g. `_beam_search_has_unfinished_sequences`: stop when improvement is impossible, when early_stopping is True and
     all num_beams slots are finished, or when every candidate hit a criterion (max length reached).
  The output is the best finished slot's sequence (prompt + generated tokens, the end token included).
At max length every top-num_beams candidate counts as finished, which is what the old `finalize` did by adding the
running beams to the hypotheses; after an early stop, running beams are dropped.

Self-check: the port driven by a PyTorch re-implementation of GPT-2 over tests/fixtures/hf/gpt2 reproduces the
beam-4 continuation that transformers 5.17 wrote into generate.json (no end token occurs there).

Cases: random logits tables (seeded; logits depend only on the position and the last token), each chosen as the first
seed that makes the case's point (e.g. beams differ from greedy, the end token is emitted early, the previous
Bert4Sharp decoder answered differently), with every decision separated by at least MARGIN so that float32 vs float64
arithmetic cannot flip it; every case is also run in float32 and float64 and must agree.
"""
import json
import math
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "fixtures", "generation", "beam_search.json")
NEG = -1.0e9          # transformers' "very large negative" score
MARGIN = 1e-3         # every compared pair of real scores differs by more than this


class Margins:
    """Smallest gap between scores whose order decided something."""

    def __init__(self):
        self.min_gap = math.inf

    def sorted_gaps(self, values, upto):
        real = sorted((v for v in values if v > NEG / 2), reverse=True)[: upto + 1]
        for a, b in zip(real, real[1:]):
            self.min_gap = min(self.min_gap, a - b)

    def compare(self, a, b):
        if a > NEG / 2 and b > NEG / 2:
            self.min_gap = min(self.min_gap, abs(a - b))


def log_softmax(row, dtype):
    x = np.asarray(row, dtype=dtype)
    m = x.max()
    return x - (m + np.log(np.exp(x - m).sum(dtype=dtype)))


def beam_search(next_logits, prompt, eos, num_beams, max_new_tokens, length_penalty, early_stopping,
                dtype=np.float32, margins=None, trace=None):
    """The port described in the module docstring. next_logits(sequence) -> logits of the token after it."""
    f = dtype
    P = len(prompt)
    max_length = P + max_new_tokens
    K = 2 * num_beams
    running = [list(prompt) for _ in range(num_beams)]
    running_scores = [f(0.0)] + [f(NEG)] * (num_beams - 1)
    finished = [(f(NEG), None, False)] * num_beams          # (score, tokens, is finished), best first
    improvement_possible = True
    cur_len = P
    while True:
        # a, b: accumulated log-probs of every (beam, token), the top K kept (ties: lower flat index first).
        cands = []
        for b, seq in enumerate(running):
            lp = log_softmax(next_logits(seq), f)
            cands.extend((f(running_scores[b] + lp[t]), b, t) for t in range(len(lp)))
        if margins:
            margins.sorted_gaps([c[0] for c in cands], K)
        order = sorted(range(len(cands)), key=lambda i: (-cands[i][0], i))[:K]
        top = [(cands[i][0], running[cands[i][1]] + [cands[i][2]]) for i in order]
        # c: stopping criteria of each candidate.
        hits = [seq[-1] == eos or len(seq) >= max_length for _, seq in top]
        # d: the next running beams, finished candidates pushed to the bottom.
        masked = [f(s + (NEG if h else 0.0)) for (s, _), h in zip(top, hits)]
        nxt = sorted(range(K), key=lambda k: (-masked[k], k))[:num_beams]
        next_running, next_scores = [top[k][1] for k in nxt], [masked[k] for k in nxt]
        # e: merge eligible finished candidates into the num_beams finished slots.
        full = all(s[2] for s in finished) and early_stopping is True
        merged = list(finished)
        for k, (s, seq) in enumerate(top):
            eligible = hits[k] and k < num_beams
            score = f(s / f((cur_len + 1 - P) ** length_penalty))
            if full:
                score = f(score + NEG)
            if not improvement_possible:
                score = f(score + NEG)
            if not eligible:
                score = f(score + NEG)
            merged.append((score, seq, eligible))
        if margins:
            margins.sorted_gaps([m[0] for m in merged], num_beams)
        finished = [merged[i] for i in sorted(range(len(merged)), key=lambda i: (-merged[i][0], i))[:num_beams]]
        running, running_scores = next_running, next_scores
        cur_len += 1
        # f: can a running beam still beat the worst finished one?
        if improvement_possible:
            best_possible = f(running_scores[0] / f((cur_len - P) ** length_penalty))
            worst = min(s[0] for s in finished)
            if all(s[2] for s in finished) and margins:
                margins.compare(best_possible, worst)
            improvement_possible = any(best_possible > (worst if s[2] else f(NEG)) for s in finished)
        # g: stop?
        if not improvement_possible:
            break
        if early_stopping is True and all(s[2] for s in finished):
            break
        if all(hits):
            break
    if trace is not None:
        trace["finished"] = [(float(sc), seq) for sc, seq, _ in finished]
    return finished[0][1]


def greedy(next_logits, prompt, eos, max_new_tokens):
    seq = list(prompt)
    for _ in range(max_new_tokens):
        t = int(np.argmax(np.asarray(next_logits(seq), dtype=np.float32)))
        seq.append(t)
        if t == eos:
            break
    return seq


def previous_bert4sharp(next_logits, prompt, eos, num_beams, max_new_tokens, length_penalty, early_stopping):
    """What AutoRegressiveDecoder.BeamSearch did before this fix: after the loop (early stop included) the running
    beams were scored and competed with the finished hypotheses; the finished list was unbounded; with
    early_stopping False it never stopped before max length. Used only to pick cases that tell the two apart."""
    P = len(prompt)
    seqs = [list(prompt) for _ in range(num_beams)]
    scores = [0.0] + [NEG] * (num_beams - 1)
    done = []
    for _ in range(max_new_tokens):
        cands = []
        for b, seq in enumerate(seqs):
            lp = log_softmax(next_logits(seq), np.float64)
            cands.extend((scores[b] + lp[t], b, t) for t in range(len(lp)))
        cands.sort(key=lambda c: -c[0])
        nseqs, nscores = [], []
        for rank, (s, b, t) in enumerate(cands[: 2 * num_beams]):
            if len(nseqs) >= num_beams:
                break
            if t == eos:
                if rank >= num_beams:
                    continue
                d = seqs[b] + [t]
                done.append((s / (len(d) - P) ** length_penalty, d))
                continue
            nseqs.append(seqs[b] + [t])
            nscores.append(s)
        seqs, scores = nseqs, nscores
        if early_stopping and len(done) >= num_beams:
            break
    for s, seq in zip(scores, seqs):
        done.append((s / max(1, len(seq) - P) ** length_penalty, seq))
    return max(done, key=lambda d: d[0])[1]


# ---------------------------------------------------------------- self-check against transformers 5.17 (GPT-2)

def gpt2_self_check():
    import torch
    from make_tf_generation_fixtures import read_safetensors

    d = os.path.join(HERE, "..", "fixtures", "hf", "gpt2")
    w = read_safetensors(os.path.join(d, "model.safetensors"))
    cfg = json.load(open(os.path.join(d, "config.json")))
    gen = json.load(open(os.path.join(d, "generate.json")))
    H, heads, eps = cfg["n_embd"], cfg["n_head"], cfg["layer_norm_epsilon"]

    def ln(x, p):
        return torch.nn.functional.layer_norm(x, (H,), w[p + ".weight"], w[p + ".bias"], eps)

    def gelu_new(x):
        return 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))

    def forward(ids):
        T = len(ids)
        x = w["transformer.wte.weight"][ids] + w["transformer.wpe.weight"][:T]
        causal = torch.full((T, T), float("-inf")).triu(1)
        for i in range(cfg["n_layer"]):
            p = f"transformer.h.{i}."
            q, k, v = (ln(x, p + "ln_1") @ w[p + "attn.c_attn.weight"] + w[p + "attn.c_attn.bias"]).split(H, -1)
            q, k, v = (t.view(T, heads, H // heads).transpose(0, 1) for t in (q, k, v))
            a = ((q @ k.transpose(-1, -2)) / math.sqrt(H // heads) + causal).softmax(-1) @ v
            x = x + a.transpose(0, 1).reshape(T, H) @ w[p + "attn.c_proj.weight"] + w[p + "attn.c_proj.bias"]
            h = gelu_new(ln(x, p + "ln_2") @ w[p + "mlp.c_fc.weight"] + w[p + "mlp.c_fc.bias"])
            x = x + h @ w[p + "mlp.c_proj.weight"] + w[p + "mlp.c_proj.bias"]
        return ln(x, "transformer.ln_f") @ w["transformer.wte.weight"].T

    with torch.no_grad():
        out = beam_search(lambda s: forward(s)[-1].numpy(), gen["prompt"], gen["eos_token_id"], 4,
                          gen["max_new_tokens"], gen["length_penalty"], gen["early_stopping"])
    assert out == gen["beam4"], f"the port does not reproduce transformers' beam4 on GPT-2: {out} vs {gen['beam4']}"
    print("self-check: the port reproduces transformers 5.17's GPT-2 beam-4 output")


# ---------------------------------------------------------------- synthetic cases

def table_for(seed, vocab, positions, eos, eos_bias, eos_slope, scale):
    """logits[p][last token] = a vocab-long row; the end token gets a bias growing with the position."""
    rng = np.random.default_rng(seed)
    t = rng.normal(0.0, scale, size=(positions, vocab, vocab))
    if eos is not None:
        t[:, :, eos] += eos_bias + eos_slope * np.arange(positions)[:, None]
    return np.round(t, 3)


def run_case(spec, seed):
    v, prompt, eos, n, max_new = spec["vocab"], spec["prompt"], spec["eos"], spec["beams"], spec["max_new_tokens"]
    lp, es = spec["length_penalty"], spec["early_stopping"]
    table = table_for(seed, v, len(prompt) + max_new - 1, eos, spec["eos_bias"], spec["eos_slope"], spec["scale"])
    nl = lambda s: table[len(s) - 1][s[-1]]
    m, trace = Margins(), {}
    out32 = beam_search(nl, prompt, eos, n, max_new, lp, es, np.float32, m, trace)
    out64 = beam_search(nl, prompt, eos, n, max_new, lp, es, np.float64)
    if out32 != out64 or m.min_gap <= MARGIN:
        return None
    res = {"table": table, "expected": out32, "greedy": greedy(nl, prompt, eos, max_new),
           "previous": previous_bert4sharp(nl, prompt, eos, n, max_new, lp, es), "margin": m.min_gap,
           "finished": trace["finished"]}
    for name, kw in (("other_early_stopping", {"early_stopping": not es}), ("length_penalty_1", {"length_penalty": 1.0})):
        res[name] = beam_search(nl, prompt, eos, n, max_new, kw.get("length_penalty", lp), kw.get("early_stopping", es))
    return res


def ends(seq, eos):
    return eos is not None and seq[-1] == eos


BASE = {"vocab": 10, "prompt": [3, 7], "eos": 1, "beams": 3, "max_new_tokens": 7, "length_penalty": 1.0,
        "early_stopping": True, "eos_bias": -1.0, "eos_slope": 0.5, "scale": 1.5}

CASES = [
    # (name, overrides, what the case must show)
    ("eos_early_beams_differ_from_greedy", {},
     lambda s, r: ends(r["expected"], s["eos"]) and len(r["expected"]) < len(s["prompt"]) + s["max_new_tokens"]
     and r["expected"] != r["greedy"]),
    ("early_stopping_drops_running_beams", {},
     lambda s, r: ends(r["expected"], s["eos"]) and r["previous"] != r["expected"]),
    ("no_early_stopping_searches_on", {"early_stopping": False},
     lambda s, r: r["expected"] != r["other_early_stopping"] and r["expected"] != r["greedy"]),
    ("no_early_stopping_previous_differs", {"early_stopping": False},
     lambda s, r: r["expected"] != r["previous"]),
    ("length_penalty_2_prefers_longer", {"length_penalty": 2.0, "early_stopping": False},
     lambda s, r: r["expected"] != r["length_penalty_1"] and ends(r["expected"], s["eos"])),
    ("length_penalty_0_prefers_shorter", {"length_penalty": 0.0},
     lambda s, r: r["expected"] != r["length_penalty_1"]),
    ("length_penalty_half_four_beams", {"length_penalty": 0.5, "beams": 4, "vocab": 12, "early_stopping": False},
     lambda s, r: r["expected"] != r["length_penalty_1"] and r["expected"] != r["greedy"]),
    ("max_length_without_end_token", {"eos": None},
     lambda s, r: len(r["expected"]) == len(s["prompt"]) + s["max_new_tokens"] and r["expected"] != r["greedy"]),
    ("max_length_running_beam_beats_finished", {"early_stopping": False, "eos_bias": -2.0, "eos_slope": 0.2},
     lambda s, r: not ends(r["expected"], s["eos"]) and len(r["expected"]) == len(s["prompt"]) + s["max_new_tokens"]
     and r["greedy"] != r["expected"] and any(ends(x, s["eos"]) for _, x in r["finished"])),
    ("one_beam_is_greedy", {"beams": 1},
     lambda s, r: ends(r["expected"], s["eos"]) and r["expected"] == r["greedy"]),
    ("end_token_first", {"eos_bias": 2.5, "eos_slope": 0.0, "max_new_tokens": 4},
     lambda s, r: r["expected"] == s["prompt"] + [s["eos"]]),
]


def main():
    sys.path.insert(0, HERE)
    gpt2_self_check()
    cases = []
    for name, overrides, wanted in CASES:
        spec = dict(BASE, **overrides)
        for seed in range(1, 5000):
            r = run_case(spec, seed)
            if r is not None and wanted(spec, r):
                break
        else:
            raise SystemExit(f"no seed makes case {name}")
        print(f"{name}: seed {seed}, expected {r['expected']}, greedy {r['greedy']}, previous {r['previous']}, "
              f"min margin {r['margin']:.2e}; finished " + ", ".join(f"{sc:.3f} {x}" for sc, x in r["finished"]))
        cases.append({
            "name": name, "seed": seed, "vocab": spec["vocab"], "prompt": spec["prompt"], "eos": spec["eos"],
            "beams": spec["beams"], "max_new_tokens": spec["max_new_tokens"],
            "length_penalty": spec["length_penalty"], "early_stopping": spec["early_stopping"],
            "expected": r["expected"], "greedy": r["greedy"], "previous_bert4sharp": r["previous"],
            "logits": r["table"].tolist(),
        })
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    doc = {"made_by": "tests/reference/make_beam_search_refs.py",
           "logits": "logits[p][t]: next-token logits after a sequence whose last token t is at position p (0-based)",
           "cases": cases}
    tmp = OUT + ".tmp"
    with open(tmp, "w") as fh:
        json.dump(doc, fh, separators=(",", ":"))
    os.replace(tmp, OUT)
    print("wrote", os.path.relpath(OUT))


if __name__ == "__main__":
    main()
