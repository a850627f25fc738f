"""Reference decoding of GPLinker (Su, kexue.fm/archives/8888 relations, 8926 events), written from the posts'
description, on small hand-built score arrays. Writes tests/fixtures/tasks/gplinker/decoding.json, read by
tests/Bert4Sharp.Tests/Tasks/GpLinkerTests.cs.

Conventions (as the C# decoders): scores of one text, row-major float32; `length` real tokens including [CLS] at 0
and [SEP] at length - 1; rows/columns 0, length - 1 and every padding position are excluded (set to -inf) first.

Relations: entity (2, T, T) (0 subject, 1 object), head (P, T, T), tail (P, T, T). A triple (s, p, o) is kept when
entity[0, s] > th, entity[1, o] > th, head[p, s.start, o.start] > th and tail[p, s.end, o.end] > th.

Events: argument (L, T, T) with L labels = (event type, role) sorted; head (1, T, T), tail (1, T, T) links between
two arguments at (min start, max start) / (min end, max end). Arguments are grouped by event type; each group is split
into complete subgraphs of the link graph (the clique search of the post: take every non-linked pair, recurse on each
side's neighbourhood, deduplicate); events without a trigger are dropped. One deliberate difference from the post's
example code: a node is not its own neighbour (there, two arguments on the same span make the self-link (h, t, h, t)
true and the host then appears twice in its neighbourhood, so events hold duplicates).

Run with /usr/bin/python3 (numpy only).
"""
import json
import os
from itertools import groupby

import numpy as np

OUT = os.path.join(os.path.dirname(__file__), '..', 'fixtures', 'tasks', 'gplinker', 'decoding.json')


def blank(shape, value=-5.0):
    return np.full(shape, value, dtype=np.float32)


def exclude_edges(x, length):
    x = x.copy()
    x[:, [0, length - 1]] = -np.inf
    x[:, :, [0, length - 1]] = -np.inf
    x[:, length:] = -np.inf
    x[:, :, length:] = -np.inf
    return x


def decode_relations(entity, head, tail, length, th=0.0):
    entity = exclude_edges(entity, length)
    subjects, objects = [], []
    for l, h, t in zip(*np.where(entity > th)):
        (subjects if l == 0 else objects).append((int(h), int(t)))
    triples = set()
    for sh, st in subjects:
        for oh, ot in objects:
            ps = set(np.where(head[:, sh, oh] > th)[0]) & set(np.where(tail[:, st, ot] > th)[0])
            for p in ps:
                triples.add((sh, st, int(p), oh, ot))
    return sorted(triples)


class DedupList(list):
    def append(self, x):
        if x not in self:
            super().append(x)


def neighbourhood(host, argus, links):
    out = [host]
    for a in argus:
        if a != host and host[1:] + a[1:] in links:
            out.append(a)
    return sorted(out)


def cliques(argus, links):
    pending = DedupList()
    for i1, a1 in enumerate(argus):
        for i2, a2 in enumerate(argus):
            if i2 > i1 and a1[1:] + a2[1:] not in links:
                pending.append(neighbourhood(a1, argus, links))
                pending.append(neighbourhood(a2, argus, links))
    if not pending:
        return [sorted(argus)]
    found = DedupList()
    for sub in pending:
        for c in cliques(sub, links):
            found.append(c)
    return found


def decode_events(argument, head, tail, length, label_type, label_trigger, th=0.0):
    argument = exclude_edges(argument, length)
    argus = sorted({(int(l), int(h), int(t)) for l, h, t in zip(*np.where(argument > th))})
    links = set()
    for i1, (_, h1, t1) in enumerate(argus):
        for i2, (_, h2, t2) in enumerate(argus):
            if i2 > i1 and head[0, min(h1, h2), max(h1, h2)] > th and tail[0, min(t1, t2), max(t1, t2)] > th:
                links.add((h1, t1, h2, t2))
                links.add((h2, t2, h1, t1))
    events = []
    for _, group in groupby(argus, key=lambda a: label_type[a[0]]):
        for event in cliques(list(group), links):
            if any(label_trigger[a[0]] for a in event):
                events.append([list(a) for a in event])
    return events


def flat(x):
    return [float(v) if np.isfinite(v) else (-1e30 if v < 0 else 1e30) for v in x.reshape(-1)]


