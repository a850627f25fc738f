#!/usr/bin/python3
"""Span-extraction head and loss (SQuAD/CMRC2018 start/end pointers) in plain PyTorch, as the reference of SpanExtractorTests.

Run with Debian's python3-torch (PyTorch 1.13): /usr/bin/python3 tests/reference/make_span_extractor_refs.py
Writes tests/fixtures/tasks/span_extractor/refs.safetensors (float64; safetensors written with struct + json):
  span.weight (2, H), span.bias (2)      the dense layer hidden → (start, end) logits, torch layout [out, in]
  hidden (B, T, H)                       encoder output
  candidates (B, T) int64                1 where an answer may start/end: [CLS] (position 0) and the context tokens
  starts, ends (B) int64                 gold positions; a window without its answer points at [CLS] (0)
  logits (B, T, 2)                       hidden @ W^T + b
  loss ()                                (CE(start) + CE(end)) / 2, each the batch mean, non-candidates at -inf
  grad (B, T, H)                         d loss / d hidden
The recipe is BERT's SQuAD fine-tuning loss (mean of the start and end cross-entropies) with the question and padding
positions removed from the softmax; written here from that description, no Bert4Sharp code involved.
"""
import json, os, struct
import torch

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures", "tasks", "span_extractor")
B, T, H = 3, 9, 8
# (question tokens incl. [CLS] and first [SEP], context end (exclusive), real length)
LAYOUT = [(4, 8, 9), (3, 6, 7), (5, 7, 8)]
STARTS, ENDS = [5, 0, 5], [6, 0, 6]       # the second window does not hold its answer → [CLS]
torch.set_default_dtype(torch.float64)


def write_safetensors(path, tensors):
    kinds = {torch.float64: "F64", torch.int64: "I64"}
    header, data, offset = {"__metadata__": {"producer": "make_span_extractor_refs.py"}}, [], 0
    for name in sorted(tensors):
        raw = tensors[name].detach().contiguous().numpy().tobytes()
        header[name] = {"dtype": kinds[tensors[name].dtype], "shape": list(tensors[name].shape), "data_offsets": [offset, offset + len(raw)]}
        data.append(raw)
        offset += len(raw)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for raw in data:
            f.write(raw)


def main():
    g = torch.Generator().manual_seed(1852)
    weight = torch.randn(2, H, generator=g) * 0.5
    bias = torch.randn(2, generator=g) * 0.1
    hidden = torch.randn(B, T, H, generator=g).requires_grad_(True)
    candidates = torch.zeros(B, T, dtype=torch.int64)
    for b, (q, c, _) in enumerate(LAYOUT):
        candidates[b, 0] = 1
        candidates[b, q:c] = 1
    starts, ends = torch.tensor(STARTS), torch.tensor(ENDS)
    logits = hidden @ weight.T + bias
    masked = logits.masked_fill(candidates[..., None] == 0, float("-inf"))
    loss = (torch.nn.functional.cross_entropy(masked[..., 0], starts) + torch.nn.functional.cross_entropy(masked[..., 1], ends)) / 2
    loss.backward()
    os.makedirs(OUT, exist_ok=True)
    path = os.path.join(OUT, "refs.safetensors")
    write_safetensors(path, {"span.weight": weight, "span.bias": bias, "hidden": hidden, "candidates": candidates, "starts": starts,
                             "ends": ends, "logits": logits, "loss": loss, "grad": hidden.grad})
    print(f"wrote {path}: loss {loss.item():.6f}")


if __name__ == "__main__":
    main()
