#!/usr/bin/env python3
"""PyTorch peer of bench/train_step: one training step (zero_grad, forward, cross-entropy,
backward, optimizer step) of the examples' networks on a fixed random batch: the MNIST mlp and
cnn, and the CIFAR-10 ResNet-20 and airbench94 networks (examples/common/cifar_nets.h).

  /usr/bin/python3 bench/peers/torch_train_step.py --model mlp --batch-size 64 --optimizer adam --threads 2
  /usr/bin/python3 bench/peers/torch_train_step.py --model cnn --precision bf16 --threads 2
  /usr/bin/python3 bench/peers/torch_train_step.py --model airbench --batch-size 1024 --precision bf16
Prints one JSON object with the same fields as the C++ benchmark.

The CIFAR models train as their recipes do (optimizer "auto", the default for them):
  resnet20  SGD momentum 0.9, nesterov, lr 0.1, weight decay 5e-4; cross-entropy (mean)
  airbench  airbench94's SGD: nesterov momentum 0.85, lr 11.5 / kilostep_scale, decoupled weight
            decay 0.0153 per 1024 examples, BatchNorm biases at 64x the learning rate; cross-entropy
            with label smoothing 0.2 summed over the batch; the whitening conv's weight and the
            BatchNorm weights frozen (requires_grad False)
Inputs are NCHW (contiguous), as on the Mantissa side.

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


class BasicBlock(nn.Module):
    """He et al.'s CIFAR ResNet block: two 3x3 convs with BatchNorm and ReLU. Shortcut option B:
    a 1x1 stride-2 conv + BatchNorm where the width or resolution changes (torchvision's block)."""

    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        h = F.relu(self.bn1(self.conv1(x)))
        h = self.bn2(self.conv2(h))
        return F.relu(h + (x if self.downsample is None else self.downsample(x)))


class ResNet20(nn.Module):
    """ResNet-20 for CIFAR-10 (He et al. 2016, section 4.2): 3x3 conv to 16, three stages of
    three blocks at widths 16/32/64 (stride 2 entering stages 2 and 3), global average pool,
    linear 64 -> 10."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        layers, cin = [], 16
        for width, stride in ((16, 1), (32, 2), (64, 2)):
            blocks = []
            for i in range(3):
                blocks.append(BasicBlock(cin, width, stride if i == 0 else 1))
                cin = width
            layers.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = layers
        self.fc = nn.Linear(64, 10)

    def forward(self, x):
        h = F.relu(self.bn1(self.conv1(x)))
        h = self.layer3(self.layer2(self.layer1(h)))
        return self.fc(h.mean((2, 3)))  # global average pool


class AirbenchBatchNorm(nn.BatchNorm2d):
    """airbench94's BatchNorm: eps 1e-12, momentum 0.6 in airbench's convention (PyTorch's 0.4),
    weight frozen at 1, bias trained."""

    def __init__(self, num_features):
        super().__init__(num_features, eps=1e-12, momentum=1 - 0.6)
        self.weight.requires_grad = False


def airbench_conv(cin, cout, kernel_size=3, padding="same", bias=False):
    conv = nn.Conv2d(cin, cout, kernel_size, padding=padding, bias=bias)
    if bias:
        conv.bias.data.zero_()
    torch.nn.init.dirac_(conv.weight.data[:cin])  # airbench's identity init of the first channels
    return conv


class ConvGroup(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.conv1 = airbench_conv(cin, cout)
        self.pool = nn.MaxPool2d(2)
        self.norm1 = AirbenchBatchNorm(cout)
        self.conv2 = airbench_conv(cout, cout)
        self.norm2 = AirbenchBatchNorm(cout)
        self.activ = nn.GELU()

    def forward(self, x):
        x = self.activ(self.norm1(self.pool(self.conv1(x))))
        return self.activ(self.norm2(self.conv2(x)))


class Airbench94(nn.Module):
    """airbench94's network (Keller Jordan, cifar10-airbench): a 2x2 patch-whitening conv 3 -> 24
    (no padding, weight frozen; its bias trains), GELU, ConvGroups of widths 64/256/256, max pool
    3, linear 256 -> 10 without bias, logits scaled by 1/9. The whitening weights come from the
    data in the recipe; a benchmark on random data keeps the random init (same cost)."""

    def __init__(self):
        super().__init__()
        self.whiten = airbench_conv(3, 24, kernel_size=2, padding=0, bias=True)
        self.whiten.weight.requires_grad = False
        self.group1 = ConvGroup(24, 64)
        self.group2 = ConvGroup(64, 256)
        self.group3 = ConvGroup(256, 256)
        self.pool = nn.MaxPool2d(3)
        self.head = nn.Linear(256, 10, bias=False)

    def forward(self, x):
        h = F.gelu(self.whiten(x))
        h = self.group3(self.group2(self.group1(h)))
        h = torch.flatten(self.pool(h), 1)
        return self.head(h) * (1 / 9)


CIFAR_MODELS = ("resnet20", "airbench")


def make_sgd(a, model, params):
    """The CIFAR recipes' SGD over the trainable parameters (see the module docstring)."""
    if a.model == "airbench":
        momentum, batch = 0.85, 1024
        kilostep_scale = 1024 * (1 + 1 / (1 - momentum))
        lr = 11.5 / kilostep_scale
        wd = 0.0153 * batch / kilostep_scale
        lr_biases = lr * 64.0
        names = {id(p): n for n, p in model.named_parameters()}
        trainable = [p for p in params if p.requires_grad]
        norm_biases = [p for p in trainable if "norm" in names.get(id(p), "")]
        others = [p for p in trainable if "norm" not in names.get(id(p), "")]
        groups = [dict(params=norm_biases, lr=lr_biases, weight_decay=wd / lr_biases),
                  dict(params=others, lr=lr, weight_decay=wd / lr)]
        return torch.optim.SGD(groups, momentum=momentum, nesterov=True)
    return torch.optim.SGD([p for p in params if p.requires_grad], lr=0.1, momentum=0.9, nesterov=True,
                           weight_decay=5e-4)


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
    ap.add_argument("--model", default="mlp", choices=["mlp", "cnn", "resnet20", "airbench"])
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--optimizer", default="auto", choices=["auto", "adam", "adamw", "sgd"],
                    help="auto: adam for mlp/cnn, the recipe's SGD for resnet20/airbench")
    ap.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    ap.add_argument("--precision", default="fp32", choices=PRECISIONS)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--zero-grad", default="none", choices=["none", "zero"])
    a = ap.parse_args()
    cifar = a.model in CIFAR_MODELS
    if a.optimizer == "auto":
        a.optimizer = "sgd" if cifar else "adam"
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
    model = {"cnn": MnistCnn, "mlp": MnistMlp, "resnet20": ResNet20, "airbench": Airbench94}[a.model]().to(dev)
    master = p.endswith("-master")
    if master or p.startswith("bf16-pure"):
        model.to(low)
        for mod in model.modules():  # BatchNorm stays F32 (its parameters and running statistics)
            if isinstance(mod, nn.BatchNorm2d):
                mod.float()
    params = [q for q in model.parameters() if q.requires_grad]
    # Master policies: the optimizer steps F32 copies; the model keeps the 16-bit working copies.
    opt_params = [q.detach().float().requires_grad_() for q in params] if master else params
    if cifar and a.optimizer == "sgd":
        if master:
            # The recipe's groups, keyed by the working copies' names, over the F32 masters.
            opt = make_sgd(a, model, params)
            index = {id(q): i for i, q in enumerate(params)}
            for group in opt.param_groups:
                group["params"] = [opt_params[index[id(q)]] for q in group["params"]]
        else:
            opt = make_sgd(a, model, params)
    elif a.optimizer == "adam":
        opt = torch.optim.Adam(opt_params, lr=1e-3)
    elif a.optimizer == "adamw":
        opt = torch.optim.AdamW(opt_params, lr=1e-3)
    else:
        opt = torch.optim.SGD(opt_params, lr=0.01, momentum=0.9, nesterov=True)
    use_scaler = p in ("fp16", "fp16-master")
    scaler = torch.cuda.amp.GradScaler(enabled=use_scaler)
    x = torch.randn(a.batch_size, *((3, 32, 32) if cifar else (1, 28, 28)), device=dev)
    y = torch.tensor([(i * 7 + 3) % 10 for i in range(a.batch_size)], device=dev)
    set_to_none = a.zero_grad == "none"

    last = [0.0]

    def step():
        opt.zero_grad(set_to_none=set_to_none)
        if master:
            for q in params:
                q.grad = None
        with torch.autocast(dev.type, dtype=low, enabled=autocast):
            if a.model == "airbench":
                loss = F.cross_entropy(model(x).float(), y, label_smoothing=0.2, reduction="sum")
            else:
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
