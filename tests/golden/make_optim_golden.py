#!/usr/bin/env python3
"""Golden trajectories for optimizers, LR schedulers and gradient clipping, made by PyTorch.

Run with Debian's python3-torch (1.13):  /usr/bin/python3 tests/golden/make_optim_golden.py
Writes tests/golden/optim.json. Every case stores its initial parameters, the gradient fed at
each step and the parameters after each step, so the C++ tests need no random generator of
PyTorch's and no PyTorch at all.
"""
import json
import os

import torch

torch.manual_seed(0)
STEPS = 6


def flat(t):
    return [float(v) for v in t.detach().reshape(-1).tolist()]


def make_params():
    g = torch.Generator().manual_seed(1)
    w = torch.randn(3, 2, generator=g)
    b = torch.randn(2, generator=g)
    return [w, b]


def make_grads():
    g = torch.Generator().manual_seed(2)
    return [[torch.randn(3, 2, generator=g), torch.randn(2, generator=g)] for _ in range(STEPS)]


def optimizer_case(name, ctor, groups=None, scheduler=None, steps=STEPS):
    init = make_params()
    params = [p.clone().requires_grad_() for p in init]
    grads = make_grads()
    if groups is None:
        opt = ctor(params)
    else:
        opt = ctor([{"params": [params[0]], **groups[0]}, {"params": [params[1]], **groups[1]}])
    sched = scheduler(opt) if scheduler else None
    traj, lrs = [], []
    for s in range(steps):
        for p, g in zip(params, grads[s]):
            p.grad = g.clone()
        opt.step()
        if sched:
            sched.step()
        traj.append([flat(p) for p in params])
        lrs.append([grp["lr"] for grp in opt.param_groups])
    return {
        "name": name,
        "shapes": [list(p.shape) for p in init],
        "init": [flat(p) for p in init],
        "grads": [[flat(g) for g in step] for step in grads[:steps]],
        "params": traj,
        "lrs": lrs,
    }


def scheduler_case(name, make, steps=14, optimizer="sgd"):
    p = torch.zeros(1, requires_grad=True)
    if optimizer == "sgd":
        opt = torch.optim.SGD([p], lr=0.1, momentum=0.9)
    else:
        opt = torch.optim.Adam([p], lr=0.1)
    sched = make(opt)
    lrs, moms = [], []
    for _ in range(steps):
        opt.step()
        sched.step()
        lrs.append(opt.param_groups[0]["lr"])
        g = opt.param_groups[0]
        moms.append(g["momentum"] if "momentum" in g else g["betas"][0])
    return {"name": name, "optimizer": optimizer, "lrs": lrs, "momentum": moms}


def clip_case(name, fn, **kw):
    init = make_grads()[0]
    params = [torch.zeros_like(g, requires_grad=True) for g in init]
    for p, g in zip(params, init):
        p.grad = g.clone() * 3
    total = fn(params, **kw)
    return {
        "name": name,
        "args": {k: ("inf" if v == float("inf") else float(v)) for k, v in kw.items()},
        "grads_in": [flat(g * 3) for g in init],
        "grads_out": [flat(p.grad) for p in params],
        "total_norm": None if total is None else float(total),
    }


def main():
    O = torch.optim
    cases = [
        optimizer_case("sgd", lambda p: O.SGD(p, lr=0.1)),
        optimizer_case("sgd_momentum", lambda p: O.SGD(p, lr=0.1, momentum=0.9)),
        optimizer_case("sgd_dampening_wd", lambda p: O.SGD(p, lr=0.05, momentum=0.9, dampening=0.1, weight_decay=0.01)),
        optimizer_case("sgd_nesterov", lambda p: O.SGD(p, lr=0.05, momentum=0.8, nesterov=True, weight_decay=0.001)),
        optimizer_case("adam", lambda p: O.Adam(p, lr=0.01)),
        optimizer_case("adam_wd_betas", lambda p: O.Adam(p, lr=0.02, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1)),
        optimizer_case("adam_amsgrad", lambda p: O.Adam(p, lr=0.01, amsgrad=True)),
        optimizer_case("adamw", lambda p: O.AdamW(p, lr=0.01, weight_decay=0.05)),
        optimizer_case("adamw_amsgrad", lambda p: O.AdamW(p, lr=0.01, weight_decay=0.01, amsgrad=True)),
        optimizer_case("sgd_groups", lambda p: O.SGD(p, lr=0.1, momentum=0.5),
                       groups=[{"lr": 0.2}, {"lr": 0.01, "weight_decay": 0.1}]),
        optimizer_case("sgd_steplr", lambda p: O.SGD(p, lr=0.1, momentum=0.9),
                       scheduler=lambda o: O.lr_scheduler.StepLR(o, step_size=2, gamma=0.5)),
    ]
    schedulers = [
        scheduler_case("steplr", lambda o: O.lr_scheduler.StepLR(o, step_size=3, gamma=0.5)),
        scheduler_case("multisteplr", lambda o: O.lr_scheduler.MultiStepLR(o, milestones=[2, 5, 9], gamma=0.1)),
        scheduler_case("cosine", lambda o: O.lr_scheduler.CosineAnnealingLR(o, T_max=10, eta_min=0.001)),
        scheduler_case("onecycle_sgd", lambda o: O.lr_scheduler.OneCycleLR(o, max_lr=0.1, total_steps=14)),
        scheduler_case("onecycle_adam_linear", lambda o: O.lr_scheduler.OneCycleLR(
            o, max_lr=0.05, total_steps=14, pct_start=0.25, anneal_strategy="linear", div_factor=10.0,
            final_div_factor=100.0), optimizer="adam"),
        scheduler_case("linear_warmup", lambda o: O.lr_scheduler.LinearLR(o, start_factor=0.1, total_iters=4)),
    ]
    clips = [
        clip_case("norm_l2", torch.nn.utils.clip_grad_norm_, max_norm=1.0),
        clip_case("norm_l2_no_clip", torch.nn.utils.clip_grad_norm_, max_norm=100.0),
        clip_case("norm_inf", torch.nn.utils.clip_grad_norm_, max_norm=0.5, norm_type=float("inf")),
        clip_case("norm_l1", torch.nn.utils.clip_grad_norm_, max_norm=2.0, norm_type=1.0),
        clip_case("value", torch.nn.utils.clip_grad_value_, clip_value=0.7),
    ]
    out = {"torch": torch.__version__, "optimizers": cases, "schedulers": schedulers, "clipping": clips}
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "optim.json")
    with open(path, "w") as f:
        json.dump(out, f, indent=None, separators=(",", ":"))
        f.write("\n")
    print("wrote", path, os.path.getsize(path), "bytes")


if __name__ == "__main__":
    main()
