#!/usr/bin/env python3
"""Golden trajectories for amp::GradScaler, made by PyTorch's own GradScaler class.

Run with Debian's python3-torch (1.13):  /usr/bin/python3 tests/golden/make_grad_scaler_golden.py
Writes tests/golden/grad_scaler.json.

torch 1.13's torch.cuda.amp.GradScaler only runs on CUDA, and its two native ops
(_amp_foreach_non_finite_check_and_unscale_, _amp_update_scale_) have no CPU kernels in 1.13.
So this script runs the real GradScaler class (its stage machine, the F64 reciprocal of the
scale, step skipping, update, state_dict) on the CPU with three patches:
  - the CUDA availability check and the is_cuda assertion of _MultiDeviceReplicator are lifted;
  - the two native ops are replaced by Python versions that do, in float32 torch arithmetic,
    exactly what their CUDA kernels in aten/src/ATen/native/cuda/AmpKernels.cu do:
      unscale: found_inf = 1 if any element is not finite; g = g if inv == 1 else g * inv (F32)
      update:  found -> scale = float(scale * backoff), tracker = 0; else tracker + 1, and at
               growth_interval scale = float(scale * growth) if finite, tracker = 0
    (scale * factor is a double product rounded once to float32, as the kernel's float*double);
  - scale(loss) asserts is_cuda, so the scaled loss is computed as its body does:
    loss * scaler._scale.
Gradients are fed directly (the "scaled gradients" a backward of the scaled loss would give:
base * scale in float32, with Inf/NaN injected at chosen steps), so no autograd rounding enters.
Non-finite floats are written as the strings "inf", "-inf" and "nan".
"""
import json
import math
import os

import torch
import torch.cuda.amp.grad_scaler as gs


class _CpuReplicator:
    """_MultiDeviceReplicator without its is_cuda assertion (same caching behaviour)."""

    def __init__(self, master_tensor):
        self.master = master_tensor
        self._per_device_tensors = {}

    def get(self, device):
        retval = self._per_device_tensors.get(device, None)
        if retval is None:
            retval = self.master.to(device=device, non_blocking=True, copy=True)
            self._per_device_tensors[device] = retval
        return retval


def _unscale_(grads, found_inf, inv_scale):
    inv = inv_scale.item()
    for g in grads:
        assert g.dtype == torch.float32
        if not bool(torch.isfinite(g).all()):
            found_inf.fill_(1.0)
        if inv != 1.0:
            g.mul_(inv_scale)  # float32 * float32, rounded once


def _update_scale_(scale, growth_tracker, found_inf, growth_factor, backoff_factor, growth_interval):
    s = scale.item()  # exact float32 value as a double
    if found_inf.item():
        scale.fill_(s * backoff_factor)  # double product, rounded to float32 by fill_
        growth_tracker.fill_(0)
    else:
        successful = int(growth_tracker.item()) + 1
        if successful == growth_interval:
            new_scale = torch.tensor(s * growth_factor, dtype=torch.float32)
            if bool(torch.isfinite(new_scale)):
                scale.copy_(new_scale)
            growth_tracker.fill_(0)
        else:
            growth_tracker.fill_(successful)
    return scale


gs._MultiDeviceReplicator = _CpuReplicator
gs.amp_definitely_not_available = lambda: False
torch._amp_foreach_non_finite_check_and_unscale_ = _unscale_
torch._amp_update_scale_ = _update_scale_


def enc(v):
    v = float(v)
    if math.isnan(v):
        return "nan"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return v


def flat(t):
    return [enc(v) for v in t.detach().reshape(-1).tolist()]


