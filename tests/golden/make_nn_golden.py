#!/usr/bin/env python3
"""Golden module names, shapes, reprs and one forward/backward pass, made by PyTorch.

Run with Debian's python3-torch (1.13):  /usr/bin/python3 tests/golden/make_nn_golden.py
Writes tests/golden/nn.json, read by tests/nn/test_module.cpp and tests/nn/test_layers.cpp:
  - models: named_parameters, named_buffers and state_dict (name, shape, dtype) and the printed
    repr of two nested models (a Sequential holding BasicBlocks, and a Net with named children);
  - reprs: the printed form of single layers, keyed by the constructor call;
  - forward: the Sequential model's state_dict values, an input and target, and after one
    training-mode step its output, cross-entropy loss, parameter grads and updated running
    statistics, then its eval-mode output.
BasicBlock mirrors torchvision.models.resnet.BasicBlock (torchvision is not installed here);
torchvision's relu is ReLU(inplace=True), printed "ReLU(inplace=True)", ours prints "ReLU()".
"""
import json
import os

import torch
from torch import nn


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes, planes, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = None
        if stride != 1 or inplanes != planes:
            self.downsample = nn.Sequential(nn.Conv2d(inplanes, planes, 1, stride=stride, bias=False),
                                            nn.BatchNorm2d(planes))
        self.stride = stride

    def forward(self, x):
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        return self.relu(out + identity)


def sequential_model():
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4), nn.ReLU(),
        BasicBlock(4, 6, stride=2), BasicBlock(6, 6),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(6, 5), nn.BatchNorm1d(5), nn.GELU(), nn.Linear(5, 3))


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(10, 4)
        self.features = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.MaxPool2d(2), BasicBlock(4, 4))
        self.norm = nn.LayerNorm(16)
        self.classifier = nn.Sequential(nn.Flatten(), nn.Dropout(0.25), nn.Linear(16, 10))


def dtype_name(t):
    return {torch.float32: "F32", torch.int64: "I64"}[t.dtype]


def flat(t):
    return [float("%.9g" % v) for v in t.detach().reshape(-1).tolist()]


def entries(named, with_dtype):
    return [[n, list(t.shape)] + ([dtype_name(t)] if with_dtype else []) for n, t in named]


def describe(model):
    return {
        "named_parameters": entries(model.named_parameters(), False),
        "named_buffers": entries(model.named_buffers(), True),
        "state_dict": entries(model.state_dict().items(), True),
        "repr": repr(model),
    }


def layer_reprs():
    layers = {
        "Linear(784, 10)": nn.Linear(784, 10),
        "Linear(784, 10, bias=False)": nn.Linear(784, 10, bias=False),
        "Conv2d(1, 32, 3)": nn.Conv2d(1, 32, 3),
        "Conv2d(3, 16, (3, 5), stride=2, padding=(1, 2), dilation=2, bias=False)":
            nn.Conv2d(3, 16, (3, 5), stride=2, padding=(1, 2), dilation=2, bias=False),
        "Conv2d(4, 8, 3, groups=2)": nn.Conv2d(4, 8, 3, groups=2),
        "BatchNorm1d(32)": nn.BatchNorm1d(32),
        "BatchNorm2d(64, eps=1e-3, momentum=None, affine=False, track_running_stats=False)":
            nn.BatchNorm2d(64, eps=1e-3, momentum=None, affine=False, track_running_stats=False),
        "LayerNorm(16)": nn.LayerNorm(16),
        "LayerNorm([4, 5], eps=1e-6, elementwise_affine=False)":
            nn.LayerNorm([4, 5], eps=1e-6, elementwise_affine=False),
        "Dropout()": nn.Dropout(),
        "Dropout(0.25)": nn.Dropout(0.25),
        "ReLU()": nn.ReLU(),
        "GELU()": nn.GELU(),
        "GELU(approximate='tanh')": nn.GELU(approximate="tanh"),
        "SiLU()": nn.SiLU(),
        "Tanh()": nn.Tanh(),
        "Sigmoid()": nn.Sigmoid(),
        "Softmax(dim=1)": nn.Softmax(dim=1),
        "LogSoftmax(dim=1)": nn.LogSoftmax(dim=1),
        "MaxPool2d(2)": nn.MaxPool2d(2),
        "MaxPool2d(3, stride=2, padding=1)": nn.MaxPool2d(3, stride=2, padding=1),
        "AvgPool2d(2)": nn.AvgPool2d(2),
        "AvgPool2d((2, 3))": nn.AvgPool2d((2, 3)),
        "AdaptiveAvgPool2d(1)": nn.AdaptiveAvgPool2d(1),
        "AdaptiveAvgPool2d((2, 3))": nn.AdaptiveAvgPool2d((2, 3)),
        "Flatten()": nn.Flatten(),
        "Embedding(10, 3)": nn.Embedding(10, 3),
        "CrossEntropyLoss()": nn.CrossEntropyLoss(),
        "NLLLoss()": nn.NLLLoss(),
        "MSELoss()": nn.MSELoss(),
        "BasicBlock(4, 4)": BasicBlock(4, 4),
    }
    return {k: repr(v) for k, v in layers.items()}


def forward_case():
    torch.manual_seed(0)
    model = sequential_model()
    # Non-trivial norm parameters and statistics, so the test sees each of them used.
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.5, 0.5)
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2.0)
    state = [[n, list(t.shape), flat(t)] for n, t in model.state_dict().items()]
    x = torch.randn(2, 3, 6, 6)
    target = torch.tensor([2, 0])
    model.train()
    out = model(x)
    loss = nn.functional.cross_entropy(out, target)
    loss.backward()
    grads = [[n, flat(p.grad)] for n, p in model.named_parameters()]
    after = [[n, flat(t)] for n, t in model.state_dict().items() if "running" in n or "num_batches" in n]
    model.eval()
    with torch.no_grad():
        eval_out = model(x)
    return {
        "state_dict": state,
        "input_shape": list(x.shape), "input": flat(x), "target": target.tolist(),
        "train_output": flat(out), "loss": float(loss), "grads": grads, "buffers_after": after,
        "eval_output": flat(eval_out),
    }


def main():
    out = {
        "torch": torch.__version__,
        "models": {"sequential": describe(sequential_model()), "net": describe(Net())},
        "reprs": layer_reprs(),
        "forward": forward_case(),
    }
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "nn.json")
    with open(path, "w") as f:
        json.dump(out, f, indent=None, separators=(",", ":"))
        f.write("\n")
    print("wrote", path, os.path.getsize(path), "bytes")


if __name__ == "__main__":
    main()
