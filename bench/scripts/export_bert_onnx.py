#!/usr/bin/python3
"""Export a Bert4Sharp-saved BERT (config.json + model.safetensors, Hugging Face names) to ONNX.

Used by `Bert4Sharp.Bench encoder` at bench time (the .onnx is never committed):
    /usr/bin/python3 bench/scripts/export_bert_onnx.py MODEL_DIR OUT.onnx
The reference model is written here in plain PyTorch (Debian python3-torch 1.13): BERT's post-LN block,
exact GELU, additive key mask, explicit softmax attention (what torch 1.13 can export). Dynamic batch
and sequence axes; inputs input_ids, token_type_ids, attention_mask (int64); output last_hidden_state.
"""
import json, math, struct, sys
import numpy as np
import torch
import torch.nn.functional as F


def load_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, meta in header.items():
        if name == "__metadata__":
            continue
        assert meta["dtype"] == "F32", meta["dtype"]
        b, e = meta["data_offsets"]
        out[name] = torch.from_numpy(np.frombuffer(data[b:e], dtype=np.float32).reshape(meta["shape"]).copy())
    return out


class Bert(torch.nn.Module):
    def __init__(self, cfg, w):
        super().__init__()
        self.cfg = cfg
        self.w = torch.nn.ParameterDict({k.replace(".", "_"): torch.nn.Parameter(v, requires_grad=False) for k, v in w.items()})

    def p(self, name):
        return self.w[name.replace(".", "_")]

    def forward(self, input_ids, token_type_ids, attention_mask):
        c = self.cfg
        h, heads = c["hidden_size"], c["num_attention_heads"]
        d = h // heads
        eps = c.get("layer_norm_eps", 1e-12)
        b, t = input_ids.shape
        pos = torch.arange(t, device=input_ids.device).unsqueeze(0)
        x = self.p("bert.embeddings.word_embeddings.weight")[input_ids] + self.p("bert.embeddings.position_embeddings.weight")[pos] \
            + self.p("bert.embeddings.token_type_embeddings.weight")[token_type_ids]
        x = F.layer_norm(x, (h,), self.p("bert.embeddings.LayerNorm.weight"), self.p("bert.embeddings.LayerNorm.bias"), eps)
        bias = (1.0 - attention_mask[:, None, None, :].to(x.dtype)) * -3.4028234663852886e38
        for i in range(c["num_hidden_layers"]):
            L = "bert.encoder.layer.%d." % i
            q = F.linear(x, self.p(L + "attention.self.query.weight"), self.p(L + "attention.self.query.bias")).view(b, t, heads, d).transpose(1, 2)
            k = F.linear(x, self.p(L + "attention.self.key.weight"), self.p(L + "attention.self.key.bias")).view(b, t, heads, d).transpose(1, 2)
            v = F.linear(x, self.p(L + "attention.self.value.weight"), self.p(L + "attention.self.value.bias")).view(b, t, heads, d).transpose(1, 2)
            a = (q @ k.transpose(-1, -2)) / math.sqrt(d) + bias
            o = (a.softmax(-1) @ v).transpose(1, 2).reshape(b, t, h)
            o = F.linear(o, self.p(L + "attention.output.dense.weight"), self.p(L + "attention.output.dense.bias"))
            x = F.layer_norm(x + o, (h,), self.p(L + "attention.output.LayerNorm.weight"), self.p(L + "attention.output.LayerNorm.bias"), eps)
            f = F.gelu(F.linear(x, self.p(L + "intermediate.dense.weight"), self.p(L + "intermediate.dense.bias")))
            f = F.linear(f, self.p(L + "output.dense.weight"), self.p(L + "output.dense.bias"))
            x = F.layer_norm(x + f, (h,), self.p(L + "output.LayerNorm.weight"), self.p(L + "output.LayerNorm.bias"), eps)
        return x


def main():
    model_dir, out = sys.argv[1], sys.argv[2]
    cfg = json.load(open(model_dir + "/config.json"))
    model = Bert(cfg, load_safetensors(model_dir + "/model.safetensors")).eval()
    ids = torch.randint(0, cfg["vocab_size"], (2, 16))
    args = (ids, torch.zeros_like(ids), torch.ones_like(ids))
    with torch.no_grad():
        torch.onnx.export(model, args, out, input_names=["input_ids", "token_type_ids", "attention_mask"],
                          output_names=["last_hidden_state"], opset_version=14,
                          dynamic_axes={n: {0: "batch", 1: "sequence"} for n in ["input_ids", "token_type_ids", "attention_mask", "last_hidden_state"]})
    print("exported", out)


if __name__ == "__main__":
    main()
