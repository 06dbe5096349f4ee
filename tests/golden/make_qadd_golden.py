#!/usr/bin/python3
"""Golden values for quantized_add / quantized_add_relu (core/quantized.h) from PyTorch 1.13's
torch.ops.quantized.add and add_relu on the CPU. Run with Debian's python3 (torch 1.13):
    /usr/bin/python3 tests/golden/make_qadd_golden.py > tests/golden/qadd.json

ATen's qadd kernel dequantizes with a fused multiply-add, fma(scale, q, -zp * scale), in its
vectorized body and with (q - zp) * scale in its scalar tail (the last n % 64 elements on
AVX-512). Every case here has a multiple of 128 elements, so PyTorch computes all of them on the
vectorized path; the script checks each output against both formulas (emulated in NumPy float32)
and reports how many elements tell them apart, are exact ties of the final rounding, or
saturate, so the file is known to pin down the formula Mantissa implements.
"""
import json
import sys

import numpy as np
import torch

f32 = np.float32
rng = np.random.default_rng(1234)


def emulate(qa, sa, za, qb, sb, zb, s, z, relu, qmin, qmax, fused):
    qa = qa.astype(np.int64)
    qb = qb.astype(np.int64)
    if fused:
        # One rounding of scale * q + premul; exact in float64 before it (at most 40 bits).
        pa = f32(-za) * f32(sa)
        pb = f32(-zb) * f32(sb)
        da = (qa * np.float64(f32(sa)) + np.float64(pa)).astype(f32)
        db = (qb * np.float64(f32(sb)) + np.float64(pb)).astype(f32)
    else:
        da = (qa - za).astype(f32) * f32(sa)
        db = (qb - zb).astype(f32) * f32(sb)
    v = (da + db).astype(f32)
    if relu:
        v = np.maximum(v, f32(0))
    t = (v * (f32(1) / f32(s))).astype(f32)
    return np.clip(np.rint(t) + z, qmin, qmax).astype(np.int64), t


CASES = [
    # name, dtype, (a_scale, a_zp), (b_scale, b_zp), (scale, zp)
    ("u8_ties", "quint8", (0.1, 3), (0.1, 0), (0.2, 1)),
    ("u8_mixed", "quint8", (0.05, 7), (0.15, 2), (0.1, 2)),
    ("u8_saturate", "quint8", (0.3, 128), (0.1, 0), (0.02, 100)),
    ("u8_wide_out", "quint8", (0.7, 0), (0.3, 255), (0.2, 5)),
    ("u8_fine", "quint8", (0.02, 5), (0.02, 9), (0.08, 0)),
    ("s8_ties", "qint8", (0.1, 1), (0.1, -2), (0.2, 0)),
    ("s8_mixed", "qint8", (0.05, -5), (0.15, 3), (0.1, -1)),
    ("s8_saturate", "qint8", (0.25, 0), (0.125, -128), (0.01, 10)),
    ("s8_odd_scales", "qint8", (0.0123, 17), (0.0456, -33), (0.0789, 4)),
]


def main():
    out = {"torch_version": torch.__version__, "cases": []}
    totals = {"elements": 0, "fused_vs_plain": 0, "ties": 0, "saturated": 0}
    for name, dt, (sa, za), (sb, zb), (s, z) in CASES:
        qmin, qmax, npdt, tdt = (0, 255, np.uint8, torch.quint8) if dt == "quint8" else (-128, 127, np.int8, torch.qint8)
        n = 128
        qa = rng.integers(qmin, qmax + 1, n)
        qb = rng.integers(qmin, qmax + 1, n)
        # The code range's ends, so saturation and zero points at the ends are exercised.
        qa[:4] = [qmin, qmax, qmin, qmax]
        qb[:4] = [qmin, qmax, qmax, qmin]
        A = torch._make_per_tensor_quantized_tensor(torch.from_numpy(qa.astype(npdt)), sa, za)
        B = torch._make_per_tensor_quantized_tensor(torch.from_numpy(qb.astype(npdt)), sb, zb)
        for relu in (False, True):
            fn = torch.ops.quantized.add_relu if relu else torch.ops.quantized.add
            got = fn(A, B, s, z).int_repr().numpy().astype(np.int64)
            fused, t = emulate(qa, sa, za, qb, sb, zb, s, z, relu, qmin, qmax, True)
            plain, _ = emulate(qa, sa, za, qb, sb, zb, s, z, relu, qmin, qmax, False)
            if not np.array_equal(got, fused):
                sys.exit(f"{name}: torch differs from the fused emulation at {np.nonzero(got != fused)[0]}")
            totals["elements"] += n
            totals["fused_vs_plain"] += int((fused != plain).sum())
            totals["ties"] += int((np.abs(t - np.trunc(t)) == 0.5).sum())
            totals["saturated"] += int(((np.rint(t) + z < qmin) | (np.rint(t) + z > qmax)).sum())
            out["cases"].append({
                "name": name + ("_relu" if relu else ""), "dtype": dt, "relu": relu,
                "a_scale": sa, "a_zero_point": za, "b_scale": sb, "b_zero_point": zb,
                "scale": s, "zero_point": z,
                "shape": [4, n // 4],
                "a": [int(v) for v in qa], "b": [int(v) for v in qb], "out": [int(v) for v in got],
            })
    print(f"qadd golden: {totals}", file=sys.stderr)
    json.dump(out, sys.stdout, separators=(",", ":"))
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
