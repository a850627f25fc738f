#!/usr/bin/python3
"""Golden checkpoint files from producers Bert4Sharp did not write.

Run with Debian's python3-torch (PyTorch 1.13): /usr/bin/python3 tests/reference/make_checkpoint_goldens.py
Writes tests/fixtures/checkpoints/:
  torch_zip.pt        torch.save, zip format (PyTorch's own writer)
  torch_legacy.pt     torch.save(..., _use_new_zipfile_serialization=False), legacy format
  reference.safetensors  safetensors written here with struct + json, following the published format
  tf_bundle.index / tf_bundle.data-00000-of-00001
                      a TensorFlow tensor bundle written here from the format description (LevelDB
                      table, BundleEntryProto, masked CRC32C); uncompressed blocks (no snappy module)
  evil_zip.pt, evil_legacy.pt  torch.save of an object whose pickle calls posix.system
  expected.json       per tensor: dtype, shape and the exact contiguous little-endian bytes (hex)
No Bert4Sharp code is involved; the C# tests compare against these bytes exactly.
"""
import collections, hashlib, json, os, struct, sys
import torch

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures", "checkpoints")
os.makedirs(OUT, exist_ok=True)
torch.manual_seed(1234)

DT = {torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
      torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8",
      torch.uint8: "U8", torch.bool: "BOOL"}


def state_dict():
    base = torch.randn(4, 6)
    sd = collections.OrderedDict()
    sd["embeddings.word.weight"] = torch.randn(10, 8)
    sd["lm_head.weight"] = sd["embeddings.word.weight"]                 # tied: same storage, same view
    sd["dense.weight"] = torch.nn.Parameter(torch.randn(5, 3))          # _rebuild_parameter
    sd["transposed"] = base.t()                                         # non-contiguous view (stride 1, 6)
    sd["row_slice"] = base[2]                                           # shares base's storage, offset 12
    sd["strided_cols"] = base[:, ::2]                                   # stride (6, 2)
    sd["f64"] = torch.randn(3, 2, dtype=torch.float64)
    sd["f16"] = torch.randn(7).to(torch.float16)
    sd["bf16"] = torch.randn(2, 5).to(torch.bfloat16)
    sd["i64"] = torch.tensor([-(2 ** 40), -1, 0, 1, 2 ** 62], dtype=torch.int64)
    sd["i32"] = torch.tensor([[-7, 8], [2 ** 31 - 1, -(2 ** 31)]], dtype=torch.int32)
    sd["i16"] = torch.tensor([-32768, 0, 32767], dtype=torch.int16)
    sd["i8"] = torch.tensor([-128, -1, 127], dtype=torch.int8)
    sd["u8"] = torch.tensor([0, 1, 200, 255], dtype=torch.uint8)
    sd["bool"] = torch.tensor([True, False, True])
    sd["scalar"] = torch.tensor(3.25)                                   # 0-d tensor
    sd["empty"] = torch.zeros(0, 4)                                     # empty tensor
    sd["global_step"] = torch.tensor(1000, dtype=torch.int64)
    return sd


def contiguous_bytes(t):
    t = t.detach().contiguous()
    if t.dtype == torch.bfloat16:
        return t.view(torch.int16).numpy().tobytes()
    return t.numpy().tobytes()


