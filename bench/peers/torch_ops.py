#!/usr/bin/env python3
"""The same work as bench/ops in PyTorch: matmul GFLOP/s and GB/s of copy, add, relu, sum and
the F32<->BF16 casts, with the same best-of-runs timing, defaults and JSON.

    torch_ops.py [--device cpu|cuda] [--threads 2] [--sizes 256,512,1024,2048] [--numel N] [--min-time 0.5]

CPU defaults: F32 and BF16 matmul at 256..2048, 16M elements. CUDA defaults: F32, F16 and BF16
matmul at 1024, 2048, 4096, 64M elements. On CUDA, calls are timed in batches of >= 5 ms
between two torch.cuda.synchronize() calls (bench/ops does the same with its device sync), and
PyTorch's own defaults are kept (no TF32 for F32 matmul; they are recorded in the JSON).
"""
import argparse
import json
import time

import torch


def best_time(fn, min_total, cuda):
    if not cuda:
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
    fn()
    torch.cuda.synchronize()
    batch = 1
    while True:
        t0 = time.perf_counter()
        for _ in range(batch):
            fn()
        torch.cuda.synchronize()
        if time.perf_counter() - t0 >= 5e-3 or batch >= 1 << 20:
            break
        batch *= 2
    best, total, runs = 1e30, 0.0, 0
    while total < min_total or runs < 5:
        t0 = time.perf_counter()
        for _ in range(batch):
            fn()
        torch.cuda.synchronize()
        dt = time.perf_counter() - t0
        best = min(best, dt / batch)
        total += dt
        runs += 1
    return best


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--sizes", default=None)
    p.add_argument("--numel", type=int, default=None)
    p.add_argument("--min-time", type=float, default=0.5)
    a = p.parse_args()
    cuda = a.device == "cuda"
    if cuda and not torch.cuda.is_available():
        raise SystemExit("torch_ops.py: --device cuda: torch.cuda.is_available() is False")
    sizes = a.sizes or ("1024,2048,4096" if cuda else "256,512,1024,2048")
    n = a.numel or ((1 << 26) if cuda else (1 << 24))
    torch.set_num_threads(a.threads)
    torch.set_grad_enabled(False)
    dev = torch.device(a.device)

    def inp(shape, dt):
        return torch.randn(*shape, device=dev).to(dt)

    rows = []
    mm_types = [(torch.float32, "F32"), (torch.bfloat16, "BF16")]
    if cuda:
        mm_types = [(torch.float32, "F32"), (torch.float16, "F16"), (torch.bfloat16, "BF16")]
    for dt, name in mm_types:
        for s in (int(v) for v in sizes.split(",")):
            x = inp((s, s), dt)
            y = inp((s, s), dt)
            t = best_time(lambda: torch.mm(x, y), a.min_time, cuda)
            rows.append({"op": "matmul", "dtype": name, "size": s, "gflops": round(2.0 * s ** 3 / t / 1e9, 1)})
            del x, y
    x, y = inp((n,), torch.float32), inp((n,), torch.float32)
    dst = torch.empty(n, device=dev)
    xb = x.to(torch.bfloat16)

    def bw(op, dtype, nbytes, fn):
        t = best_time(fn, a.min_time, cuda)
        rows.append({"op": op, "dtype": dtype, "numel": n, "gbps": round(nbytes / t / 1e9, 1)})

    bw("copy", "F32", 8 * n, lambda: dst.copy_(x))
    bw("add", "F32", 12 * n, lambda: torch.add(x, y))
    bw("relu", "F32", 8 * n, lambda: torch.relu(x))
    bw("sum", "F32", 4 * n, lambda: torch.sum(x))
    bw("cast_f32_to_bf16", "F32->BF16", 6 * n, lambda: x.to(torch.bfloat16))
    bw("cast_bf16_to_f32", "BF16->F32", 6 * n, lambda: xb.to(torch.float32))
    out = {"framework": "torch " + torch.__version__, "device": a.device, "threads": a.threads}
    if cuda:
        out["gpu"] = torch.cuda.get_device_name(0)
        out["allow_tf32"] = torch.backends.cuda.matmul.allow_tf32
        out["allow_bf16_reduced_precision_reduction"] = torch.backends.cuda.matmul.allow_bf16_reduced_precision_reduction
    out["results"] = rows
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
