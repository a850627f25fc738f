#!/usr/bin/python3
"""Reference CLUE metrics, written independently of the C# ones, following the official scripts' logic.

Run:  /usr/bin/python3 tests/reference/clue_metrics_ref.py [shared/data dir]   (needs python3-nltk for CMRC)

Builds small prediction sets from the real dev data (gold with deliberate perturbations) and writes, under
tests/fixtures/tasks/clue/, the gold, the predictions and the metrics this reference computes:
  accuracy.json  - AFQMC dev labels, some flipped
  cluener.json   - CLUENER dev entities: dropped / extra / shifted / retyped / duplicated spans
  cmrc.json      - CMRC2018 dev questions: exact, partial, longer, punctuation, case, mixed English/Chinese, missing
  segmentation.json - the official mixed segmentation (with NLTK's word tokenizer) of every mixed-script CMRC answer
  duie.json      - DuIE dev triples: dropped / extra / wrong predicate / swapped / duplicated
  duee.json      - DuEE dev events: dropped / moved / extra arguments, events without trigger, duplicates

Definitions:
  CMRC2018  cmrc2018_evaluate.py v5: lower+strip; EM on punctuation-stripped strings; F1 on mixed segmentation (CJK
            U+4E00-U+9FA5 one by one, other runs by nltk.word_tokenize, punctuation list dropped), longest common
            substring, max over answers; both averaged over all gold questions in percent. nltk.word_tokenize also runs
            Punkt sentence splitting first; the Punkt model is not installed here, so the runs go through
            NLTKWordTokenizer directly (its Treebank rules), which is word_tokenize on a single sentence.
  CLUENER   entity (type, start, end) exact match, micro P/R/F1 over per-sentence sets, 0 for 0/0.
  DuIE      GPLinker: per sentence set R (pred) and T (gold) of (s, p, o); X+=|R&T|, Y+=|R|, Z+=|T| from 1e-10.
  DuEE      GPLinker (kexue.fm/archives/8926): arguments (type, role, text, start) without triggers, dedup per sentence;
            events = sorted tuple lists incl. trigger, dedup, predictions without trigger ignored; same X/Y/Z.
"""
import json
import os
import random
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "fixtures", "tasks", "clue")
TRIGGER = "触发词"

# ---------------------------------------------------------------- CMRC2018 (official v5 logic)
PUNCT = ['-', ':', '_', '*', '^', '/', '\\', '~', '`', '+', '=',
         '，', '。', '：', '？', '！', '“', '”', '；', '’', '《', '》', '……', '·', '、',
         '「', '」', '（', '）', '－', '～', '『', '』']


def _words(run):
    from nltk.tokenize import NLTKWordTokenizer
    return NLTKWordTokenizer().tokenize(run)


def mixed_seg(text, drop_punct=False):
    text = str(text).lower().strip()
    out, run = [], ""
    for ch in text:
        if drop_punct and ch in PUNCT:
            continue
        if re.search(r'[\u4e00-\u9fa5]', ch) or ch in PUNCT:
            if run != "":
                out.extend(_words(run))
                run = ""
            out.append(ch)
        else:
            run += ch
    if run != "":
        out.extend(_words(run))
    return out


def strip_punct(text):
    text = str(text).lower().strip()
    return "".join(ch for ch in text if ch not in PUNCT)


def longest_common_substring(a, b):
    table = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    best = 0
    for i in range(len(a)):
        for j in range(len(b)):
            if a[i] == b[j]:
                table[i + 1][j + 1] = table[i][j] + 1
                best = max(best, table[i + 1][j + 1])
    return best


def cmrc_f1(answers, pred):
    scores = []
    for ans in answers:
        g, p = mixed_seg(ans, True), mixed_seg(pred, True)
        n = longest_common_substring(g, p)
        if n == 0:
            scores.append(0.0)
            continue
        prec, rec = n / len(p), n / len(g)
        scores.append(2 * prec * rec / (prec + rec))
    return max(scores)


def cmrc_em(answers, pred):
    return 1.0 if any(strip_punct(a) == strip_punct(pred) for a in answers) else 0.0


def cmrc_eval(gold, preds):
    em = f1 = 0.0
    total = skipped = 0
    for qid, answers in gold:
        total += 1
        if qid not in preds:
            skipped += 1
            continue
        em += cmrc_em(answers, preds[qid])
        f1 += cmrc_f1(answers, preds[qid])
    return {"em": 100.0 * em / total, "f1": 100.0 * f1 / total, "total": total, "unanswered": skipped}


# ---------------------------------------------------------------- extraction metrics
def prf_exact(x, y, z):
    p = x / y if y else 0.0
    r = x / z if z else 0.0
    return {"correct": x, "predicted": y, "gold": z, "precision": p, "recall": r, "f1": 2 * p * r / (p + r) if p + r else 0.0}


