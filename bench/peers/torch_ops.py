#!/usr/bin/env python3
"""The same work as bench/ops in PyTorch: matmul GFLOP/s (F32, BF16) and GB/s of add, relu,
sum and the F32<->BF16 casts on 16M elements, with the same best-of-runs timing and JSON.

    torch_ops.py [--threads 2] [--sizes 256,512,1024,2048] [--numel 16777216] [--min-time 0.5]
"""
import argparse
import json
import time

import torch


def best_time(fn, min_total):
    fn()
    best, total, runs = 1e30, 0.0, 0
    while total < min_total or runs < 5:
        t0 = time.perf_counter()
        fn()
        dt = time.perf_counter() - t0
        best = min(best, dt)
        total += dt
        runs += 1
    return best


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--sizes", default="256,512,1024,2048")
    p.add_argument("--numel", type=int, default=16 * 1024 * 1024)
    p.add_argument("--min-time", type=float, default=0.5)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.set_grad_enabled(False)
    rows = []
    for dt, name in ((torch.float32, "F32"), (torch.bfloat16, "BF16")):
        for n in (int(s) for s in a.sizes.split(",")):
            x = torch.randn(n, n).to(dt)
            y = torch.randn(n, n).to(dt)
            t = best_time(lambda: torch.mm(x, y), a.min_time)
            rows.append({"op": "matmul", "dtype": name, "size": n, "gflops": round(2.0 * n ** 3 / t / 1e9, 1)})
    n = a.numel
    x, y = torch.randn(n), torch.randn(n)
    dst = torch.empty(n)
    xb = x.to(torch.bfloat16)

    def bw(op, dtype, nbytes, fn):
        t = best_time(fn, a.min_time)
        rows.append({"op": op, "dtype": dtype, "numel": n, "gbps": round(nbytes / t / 1e9, 1)})

    bw("copy", "F32", 8 * n, lambda: dst.copy_(x))
    bw("add", "F32", 12 * n, lambda: torch.add(x, y))
    bw("relu", "F32", 8 * n, lambda: torch.relu(x))
    bw("sum", "F32", 4 * n, lambda: torch.sum(x))
    bw("cast_f32_to_bf16", "F32->BF16", 6 * n, lambda: x.to(torch.bfloat16))
    bw("cast_bf16_to_f32", "BF16->F32", 6 * n, lambda: xb.to(torch.float32))
    print(json.dumps({"framework": "torch " + torch.__version__, "threads": a.threads, "results": rows}, indent=1))


if __name__ == "__main__":
    main()
