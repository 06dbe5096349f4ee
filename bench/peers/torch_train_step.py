#!/usr/bin/env python3
"""PyTorch peer of bench/train_step: one training step (zero_grad, forward, cross-entropy,
backward, optimizer step) of the MNIST example's networks on a fixed random batch.

  /usr/bin/python3 bench/peers/torch_train_step.py --model mlp --batch-size 64 --optimizer adam --threads 2
  /usr/bin/python3 bench/peers/torch_train_step.py --model cnn --precision bf16 --threads 2
Prints one JSON object with the same fields as the C++ benchmark.

--precision follows Mantissa's policy names (amp/policy.h) with what PyTorch offers:
  fp32             plain F32
  bf16 / fp16      torch.autocast(device, dtype) around forward + loss; fp16 adds
                   torch.cuda.amp.GradScaler, fp16-noscale does not
  bf16-master      the model in BF16, F32 master copies stepped by the optimizer (Apex O2 by hand:
  fp16-master      gradients widened into the masters, masters copied back), autocast as above;
                   fp16-master unscales through GradScaler's unscale_ on the master gradients
  bf16-pure        the model and optimizer state in BF16 (PyTorch rounds to nearest)
  bf16-pure-sr/-kahan  no PyTorch equivalent: timed as bf16-pure, and the output says so
torch 1.13's CPU autocast supports bfloat16 only: an F16 policy on the CPU prints a JSON object
with "unsupported" set and no timings.
"""
import argparse
import json
import resource
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class MnistCnn(nn.Module):
    """PyTorch's examples/mnist Net, returning logits (trained with cross_entropy)."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3)
        self.conv2 = nn.Conv2d(32, 64, 3)
        self.dropout1 = nn.Dropout(0.25)
        self.dropout2 = nn.Dropout(0.5)
        self.fc1 = nn.Linear(9216, 128)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x):
        h = F.relu(self.conv1(x))
        h = F.relu(self.conv2(h))
        h = F.max_pool2d(h, 2)
        h = self.dropout1(h)
        h = torch.flatten(h, 1)
        h = F.relu(self.fc1(h))
        h = self.dropout2(h)
        return self.fc2(h)


class MnistMlp(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(784, 512)
        self.fc2 = nn.Linear(512, 256)
        self.fc3 = nn.Linear(256, 10)

    def forward(self, x):
        h = torch.flatten(x, 1)
        h = F.relu(self.fc1(h))
        h = F.relu(self.fc2(h))
        return self.fc3(h)


PRECISIONS = ["fp32", "fp16", "bf16", "fp16-noscale", "fp16-master", "bf16-master", "bf16-pure", "bf16-pure-sr",
              "bf16-pure-kahan"]


def report(a, **fields):
    out = {"impl": "torch " + torch.__version__, "model": a.model, "batch_size": a.batch_size,
           "optimizer": a.optimizer, "device": a.device, "precision": a.precision, "threads": a.threads,
           "steps": a.steps, "repeats": a.repeats}
    out.update(fields)
    print(json.dumps(out))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="mlp", choices=["mlp", "cnn"])
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--optimizer", default="adam", choices=["adam", "adamw", "sgd"])
    ap.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    ap.add_argument("--precision", default="fp32", choices=PRECISIONS)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--zero-grad", default="none", choices=["none", "zero"])
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    dev = torch.device(a.device)
    p = a.precision
    low = torch.float16 if p.startswith("fp16") else torch.bfloat16
    autocast = p != "fp32"
    if autocast and dev.type == "cpu" and low == torch.float16:
        report(a, unsupported="torch %s CPU autocast supports only bfloat16 (no float16 peer for %s on the CPU)"
               % (torch.__version__, p))
        return
    note = None
    if p in ("bf16-pure-sr", "bf16-pure-kahan"):
        note = "PyTorch has no stochastic-rounding or Kahan BF16 update: timed as bf16-pure (round to nearest)"
    model = (MnistCnn() if a.model == "cnn" else MnistMlp()).to(dev)
    master = p.endswith("-master")
    if master or p.startswith("bf16-pure"):
        model.to(low)  # the MNIST networks have no BatchNorm, which would stay F32
    params = list(model.parameters())
    # Master policies: the optimizer steps F32 copies; the model keeps the 16-bit working copies.
    opt_params = [q.detach().float().requires_grad_() for q in params] if master else params
    if a.optimizer == "adam":
        opt = torch.optim.Adam(opt_params, lr=1e-3)
    elif a.optimizer == "adamw":
        opt = torch.optim.AdamW(opt_params, lr=1e-3)
    else:
        opt = torch.optim.SGD(opt_params, lr=0.01, momentum=0.9, nesterov=True)
    use_scaler = p in ("fp16", "fp16-master")
    scaler = torch.cuda.amp.GradScaler(enabled=use_scaler)
    x = torch.randn(a.batch_size, 1, 28, 28, device=dev)
    y = torch.tensor([(i * 7 + 3) % 10 for i in range(a.batch_size)], device=dev)
    set_to_none = a.zero_grad == "none"

    last = [0.0]

    def step():
        opt.zero_grad(set_to_none=set_to_none)
        if master:
            for q in params:
                q.grad = None
        with torch.autocast(dev.type, dtype=low, enabled=autocast):
            loss = F.cross_entropy(model(x).float(), y)
        scaler.scale(loss).backward()
        if master:
            for m, q in zip(opt_params, params):
                m.grad = q.grad.float()
        scaler.step(opt)
        scaler.update()
        if master:
            with torch.no_grad():
                for m, q in zip(opt_params, params):
                    q.copy_(m)  # round to nearest into the working copy
        last[0] = loss.item()

    for _ in range(a.warmup):
        step()
    per_step = []
    for _ in range(a.repeats):
        if dev.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(a.steps):
            step()
        if dev.type == "cuda":
            torch.cuda.synchronize()
        per_step.append((time.perf_counter() - t0) / a.steps)
    per_step.sort()
    best, median = per_step[0], per_step[len(per_step) // 2]
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    fields = {"ms_per_step": round(best * 1e3, 3), "median_ms_per_step": round(median * 1e3, 3),
              "images_per_s": round(a.batch_size / best, 1), "peak_rss_mb": round(rss_mb, 1),
              "loss": round(last[0], 4)}
    if note:
        fields["note"] = note
    report(a, **fields)


if __name__ == "__main__":
    main()