def run_case(name, init_scale, growth_factor, backoff_factor, growth_interval, steps, inject, new_scale_at,
             explicit_unscale_at):
    g = torch.Generator().manual_seed(7)
    w = torch.randn(3, 4, generator=g).requires_grad_()
    b = torch.randn(5, generator=g).requires_grad_()
    params = [w, b]
    init = [flat(p) for p in params]
    opt = torch.optim.SGD(params, lr=0.1, momentum=0.9)
    scaler = gs.GradScaler(init_scale=init_scale, growth_factor=growth_factor, backoff_factor=backoff_factor,
                           growth_interval=growth_interval)
    scaler._lazy_init_scale_growth_tracker(torch.device("cpu"))
    out_steps = []
    for step in range(steps):
        scale_before = scaler.get_scale()
        loss = torch.tensor(0.123456789 + step, dtype=torch.float32)
        scaled_loss = loss * scaler._scale  # scale()'s body (its is_cuda assertion aside)
        # Base gradients of mixed magnitudes, including values whose unscaled result is subnormal.
        base_w = torch.randn(3, 4, generator=g) * 1e-3
        base_w[0, 1] = 1.1e-39 * (step + 1)
        base_w[2, 3] = 3.0e-42
        base_b = torch.randn(5, generator=g) * 10.0
        gw = base_w * scaler._scale
        gb = base_b * scaler._scale
        kind = inject.get(step)
        if kind == "inf_w":
            gw[1, 2] = float("inf")
        elif kind == "nan_b":
            gb[0] = float("nan")
        elif kind == "neg_inf_b":
            gb[4] = float("-inf")
        elif kind == "overflow_w":
            base_w[2, 0] = 1e37
            gw = base_w * scaler._scale  # a finite base gradient whose scaled product overflows F32
        w.grad = gw.clone()
        b.grad = gb.clone()
        grads_in = [flat(w.grad), flat(b.grad)]
        explicit = step in explicit_unscale_at
        if explicit:
            scaler.unscale_(opt)
        scaler.step(opt)
        found = sum(v.item() for v in scaler._per_optimizer_states[id(opt)]["found_inf_per_device"].values()) > 0
        grads_unscaled = [flat(w.grad), flat(b.grad)]
        if step in new_scale_at:
            scaler.update(new_scale_at[step])
        else:
            scaler.update()
        out_steps.append({
            "loss": float(loss), "scaled_loss": enc(scaled_loss.item()), "scale_before": scale_before,
            "explicit_unscale": explicit, "grads_in": grads_in, "found_inf": found,
            "grads_unscaled": grads_unscaled, "new_scale": new_scale_at.get(step),
            "params_after": [flat(p) for p in params],
            "scale_after": scaler.get_scale(), "growth_tracker_after": scaler._get_growth_tracker(),
        })
    return {
        "name": name, "init_scale": init_scale, "growth_factor": growth_factor, "backoff_factor": backoff_factor,
        "growth_interval": growth_interval, "lr": 0.1, "momentum": 0.9, "init_params": init,
        "shapes": [list(p.shape) for p in params], "steps": out_steps, "state_dict": scaler.state_dict(),
    }


def main():
    cases = [
        # PyTorch's defaults with a short growth interval: growth at every third clean step.
        run_case("defaults_interval3", 65536.0, 2.0, 0.5, 3, steps=14,
                 inject={2: "inf_w", 6: "nan_b", 7: "overflow_w", 11: "neg_inf_b"}, new_scale_at={},
                 explicit_unscale_at={1, 2, 5, 9}),
        # Factors that are not powers of two: every scale and 1/scale is rounded, so the update
        # arithmetic and the unscaled products are tested bit for bit; a manual new_scale too.
        run_case("odd_factors", 1000.0, 1.7, 0.3, 2, steps=12,
                 inject={3: "nan_b", 4: "inf_w", 9: "overflow_w"}, new_scale_at={6: 333.3},
                 explicit_unscale_at={0, 3, 8}),
    ]
    out = {"torch_version": torch.__version__, "cases": cases}
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "grad_scaler.json")
    with open(path, "w") as f:
        json.dump(out, f, indent=None, separators=(",", ":"))
        f.write("\n")
    print("wrote", path, os.path.getsize(path), "bytes")


if __name__ == "__main__":
    main()
