#!/usr/bin/python3
"""References for Bert4Sharp.Tasks.ConditionalRandomField (tests/Bert4Sharp.Tests/Tasks/ConditionalRandomFieldTests.cs).

Two independent oracles, both float64:

1. Brute force: every label path of every small random case (T <= 5, L <= 4) is enumerated, so log Z (logsumexp of
   all path scores), the NLL of the gold path (log Z - gold score) and the argmax path come straight from the
   definition. A path's score is
       start[y_0] + sum_t emissions[t, y_t] + sum_t (trans + allowed)[y_{t-1}, y_t] + end[y_{n-1}]
   over the n real (mask = 1) steps, where start/end/allowed are 0 for allowed and DISALLOWED (-1e4) for disallowed
   starts, ends and transitions (an "-inf-like" score that keeps gradients finite).

2. A port of bert4keras's ConditionalRandomField loss (target score over one-hot labels, log-normaliser by the
   forward recursion with logsumexp and masked steps carrying the previous state) and of its ViterbiDecoder
   (snippets.py) to PyTorch 1.13, written from their semantics. bert4keras applies start/end constraints only when
   decoding; here the same start/end/transition scores are also added in the loss (the extension the C# module makes).
   The port is checked against the brute force on every small case here, then used for a larger case
   (B=3, T=20, L=9, BIO constraints) whose NLL, gradients (torch autograd, wrt emissions and transitions) and
   Viterbi paths are saved.

Run with Debian's python3-torch: /usr/bin/python3 tests/reference/make_crf_refs.py
Writes tests/fixtures/tasks/crf/crf_refs.json.
"""
import itertools
import json
import os

import numpy as np
import torch

DISALLOWED = -1e4
torch.set_default_dtype(torch.float64)
rng = np.random.default_rng(20261130)


def penalties(L, starts, ends, allowed):
    s = np.zeros(L)
    e = np.zeros(L)
    a = np.zeros((L, L))
    if starts is not None:
        s[[i for i in range(L) if i not in starts]] = DISALLOWED
    if ends is not None:
        e[[i for i in range(L) if i not in ends]] = DISALLOWED
    if allowed is not None:
        a[~np.array(allowed, dtype=bool)] = DISALLOWED
    return s, e, a


def path_score(em, trans, s, e, a, path):
    total = s[path[0]] + e[path[-1]]
    for t, y in enumerate(path):
        total += em[t, y]
        if t > 0:
            total += trans[path[t - 1], y] + a[path[t - 1], y]
    return total


def brute_force(em, trans, n, tags, s, e, a):
    """em (T, L) float64; n real steps. Returns log Z, NLL of tags[:n], argmax path."""
    L = em.shape[1]
    scores = {}
    for path in itertools.product(range(L), repeat=n):
        scores[path] = path_score(em, trans, s, e, a, path)
    values = np.array(list(scores.values()))
    m = values.max()
    log_z = m + np.log(np.exp(values - m).sum())
    gold = path_score(em, trans, s, e, a, tuple(tags[:n]))
    best = max(scores, key=scores.get)
    return float(log_z), float(log_z - gold), list(best)


class Bert4kerasCrfPort:
    """bert4keras ConditionalRandomField.dense_loss + ViterbiDecoder.decode, in torch (plus start/end/allowed scores)."""

    def __init__(self, trans, s, e, a):
        self.trans = trans  # effective transitions (lr_multiplier already applied), a tensor (may require grad)
        self.s, self.e, self.a = torch.tensor(s), torch.tensor(e), torch.tensor(a)

    def loss(self, y_pred, tags, mask):
        L = y_pred.shape[-1]
        trans = self.trans + self.a
        m = mask[:, :, None]  # (B, T, 1)
        y_true = torch.nn.functional.one_hot(torch.where(mask > 0, tags, torch.zeros_like(tags)), L).to(y_pred.dtype) * m
        y_pred = y_pred * m
        # target score: per-label scores + transition scores (one-hots of padding are zero, so they add nothing)
        point = torch.einsum('bni,bni->b', y_true, y_pred)
        trans_score = torch.einsum('bni,ij,bnj->b', y_true[:, :-1], trans, y_true[:, 1:])
        lengths = mask.sum(1).long()
        last = y_true[torch.arange(len(lengths)), lengths - 1]  # one-hot of the last real label
        target = point + trans_score + y_true[:, 0] @ self.s + last @ self.e
        # log Z: forward recursion, masked steps carry the previous state
        state = y_pred[:, 0] + self.s
        for t in range(1, y_pred.shape[1]):
            out = torch.logsumexp(state[:, :, None] + trans[None], 1) + y_pred[:, t]
            state = m[:, t] * out + (1 - m[:, t]) * state
        log_z = torch.logsumexp(state + self.e, 1)
        return log_z - target, log_z

    def decode(self, nodes):
        """nodes (n, L) numpy for one sequence's real steps; the best path as a list."""
        trans = (self.trans + self.a).detach().numpy()
        nodes = nodes.copy()
        nodes[0] += self.s.numpy()
        nodes[-1] += self.e.numpy()
        L = len(trans)
        labels = np.arange(L).reshape((1, -1))
        scores = nodes[0].reshape((-1, 1))
        paths = labels
        for t in range(1, len(nodes)):
            M = scores + trans + nodes[t].reshape((1, -1))
            idxs = M.argmax(0)
            scores = M.max(0).reshape((-1, 1))
            paths = np.concatenate([paths[:, idxs], labels], 0)
        return [int(x) for x in paths[:, scores[:, 0].argmax()]]


