#!/usr/bin/python3
"""A t5.1.1 fixture with a genuinely separate output head (lm_head ≠ the embedding).

Run with Debian's python3-torch: /usr/bin/python3 tests/reference/make_t5_untied_head_fixtures.py
Reads tests/fixtures/hf/t5_v1_1 (a random-init T5ForConditionalGeneration saved by transformers 5.17; its head is
tied to `shared.weight` without rescaling, scale_decoder_outputs=false) and writes:
  tests/fixtures/hf/t5_v1_1_untied/config.json         the same config with tie_word_embeddings=false
  tests/fixtures/hf/t5_v1_1_untied/config_v4.json      as transformers 4.x wrote untied t5.1.1 configs: no
                                                       scale_decoder_outputs (the loader must infer "no rescale")
  tests/fixtures/hf/t5_v1_1_untied/model.safetensors   the same weights plus a random lm_head.weight [vocab, d_model]
  tests/fixtures/hf/t5_v1_1_untied/io.safetensors      input_ids, attention_mask, decoder_input_ids, the final
                                                       decoder state and logits = state @ lm_head.T
  tests/fixtures/tf/t5_v1_1_untied/model.ckpt.*        the same model under bert4keras's t5.1.1 names, the head as
                                                       decoder/logits/kernel [d_model, vocab] (make_tf_generation_fixtures)
Why the logits are h @ lm_head.T: transformers' decoder_hidden_states[-1] is the decoder output after the final
RMS norm (T5Stack appends it after final_layer_norm), and an untied t5.1.1 head is applied to it with no
d_model^-1/2 rescale (the rescale belongs to tied t5.1.0). The script checks that premise on the original fixture
first: decoder_hidden_states.2 @ shared.weight.T must reproduce its stored logits.
"""
import json
import os
import struct
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from make_checkpoint_goldens import write_safetensors, write_tf_bundle  # noqa: E402
from make_tf_generation_fixtures import t5_names  # noqa: E402

FIX = os.path.join(HERE, "..", "fixtures")
SRC = os.path.join(FIX, "hf", "t5_v1_1")
OUT_HF = os.path.join(FIX, "hf", "t5_v1_1_untied")
OUT_TF = os.path.join(FIX, "tf", "t5_v1_1_untied")
DTYPES = {"F32": torch.float32, "I64": torch.int64}


def read_safetensors(path):
    with open(path, "rb") as f:
        raw = f.read()
    n = struct.unpack("<Q", raw[:8])[0]
    out = {}
    for name, info in json.loads(raw[8:8 + n]).items():
        if name == "__metadata__":
            continue
        a, b = info["data_offsets"]
        out[name] = torch.frombuffer(bytearray(raw[8 + n + a:8 + n + b]), dtype=DTYPES[info["dtype"]]).reshape(info["shape"]).clone()
    return out


def main():
    config = json.load(open(os.path.join(SRC, "config.json")))
    weights = read_safetensors(os.path.join(SRC, "model.safetensors"))
    io = read_safetensors(os.path.join(SRC, "io.safetensors"))
    assert "lm_head.weight" not in weights and config["tie_word_embeddings"] and not config["scale_decoder_outputs"]
    h = io["decoder_hidden_states.2"]                                  # (2, 5, d_model), after the final norm
    tied = h @ weights["shared.weight"].T
    err = (tied - io["logits"]).abs().max().item()
    assert err <= 1e-5 * io["logits"].abs().max().item(), f"premise: the tied logits are h @ E.T (max |diff| {err:.2e})"
    print(f"premise holds: decoder_hidden_states.2 @ shared.T reproduces transformers' logits (max |diff| {err:.2e})")

    g = torch.Generator().manual_seed(20261130)
    d_model, vocab = config["d_model"], config["vocab_size"]
    head = torch.randn(vocab, d_model, generator=g) * d_model ** -0.5  # T5's N(0, d_model^-1/2) scale, unrelated to E
    logits = h @ head.T                                                 # float32, as transformers would compute it
    print(f"lm_head: max |head - E| {(head - weights['shared.weight']).abs().max():.2f}; "
          f"logits max |value| {logits.abs().max():.2f}, vs tied logits max |diff| {(logits - tied).abs().max():.2f}")

    os.makedirs(OUT_HF, exist_ok=True)
    config = dict(config, tie_word_embeddings=False)
    with open(os.path.join(OUT_HF, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
        f.write("\n")
    write_safetensors(os.path.join(OUT_HF, "model.safetensors"), dict(weights, **{"lm_head.weight": head}))
    write_safetensors(os.path.join(OUT_HF, "io.safetensors"), {
        "input_ids": io["input_ids"], "attention_mask": io["attention_mask"], "decoder_input_ids": io["decoder_input_ids"],
        "decoder_hidden_states.2": h, "logits": logits})
    v4 = {k: v for k, v in config.items() if k != "scale_decoder_outputs"}
    with open(os.path.join(OUT_HF, "config_v4.json"), "w") as f:
        json.dump(dict(v4, transformers_version="4.46.0"), f, indent=2)
        f.write("\n")

    tf = t5_names(dict(weights, **{"lm_head.weight": head}), mt5=False)
    assert torch.equal(tf["decoder/logits/kernel"], head.T)
    os.makedirs(OUT_TF, exist_ok=True)
    write_tf_bundle(os.path.join(OUT_TF, "model.ckpt"), tf)
    print("wrote", os.path.relpath(OUT_HF), "and", os.path.relpath(OUT_TF))


if __name__ == "__main__":
    main()
