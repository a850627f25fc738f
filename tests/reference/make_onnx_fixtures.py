#!/usr/bin/python3
"""Small ONNX models written with the onnx package (Debian python3-onnx 1.12 + python3-numpy; no torch).

Run: /usr/bin/python3 tests/reference/make_onnx_fixtures.py
Writes tests/fixtures/onnx/:
  synthetic.onnx      one graph whose initializers cover every storage the reader handles:
                        raw_data (float32, float16, bfloat16, int64, uint8, bool, a 0-d scalar, an empty tensor),
                        typed fields written by onnx.helper (float_data, double_data, int64_data, int32_data holding
                        int32 / int8 / float16 bit patterns), external data (two tensors in synthetic.weights, the
                        second at an aligned offset), a Constant node (not an initializer);
                        four Linear layers as torch.onnx.export writes them, MatMul(x, W[in, out]) then Add with a
                        named bias, their W anonymous ("onnx::MatMul_17", a bare number "19"...), stored as raw_data,
                        float_data, int32_data (float16) and external data; and anonymous leftovers the rule must
                        not name: a MatMul followed by Relu (no bias), an int64 shape constant, and a MatMul weight
                        whose Add bias has the wrong length.
  synthetic.weights   the external data of synthetic.onnx
  expected.json       per exposed entry: dtype, shape, exact little-endian bytes (hex), and "stored_as" (the
                      initializer name) for the renamed ones, whose bytes are the stored matrix transposed;
                      plus the names of the anonymous leftovers
  bad_uint64.onnx     an initializer of data type UINT64 (not supported)
  bad_raw_length.onnx raw_data one element short of the dims
  bad_escape.onnx     external data whose location climbs out of the model directory ("../secret.bin")
  bad_typed_count.onnx  float_data with fewer values than the dims call for
No Bert4Sharp code is involved; the C# tests compare against these bytes exactly.
"""
import json, os
import numpy as np
import onnx
from onnx import helper, numpy_helper, TensorProto

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures", "onnx")
os.makedirs(OUT, exist_ok=True)
rng = np.random.default_rng(20240607)

initializers = []
expected = {}


def dtype_name(a):
    return {np.float32: "float32", np.float16: "float16", np.float64: "float64", np.int64: "int64",
            np.int32: "int32", np.int8: "int8", np.uint8: "uint8", np.bool_: "bool"}[a.dtype.type]


def expect(name, array, dtype=None, stored_as=None):
    expected[name] = {"dtype": dtype or dtype_name(array), "shape": list(array.shape),
                      "hex": np.ascontiguousarray(array).tobytes().hex()}
    if stored_as is not None:
        expected[name]["stored_as"] = stored_as


def raw(name, array, exposed=None):
    initializers.append(numpy_helper.from_array(array, name))      # numpy_helper writes raw_data
    if exposed is None:
        expect(name, array)


def typed(name, onnx_type, array, exposed=None):
    # helper.make_tensor(raw=False) writes the typed field: float_data, double_data, int64_data, or int32_data
    # (int32/int8 values, float16 bit patterns).
    initializers.append(helper.make_tensor(name, onnx_type, list(array.shape), array.flatten().tolist()))
    if exposed is None:
        expect(name, array)


def bf16(a):
    """float32 → bfloat16 bit patterns by truncation (values chosen exactly representable)."""
    return (a.astype(np.float32).view(np.uint32) >> 16).astype(np.uint16)