def random_case(k):
    L = int(rng.integers(2, 5))
    T = int(rng.integers(1, 6))
    B = int(rng.integers(1, 4))
    lengths = [int(rng.integers(1, T + 1)) for _ in range(B)]
    if k % 3 == 0:
        lengths[0] = T
    em = rng.normal(0, 1.5, (B, T, L))
    trans = rng.normal(0, 1.0, (L, L))
    starts = sorted(rng.choice(L, int(rng.integers(1, L + 1)), replace=False).tolist()) if k % 2 == 0 else None
    ends = sorted(rng.choice(L, int(rng.integers(1, L + 1)), replace=False).tolist()) if k % 4 in (0, 1) else None
    allowed = None
    if k % 3 != 2:
        allowed = (rng.random((L, L)) > 0.25)
        allowed[:, 0] = True  # label 0 may follow any label, so some path stays allowed between the ends
        allowed = allowed.tolist()
    tags = rng.integers(0, L, (B, T))
    for b in range(B):
        tags[b, lengths[b]:] = -1  # padding: ignored
    return dict(labels=L, time=T, batch=B, lengths=lengths, emissions=em, trans=trans, starts=starts, ends=ends,
                allowed=allowed, tags=tags)


def mask_of(lengths, T):
    return torch.tensor([[1.0 if t < n else 0.0 for t in range(T)] for n in lengths])


def check_case(c):
    s, e, a = penalties(c['labels'], c['starts'], c['ends'], c['allowed'])
    out = dict(labels=c['labels'], time=c['time'], batch=c['batch'], lengths=c['lengths'],
               emissions=c['emissions'].reshape(-1).tolist(), trans=c['trans'].reshape(-1).tolist(),
               starts=c['starts'], ends=c['ends'],
               allowed=None if c['allowed'] is None else [int(x) for row in c['allowed'] for x in row],
               tags=c['tags'].reshape(-1).tolist(), log_z=[], nll=[], paths=[])
    for b in range(c['batch']):
        log_z, nll, path = brute_force(c['emissions'][b], c['trans'], c['lengths'][b], c['tags'][b], s, e, a)
        out['log_z'].append(log_z)
        out['nll'].append(nll)
        out['paths'].append(path)
    port = Bert4kerasCrfPort(torch.tensor(c['trans']), s, e, a)
    nll, log_z = port.loss(torch.tensor(c['emissions']), torch.tensor(c['tags']), mask_of(c['lengths'], c['time']))
    assert np.allclose(log_z.numpy(), out['log_z'], atol=1e-9, rtol=1e-12), (log_z, out['log_z'])
    assert np.allclose(nll.numpy(), out['nll'], atol=1e-9, rtol=1e-12), (nll, out['nll'])
    for b in range(c['batch']):
        assert port.decode(c['emissions'][b, :c['lengths'][b]]) == out['paths'][b]
    return out


def large_case():
    types = 4
    L = 1 + 2 * types  # O, then B-k = 1 + 2k, I-k = 2 + 2k (bert4keras NER example layout)
    B, T = 3, 20
    lengths = [20, 13, 1]
    allowed = np.ones((L, L), dtype=bool)
    for k in range(types):
        inside = 2 + 2 * k
        allowed[:, inside] = False
        allowed[1 + 2 * k, inside] = True
        allowed[inside, inside] = True
    starts = [i for i in range(L) if i == 0 or i % 2 == 1]
    ends = None
    em = rng.normal(0, 2.0, (B, T, L))
    trans0 = rng.uniform(-np.sqrt(6 / (2 * L)), np.sqrt(6 / (2 * L)), (L, L))  # glorot_uniform
    tags = np.zeros((B, T), dtype=np.int64)
    s, e, a = penalties(L, starts, ends, allowed.tolist())
    for b in range(B):
        # gold: a valid BIO path
        t = 0
        while t < lengths[b]:
            if rng.random() < 0.4:
                k = int(rng.integers(0, types))
                span = int(rng.integers(1, 4))
                tags[b, t] = 1 + 2 * k
                for u in range(t + 1, min(t + span, lengths[b])):
                    tags[b, u] = 2 + 2 * k
                t += span
            else:
                t += 1
        tags[b, lengths[b]:] = -1
    em_t = torch.tensor(em, requires_grad=True)
    trans_t = torch.tensor(trans0, requires_grad=True)
    port = Bert4kerasCrfPort(trans_t, s, e, a)
    nll, log_z = port.loss(em_t, torch.tensor(tags), mask_of(lengths, T))
    nll.sum().backward()
    paths = [port.decode(em[b, :lengths[b]]) for b in range(B)]
    return dict(labels=L, time=T, batch=B, lengths=lengths, emissions=em.reshape(-1).tolist(),
                trans=trans0.reshape(-1).tolist(), starts=starts, ends=ends,
                allowed=[int(x) for x in allowed.reshape(-1)], tags=tags.reshape(-1).tolist(),
                log_z=log_z.detach().tolist(), nll=nll.detach().tolist(), paths=paths,
                grad_emissions=em_t.grad.reshape(-1).tolist(), grad_trans=trans_t.grad.reshape(-1).tolist())


def main():
    small = [check_case(random_case(k)) for k in range(36)]
    big = large_case()
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'fixtures', 'tasks', 'crf')
    os.makedirs(root, exist_ok=True)
    path = os.path.join(root, 'crf_refs.json')
    with open(path, 'w') as f:
        json.dump(dict(disallowed=DISALLOWED, small=small, large=big), f)
    print(f'{len(small)} brute-force cases checked against the port; large case nll {big["nll"]}; wrote {os.path.relpath(path)} '
          f'({os.path.getsize(path)} bytes)')


if __name__ == '__main__':
    main()