def relation_cases():
    cases = []
    # Hand-built: T = 10, P = 3, length 9 ([SEP] at 8, padding at 9).
    T, P, n = 10, 3, 9
    e, h, t = blank((2, T, T)), blank((P, T, T)), blank((P, T, T))
    for s in [(1, 2), (4, 4)]: e[0][s] = 2.0
    for o in [(3, 3), (5, 6), (1, 2)]: e[1][o] = 1.5        # (1, 2) is both a subject and an object
    e[0, 0, 2] = 3.0; e[1, 3, 8] = 3.0; e[1, 9, 9] = 3.0       # on [CLS], [SEP] and padding: never entities
    h[0, 1, 3] = 1.0; t[0, 2, 3] = 1.0                          # (S12, p0, O33)
    h[1, 1, 5] = 1.0; t[1, 2, 6] = 1.0                          # (S12, p1, O56)
    h[1, 4, 5] = 1.0; t[1, 4, 6] = 1.0                          # (S44, p1, O56): object shared
    h[2, 4, 1] = 1.0; t[2, 4, 2] = 1.0                          # (S44, p2, O12): the subject span as object
    h[0, 4, 3] = 1.0; t[0, 4, 3] = -0.5                         # head link without tail link: no triple
    t[2, 2, 6] = 1.0                                            # tail link without head link: no triple
    h[0, 1, 1] = 1.0; t[0, 2, 2] = 1.0                          # (S12, p0, O12): the same span on both sides
    cases.append(dict(name='hand-built', T=T, P=P, length=n, entity=flat(e), head=flat(h), tail=flat(t),
                      triples=decode_relations(e, h, t, n)))
    rng = np.random.RandomState(7)
    T, P, n = 7, 2, 6
    e = (rng.randn(2, T, T) - 1.0).astype(np.float32)
    h = rng.randn(P, T, T).astype(np.float32)
    t = rng.randn(P, T, T).astype(np.float32)
    cases.append(dict(name='random', T=T, P=P, length=n, entity=flat(e), head=flat(h), tail=flat(t),
                      triples=decode_relations(e, h, t, n)))
    return cases


def event_cases():
    cases = []
    # labels sorted by (event type, role): A/r1, A/r2, A/trigger, B/r1, B/trigger
    label_type = [0, 0, 0, 1, 1]
    label_trigger = [False, False, True, False, True]
    T, L, n = 12, 5, 11
    a, h, t = blank((L, T, T)), blank((1, T, T)), blank((1, T, T))
    A_r1, A_r2, A_tr, B_r1, B_tr = range(5)
    args = {'T1': (A_tr, 1, 1), 'T2': (A_tr, 5, 5), 'R1': (A_r1, 3, 4), 'X': (A_r2, 2, 2), 'Y': (A_r2, 6, 7),
            'BT': (B_tr, 8, 9), 'BR': (B_r1, 2, 2), 'BZ': (B_r1, 6, 7)}
    for l, s, e_ in args.values(): a[l, s, e_] = 1.0
    a[A_r1, 0, 1] = 2.0; a[A_tr, 9, 10] = 2.0                  # touch [CLS] / [SEP]: never arguments

    def link(x, y):
        (_, h1, t1), (_, h2, t2) = args[x], args[y]
        h[0, min(h1, h2), max(h1, h2)] = 1.0
        t[0, min(t1, t2), max(t1, t2)] = 1.0
    for x, y in [('T1', 'R1'), ('T1', 'X'), ('R1', 'X'), ('T2', 'R1'), ('T2', 'Y'), ('R1', 'Y'), ('BT', 'BR')]:
        link(x, y)
    # Y and BZ share the span (6, 7): BZ (type B) is only linked to nothing of its type, and is a lone event
    # without a trigger (dropped); BR is linked to BT (kept).
    cases.append(dict(name='shared-argument', T=T, L=L, length=n, labelType=label_type, labelTrigger=label_trigger,
                      argument=flat(a), head=flat(h), tail=flat(t),
                      events=decode_events(a, h, t, n, label_type, label_trigger)))
    rng = np.random.RandomState(11)
    T, L, n = 7, 5, 7
    a = (rng.randn(L, T, T) - 1.2).astype(np.float32)
    h = rng.randn(1, T, T).astype(np.float32)
    t = rng.randn(1, T, T).astype(np.float32)
    cases.append(dict(name='random', T=T, L=L, length=n, labelType=label_type, labelTrigger=label_trigger,
                      argument=flat(a), head=flat(h), tail=flat(t),
                      events=decode_events(a, h, t, n, label_type, label_trigger)))
    return cases


if __name__ == '__main__':
    out = dict(relations=relation_cases(), events=event_cases())
    for c in out['relations']: print('relations', c['name'], c['triples'])
    for c in out['events']: print('events', c['name'], c['events'])
    with open(OUT, 'w') as f:
        json.dump(out, f)
