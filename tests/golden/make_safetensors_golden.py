#!/usr/bin/python3
"""safetensors cross-checks against PyTorch, with a small safetensors writer/reader written here
from the format spec (the Python safetensors package is not installed on the build machine).

Run with Debian's python3-torch (1.13):
  /usr/bin/python3 tests/golden/make_safetensors_golden.py
      writes tests/golden/safetensors_state.safetensors (a state dict made by PyTorch) and
      tests/golden/safetensors_state.json (each tensor's dtype, shape and raw bits), which
      tests/nn/test_safetensors.cpp loads and compares bit for bit.
  /usr/bin/python3 tests/golden/make_safetensors_golden.py --verify PATH
      checks a file written by Mantissa's C++ save (test_safetensors writes it to the path in
      $MANTISSA_SAFETENSORS_VERIFY_OUT): validates it with the reader below, compares every
      tensor with the values the C++ test stores, and loads fc.weight/fc.bias into
      torch.nn.Linear(4, 3) with load_state_dict(strict=True).
"""
import json
import math
import os
import struct
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
MAX_HEADER = 100_000_000

# name -> (torch dtype, element size, numpy dtype holding the raw bits)
DTYPES = {
    "F64": (torch.float64, 8, np.uint64),
    "F32": (torch.float32, 4, np.uint32),
    "F16": (torch.float16, 2, np.uint16),
    "BF16": (torch.bfloat16, 2, np.uint16),
    "I64": (torch.int64, 8, np.int64),
    "I32": (torch.int32, 4, np.int32),
    "I8": (torch.int8, 1, np.int8),
    "U8": (torch.uint8, 1, np.uint8),
    "BOOL": (torch.bool, 1, np.uint8),
}
NAME_OF = {v[0]: k for k, v in DTYPES.items()}


def tensor_bytes(t):
    t = t.detach().contiguous().cpu()
    if t.dtype == torch.bfloat16:  # numpy has no bfloat16: move the bits as int16
        return t.view(torch.int16).numpy().tobytes()
    return t.numpy().tobytes()


def write_safetensors(path, tensors, metadata):
    """tensors: list of (name, tensor) in data order; the header keys are written sorted, so
    the header order differs from the data order (readers must sort by offsets)."""
    header, chunks, offset = {}, [], 0
    for name, t in tensors:
        b = tensor_bytes(t)
        header[name] = {"dtype": NAME_OF[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(b)]}
        offset += len(b)
        chunks.append(b)
    header["__metadata__"] = metadata
    text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(chunks))


def no_duplicates(pairs):
    d = {}
    for k, v in pairs:
        if k in d:
            raise ValueError(f"duplicate key {k!r}")
        d[k] = v
    return d


def read_safetensors(path):
    """Returns (list of (name, tensor) in data order, metadata, header length); raises
    ValueError for anything the reference implementation rejects."""
    data = open(path, "rb").read()
    if len(data) < 8:
        raise ValueError("file shorter than 8 bytes")
    (n,) = struct.unpack("<Q", data[:8])
    if n > MAX_HEADER:
        raise ValueError(f"header length {n} over the limit")
    if 8 + n > len(data):
        raise ValueError(f"header length {n} past the end of the file")
    text = data[8:8 + n].decode("utf-8")
    if not text.startswith("{"):
        raise ValueError("header does not start with '{'")
    header = json.loads(text, object_pairs_hook=no_duplicates)
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise ValueError("__metadata__ must map strings to strings")
    entries = []
    for name, info in header.items():
        dtype = info["dtype"]
        if dtype not in DTYPES:
            raise ValueError(f"{name}: unknown dtype {dtype}")
        shape = info["shape"]
        if not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
            raise ValueError(f"{name}: bad shape {shape}")
        begin, end = info["data_offsets"]
        if not (isinstance(begin, int) and isinstance(end, int) and 0 <= begin <= end):
            raise ValueError(f"{name}: bad data_offsets {info['data_offsets']}")
        if end - begin != math.prod(shape) * DTYPES[dtype][1]:
            raise ValueError(f"{name}: shape {shape} {dtype} does not match data_offsets [{begin}, {end}]")
        entries.append((begin, end, name, dtype, shape))
    entries.sort(key=lambda e: (e[0], e[1]))
    buffer = data[8 + n:]
    covered = 0
    tensors = []
    for begin, end, name, dtype, shape in entries:
        if begin != covered:
            raise ValueError(f"{name}: data_offsets [{begin}, {end}] leave a gap or overlap (covered {covered})")
        covered = end
        tdtype, size, _ = DTYPES[dtype]
        # torch.from_numpy takes signed integers of the element's width; reinterpret from there.
        signed = {8: np.int64, 4: np.int32, 2: np.int16, 1: np.uint8 if dtype in ("U8", "BOOL") else np.int8}[size]
        t = torch.from_numpy(np.frombuffer(buffer[begin:end], dtype=signed).copy())
        t = t != 0 if dtype == "BOOL" else t.view(tdtype)
        tensors.append((name, t.reshape(shape)))
    if covered != len(buffer):
        raise ValueError(f"data buffer is {len(buffer)} bytes, tensors cover {covered}")
    return tensors, metadata, n


def raw_bits(t):
    """Raw little-endian element bits as Python ints: unsigned for floats, values for ints."""
    bits = DTYPES[NAME_OF[t.dtype]][2]
    return [int(v) for v in np.frombuffer(tensor_bytes(t), dtype=bits)]


