#!/usr/bin/python3
"""Multiple-choice scoring and loss with options padded per question, in PyTorch (float64).

Run with Debian's python3-torch (PyTorch 1.13): /usr/bin/python3 tests/reference/make_multiple_choice_refs.py
Writes tests/fixtures/tasks/multiple_choice/refs.safetensors:
  pooled (N, H)                 pooled vectors of the N = 4 + 2 + 3 real options, question by question
  scorer.weight (1, H), .bias   the dense layer to one score, torch layout [out, in]
  counts (Q,) int64, labels (Q,) int64
  flat (N,)                     scores of the real options
  padded (Q, K)                 scores laid out per question, -inf at padded options (K = 4)
  loss ()                       mean over questions of -log softmax over that question's REAL options at its label,
                                computed question by question (no padding involved), so the padded layout is checked
                                against an independent computation
  grad.pooled, grad.weight, grad.bias   gradients of loss
  decoded (Q,) int64            argmax over each question's real options
The semantics are those of bert4keras's CLUE multiple-choice baselines (a dense score per option, softmax over a
question's options), re-expressed here; a padded option is excluded instead of being scored as a dummy choice.
"""
import json, os, struct
import torch

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures", "tasks", "multiple_choice")
H = 6
COUNTS = [4, 2, 3]
LABELS = [2, 1, 0]
torch.set_default_dtype(torch.float64)
torch.manual_seed(7)

n = sum(COUNTS)
pooled = torch.randn(n, H, requires_grad=True)
weight = (torch.randn(1, H) * 0.5).requires_grad_()
bias = torch.tensor([0.3], requires_grad=True)

flat = (pooled @ weight.T + bias).squeeze(-1)
losses, decoded, rows, start = [], [], [], 0
K = max(COUNTS)
for c, y in zip(COUNTS, LABELS):
    s = flat[start:start + c]
    losses.append(-torch.log_softmax(s, 0)[y])
    decoded.append(int(torch.argmax(s)))
    rows.append(torch.cat([s.detach(), torch.full((K - c,), float("-inf"))]))
    start += c
loss = torch.stack(losses).mean()
loss.backward()

tensors = {
    "pooled": pooled.detach(), "scorer.weight": weight.detach(), "scorer.bias": bias.detach(),
    "counts": torch.tensor(COUNTS), "labels": torch.tensor(LABELS),
    "flat": flat.detach(), "padded": torch.stack(rows), "loss": loss.detach(),
    "grad.pooled": pooled.grad, "grad.weight": weight.grad, "grad.bias": bias.grad,
    "decoded": torch.tensor(decoded),
}


def write_safetensors(path, tensors):
    dt = {torch.float64: "F64", torch.int64: "I64"}
    header, blobs, off = {"__metadata__": {"producer": "make_multiple_choice_refs.py"}}, [], 0
    for name in sorted(tensors):
        t = tensors[name].detach().contiguous()
        b = t.numpy().tobytes()
        header[name] = {"dtype": dt[t.dtype], "shape": list(t.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


os.makedirs(OUT, exist_ok=True)
write_safetensors(os.path.join(OUT, "refs.safetensors"), tensors)
print("loss", float(loss), "decoded", decoded)