def write_safetensors(path, sd):
    items = sorted(sd.items(), key=lambda kv: (-kv[1].element_size(), kv[0]))
    header, blobs, off = {"__metadata__": {"format": "pt", "producer": "make_checkpoint_goldens.py"}}, [], 0
    for name, t in items:
        b = contiguous_bytes(t)
        header[name] = {"dtype": DT[t.dtype], "shape": list(t.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


# ---- TensorFlow tensor bundle, written from the format description --------------------------------
def crc32c(data):
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def mask(crc):
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def field_varint(num, v):
    return varint(num << 3) + varint(v)


def field_bytes(num, b):
    return varint((num << 3) | 2) + varint(len(b)) + b


TF_DT = {torch.float32: 1, torch.float64: 2, torch.int32: 3, torch.uint8: 4, torch.int16: 5,
         torch.int8: 6, torch.int64: 9, torch.bool: 10, torch.bfloat16: 14, torch.float16: 19}


def bundle_entry(t, offset, data):
    shape = b"".join(field_bytes(2, field_varint(1, d)) for d in t.shape)
    msg = field_varint(1, TF_DT[t.dtype]) + field_bytes(2, shape)
    msg += field_varint(4, offset) if offset else b""
    msg += field_varint(5, len(data))
    msg += varint((6 << 3) | 5) + struct.pack("<I", mask(crc32c(data)))
    return msg


def table_block(entries, restart_interval=4):
    out, restarts, prev = bytearray(), [], b""
    for i, (k, v) in enumerate(entries):
        shared = 0
        if i % restart_interval == 0:
            restarts.append(len(out))
        else:
            while shared < min(len(k), len(prev)) and k[shared] == prev[shared]:
                shared += 1
        out += varint(shared) + varint(len(k) - shared) + varint(len(v)) + k[shared:] + v
        prev = k
    for r in restarts:
        out += struct.pack("<I", r)
    out += struct.pack("<I", len(restarts))
    return bytes(out)


def write_tf_bundle(prefix, tensors):
    data, records = bytearray(), []
    for name, t in sorted(tensors.items()):
        b = contiguous_bytes(t)
        records.append((name.encode(), bundle_entry(t, len(data), b)))
        data += b
    header = field_varint(1, 1) + field_bytes(3, field_varint(1, 1))   # num_shards=1, version{producer=1}
    records.insert(0, (b"", header))
    out, index_entries = bytearray(), []
    # Two data blocks, to exercise the index block.
    half = len(records) // 2
    for chunk in (records[:half], records[half:]):
        block = table_block(chunk)
        handle = varint(len(out)) + varint(len(block))
        trailer = b"\x00" + struct.pack("<I", mask(crc32c(block + b"\x00")))
        out += block + trailer
        index_entries.append((chunk[-1][0] + b"\xff", handle))
    meta = table_block([])
    meta_handle = varint(len(out)) + varint(len(meta))
    out += meta + b"\x00" + struct.pack("<I", mask(crc32c(meta + b"\x00")))
    index = table_block(index_entries, restart_interval=1)
    index_handle = varint(len(out)) + varint(len(index))
    out += index + b"\x00" + struct.pack("<I", mask(crc32c(index + b"\x00")))
    footer = meta_handle + index_handle
    footer += b"\x00" * (40 - len(footer)) + struct.pack("<Q", 0xDB4775248B80FB57)
    out += footer
    with open(prefix + ".index", "wb") as f:
        f.write(out)
    with open(prefix + ".data-00000-of-00001", "wb") as f:
        f.write(data)


class Evil:
    def __reduce__(self):
        return (os.system, ("echo this must never run",))


def main():
    sd = state_dict()
    torch.save(sd, os.path.join(OUT, "torch_zip.pt"))
    torch.save(sd, os.path.join(OUT, "torch_legacy.pt"), _use_new_zipfile_serialization=False)
    write_safetensors(os.path.join(OUT, "reference.safetensors"), sd)
    tf = collections.OrderedDict((k.replace(".", "/"), v) for k, v in sd.items() if v.numel() > 0 and v.dim() > 0)
    tf["bert/embeddings/word/weight/adam_m"] = torch.randn(10, 8)
    tf["global_step"] = torch.tensor(7, dtype=torch.int64)
    write_tf_bundle(os.path.join(OUT, "tf_bundle"), tf)
    torch.save({"weight": torch.ones(2), "payload": Evil()}, os.path.join(OUT, "evil_zip.pt"))
    torch.save({"weight": torch.ones(2), "payload": Evil()}, os.path.join(OUT, "evil_legacy.pt"),
               _use_new_zipfile_serialization=False)

    expected = {"torch": {}, "tensorflow": {}, "producer": "PyTorch " + torch.__version__}
    for name, t in sd.items():
        b = contiguous_bytes(t)
        expected["torch"][name] = {"dtype": DT[t.dtype], "shape": list(t.shape), "hex": b.hex(),
                                   "sha256": hashlib.sha256(b).hexdigest()}
    for name, t in tf.items():
        b = contiguous_bytes(t)
        expected["tensorflow"][name] = {"dtype": DT[t.dtype], "shape": list(t.shape), "hex": b.hex()}
    with open(os.path.join(OUT, "expected.json"), "w") as f:
        json.dump(expected, f, indent=1, sort_keys=True)
    # Round-trip check with PyTorch itself, so the goldens are known-good.
    for fn in ("torch_zip.pt", "torch_legacy.pt"):
        back = torch.load(os.path.join(OUT, fn))
        for k, v in sd.items():
            assert contiguous_bytes(back[k]) == contiguous_bytes(v), (fn, k)
    print("wrote", sorted(os.listdir(OUT)))


if __name__ == "__main__":
    main()