# Plainly named tensors in every storage.
raw("embeddings.word_embeddings.weight", rng.standard_normal((7, 4)).astype(np.float32))
typed("embeddings.LayerNorm.weight", TensorProto.FLOAT, rng.standard_normal(4).astype(np.float32))
typed("f64", TensorProto.DOUBLE, rng.standard_normal((2, 3)))
raw("f16", rng.standard_normal((3, 2)).astype(np.float16))
typed("f16_typed", TensorProto.FLOAT16, rng.standard_normal(5).astype(np.float16))
bf = np.array([1.0, -2.5, 0.15625, 3.0e38, -0.0, 7.0], dtype=np.float32)
t = TensorProto(name="bf16", data_type=TensorProto.BFLOAT16, dims=[2, 3], raw_data=bf16(bf).tobytes())
initializers.append(t)
expected["bf16"] = {"dtype": "bfloat16", "shape": [2, 3], "hex": bf16(bf).tobytes().hex()}
raw("position_ids", np.arange(5, dtype=np.int64).reshape(1, 5))
typed("i64_typed", TensorProto.INT64, np.array([-(2 ** 40), -1, 0, 1, 2 ** 62], dtype=np.int64))
typed("i32_typed", TensorProto.INT32, np.array([[-7, 0, 2 ** 31 - 1], [-(2 ** 31), 5, 6]], dtype=np.int32))
typed("i8_typed", TensorProto.INT8, np.array([-128, -1, 0, 127], dtype=np.int8))
raw("u8", np.array([0, 1, 200, 255], dtype=np.uint8))
raw("mask", np.array([True, False, True], dtype=np.bool_))
raw("scalar", np.array(3.25, dtype=np.float32))
raw("empty", np.zeros((0, 3), dtype=np.float32))

# Linear layers as PyTorch exports them: MatMul(x, W) with W = weight.T stored anonymously, then Add with the bias.
nodes = []
w17 = rng.standard_normal((4, 3)).astype(np.float32)              # [in, out]
raw("onnx::MatMul_17", w17, exposed="dense.weight")
raw("dense.bias", rng.standard_normal(3).astype(np.float32))
expect("dense.weight", w17.T, stored_as="onnx::MatMul_17")
nodes += [helper.make_node("MatMul", ["x", "onnx::MatMul_17"], ["h"]),
          helper.make_node("Add", ["dense.bias", "h"], ["h2"])]          # bias first, as older exports do

w18 = rng.standard_normal((3, 4)).astype(np.float32)
typed("onnx::MatMul_18", TensorProto.FLOAT, w18, exposed="out.weight")   # float_data, one packed run
raw("out.bias", rng.standard_normal(4).astype(np.float32))
expect("out.weight", w18.T, stored_as="onnx::MatMul_18")
nodes += [helper.make_node("MatMul", ["h2", "onnx::MatMul_18"], ["o"]),
          helper.make_node("Add", ["o", "out.bias"], ["o2"])]            # bias second

w19 = rng.standard_normal((4, 3)).astype(np.float16)
typed("19", TensorProto.FLOAT16, w19, exposed="half_proj.weight")         # int32_data bit patterns
raw("half_proj.bias", rng.standard_normal(3).astype(np.float16))
expect("half_proj.weight", w19.T, stored_as="19")
nodes += [helper.make_node("Cast", ["x"], ["xh"], to=TensorProto.FLOAT16),
          helper.make_node("MatMul", ["xh", "19"], ["hm"]),
          helper.make_node("Add", ["hm", "half_proj.bias"], ["hb"])]

# External data: ext.weight at offset 0, the anonymous MatMul weight at offset 64.
ext_plain = rng.standard_normal((3, 4)).astype(np.float32)
w20 = rng.standard_normal((4, 2)).astype(np.float32)
blob = bytearray(ext_plain.tobytes())
blob += b"\0" * (64 - len(blob))
blob += w20.tobytes()
with open(os.path.join(OUT, "synthetic.weights"), "wb") as f:
    f.write(blob)


def external(name, array, offset):
    t = TensorProto(name=name, data_type=helper.np_dtype_to_tensor_dtype(array.dtype) if hasattr(helper, "np_dtype_to_tensor_dtype")
                    else onnx.mapping.NP_TYPE_TO_TENSOR_TYPE[array.dtype], dims=list(array.shape))
    t.data_location = TensorProto.EXTERNAL
    for k, v in (("location", "synthetic.weights"), ("offset", str(offset)), ("length", str(array.nbytes))):
        e = t.external_data.add()
        e.key, e.value = k, v
    initializers.append(t)


