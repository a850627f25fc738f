#!/usr/bin/python3
"""TensorFlow (bert4keras-era) checkpoints of the Hugging Face generation fixtures.

Run with Debian's python3-torch: /usr/bin/python3 tests/reference/make_tf_generation_fixtures.py
Reads tests/fixtures/hf/{gpt2,t5_v1_0,t5_v1_1,mt5}/model.safetensors (random-init transformers 5.17
models, see make_hf_fixtures.py) and writes the same weights under the names bert4keras loads
(bert4keras/models.py, GPT2.variable_mapping and T5_Base.variable_mapping) to
tests/fixtures/tf/<name>/model.ckpt.{index,data-00000-of-00001}, with the TensorFlow layouts:
  - dense kernels [in, out] (GPT-2's Conv1D weights already are; T5's q/k/v/o, wi, wo, logits are
    transposed from PyTorch's [out, in]);
  - GPT-2's fused c_attn split into query/key/value;
  - T5's relative_attention_bias as [heads, buckets] (bert4keras transposes it on load);
  - mT5 (mt5.1.1) spells every layer_norm as rms_norm and the final norms encoder/rms_norm/scale;
  - t5.1.1 and mT5 get decoder/logits/kernel, as bert4keras expects for them: these HF fixtures tie the head
    to the embedding without scaling, so the separate head is the embedding, transposed.
Each bundle also holds an Adam slot (…/adam_m, …/adam_v) and global_step, as training checkpoints do.
The C# tests load these and must reproduce the logits in tests/fixtures/hf/<name>/io.safetensors.
"""
import json, os, re, struct, sys
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_checkpoint_goldens import write_tf_bundle  # noqa: E402

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures")


def read_safetensors(path):
    with open(path, "rb") as f:
        raw = f.read()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        assert info["dtype"] == "F32", (path, name, info["dtype"])
        a, b = info["data_offsets"]
        buf = bytearray(raw[8 + n + a:8 + n + b])
        out[name] = torch.frombuffer(buf, dtype=torch.float32).reshape(info["shape"]).clone()
    return out


def gpt2_names(hf):
    """GPT2.variable_mapping: BERT's names with bert/ -> gpt/, encoder -> transformer, output/LayerNorm -> input/LayerNorm."""
    tf = {}
    for name, t in hf.items():
        m = re.fullmatch(r"transformer\.h\.(\d+)\.(.+)", name)
        if name == "transformer.wte.weight":
            tf["gpt/embeddings/word_embeddings"] = t
        elif name == "transformer.wpe.weight":
            tf["gpt/embeddings/position_embeddings"] = t
        elif name.startswith("transformer.ln_f."):
            tf["gpt/output/LayerNorm/" + ("gamma" if name.endswith("weight") else "beta")] = t
        elif m:
            p, rest = f"gpt/transformer/layer_{m.group(1)}/", m.group(2)
            kind = "kernel" if rest.endswith("weight") else "bias"
            ln = "gamma" if rest.endswith("weight") else "beta"
            if rest.startswith("attn.c_attn."):
                for part, piece in zip(("query", "key", "value"), t.chunk(3, dim=-1)):   # Conv1D: [in, 3*out]
                    tf[p + f"attention/self/{part}/{kind}"] = piece.contiguous()
            elif rest.startswith("attn.c_proj."):
                tf[p + f"attention/output/dense/{kind}"] = t
            elif rest.startswith("ln_1."):
                tf[p + f"attention/input/LayerNorm/{ln}"] = t
            elif rest.startswith("ln_2."):
                tf[p + f"input/LayerNorm/{ln}"] = t
            elif rest.startswith("mlp.c_fc."):
                tf[p + f"intermediate/dense/{kind}"] = t
            elif rest.startswith("mlp.c_proj."):
                tf[p + f"output/dense/{kind}"] = t
            else:
                raise KeyError(name)
        else:
            raise KeyError(name)
    return tf


def t5_names(hf, mt5):
    """T5_Base.variable_mapping (Mesh TensorFlow names); kernels [in, out], relative bias [heads, buckets]."""
    norm = "rms_norm" if mt5 else "layer_norm"
    tf = {}
    for name, t in hf.items():
        m = re.fullmatch(r"(encoder|decoder)\.block\.(\d+)\.layer\.(\d+)\.(.+)\.weight", name)
        if name == "shared.weight":
            tf["shared/embedding"] = t
        elif name == "lm_head.weight":
            tf["decoder/logits/kernel"] = t.t().contiguous()
        elif re.fullmatch(r"(encoder|decoder)\.final_layer_norm\.weight", name):
            stack = name.split(".")[0]
            tf[f"{stack}/rms_norm/scale" if mt5 else f"{stack}/final_layer_norm/scale"] = t
        elif m:
            p = f"{m.group(1)}/block_{int(m.group(2)):03d}/layer_{int(m.group(3)):03d}/"
            rest = m.group(4)
            if rest == "layer_norm":
                tf[p + f"{norm}/scale"] = t
            elif rest.endswith("relative_attention_bias"):
                tf[p + "SelfAttention/relative_attention_bias"] = t.t().contiguous()      # [buckets, heads] -> [heads, buckets]
            elif re.fullmatch(r"(SelfAttention|EncDecAttention)\.[qkvo]", rest):
                tf[p + rest.replace(".", "/")] = t.t().contiguous()
            elif re.fullmatch(r"DenseReluDense\.(wi|wi_0|wi_1|wo)", rest):
                tf[p + rest.replace(".", "/") + "/kernel"] = t.t().contiguous()
            else:
                raise KeyError(name)
        else:
            raise KeyError(name)
    return tf


def main():
    torch.manual_seed(7)
    for fixture in ("gpt2", "t5_v1_0", "t5_v1_1", "mt5"):
        hf = read_safetensors(os.path.join(ROOT, "hf", fixture, "model.safetensors"))
        tf = gpt2_names(hf) if fixture == "gpt2" else t5_names(hf, fixture == "mt5")
        if fixture in ("t5_v1_1", "mt5") and "decoder/logits/kernel" not in tf:
            # bert4keras's t5.1.1 / mt5.1.1 always read a separate, unscaled head (decoder/logits/kernel); these HF
            # models tie it to the embedding without scaling (scale_decoder_outputs=false), which is the same matrix.
            tf["decoder/logits/kernel"] = hf["shared.weight"].t().contiguous()
        first = sorted(tf)[0]
        tf[first + "/adam_m"] = torch.randn(tf[first].shape)
        tf[first + "/adam_v"] = torch.rand(tf[first].shape)
        tf["global_step"] = torch.tensor(1000, dtype=torch.int64)
        out = os.path.join(ROOT, "tf", fixture)
        os.makedirs(out, exist_ok=True)
        write_tf_bundle(os.path.join(out, "model.ckpt"), tf)
        print(fixture, len(hf), "HF tensors ->", len(tf), "TF variables (with 2 slots and global_step)")


if __name__ == "__main__":
    main()