def prf_gplinker(x, y, z):
    X, Y, Z = x + 1e-10, y + 1e-10, z + 1e-10
    return {"correct": x, "predicted": y, "gold": z, "precision": X / Y, "recall": X / Z, "f1": 2 * X / (Y + Z)}


def entity_prf(gold, pred):
    x = y = z = 0
    by = {}
    for g, p in zip(gold, pred):
        g, p = set(map(tuple, g)), set(map(tuple, p))
        x += len(g & p); y += len(p); z += len(g)
        for e in p:
            c = by.setdefault(e[0], [0, 0, 0]); c[1] += 1
            if e in g:
                c[0] += 1
        for e in g:
            by.setdefault(e[0], [0, 0, 0])[2] += 1
    return {"overall": prf_exact(x, y, z), "by_type": {t: prf_exact(*c) for t, c in sorted(by.items())}}


def spo_prf(gold, pred):
    x = y = z = 0
    for g, p in zip(gold, pred):
        T, R = set(map(tuple, g)), set(map(tuple, p))
        x += len(R & T); y += len(R); z += len(T)
    return prf_gplinker(x, y, z)


def duee_prf(gold, pred):
    ex = ey = ez = ax = ay = az = 0
    for g, p in zip(gold, pred):
        g = [[tuple(a) for a in e] for e in g]
        p = [[tuple(a) for a in e] for e in p]
        R, T = [], []
        for e in p:
            if any(a[1] == TRIGGER for a in e):
                s = sorted(e)
                if s not in R:
                    R.append(s)
        for e in g:
            s = sorted(e)
            if s not in T:
                T.append(s)
        ex += sum(1 for e in R if e in T); ey += len(R); ez += len(T)
        R, T = [], []
        for e in p:
            for a in e:
                if a[1] != TRIGGER and a not in R:
                    R.append(a)
        for e in g:
            for a in e:
                if a[1] != TRIGGER and a not in T:
                    T.append(a)
        ax += sum(1 for a in R if a in T); ay += len(R); az += len(T)
    return {"event": prf_gplinker(ex, ey, ez), "argument": prf_gplinker(ax, ay, az)}


# ---------------------------------------------------------------- prediction builders (from real dev data)
def jsonl(path, n):
    with open(path, encoding="utf-8") as f:
        return [json.loads(l) for l in f if l.strip()][:n]


def build_accuracy(data, rng):
    gold = [d["label"] for d in jsonl(os.path.join(data, "afqmc/dev.json"), 300)]
    pred = [("1" if g == "0" else "0") if rng.random() < 0.2 else g for g in gold]
    right = sum(a == b for a, b in zip(gold, pred))
    return {"gold": gold, "predicted": pred, "accuracy": right / len(gold)}


def build_cluener(data, rng):
    recs = jsonl(os.path.join(data, "cluener2020/dev.json"), 120)
    types = ["address", "book", "company", "game", "government", "movie", "name", "organization", "position", "scene"]
    gold, pred = [], []
    for i, r in enumerate(recs):
        ents = [[t, s, e] for t, d in r["label"].items() for _, spans in d.items() for s, e in spans]
        p = [list(x) for x in ents]
        k = i % 6
        if k == 1 and p:
            p.pop(rng.randrange(len(p)))                       # dropped
        elif k == 2:
            s = rng.randrange(len(r["text"]) - 2)
            p.append([rng.choice(types), s, s + 1])              # extra
        elif k == 3 and p:
            j = rng.randrange(len(p)); p[j] = [p[j][0], p[j][1] + 1, p[j][2] + 1]   # shifted
        elif k == 4 and p:
            j = rng.randrange(len(p)); p[j] = [rng.choice([t for t in types if t != p[j][0]]), p[j][1], p[j][2]]  # retyped
        elif k == 5 and p:
            p.append(list(p[0]))                                  # duplicate (counts once)
            p[-1][2] = p[-1][2] + (1 if i % 12 == 5 else 0)        # and sometimes a longer span
        gold.append(ents)
        pred.append(p)
    return {"gold": gold, "predicted": pred, "expected": entity_prf(gold, pred)}


