#!/usr/bin/env python3
"""PyTorch peer of bench/train_step: one training step (zero_grad, forward, cross-entropy,
backward, optimizer step) of the MNIST example's networks on a fixed random batch.

  /usr/bin/python3 bench/peers/torch_train_step.py --model mlp --batch-size 64 --optimizer adam --threads 2
Prints one JSON object with the same fields as the C++ benchmark.
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


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="mlp", choices=["mlp", "cnn"])
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--optimizer", default="adam", choices=["adam", "adamw", "sgd"])
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--zero-grad", default="none", choices=["none", "zero"])
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    dev = torch.device(a.device)
    model = (MnistCnn() if a.model == "cnn" else MnistMlp()).to(dev)
    if a.optimizer == "adam":
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    elif a.optimizer == "adamw":
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    else:
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True)
    x = torch.randn(a.batch_size, 1, 28, 28, device=dev)
    y = torch.tensor([(i * 7 + 3) % 10 for i in range(a.batch_size)], device=dev)
    set_to_none = a.zero_grad == "none"

    last = [0.0]

    def step():
        opt.zero_grad(set_to_none=set_to_none)
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
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
    print(json.dumps({"impl": "torch " + torch.__version__, "model": a.model, "batch_size": a.batch_size,
                      "optimizer": a.optimizer, "device": a.device, "threads": a.threads, "steps": a.steps,
                      "repeats": a.repeats, "ms_per_step": round(best * 1e3, 3),
                      "median_ms_per_step": round(median * 1e3, 3),
                      "images_per_s": round(a.batch_size / best, 1), "peak_rss_mb": round(rss_mb, 1),
                      "loss": round(last[0], 4)}))


if __name__ == "__main__":
    main()