def make_golden():
    torch.manual_seed(0)
    fc = torch.nn.Linear(4, 3)
    inf, nan = float("inf"), float("nan")
    state = [
        ("fc.weight", fc.weight.detach()),
        ("fc.bias", fc.bias.detach()),
        ("half", torch.tensor([[1.0, -0.0, 65504.0], [2.0 ** -24, inf, nan]], dtype=torch.float16)),
        ("bf", torch.tensor([1.0 / 3.0, -2.5, 3.0e38, 2.0 ** -130, -inf], dtype=torch.bfloat16)),
        ("steps", torch.tensor([[0, -1], [2 ** 62 + 1, -(2 ** 63)]], dtype=torch.int64)),
        ("mask", torch.tensor([True, False, True])),
        ("scalar", torch.tensor(0.1, dtype=torch.float32)),
        ("empty", torch.zeros(0, 3)),
    ]
    metadata = {"format": "pt", "epoch": "3", "note": "Gr\u00fc\u00dfe \u2713"}
    st_path = os.path.join(HERE, "safetensors_state.safetensors")
    write_safetensors(st_path, state, metadata)
    expected = {
        "generator": "tests/golden/make_safetensors_golden.py, torch " + torch.__version__,
        "metadata": metadata,
        "tensors": [{"name": n, "dtype": NAME_OF[t.dtype], "shape": list(t.shape), "bits": raw_bits(t)}
                    for n, t in state],
    }
    with open(os.path.join(HERE, "safetensors_state.json"), "w") as f:  # one tensor per line
        head = json.dumps({k: v for k, v in expected.items() if k != "tensors"})[:-1]
        rows = ",\n  ".join(json.dumps(t) for t in expected["tensors"])
        f.write(f'{head},\n "tensors": [\n  {rows}\n ]\n}}\n')
    # Our own reader must read back what the writer wrote.
    back, meta, _ = read_safetensors(st_path)
    assert meta == metadata and [n for n, _ in back] == [n for n, _ in state]
    for (_, a), (_, b) in zip(back, state):
        assert raw_bits(a) == raw_bits(b)
    print(f"wrote {st_path} ({os.path.getsize(st_path)} bytes) and safetensors_state.json")


# What tests/nn/test_safetensors.cpp (test Safetensors.WritesFileForPythonVerify) saves.
def verify_expected():
    w = (torch.arange(12, dtype=torch.float32).reshape(4, 3).t() - 6.0) / 8.0  # saved from a transposed view
    return [
        ("fc.weight", w),
        ("fc.bias", torch.tensor([0.5, -1.25, 2.0])),
        ("h", torch.tensor([1.5, -0.0, 65504.0, 2.0 ** -24], dtype=torch.float16)),
        ("b", torch.tensor([1.5, -2.25, 3.0 * 2.0 ** 100], dtype=torch.bfloat16)),
        ("d", torch.tensor([0.1, -1e300], dtype=torch.float64)),
        ("i64", torch.tensor([-(2 ** 63), 2 ** 62 + 1, 7], dtype=torch.int64)),
        ("i32", torch.tensor([-(2 ** 31), 123], dtype=torch.int32)),
        ("i8", torch.tensor([-128, 0, 127], dtype=torch.int8)),
        ("u8", torch.tensor([0, 255], dtype=torch.uint8)),
        ("mask", torch.tensor([[True, False], [False, True]])),
        ("scalar", torch.tensor(3.25)),
        ("empty", torch.zeros(0, 3)),
    ]


def verify(path):
    tensors, metadata, n = read_safetensors(path)
    assert (8 + n) % 8 == 0, f"data buffer not 8-byte aligned (header length {n})"
    print(f"read {path}: {os.path.getsize(path)} bytes, header {n} bytes, {len(tensors)} tensors")
    print("metadata:", json.dumps(metadata, ensure_ascii=False, sort_keys=True))
    assert metadata.get("format") == "pt", metadata
    assert metadata.get("epoch") == "2" and metadata.get("note") == "Gr\u00fc\u00dfe \u2713", metadata
    expected = verify_expected()
    assert [n for n, _ in tensors] == [n for n, _ in expected], [n for n, _ in tensors]
    got = dict(tensors)
    for name, want in expected:
        t = got[name]
        assert t.dtype == want.dtype and t.shape == want.shape, (name, t.dtype, t.shape, want.dtype, want.shape)
        assert raw_bits(t) == raw_bits(want), (name, t, want)
        print(f"  {name:10s} {NAME_OF[t.dtype]:5s} {str(list(t.shape)):8s} bit-identical to torch")
    fc = torch.nn.Linear(4, 3)
    result = fc.load_state_dict({"weight": got["fc.weight"], "bias": got["fc.bias"]}, strict=True)
    x = torch.tensor([[1.0, 2.0, 3.0, 4.0]])
    y = fc(x)
    ref = x @ expected[0][1].t() + expected[1][1]
    assert torch.equal(y, ref), (y, ref)
    print(f"torch {torch.__version__} nn.Linear(4, 3).load_state_dict(strict=True): {result}")
    print(f"fc(x) = {y.detach().tolist()} (matches x @ W^T + b)")
    print("verify: OK")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--verify":
        verify(sys.argv[2])
    elif len(sys.argv) == 1:
        make_golden()
    else:
        sys.exit(__doc__)