def build_cmrc(data, rng):
    with open(os.path.join(data, "cmrc2018/cmrc2018_dev.json"), encoding="utf-8") as f:
        d = json.load(f)
    qs = [(qa["id"].strip(), [a["text"] for a in qa["answers"]]) for art in d["data"] for p in art["paragraphs"] for qa in p["qas"]]
    mixed = [q for q in qs if re.search(r"[A-Za-z0-9]", q[1][0])]
    plain = [q for q in qs if q not in mixed]
    chosen = plain[:70] + mixed[:50]
    preds = {}
    for i, (qid, answers) in enumerate(chosen):
        a = answers[0]
        k = i % 9
        if k == 0:
            preds[qid] = a                                         # exact
        elif k == 1:
            preds[qid] = a[: max(1, len(a) // 2)]                 # partial
        elif k == 2:
            preds[qid] = "约" + a + "左右"                          # longer
        elif k == 3:
            preds[qid] = "《" + a + "》。"                          # punctuation only
        elif k == 4:
            preds[qid] = a.upper() + " "                           # case and space
        elif k == 5:
            preds[qid] = a[1:] + " and more"                      # mixed English tail
        elif k == 6:
            pass                                                   # unanswered
        elif k == 7:
            preds[qid] = answers[-1][::-1]                         # reversed (little overlap)
        else:
            preds[qid] = a.replace(" ", "") + "."                 # spaces removed, final period
    per = {qid: {"em": cmrc_em(ans, preds[qid]), "f1": cmrc_f1(ans, preds[qid])} for qid, ans in chosen if qid in preds}
    return {"gold": [{"id": q, "answers": a} for q, a in chosen], "predictions": preds, "per_question": per,
            "expected": cmrc_eval(chosen, preds)}


def build_segmentation(data, cmrc):
    with open(os.path.join(data, "cmrc2018/cmrc2018_dev.json"), encoding="utf-8") as f:
        d = json.load(f)
    texts = sorted({a["text"] for art in d["data"] for p in art["paragraphs"] for qa in p["qas"] for a in qa["answers"]
                    if re.search(r"[A-Za-z0-9]", a["text"])})
    texts += sorted(set(cmrc["predictions"].values()))
    texts += ["It's 3.5 a,b 1,000 (x) \"q\" 50% can't.", "u.s. army", "3:30", "c++ / c#", "a... b", "…abc", "‘hi’ «x»"]
    return [{"text": t, "tokens": mixed_seg(t, True)} for t in texts]


def build_duie(data, rng):
    recs = jsonl(os.path.join(data, "duie/dev_data.json"), 100)
    preds_all = sorted({s["predicate"] for r in recs for s in r["spo_list"]})
    gold, pred = [], []
    for i, r in enumerate(recs):
        g = [[s["subject"], s["predicate"], s["object"]] for s in r["spo_list"]]
        p = [list(x) for x in g]
        k = i % 6
        if k == 1 and p:
            p.pop()
        elif k == 2:
            p.append([r["text"][:2], rng.choice(preds_all), r["text"][2:4]])
        elif k == 3 and p:
            p[0][1] = rng.choice([x for x in preds_all if x != p[0][1]])
        elif k == 4 and p:
            p[0] = [p[0][2], p[0][1], p[0][0]]
        elif k == 5 and p:
            p.append(list(p[0]))
        gold.append(g)
        pred.append(p)
    return {"gold": gold, "predicted": pred, "expected": spo_prf(gold, pred)}


def build_duee(data, rng):
    recs = jsonl(os.path.join(data, "duee/dev.json"), 100)
    gold, pred = [], []
    for i, r in enumerate(recs):
        g = []
        for e in r["event_list"]:
            ev = [[e["event_type"], TRIGGER, e["trigger"], e["trigger_start_index"]]]
            ev += [[e["event_type"], a["role"], a["argument"], a["argument_start_index"]] for a in e["arguments"]]
            g.append(ev)
        p = [[list(a) for a in ev] for ev in g]
        k = i % 7
        if k == 1 and p and len(p[0]) > 1:
            p[0].pop()                                              # dropped argument
        elif k == 2 and p and len(p[0]) > 1:
            p[0][-1][3] += 1                                        # argument start moved
        elif k == 3 and p:
            p[0] = [a for a in p[0] if a[1] != TRIGGER]            # event without trigger
        elif k == 4 and p:
            p[0].append([p[0][0][0], "时间", r["text"][:2], 0])     # extra argument
        elif k == 5 and p:
            p.append([list(a) for a in p[0]])                       # duplicate event
            p[0] = list(reversed(p[0]))                             # order does not matter
        elif k == 6:
            p = []                                                  # nothing predicted
        gold.append(g)
        pred.append(p)
    return {"gold": gold, "predicted": pred, "expected": duee_prf(gold, pred)}


def main():
    data = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "..", "..", "..", "shared", "data")
    os.makedirs(OUT, exist_ok=True)
    rng = random.Random(20240601)
    out = {
        "accuracy": build_accuracy(data, rng),
        "cluener": build_cluener(data, rng),
        "cmrc": build_cmrc(data, rng),
        "duie": build_duie(data, rng),
        "duee": build_duee(data, rng),
    }
    out["segmentation"] = build_segmentation(data, out["cmrc"])
    for name, obj in out.items():
        with open(os.path.join(OUT, name + ".json"), "w", encoding="utf-8") as f:
            json.dump(obj, f, ensure_ascii=False, separators=(",", ":"))
            f.write("\n")
    for name in ("accuracy", "cluener", "cmrc", "duie", "duee"):
        e = out[name].get("expected", out[name].get("accuracy"))
        print(name, json.dumps(e, ensure_ascii=False)[:300])


if __name__ == "__main__":
    main()
