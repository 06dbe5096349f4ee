#!/usr/bin/env python3
"""Merges bench/ops JSON (Mantissa) and bench/peers/torch_ops.py JSON (PyTorch), run on the
same device, into one markdown table: each figure, the ratio Mantissa / PyTorch, and the
fraction of a reference.

    compare.py mantissa.json torch.json [--peak-f32 GFLOPS] [--peak-bf16 GFLOPS] [--json]

Matmul fractions are of the given peaks (CPU defaults: 540 and 1000 GFLOP/s, the 2-core
machine of docs/PERFORMANCE.md; CUDA: none unless given, F16 uses the BF16 peak). Bandwidth
fractions are of the best copy figure of either framework in the run (read + write traffic);
read-only streams such as sum, and streams with a narrow side (casts), can exceed it.
On CUDA, matmul figures are printed in TFLOP/s. --json prints the merged rows as JSON instead.
"""
import argparse
import json
import sys


def key(r):
    return (r["op"], r["dtype"], r.get("size", r.get("numel")))


def merge(ours, peer, peak_f32=None, peak_bf16=None):
    """Rows of {op, dtype, size, unit, ours, peer, ratio, fraction} (None where unknown)."""
    if ours.get("device", "cpu") != peer.get("device", "cpu"):
        sys.exit(f"compare.py: the runs are on different devices ({ours.get('device', 'cpu')} vs "
                 f"{peer.get('device', 'cpu')})")
    pr = {key(r): r for r in peer["results"]}
    copy_bw = max((r["gbps"] for r in ours["results"] + peer["results"] if r["op"] == "copy"), default=None)
    out = []
    for r in ours["results"]:
        q = pr.get(key(r))
        if "gflops" in r:
            unit, mine, theirs = "GFLOP/s", r["gflops"], (q["gflops"] if q else None)
            peak = peak_f32 if r["dtype"] == "F32" else peak_bf16
            size = r["size"]
        else:
            unit, mine, theirs = "GB/s", r["gbps"], (q["gbps"] if q else None)
            peak = copy_bw
            size = r["numel"]
        out.append({"op": r["op"], "dtype": r["dtype"], "size": size, "unit": unit, "ours": mine, "peer": theirs,
                    "ratio": mine / theirs if theirs else None, "fraction": mine / peak if peak else None})
    return out, copy_bw


def main():
    p = argparse.ArgumentParser()
    p.add_argument("ours")
    p.add_argument("peer")
    p.add_argument("--peak-f32", type=float, default=None, help="GFLOP/s")
    p.add_argument("--peak-bf16", type=float, default=None, help="GFLOP/s")
    p.add_argument("--json", action="store_true")
    a = p.parse_args()
    ours = json.load(open(a.ours))
    peer = json.load(open(a.peer))
    device = ours.get("device", "cpu")
    peak_f32, peak_bf16 = a.peak_f32, a.peak_bf16
    if device == "cpu":
        peak_f32 = 540.0 if peak_f32 is None else peak_f32
        peak_bf16 = 1000.0 if peak_bf16 is None else peak_bf16
    rows, copy_bw = merge(ours, peer, peak_f32, peak_bf16)
    if a.json:
        print(json.dumps({"device": device, "copy_gbps": copy_bw, "rows": rows}, indent=1))
        return
    tflops = device == "cuda"

    def fmt(v, unit):
        if v is None:
            return "-"
        if unit == "GFLOP/s" and tflops:
            return f"{v / 1000:.1f} TFLOP/s"
        return f"{v} {unit}"

    print(f"| op | dtype | size | Mantissa | {peer['framework']} | ratio | Mantissa / peak |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        size = str(r["size"]) if r["unit"] != "GB/s" else f"{r['size'] // (1 << 20)}M"
        ratio = f"{r['ratio']:.2f}x" if r["ratio"] else "-"
        frac = f"{100 * r['fraction']:.0f}%" if r["fraction"] else "-"
        print(f"| {r['op']} | {r['dtype']} | {size} | {fmt(r['ours'], r['unit'])} | {fmt(r['peer'], r['unit'])} "
              f"| {ratio} | {frac} |")


if __name__ == "__main__":
    main()
