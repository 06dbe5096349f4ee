#!/usr/bin/env python3
"""PyTorch peer of bench/optim_step: times opt.step() over F32 parameters holding gradients.

  /usr/bin/python3 bench/peers/torch_optim_step.py --optimizer adam --params 1000000 --threads 2 [--foreach]
Prints one JSON object like the C++ benchmark (best and median of repeats).
"""
import argparse
import json
import time

import torch


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--optimizer", default="adam", choices=["adam", "adamw", "sgd"])
    ap.add_argument("--params", type=int, default=1_000_000)
    ap.add_argument("--tensors", type=int, default=1)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--foreach", default="false", choices=["false", "true", "default"])
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    each = a.params // a.tensors
    ps = []
    for t in range(a.tensors):
        n = a.params - each * (a.tensors - 1) if t + 1 == a.tensors else each
        p = torch.full((n,), 0.5, requires_grad=True)
        p.grad = torch.full((n,), 0.01)
        ps.append(p)
    kw = {} if a.foreach == "default" else {"foreach": a.foreach == "true"}
    if a.optimizer == "adam":
        opt = torch.optim.Adam(ps, lr=1e-3, **kw)
    elif a.optimizer == "adamw":
        opt = torch.optim.AdamW(ps, lr=1e-3, **kw)
    else:
        opt = torch.optim.SGD(ps, lr=1e-3, momentum=0.9, **kw)
    for _ in range(5):
        opt.step()
    per_step = []
    for _ in range(a.repeats):
        t0 = time.perf_counter()
        for _ in range(a.steps):
            opt.step()
        per_step.append((time.perf_counter() - t0) / a.steps)
    per_step.sort()
    best, median = per_step[0], per_step[len(per_step) // 2]
    print(json.dumps({"impl": "torch " + torch.__version__ + " foreach=" + a.foreach, "optimizer": a.optimizer,
                      "params": a.params, "tensors": a.tensors, "threads": a.threads,
                      "us_per_step": round(best * 1e6, 2), "ns_per_param": round(best * 1e9 / a.params, 3),
                      "median_ns_per_param": round(median * 1e9 / a.params, 3)}))


if __name__ == "__main__":
    main()
