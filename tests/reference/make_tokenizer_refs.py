#!/usr/bin/python3
"""Reference outputs for Bert4Sharp's tokenisation tests, from implementations Bert4Sharp did not write.

Run with Debian's Python (python3-jieba 0.42.1, python3-sentencepiece): 
    /usr/bin/python3 tests/reference/make_tokenizer_refs.py
Reads the real sentences named in tests/reference/corpus.json from ../shared/data and writes small
outputs under tests/fixtures/tokenization/ (no corpus text is copied):
  bert4keras_*.txt   one line per sentence: 8-hex hashes of the token ids and of the UTF-16 spans that a
                     port of bert4keras's Tokenizer (tokenize + rematch; Python's own unicodedata) gives
  simplified_*.json  bert4keras load_vocab(simplified=True, startswith=[PAD,UNK,CLS,SEP,MASK]) keep_tokens
  jieba_hmm_false.txt  word lengths (code points) of jieba.lcut(s, HMM=False) for the first 3,000 sentences
  sp_unigram.model, sp_bpe.model  SentencePiece models trained here on the corpus
  sp_*.txt           ids of SentencePiece encode for the first 3,000 sentences
The bert4keras port below follows bert4keras/tokenizers.py (Tokenizer._tokenize, _word_piece_tokenize,
rematch) line by line; it is a port, not the package (not installable here).
"""
import hashlib, json, os, sys, unicodedata

import jieba
import sentencepiece as spm

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
SHARED = os.environ.get("B4S_SHARED") or os.path.join(os.path.dirname(REPO), "shared")
OUT = os.path.join(REPO, "tests", "fixtures", "tokenization")
os.makedirs(OUT, exist_ok=True)


def corpus():
    spec = json.load(open(os.path.join(HERE, "corpus.json"), encoding="utf-8"))
    out = []
    for src in spec["sources"]:
        path = os.path.join(SHARED, "data", src["file"])
        record = 0
        with open(path, encoding="utf-8", newline="\n") as f:
            for raw in f:
                line = raw.rstrip("\n").rstrip("\r")
                if not line:
                    continue
                if record >= src["limit"]:
                    break
                record += 1
                if src["format"] == "jsonl":
                    obj = json.loads(line)
                    texts = [obj.get(k) if isinstance(obj.get(k), str) else None for k in src["fields"]]
                elif src["format"] == "tsv":
                    cols = line.split("\t")
                    texts = [cols[c] if c < len(cols) else None for c in src["fields"]]
                else:
                    texts = [line]
                out.extend(t for t in texts if t)
    return out


# ---- a port of bert4keras.tokenizers.Tokenizer ------------------------------------------------------
def load_vocab(path):
    d = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            tok = line.split()
            tok = tok[0] if tok else line.strip()
            d[tok] = len(d)
    return d


def is_punct(ch):
    c = ord(ch)
    return 33 <= c <= 47 or 58 <= c <= 64 or 91 <= c <= 96 or 123 <= c <= 126 or unicodedata.category(ch).startswith("P")


def is_cjk(ch):
    c = ord(ch)
    return (0x4E00 <= c <= 0x9FFF or 0x3400 <= c <= 0x4DBF or 0x20000 <= c <= 0x2A6DF or 0x2A700 <= c <= 0x2B73F
            or 0x2B740 <= c <= 0x2B81F or 0x2B820 <= c <= 0x2CEAF or 0xF900 <= c <= 0xFAFF or 0x2F800 <= c <= 0x2FA1F)


def is_space(ch):
    return ch in " \n\r\t" or unicodedata.category(ch) == "Zs"


def is_control(ch):
    return unicodedata.category(ch) in ("Cc", "Cf")


class B4kTokenizer:
    def __init__(self, vocab, lower):
        self.vocab, self.lower = vocab, lower

    def _tokenize(self, text):
        if self.lower:
            text = text.lower()
            text = unicodedata.normalize("NFD", text)
            text = "".join(ch for ch in text if unicodedata.category(ch) != "Mn")
        spaced = ""
        for ch in text:
            if is_punct(ch) or is_cjk(ch):
                spaced += " " + ch + " "
            elif is_space(ch):
                spaced += " "
            elif ord(ch) == 0 or ord(ch) == 0xFFFD or is_control(ch):
                continue
            else:
                spaced += ch
        tokens = []
        for word in spaced.strip().split():
            tokens.extend(self._wordpiece(word))
        return tokens

    def _wordpiece(self, word):
        if len(word) > 200:
            return [word]
        tokens, start = [], 0
        while start < len(word):
            end = len(word)
            while end > start:
                sub = word[start:end]
                if start > 0:
                    sub = "##" + sub
                if sub in self.vocab:
                    break
                end -= 1
            if start == end:
                return [word]
            tokens.append(sub)
            start = end
        return tokens

    def tokenize(self, text):
        return ["[CLS]"] + self._tokenize(text) + ["[SEP]"]

    def ids(self, tokens):
        return [self.vocab.get(t, self.vocab["[UNK]"]) for t in tokens]

    def rematch(self, text, tokens):
        if self.lower:
            text = text.lower()
        norm, mapping = "", []
        for i, ch in enumerate(text):
            if self.lower:
                ch = unicodedata.normalize("NFD", ch)
                ch = "".join(c for c in ch if unicodedata.category(c) != "Mn")
            ch = "".join(c for c in ch if not (ord(c) == 0 or ord(c) == 0xFFFD or is_control(c)))
            norm += ch
            mapping.extend([i] * len(ch))
        out, offset = [], 0
        for tok in tokens:
            if tok and tok[0] == "[" and tok[-1] == "]":
                out.append([])
                continue
            tok = tok[2:] if tok[:2] == "##" else tok
            start = norm[offset:].index(tok) + offset
            end = start + len(tok)
            out.append(mapping[start:end])
            offset = end
        return out