external("ext.weight", ext_plain, 0)
expect("ext.weight", ext_plain)
external("onnx::MatMul_20", w20, 64)
raw("ext_proj.bias", rng.standard_normal(2).astype(np.float32))
expect("ext_proj.weight", w20.T, stored_as="onnx::MatMul_20")
nodes += [helper.make_node("MatMul", ["o2", "onnx::MatMul_20"], ["e"]),
          helper.make_node("Add", ["ext_proj.bias", "e"], ["e2"])]

# Leftovers the rule must not name.
raw("onnx::MatMul_99", rng.standard_normal((4, 4)).astype(np.float32))   # MatMul then Relu: no bias
raw("42", np.array([4, 2], dtype=np.int64))                              # a shape constant
raw("onnx::MatMul_77", rng.standard_normal((4, 5)).astype(np.float32))   # Add bias has 3 values, not 5
raw("short.bias", rng.standard_normal(3).astype(np.float32))
nodes += [helper.make_node("MatMul", ["x", "onnx::MatMul_99"], ["r"]),
          helper.make_node("Relu", ["r"], ["rr"]),
          helper.make_node("Reshape", ["rr", "42"], ["reshaped"]),
          helper.make_node("MatMul", ["x", "onnx::MatMul_77"], ["m77"]),
          helper.make_node("Add", ["m77", "short.bias"], ["bad_broadcast"]),
          helper.make_node("Constant", [], ["c"], value=numpy_helper.from_array(np.array([1.5], dtype=np.float32), "c_value")),
          helper.make_node("Mul", ["e2", "c"], ["scaled"])]
leftovers = ["onnx::MatMul_99", "42", "onnx::MatMul_77"]

graph = helper.make_graph(
    nodes, "synthetic",
    [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4])],
    [helper.make_tensor_value_info("scaled", TensorProto.FLOAT, [2, 2]),
     helper.make_tensor_value_info("reshaped", TensorProto.FLOAT, [4, 2]),
     helper.make_tensor_value_info("hb", TensorProto.FLOAT16, [2, 3])],
    initializer=initializers)
model = helper.make_model(graph, producer_name="make_onnx_fixtures.py", opset_imports=[helper.make_opsetid("", 13)])
model.ir_version = 7
helper.set_model_props(model, {"fixture": "synthetic"})
with open(os.path.join(OUT, "synthetic.onnx"), "wb") as f:
    f.write(model.SerializeToString())

expected_doc = {"entries": expected, "order": [t.name for t in initializers], "leftovers": leftovers,
                "inputs": ["x"], "outputs": ["scaled", "reshaped", "hb"]}
with open(os.path.join(OUT, "expected.json"), "w") as f:
    json.dump(expected_doc, f, indent=1, sort_keys=True)
    f.write("\n")


def tiny(name, tensor):
    g = helper.make_graph([], "bad", [], [], initializer=[tensor])
    m = helper.make_model(g, producer_name="make_onnx_fixtures.py", opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 7
    with open(os.path.join(OUT, name), "wb") as f:
        f.write(m.SerializeToString())


tiny("bad_uint64.onnx", helper.make_tensor("counts", TensorProto.UINT64, [2], [1, 2]))
tiny("bad_raw_length.onnx", TensorProto(name="short", data_type=TensorProto.FLOAT, dims=[2, 2],
                                        raw_data=np.ones(3, dtype=np.float32).tobytes()))
esc = TensorProto(name="escape", data_type=TensorProto.FLOAT, dims=[2], data_location=TensorProto.EXTERNAL)
for k, v in (("location", "../secret.bin"), ("offset", "0"), ("length", "8")):
    e = esc.external_data.add()
    e.key, e.value = k, v
tiny("bad_escape.onnx", esc)
tiny("bad_typed_count.onnx", TensorProto(name="few", data_type=TensorProto.FLOAT, dims=[3], float_data=[1.0, 2.0]))

onnx.checker.check_model(os.path.join(OUT, "synthetic.onnx"))   # a valid model, external data included
for name in sorted(os.listdir(OUT)):
    print(f"{name}: {os.path.getsize(os.path.join(OUT, name))} bytes")
