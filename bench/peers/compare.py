#!/usr/bin/env python3
"""Merges bench/ops JSON (Mantissa) and bench/peers/torch_ops.py JSON (PyTorch) into one
markdown table with the ratio and each figure as a fraction of the machine's peak.

    compare.py mantissa.json torch.json [--peak-f32 540] [--peak-bf16 1000]
Bandwidth figures are given as a fraction of the best copy bandwidth measured in the run (either
framework's copy_, read + write); read-only streams such as sum can exceed it.
"""
import argparse
import json


def key(r):
    return (r["op"], r["dtype"], r.get("size", r.get("numel")))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("ours")
    p.add_argument("peer")
    p.add_argument("--peak-f32", type=float, default=540.0)
    p.add_argument("--peak-bf16", type=float, default=1000.0)
    a = p.parse_args()
    ours = json.load(open(a.ours))
    peer = json.load(open(a.peer))
    pr = {key(r): r for r in peer["results"]}
    # Bandwidth reference: the best copy figure of either framework in this run.
    copy_bw = max((r["gbps"] for r in ours["results"] + peer["results"] if r["op"] == "copy"), default=None)
    print(f"| op | dtype | size | Mantissa | {peer['framework']} | ratio | Mantissa / peak |")
    print("|---|---|---|---|---|---|---|")
    for r in ours["results"]:
        q = pr.get(key(r))
        if "gflops" in r:
            unit, mine, theirs = "GFLOP/s", r["gflops"], q["gflops"] if q else None
            peak = a.peak_f32 if r["dtype"] == "F32" else a.peak_bf16
            size = str(r["size"])
        else:
            unit, mine, theirs = "GB/s", r["gbps"], q["gbps"] if q else None
            peak = copy_bw
            size = f"{r['numel'] // (1 << 20)}M"
        ratio = f"{mine / theirs:.2f}x" if theirs else "-"
        frac = f"{100 * mine / peak:.0f}%" if peak else "-"
        print(f"| {r['op']} | {r['dtype']} | {size} | {mine} {unit} | {theirs} {unit} | {ratio} | {frac} |")


if __name__ == "__main__":
    main()