def utf16_offsets(text):
    pos, table = 0, []
    for ch in text:
        table.append(pos)
        pos += 2 if ord(ch) > 0xFFFF else 1
    table.append(pos)
    return table


def h8(values):
    return hashlib.sha1(",".join(map(str, values)).encode()).hexdigest()[:8]


def bert4keras_refs(sentences, vocab_rel, lower, name):
    vocab = load_vocab(os.path.join(SHARED, "models", vocab_rel))
    tk = B4kTokenizer(vocab, lower)
    lines = []
    for s in sentences:
        toks = tk.tokenize(s)
        ids = tk.ids(toks)
        u16 = utf16_offsets(s)
        spans = []
        for m in tk.rematch(s, toks):
            spans.extend([u16[m[0]], u16[m[-1] + 1]] if m else [0, 0])
        lines.append(h8(ids) + " " + h8(spans))
    with open(os.path.join(OUT, name), "w") as f:
        f.write("\n".join(lines) + "\n")
    print(name, len(lines))


def simplified(vocab_rel, name):
    vocab = load_vocab(os.path.join(SHARED, "models", vocab_rel))
    new, keep = {}, []
    for t in ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]:
        new[t] = len(new)
        keep.append(vocab[t])
    for t, _ in sorted(vocab.items(), key=lambda s: s[1]):
        if t not in new:
            ok = True
            if len(t) > 1:
                for c in (t[2:] if t[:2] == "##" else t):
                    if is_cjk(c) or is_punct(c):
                        ok = False
                        break
            if ok:
                new[t] = len(new)
                keep.append(vocab[t])
    json.dump({"count": len(keep), "keep_tokens": keep}, open(os.path.join(OUT, name), "w"))
    print(name, len(keep))


def main():
    sentences = corpus()
    print("corpus", len(sentences))
    bert4keras_refs(sentences, "albert_tiny_zh_google/vocab.txt", True, "bert4keras_albert_lower.txt")
    bert4keras_refs(sentences, "albert_tiny_zh_google/vocab.txt", False, "bert4keras_albert_cased.txt")
    bert4keras_refs(sentences, "roformer_v2_char_small/vocab.txt", True, "bert4keras_roformer_lower.txt")
    simplified("albert_tiny_zh_google/vocab.txt", "simplified_albert.json")
    simplified("roformer_v2_char_small/vocab.txt", "simplified_roformer.json")

    jieba.setLogLevel(60)
    first = sentences[:3000]
    with open(os.path.join(OUT, "jieba_hmm_false.txt"), "w") as f:
        for s in first:
            f.write(" ".join(str(len(w)) for w in jieba.lcut(s, HMM=False)) + "\n")
    with open(os.path.join(OUT, "jieba_hmm_true.txt"), "w") as f:
        for s in first:
            f.write(" ".join(str(len(w)) for w in jieba.lcut(s, HMM=True)) + "\n")
    print("jieba", len(first))

    train_txt = "/tmp/b4s_sp_train.txt"
    with open(train_txt, "w", encoding="utf-8") as f:
        f.write("\n".join(sentences[:12000]) + "\n")
    for kind in ("unigram", "bpe"):
        prefix = os.path.join(OUT, "sp_" + kind)
        spm.SentencePieceTrainer.train(input=train_txt, model_prefix=prefix, vocab_size=8000, model_type=kind,
                                       character_coverage=0.9995, seed_sentencepiece_size=100000, num_threads=2,
                                       minloglevel=2)
        os.remove(prefix + ".vocab")
        sp = spm.SentencePieceProcessor(model_file=prefix + ".model")
        with open(os.path.join(OUT, "sp_%s_ids.txt" % kind), "w") as f:
            for s in first:
                f.write(" ".join(map(str, sp.encode(s))) + "\n")
        print("sentencepiece", kind, sp.get_piece_size())


if __name__ == "__main__":
    main()
